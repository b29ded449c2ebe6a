"""PromptedModel = backbone ∘ prompt ∘ head: a plain nn.Module, usable without Lightning."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ptrain.backbones.base import Backbone
from ptrain.prompts.base import PromptModule

log = logging.getLogger(__name__)


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
        #: which backbone states the head reads: "hidden" (real tokens), "answer" or "targets" (LM heads)
        self.head_needs = getattr(head, "needs", "hidden")
        if self.head_needs != "hidden":
            if not getattr(backbone, "has_lm_head", False):
                from ptrain.backbones import lm_model_types

                raise ValueError(
                    f"a task with head kind {getattr(head, 'kind', self.head_needs)!r} scores tokens through a "
                    f"language-model head, which {type(backbone).__name__} "
                    f"(model_type {backbone.config.model_type!r}) was not loaded with; supported model types: "
                    f"{', '.join(lm_model_types())}, loaded with model.lm_head=true"
                )
            head.attach(backbone.lm_logits)
        checkpointing = any(getattr(m, "gradient_checkpointing", False) for m in backbone.modules())
        if checkpointing and not (train_backbone or backbone_dropout):
            log.warning("gradient checkpointing is inactive: with backbone_dropout=false the frozen backbone runs "
                        "in eval mode, where HF layers do not checkpoint")

    def train(self, mode: bool = True) -> PromptedModel:
        """A frozen backbone keeps its dropout in training only with `backbone_dropout` (the official setting);
        without it, its features are deterministic and no dropout masks are drawn."""
        super().train(mode)
        if mode and not self.train_backbone and not self.backbone_dropout:
            self.backbone.eval()
        return self

    @property
    def needs_targets(self) -> bool:
        """True when `forward` needs `targets` (teacher-forced generation heads)."""
        return self.head_needs == "targets"

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of the head. `targets` ([B, L] token ids, -100 = padding) are read only by heads that need them
        (kind `generate`: logits [B, L, V] aligned with them); other heads ignore the argument."""
        contribution = None if self.prompt is None else self.prompt(input_ids.shape[0])
        if self.head_needs == "answer":
            state = self.backbone.answer_state(input_ids, attention_mask, token_type_ids, contribution)
            return self.head(state, attention_mask)
        if self.head_needs == "targets":
            if targets is None:
                raise ValueError("this head predicts target tokens: pass targets (the batch's labels)")
            states = self.backbone.target_states(input_ids, attention_mask, targets, contribution)
            return self.head(states, attention_mask)
        hidden = self.backbone(input_ids, attention_mask, token_type_ids, contribution)
        return self.head(hidden, attention_mask)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **generate_kwargs: Any) -> torch.Tensor:
        """New tokens [B, N] after each input (HF `generate` keywords apply: max_new_tokens, num_beams, use_cache..).

        The prompt is built once and shared by every row and step; input prompts and prefixes are honoured with
        the cache on or off, and a batch of mixed lengths (padded on either side) gives what each row gives alone.
        """
        if not hasattr(self.backbone, "generate") or not getattr(self.backbone, "has_lm_head", False):
            from ptrain.backbones import lm_model_types

            raise ValueError(f"generation needs a backbone with an LM head; supported model types: "
                             f"{', '.join(lm_model_types())}, loaded with model.lm_head=true")
        prompt = None if self.prompt is None else self.prompt(1)
        return self.backbone.generate(input_ids, attention_mask, prompt, **generate_kwargs)

    def generate_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **generate_kwargs: Any) -> list[str]:
        """`generate`, decoded with the backbone's tokenizer (special tokens dropped)."""
        tokens = self.generate(input_ids, attention_mask, **generate_kwargs)
        return self.backbone.tokenizer.batch_decode(tokens, skip_special_tokens=True)

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
