"""End to end through the composed Hydra config: every method trains, records, and keeps the backbone frozen."""

from __future__ import annotations

import json

import pytest
import torch
from _train_utils import compose_run
from lightning.pytorch.callbacks import Callback

from ptrain.train import build, run

METHOD_OVERRIDES = {
    "finetune": [],
    "head": [],
    "prompt": ["method.length=4"],
    "ptv1": ["method.length=4", "method.encoder=lstm"],
    "ptv2": ["method.length=4"],
    "ptv2_mlp": ["method=ptv2", "method.length=4", "method.reparam=mlp", "method.reparam_hidden=16"],
    "ptv2_top": ["method=ptv2", "method.length=4", "method.layers=[1]"],
}


def _backbone_state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.model.backbone.state_dict().items()}


@pytest.mark.parametrize("variant", list(METHOD_OVERRIDES))
def test_every_method_trains_records_and_freezes(tmp_path, variant) -> None:
    method = variant.split("_")[0]
    overrides = ([f"method={method}"] if variant == method else []) + METHOD_OVERRIDES[variant]
    cfg = compose_run(tmp_path, *overrides)
    _, fresh, _ = build(cfg)
    before = {k: v.clone() for k, v in fresh.backbone.state_dict().items()}
    results, module, _ = run(cfg)

    after = _backbone_state(module)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if method == "finetune":
        assert changed, "fine-tuning must update the backbone"
    else:
        assert changed == [], f"{variant} changed frozen weights: {changed[:3]}"

    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["method"] == method and saved["task"] == "synthetic_ner" and saved["model"] == "tiny_bert"
    for key in ("seed", "trainable_params", "total_params", "trainable_share", "prompt_bytes", "best_epoch",
                "wall_s", "config"):
        assert key in saved
    assert {"val/f1", "test/f1", "val/precision", "test/recall"} <= set(saved["metrics"])
    assert 0.0 <= saved["metrics"]["test/f1"] <= 1.0
    assert saved["best_epoch"] in (0, 1)
    assert saved["trainable_params"] == sum(p.numel() for p in module.model.parameters() if p.requires_grad)
    assert saved["config"]["method"]["name"] == method
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    stored = set(ckpt["state_dict"])
    if method != "finetune":  # checkpoints hold what trains, never the frozen backbone
        assert not any(k.startswith("model.backbone.") for k in stored)
    trainable = {f"model.{k}" for k, p in module.model.named_parameters() if p.requires_grad}
    assert trainable <= stored


class StopAfterFirstEpoch(Callback):
    """Interrupts a run at an epoch boundary without touching its config (the LR schedule stays the same)."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.should_stop = True


def test_resume_from_last_matches_uninterrupted_run(tmp_path) -> None:
    common = ["method=ptv2", "method.length=4", "method.reparam=mlp", "method.reparam_hidden=16",
              "method.dropout=0.2", "trainer.max_epochs=3"]
    straight, _, _ = run(compose_run(tmp_path / "a", *common))
    first, _, _ = run(compose_run(tmp_path / "b", *common), callbacks=[StopAfterFirstEpoch()])
    assert first["best_epoch"] == 0
    resumed, _, _ = run(compose_run(tmp_path / "b", *common, "ckpt_path=last"))
    assert resumed["metrics"] == straight["metrics"]
    # final weights after the last epoch (the module itself holds the best epoch's, reloaded for testing)
    last_a = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)
    last_b = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last_a["global_step"] == last_b["global_step"] == 3 * 6  # 3 epochs of 96 sentences / 16
    for name, a in last_a["state_dict"].items():
        assert torch.equal(a, last_b["state_dict"][name]), name


def test_a_checkpoint_loads_outside_a_trainer(tmp_path) -> None:
    """Lightning's `load_from_checkpoint`, as a notebook would call it, restores the trained prompt and head."""
    from ptrain.module import PromptTuningModule

    cfg = compose_run(tmp_path, "method=ptv2", "method.length=4", "trainer.max_epochs=1")
    run(cfg)
    task, model, _ = build(cfg)
    module = PromptTuningModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", model=model,
                                                     task=task, optim={"lr": 1e-3}, weights_only=False)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert saved and all(torch.equal(module.state_dict()[name], value) for name, value in saved.items())


def test_a_finished_run_directory_is_not_overwritten(tmp_path) -> None:
    common = ["method=ptv2", "method.length=4", "trainer.max_epochs=1"]
    run(compose_run(tmp_path, *common))
    before = {p: p.read_bytes() for p in [tmp_path / "results.json", *(tmp_path / "checkpoints").glob("*.ckpt")]}
    with pytest.raises(FileExistsError, match=r"already holds a run \(results.json, checkpoints/best-0.ckpt.*"
                                              r"resume it with ckpt_path=last.*or set overwrite=true"):
        run(compose_run(tmp_path, *common, "seed=7"))
    assert {p: p.read_bytes() for p in before} == before  # nothing written, nothing lost
    results, _, _ = run(compose_run(tmp_path, *common, "seed=7", "overwrite=true"))
    assert results["seed"] == 7 and json.loads((tmp_path / "results.json").read_text())["seed"] == 7
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best-0.ckpt", "last.ckpt"]


def test_wandb_logs_offline_without_login(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    results, _, trainer = run(compose_run(tmp_path / "run", "logger=wandb", "trainer.max_epochs=1"))
    offline = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert offline, "expected an offline W&B run directory"
    experiment = trainer.logger.experiment  # grouped by experiment, then by cell (the seeds of one cell)
    cell = f"{results['task']}-{results['method']}-{results['model']}"
    assert experiment.job_type == cell and experiment.name == f"{cell}-s{results['seed']}"
    assert results["metrics"]["val/f1"] >= 0


def test_csv_logger_records_parameter_accounting(tmp_path) -> None:
    results, _, _ = run(compose_run(tmp_path, "logger=csv", "trainer.max_epochs=1"))
    text = (tmp_path / "csv" / "metrics.csv").read_text()
    header = text.splitlines()[0].split(",")
    assert {"trainable_params", "total_params", "trainable_share", "prompt_bytes", "val/f1"} <= set(header)
    # the scores at the best checkpoint, its epoch and the wall time come last, after the Trainer is done
    assert {"best/val/f1", "best/test/f1", "best_epoch", "wall_s"} <= set(header)
    assert str(results["trainable_params"]) in text or f"{float(results['trainable_params'])}" in text
