"""Prefix keys/values injected at the attention call, through transformers' attention registry.

transformers 5 models route every attention call through `ALL_ATTENTION_FUNCTIONS[config._attn_implementation]`
and pass the model's `**kwargs` down to it. We register `ptrain_sdpa` and `ptrain_eager`: each looks up its
layer's prefix in the `ptrain_prefix` kwarg, prepends it to the keys and values, widens that layer's mask, and
calls the stock function. This gives per-layer masks (so a prefix on some layers only is exact), works under
gradient checkpointing (kwargs are re-passed on recomputation), keeps SDPA, and serves encoders and decoders alike.
Prefixes go in after rotary embeddings and after the model's own KV cache update, so they are never rotated and
never cached: generation sees them at every step. Decoders (GPT-2, Llama, Qwen2/3, Mistral) and T5 call the
registry too; with grouped-query attention a prefix has the key/value heads' count and is repeated with the
model's own keys by the stock function. T5 adds a relative position bias, widened here for the prefix columns.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask, sdpa_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from ptrain.dropout import masked

PREFIX_KWARG = "ptrain_prefix"
#: a mixed batch's per-row prefix masks (site -> [B, P] bool), beside the prefixes; absent = every row has them
PREFIX_MASK_KWARG = "ptrain_prefix_mask"
#: in a mixed batch on a relative-position model, how many (masked) input-prompt columns stand between a prefix
#: row's slots and its first real token: the slots are placed that much later, so distances are the row's own
PREFIX_OFFSET_KWARG = "ptrain_prefix_offset"
BASE_IMPLEMENTATIONS = ("sdpa", "eager")


def wrapped_name(base: str) -> str:
    return f"ptrain_{base}"


def _stock_function(module: torch.nn.Module, base: str) -> Callable:
    if base == "eager":
        # Each model file defines its own eager function (e.g. with or without GQA repeat): use the module's.
        return sys.modules[type(module).__module__].eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS[base]


def widen_mask(mask: torch.Tensor | None, prefix_len: int, query_len: int, key_len: int,
               causal: bool, like: torch.Tensor, visible: torch.Tensor | None = None) -> torch.Tensor | None:
    """Add `prefix_len` key columns in front of a 4D mask (bool or additive float).

    The columns are visible to every query, or, with `visible` ([B, P] bool, a mixed batch's prefix mask), to the
    rows that have them. A missing mask means "attend everywhere", except for causal models where SDPA would
    otherwise apply its own top-left-aligned causal rule to a longer key axis; for them the causal mask is built
    explicitly, and so it is for any model when some rows lack some prefix columns.
    """
    if mask is None:
        if visible is None and (not causal or query_len == 1):
            return None
        q = torch.arange(query_len, device=like.device)[:, None]
        k = torch.arange(key_len, device=like.device)[None, :]
        mask = (k <= q + (key_len - query_len)) if causal else torch.ones_like(q * k, dtype=torch.bool)
        mask = mask[None, None]
    if visible is None:
        columns = torch.ones(*mask.shape[:-1], prefix_len, dtype=torch.bool, device=mask.device)
    else:
        batch = max(mask.shape[0], visible.shape[0])
        columns = visible.to(mask.device)[:, None, None, :].expand(batch, mask.shape[1], mask.shape[2], prefix_len)
        mask = mask.expand(batch, -1, -1, -1)
    if mask.dtype != torch.bool:
        columns = torch.zeros_like(columns, dtype=mask.dtype).masked_fill(~columns, torch.finfo(mask.dtype).min)
    return torch.cat([columns, mask], dim=-1)


def prefix_site(module: torch.nn.Module) -> int | None:
    """The key of this attention module in a `ptrain_prefix` dict.

    It is the module's `layer_idx`, unless the adapter numbered the module itself with `ptrain_site` (T5, where
    encoder self-attention, decoder self-attention and cross-attention all reuse `layer_idx` 0..L-1; a module with
    `ptrain_site = None` never takes a prefix).
    """
    if hasattr(module, "ptrain_site"):
        return module.ptrain_site
    return getattr(module, "layer_idx", None)


def widen_position_bias(module: torch.nn.Module, bias: torch.Tensor, prefix_len: int, offset: int = 0) -> torch.Tensor:
    """Add prefix columns to an additive position bias [b, heads, q, k] (T5's relative bias).

    An adapter that knows where the prefix sits gives the module a `ptrain_prefix_bias(prefix_len, query_len,
    key_len)` returning those columns; without one the prefix gets no positional bias (zeros), which is also what
    T5's cross-attention uses for every key.
    """
    make = getattr(module, "ptrain_prefix_bias", None)
    if make is None:
        extra = bias.new_zeros(*bias.shape[:-1], prefix_len)
    else:
        extra = make(prefix_len, bias.shape[-2], bias.shape[-1], offset).to(bias.dtype)
        extra = extra.expand(*bias.shape[:-1], prefix_len)
    return torch.cat([extra, bias], dim=-1)


#: transformers releases whose attention calls the wrapper below was checked against (tests/test_compat.py reads
#: every kwarg that reaches it on the installed release and fails, naming it, on one not listed here)
CHECKED_TRANSFORMERS = ">=5.23,<5.25"
#: kwargs the CPU dropout path implements or may ignore (seen on the checked releases)
FAST_PATH_KWARGS = frozenset({"dropout", "scaling", "is_causal", "position_ids", "use_cache", "cache_position",
                              "output_attentions", "output_hidden_states", "encoder_hidden_states"})
#: kwargs seen on the checked releases for features the CPU dropout path does not implement: with a value, the call
#: goes to the stock function. So does any kwarg in neither set (a later release's feature): an allow-list, so a new
#: feature costs speed, never correctness.
STOCK_ONLY_KWARGS = frozenset({"position_bias", "softcap", "cache", "s_aux", "sliding_window", "sinks"})


def cpu_dropout_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, dropout: float, scaling: float | None = None,
                          is_causal: bool | None = None) -> tuple[torch.Tensor, None]:
    """SDPA's math path with `ptrain.dropout`'s cheaper masks on the attention probabilities.

    On a CPU, `scaled_dot_product_attention(dropout_p > 0)` both leaves its fused kernel and draws one float per
    probability; with a frozen backbone that keeps its dropout this was a third of a MiniLM prefix-tuning step.
    Same conventions as transformers' `sdpa_attention_forward`: grouped KV heads repeated, `is_causal` from the
    call or the module (top-left aligned, keys cropped to the queries as the stock function does), boolean or
    additive masks, output [batch, query, heads, head_dim]. The query is scaled before the product and the
    dropout's 1 / (1 - p) applied to the output: the same values up to rounding, with two fewer passes over the
    scores each way (with MiniLM's 32-wide heads the scores are 4x larger than the output).
    """
    from ptrain.dropout import keep_mask, keep_scale

    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    q_len = query.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(causal) and q_len > 1 and attention_mask is None
    if causal:
        key, value = key[:, :, :q_len], value[:, :, :q_len]
        attention_mask = torch.ones(q_len, q_len, dtype=torch.bool, device=query.device).tril()
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    # both scalings act on [.., queries, head_dim] tensors, never on the larger [.., queries, keys] scores
    scores = torch.matmul(query * scale, key.transpose(-1, -2))
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = DroppedProbsTimesValue.apply(probs, keep_mask(probs.shape, dropout, probs.device), value)
    return out.mul_(keep_scale(dropout)).transpose(1, 2).contiguous(), None


class DroppedProbsTimesValue(torch.autograd.Function):
    """(probs where keep, else 0) @ value, saving the mask rather than the dropped probabilities.

    Autograd would keep the dropped [batch, heads, queries, keys] probabilities for the value gradient, beside
    the probabilities softmax already keeps; this recomputes them from those two in the backward pass (one
    elementwise pass), which saves one score-sized float tensor per layer: ~7 MB a MiniLM layer at batch 8.
    """

    @staticmethod
    def forward(ctx, probs: torch.Tensor, keep: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(probs, keep, value)
        return torch.matmul(masked(probs, keep), value)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple:
        probs, keep, value = ctx.saved_tensors
        grad_probs = grad_value = None
        if ctx.needs_input_grad[0]:
            grad_probs = masked(torch.matmul(grad, value.transpose(-1, -2)), keep)
        if ctx.needs_input_grad[2]:
            grad_value = torch.matmul(masked(probs, keep).transpose(-1, -2), grad)
        return grad_probs, None, grad_value


def _fast_dropout_applies(module: torch.nn.Module, base: str, query: torch.Tensor, kwargs: dict) -> bool:
    if not (base == "sdpa" and 0.0 < kwargs.get("dropout", 0.0) < 1.0 and query.device.type == "cpu"
            and getattr(module, "ptrain_fast_dropout", False) and not kwargs.get("output_attentions")):
        return False
    return all(name in FAST_PATH_KWARGS or value is None or value is False for name, value in kwargs.items())


def _make(base: str) -> Callable:
    def prefixed_attention(module, query, key, value, attention_mask, **kwargs):
        prefixes = kwargs.pop(PREFIX_KWARG, None)
        masks = kwargs.pop(PREFIX_MASK_KWARG, None) or {}
        offset = kwargs.pop(PREFIX_OFFSET_KWARG, 0)
        site = prefix_site(module)
        if prefixes and site in prefixes:
            pk, pv = prefixes[site]
            if pk.shape[0] != key.shape[0]:  # one shared prefix for a batch (generation builds it once)
                pk = pk.expand(key.shape[0], -1, -1, -1)
                pv = pv.expand(key.shape[0], -1, -1, -1)
            attention_mask = widen_mask(
                attention_mask, pk.shape[2], query.shape[2], key.shape[2],
                bool(getattr(module, "is_causal", False)), query, masks.get(site),
            )
            if kwargs.get("position_bias") is not None:
                kwargs["position_bias"] = widen_position_bias(module, kwargs["position_bias"], pk.shape[2], offset)
            key = torch.cat([pk.to(key.dtype), key], dim=2)
            value = torch.cat([pv.to(value.dtype), value], dim=2)
        if _fast_dropout_applies(module, base, query, kwargs):
            return cpu_dropout_attention(module, query, key, value, attention_mask, kwargs["dropout"],
                                         kwargs.get("scaling"), kwargs.get("is_causal"))
        return _stock_function(module, base)(module, query, key, value, attention_mask, **kwargs)

    prefixed_attention.__name__ = f"ptrain_{base}_attention"
    return prefixed_attention


def register() -> None:
    """Idempotent: make `ptrain_sdpa` / `ptrain_eager` valid `attn_implementation` names."""
    masks = {"sdpa": sdpa_mask, "eager": eager_mask}
    for base in BASE_IMPLEMENTATIONS:
        name = wrapped_name(base)
        if name not in ALL_ATTENTION_FUNCTIONS:
            AttentionInterface.register(name, _make(base))
            AttentionMaskInterface.register(name, masks[base])


register()
