"""Prompt artifacts: export -> load gives the trained model's logits; bad files and other backbones are refused."""

from __future__ import annotations

import json

import pytest
import torch
from _artifact_utils import make_artifact
from _train_utils import compose_run

from ptrain.artifact import ArtifactError, export_run, load_model, module_state, read_artifact
from ptrain.train import run

METHODS = {
    "finetune": ["method=finetune"],
    "head": ["method=head"],
    "prompt": ["method=prompt", "method.length=3"],
    "ptv1": ["method=ptv1", "method.length=3", "method.encoder=lstm", "method.encoder_hidden=8"],
    "ptv2": ["method=ptv2", "method.length=4", "method.reparam=mlp", "method.reparam_hidden=16"],
    "ptv2_depth": ["method=ptv2", "method.length=2", "method.layers=[1]"],
}
TEXTS = ["John Smith flew to Paris with IBM staff", "a short one", "Berlin"]


def _logits(model, tokenizer, side: str = "right") -> torch.Tensor:
    tokenizer.padding_side = side
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))


@pytest.mark.parametrize("backbone", ["tiny_bert", "tiny_deberta", "tiny_llama", "tiny_t5"])
@pytest.mark.parametrize("method", list(METHODS))
def test_export_then_load_gives_the_trained_models_logits(tmp_path, backbone: str, method: str) -> None:
    path, trained, tokenizer, _ = make_artifact(tmp_path, f"model={backbone}", *METHODS[method])
    artifact = read_artifact(path)
    assert sorted(p.name for p in path.iterdir()) == ["prompt.json", "prompt.safetensors"]
    _, loaded, loaded_tokenizer = load_model(artifact)
    expected = _logits(trained, tokenizer)
    torch.testing.assert_close(_logits(loaded, loaded_tokenizer), expected, atol=1e-5, rtol=1e-5)
    meta = artifact.meta
    assert meta["method"]["name"] == method.split("_")[0] and meta["task"]["labels"][0] == "O"
    assert meta["backbone"]["model_type"] == trained.backbone.config.model_type
    prompt_tensors = [k for k in artifact.tensors if k.startswith(("prompt.", "prefix."))]
    assert bool(prompt_tensors) == (method not in ("finetune", "head"))
    assert meta["prompt_bytes"] == sum(artifact.tensors[k].numel() * artifact.tensors[k].element_size()
                                       for k in prompt_tensors)
    if method == "ptv2_depth":  # only the chosen layer's prefix is stored
        assert sorted(prompt_tensors) == ["prefix.1.key", "prefix.1.value"]
    if trained.prompt is not None:  # the trainable module comes back exactly, stored or rebuilt from the prompt
        stored = any(k.startswith("module.") for k in artifact.tensors)
        assert stored == (method in ("ptv1", "ptv2"))  # reparameterised: the networks are stored
        state = module_state(artifact)
        assert state.keys() == trained.prompt.state_dict().keys()
        assert all(torch.equal(state[k], v) for k, v in trained.prompt.state_dict().items())


def test_export_run_reads_the_best_checkpoint_of_a_real_run(tmp_path) -> None:
    cfg = compose_run(tmp_path / "run", "method=ptv2", "method.length=3", "trainer.max_epochs=2")
    results, module, _ = run(cfg)
    best = torch.load(results["best_checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    module.model.load_state_dict({k.removeprefix("model."): v for k, v in best.items()}, strict=False)
    module.model.eval()
    artifact = read_artifact(export_run(tmp_path / "run"))
    _, loaded, tokenizer = load_model(artifact)
    torch.testing.assert_close(_logits(loaded, tokenizer), _logits(module.model, tokenizer), atol=1e-6, rtol=0)
    assert artifact.meta["task"]["config"]["name"] == "synthetic_ner" and artifact.meta["model"]["name"] == "tiny_bert"


def test_a_different_backbone_is_refused_unless_allowed(tmp_path) -> None:
    path, _, _, _ = make_artifact(tmp_path, "model=tiny_bert", "method=ptv2", "method.length=2")
    artifact = read_artifact(path)
    artifact.meta["model"]["init_seed"] = 1  # the same architecture, other weights
    with pytest.raises(ArtifactError, match=r"trained on backbone 'tiny_bert' .* weights: artifact [0-9a-f]{16} vs "
                                            r"backbone [0-9a-f]{16}; pass --allow-mismatch"):
        load_model(artifact)
    _, model, _ = load_model(artifact, allow_mismatch=True)
    assert model.prompt is not None


def test_tampered_truncated_or_missing_files_are_clear_errors(tmp_path) -> None:
    path, _, _, _ = make_artifact(tmp_path, "model=tiny_bert", "method=prompt", "method.length=2")
    tensors = path / "prompt.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-3] ^= 0xFF  # one byte of a weight
    tensors.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"prompt.safetensors: SHA-256 .* differs .* changed or cut short"):
        read_artifact(path)
    tensors.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ArtifactError, match="changed or cut short"):
        read_artifact(path)
    meta = json.loads((path / "prompt.json").read_text())
    meta["sha256"] = __import__("hashlib").sha256(tensors.read_bytes()).hexdigest()  # a consistent but cut file
    (path / "prompt.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="prompt.safetensors: not a readable safetensors file"):
        read_artifact(path)
    (path / "prompt.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"prompt.json: not valid JSON"):
        read_artifact(path)
    (path / "prompt.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ArtifactError, match=r"prompt.json: field 'format' must be 'ptrain-prompt'"):
        read_artifact(path)
    (path / "prompt.json").unlink()
    with pytest.raises(ArtifactError, match=r"prompt.json: not found .* `ptrain export RUN_DIR`"):
        read_artifact(path)


def test_a_pickle_beside_the_artifact_is_never_read(tmp_path) -> None:
    """Loading reads the two named files only: safetensors and JSON parse data, they run nothing."""
    path, _, _, _ = make_artifact(tmp_path, "model=tiny_bert", "method=prompt", "method.length=2")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    torch.save({"x": Payload()}, path / "prompt.pt")
    load_model(read_artifact(path))
    assert not marker.exists()


def test_init_from_starts_the_prompt_from_an_artifact_and_keeps_or_resets_the_head(tmp_path, caplog) -> None:
    from ptrain.testing.fixtures import write_superglue
    from ptrain.train import build

    path, source, _, _ = make_artifact(tmp_path / "src", "model=tiny_bert", "method=ptv2", "method.length=3")
    cfg = compose_run(tmp_path / "run", "method=ptv2", "method.length=3", f"method.init_from={path}")
    _, model, _ = build(cfg)
    for key, value in source.prompt.state_dict().items():
        assert torch.equal(model.prompt.state_dict()[key], value), key
    assert torch.equal(model.head.classifier.weight, source.head.classifier.weight)  # same labels: head kept
    write_superglue("rte", tmp_path / "rte")
    cfg = compose_run(tmp_path / "rte_run", "task=rte", f"task.data_dir={tmp_path / 'rte'}", "method=ptv2",
                      "method.length=3", f"method.init_from={path}")
    with caplog.at_level("INFO", logger="ptrain.transfer"):
        _, model, _ = build(cfg)
    assert torch.equal(model.prompt.embedding.weight, source.prompt.embedding.weight)
    assert "head re-initialised: labels" in caplog.text
    wrong = compose_run(tmp_path / "bad", "method=ptv2", "method.length=5", f"method.init_from={path}")
    with pytest.raises(ArtifactError, match=r"prompt's shapes differ .*embedding.weight: artifact \(3, 256\) vs run"
                                            r" \(5, 256\)"):
        build(wrong)
    other = compose_run(tmp_path / "other", "method=prompt", "method.length=3", f"method.init_from={path}")
    with pytest.raises(ArtifactError, match="the artifact is method 'ptv2', this run is 'prompt'"):
        build(other)
