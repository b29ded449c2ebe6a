"""Artifacts for tests, made without training: a model built from the real configs, its prompt and head given
random weights of unit scale (so a wrong prompt or head shows in the outputs), exported as ptrain exports."""

from __future__ import annotations

from pathlib import Path

import torch
from _train_utils import compose_run
from omegaconf import OmegaConf

from ptrain.artifact import backbone_identity, export_model
from ptrain.train import build


def perturb(model, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (model.prompt, model.head):
            if module is None:
                continue
            for parameter in module.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


def make_artifact(out: Path, *overrides: str, seed: int = 0):
    """(artifact dir, trained-looking PromptedModel in eval mode, tokenizer, task) from config overrides."""
    cfg = compose_run(out / "run", *overrides)
    task, model, tokenizer = build(cfg)
    perturb(model, seed)
    model.eval()
    container = OmegaConf.to_container(cfg, resolve=True)
    identity = backbone_identity(model.backbone, tokenizer, container["model"])
    path = export_model(out / "artifact", container, task, model, tokenizer, identity)
    return path, model, tokenizer, task
