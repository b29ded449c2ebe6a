"""The tokenisation cache: keyed by everything that decides the features, rebuilt when unreadable; and the
`train_from_validation` split keeps groups whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _task_utils import LogCapture
from transformers import AutoTokenizer

from ptrain.backbones import resolve_path
from ptrain.data import TaskDataModule, _tokenizer_fingerprint
from ptrain.tasks.superglue import MultiRCTask
from ptrain.tasks.token import NERTask
from ptrain.testing.fixtures import write_superglue

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PTRAIN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _conll(directory: Path, first: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("train.txt", "dev.txt"):
        (directory / name).write_text(f"{first} NN O B-PER\nwent VB O O\n\nRome NN O B-LOC\n")


def _tokenizer():
    return AutoTokenizer.from_pretrained(resolve_path("bundled:minilm"))


def test_the_key_follows_file_contents_not_size_and_mtime(tmp_path, cache) -> None:
    data = tmp_path / "ner"
    _conll(data, "Anna")
    task = NERTask("ner", str(data), labels=LABELS)
    before = task.fingerprint()
    stats = {name: (data / name).stat() for name in ("train.txt", "dev.txt")}
    module = TaskDataModule(task, _tokenizer())
    module.setup()
    _conll(data, "Olga")  # same size; then the old mtimes, as `cp -p` or `rsync -t` would leave them
    for name, stat in stats.items():
        os.utime(data / name, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert (data / name).stat().st_size == stat.st_size
        assert (data / name).stat().st_mtime_ns == stat.st_mtime_ns
    assert task.fingerprint() != before
    fresh = TaskDataModule(NERTask("ner", str(data), labels=LABELS), _tokenizer())
    fresh.setup()
    assert fresh.features["train"][0]["input_ids"][1] == _tokenizer().convert_tokens_to_ids("olga")


def test_the_key_follows_the_tokenizer_settings_and_the_tag_column(tmp_path) -> None:
    path = resolve_path("bundled:minilm")
    plain = AutoTokenizer.from_pretrained(path)
    assert _tokenizer_fingerprint(plain) == _tokenizer_fingerprint(AutoTokenizer.from_pretrained(path))
    assert _tokenizer_fingerprint(plain) != _tokenizer_fingerprint(
        AutoTokenizer.from_pretrained(path, do_lower_case=False))
    assert _tokenizer_fingerprint(plain) != _tokenizer_fingerprint(
        AutoTokenizer.from_pretrained(path, truncation_side="left"))
    _conll(tmp_path, "Anna")
    last = NERTask("ner", str(tmp_path), labels=LABELS)
    assert last.fingerprint() != NERTask("ner", str(tmp_path), labels=LABELS, tag_column=3).fingerprint()


def test_an_unreadable_cache_file_is_rebuilt(tmp_path, cache) -> None:
    _conll(tmp_path / "ner", "Anna")
    module = TaskDataModule(NERTask("ner", str(tmp_path / "ner"), labels=LABELS), _tokenizer())
    module.setup()
    [cached] = [p for p in (cache / "tokenized").glob("*-train.json")]
    cached.write_bytes(cached.read_bytes()[:40])  # a node died mid-write
    again = TaskDataModule(NERTask("ner", str(tmp_path / "ner"), labels=LABELS), _tokenizer())
    with LogCapture("ptrain.data") as log:
        again.setup()
    assert again.features["train"] == module.features["train"]
    assert f"tokenisation cache {cached} is unreadable" in log.text and "rebuilding it" in log.text


def test_multirc_questions_stay_whole_in_a_split_of_the_validation_file(tmp_path) -> None:
    write_superglue("multirc", tmp_path, n_train=4, n_val=12, n_test=2)
    task = MultiRCTask("multirc", labels=["0", "1"], text_fields=["passage", "question_answer"],
                       data_dir=str(tmp_path), train_from_validation=0.5, files={"validation": "val.jsonl"})
    train, dev = task.examples("train"), task.examples("validation")
    questions = {row["question_id"] for row in task.read("validation")}
    assert train and dev and len(train) + len(dev) == len(task.read("validation"))
    assert {r["question_id"] for r in train}.isdisjoint({r["question_id"] for r in dev})
    assert {r["question_id"] for r in train} | {r["question_id"] for r in dev} == questions


def test_a_pickle_planted_in_the_cache_never_runs(tmp_path, cache) -> None:
    """The cache is JSON: a pickle put where a cache file goes is unreadable data, rebuilt, never executed."""
    import pickle

    _conll(tmp_path / "ner", "Anna")
    module = TaskDataModule(NERTask("ner", str(tmp_path / "ner"), labels=LABELS), _tokenizer())
    module.setup()
    [cached] = [p for p in (cache / "tokenized").glob("*-train.json")]
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    cached.write_bytes(pickle.dumps(Payload()))
    again = TaskDataModule(NERTask("ner", str(tmp_path / "ner"), labels=LABELS), _tokenizer())
    with LogCapture("ptrain.data") as log:
        again.setup()
    assert not marker.exists()
    assert again.features["train"] == module.features["train"] and "rebuilding it" in log.text


def test_a_checkpoint_holding_a_pickle_payload_is_refused_without_running_it(tmp_path) -> None:
    import pickle

    import pytest

    from ptrain.train import checkpoint_epoch

    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    crafted = tmp_path / "best-0.ckpt"
    crafted.write_bytes(pickle.dumps({"epoch": 0, "x": Payload()}))
    with pytest.raises(ValueError, match=r"best-0.ckpt: not a readable ptrain checkpoint with an 'epoch'"):
        checkpoint_epoch(crafted)
    assert not marker.exists()


def test_the_dropped_words_warning_names_its_split_and_comes_back_from_the_cache(tmp_path, cache,
                                                                                   monkeypatch) -> None:
    """max_length 4 ([CLS] + 2 words + [SEP]) keeps two words: train loses "Rome" and "Milan" (a B-LOC word and
    span each), dev nothing. Encoded in chunks of one example, the warning still comes once per split, with the
    sums, and a second run that reads the cache warns the same."""
    import ptrain.data

    data = tmp_path / "ner"
    data.mkdir()
    (data / "train.txt").write_text("Anna NN O B-PER\nwent NN O O\nto NN O O\nRome NN O B-LOC\n\n"
                                    "Olga NN O B-PER\nsaw NN O O\nMilan NN O B-LOC\n")
    (data / "dev.txt").write_text("Anna NN O B-PER\nsaw NN O O\n")
    monkeypatch.setattr(ptrain.data, "ENCODE_CHUNK", 1)
    messages, written = [], []
    for _ in ("tokenise", "read the cache"):
        with LogCapture("ptrain.tasks.token") as log:
            module = TaskDataModule(NERTask("ner", str(data), labels=LABELS, max_length=4), _tokenizer())
            module.setup()
        messages.append(log.text)
        assert len(module.features["train"]) == 2
        written.append({path: path.stat().st_mtime_ns for path in (cache / "tokenized").glob("*-train.json")})
    assert len(written[0]) == 1 and written[0] == written[1]  # the second run read the first one's file
    for text in messages:
        assert text.count("dropped") == 1, text
        assert "task ner train split: dropped 2 labelled (non-O) words" in text and "the 2 spans" in text
        assert "validation split" not in text  # nothing dropped there
