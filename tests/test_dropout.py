"""ptrain.dropout: cheaper CPU masks must still be independent Bernoulli(1 - p) draws, scaled like torch's."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from ptrain import dropout as fd
from ptrain.backbones import load_backbone
from ptrain.backbones.attention import cpu_dropout_attention

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("p", [0.1, 0.5, 0.03])
def test_keep_mask_is_bernoulli_at_both_halves_of_each_word(p: float) -> None:
    torch.manual_seed(0)
    n = 2_000_001  # odd: the last word is only half used
    keep = fd.keep_mask((n,), p)
    assert keep.dtype == torch.bool and keep.shape == (n,)
    q = fd.effective_p(p)
    assert abs(q - p) <= 2 ** -16
    # even positions come from the low int16 half of each random word, odd ones from the high half
    for part in (keep, keep[0::2], keep[1::2]):
        sigma = math.sqrt(q * (1 - q) / part.numel())
        assert abs((1 - part.float().mean().item()) - q) < 5 * sigma
    lag1 = torch.corrcoef(torch.stack([keep[:-1].float(), keep[1:].float()]))[0, 1].item()
    assert abs(lag1) < 5 / math.sqrt(n)


def test_keep_mask_extremes_and_effective_p() -> None:
    assert fd.effective_p(0.1) == 3277 / 32768
    assert fd.keep_mask((3, 5), 0.0).all()
    assert not fd.keep_mask((3, 5), 1.0).any()
    assert fd.keep_mask((2, 3, 4), 0.2).shape == (2, 3, 4)


def test_dropout_scales_kept_values_and_masks_the_gradient() -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 33, requires_grad=True)
    y = fd.dropout(x, 0.25)
    kept = y != 0
    assert 0.6 < kept.float().mean().item() < 0.9
    scale = 1 / (1 - fd.effective_p(0.25))
    torch.testing.assert_close(y[kept], x.detach()[kept] * scale)
    g = torch.randn_like(y)
    y.backward(g)
    torch.testing.assert_close(x.grad, g * kept * scale)


def test_dropout_is_seeded_and_off_in_eval() -> None:
    x = torch.randn(16, 40)
    torch.manual_seed(7)
    a = fd.dropout(x, 0.3)
    torch.manual_seed(7)
    b = fd.dropout(x, 0.3)
    torch.manual_seed(8)
    c = fd.dropout(x, 0.3)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert fd.dropout(x, 0.3, training=False) is x
    module = fd.FastDropout(0.3).eval()
    assert module(x) is x and isinstance(module, nn.Dropout)


def _backbone(impl: str | None) -> nn.Module:
    """ptrain/conf/model/tiny_bert.yaml (2 random layers) with the given dropout_impl (None: key absent)."""
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "ptrain" / "conf" / "model" / "tiny_bert.yaml"), resolve=True)
    cfg.pop("dropout_impl")
    if impl is not None:
        cfg["dropout_impl"] = impl
    return load_backbone(cfg)[0].model


def test_load_backbone_swaps_every_dropout_and_marks_attention() -> None:
    fast, stock = _backbone("fast"), _backbone("torch")
    stock_drops = [m for m in stock.modules() if type(m) is nn.Dropout]
    assert stock_drops and not any(isinstance(m, fd.FastDropout) for m in stock.modules())
    assert not any(type(m) is nn.Dropout for m in fast.modules())
    assert len([m for m in fast.modules() if isinstance(m, fd.FastDropout)]) == len(stock_drops)
    attention = [m for m in fast.modules() if type(m).__name__.endswith("SelfAttention")]
    assert attention and all(getattr(m, "ptrain_fast_dropout", False) for m in attention)
    # the default is "fast"; the state dict (parameters, buffers) is unchanged by the swap
    assert any(isinstance(m, fd.FastDropout) for m in _backbone(None).modules())
    assert fast.state_dict().keys() == stock.state_dict().keys()
    # the swap keeps each module's mode: a pretrained model comes in eval mode and stays deterministic
    assert [m.training for m in fast.modules() if isinstance(m, fd.FastDropout)] == [m.training for m in stock_drops]
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).eval()
    fd.install(model)
    x = torch.ones(64, 4)
    assert not model[1].training and torch.equal(model(x), model(x))


def test_unknown_dropout_impl_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"model.dropout_impl must be one of fast, torch; got 'philox'"):
        _backbone("philox")


def _reference(q, k, v, mask, keep, p, scale):
    scores = q @ k.transpose(-1, -2) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    probs = scores.softmax(-1) * keep / (1 - fd.effective_p(p))
    return (probs @ v).transpose(1, 2)


@pytest.mark.parametrize("case", ["padding", "gqa", "causal"])
def test_cpu_dropout_attention_equals_math_with_the_same_mask(case: str) -> None:
    torch.manual_seed(0)
    b, h, t, s, d, p = 2, 4, 5, 7, 8, 0.2
    kv_heads = 2 if case == "gqa" else h
    q = torch.randn(b, h, t, d)
    k, v = torch.randn(b, kv_heads, s, d), torch.randn(b, kv_heads, s, d)
    module = SimpleNamespace(num_key_value_groups=h // kv_heads, is_causal=case == "causal")
    mask = None
    if case != "causal":
        mask = torch.ones(b, 1, t, s, dtype=torch.bool)
        mask[1, :, :, -2:] = False  # the second example's last two keys are padding
    torch.manual_seed(11)
    out, weights = cpu_dropout_attention(module, q, k, v, mask, p)
    assert weights is None and out.shape == (b, t, h, d)
    torch.manual_seed(11)
    ref_k, ref_v = k.repeat_interleave(h // kv_heads, 1), v.repeat_interleave(h // kv_heads, 1)
    ref_mask = mask
    if case == "causal":  # keys cropped to the queries, top-left causal (as transformers' sdpa function)
        ref_k, ref_v = ref_k[:, :, :t], ref_v[:, :, :t]
        ref_mask = torch.ones(t, t, dtype=torch.bool).tril()
    keep = fd.keep_mask((b, h, t, ref_k.shape[2]), p)
    expected = _reference(q, ref_k, ref_v, ref_mask, keep, p, d ** -0.5)
    torch.testing.assert_close(out, expected)


def test_fast_path_only_in_training_on_cpu_with_attention_dropout(monkeypatch: pytest.MonkeyPatch) -> None:
    """In eval mode (or with dropout_impl=torch) the backbone's outputs are the stock ones, bit for bit; in
    training every layer's attention takes the cheaper-mask path."""
    from ptrain.backbones import attention

    calls = []
    real = attention.cpu_dropout_attention
    monkeypatch.setattr(attention, "cpu_dropout_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    fast, stock = _backbone("fast"), _backbone("torch")
    ids = torch.randint(5, 90, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, -3:] = 0
    fast.eval(), stock.eval()
    with torch.no_grad():
        assert torch.equal(fast(input_ids=ids, attention_mask=mask).last_hidden_state,
                           stock(input_ids=ids, attention_mask=mask).last_hidden_state)
    fast.train()
    torch.manual_seed(3)
    a = fast(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.manual_seed(3)
    b = fast(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.equal(a, b)  # seeded
    assert len(calls) == 2 * len(fast.encoder.layer)
    stock.train()
    stock(input_ids=ids, attention_mask=mask)
    assert len(calls) == 2 * len(fast.encoder.layer)  # dropout_impl=torch: the stock SDPA call
    torch.manual_seed(4)
    assert not torch.equal(a, fast(input_ids=ids, attention_mask=mask).last_hidden_state)  # dropout is on
    a.sum().backward()  # gradients flow through the custom attention and the masks, to the lowest layer
    query = fast.encoder.layer[0].attention.self.query.weight
    assert query.grad is not None and query.grad.abs().sum() > 0


def test_gradient_checkpointing_replays_the_same_masks() -> None:
    """Non-reentrant checkpointing restores the CPU RNG before recomputing a layer: the integer masks drawn again
    must be the ones of the forward pass, or gradients would be wrong."""

    def run(checkpointing: bool) -> tuple[torch.Tensor, torch.Tensor]:
        path = REPO / "ptrain" / "conf" / "model" / "tiny_bert.yaml"
        cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        cfg["gradient_checkpointing"] = checkpointing
        model = load_backbone(cfg)[0].model.train()
        ids = torch.randint(5, 90, (2, 9), generator=torch.Generator().manual_seed(0))
        torch.manual_seed(5)
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        out.sum().backward()
        return out.detach(), model.encoder.layer[0].attention.self.query.weight.grad

    plain, checkpointed = run(False), run(True)
    torch.testing.assert_close(checkpointed[0], plain[0])
    torch.testing.assert_close(checkpointed[1], plain[1])


def test_dropped_probs_times_value_matches_autograd_and_saves_less() -> None:
    """Same output and gradients as `masked(probs, keep) @ value`, without keeping the dropped probabilities."""
    from ptrain.backbones.attention import DroppedProbsTimesValue

    torch.manual_seed(0)
    scores = torch.randn(2, 3, 5, 7, requires_grad=True)
    value = torch.randn(2, 3, 7, 4, requires_grad=True)
    keep = fd.keep_mask(scores.shape, 0.3)
    grad = torch.randn(2, 3, 5, 4)

    def run(fn):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            probs = torch.softmax(scores, dim=-1)
            out = fn(probs)
        out.backward(grad)
        grads = (scores.grad.clone(), value.grad.clone())
        scores.grad = value.grad = None
        return out.detach(), grads, {t.data_ptr(): t.numel() * t.element_size() for t in saved}

    plain = run(lambda probs: torch.matmul(fd.masked(probs, keep), value))
    fused = run(lambda probs: DroppedProbsTimesValue.apply(probs, keep, value))
    torch.testing.assert_close(fused[0], plain[0])
    for a, b in zip(fused[1], plain[1]):
        torch.testing.assert_close(a, b)
    # the dropped probabilities (a float tensor of the scores' size) are the difference
    assert sum(plain[2].values()) - sum(fused[2].values()) == scores.numel() * 4
