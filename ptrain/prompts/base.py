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
    """A prompt's contribution to one forward pass.

    `embeds` are virtual input embeddings placed before the real tokens ([B, P, H]).
    `kv` maps a layer index to that layer's prefix keys and values, each [B, kv_heads, P, head_dim].
    A layer missing from `kv` attends only to real tokens, which is how depth-limited prefixes work.
    """

    embeds: torch.Tensor | None = None
    kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def input_length(self) -> int:
        return 0 if self.embeds is None else self.embeds.shape[1]

    @property
    def prefix_length(self) -> int:
        return next(iter(self.kv.values()))[0].shape[2] if self.kv else 0


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
