"""Shared by the decoder / T5 / generation tests: the shipped tiny configs, made "sharp" on request.

The shipped tiny models use HF's small default init, under which a random LM predicts nearly the same token
everywhere; generation tests want varied greedy tokens (so a wrong cache or position shows), so they scale
the init up. Nothing else changes: same shapes, same tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from ptrain.backbones import load_backbone

CONF = Path(__file__).resolve().parents[1] / "ptrain" / "conf" / "model"
DECODERS = ["tiny_gpt2", "tiny_llama", "tiny_qwen"]
SHARP = {"tiny_gpt2": {"initializer_range": 0.3}, "tiny_llama": {"initializer_range": 0.3},
         "tiny_qwen": {"initializer_range": 0.3}, "tiny_t5": {"initializer_factor": 3.0}}


#: test-only members of the Llama family, built from tiny_llama's shapes (no sliding window: the reference
#: computations assume full causal attention)
VARIANTS = {"tiny_mistral": ("tiny_llama", {"model_type": "mistral", "sliding_window": None}),
            "tiny_qwen2": ("tiny_llama", {"model_type": "qwen2"})}


def model_cfg(name: str, sharp: bool = False, attn: str = "sdpa", **extra: Any) -> dict:
    base, changes = VARIANTS.get(name, (name, {}))
    cfg = yaml.safe_load((CONF / f"{base}.yaml").read_text())
    cfg["config"].update(changes)
    if sharp:
        cfg["config"].update(SHARP[base])
    cfg["attn_implementation"] = attn
    config_extra = extra.pop("config", {})
    cfg["config"].update(config_extra)
    cfg.update(extra)
    return cfg


def load(name: str, sharp: bool = False, attn: str = "sdpa", lm_head: bool = True, **extra: Any):
    backbone, tokenizer = load_backbone(model_cfg(name, sharp, attn, lm_head=lm_head, **extra))
    return backbone.eval(), tokenizer


def batch(tokenizer, texts: list[str], side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    tokenizer.padding_side = side
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def manual_greedy(backbone, ids: torch.Tensor, mask: torch.Tensor, prompt, steps: int) -> list[list[int]]:
    """Greedy decoding of one example at a time through the teacher-forcing path (`target_states`): no HF
    `generate`, no cache, no hooks. Stops at the end token, as `generate` does."""
    eos = backbone.eos_token_id
    out = []
    for row in range(ids.shape[0]):
        keep = mask[row].bool()
        source, source_mask = ids[row][keep][None], mask[row][keep][None]
        tokens: list[int] = []
        for _ in range(steps):
            targets = torch.tensor([tokens + [0]])
            with torch.no_grad():
                states = backbone.target_states(source, source_mask, targets, prompt)
                token = int(backbone.lm_logits(states[:, -1]).argmax(-1))
            tokens.append(token)
            if token == eos:
                break
        out.append(tokens)
    return out


def strip(tokens: torch.Tensor, eos: int | None) -> list[list[int]]:
    """Generated rows up to and including the end token (padding after it dropped)."""
    rows = []
    for row in tokens.tolist():
        if eos is not None and eos in row:
            row = row[: row.index(eos) + 1]
        rows.append(row)
    return rows
