"""PromptedModel: parameter accounting against closed forms, heads, alignment and the position budget."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model_cfg

from ptrain.backbones import load_backbone
from ptrain.heads import TokenHead, build_head, pool
from ptrain.methods import build_prompt
from ptrain.model import PositionBudgetError, PromptedModel


@pytest.fixture(scope="module")
def minilm():
    return load_backbone({"pretrained": "bundled:minilm"})


def _model(backbone, tokenizer, method: dict, labels: int = 9, kind: str = "token") -> PromptedModel:
    prompt = build_prompt(method, backbone, tokenizer)
    head = build_head(kind, backbone.geometry.hidden_size, labels, 0.1, "first")
    return PromptedModel(backbone, head, prompt, train_backbone=method["name"] == "finetune")


H, L, P, LABELS = 384, 6, 16, 9
HEAD = H * LABELS + LABELS  # linear token head on MiniLM: 3,465


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        # the example: 6 layers x 2 (key, value) x 384 x 16 = 73,728, plus the head
        ({"name": "ptv2", "length": P, "reparam": "none"}, 6 * 2 * 384 * 16 + HEAD),
        # official prefix_projection: Embedding(P,H) + Linear(H,512) + Linear(512, 2LH)
        ({"name": "ptv2", "length": P, "reparam": "mlp", "reparam_hidden": 512},
         P * H + (H * 512 + 512) + (512 * 2 * L * H + 2 * L * H) + HEAD),
        # depth ablation: only the top 3 layers carry a prefix
        ({"name": "ptv2", "length": P, "layers": [3, 4, 5]}, 3 * 2 * H * P + HEAD),
        ({"name": "prompt", "length": P, "init": "random"}, P * H + HEAD),
        # P-Tuning v1, MLP encoder with hidden H: three Linear layers after the embedding
        ({"name": "ptv1", "length": P, "encoder": "mlp"}, P * H + 3 * (H * H + H) + HEAD),
        # P-Tuning v1, bi-LSTM with hidden h=H/2, 2 layers: per direction 4h(in + h) + 8h biases
        ({"name": "ptv1", "length": P, "encoder": "lstm"},
         P * H + 2 * (4 * 192 * (H + 192) + 8 * 192) + 2 * (4 * 192 * (2 * 192 + 192) + 8 * 192)
         + (384 * 384 + 384) + (384 * H + H) + HEAD),
        ({"name": "head"}, HEAD),
    ],
)
def test_trainable_parameters_match_closed_form(minilm, method, expected) -> None:
    backbone, tokenizer = minilm
    model = _model(backbone, tokenizer, method)
    summary = model.parameter_summary()
    assert summary["trainable_params"] == expected
    assert summary["total_params"] == sum(p.numel() for p in backbone.parameters()) + expected
    assert summary["trainable_share"] == pytest.approx(expected / summary["total_params"])
    backbone.requires_grad_(False)


def test_finetune_trains_everything(minilm) -> None:
    backbone, tokenizer = minilm
    model = _model(backbone, tokenizer, {"name": "finetune"})
    summary = model.parameter_summary()
    assert summary["trainable_params"] == summary["total_params"] == 22_565_376 + HEAD
    backbone.requires_grad_(False)


def test_prompt_bytes_is_the_materialised_prompt(minilm) -> None:
    backbone, tokenizer = minilm
    for reparam in ("none", "mlp"):
        model = _model(backbone, tokenizer, {"name": "ptv2", "length": P, "reparam": reparam})
        assert model.parameter_summary()["prompt_bytes"] == L * 2 * P * H * 4  # float32 keys and values
    lstm = _model(backbone, tokenizer, {"name": "ptv1", "length": P, "encoder": "lstm"})
    assert lstm.parameter_summary()["prompt_bytes"] == P * H * 4


@pytest.mark.parametrize("method", ["prompt", "ptv1", "ptv2", "head", "finetune"])
@pytest.mark.parametrize("family", ["tiny_bert", "tiny_roberta", "tiny_deberta"])
def test_token_logits_align_with_labels_and_pool_real_first_token(method, family) -> None:
    backbone, tokenizer = load_backbone(tiny_model_cfg(family))
    cfg = {"name": method, "length": 4, "init": "random", "encoder": "mlp"}
    batch = tokenizer(["alpha beta gamma", "delta"], padding=True, return_tensors="pt")
    token_model = _model(backbone, tokenizer, cfg, labels=5, kind="token").eval()
    logits = token_model(batch["input_ids"], batch["attention_mask"])
    assert logits.shape == (*batch["input_ids"].shape, 5)  # never the virtual positions

    seen = {}
    sequence_model = _model(backbone, tokenizer, cfg, labels=3, kind="sequence").eval()

    def keep_input(_module, args, _out) -> None:
        seen.setdefault("hidden", args[0])

    sequence_model.head.register_forward_hook(keep_input)
    sequence_model(batch["input_ids"], batch["attention_mask"])
    hidden = seen["hidden"]
    assert hidden.shape[1] == batch["input_ids"].shape[1]
    with torch.no_grad():
        expected = sequence_model.head.classifier(hidden[:, 0])  # the real [CLS], not a virtual token
        torch.testing.assert_close(sequence_model.head(hidden, batch["attention_mask"]), expected)


def test_pooling_last_handles_left_and_right_padding() -> None:
    hidden = torch.arange(2 * 4, dtype=torch.float).view(2, 4, 1)
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert pool(hidden, right, "last").flatten().tolist() == [2.0, 5.0]
    assert pool(hidden, left, "last").flatten().tolist() == [3.0, 7.0]
    assert pool(hidden, right, "mean").flatten().tolist() == [1.0, 4.5]


def test_position_budget_is_checked(minilm) -> None:
    backbone, tokenizer = minilm  # 512 positions
    model = _model(backbone, tokenizer, {"name": "ptv2", "length": 32})
    model.check_position_budget(480)
    with pytest.raises(PositionBudgetError, match=r"task.max_length=500 plus method.length=32 .* exceeds .* 512"):
        model.check_position_budget(500)
    backbone.shift_positions = False
    try:
        model.check_position_budget(500)  # real tokens keep positions 0..T-1
    finally:
        backbone.shift_positions = True
    prompt = _model(backbone, tokenizer, {"name": "prompt", "length": 32, "init": "random"})
    with pytest.raises(PositionBudgetError, match="lower task.max_length or method.length$"):
        prompt.check_position_budget(500)


def test_roberta_budget_excludes_padding_offset() -> None:
    backbone, _ = load_backbone(tiny_model_cfg("tiny_roberta"))  # 98 positions, pad 0 -> 97 usable
    assert backbone.position_budget() == 97


def test_prompt_init_choices(minilm) -> None:
    backbone, tokenizer = minilm
    text = build_prompt({"name": "prompt", "length": 5, "init": "text", "init_text": "hello world"}, backbone,
                        tokenizer)
    ids = tokenizer("hello world", add_special_tokens=False)["input_ids"]  # 2 tokens, repeated to 5
    rows = backbone.word_embeddings.weight[[ids[i % 2] for i in range(5)]]
    torch.testing.assert_close(text.embedding.weight, rows)
    rnd = build_prompt({"name": "prompt", "length": 5, "init": "random"}, backbone, tokenizer)
    assert rnd.embedding.weight.abs().max() <= 0.5
    with pytest.raises(ValueError, match="method.init must be one of random, vocab, text"):
        build_prompt({"name": "prompt", "length": 5, "init": "zeros"}, backbone, tokenizer)


def test_unknown_method_and_bad_layers(minilm) -> None:
    backbone, tokenizer = minilm
    with pytest.raises(ValueError, match="method.name='lora' is unknown; choose one of finetune, head, prompt"):
        build_prompt({"name": "lora"}, backbone, tokenizer)
    with pytest.raises(ValueError, match=r"method.layers has \[7\], outside the backbone's 6 layers"):
        build_prompt({"name": "ptv2", "length": 4, "layers": [0, 7]}, backbone, tokenizer)
    with pytest.raises(ValueError, match=r"method.layers must be a list of layer indices \(e.g. \[3\] or \[-1\]"):
        build_prompt({"name": "ptv2", "length": 4, "layers": 3}, backbone, tokenizer)


def test_unsupported_model_type_names_supported_ones() -> None:
    with pytest.raises(ValueError, match="model_type 'gpt_neox' is not supported; supported model types: .*bert"):
        load_backbone({"config": {"model_type": "gpt_neox", "hidden_size": 32, "num_attention_heads": 4,
                                  "num_hidden_layers": 1, "intermediate_size": 32},
                       "tokenizer": "bundled:minilm"})


def test_token_head_shape() -> None:
    head = TokenHead(8, 3)
    assert head(torch.zeros(2, 5, 8), torch.ones(2, 5)).shape == (2, 5, 3)


def test_pooling_first_is_the_first_real_token_whatever_side_is_padded() -> None:
    hidden = torch.arange(2 * 4, dtype=torch.float).view(2, 4, 1)
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert pool(hidden, left, "first").flatten().tolist() == [1.0, 6.0]
    assert pool(hidden, torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]), "first").flatten().tolist() == [0.0, 4.0]


def test_a_layer_named_twice_gets_one_prefix() -> None:
    backbone, tokenizer = load_backbone(tiny_model_cfg("tiny_bert"))  # 3 layers, hidden 32
    prompt = build_prompt({"name": "ptv2", "length": 3, "layers": [-1, 2]}, backbone, tokenizer)
    assert prompt.layer_ids == [2]
    assert sum(p.numel() for p in prompt.parameters()) == 3 * 2 * 1 * 32  # P x (key, value) x 1 layer x H


@pytest.mark.parametrize(("family", "method"), [("tiny_roberta", "prompt"), ("tiny_roberta", "ptv1"),
                                               ("tiny_deberta", "prompt"), ("tiny_deberta", "ptv2")])
def test_a_left_padded_row_equals_the_example_alone(family, method) -> None:
    """RoBERTa numbers `inputs_embeds` positions blindly, DeBERTa's relative positions count columns: without
    care, left padding between the prompt (or prefix) and the text would move the text."""
    backbone, tokenizer = load_backbone(tiny_model_cfg(family))
    model = _model(backbone, tokenizer, {"name": method, "length": 3, "init": "random", "encoder": "mlp"}).eval()
    texts = ["alpha beta gamma delta", "epsilon"]
    tokenizer.padding_side = "left"
    try:
        batch = tokenizer(texts, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = "right"
    with torch.no_grad():
        batched = model(batch["input_ids"], batch["attention_mask"])
        for row, text in enumerate(texts):
            alone = tokenizer([text], return_tensors="pt")
            n = alone["input_ids"].shape[1]
            torch.testing.assert_close(batched[row, -n:], model(alone["input_ids"], alone["attention_mask"])[0])


@pytest.mark.parametrize("method", ["prompt", "ptv1", "ptv2", "head"])
def test_electra_with_a_narrow_embedding_takes_every_method(method) -> None:
    """ELECTRA-small embeds in 128 and projects to 256: input prompts are embedding-wide; it has no pooler."""
    config = dict(model_type="electra", vocab_size=30522, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=4, intermediate_size=48, max_position_embeddings=96)
    backbone, tokenizer = load_backbone({"config": config, "tokenizer": "bundled:minilm", "init_seed": 0})
    model = _model(backbone, tokenizer, {"name": method, "length": 3, "init": "vocab", "encoder": "lstm"},
                   labels=5).eval()
    batch = tokenizer(["alpha beta gamma", "delta"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert model(batch["input_ids"], batch["attention_mask"]).shape == (*batch["input_ids"].shape, 5)
    if method in ("prompt", "ptv1"):
        assert model.prompt(1).embeds.shape == (1, 3, 16)
