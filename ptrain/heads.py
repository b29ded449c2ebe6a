"""Task heads: small trainable layers on top of real-token hidden states (virtual tokens never reach them)."""

from __future__ import annotations

import torch
from torch import nn


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """`first`: the first real token ([CLS]); `last`: the last real token, whatever side is padded;
    `mean`: masked mean."""
    if how == "first":
        return hidden[:, 0]
    if how == "last":
        positions = torch.arange(attention_mask.shape[1], device=hidden.device)
        last = (attention_mask.long() * positions).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if how == "mean":
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
    raise ValueError(f"task.pooling must be first, last or mean; got {how!r}")


class SequenceHead(nn.Module):
    """Pool, dropout, linear: logits [B, num_labels]. With num_labels=1 it scores choices."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1, pooling: str = "first") -> None:
        super().__init__()
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(pool(hidden, attention_mask, self.pooling)))


class TokenHead(nn.Module):
    """Dropout, linear per token: logits [B, T, num_labels], aligned with the real input tokens."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(hidden))


def build_head(kind: str, hidden_size: int, num_labels: int, dropout: float, pooling: str) -> nn.Module:
    if kind in ("sequence", "choice"):
        return SequenceHead(hidden_size, 1 if kind == "choice" else num_labels, dropout, pooling)
    if kind == "token":
        return TokenHead(hidden_size, num_labels, dropout)
    raise ValueError(f"unknown head kind {kind!r}; expected sequence, choice or token")
