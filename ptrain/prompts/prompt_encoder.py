"""P-Tuning v1 (Liu et al. 2021): virtual-token embeddings passed through a small encoder.

The reparameterisation couples the virtual tokens during training; at inference only its output
(the materialised prompt) is needed. Layer shapes follow HF PEFT's `PromptEncoder`, so the two can
be checked against each other with the same weights; with `encoder_hidden = H // 2` and the LSTM
encoder this is also the original P-Tuning v1 prompt encoder (bi-LSTM, then a 2-layer MLP).
"""

from __future__ import annotations

from torch import nn

from ptrain.prompts.base import PromptModule, PromptOutput


class PromptEncoder(PromptModule):
    def __init__(
        self,
        length: int,
        hidden_size: int,
        encoder: str = "lstm",
        encoder_hidden: int | None = None,
        lstm_layers: int = 2,
        lstm_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.length = length
        self.encoder_type = encoder
        self.embedding = nn.Embedding(length, hidden_size)
        if encoder == "lstm":
            inner = encoder_hidden or hidden_size // 2
            self.lstm_head = nn.LSTM(
                hidden_size, inner, num_layers=lstm_layers, dropout=lstm_dropout,
                bidirectional=True, batch_first=True,
            )
            self.mlp_head = nn.Sequential(
                nn.Linear(2 * inner, 2 * inner), nn.ReLU(), nn.Linear(2 * inner, hidden_size)
            )
        elif encoder == "mlp":
            inner = encoder_hidden or hidden_size
            self.mlp_head = nn.Sequential(
                nn.Linear(hidden_size, inner), nn.ReLU(),
                nn.Linear(inner, inner), nn.ReLU(),
                nn.Linear(inner, hidden_size),
            )
        else:
            raise ValueError(f"method.encoder must be 'lstm' or 'mlp'; got {encoder!r}")

    def forward(self, batch_size: int) -> PromptOutput:
        # The encoder runs once per step on [1, P, H]; every example shares its output.
        x = self.embedding.weight.unsqueeze(0)
        if self.encoder_type == "lstm":
            x = self.lstm_head(x)[0]
        prompt = self.mlp_head(x)
        return PromptOutput(embeds=prompt.expand(batch_size, -1, -1))
