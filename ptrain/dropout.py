"""Cheaper dropout on CPU: keep masks drawn as 15-bit integers instead of torch's per-element Bernoulli.

Why: on a CPU, `torch.nn.functional.dropout` spends most of its time drawing one float per element (~10 ns each
on 2 cores), and `scaled_dot_product_attention` with `dropout_p > 0` leaves its fused kernel for the math path.
A frozen backbone that keeps its dropout (the official P-Tuning v2 setting) pays this in every layer of every
step, and it dominated the forward pass of a MiniLM prefix-tuning step (benchmarks/speed.py). Here one 32-bit
random word gives two 15-bit uniforms, each compared with round(p * 2^15): the same Bernoulli(1 - p) keep
decision with p rounded to a multiple of 2^-15 (0.1 -> 0.100006), from torch's seeded CPU generator, so runs
stay reproducible. Kept values are scaled by 1 / (1 - p) as usual; the backward pass selects with the same
saved boolean mask.

GPU tensors always use torch's own dropout (Philox, fused into SDPA): nothing to gain there.
"""

from __future__ import annotations

import math
import sys

import torch
from torch import nn

#: resolution of the keep threshold: p is rounded to a multiple of 2**-BITS
BITS = 15
IMPLEMENTATIONS = ("fast", "torch")


def threshold(p: float) -> int:
    """Integer threshold t with P(uniform 15-bit value < t) = t / 2^15 ≈ p."""
    return min(1 << BITS, max(0, round(p * (1 << BITS))))


def effective_p(p: float) -> float:
    """The drop probability actually used for `p` (p rounded to a multiple of 2^-15)."""
    return threshold(p) / (1 << BITS)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """A boolean mask of `shape`, each element True with probability 1 - effective_p(p), independently.

    `random_()` on int32 draws uniform integers in [0, 2^31): viewed as int16 pairs (little endian), the low half
    is uniform over [-2^15, 2^15) and the high half over [0, 2^15). Each half is compared with its own threshold.
    """
    n = math.prod(shape)
    t = threshold(p)
    if t == 0 or t >= 1 << BITS:
        return torch.full(tuple(shape), t == 0, dtype=torch.bool, device=device)
    words = torch.empty((n + 1) // 2, dtype=torch.int32, device=device).random_()
    pairs = words.view(torch.int16).view(-1, 2)
    keep = torch.empty(pairs.shape, dtype=torch.bool, device=device)
    low, high = (0, 1) if sys.byteorder == "little" else (1, 0)
    torch.ge(pairs[:, low], 2 * t - (1 << BITS), out=keep[:, low])
    torch.ge(pairs[:, high], t, out=keep[:, high])
    return keep.view(-1)[:n].view(shape)


def keep_scale(p: float) -> float:
    """The factor kept values are multiplied by: 1 / (1 - effective_p(p))."""
    return 1.0 / (1.0 - effective_p(p))


def masked(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """x where `keep`, else 0, unscaled: one pass forward and one backward, saving only the boolean mask.

    `x * keep` would first convert the mask to x's dtype (an extra pass each way); `torch.where` reads it as is.
    """
    return torch.where(keep, x, 0.0)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """`torch.nn.functional.dropout` with cheaper masks on CPU; torch's own everywhere else."""
    if not training or p <= 0.0 or x.numel() == 0:
        return x
    if x.device.type != "cpu":
        return torch.nn.functional.dropout(x, p, True)
    if p >= 1.0:
        return x * 0.0
    return masked(x, keep_mask(x.shape, p, x.device)).mul_(keep_scale(p))


class FastDropout(nn.Dropout):
    """`nn.Dropout` drawing its CPU masks with `keep_mask` (same `p`, same `isinstance`, same state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def install(model: nn.Module) -> int:
    """Replace every plain `nn.Dropout` in `model` by a `FastDropout` with the same p; returns how many.

    Modules that owned one are marked `ptrain_fast_dropout = True`: for attention modules this routes a
    CPU training call with attention dropout through `attention.cpu_dropout_attention`.
    """
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p).train(child.training))  # keep eval mode
                parent.ptrain_fast_dropout = True
                count += 1
    return count
