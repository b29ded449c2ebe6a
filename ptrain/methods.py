"""The `method` config group, turned into a prompt module (or none) and a freezing decision."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ptrain.backbones.base import Backbone
from ptrain.prompts import DeepPrefix, PromptEncoder, PromptModule, SoftPrompt

METHODS = ("finetune", "head", "prompt", "ptv1", "ptv2")
#: every key some method reads (ptrain/conf/method/*.yaml). A grid may set a key only some of its methods read (an
#: experiment sets `length` for finetune too), but a key no method reads is a typo (`+method.lenght=4`).
METHOD_KEYS = frozenset({
    "name", "lr", "backbone_dropout", "init_from",  # all
    "length",  # prompt, ptv1, ptv2
    "init", "init_text", "init_seed",  # prompt
    "encoder", "encoder_hidden", "lstm_layers", "lstm_dropout",  # ptv1
    "reparam", "reparam_hidden", "dropout", "layers", "shift_positions",  # ptv2
})

#: the method keys that decide what a checkpoint's weights are (their shapes and where they enter the backbone); a
#: resumed run must agree on these, while learning rates, dropout and initialisation may change between runs
SHAPE_KEYS = ("name", "length", "layers", "reparam", "reparam_hidden", "encoder", "encoder_hidden", "lstm_layers",
              "shift_positions")


def check_keys(group: str, cfg: Mapping[str, Any], known: frozenset[str]) -> None:
    """A key that nothing reads is an error naming it, not a setting silently ignored."""
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"{group}.{unknown[0]} is not a key of {group} (a typo?); known keys: "
                         f"{', '.join(sorted(known))}")


def trains_backbone(cfg: Mapping[str, Any]) -> bool:
    """Only `finetune` updates the backbone; every other method keeps it bit-identical."""
    return cfg["name"] == "finetune"


def build_prompt(cfg: Mapping[str, Any], backbone: Backbone, tokenizer: Any) -> PromptModule | None:
    name = cfg["name"]
    if name not in METHODS:
        raise ValueError(f"method.name={name!r} is unknown; choose one of {', '.join(METHODS)}")
    check_keys("method", cfg, METHOD_KEYS)
    if name in ("finetune", "head"):
        return None
    check_values(name, cfg)
    prompt = _build(name, cfg, backbone, tokenizer)
    if prompt.kind not in backbone.accepts:
        raise ValueError(
            f"method={name} adds {prompt.kind} prompts, which {type(backbone).__name__} does not take "
            f"(it takes: {', '.join(sorted(backbone.accepts))})"
        )
    return prompt


def check_values(name: str, cfg: Mapping[str, Any]) -> None:
    """Values a prompt method cannot use are errors naming the key (a zero-length prompt would train the head
    only while the results say `ptv2`)."""
    length = cfg.get("length")
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ValueError(f"method.length={length!r}: method {name} needs a whole number of virtual tokens >= 1 "
                         "(method=head trains the head alone)")
    for key in ("dropout", "lstm_dropout"):
        value = cfg.get(key)
        if value is not None and not (isinstance(value, int | float) and 0.0 <= value < 1.0):
            raise ValueError(f"method.{key}={value!r}: expected a probability in [0, 1)")
    for key in ("encoder_hidden", "reparam_hidden"):
        value = cfg.get(key)
        if value is not None and not (isinstance(value, int) and value >= 1):
            raise ValueError(f"method.{key}={value!r}: expected a whole number >= 1")


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
