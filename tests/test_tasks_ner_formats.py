"""NER in the P-tuning v2 data-pack formats: CoNLL-2003 and CoNLL04 column files, OntoNotes `.sd.conllx`, and the
generic `ner` task (IOB1 / IOB2 / BIOES, labels from the training file); every method trains on a fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
from _task_utils import METHODS, LogCapture, train_briefly
from _train_utils import compose_run
from hydra.utils import instantiate

from ptrain.readers.errors import DataFormatError
from ptrain.tasks.token import NERTask
from ptrain.testing.fixtures import write_conll, write_ontonotes

CONLL04_TYPES = {"PER": "Peop", "LOC": "Loc", "ORG": "Org", "MISC": "Other"}


def write_conll04(directory: Path) -> Path:
    """CoNLL04 as the data pack has it: space-separated columns, IOB2 tags over Loc/Peop/Org/Other."""
    write_conll(directory, "iob2", n_train=24, n_dev=12, n_test=12)
    for name in ("train.txt", "dev.txt", "test.txt"):
        path = directory / name
        lines = []
        for line in path.read_text().splitlines():
            columns = line.split(" ")
            if len(columns) == 4 and columns[-1] != "O" and not line.startswith("-DOCSTART-"):
                columns[-1] = columns[-1][:2] + CONLL04_TYPES[columns[-1][2:]]
            lines.append(" ".join(columns))
        path.write_text("\n".join(lines) + "\n")
    return directory


@pytest.fixture(scope="module")
def ner_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ner")
    write_conll(root / "conll03", "iob2", n_train=24, n_dev=12, n_test=12)
    write_conll04(root / "conll04")
    write_ontonotes(root / "ontonotes", n_train=24, n_dev=12, n_test=12)
    write_conll(root / "iob1", "iob1", n_train=24, n_dev=12, n_test=12)
    write_conll(root / "bioes", "bioes", n_train=24, n_dev=12, n_test=12)
    return {name: root / name for name in ("conll03", "conll04", "ontonotes", "iob1", "bioes")}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("task", ["conll03", "conll04", "ontonotes"])
def test_ner_tasks_train_with_every_method(tmp_path, ner_dirs, task, method) -> None:
    metrics = train_briefly(tmp_path, task, ner_dirs[task], method)["metrics"]
    assert {"val/f1", "test/f1", "val/precision", "val/recall"} <= set(metrics)


@pytest.mark.parametrize(("scheme", "method"), [("bioes", m) for m in METHODS] + [("iob1", "ptv2")])
def test_generic_ner_trains_on_any_scheme(tmp_path, ner_dirs, scheme, method) -> None:
    metrics = train_briefly(tmp_path, "ner", ner_dirs[scheme], method)["metrics"]
    assert "test/f1" in metrics


def _task(name: str, data_dir: Path, *overrides: str) -> NERTask:
    cfg = compose_run(data_dir / "unused", f"task={name}", f"task.data_dir={data_dir}", *overrides)
    return instantiate(cfg.task, _convert_="all")


def test_generic_ner_reads_its_label_set_from_the_training_file(ner_dirs) -> None:
    bioes = _task("ner", ner_dirs["bioes"])
    assert bioes.labels[0] == "O" and {"S-LOC", "B-PER", "E-PER", "S-MISC"} <= set(bioes.labels)
    assert not any(label.startswith("I-") and label[2:] == "LOC" for label in bioes.labels)  # LOCs are one word
    iob1 = _task("ner", ner_dirs["iob1"])
    assert "I-PER" in iob1.labels and "B-MISC" in iob1.labels  # B- only where two MISC entities touch


def test_conll04_uses_the_official_label_set(ner_dirs) -> None:
    task = _task("conll04", ner_dirs["conll04"])
    assert task.labels == ["O", "B-Loc", "B-Peop", "B-Org", "B-Other", "I-Loc", "I-Peop", "I-Org", "I-Other"]
    assert {tag for s in task.examples("train") for tag in s["tags"]} <= set(task.labels)


def test_ontonotes_reads_form_and_ner_columns(ner_dirs) -> None:
    task = _task("ontonotes", ner_dirs["ontonotes"])
    assert task.format == "ontonotes" and len(task.labels) == 37  # O + B/I of 18 types
    first = task.examples("train")[0]
    lines = (ner_dirs["ontonotes"] / "train.sd.conllx").read_text().split("\n\n")[0].splitlines()
    assert first["tokens"] == [line.split("\t")[1] for line in lines]
    assert first["tags"] == [line.split("\t")[10] for line in lines]


def test_ontonotes_unknown_label_and_bad_format_are_named(tmp_path) -> None:
    write_ontonotes(tmp_path, n_train=4, n_dev=2, n_test=2)
    dev = tmp_path / "dev.sd.conllx"
    dev.write_text(dev.read_text().replace("B-PERSON", "B-ALIEN", 1))
    task = _task("ontonotes", tmp_path)
    with pytest.raises(DataFormatError, match=r"dev\.sd\.conllx: sentence \d+ has unknown label 'B-ALIEN'"):
        task.examples("validation")
    with pytest.raises(ValueError, match="task.format must be conll"):
        NERTask("x", str(tmp_path), format="conllx")


CUT = {"tokens": ["Paris", "\xad", "John", "Ronald", "Reuel", "Tolkien", "wrote", "New", "\u200b", "York"],
       "tags": ["B-LOC", "B-MISC", "B-PER", "I-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC"]}


@pytest.mark.parametrize(("max_length", "scored", "dropped", "cut"), [
    # no truncation: the soft hyphen and the zero-width space have no token; "New York" loses a word
    (64, ["B-LOC", "B-PER", "I-PER", "I-PER", "I-PER", "O"], 2, 2),
    # [CLS] paris john ronald re ##uel [SEP]: the name is cut after "Reuel" and is not scored as a 3-word PER
    (7, ["B-LOC"], 5, 3),
])
def test_words_without_a_token_and_the_entities_they_cut_are_not_scored(ner_dirs, max_length, scored, dropped,
                                                                          cut) -> None:
    from transformers import AutoTokenizer

    from ptrain.backbones import resolve_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_path("bundled:minilm"))
    task = _task("conll03", ner_dirs["conll03"], f"task.max_length={max_length}")
    with LogCapture("ptrain.tasks.token") as log:
        feature = task.encode([CUT], tokenizer)[0]
    assert [task.labels[x] for x in feature["labels"] if x != -100] == scored
    assert task.truncated_words == dropped
    assert f"dropped {dropped} labelled (non-O) words" in log.text and f"the {cut} spans" in log.text
