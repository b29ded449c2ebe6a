"""Task heads: small trainable layers on top of real-token hidden states (virtual tokens never reach them)."""

from __future__ import annotations

import torch
from torch import nn


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """`first`: the first real token ([CLS]); `last`: the last real token; `mean`: masked mean. `first` and
    `last` hold whatever side is padded."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if how == "first":
        return hidden[rows, attention_mask.long().argmax(dim=1)]  # argmax: the first maximum, the first 1
    if how == "last":
        positions = torch.arange(attention_mask.shape[1], device=hidden.device)
        last = (attention_mask.long() * positions).argmax(dim=1)
        return hidden[rows, last]
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


class PairHead(nn.Module):
    """Siamese pairs: rows 2i and 2i+1 are example i's two segments, each encoded alone. Pool each, then
    classify (u, v, |u - v|, u * v) (Reimers & Gurevych 2019): logits [B, num_labels]."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1, pooling: str = "mean") -> None:
        super().__init__()
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(4 * hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = pool(hidden, attention_mask, self.pooling)
        if pooled.shape[0] % 2:
            raise ValueError(f"the pair head reads rows two by two; got {pooled.shape[0]} rows")
        u, v = pooled[0::2], pooled[1::2]
        return self.classifier(self.dropout(torch.cat([u, v, (u - v).abs(), u * v], dim=-1)))


class TokenHead(nn.Module):
    """Dropout, linear per token: logits [B, T, num_labels], aligned with the real input tokens."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(hidden))


class LMHead(nn.Module):
    """The backbone's own frozen language-model head, for tasks that score or generate tokens.

    Kind `lm` (verbalisers): vocabulary logits [B, V] at the answer position, the state from which the model
    predicts the token after the input (decoders: the last real token; T5: the decoder's first step); the task
    picks its label words' columns. Kind `generate`: teacher-forced logits [B, L, V] aligned with the target
    tokens. The head has no weights of its own: `PromptedModel` attaches the backbone's `lm_logits`, so the
    output layer stays where it is (frozen, tied or not) and is never counted twice.
    """

    #: which states the head reads: "answer" ([B, H]) or "targets" ([B, L, H]); other heads read "hidden"
    needs: str

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.needs = "answer" if kind == "lm" else "targets"
        self._lm_logits = None

    def attach(self, lm_logits) -> None:
        self._lm_logits = lm_logits

    def forward(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self._lm_logits is None:
            raise RuntimeError("LMHead has no LM head attached (PromptedModel attaches the backbone's)")
        return self._lm_logits(states)


#: head kinds that read the backbone's LM head (the backbone must be loaded with it: `model.lm_head`)
LM_HEAD_KINDS = ("lm", "generate")


#: how a head's linear layer starts: torch's nn.Linear default, or as HF models start their task heads
HEAD_INITS = ("torch", "normal")


def build_head(kind: str, hidden_size: int, num_labels: int, dropout: float, pooling: str,
               init: str = "torch", init_std: float = 0.02) -> nn.Module:
    """`init="normal"`: weights N(0, init_std) and zero bias, as `BertForTokenClassification` and the other HF task
    models start theirs (`init_std` = the backbone config's `initializer_range`); `"torch"`: nn.Linear's uniform
    weights and non-zero bias."""
    if init not in HEAD_INITS:
        raise ValueError(f"head_init must be one of {', '.join(HEAD_INITS)}; got {init!r}")
    if kind in ("sequence", "choice"):
        head: nn.Module = SequenceHead(hidden_size, 1 if kind == "choice" else num_labels, dropout, pooling)
    elif kind == "pair":
        head = PairHead(hidden_size, num_labels, dropout, pooling)
    elif kind == "token":
        head = TokenHead(hidden_size, num_labels, dropout)
    else:
        head = None
    if head is not None:
        if init == "normal":
            for layer in head.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.normal_(layer.weight, 0.0, init_std)
                    nn.init.zeros_(layer.bias)
        return head
    if kind in LM_HEAD_KINDS:
        return LMHead(kind)
    raise ValueError(f"unknown head kind {kind!r}; expected sequence, choice, pair, token, lm or generate")
