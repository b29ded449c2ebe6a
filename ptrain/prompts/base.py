"""What every prompt method hands to a backbone, and the accounting all of them share."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class BackboneGeometry:
    """The shapes a prompt module must match; filled in by the backbone, so prompts never import HF."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int


@dataclass
class PromptOutput:
    """A prompt's contribution to one forward pass, row by row.

    `embeds` are virtual input embeddings placed before the real tokens ([B, P, H]).
    `kv` maps a layer index to that layer's prefix keys and values, each [B, kv_heads, P, head_dim].
    A layer missing from `kv` attends only to real tokens, which is how depth-limited prefixes work.

    Rows may carry different prompts (a prompt bank's mixed batch, `ptrain.prompts.mixed.stack_prompts`): then
    `embeds_mask` [B, P] and `kv_mask` (layer -> [B, P]) say which virtual columns a row really has (True = has).
    A row's prompt is left-padded inside the block, so its virtual tokens sit next to its first real token, as
    when it runs alone: relative positions (DeBERTa, T5) are unchanged, and absolute ones are counted from the
    masks. A mask left out means every row has every column (one prompt for the batch, as in training).
    """

    embeds: torch.Tensor | None = None
    kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    embeds_mask: torch.Tensor | None = None
    kv_mask: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def input_length(self) -> int:
        return 0 if self.embeds is None else self.embeds.shape[1]

    @property
    def prefix_length(self) -> int:
        return next(iter(self.kv.values()))[0].shape[2] if self.kv else 0

    def check_rows(self) -> None:
        """A row's prompt is either input embeddings or layer prefixes (a mixed batch may hold rows of both)."""
        if self.embeds is None or not self.kv:
            return
        both = (self.input_visibility(self.embeds.shape[0], self.embeds.device).bool().any(-1, keepdim=True)
                & (torch.as_tensor(self.prefix_shift(), device=self.embeds.device) > 0))
        if bool(both.any()):
            raise ValueError("a prompt gives either input embeddings or layer prefixes, not both "
                             f"(rows {both.squeeze(-1).nonzero().flatten().tolist()} have both)")

    def input_visibility(self, batch: int, device: torch.device) -> torch.Tensor:
        """[B, P_in] long: 1 where a row has that virtual input token."""
        if self.embeds_mask is not None:
            return self.embeds_mask.long()
        return torch.ones(batch, self.input_length, dtype=torch.long, device=device)

    def prefix_shift(self) -> int | torch.Tensor:
        """How many prefix slots each row has (its real tokens' position shift): an int when every row has the
        batch's prefix, else a [B, 1] tensor (rows without a prefix shift by 0)."""
        if not self.kv_mask:
            return self.prefix_length
        rows = torch.stack([mask.bool() for mask in self.kv_mask.values()]).any(0)  # [B, P]: a slot in any layer
        return rows.long().sum(-1, keepdim=True)


class PromptModule(nn.Module):
    """Base class: a trainable module that, given a batch size, produces a `PromptOutput`."""

    #: number of virtual tokens (input positions for input prompts, prefix slots for deep prefixes)
    length: int
    #: "input" (embeddings before the real tokens) or "prefix" (per-layer keys/values)
    kind: str = "input"

    def forward(self, batch_size: int) -> PromptOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def position_cost(self) -> int:
        """Positions the prompt takes from the backbone's position budget (checked before training)."""
        return self.length

    @torch.no_grad()
    def prompt_bytes(self) -> int:
        """Size of the materialised prompt kept at inference (after any reparameterisation).

        This is what a deployment stores per task; reparameterisation networks are training-only.
        """
        was_training = self.training
        self.eval()
        try:
            out = self(1)
        finally:
            self.train(was_training)
        total = 0 if out.embeds is None else out.embeds.numel() * out.embeds.element_size()
        for k, v in out.kv.values():
            total += k.numel() * k.element_size() + v.numel() * v.element_size()
        return total
