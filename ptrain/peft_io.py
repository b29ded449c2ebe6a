"""Prompt artifacts to and from HF PEFT prompt-learning adapters, without importing PEFT.

A PEFT prompt-learning adapter is a directory with `adapter_config.json` and `adapter_model.safetensors`, whose one
tensor `prompt_embeddings` is the materialised prompt: PEFT's `get_peft_model_state_dict` saves the prompt
encoder's output (reparameterisation applied), and `save_pretrained` writes `inference_mode: true`, so
`PeftModel.from_pretrained` builds a bare `Embedding` of that shape and feeds its weight to the model unchanged.
That is the same thing an artifact keeps (`prompt.embeds`, or the `prefix.<layer>.*` tensors flattened into
PEFT's per-token layout `[layer0 key, layer0 value, layer1 key, ...]`), so no weights are converted, only laid out.

Mapping: method `prompt` <-> PROMPT_TUNING, `ptv1` <-> P_TUNING, `ptv2` in every layer <-> PREFIX_TUNING (exported
without projection: the reparameterisation networks are training-only and PEFT keeps none of them either).
Adapters are written with task_type FEATURE_EXTRACTION: PEFT's plain encoder peer, the one ptrain's modules are
checked against. PEFT 0.21.2's SEQ_CLS and TOKEN_CLS prefix wrappers refuse BERT on transformers 5.24 ("Model does
not support past key values": they look for a `past_key_values` argument, which 5.24 renamed), and PEFT's task
heads are not ptrain's anyway. The ptrain task head therefore travels beside the adapter, as
`ptrain_head.safetensors` (the artifact's `head.*` tensors) and `ptrain_prompt.json` (the artifact's meta), which
PEFT ignores and `import_peft` reads back. Nothing is unpickled: `adapter_model.bin` is refused.

Checked equal (tests/test_peft_io.py) on BERT, RoBERTa, DeBERTa-v2 (input prompts) and GPT-2, with two limits of
PEFT's runtime, not of the adapter: its FEATURE_EXTRACTION model drops `token_type_ids` for every prompt method, so
on sentence pairs it gives the states of all-zero token types; and it takes positions from the sequence, not the
mask, so a left-padded decoder batch differs (right padding, or one row, agrees).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptrain.artifact import (
    FORMAT,
    FORMAT_VERSION,
    META,
    Artifact,
    ArtifactError,
    FixedPrompt,
    backbone_identity,
    check_backbone,
    read_artifact,
    write_artifact,
)

ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
ADAPTER_PICKLE = "adapter_model.bin"
HEAD_FILE, META_FILE = "ptrain_head.safetensors", "ptrain_prompt.json"
PEFT_KEY = "prompt_embeddings"
TASK_TYPE = "FEATURE_EXTRACTION"
#: ptrain method -> PEFT peft_type, and back
PEFT_TYPES = {"prompt": "PROMPT_TUNING", "ptv1": "P_TUNING", "ptv2": "PREFIX_TUNING"}
METHODS = {v: k for k, v in PEFT_TYPES.items()}
#: T5's prefixes go to encoder, decoder and cross sites that PEFT numbers differently (num_transformer_submodules=2);
#: that mapping is unverified, so T5 is refused both ways
UNVERIFIED_MODEL_TYPES = ("t5",)


# ---- export ---------------------------------------------------------------------------------------------------
def export_peft(artifact_or_path: Artifact | str | Path, out_dir: str | Path) -> Path:
    """Write the artifact's prompt as a PEFT adapter directory that `PeftModel.from_pretrained(base, out_dir)` loads.

    `base` is the HF base model (ptrain's `backbone.model`); its `last_hidden_state` at the real positions equals
    ptrain's backbone states with this prompt (PEFT also returns the virtual positions of input prompts first).
    The head is not part of a FEATURE_EXTRACTION adapter: it is written beside it (`ptrain_head.safetensors`,
    `ptrain_prompt.json`). Refused (`ArtifactError`): methods without a prompt, T5, depth-limited prefixes (PEFT
    prefix tuning puts a prefix in every layer), prefixes without position shift (PEFT always shifts), DeBERTa-v2
    prefixes (PEFT refuses prefix tuning there).
    """
    artifact = artifact_or_path if isinstance(artifact_or_path, Artifact) else read_artifact(artifact_or_path)
    meta, where = artifact.meta, artifact.path / META
    method = meta["method"] or {}
    name = method.get("name")
    if name not in PEFT_TYPES:
        raise ArtifactError(f"{where}: field 'method.name' is {name!r}; a PEFT adapter holds a prompt, so only "
                            f"{', '.join(PEFT_TYPES)} export (finetune and head train no prompt)")
    model_type = (meta["backbone"] or {}).get("model_type")
    if model_type in UNVERIFIED_MODEL_TYPES:
        raise ArtifactError(f"{where}: field 'backbone.model_type' is {model_type!r}: T5 prompt sites are numbered "
                            "differently in PEFT (encoder and decoder submodules); export is not supported")
    geometry = meta.get("geometry") or {}
    if name == "ptv2":
        weights, shape = _flat_prefix(artifact, method, model_type, geometry)
    else:
        embeds = artifact.tensors.get("prompt.embeds")
        if embeds is None or embeds.dim() != 2:
            raise ArtifactError(f"{artifact.path / 'prompt.safetensors'}: method {name} needs tensor 'prompt.embeds' "
                                f"[P, H]; got {None if embeds is None else tuple(embeds.shape)}")
        weights = embeds
        shape = {"num_virtual_tokens": embeds.shape[0], "token_dim": embeds.shape[1],
                 "num_layers": geometry.get("num_layers"), "num_attention_heads": geometry.get("num_heads")}
    model_cfg = meta["model"] or {}
    config: dict[str, Any] = {
        "peft_type": PEFT_TYPES[name], "task_type": TASK_TYPE, "inference_mode": True, "auto_mapping": None,
        "base_model_name_or_path": model_cfg.get("pretrained") or model_cfg.get("name"), "revision": None,
        "modules_to_save": None, "num_transformer_submodules": 1, **shape, **_method_fields(name, method, shape),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_tensors(out / ADAPTER_WEIGHTS, {PEFT_KEY: weights})
    _write_tensors(out / HEAD_FILE, {k: v for k, v in artifact.tensors.items() if k.startswith("head.")})
    _write_json(out / META_FILE, meta)
    _write_json(out / ADAPTER_CONFIG, config)  # last: a directory with a config is complete
    return out


def _flat_prefix(artifact: Artifact, method: dict, model_type: str | None,
                 geometry: dict) -> tuple[torch.Tensor, dict[str, int]]:
    """[P, 2 * L * kv_dim] in PEFT's layout, after the checks that make PEFT's prefix the same as ours."""
    where = artifact.path / META
    if model_type == "deberta-v2":
        raise ArtifactError(f"{where}: field 'backbone.model_type' is 'deberta-v2': PEFT refuses prefix tuning on "
                            "DeBERTa-v2, so a ptv2 prompt for it has no PEFT form")
    if method.get("shift_positions", True) is False:
        raise ArtifactError(f"{where}: field 'method.shift_positions' is false: PEFT's prefix always moves the real "
                            "tokens to positions P.., so this prompt would give other states there")
    layers = sorted({int(k.split(".")[1]) for k in artifact.tensors if k.startswith("prefix.")})
    num_layers = geometry.get("num_layers")
    if num_layers is None:
        raise ArtifactError(f"{where}: missing field 'geometry.num_layers', needed to check the prefix is in every "
                            "layer")
    if layers != list(range(num_layers)):
        raise ArtifactError(f"{where}: field 'method.layers' is {method.get('layers')!r} (prefixes in layers "
                            f"{layers} of {num_layers}): PEFT prefix tuning puts a prefix in every layer, so a "
                            "depth-limited prefix cannot be exported")
    blocks = [artifact.tensors[f"prefix.{layer}.{part}"] for layer in layers for part in ("key", "value")]
    kv_heads, length, head_dim = blocks[0].shape
    flat = torch.stack(blocks).permute(2, 0, 1, 3).reshape(length, -1)  # [2L, kv, P, d] -> [P, 2L*kv*d]
    return flat, {"num_virtual_tokens": length, "token_dim": kv_heads * head_dim, "num_layers": num_layers,
                  "num_attention_heads": kv_heads}


def _method_fields(name: str, method: dict, shape: dict[str, int]) -> dict[str, Any]:
    """The PEFT config fields of each method. They describe training only: an inference-mode adapter builds no
    encoder, so they are informative, kept as the artifact's method config says."""
    if name == "prompt":
        return {"prompt_tuning_init": "RANDOM", "prompt_tuning_init_text": None, "tokenizer_name_or_path": None,
                "tokenizer_kwargs": None}
    if name == "ptv1":
        encoder = method.get("encoder", "lstm")
        hidden = method.get("encoder_hidden") or (shape["token_dim"] // 2 if encoder == "lstm" else shape["token_dim"])
        return {"encoder_reparameterization_type": encoder.upper(), "encoder_hidden_size": hidden,
                "encoder_num_layers": method.get("lstm_layers", 2), "encoder_dropout": method.get("lstm_dropout", 0.0)}
    return {"prefix_projection": False, "encoder_hidden_size": shape["token_dim"], "init_weights": None}


# ---- import ---------------------------------------------------------------------------------------------------
def import_peft(peft_dir: str | Path, out_dir: str | Path, backbone: nn.Module | None = None, tokenizer: Any = None,
                model_cfg: dict | None = None) -> Path:
    """A ptrain artifact from a PEFT PROMPT_TUNING, P_TUNING or PREFIX_TUNING adapter (safetensors only).

    The backbone fingerprint comes from `backbone` and `tokenizer` when given, else from loading `model_cfg` (or the
    `model` config in `ptrain_prompt.json`, or `{"pretrained": base_model_name_or_path}`) with `load_backbone`.
    With `ptrain_prompt.json` and `ptrain_head.safetensors` beside the adapter (written by `export_peft`) the task,
    head and method meta come back and `load_model` works as on the original artifact. Without them the artifact
    has method meta derived from the adapter config, a task block without config and no head (`head: null`): its
    `fixed_prompt()` on the backbone (`load_prompt`) gives backbone states, but `load_model`, which builds a task and
    head, does not apply. Reparameterisation networks (`module.*`) are never in a PEFT adapter, so none come back.
    """
    root = Path(peft_dir)
    config_path, weights_path = root / ADAPTER_CONFIG, root / ADAPTER_WEIGHTS
    if not config_path.is_file():
        raise ArtifactError(f"{config_path}: not found (a PEFT adapter directory has {ADAPTER_CONFIG} and "
                            f"{ADAPTER_WEIGHTS})")
    if not weights_path.is_file():
        if (root / ADAPTER_PICKLE).is_file():
            raise ArtifactError(f"{root / ADAPTER_PICKLE}: a pickled adapter (torch.save); pickles are not loaded, "
                                f"since loading one can run code. Re-save it as {ADAPTER_WEIGHTS} with "
                                "`save_pretrained(dir, safe_serialization=True)`")
        raise ArtifactError(f"{weights_path}: not found (a PEFT adapter directory has {ADAPTER_CONFIG} and "
                            f"{ADAPTER_WEIGHTS})")
    config = _read_json(config_path)
    peft_type = config.get("peft_type")
    if peft_type not in METHODS:
        raise ArtifactError(f"{config_path}: field 'peft_type' is {peft_type!r}; ptrain imports "
                            f"{', '.join(METHODS)} adapters")
    if config.get("num_transformer_submodules", 1) != 1:
        raise ArtifactError(f"{config_path}: field 'num_transformer_submodules' is "
                            f"{config['num_transformer_submodules']}: an encoder-decoder adapter, which ptrain does "
                            "not import")
    flat = _read_tensors(weights_path).get(PEFT_KEY)
    if flat is None or flat.dim() != 2:
        raise ArtifactError(f"{weights_path}: needs tensor {PEFT_KEY!r} [P, D] (the materialised prompt PEFT saves); "
                            f"got {None if flat is None else tuple(flat.shape)}")
    carried = _read_json(root / META_FILE) if (root / META_FILE).is_file() else None
    name = METHODS[peft_type]
    if carried is not None and (carried.get("method") or {}).get("name") != name:
        raise ArtifactError(f"{root / META_FILE}: field 'method.name' is {(carried.get('method') or {}).get('name')!r},"
                            f" but {config_path} has peft_type {peft_type} (method {name})")
    model_cfg = model_cfg or (carried or {}).get("model") or {"pretrained": config.get("base_model_name_or_path")}
    if backbone is None:
        from ptrain.backbones import load_backbone

        try:
            backbone, tokenizer = load_backbone(model_cfg)
        except (OSError, ValueError) as error:
            raise ArtifactError(f"{config_path}: cannot load the backbone from model config {model_cfg} (field "
                                f"'base_model_name_or_path'; or pass backbone= / model_cfg=): {error}") from error
    elif tokenizer is None:
        raise ArtifactError(f"{root}: a backbone was given without its tokenizer; both make the fingerprint")
    model_type = backbone.config.model_type
    if model_type in UNVERIFIED_MODEL_TYPES:
        raise ArtifactError(f"{config_path}: the backbone is {model_type!r}: T5 prompt sites are numbered "
                            "differently in PEFT; import is not supported")
    tensors = _prompt_tensors(name, flat, config, config_path, backbone)
    if carried is not None:
        meta = {k: v for k, v in carried.items() if k != "sha256"}
        tensors.update(_carried_head(root, carried))
    else:
        meta = _derived_meta(name, config, root.name, model_cfg)
    fixed = FixedPrompt(tensors.get("prompt.embeds"), _kv(tensors))
    meta.update(backbone=backbone_identity(backbone, tokenizer, model_cfg), geometry=vars(backbone.geometry),
                kind=fixed.kind, prompt_bytes=sum(t.numel() * t.element_size() for t in fixed.buffers()),
                tokenizer={"name_or_path": getattr(tokenizer, "name_or_path", None),
                           "padding_side": tokenizer.padding_side, "class": type(tokenizer).__name__,
                           "vocab_size": len(tokenizer)},
                imported_from={"peft_type": peft_type, "path": str(root),
                                "base_model_name_or_path": config.get("base_model_name_or_path")})
    return write_artifact(out_dir, tensors, meta)


def _prompt_tensors(name: str, flat: torch.Tensor, config: dict, config_path: Path,
                    backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The artifact's prompt tensors from PEFT's flat prompt, checked against the config and the backbone."""
    geometry = backbone.geometry
    length = config.get("num_virtual_tokens")
    if flat.shape[0] != length:
        raise ArtifactError(f"{config_path}: field 'num_virtual_tokens' is {length!r}, but {PEFT_KEY} has "
                            f"{flat.shape[0]} rows")
    if name != "ptv2":
        width = backbone.word_embeddings.embedding_dim
        if flat.shape[1] != width or config.get("token_dim", width) != width:
            raise ArtifactError(f"{config_path}: field 'token_dim' is {config.get('token_dim')!r} ({PEFT_KEY} is "
                                f"{tuple(flat.shape)}); the backbone's word embeddings are {width} wide")
        return {"prompt.embeds": flat}
    if backbone.config.model_type == "deberta-v2":
        raise ArtifactError(f"{config_path}: a PREFIX_TUNING adapter for DeBERTa-v2, on which PEFT refuses prefix "
                            "tuning; ptrain's DeBERTa prefixes have no PEFT counterpart to match")
    expect = {"num_layers": geometry.num_layers, "num_attention_heads": geometry.num_kv_heads,
              "token_dim": geometry.num_kv_heads * geometry.head_dim}
    for field_name, want in expect.items():
        if config.get(field_name) != want:
            raise ArtifactError(f"{config_path}: field {field_name!r} is {config.get(field_name)!r}; the backbone "
                                f"needs {want} (layers {geometry.num_layers}, kv heads {geometry.num_kv_heads}, "
                                f"head_dim {geometry.head_dim})")
    width = 2 * geometry.num_layers * expect["token_dim"]
    if flat.shape[1] != width:
        raise ArtifactError(f"{config_path.parent / ADAPTER_WEIGHTS}: {PEFT_KEY} is {tuple(flat.shape)}; the config "
                            f"says [{length}, 2 * num_layers * token_dim = {width}]")
    blocks = flat.view(length, 2 * geometry.num_layers, geometry.num_kv_heads, geometry.head_dim).permute(1, 2, 0, 3)
    tensors = {}
    for layer in range(geometry.num_layers):
        tensors[f"prefix.{layer}.key"] = blocks[2 * layer]
        tensors[f"prefix.{layer}.value"] = blocks[2 * layer + 1]
    return tensors


def _derived_meta(name: str, config: dict, task_name: str, model_cfg: dict) -> dict:
    """Meta for an adapter PEFT trained: the method from its config, no task config and no head."""
    import ptrain

    method: dict[str, Any] = {"name": name, "length": config["num_virtual_tokens"]}
    if name == "ptv1":
        method.update(encoder=str(config.get("encoder_reparameterization_type", "MLP")).lower(),
                      encoder_hidden=config.get("encoder_hidden_size"), lstm_layers=config.get("encoder_num_layers", 2))
    elif name == "ptv2":
        method.update(layers=None, reparam="mlp" if config.get("prefix_projection") else "none",
                      reparam_hidden=config.get("encoder_hidden_size"), shift_positions=True)
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "ptrain_version": ptrain.__version__,
            "method": method,
            "task": {"name": task_name, "config": None, "head_kind": None, "labels": [], "max_length": None,
                     "main_metric": None},
            "head": None, "model": model_cfg}


def _carried_head(root: Path, carried: dict) -> dict[str, torch.Tensor]:
    from ptrain.heads import LM_HEAD_KINDS

    path = root / HEAD_FILE
    if path.is_file():
        return {k: v for k, v in _read_tensors(path).items() if k.startswith("head.")}
    kind = (carried.get("head") or {}).get("kind")
    if kind is None or kind in LM_HEAD_KINDS:
        return {}  # no head, or the backbone's own LM head: no weights
    raise ArtifactError(f"{path}: not found, but {root / META_FILE} field 'head.kind' is {kind!r}, a head with weights")


def load_prompt(artifact: Artifact, backbone: nn.Module | None = None, tokenizer: Any = None,
                allow_mismatch: bool = False) -> tuple[nn.Module, FixedPrompt | None, Any]:
    """(backbone, prompt, tokenizer) of any artifact, head or not: what an imported PEFT adapter without
    `ptrain_prompt.json` offers. `backbone(ids, mask, types, prompt=prompt(B))` gives the real tokens' states."""
    if backbone is None:
        from ptrain.backbones import load_backbone

        cfg = {**artifact.meta["model"], "shift_positions": artifact.meta["method"].get("shift_positions", True),
               "dropout_impl": "torch"}
        backbone, tokenizer = load_backbone(cfg)
    check_backbone(artifact, backbone, tokenizer, allow_mismatch)
    return backbone.eval(), artifact.fixed_prompt(), tokenizer


# ---- files ----------------------------------------------------------------------------------------------------
def _kv(tensors: dict[str, torch.Tensor]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    layers = sorted({int(k.split(".")[1]) for k in tensors if k.startswith("prefix.")})
    return {layer: (tensors[f"prefix.{layer}.key"], tensors[f"prefix.{layer}.value"]) for layer in layers}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: must hold a JSON object; got {type(data).__name__}")
    return data


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(path.read_bytes())
    except (SafetensorError, ValueError) as error:
        raise ArtifactError(f"{path}: not a readable safetensors file ({error})") from error


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save

    data = save({k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}, metadata={"format": "pt"})
    _write_bytes(path, data)


def _write_json(path: Path, payload: dict) -> None:
    _write_bytes(path, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())


def _write_bytes(path: Path, data: bytes) -> None:
    """Through a temporary name and a rename: a reader (or PEFT) never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


__all__ = ["export_peft", "import_peft", "load_prompt"]
