"""Prompt artifacts to and from HF PEFT adapters (ptrain/peft_io.py), checked on the states PEFT itself computes.

Each direction is checked the way tests/test_peft_equivalence.py checks the modules: the same frozen tiny backbone
twice (seeded), PEFT's FEATURE_EXTRACTION model on one, ptrain's backbone on the other, equal real-token states.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_model_cfg
from torch import nn

peft = pytest.importorskip("peft")

from ptrain.artifact import (  # noqa: E402
    FORMAT,
    FORMAT_VERSION,
    ArtifactError,
    backbone_identity,
    build_head_from,
    materialise,
    read_artifact,
    write_artifact,
)
from ptrain.backbones import load_backbone  # noqa: E402
from ptrain.heads import SequenceHead  # noqa: E402
from ptrain.peft_io import export_peft, import_peft, load_prompt  # noqa: E402
from ptrain.prompts import DeepPrefix, PromptEncoder, PromptModule, SoftPrompt  # noqa: E402

P = 4


#: conftest has no decoder; this is ptrain/conf/model/tiny_gpt2.yaml at the others' width (right padding: see below)
TINY_GPT2 = {"tokenizer": "bundled:minilm", "init_seed": 0, "attn_implementation": "sdpa",
             "config": dict(model_type="gpt2", vocab_size=30522, n_embd=32, n_layer=3, n_head=4, n_positions=96,
                            bos_token_id=101, eos_token_id=102, pad_token_id=0)}


def _cfg(name: str) -> dict:
    return {"name": name, **(TINY_GPT2 if name == "tiny_gpt2" else tiny_model_cfg(name))}


def _batch(tokenizer, pairs: bool = False):
    first = ["the cat sat on the mat today", "a dog", "prefix tuning is evil, they say"]
    second = ["it was warm", "barks", "or so"] if pairs else None
    enc = tokenizer(first, second, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]


def _close(ours: torch.Tensor, peer: torch.Tensor, mask: torch.Tensor) -> None:
    keep = mask.bool()
    torch.testing.assert_close(ours[keep], peer[keep], atol=2e-5, rtol=1e-4)


def _peer_states(peer: nn.Module, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
    """PEFT's states of the real tokens: input prompts come back with their virtual positions first."""
    with torch.no_grad():
        states = peer(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    return states[:, states.shape[1] - ids.shape[1]:]


def _make_module(method: dict, backbone) -> PromptModule:
    torch.manual_seed(7)
    geometry = backbone.geometry
    if method["name"] == "prompt":
        return SoftPrompt(P, geometry.hidden_size, init="random", seed=3)
    if method["name"] == "ptv1":
        return PromptEncoder(P, geometry.hidden_size, encoder=method["encoder"], encoder_hidden=16).eval()
    return DeepPrefix(P, geometry, layers=method.get("layers"), reparam=method.get("reparam", "none"),
                      reparam_hidden=24).eval()


def _artifact(out: Path, method: dict, module: PromptModule, backbone, tokenizer, model_cfg: dict):
    """An artifact as `export_model` writes one, with nothing trained: prompt, module, a sequence head, meta."""
    hidden = backbone.geometry.hidden_size
    head = SequenceHead(hidden, 2, dropout=0.0, pooling="first")
    tensors = materialise(module)
    tensors.update({f"module.{k}": v for k, v in module.state_dict().items()})
    tensors.update({f"head.{k}": v for k, v in head.state_dict().items()})
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "method": method, "kind": module.kind,
            "task": {"name": "toy", "config": None, "head_kind": "sequence", "labels": ["no", "yes"],
                     "max_length": 32, "main_metric": "accuracy"},
            "head": {"kind": "sequence", "num_labels": 2, "pooling": "first", "hidden_size": hidden, "dropout": 0.0},
            "model": model_cfg, "backbone": backbone_identity(backbone, tokenizer, model_cfg),
            "geometry": vars(backbone.geometry)}
    return read_artifact(write_artifact(out, tensors, meta))


EXPORTS = [
    ("tiny_bert", {"name": "prompt", "length": P}),
    ("tiny_roberta", {"name": "prompt", "length": P}),
    ("tiny_deberta", {"name": "prompt", "length": P}),  # input prompts on DeBERTa-v2 are fine; prefixes are not
    ("tiny_gpt2", {"name": "prompt", "length": P}),
    ("tiny_bert", {"name": "ptv1", "length": P, "encoder": "mlp", "encoder_hidden": 16}),
    ("tiny_bert", {"name": "ptv1", "length": P, "encoder": "lstm", "encoder_hidden": 16}),
    ("tiny_bert", {"name": "ptv2", "length": P, "reparam": "none", "layers": None, "shift_positions": True}),
    ("tiny_bert", {"name": "ptv2", "length": P, "reparam": "mlp", "layers": [0, 1, 2], "shift_positions": True}),
    ("tiny_roberta", {"name": "ptv2", "length": P, "reparam": "none", "layers": None}),
    ("tiny_roberta", {"name": "ptv2", "length": P, "reparam": "mlp", "layers": None}),
    ("tiny_gpt2", {"name": "ptv2", "length": P, "reparam": "mlp", "layers": None}),
]


EXPORT_IDS = ["-".join(filter(None, (n, m["name"], m.get("encoder") or m.get("reparam")))) for n, m in EXPORTS]


@pytest.mark.parametrize(("name", "method"), EXPORTS, ids=EXPORT_IDS)
def test_export_loads_in_peft_with_the_same_states(tmp_path: Path, name: str, method: dict) -> None:
    ours, tokenizer = load_backbone(_cfg(name))
    ours.eval()
    module = _make_module(method, ours)
    artifact = _artifact(tmp_path / "artifact", method, module, ours, tokenizer, _cfg(name))
    adapter = export_peft(artifact.path, tmp_path / "peft")
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["task_type"] == "FEATURE_EXTRACTION" and config["base_model_name_or_path"] == name
    assert config.get("prefix_projection", False) is False  # the materialised prefix, no projection
    peer_base, _ = load_backbone(_cfg(name))
    peer = peft.PeftModel.from_pretrained(peer_base.model, adapter).eval()
    assert peer.peft_config["default"].peft_type.value == config["peft_type"]
    ids, mask, types = _batch(tokenizer)
    with torch.no_grad():
        mine = ours(ids, mask, types, prompt=module(ids.shape[0]))
    _close(mine, _peer_states(peer, ids, mask, types), mask)
    # the head travels beside the adapter, and an import restores task, head and method
    back = read_artifact(import_peft(adapter, tmp_path / "back", backbone=ours, tokenizer=tokenizer))
    assert back.meta["task"] == artifact.meta["task"] and back.meta["method"] == method
    assert back.meta["backbone"] == artifact.meta["backbone"]
    for key, tensor in artifact.tensors.items():
        if not key.startswith("module."):
            torch.testing.assert_close(back.tensors[key], tensor, atol=0, rtol=0)
    build_head_from(back)  # loads strictly


def test_round_trip_keeps_load_model(tmp_path: Path) -> None:
    """A ptrain artifact through PEFT and back is the same task model: `load_model` on each gives equal logits."""
    from omegaconf import OmegaConf

    from ptrain.artifact import load_model

    ours, tokenizer = load_backbone(_cfg("tiny_bert"))
    method = {"name": "ptv2", "length": P, "reparam": "mlp", "layers": None, "shift_positions": True}
    original = _artifact(tmp_path / "a", method, _make_module(method, ours), ours, tokenizer, _cfg("tiny_bert"))
    task_cfg = OmegaConf.to_container(OmegaConf.load(Path(__file__).parents[1] / "ptrain/conf/task/sst2.yaml"))
    meta = {**original.meta, "task": {**original.meta["task"], "name": "sst2", "config": task_cfg}}
    original = read_artifact(write_artifact(tmp_path / "a", original.tensors, meta))
    back = read_artifact(import_peft(export_peft(original, tmp_path / "peft"), tmp_path / "back"))  # carried model
    assert back.meta["imported_from"]["peft_type"] == "PREFIX_TUNING" and not back.group("module")
    task, model, tok = load_model(back)
    _, reference, _ = load_model(original)
    assert task.name == "sst2"
    ids, mask, types = _batch(tok)
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask, types), reference(ids, mask, types), atol=0, rtol=0)


PEFT_CONFIGS = {
    "prompt": lambda: peft.PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=P),
    "ptv1-mlp": lambda: peft.PromptEncoderConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=P,
                                                 encoder_reparameterization_type="MLP", encoder_hidden_size=16),
    "ptv2-none": lambda: peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=P),
    "ptv2-mlp": lambda: peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=P,
                                                prefix_projection=True, encoder_hidden_size=24),
}


@pytest.mark.parametrize("name", ["tiny_bert", "tiny_roberta", "tiny_gpt2"])
@pytest.mark.parametrize("kind", list(PEFT_CONFIGS))
def test_peft_adapter_imports_with_the_same_states(tmp_path: Path, kind: str, name: str) -> None:
    peer_base, tokenizer = load_backbone(_cfg(name))
    peer = peft.get_peft_model(peer_base.model, PEFT_CONFIGS[kind]())
    torch.manual_seed(11)
    with torch.no_grad():
        for parameter in peer.prompt_encoder["default"].parameters():
            parameter.normal_(0.0, 0.5)
    peer.save_pretrained(tmp_path / "peft")
    peer.eval()
    ours, _ = load_backbone(_cfg(name))
    ours.eval()
    # without ptrain's side files: method meta from the adapter config, no task config, no head
    artifact = read_artifact(import_peft(tmp_path / "peft", tmp_path / "artifact", model_cfg=_cfg(name)))
    assert artifact.meta["head"] is None and artifact.meta["task"]["config"] is None
    assert artifact.meta["task"]["name"] == "peft" and artifact.meta["method"]["name"] == kind.split("-")[0]
    backbone, prompt, _ = load_prompt(artifact, ours, tokenizer)  # fingerprint matches the one it was made on
    ids, mask, types = _batch(tokenizer)
    with torch.no_grad():
        mine = backbone(ids, mask, types, prompt=prompt(ids.shape[0]))
    _close(mine, _peer_states(peer, ids, mask, types), mask)


@pytest.mark.parametrize("method", [{"name": "prompt", "length": P}, {"name": "ptv2", "length": P, "layers": None}],
                         ids=["prompt", "ptv2"])
def test_peft_drops_token_types(tmp_path: Path, method: dict) -> None:
    """PEFT's FEATURE_EXTRACTION model drops token_type_ids for every prompt method (it warns "Token type ids are
    not supported"), so on BERT sentence pairs it gives ptrain's states with every token type 0, not the trained
    ones: a PEFT deployment of a pair task needs its inputs without segment B's type ids to match ptrain."""
    ours, tokenizer = load_backbone(_cfg("tiny_bert"))
    ours.eval()
    module = _make_module(method, ours)
    adapter = export_peft(_artifact(tmp_path / "a", method, module, ours, tokenizer, _cfg("tiny_bert")),
                          tmp_path / "peft")
    peer = peft.PeftModel.from_pretrained(load_backbone(_cfg("tiny_bert"))[0].model, adapter).eval()
    ids, mask, types = _batch(tokenizer, pairs=True)
    assert types.any()
    theirs = _peer_states(peer, ids, mask, types)
    with torch.no_grad():
        typed = ours(ids, mask, types, prompt=module(ids.shape[0]))
        untyped = ours(ids, mask, torch.zeros_like(types), prompt=module(ids.shape[0]))
    _close(untyped, theirs, mask)
    assert not torch.allclose(typed[mask.bool()], theirs[mask.bool()], atol=1e-3)


# ---- refusals ------------------------------------------------------------------------------------------------
def _hand_artifact(out: Path, method: dict, model_type: str = "bert", prefix_layers: int = 3):
    """An artifact made by hand (no backbone) for the checks that read only meta."""
    tensors = {"head.classifier.weight": torch.zeros(2, 32)}
    if method["name"] == "ptv2":
        for layer in range(prefix_layers):
            tensors.update({f"prefix.{layer}.key": torch.zeros(4, P, 8), f"prefix.{layer}.value": torch.zeros(4, P, 8)})
    elif method["name"] in ("prompt", "ptv1"):
        tensors["prompt.embeds"] = torch.zeros(P, 32)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "method": method, "task": {"name": "toy"},
            "head": {"kind": "sequence"}, "model": {"name": "x"},
            "backbone": {"name": "x", "model_type": model_type, "weights": "0", "tokenizer": "0"},
            "geometry": {"hidden_size": 32, "num_layers": 3, "num_heads": 4, "num_kv_heads": 4, "head_dim": 8}}
    return write_artifact(out, tensors, meta)


def test_depth_limited_prefix_is_refused(tmp_path: Path) -> None:
    ours, tokenizer = load_backbone(_cfg("tiny_bert"))
    method = {"name": "ptv2", "length": P, "layers": [1, 2], "reparam": "none"}
    artifact = _artifact(tmp_path / "a", method, _make_module(method, ours), ours, tokenizer, _cfg("tiny_bert"))
    with pytest.raises(ArtifactError, match=r"prompt\.json: field 'method\.layers' is \[1, 2\].*PEFT prefix tuning "
                                            r"puts a prefix in every layer"):
        export_peft(artifact, tmp_path / "peft")
    assert not (tmp_path / "peft").exists()


def test_deberta_prefix_is_refused(tmp_path: Path) -> None:
    ours, tokenizer = load_backbone(_cfg("tiny_deberta"))
    method = {"name": "ptv2", "length": P, "layers": None, "reparam": "none"}
    artifact = _artifact(tmp_path / "a", method, _make_module(method, ours), ours, tokenizer, _cfg("tiny_deberta"))
    with pytest.raises(ArtifactError, match="field 'backbone.model_type' is 'deberta-v2': PEFT refuses prefix tuning"):
        export_peft(artifact.path, tmp_path / "peft")


@pytest.mark.parametrize(("method", "model_type", "message"), [
    ({"name": "head"}, "bert", r"'method\.name' is 'head'.*finetune and head train no prompt"),
    ({"name": "finetune"}, "bert", r"'method\.name' is 'finetune'"),
    ({"name": "prompt", "length": P}, "t5", r"'backbone\.model_type' is 't5'"),
    ({"name": "ptv2", "length": P, "shift_positions": False}, "bert", r"'method\.shift_positions' is false"),
])
def test_other_refusals_name_the_field(tmp_path: Path, method: dict, model_type: str, message: str) -> None:
    path = _hand_artifact(tmp_path / "a", method, model_type)
    with pytest.raises(ArtifactError, match=message):
        export_peft(path, tmp_path / "peft")


def test_pickled_adapter_is_refused(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "PROMPT_TUNING"}))
    (tmp_path / "adapter_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(ArtifactError, match=r"adapter_model\.bin: a pickled adapter.*pickles are not loaded"):
        import_peft(tmp_path, tmp_path / "out")


def test_missing_adapter_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(ArtifactError, match=r"adapter_config\.json: not found"):
        import_peft(tmp_path, tmp_path / "out")


def test_adapter_for_another_geometry_names_the_field(tmp_path: Path) -> None:
    peer_base, tokenizer = load_backbone(_cfg("tiny_bert"))
    peft.get_peft_model(peer_base.model, PEFT_CONFIGS["ptv2-none"]()).save_pretrained(tmp_path / "peft")
    config_path = tmp_path / "peft" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "num_layers": 2}))
    with pytest.raises(ArtifactError, match=r"adapter_config\.json: field 'num_layers' is 2; the backbone needs 3"):
        import_peft(tmp_path / "peft", tmp_path / "out", backbone=peer_base, tokenizer=tokenizer)
