"""Prefix attention against an independent computation: the full model run on P real tokens + the input.

If every layer's prefix keys/values are exactly what the full model computes for P leading tokens, the prefixed
model must reproduce the full model's hidden states for the remaining tokens: same positions (absolute or
relative), same keys, same values. This checks the injection for every family, DeBERTa included (PEFT refuses it).
"""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model_cfg

from ptrain.backbones import load_backbone
from ptrain.prompts import DeepPrefix, PromptOutput

FAMILIES = ["tiny_bert", "tiny_roberta", "tiny_deberta"]


def _projections(backbone, layer):
    attention = backbone.model.encoder.layer[layer].attention.self
    if hasattr(attention, "key_proj"):
        return attention.key_proj, attention.value_proj
    return attention.key, attention.value


def _captured_prefix(backbone, ids: torch.Tensor, plen: int) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    geometry = backbone.geometry
    seen: dict[tuple[int, str], torch.Tensor] = {}
    handles = []
    for layer in range(geometry.num_layers):
        for kind, proj in zip(("k", "v"), _projections(backbone, layer)):
            def hook(_module, _inputs, output, key=(layer, kind)):
                seen.setdefault(key, output)  # first call: the hidden states (DeBERTa reuses key_proj)
            handles.append(proj.register_forward_hook(hook))
    full = backbone(ids, torch.ones_like(ids))
    for handle in handles:
        handle.remove()

    def heads(x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, geometry.num_heads, geometry.head_dim).transpose(1, 2)[:, :, :plen]

    kv = {layer: (heads(seen[(layer, "k")]), heads(seen[(layer, "v")])) for layer in range(geometry.num_layers)}
    return kv, full


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_prefix_reproduces_full_model_on_leading_tokens(name: str, attn: str) -> None:
    backbone, _ = load_backbone(tiny_model_cfg(name, attn))
    backbone.eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 5000, (2, 11), generator=gen)
    plen = 4
    with torch.no_grad():
        kv, full = _captured_prefix(backbone, ids, plen)
        rest = ids[:, plen:]
        prefixed = backbone(rest, torch.ones_like(rest), prompt=PromptOutput(kv=kv))
    torch.testing.assert_close(prefixed, full[:, plen:], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padded_batch_equals_each_example_alone(name: str, attn: str) -> None:
    backbone, tokenizer = load_backbone(tiny_model_cfg(name, attn))
    backbone.eval()
    prefix = DeepPrefix(3, backbone.geometry, layers=[0, 2]).eval()
    texts = ["a much longer sentence than the other one here", "short"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        together = backbone(batch["input_ids"], batch["attention_mask"], prompt=prefix(2))
        for row, text in enumerate(texts):
            alone = tokenizer([text], return_tensors="pt")
            single = backbone(alone["input_ids"], alone["attention_mask"], prompt=prefix(1))
            length = alone["input_ids"].shape[1]
            torch.testing.assert_close(together[row, :length], single[0], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_eager_and_sdpa_agree_with_prefix_and_padding(name: str) -> None:
    eager, tokenizer = load_backbone(tiny_model_cfg(name, "eager"))
    sdpa, _ = load_backbone(tiny_model_cfg(name, "sdpa"))
    prefix = DeepPrefix(4, eager.geometry, reparam="mlp", reparam_hidden=16).eval()
    batch = tokenizer(["one two three four five six", "seven"], padding=True, return_tensors="pt")
    with torch.no_grad():
        a = eager.eval()(batch["input_ids"], batch["attention_mask"], prompt=prefix(2))
        b = sdpa.eval()(batch["input_ids"], batch["attention_mask"], prompt=prefix(2))
    keep = batch["attention_mask"].bool()
    torch.testing.assert_close(a[keep], b[keep], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("empty", ["length0", "no_layers"])
def test_empty_prefix_reproduces_frozen_model(name: str, empty: str) -> None:
    backbone, tokenizer = load_backbone(tiny_model_cfg(name))
    backbone.eval()
    prefix = DeepPrefix(0, backbone.geometry) if empty == "length0" else DeepPrefix(8, backbone.geometry, layers=[])
    batch = tokenizer(["some words here", "more"], padding=True, return_tensors="pt")
    with torch.no_grad():
        plain = backbone(batch["input_ids"], batch["attention_mask"])
        prompted = backbone(batch["input_ids"], batch["attention_mask"], prompt=prefix(2))
    assert torch.equal(plain, prompted)


def test_depth_limited_prefix_leaves_lower_layers_untouched() -> None:
    backbone, tokenizer = load_backbone(tiny_model_cfg("tiny_bert", output_hidden_states=None))
    backbone.eval()
    prefix = DeepPrefix(4, backbone.geometry, layers=[2]).eval()
    batch = tokenizer(["the quick brown fox"], return_tensors="pt")
    outputs = {}

    def keeper(layer: int):
        def hook(_module, _args, out) -> None:
            outputs[layer] = out[0] if isinstance(out, tuple) else out
        return hook

    for layer in range(3):
        backbone.model.encoder.layer[layer].register_forward_hook(keeper(layer))
    with torch.no_grad():
        backbone(batch["input_ids"], batch["attention_mask"])
        plain = dict(outputs)
        backbone(batch["input_ids"], batch["attention_mask"], prompt=prefix(1))
    # positions shift by P for absolute-position models, so compare with shift_positions off
    backbone.shift_positions = False
    with torch.no_grad():
        backbone(batch["input_ids"], batch["attention_mask"], prompt=prefix(1))
    assert torch.equal(outputs[0], plain[0]) and torch.equal(outputs[1], plain[1])
    assert not torch.allclose(outputs[2], plain[2])
