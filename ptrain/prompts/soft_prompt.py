"""Lester et al. (2021) prompt tuning: free embeddings placed before the input."""

from __future__ import annotations

import torch
from torch import nn

from ptrain.prompts.base import PromptModule, PromptOutput


class SoftPrompt(PromptModule):
    """`length` trainable vectors in the word-embedding space, shared by every example.

    Init choices follow the paper: `random` draws U(-0.5, 0.5); `vocab` copies randomly sampled rows of
    the frozen vocabulary (the paper sampled common tokens); `text` copies the embeddings of a given
    string's tokens, repeated or cut to `length` (as in HF PEFT's TEXT init).
    """

    def __init__(
        self,
        length: int,
        hidden_size: int,
        init: str = "random",
        word_embeddings: torch.Tensor | None = None,
        init_token_ids: list[int] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.length = length
        self.embedding = nn.Embedding(length, hidden_size)
        with torch.no_grad():
            self.embedding.weight.copy_(_initial_rows(length, hidden_size, init, word_embeddings,
                                                      init_token_ids, seed))

    def forward(self, batch_size: int) -> PromptOutput:
        return PromptOutput(embeds=self.embedding.weight.unsqueeze(0).expand(batch_size, -1, -1))


def _initial_rows(
    length: int,
    hidden_size: int,
    init: str,
    word_embeddings: torch.Tensor | None,
    token_ids: list[int] | None,
    seed: int,
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if init == "random":
        return torch.rand(length, hidden_size, generator=generator) - 0.5
    if word_embeddings is None:
        raise ValueError(f"method.init={init!r} needs the backbone's word embeddings")
    if init == "vocab":
        rows = torch.randint(0, word_embeddings.shape[0], (length,), generator=generator)
        return word_embeddings[rows].detach().float().cpu()
    if init == "text":
        if not token_ids:
            raise ValueError("method.init=text needs a non-empty method.init_text")
        repeats = -(-length // len(token_ids))
        rows = torch.tensor((token_ids * repeats)[:length])
        return word_embeddings[rows].detach().float().cpu()
    raise ValueError(f"method.init must be one of random, vocab, text; got {init!r}")
