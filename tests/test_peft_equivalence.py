"""Our prompt modules against HF PEFT (a test-only peer), with the same weights, on the same frozen backbone.

The peers are PEFT's FEATURE_EXTRACTION models, which compare the encoder states themselves. PEFT 0.21.2's
SEQ_CLS and TOKEN_CLS prefix wrappers refuse BERT on transformers 5.24 ("Model does not support past key
values"): they look for a `past_key_values` argument in the model's forward, which 5.24 renamed to `cache`.
"""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model_cfg

peft = pytest.importorskip("peft")

from ptrain.backbones import load_backbone  # noqa: E402
from ptrain.prompts import DeepPrefix, PromptEncoder, SoftPrompt  # noqa: E402

P = 5


def _pair(name: str):
    ours, tokenizer = load_backbone(tiny_model_cfg(name))
    peer_base, _ = load_backbone(tiny_model_cfg(name))
    return ours.eval(), peer_base, tokenizer


def _batch(tokenizer):
    enc = tokenizer(["the cat sat on the mat today", "a dog", "prefix tuning is evil, they say"],
                    padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]


def _assert_real_positions_close(ours: torch.Tensor, peer: torch.Tensor, mask: torch.Tensor) -> None:
    keep = mask.bool()
    torch.testing.assert_close(ours[keep], peer[keep], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["tiny_bert", "tiny_roberta"])
@pytest.mark.parametrize("reparam", ["none", "mlp"])
def test_ptv2_equals_peft_prefix_tuning(name: str, reparam: str) -> None:
    ours, peer_base, tokenizer = _pair(name)
    prefix = DeepPrefix(P, ours.geometry, reparam=reparam, reparam_hidden=24).eval()
    config = peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=P,
                                     prefix_projection=reparam == "mlp", encoder_hidden_size=24)
    peer = peft.get_peft_model(peer_base.model, config).eval()
    peer.prompt_encoder["default"].load_state_dict(prefix.state_dict(), strict=True)
    ids, mask, types = _batch(tokenizer)
    with torch.no_grad():
        mine = ours(ids, mask, types, prompt=prefix(ids.shape[0]))
        theirs = peer(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    assert mine.shape == theirs.shape == (*ids.shape, ours.geometry.hidden_size)
    _assert_real_positions_close(mine, theirs, mask)


@pytest.mark.parametrize("name", ["tiny_bert", "tiny_roberta"])
def test_prompt_equals_peft_prompt_tuning(name: str) -> None:
    ours, peer_base, tokenizer = _pair(name)
    prompt = SoftPrompt(P, ours.geometry.hidden_size, init="random", seed=3)
    config = peft.PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=P)
    peer = peft.get_peft_model(peer_base.model, config).eval()
    peer.prompt_encoder["default"].load_state_dict(prompt.state_dict(), strict=True)
    ids, mask, types = _batch(tokenizer)
    with torch.no_grad():
        mine = ours(ids, mask, types, prompt=prompt(ids.shape[0]))
        theirs = peer(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    # PEFT hands back the virtual positions too (which is why its token-level logits misalign); we do not.
    assert theirs.shape[1] == ids.shape[1] + P and mine.shape[1] == ids.shape[1]
    _assert_real_positions_close(mine, theirs[:, P:], mask)


@pytest.mark.parametrize("encoder", ["lstm", "mlp"])
def test_ptv1_equals_peft_p_tuning(encoder: str) -> None:
    ours, peer_base, tokenizer = _pair("tiny_bert")
    module = PromptEncoder(P, ours.geometry.hidden_size, encoder=encoder, encoder_hidden=16).eval()
    config = peft.PromptEncoderConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=P,
                                      encoder_reparameterization_type=encoder.upper(), encoder_hidden_size=16)
    peer = peft.get_peft_model(peer_base.model, config).eval()
    peer.prompt_encoder["default"].load_state_dict(module.state_dict(), strict=True)
    ids, mask, types = _batch(tokenizer)
    with torch.no_grad():
        mine = ours(ids, mask, types, prompt=module(ids.shape[0]))
        theirs = peer(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    _assert_real_positions_close(mine, theirs[:, P:], mask)

