"""DeBERTa-v2/v3: disentangled relative attention with prefix keys.

HF's DeBERTa attention takes neither a cache nor kwargs, so we give each `DisentangledSelfAttention` a
subclass whose forward reads its layer's prefix from a slot the backbone fills before each call (the slot
keeps the last prefixes so that gradient-checkpoint recomputation sees the same tensors).

Position convention: the P prefix slots sit at positions 0..P-1 and real token i at P+i, so the relative
distance query->key is (P+i) - j for every key j. This is exactly what the full model computes when the
prefix comes from P real tokens in front of the input, which the tests check; both the content->position
and the position->content terms are indexed with the same bucketed distance, as in HF's implementation.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.deberta_v2 import modeling_deberta_v2 as hf

from ptrain.backbones.base import Backbone
from ptrain.backbones.lm import right_aligned_order
from ptrain.prompts.base import PromptOutput


class PrefixSlot:
    """Holds the current per-layer prefixes for the patched attention modules."""

    def __init__(self) -> None:
        self.kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        #: a mixed batch's per-row prefix masks (layer -> [B, P] bool); empty: every row has its layer's prefix
        self.masks: dict[int, torch.Tensor] = {}
        #: masked input-prompt columns before a prefix row's text in a mixed batch (attention.PREFIX_OFFSET_KWARG)
        self.offset = 0


class PrefixDisentangledSelfAttention(hf.DisentangledSelfAttention):
    ptrain_slot: PrefixSlot
    layer_idx: int

    def forward(self, hidden_states, attention_mask, output_attentions=False, query_states=None,
                relative_pos=None, rel_embeddings=None):
        prefix = self.ptrain_slot.kv.get(self.layer_idx)
        if prefix is None:
            return super().forward(hidden_states, attention_mask, output_attentions, query_states,
                                   relative_pos, rel_embeddings)
        heads = self.num_attention_heads
        pk, pv = prefix
        batch, _, plen, dim = pk.shape
        if query_states is None:
            query_states = hidden_states
        query = self.transpose_for_scores(self.query_proj(query_states), heads)
        key = self.transpose_for_scores(self.key_proj(hidden_states), heads)
        value = self.transpose_for_scores(self.value_proj(hidden_states), heads)
        key = torch.cat([pk.reshape(batch * heads, plen, dim).to(key.dtype), key], dim=1)
        value = torch.cat([pv.reshape(batch * heads, plen, dim).to(value.dtype), value], dim=1)
        qlen, klen = query.size(1), key.size(1)

        scale_factor = 1 + ("c2p" in self.pos_att_type) + ("p2c" in self.pos_att_type)
        scale = hf.scaled_size_sqrt(query, scale_factor)
        scores = torch.bmm(query, key.transpose(-1, -2) / scale.to(dtype=query.dtype))
        if self.relative_attention:
            scores = scores + self._prefixed_bias(query, key, self.pos_dropout(rel_embeddings), scale_factor, plen)
        scores = scores.view(-1, heads, qlen, klen)

        mask = attention_mask.bool()
        rows = self.ptrain_slot.masks.get(self.layer_idx)
        if rows is None:
            visible = torch.ones(*mask.shape[:-1], plen, dtype=torch.bool, device=mask.device)
        else:
            visible = rows.to(mask.device)[:, None, None, :].expand(*mask.shape[:-1], plen)
        mask = torch.cat([visible, mask], dim=-1)
        scores = scores.masked_fill(~mask, torch.finfo(query.dtype).min)
        probs = self.dropout(nn.functional.softmax(scores, dim=-1))
        context = torch.bmm(probs.view(-1, qlen, klen), value)
        context = context.view(-1, heads, qlen, context.size(-1)).permute(0, 2, 1, 3).contiguous()
        context = context.view(*context.shape[:-2], -1)
        return (context, probs if output_attentions else None)

    def _prefixed_bias(self, query, key, rel_embeddings, scale_factor, plen):
        qlen, klen, heads = query.size(-2), key.size(-2), self.num_attention_heads
        q_pos = torch.arange(plen, plen + qlen, device=query.device)
        k_pos = torch.arange(klen, device=query.device)
        k_pos[:plen] += self.ptrain_slot.offset
        rel = q_pos[:, None] - k_pos[None, :]
        if self.position_buckets > 0 and self.max_relative_positions > 0:
            rel = hf.make_log_bucket_position(rel, self.position_buckets, self.max_relative_positions)
        span = self.pos_ebd_size
        index = torch.clamp(rel.long() + span, 0, span * 2 - 1)
        rel_embeddings = rel_embeddings[0 : span * 2, :].unsqueeze(0)
        repeat = query.size(0) // heads
        if self.share_att_key:
            pos_query = self.transpose_for_scores(self.query_proj(rel_embeddings), heads).repeat(repeat, 1, 1)
            pos_key = self.transpose_for_scores(self.key_proj(rel_embeddings), heads).repeat(repeat, 1, 1)
        else:
            if "c2p" in self.pos_att_type:
                pos_key = self.transpose_for_scores(self.pos_key_proj(rel_embeddings), heads).repeat(repeat, 1, 1)
            if "p2c" in self.pos_att_type:
                pos_query = self.transpose_for_scores(self.pos_query_proj(rel_embeddings), heads).repeat(
                    repeat, 1, 1)
        score = 0
        if "c2p" in self.pos_att_type:
            c2p = torch.bmm(query, pos_key.transpose(-1, -2))
            c2p = torch.gather(c2p, dim=-1, index=index.expand(query.size(0), qlen, klen))
            score = score + c2p / hf.scaled_size_sqrt(pos_key, scale_factor).to(dtype=c2p.dtype)
        if "p2c" in self.pos_att_type:
            p2c = torch.bmm(key, pos_query.transpose(-1, -2))
            p2c = torch.gather(p2c, dim=-1, index=index.T.expand(query.size(0), klen, qlen)).transpose(-1, -2)
            score = score + p2c / hf.scaled_size_sqrt(pos_query, scale_factor).to(dtype=p2c.dtype)
        return score


class DebertaV2Backbone(Backbone):
    model_types = ("deberta-v2",)

    def __init__(self, model: nn.Module, shift_positions: bool = True) -> None:
        super().__init__(model, shift_positions)
        self.slot = PrefixSlot()
        for layer_idx, layer in enumerate(model.encoder.layer):
            attention = layer.attention.self
            attention.__class__ = PrefixDisentangledSelfAttention
            attention.ptrain_slot = self.slot
            attention.layer_idx = layer_idx

    def position_budget(self) -> int | None:
        return self.config.max_position_embeddings if self.config.position_biased_input else None

    def position_ids(self, input_ids: torch.Tensor, shift: int) -> torch.Tensor | None:
        return super().position_ids(input_ids, shift) if self.config.position_biased_input else None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, prompt: PromptOutput | None = None) -> torch.Tensor:
        """Relative positions count columns: left padding would sit between a prompt (or prefix) and the text and
        change their distance per row, so left-padded rows are right-aligned for the call and put back after."""
        if not bool((attention_mask[:, 0] == 0).any()):
            return super().forward(input_ids, attention_mask, token_type_ids, prompt)
        order = right_aligned_order(attention_mask)
        hidden = super().forward(input_ids.gather(1, order), attention_mask.gather(1, order),
                                 None if token_type_ids is None else token_type_ids.gather(1, order), prompt)
        back = torch.argsort(order, dim=1)
        return hidden.gather(1, back[..., None].expand(-1, -1, hidden.shape[-1]))

    def run(self, inputs: dict, prompt: PromptOutput) -> torch.Tensor:
        self.slot.kv, self.slot.masks = prompt.kv, prompt.kv_mask
        self.slot.offset = prompt.input_length if prompt.kv else 0
        return self.model(**inputs).last_hidden_state
