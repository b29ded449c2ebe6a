"""One batch, a prompt per row: the `PromptOutput` of a mixed batch, built from each prompt's own output.

A prompt bank serves many tasks on one frozen backbone; a batch whose rows belong to different tasks runs in one
forward pass. Each row gets its own prompt's input embeddings or layer prefixes, padded to the batch's longest
on the left of the virtual block and masked (`PromptOutput.embeds_mask` / `kv_mask`), so the backbone adapters and
the attention functions see an ordinary prompted batch with some virtual columns switched off per row. Prompts of
any kind, length and depth mix: a row of a depth-limited prefix has every column masked in the layers its prompt
leaves out, and a row of an input prompt has no prefix columns at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ptrain.prompts.base import PromptOutput


def stack_prompts(parts: Sequence[PromptOutput | None], rows: Sequence[int] | torch.Tensor) -> PromptOutput:
    """The batch's prompt: row i gets `parts[rows[i]]` (each part built for one row, e.g. `module(1)`).

    A part may be None or empty (a task trained without a prompt: `head`). When every row has the same part the
    result is that part expanded, with no masks, which is exactly what training computes.
    """
    rows = torch.as_tensor(rows, dtype=torch.long)
    used = sorted(set(rows.tolist()))
    if len(used) == 1:
        return _expand(parts[used[0]] or PromptOutput(), len(rows))
    # only the prompts the rows use: an unused input prompt would add masked columns to every row
    parts = [(parts[i] or PromptOutput()) if i in used else PromptOutput() for i in range(len(parts))]
    embeds, embeds_mask = _stack_embeds(parts, rows)
    kv, kv_mask = _stack_prefixes(parts, rows)
    return PromptOutput(embeds=embeds, kv=kv, embeds_mask=embeds_mask, kv_mask=kv_mask)


def _expand(part: PromptOutput, batch: int) -> PromptOutput:
    embeds = None if part.embeds is None else part.embeds.expand(batch, -1, -1)
    kv = {layer: (k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for layer, (k, v) in part.kv.items()}
    return PromptOutput(embeds=embeds, kv=kv)


def _left_padded(block: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    """`block` with zeros in front along `dim`, to `length` columns."""
    missing = length - block.shape[dim]
    if missing == 0:
        return block
    shape = list(block.shape)
    shape[dim] = missing
    return torch.cat([block.new_zeros(shape), block], dim=dim)


def _mask(lengths: list[int], width: int, device: torch.device) -> torch.Tensor:
    """[B, width] bool: the last `lengths[i]` columns of row i are True (a left-padded block)."""
    columns = torch.arange(width, device=device)[None, :]
    return columns >= (width - torch.tensor(lengths, device=device))[:, None]


def _stack_embeds(parts: list[PromptOutput], rows: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    with_embeds = [p.embeds for p in parts if p.embeds is not None]
    if not with_embeds:
        return None, None
    width = max(e.shape[1] for e in with_embeds)
    like = with_embeds[0]
    blocks, lengths = [], []
    for index in rows.tolist():
        part = parts[index].embeds
        if part is None:
            blocks.append(like.new_zeros(1, width, like.shape[-1]))
            lengths.append(0)
        else:
            blocks.append(_left_padded(part[:1].to(like.dtype), width, dim=1))
            lengths.append(part.shape[1])
    return torch.cat(blocks), _mask(lengths, width, like.device)


def _stack_prefixes(parts: list[PromptOutput], rows: torch.Tensor) -> tuple[dict, dict]:
    layers = sorted({layer for p in parts for layer in p.kv})
    if not layers:
        return {}, {}
    width = max(p.prefix_length for p in parts)
    like = next(k for p in parts for k, _ in p.kv.values())
    empty = like.new_zeros(1, like.shape[1], width, like.shape[3])
    kv, kv_mask = {}, {}
    for layer in layers:
        keys, values, lengths = [], [], []
        for index in rows.tolist():
            pair = parts[index].kv.get(layer)
            if pair is None:
                keys.append(empty)
                values.append(empty)
                lengths.append(0)
            else:
                keys.append(_left_padded(pair[0][:1].to(like.dtype), width, dim=2))
                values.append(_left_padded(pair[1][:1].to(like.dtype), width, dim=2))
                lengths.append(pair[0].shape[2])
        kv[layer] = (torch.cat(keys), torch.cat(values))
        kv_mask[layer] = _mask(lengths, width, like.device)
    return kv, kv_mask


__all__ = ["stack_prompts"]
