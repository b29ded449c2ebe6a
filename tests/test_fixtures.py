"""Fixture writers: files round-trip through the readers, are deterministic, and labels are learnable."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from seqeval.metrics.sequence_labeling import get_entities

from ptrain.readers import (
    read_glue,
    read_ontonotes,
    read_squad,
    read_srl_split,
    read_superglue,
)
from ptrain.readers.ontonotes import ONTONOTES_TYPES
from ptrain.testing.fixtures import (
    iob2_to_bioes,
    iob2_to_iob1,
    write_conll,
    write_glue_tsv,
    write_ontonotes,
    write_squad,
    write_srl,
    write_superglue,
)

SUPERGLUE = ["boolq", "cb", "rte", "copa", "wic", "wsc", "multirc", "record"]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _naive_bayes_accuracy(train: list[tuple[list[str], str]], test: list[tuple[list[str], str]]) -> float:
    """Accuracy of add-one multinomial naive Bayes: a stand-in for 'a tiny model can learn this'."""
    counts: dict[str, Counter] = defaultdict(Counter)
    priors = Counter(label for _, label in train)
    vocab = {w for words, _ in train for w in words}
    for words, label in train:
        counts[label].update(words)

    def score(words: list[str], label: str) -> float:
        total = sum(counts[label].values()) + len(vocab)
        return math.log(priors[label]) + sum(
            math.log((counts[label][w] + 1) / total) for w in words if w in vocab
        )

    right = sum(max(priors, key=lambda lab: score(words, lab)) == gold for words, gold in test)
    return right / len(test)


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# ------------------------------------------------------------------------------------------- SuperGLUE


@pytest.mark.parametrize("task", SUPERGLUE)
def test_superglue_round_trip_and_determinism(tmp_path: Path, task: str) -> None:
    paths = write_superglue(task, tmp_path / "a", n_train=12, n_val=6, n_test=4, seed=3)
    assert sorted(p.name for p in paths.values()) == ["test.jsonl", "train.jsonl", "val.jsonl"]
    train = read_superglue(task, tmp_path / "a", "train")
    test = read_superglue(task, tmp_path / "a", "test")
    per_line = {"multirc": 8, "record": 2}.get(task, 1)  # MultiRC: 2 questions x 4 options; ReCoRD: 2 queries
    assert len(train) == 12 * per_line and len(test) == 4 * per_line
    if task == "record":
        assert all(e["answers"] and set(e["answers"]) <= set(e["entities"]) for e in train)
        assert all(e["answers"] == [] for e in test)
    else:
        assert all(e["label"] is not None for e in train) and all(e["label"] is None for e in test)
    write_superglue(task, tmp_path / "b", n_train=12, n_val=6, n_test=4, seed=3)
    write_superglue(task, tmp_path / "c", n_train=12, n_val=6, n_test=4, seed=4)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert _files(tmp_path / "a") != _files(tmp_path / "c")


@pytest.mark.parametrize(
    ("task", "labels"),
    [
        ("boolq", {"True", "False"}),
        ("cb", {"entailment", "contradiction", "neutral"}),
        ("rte", {"entailment", "not_entailment"}),
        ("copa", {0, 1}),
        ("wic", {"True", "False"}),
        ("wsc", {"True", "False"}),
        ("multirc", {0, 1}),
    ],
)
def test_superglue_labels_cover_the_official_set(tmp_path: Path, task: str, labels: set) -> None:
    write_superglue(task, tmp_path, n_train=8, n_val=4, n_test=2)
    assert {e["label"] for e in read_superglue(task, tmp_path, "train")} == labels


FEATURES = {
    "boolq": lambda e: _words(e["passage"]),
    "cb": lambda e: _words(e["premise"]),
    "rte": lambda e: _words(e["hypothesis"]),
    "wic": lambda e: _words(e["sentence2"]),
    "wsc": lambda e: ["span1=" + e["span1_text"].lower()],
    "multirc": lambda e: _words(e["answer"]),
}


@pytest.mark.parametrize(
    ("task", "floor"),
    [("boolq", 0.9), ("cb", 0.9), ("rte", 0.9), ("wic", 0.9), ("wsc", 0.9), ("multirc", 0.7)],
)
def test_superglue_labels_follow_a_lexical_cue(tmp_path: Path, task: str, floor: float) -> None:
    write_superglue(task, tmp_path, n_train=64, n_val=32, n_test=1)
    feats = FEATURES[task]
    train = [(feats(e), str(e["label"])) for e in read_superglue(task, tmp_path, "train")]
    val = [(feats(e), str(e["label"])) for e in read_superglue(task, tmp_path, "val")]
    chance = max(Counter(label for _, label in val).values()) / len(val)
    accuracy = _naive_bayes_accuracy(train, val)
    assert accuracy >= floor > chance


def test_copa_and_record_are_learnable(tmp_path: Path) -> None:
    write_superglue("copa", tmp_path / "copa", n_train=64, n_val=32, n_test=1)
    seen_right = {e[f"choice{e['label'] + 1}"] for e in read_superglue("copa", tmp_path / "copa", "train")}
    val = read_superglue("copa", tmp_path / "copa", "val")
    assert sum((0 if e["choice1"] in seen_right else 1) == e["label"] for e in val) / len(val) >= 0.9
    write_superglue("record", tmp_path / "record", n_train=4, n_val=4, n_test=1)
    for e in read_superglue("record", tmp_path / "record", "val"):
        assert f"{e['answers'][0]} won" in e["passage"]  # the answer is the person before "won"


# ---------------------------------------------------------------------------------------------------- GLUE


def test_sst2_round_trip_and_cue(tmp_path: Path) -> None:
    write_glue_tsv("sst2", tmp_path, n_train=40, n_dev=20, n_test=5)
    raw = (tmp_path / "train.tsv").read_text().splitlines()
    assert raw[0] == "sentence\tlabel" and raw[1].endswith((" \t0", " \t1"))  # SST-2's space before the tab
    assert (tmp_path / "test.tsv").read_text().startswith("index\tsentence\n")
    train = [(_words(e["sentence"]), e["label"]) for e in read_glue("sst2", tmp_path, "train")]
    dev = [(_words(e["sentence"]), e["label"]) for e in read_glue("sst2", tmp_path, "dev")]
    assert {label for _, label in train} == {"0", "1"}
    assert _naive_bayes_accuracy(train, dev) >= 0.9
    assert [e["label"] for e in read_glue("sst2", tmp_path, "test")] == [None] * 5


def test_mrpc_has_bom_quotes_and_an_overlap_cue(tmp_path: Path) -> None:
    write_glue_tsv("mrpc", tmp_path, n_train=40, n_dev=20, n_test=5)
    assert (tmp_path / "train.tsv").read_bytes().startswith(b"\xef\xbb\xbfQuality\t#1 ID")
    assert not (tmp_path / "test.tsv").read_bytes().startswith(b"\xef\xbb\xbf")
    rows = read_glue("mrpc", tmp_path, "train")
    assert any('"' in r["sentence1"] for r in rows)
    assert {r["label"] for r in rows} == {"0", "1"} and rows[0]["Quality"] == rows[0]["label"]

    def overlap(r: dict) -> float:
        a, b = set(_words(r["sentence1"])), set(_words(r["sentence2"]))
        return len(a & b) / len(a | b)

    dev = read_glue("mrpc", tmp_path, "dev")
    assert sum((overlap(r) > 0.3) == (r["label"] == "1") for r in dev) / len(dev) >= 0.9


def test_glue_writer_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_glue_tsv("mrpc", tmp_path / name, seed=1)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    with pytest.raises(ValueError, match="sst2' or 'mrpc"):
        write_glue_tsv("qnli", tmp_path)


# --------------------------------------------------------------------------------------------------- SQuAD


@pytest.mark.parametrize("version", ["1.1", "2.0"])
def test_squad_round_trip_with_strict_offsets(tmp_path: Path, version: str) -> None:
    write_squad(tmp_path, version=version, n_train=6, n_dev=3)
    train = read_squad(tmp_path, "train")  # strict: every answer_start indexes its text
    dev = read_squad(tmp_path, "dev")
    per_paragraph = 3 if version == "2.0" else 2
    assert len(train) == 6 * per_paragraph and len(dev) == 3 * per_paragraph
    assert len({e["id"] for e in train + dev}) == len(train + dev)
    impossible = [e for e in train if e["is_impossible"]]
    assert len(impossible) == (6 if version == "2.0" else 0)
    assert all(e["answers"]["text"] == [] for e in impossible)
    assert all(len(e["answers"]["text"]) == 3 for e in dev if not e["is_impossible"])
    for e in train:
        if not e["is_impossible"] and e["question"].startswith("What is the capital"):
            assert e["answers"]["answer_start"] == [0]  # the capital opens the context


# ----------------------------------------------------------------------------------------------------- SRL


@pytest.mark.parametrize(("dataset", "splits"), [("conll05", 4), ("conll12", 3)])
def test_srl_round_trip(tmp_path: Path, dataset: str, splits: int) -> None:
    paths = write_srl(tmp_path, dataset, n_train=20, n_dev=6, n_test=6)
    assert len(paths) == splits
    train = read_srl_split(tmp_path, dataset, "train")
    assert len(train) > 20  # some sentences have two predicates, one line each
    for e in train:
        assert e["tags"][e["predicate_index"]] == "B-V" and e["tags"].count("B-V") == 1
    roles = {t[2:] for e in train for t in e["tags"] if t != "O"}
    assert ("ARG0" in roles) == (dataset == "conll12") and ("A0" in roles) == (dataset == "conll05")
    again = tmp_path / "again"
    write_srl(again, dataset, n_train=20, n_dev=6, n_test=6)
    assert (again / paths["train"].name).read_bytes() == paths["train"].read_bytes()


# --------------------------------------------------------------------------------------- OntoNotes / CoNLL


def test_ontonotes_round_trip_and_valid_trees(tmp_path: Path) -> None:
    write_ontonotes(tmp_path, n_train=20, n_dev=5, n_test=5)
    sents = read_ontonotes(tmp_path, "train")
    assert len(sents) == 20
    types = {t[2:] for s in sents for t in s["tags"] if t != "O"}
    assert types <= set(ONTONOTES_TYPES) and {"PERSON", "GPE", "ORG"} <= types
    for block in (tmp_path / "dev.sd.conllx").read_text().strip().split("\n\n"):
        heads = [int(line.split("\t")[6]) for line in block.splitlines()]
        assert heads.count(0) == 1 and all(0 <= h <= len(heads) for h in heads)


def _read_4col(path: Path) -> list[tuple[list[str], list[str], list[str]]]:
    sents = []
    for block in path.read_text().strip().split("\n\n"):
        rows = [line.split(" ") for line in block.splitlines()]
        if rows[0][0] == "-DOCSTART-":
            continue
        assert all(len(r) == 4 for r in rows)
        sents.append(([r[0] for r in rows], [r[2] for r in rows], [r[3] for r in rows]))
    return sents


def test_conll_schemes_describe_the_same_entities(tmp_path: Path) -> None:
    data = {}
    for scheme in ("iob2", "iob1", "bioes"):
        write_conll(tmp_path / scheme, scheme=scheme, n_train=30, n_dev=5, n_test=5)
        text = (tmp_path / scheme / "train.txt").read_text()
        assert text.startswith("-DOCSTART- -X- -X- O\n\n")
        data[scheme] = _read_4col(tmp_path / scheme / "train.txt")
    assert [s[0] for s in data["iob2"]] == [s[0] for s in data["iob1"]] == [s[0] for s in data["bioes"]]
    for (_, _, iob2), (_, chunks1, iob1), (_, _, bioes) in zip(data["iob2"], data["iob1"], data["bioes"]):
        assert get_entities(iob2) == get_entities(iob1) == get_entities(bioes)
        assert get_entities(chunks1)  # chunk column is filled too
    flat = {scheme: Counter(t[:2] for s in sents for t in s[2]) for scheme, sents in data.items()}
    assert flat["iob1"]["B-"] > 0  # touching MISC entities ("German Grand Prix") force a B- in IOB1
    assert flat["iob1"]["B-"] < flat["iob2"]["B-"]
    assert flat["bioes"]["S-"] > 0 and flat["bioes"]["E-"] > 0
    with pytest.raises(ValueError, match="unknown tag scheme"):
        write_conll(tmp_path / "x", scheme="bilou")


def test_scheme_converters_by_hand() -> None:
    iob2 = ["B-PER", "I-PER", "O", "B-MISC", "B-MISC", "I-MISC", "B-LOC"]
    assert iob2_to_iob1(iob2) == ["I-PER", "I-PER", "O", "I-MISC", "B-MISC", "I-MISC", "I-LOC"]
    assert iob2_to_bioes(iob2) == ["B-PER", "E-PER", "O", "S-MISC", "B-MISC", "E-MISC", "S-LOC"]
