"""PromptedModel = backbone ∘ prompt ∘ head: a plain nn.Module, usable without Lightning."""

from __future__ import annotations

import torch
from torch import nn

from ptrain.backbones.base import Backbone
from ptrain.prompts.base import PromptModule


class PositionBudgetError(ValueError):
    """A prompt would push real tokens past the backbone's position embeddings."""


class PromptedModel(nn.Module):
    def __init__(
        self,
        backbone: Backbone,
        head: nn.Module,
        prompt: PromptModule | None = None,
        train_backbone: bool = False,
        backbone_dropout: bool = True,
    ) -> None:
        super().__init__()
        self.backbone_dropout = backbone_dropout
        self.backbone = backbone
        self.prompt = prompt
        self.head = head
        self.train_backbone = train_backbone
        backbone.requires_grad_(train_backbone)

    def train(self, mode: bool = True) -> PromptedModel:
        """A frozen backbone keeps its dropout in training only with `backbone_dropout` (the official setting);
        without it, its features are deterministic and no dropout masks are drawn."""
        super().train(mode)
        if mode and not self.train_backbone and not self.backbone_dropout:
            self.backbone.eval()
        return self

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        contribution = None if self.prompt is None else self.prompt(input_ids.shape[0])
        hidden = self.backbone(input_ids, attention_mask, token_type_ids, contribution)
        return self.head(hidden, attention_mask)

    def check_position_budget(self, max_length: int) -> None:
        """Fail before training if `max_length` real tokens plus the prompt's positions do not fit."""
        budget = self.backbone.position_budget()
        if budget is None or self.prompt is None:
            return
        cost = self.prompt.position_cost
        if self.prompt.kind == "prefix" and not self.backbone.shift_positions:
            cost = 0  # prefix slots take no absolute positions when real tokens stay at 0..T-1
        if max_length + cost > budget:
            hint = ", or set method.shift_positions=false" if self.prompt.kind == "prefix" else ""
            raise PositionBudgetError(
                f"task.max_length={max_length} plus method.length={cost} virtual positions = {max_length + cost} "
                f"exceeds the backbone's {budget} positions; lower task.max_length or method.length{hint}"
            )

    def parameter_summary(self) -> dict[str, float | int]:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        return {
            "trainable_params": trainable,
            "total_params": total,
            "trainable_share": trainable / total,
            "prompt_bytes": 0 if self.prompt is None else self.prompt.prompt_bytes(),
        }
