"""T5: prefixes at each kind of site (encoder self-attention, decoder self-attention, cross-attention) against
independent computations, PEFT for the one site it supports, site numbering and accounting, padding sides.

References: an encoder or decoder prefix equal to the keys/values of P real leading tokens must reproduce the
full stack on the remaining tokens (same relative positions, same bias); a cross-attention prefix equal to the
projections of P extra encoder states must equal the decoder reading those states as part of the encoder output
(cross-attention has no position bias).
"""

from __future__ import annotations

import pytest
import torch
from _lm_utils import batch, load

from ptrain.backbones.attention import PREFIX_KWARG
from ptrain.heads import build_head
from ptrain.methods import build_prompt
from ptrain.model import PromptedModel
from ptrain.prompts import DeepPrefix, PromptOutput

TEXTS = ["translate this sentence into something else", "short", "a middle sized input"]


def _heads(x: torch.Tensor, heads: int = 4, dim: int = 16) -> torch.Tensor:
    return x.view(*x.shape[:2], heads, dim).transpose(1, 2)


def _capture(modules: list, run):
    """Run `run()` and return, per module, the outputs of its k and v projections (first call only)."""
    seen: dict[tuple[int, str], torch.Tensor] = {}
    handles = []
    for i, module in enumerate(modules):
        for kind, proj in (("k", module.k), ("v", module.v)):
            handles.append(proj.register_forward_hook(
                lambda _m, _i, out, key=(i, kind): seen.setdefault(key, out)))
    result = run()
    for handle in handles:
        handle.remove()
    return seen, result


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_encoder_prefix_reproduces_full_encoder_on_leading_tokens(attn: str) -> None:
    backbone, _ = load("tiny_t5", sharp=True, attn=attn, lm_head=False, prefix_sites=["encoder"])
    ids = torch.randint(1000, 5000, (2, 12), generator=torch.Generator().manual_seed(0))
    plen = 4
    modules = [block.layer[0].SelfAttention for block in backbone.model.encoder.block]
    with torch.no_grad():
        seen, full = _capture(modules, lambda: backbone(ids, torch.ones_like(ids)))
        kv = {i: (_heads(seen[(i, "k")])[:, :, :plen], _heads(seen[(i, "v")])[:, :, :plen]) for i in range(2)}
        rest = ids[:, plen:]
        prefixed = backbone(rest, torch.ones_like(rest), prompt=PromptOutput(kv=kv))
    torch.testing.assert_close(prefixed, full[:, plen:], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_decoder_prefix_reproduces_full_decoder_on_leading_tokens(attn: str) -> None:
    backbone, tokenizer = load("tiny_t5", sharp=True, attn=attn, prefix_sites=["decoder"])
    ids, mask = batch(tokenizer, TEXTS[:2])
    decoder_ids = torch.randint(1000, 5000, (2, 9), generator=torch.Generator().manual_seed(1))
    plen = 3
    decoder = backbone.model.decoder
    modules = [block.layer[0].SelfAttention for block in decoder.block]
    with torch.no_grad():
        encoded = backbone(ids, mask)

        def full_run():
            return decoder(input_ids=decoder_ids, encoder_hidden_states=encoded, encoder_attention_mask=mask,
                           use_cache=False).last_hidden_state
        seen, full = _capture(modules, full_run)
        kv = {i: (_heads(seen[(i, "k")])[:, :, :plen], _heads(seen[(i, "v")])[:, :, :plen]) for i in range(2)}
        prefixed = decoder(input_ids=decoder_ids[:, plen:], encoder_hidden_states=encoded,
                           encoder_attention_mask=mask, use_cache=False, **{PREFIX_KWARG: kv}).last_hidden_state
    torch.testing.assert_close(prefixed, full[:, plen:], atol=1e-4, rtol=1e-4)


def test_cross_attention_prefix_equals_extra_encoder_states() -> None:
    backbone, tokenizer = load("tiny_t5", sharp=True, prefix_sites=["cross"])
    ids, mask = batch(tokenizer, TEXTS, "right")
    extra = torch.randn(3, 4, 64, generator=torch.Generator().manual_seed(2))
    targets = torch.randint(1000, 5000, (3, 5), generator=torch.Generator().manual_seed(3))
    decoder = backbone.model.decoder
    cross = [block.layer[1].EncDecAttention for block in decoder.block]
    with torch.no_grad():
        encoded = backbone(ids, mask)
        kv = {i: (_heads(m.k(extra)), _heads(m.v(extra))) for i, m in enumerate(cross)}
        ours = backbone.target_states(ids, mask, targets, PromptOutput(kv=kv))
        # the reference never touches ptrain's attention: the extra states are ordinary encoder output
        widened = decoder(input_ids=backbone.shift_right(targets), encoder_hidden_states=torch.cat([extra, encoded], 1),
                          encoder_attention_mask=torch.cat([torch.ones(3, 4, dtype=mask.dtype), mask], 1),
                          use_cache=False).last_hidden_state
    torch.testing.assert_close(ours, widened, atol=1e-4, rtol=1e-4)


def test_decoder_prefix_equals_peft_prefix_tuning() -> None:
    """PEFT's seq2seq prefix reaches the decoder's self-attention only (it empties the cross-attention cache and
    leaves the encoder alone). Its flat vector duplicates rows, so the comparison maps PEFT's rows to our sites:
    decoder layer l reads rows (4l mod 2L, 4l+1 mod 2L) of the [P, 2L, heads, dim] view."""
    peft = pytest.importorskip("peft")
    ours, tokenizer = load("tiny_t5", sharp=True, prefix_sites=["decoder"])
    peer_base, _ = load("tiny_t5", sharp=True)
    config = peft.PrefixTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=5)
    peer = peft.get_peft_model(peer_base.model, config).eval()
    with torch.no_grad():
        peer.prompt_encoder["default"].embedding.weight.normal_(0, 1.0)
    rows = peer.prompt_encoder["default"].embedding.weight.view(5, 4, 4, 16).permute(1, 2, 0, 3)  # [2L, h, P, d]
    kv = {layer: (rows[(4 * layer) % 4][None].expand(3, -1, -1, -1), rows[(4 * layer + 1) % 4][None].expand(
        3, -1, -1, -1)) for layer in range(2)}
    ids, mask = batch(tokenizer, TEXTS)
    targets = torch.randint(1000, 5000, (3, 6), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        mine = ours.lm_logits(ours.target_states(ids, mask, targets, PromptOutput(kv=kv)))
        theirs = peer(input_ids=ids, attention_mask=mask, labels=targets).logits
    torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)


def test_sites_are_numbered_and_counted() -> None:
    backbone, tokenizer = load("tiny_t5")
    assert backbone.geometry.num_layers == 6  # 2 encoder + 2 decoder self + 2 cross
    enc = [b.layer[0].SelfAttention.ptrain_site for b in backbone.model.encoder.block]
    dec = [b.layer[0].SelfAttention.ptrain_site for b in backbone.model.decoder.block]
    cross = [b.layer[1].EncDecAttention.ptrain_site for b in backbone.model.decoder.block]
    assert (enc, dec, cross) == ([0, 1], [2, 3], [4, 5])
    prompt = build_prompt({"name": "ptv2", "length": 8}, backbone, tokenizer)
    assert sum(p.numel() for p in prompt.parameters()) == 8 * 6 * 2 * (4 * 16)
    only_cross, _ = load("tiny_t5", prefix_sites=["cross"])
    assert only_cross.geometry.num_layers == 2
    assert [b.layer[0].SelfAttention.ptrain_site for b in only_cross.model.encoder.block] == [None, None]
    encoder_only, _ = load("tiny_t5", lm_head=False)  # no decoder loaded: encoder sites only
    assert encoder_only.prefix_sites == ["encoder"] and encoder_only.geometry.num_layers == 2
    with pytest.raises(ValueError, match=r"model.prefix_sites has \['decoders'\]; choose from encoder, decoder, cross"):
        load("tiny_t5", prefix_sites=["decoders"])


def test_depth_limited_prefix_touches_only_its_sites() -> None:
    """`method.layers` indexes sites: a prefix on site 4 (the first cross-attention) leaves the encoder as is."""
    backbone, tokenizer = load("tiny_t5", sharp=True)
    prefix = DeepPrefix(3, backbone.geometry, layers=[4]).eval()
    ids, mask = batch(tokenizer, TEXTS)
    targets = torch.randint(1000, 5000, (3, 4), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(backbone(ids, mask, prompt=prefix(3)), backbone(ids, mask))
        assert not torch.allclose(backbone.target_states(ids, mask, targets, prefix(3)),
                                  backbone.target_states(ids, mask, targets))


@pytest.mark.parametrize("method", ["head", "prompt", "ptv2"])
def test_left_and_right_padding_give_the_same_predictions(method: str) -> None:
    backbone, tokenizer = load("tiny_t5", sharp=True)
    cfg = {"name": method, "length": 4, "init": "random"}
    for kind in ("sequence", "lm"):
        head = build_head(kind, 64, 3, 0.1, backbone.default_pooling)
        model = PromptedModel(backbone, head, build_prompt(cfg, backbone, tokenizer)).eval()
        with torch.no_grad():
            left = model(*batch(tokenizer, TEXTS, "left"))
            right = model(*batch(tokenizer, TEXTS, "right"))
            alone = torch.cat([model(*batch(tokenizer, [t])) for t in TEXTS])
        scale = float(left.abs().max())  # the sharp model's vocabulary logits reach the hundreds
        torch.testing.assert_close(left, right, atol=1e-5 * scale, rtol=1e-4)
        torch.testing.assert_close(left, alone, atol=1e-5 * scale, rtol=1e-4)


def test_gradient_checkpointing_gives_the_same_gradients_with_every_site() -> None:
    grads = {}
    for checkpointing in (False, True):
        backbone, tokenizer = load("tiny_t5", sharp=True, gradient_checkpointing=checkpointing)
        torch.manual_seed(0)
        prefix = DeepPrefix(3, backbone.geometry, reparam="mlp", reparam_hidden=16)
        model = PromptedModel(backbone, build_head("generate", 64, 0, 0.0, "mean"), prefix).train()
        ids, mask = batch(tokenizer, TEXTS)
        targets = torch.randint(1000, 5000, (3, 4), generator=torch.Generator().manual_seed(6))
        torch.manual_seed(1)
        model(ids, mask, targets=targets).logsumexp(-1).sum().backward()
        grads[checkpointing] = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    for key, value in grads[False].items():
        torch.testing.assert_close(grads[True][key], value, atol=1e-6, rtol=1e-5)
