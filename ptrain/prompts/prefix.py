"""P-Tuning v2 (Liu et al. 2021): trainable key/value prefixes inside every (or a chosen set of) layer.

Layout of the flat prefix vector, per virtual token: `[layer_0 key, layer_0 value, layer_1 key, ...]`,
each of `kv_heads * head_dim` values. It is the layout of the official P-tuning-v2 code and of HF PEFT's
`PrefixEncoder`, so weights move between them unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ptrain.prompts.base import BackboneGeometry, PromptModule, PromptOutput


class DeepPrefix(PromptModule):
    """Per-layer prefixes, optionally reparameterised by the official two-layer MLP.

    `reparam="none"`: an `Embedding(P, 2 * L' * kv_dim)` holds the prefixes directly.
    `reparam="mlp"`: `Embedding(P, H)` -> Linear(H, reparam_hidden) -> tanh -> Linear(reparam_hidden,
    2 * L' * kv_dim) (the official `prefix_projection`). Here L' is the number of layers given a prefix.
    Dropout is applied to the batch-expanded prefixes, one mask per example, as in the official code.
    """

    def __init__(
        self,
        length: int,
        geometry: BackboneGeometry,
        layers: Sequence[int] | None = None,
        reparam: str = "none",
        reparam_hidden: int = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.kind = "prefix"
        n = geometry.num_layers
        chosen = list(range(n)) if layers is None else [int(i) for i in layers]
        bad = [i for i in chosen if not -n <= i < n]
        if bad:
            raise ValueError(f"method.layers has {bad}, outside the backbone's {n} layers (0..{n - 1})")
        self.layer_ids = sorted({i % n for i in chosen})  # after wrapping: -1 and n-1 are one layer
        self.length = length
        self.kv_heads, self.head_dim = geometry.num_kv_heads, geometry.head_dim
        out = 2 * len(self.layer_ids) * self.kv_heads * self.head_dim
        self.reparam = reparam
        if reparam == "none":
            self.embedding = nn.Embedding(length, out)
            self.transform = None
        elif reparam == "mlp":
            self.embedding = nn.Embedding(length, geometry.hidden_size)
            self.transform = nn.Sequential(
                nn.Linear(geometry.hidden_size, reparam_hidden), nn.Tanh(), nn.Linear(reparam_hidden, out)
            )
        else:
            raise ValueError(f"method.reparam must be 'none' or 'mlp'; got {reparam!r}")
        self.dropout = nn.Dropout(dropout)

    @property
    def position_cost(self) -> int:
        return self.length if self.layer_ids else 0

    def forward(self, batch_size: int) -> PromptOutput:
        if not self.layer_ids or self.length == 0:
            return PromptOutput()
        flat = self.embedding.weight
        if self.transform is not None:
            flat = self.transform(flat)
        # [P, 2L'*kv] -> [B, P, 2L', kv_heads, d] -> [2L', B, kv_heads, P, d]
        x = flat.unsqueeze(0).expand(batch_size, -1, -1)
        x = self.dropout(x).view(batch_size, self.length, 2 * len(self.layer_ids), self.kv_heads, self.head_dim)
        x = x.permute(2, 0, 3, 1, 4)
        return PromptOutput(kv={layer: (x[2 * i], x[2 * i + 1]) for i, layer in enumerate(self.layer_ids)})
