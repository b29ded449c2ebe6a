"""The `method` config group, turned into a prompt module (or none) and a freezing decision."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ptrain.backbones.base import Backbone
from ptrain.prompts import DeepPrefix, PromptEncoder, PromptModule, SoftPrompt

METHODS = ("finetune", "head", "prompt", "ptv1", "ptv2")


def trains_backbone(cfg: Mapping[str, Any]) -> bool:
    """Only `finetune` updates the backbone; every other method keeps it bit-identical."""
    return cfg["name"] == "finetune"


def build_prompt(cfg: Mapping[str, Any], backbone: Backbone, tokenizer: Any) -> PromptModule | None:
    name = cfg["name"]
    if name not in METHODS:
        raise ValueError(f"method.name={name!r} is unknown; choose one of {', '.join(METHODS)}")
    if name in ("finetune", "head"):
        return None
    prompt = _build(name, cfg, backbone, tokenizer)
    if prompt.kind not in backbone.accepts:
        raise ValueError(
            f"method={name} adds {prompt.kind} prompts, which {type(backbone).__name__} does not take "
            f"(it takes: {', '.join(sorted(backbone.accepts))})"
        )
    return prompt


def _build(name: str, cfg: Mapping[str, Any], backbone: Backbone, tokenizer: Any) -> PromptModule:
    """Input prompts live in the word-embedding space, which can be narrower than the hidden states (ELECTRA-small
    embeds in 128 and projects to 256 inside the model); prefixes live in the attention's key/value space."""
    geometry = backbone.geometry
    if name == "prompt":
        init = cfg.get("init", "random")
        ids = None
        if init == "text":
            ids = tokenizer(cfg.get("init_text") or "", add_special_tokens=False)["input_ids"]
        return SoftPrompt(
            cfg["length"], backbone.word_embeddings.embedding_dim, init=init,
            word_embeddings=backbone.word_embeddings.weight, init_token_ids=ids, seed=cfg.get("init_seed", 0),
        )
    if name == "ptv1":
        return PromptEncoder(
            cfg["length"], backbone.word_embeddings.embedding_dim, encoder=cfg.get("encoder", "lstm"),
            encoder_hidden=cfg.get("encoder_hidden"), lstm_layers=cfg.get("lstm_layers", 2),
            lstm_dropout=cfg.get("lstm_dropout", 0.0),
        )
    layers = cfg.get("layers")
    if layers is not None and (isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable)):
        raise ValueError(f"method.layers must be a list of layer indices (e.g. [{layers}] or [-1], null = all); "
                         f"got {layers!r}")
    return DeepPrefix(
        cfg["length"], geometry, layers=None if layers is None else list(layers),
        reparam=cfg.get("reparam", "none"), reparam_hidden=cfg.get("reparam_hidden", 512),
        dropout=cfg.get("dropout", 0.0),
    )
