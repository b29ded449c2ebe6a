"""A batch whose rows carry different prompts (`stack_prompts`) gives each row what its prompt gives it alone."""

from __future__ import annotations

import pytest
import torch
from _lm_utils import load
from conftest import tiny_model_cfg

from ptrain.backbones import load_backbone
from ptrain.prompts import DeepPrefix, PromptEncoder, SoftPrompt
from ptrain.prompts.base import PromptOutput
from ptrain.prompts.mixed import stack_prompts

TEXTS = ["the cat sat on the mat today", "a dog", "prefix tuning is evil, they say", "one more row", "x y",
         "the last one of the batch"]


def _prompts(backbone) -> list:
    torch.manual_seed(0)
    width = backbone.word_embeddings.embedding_dim
    modules = [SoftPrompt(3, width), PromptEncoder(5, width, encoder="mlp", encoder_hidden=8),
               DeepPrefix(4, backbone.geometry), DeepPrefix(2, backbone.geometry, layers=[1]), None]
    for module in modules:
        if isinstance(module, DeepPrefix):
            with torch.no_grad():
                module.embedding.weight.normal_(0, 1.0)  # a prefix that visibly changes the states
    return [None if m is None else m.eval()(1) for m in modules]


def _alone(backbone, enc: dict, row: int, part: PromptOutput | None) -> torch.Tensor:
    keep = enc["attention_mask"][row].bool()
    ids = enc["input_ids"][row, keep][None]
    types = enc.get("token_type_ids")
    types = None if types is None else types[row, keep][None]
    return backbone(ids, torch.ones_like(ids), types, stack_prompts([part], [0]))[0]


def _check(backbone, tokenizer, side: str) -> None:
    parts = _prompts(backbone)
    rows = [0, 1, 2, 3, 4, 2]  # every kind, and two rows of one prompt
    tokenizer.padding_side = side
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        mixed = backbone(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"),
                         stack_prompts(parts, rows))
        for row, part in enumerate(rows):
            alone = _alone(backbone, enc, row, parts[part])
            torch.testing.assert_close(mixed[row, enc["attention_mask"][row].bool()], alone, atol=1e-5, rtol=1e-4)
        # guard: the prompts differ, so a row given another row's prompt would fail above
        assert not torch.allclose(_alone(backbone, enc, 0, parts[0]), _alone(backbone, enc, 0, parts[2]), atol=1e-3)


@pytest.mark.parametrize(("name", "side"), [("tiny_bert", "right"), ("tiny_roberta", "right"), ("tiny_roberta", "left"),
                                            ("tiny_deberta", "right"), ("tiny_deberta", "left")])
def test_encoder_rows_equal_each_prompt_alone(name: str, side: str) -> None:
    """BERT numbers padding columns too, so a left-padded BERT row differs from itself alone with or without a
    prompt; the other encoders number real tokens (RoBERTa) or columns next to the text (DeBERTa's relative)."""
    backbone, tokenizer = load_backbone(tiny_model_cfg(name))
    _check(backbone.eval(), tokenizer, side)


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_gpt2", "tiny_t5"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_decoder_and_t5_rows_equal_each_prompt_alone(name: str, side: str) -> None:
    backbone, tokenizer = load(name, sharp=True, lm_head=False)
    _check(backbone, tokenizer, side)


def test_one_prompt_for_every_row_is_the_training_batch_unmasked() -> None:
    backbone, _ = load_backbone(tiny_model_cfg("tiny_bert"))
    part = DeepPrefix(2, backbone.geometry)(1)
    out = stack_prompts([None, part], [1, 1, 1])
    assert out.kv_mask == {} and out.embeds_mask is None and out.kv[0][0].shape[0] == 3


def test_a_row_with_both_an_input_prompt_and_a_prefix_is_refused() -> None:
    backbone, tokenizer = load_backbone(tiny_model_cfg("tiny_bert"))
    enc = tokenizer(["a b", "c"], padding=True, return_tensors="pt")
    both = PromptOutput(embeds=SoftPrompt(2, 32)(2).embeds, kv=DeepPrefix(2, backbone.geometry)(2).kv)
    with pytest.raises(ValueError, match=r"either input embeddings or layer prefixes, not both \(rows \[0, 1\]"):
        backbone(enc["input_ids"], enc["attention_mask"], None, both)
