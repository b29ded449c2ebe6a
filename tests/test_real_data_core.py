"""The real CoNLL-2003 files in ../shared/data (skipped when absent): reading, alignment, a short training run."""

from __future__ import annotations

import pytest
from _train_utils import compose_run

from ptrain.backbones import load_backbone
from ptrain.tasks.token import NERTask
from ptrain.train import run

CONLL_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


@pytest.mark.parametrize(("folder", "first_token"), [("conll2003", "EU"), ("conll2003_iob1", "EU")])
def test_real_conll_reads_in_both_tag_schemes(shared_data, folder, first_token) -> None:
    task = NERTask("conll03", str(shared_data / folder), labels=CONLL_LABELS)
    # sentence counts from shared/data/README.md (DOCSTART blocks excluded)
    counts = {split: len(task.read(split)) for split in ("train", "validation", "test")}
    assert counts == {"train": 14041, "validation": 3250, "test": 3453}
    assert task.read("train")[0]["tokens"][0] == first_token


def test_real_conll_alignment_keeps_one_label_per_word(shared_data) -> None:
    _, tokenizer = load_backbone({"pretrained": "bundled:minilm"})
    task = NERTask("conll03", str(shared_data / "conll2003"), labels=CONLL_LABELS, max_length=512)
    examples = task.read("validation")[:300]
    features = task.encode(examples, tokenizer)
    for example, feature in zip(examples, features):
        labelled = [x for x in feature["labels"] if x != -100]
        assert [CONLL_LABELS[x] for x in labelled] == example["tags"]
    assert task.truncated_words == 0


def test_short_max_length_counts_dropped_entities(shared_data, caplog) -> None:
    from seqeval.metrics.sequence_labeling import get_entities

    _, tokenizer = load_backbone({"pretrained": "bundled:minilm"})
    task = NERTask("conll03", str(shared_data / "conll2003"), labels=CONLL_LABELS, max_length=8)
    examples = task.read("validation")[:200]
    expected, whole = 0, 0
    for example, feature in zip(examples, task.encode(examples, tokenizer)):
        ids = tokenizer(example["tokens"], is_split_into_words=True, truncation=True, max_length=8).word_ids()
        kept = {w for w in ids if w is not None}
        expected += sum(1 for i, tag in enumerate(example["tags"]) if tag != "O" and i not in kept)
        inside = [e for e in get_entities(example["tags"]) if kept >= set(range(e[1], e[2] + 1))]
        scored = get_entities([CONLL_LABELS[x] for x in feature["labels"] if x != -100])
        assert scored == inside  # a cut entity is not scored as a shorter one
        whole += len(inside)
    assert expected > 0 and whole > 0 and task.truncated_words == expected
    assert f"dropped {expected} labelled (non-O) words" in caplog.text


@pytest.mark.slow
def test_ptv2_on_real_conll_subset_beats_chance(shared_data, tmp_path) -> None:
    results, _, _ = run(compose_run(
        tmp_path, "model=minilm", "task=conll03", f"task.data_dir={shared_data / 'conll2003'}", "method=ptv2",
        "trainer.max_epochs=1", "+trainer.limit_train_batches=150", "+trainer.limit_val_batches=20",
        "+trainer.limit_test_batches=20", "data.batch_size=32"))
    assert results["metrics"]["val/f1"] > 0.4
