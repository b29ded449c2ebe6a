"""T5: an encoder-decoder with relative position bias, prompted at three kinds of attention site.

T5 attention (transformers 5) calls the attention registry with `**kwargs` and a `position_bias` kwarg, so
prefixes reach `ptrain_sdpa`/`ptrain_eager` as for every other family; nothing in T5 is patched. What is
T5-specific lives here:

Where a prefix goes (`model.prefix_sites`, any of `encoder`, `decoder`, `cross`; default all three):
  - `encoder`: every encoder self-attention layer (what P-tuning v2 does for encoders; PEFT leaves it out);
  - `decoder`: every decoder self-attention layer (PEFT's choice);
  - `cross`: every decoder cross-attention layer, keys/values seen next to the encoder's (Li & Liang's third set).
  Each chosen attention module is a "site", numbered encoder layers first, then decoder self-attention, then
  cross-attention; `BackboneGeometry.num_layers` is the number of sites, so a `DeepPrefix` covers them all
  unchanged and `method.layers` indexes sites. Sites the loaded model lacks are left out: a task without an LM
  head loads the encoder alone (`T5EncoderModel`, hidden states pooled by mean), so only encoder sites remain.

Prefix positions: the P slots sit at relative positions just before the first token (slot m at m - P relative
to token 0), in the encoder and the decoder alike, with the bias from each stack's own relative-bias table. This
is exactly what the model computes when the prefix comes from P real leading tokens, which the tests check;
since T5 positions are relative only, `method.shift_positions` changes nothing here. Cross-attention has no
position bias in T5, and its prefix gets none.

Input prompts (`prompt`, `ptv1`) go in front of the encoder input (Lester et al.'s setting). Since T5's relative
positions count columns, the encoder input is right-aligned first (padding moved to the right, outputs put back
in the caller's order), so a prompt or prefix sits next to the first real token whatever the padding side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from ptrain.backbones.attention import PREFIX_KWARG
from ptrain.backbones.base import prefix_kwargs
from ptrain.backbones.lm import LanguageModelBackbone, expand_prompt, pre_hooks, right_aligned_order
from ptrain.prompts.base import BackboneGeometry, PromptOutput

log = logging.getLogger(__name__)

SITES = ("encoder", "decoder", "cross")


def _prefix_bias(source: nn.Module, prefix_len: int, query_len: int, key_len: int, offset: int = 0) -> torch.Tensor:
    """Relative-bias columns [1, heads, q, P] for prefix slots placed before the first key.

    Queries are the last `query_len` of `key_len` positions (a decoder step with a cache has key_len = past + 1);
    with the prefix in front, query i sits at P + key_len - query_len + i and slot m at m (at `offset` + m in a
    mixed batch whose first `offset` columns are other rows' input prompts, masked for a prefix row).
    """
    device = source.relative_attention_bias.weight.device
    queries = torch.arange(query_len, device=device) + (key_len - query_len) + prefix_len
    slots = torch.arange(prefix_len, device=device) + offset
    relative = slots[None, :] - queries[:, None]
    buckets = source._relative_position_bucket(
        relative, bidirectional=not source.is_decoder, num_buckets=source.relative_attention_num_buckets,
        max_distance=source.relative_attention_max_distance,
    )
    return source.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)


class T5Backbone(LanguageModelBackbone):
    model_types = ("t5",)
    default_pooling = "mean"
    family = "encoder-decoder"

    def __init__(self, model: nn.Module, shift_positions: bool = True, tokenizer: Any = None,
                 prefix_sites: Sequence[str] = SITES) -> None:
        super().__init__(model, shift_positions, tokenizer)
        unknown = sorted(set(prefix_sites) - set(SITES))
        if unknown:
            raise ValueError(f"model.prefix_sites has {unknown}; choose from {', '.join(SITES)}")
        available = [s for s in SITES if s == "encoder" or getattr(model, "decoder", None) is not None]
        self.prefix_sites = [s for s in SITES if s in prefix_sites and s in available]
        dropped = [s for s in prefix_sites if s not in available]
        if dropped:
            log.info("T5 loaded without its decoder (the task needs no LM head): prefix sites %s left out", dropped)
        self.num_sites = self._number_sites()

    @classmethod
    def model_class(cls, lm_head: bool):
        from transformers import AutoModelForSeq2SeqLM, T5EncoderModel

        return AutoModelForSeq2SeqLM if lm_head else T5EncoderModel

    @classmethod
    def options(cls, cfg: dict) -> dict:
        sites = cfg.get("prefix_sites")
        return {"prefix_sites": list(SITES if sites is None else sites)}

    def _attention_modules(self, kind: str) -> list[nn.Module]:
        if kind == "encoder":
            return [block.layer[0].SelfAttention for block in self.model.encoder.block]
        decoder = getattr(self.model, "decoder", None)
        if decoder is None:
            return []
        if kind == "decoder":
            return [block.layer[0].SelfAttention for block in decoder.block]
        return [block.layer[1].EncDecAttention for block in decoder.block]

    def _number_sites(self) -> int:
        site = 0
        for kind in SITES:
            modules = self._attention_modules(kind)
            bias_source = modules[0] if kind != "cross" and modules else None
            for module in modules:
                if kind in self.prefix_sites:
                    module.ptrain_site = site
                    site += 1
                else:
                    module.ptrain_site = None
                if bias_source is not None:
                    module.ptrain_prefix_bias = partial(_prefix_bias, bias_source)
        return site

    # ---- geometry -------------------------------------------------------------------------------
    @property
    def geometry(self) -> BackboneGeometry:
        c = self.config
        return BackboneGeometry(hidden_size=c.d_model, num_layers=self.num_sites, num_heads=c.num_heads,
                                num_kv_heads=c.num_heads, head_dim=c.d_kv)

    def position_budget(self) -> int | None:
        return None  # relative positions only

    def position_ids(self, input_ids: torch.Tensor, shift: int) -> torch.Tensor | None:
        return None

    # ---- encoder --------------------------------------------------------------------------------
    def _encode(self, input_ids, attention_mask, prompt: PromptOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states including any input-prompt positions, and the matching mask (the decoder's view).

        Rows are right-padded first: T5's relative positions come from columns, so left padding would put pads
        between the prompt (or prefix) and the first real token and change their distance per row.
        """
        prompt.check_rows()
        order = right_aligned_order(attention_mask)
        input_ids, mask = input_ids.gather(1, order), attention_mask.gather(1, order)
        inputs, mask = self.embed_with_prompt(input_ids, mask, prompt)
        inputs.update(prefix_kwargs(prompt, offset=prompt.input_length))
        return self.model.encoder(attention_mask=mask, **inputs).last_hidden_state, mask

    def forward(self, input_ids, attention_mask, token_type_ids=None, prompt=None) -> torch.Tensor:
        """Encoder hidden states of the real tokens, in the caller's column order (sequence and token heads read
        the encoder)."""
        prompt = prompt or PromptOutput()
        hidden, _ = self._encode(input_ids, attention_mask, prompt)
        hidden = hidden[:, prompt.input_length:]
        back = torch.argsort(right_aligned_order(attention_mask), dim=1)
        return hidden.gather(1, back[..., None].expand(-1, -1, hidden.shape[-1]))

    # ---- decoder --------------------------------------------------------------------------------
    def _decode(self, decoder_ids, encoded, encoder_mask, prompt: PromptOutput) -> torch.Tensor:
        if getattr(self.model, "decoder", None) is None:
            raise ValueError("T5 was loaded without its decoder; load it with model.lm_head=true")
        extra = prefix_kwargs(prompt)
        return self.model.decoder(input_ids=decoder_ids, encoder_hidden_states=encoded,
                                  encoder_attention_mask=encoder_mask, use_cache=False, **extra).last_hidden_state

    def shift_right(self, targets: torch.Tensor) -> torch.Tensor:
        """Decoder inputs for teacher forcing: the start token, then the targets but the last (-100 -> pad)."""
        shifted = targets.new_full(targets.shape, self.config.decoder_start_token_id)
        shifted[:, 1:] = targets[:, :-1]
        return shifted.masked_fill(shifted == -100, self.pad_token_id)

    def answer_state(self, input_ids, attention_mask, token_type_ids=None, prompt=None) -> torch.Tensor:
        """The decoder's first state (after the start token): where T5 predicts the first answer token."""
        prompt = prompt or PromptOutput()
        encoded, mask = self._encode(input_ids, attention_mask, prompt)
        start = input_ids.new_full((input_ids.shape[0], 1), self.config.decoder_start_token_id)
        return self._decode(start, encoded, mask, prompt)[:, 0]

    def target_states(self, input_ids, attention_mask, targets, prompt=None) -> torch.Tensor:
        prompt = prompt or PromptOutput()
        encoded, mask = self._encode(input_ids, attention_mask, prompt)
        return self._decode(self.shift_right(targets), encoded, mask, prompt)

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.has_lm_head:
            raise ValueError("T5 was loaded without its LM head; load it with model.lm_head=true")
        if getattr(self.config, "scale_decoder_outputs", self.config.tie_word_embeddings):
            hidden = hidden * (self.config.d_model ** -0.5)  # as T5ForConditionalGeneration does
        return self.model.get_output_embeddings()(hidden)

    # ---- generation -----------------------------------------------------------------------------
    def generate(self, input_ids, attention_mask, prompt=None, **generate_kwargs) -> torch.Tensor:
        """New tokens [B, N] (the decoder start token dropped). The encoder sees the input prompt in front of
        the input; every encoder and decoder call gets the prefix, with or without the cache."""
        prompt = prompt or PromptOutput()
        order = right_aligned_order(attention_mask)  # see _encode
        input_ids, mask = input_ids.gather(1, order), attention_mask.gather(1, order)
        inputs: dict[str, Any] = {}
        if prompt.input_length:
            shared = expand_prompt(prompt, input_ids.shape[0])
            embeds = self.word_embeddings(input_ids)
            inputs["inputs_embeds"] = torch.cat([shared.embeds.to(embeds.dtype), embeds], dim=1)
            mask = torch.cat([mask.new_ones(mask.shape[0], prompt.input_length), mask], dim=1)
        else:
            inputs["input_ids"] = input_ids
        hooks = []
        if prompt.kv:
            hook = partial(_prefix_hook, prompt=prompt)
            hooks = [(self.model.encoder, hook), (self.model.decoder, hook)]
        with pre_hooks(hooks):
            out = self.model.generate(attention_mask=mask, **inputs, **self._generate_defaults(generate_kwargs))
        return out[:, 1:]


def _prefix_hook(module, args, kwargs, prompt: PromptOutput):
    tensor = kwargs.get("input_ids")
    if tensor is None:
        tensor = kwargs.get("inputs_embeds")
    if tensor is None:
        tensor = args[0]
    kwargs[PREFIX_KWARG] = expand_prompt(prompt, tensor.shape[0]).kv
    return args, kwargs


__all__ = ["SITES", "T5Backbone"]
