"""task.pair_encoding=siamese: each segment encoded alone (with the prompt on every row), compared by the pair head."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _task_utils import METHODS, train_briefly
from _train_utils import compose_run
from hydra.utils import instantiate
from transformers import AutoTokenizer

from ptrain.backbones import resolve_path
from ptrain.heads import PairHead, build_head
from ptrain.testing.fixtures import write_glue_tsv, write_superglue
from ptrain.train import build


@pytest.fixture(scope="module")
def rte(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rte")
    write_superglue("rte", root, n_train=16, n_val=8, n_test=2)
    return root


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_path("bundled:minilm"))


def _task(data_dir: Path, *overrides: str, task: str = "rte"):
    cfg = compose_run(data_dir / "unused-run", f"task={task}", f"task.data_dir={data_dir}", *overrides)
    return instantiate(cfg.task, _convert_="all")


def test_siamese_features_hold_each_segment_tokenised_alone(rte, tokenizer) -> None:
    task = _task(rte, "task.pair_encoding=siamese", "task.max_length=16")
    assert task.head_kind == "pair" and _task(rte).head_kind == "sequence"
    examples = task.examples("validation")[:3]
    features = task.encode(examples, tokenizer)
    for feature, example in zip(features, examples):
        alone = [tokenizer(example[f], truncation=True, max_length=16)["input_ids"] for f in ("premise", "hypothesis")]
        assert feature["input_ids"] == alone
    batch = task.collate(features, pad_id=0)
    assert batch["input_ids"].shape[0] == 6 and batch["labels"].shape == (3,)
    for row in range(6):  # example-major: premise 0, hypothesis 0, premise 1, ...
        ids = features[row // 2]["input_ids"][row % 2]
        assert batch["input_ids"][row, : len(ids)].tolist() == ids
        assert batch["attention_mask"][row].sum().item() == len(ids)
    assert task.fingerprint() != _task(rte, "task.max_length=16").fingerprint(), "the cache must not mix encodings"


def test_pair_head_against_hand_computation() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(4, 3, 2)  # 2 examples x 2 segments, 3 positions, width 2
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 1, 1]])
    head = PairHead(hidden_size=2, num_labels=3, dropout=0.0, pooling="mean").eval()
    logits = head(hidden, mask)
    for example in range(2):
        u = hidden[2 * example, : int(mask[2 * example].sum())].mean(0)
        v = hidden[2 * example + 1, : int(mask[2 * example + 1].sum())].mean(0)
        features = torch.cat([u, v, (u - v).abs(), u * v])
        expected = head.classifier.weight @ features + head.classifier.bias
        torch.testing.assert_close(logits[example], expected)
    assert isinstance(build_head("pair", 8, 2, 0.1, "first"), PairHead)
    with pytest.raises(ValueError, match="two by two; got 3 rows"):
        head(hidden[:3], mask[:3])


@pytest.mark.parametrize("method", ["ptv2", "prompt", "ptv1", "finetune"])
def test_siamese_logits_equal_each_segment_encoded_alone(tmp_path, rte, tokenizer, method) -> None:
    """A padded batch of pairs gives what each segment alone (batch of one, no padding) gives, prompt included."""
    length = [] if method == "finetune" else ["method.length=3"]
    cfg = compose_run(tmp_path, "model=tiny_bert", "task=rte", f"task.data_dir={rte}", f"method={method}", *length,
                      "task.pair_encoding=siamese", "task.pooling=mean", "task.max_length=24")
    task, model, tokenizer = build(cfg)
    model.eval()
    features = task.encode(task.examples("validation")[:3], tokenizer)
    batch = task.collate(features, pad_id=tokenizer.pad_token_id)
    assert (batch["attention_mask"] == 0).any(), "the fixture must pad some rows"
    with torch.no_grad():
        logits = model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        for i, feature in enumerate(features):
            pooled = []
            for segment in range(2):
                ids = torch.tensor([feature["input_ids"][segment]])
                types = torch.tensor([feature["token_type_ids"][segment]]) if "token_type_ids" in feature else None
                contribution = None if model.prompt is None else model.prompt(1)
                hidden = model.backbone(ids, torch.ones_like(ids), types, contribution)
                pooled.append(hidden[0].mean(0))
            u, v = pooled
            expected = model.head.classifier(torch.cat([u, v, (u - v).abs(), u * v]))
            torch.testing.assert_close(logits[i], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_siamese_rte_trains_with_every_method(tmp_path, rte, method) -> None:
    results = train_briefly(tmp_path, "rte", rte, method, "task.pair_encoding=siamese", "task.pooling=mean")
    assert "val/accuracy" in results["metrics"]


def test_siamese_needs_two_segments_and_a_known_encoding(tmp_path, rte) -> None:
    """The errors a user sees from `build` (Hydra's wrapper removed), naming the keys."""
    sst2 = tmp_path / "sst2"
    write_glue_tsv("sst2", sst2, n_train=4, n_dev=2, n_test=2)
    cfg = compose_run(tmp_path / "a", "model=tiny_bert", "task=sst2", f"task.data_dir={sst2}",
                      "+task.pair_encoding=siamese")
    with pytest.raises(ValueError, match=r"pair_encoding=siamese .* task sst2 has task.text_fields=\['sentence'\]"):
        build(cfg)
    cfg = compose_run(tmp_path / "b", "model=tiny_bert", "task=rte", f"task.data_dir={rte}", "task.pair_encoding=both")
    with pytest.raises(ValueError, match="task.pair_encoding must be one of cross, siamese; got 'both'"):
        build(cfg)
