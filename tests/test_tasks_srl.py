"""SRL (CoNLL-2005 / CoNLL-2012): one instance per predicate with the predicate appended as a second segment,
labels on sentence words only, span F1 per test set (WSJ and Brown); every method trains on a fixture."""

from __future__ import annotations

import pytest
import torch
from _task_utils import METHODS, LogCapture, train_briefly
from _train_utils import compose_run
from hydra.utils import instantiate
from transformers import AutoTokenizer

from ptrain.backbones import resolve_path
from ptrain.metrics.spans import srl_span_f1
from ptrain.readers.errors import DataFormatError
from ptrain.tasks.srl import SRLTask
from ptrain.testing.fixtures import write_srl


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_path("bundled:minilm"))


@pytest.fixture(scope="module")
def srl_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("srl")
    for dataset in ("conll05", "conll12"):
        write_srl(root / dataset, dataset, n_train=16, n_dev=8, n_test=8)
    return {"conll05": root / "conll05", "conll12": root / "conll12"}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("task", ["conll05", "conll12"])
def test_srl_trains_with_every_method(tmp_path, srl_dirs, task, method) -> None:
    metrics = train_briefly(tmp_path, task, srl_dirs[task], method)["metrics"]
    assert {"val/f1", "test/f1", "test/precision", "test/recall"} <= set(metrics)
    assert ("test/f1_brown" in metrics) == (task == "conll05")  # CoNLL-2005 Brown test, scored on its own


def _task(data_dir, name: str = "conll05", *overrides: str) -> SRLTask:
    cfg = compose_run(data_dir / "unused", f"task={name}", f"task.data_dir={data_dir}", *overrides)
    return instantiate(cfg.task, _convert_="all")


SENTENCE = {"tokens": ["Mary", "said", "John", "said", "hello", "."], "predicate_index": 3,
            "tags": ["O", "O", "B-A0", "B-V", "B-A1", "O"], "subset": ""}


def test_predicate_is_appended_and_only_sentence_words_are_labelled(srl_dirs, tokenizer) -> None:
    task = _task(srl_dirs["conll05"])
    feature = task.encode([SENTENCE], tokenizer)[0]
    ids = feature["input_ids"]
    sep = ids.index(tokenizer.sep_token_id)
    assert tokenizer.decode(ids[sep + 1:-1]) == "said"  # second segment = the predicate word
    assert feature["token_type_ids"][sep + 1:] == [1] * (len(ids) - sep - 1)
    labelled = [task.labels[x] for x in feature["labels"] if x != -100]
    assert labelled == SENTENCE["tags"]
    assert all(x == -100 for x in feature["labels"][sep:])


def test_official_input_cannot_tell_repeated_predicates_apart_but_a_marker_can(srl_dirs, tokenizer) -> None:
    first = dict(SENTENCE, predicate_index=1, tags=["B-A0", "B-V", "B-A1", "I-A1", "I-A1", "O"])
    official = _task(srl_dirs["conll05"])
    a, b = official.encode([first, SENTENCE], tokenizer)
    assert a["input_ids"] == b["input_ids"]  # the documented blind spot of the official input
    marked = _task(srl_dirs["conll05"], "conll05", "task.predicate_marker=*")
    a, b = marked.encode([first, SENTENCE], tokenizer)
    assert a["input_ids"] != b["input_ids"]
    assert tokenizer.decode(b["input_ids"]).startswith("[CLS] mary said john * said * hello.")
    assert [marked.labels[x] for x in b["labels"] if x != -100] == SENTENCE["tags"]  # markers unlabelled


LONG_TEXT = "Mary said that John bought the old red car in Paris yesterday ."
LONG = {"tokens": LONG_TEXT.split(" "),
        "predicate_index": 4, "subset": "",
        "tags": ["O", "O", "O", "B-A0", "B-V", "B-A1", "I-A1", "I-A1", "I-A1", "B-AM-LOC", "I-AM-LOC", "B-AM-TMP",
                 "O"]}


@pytest.mark.parametrize(("max_length", "kept", "dropped", "cut"), [
    (8, 4, 8, 4),    # mary said that john | V, A1, AM-LOC, AM-TMP gone whole
    (11, 7, 5, 3),   # ... bought the old | A1 cut after "old": "the old" must not be scored as an A1
])
def test_truncation_that_drops_arguments_is_counted_and_warned(srl_dirs, tokenizer, max_length, kept, dropped,
                                                                cut) -> None:
    task = _task(srl_dirs["conll05"], "conll05", f"task.max_length={max_length}")
    with LogCapture("ptrain.tasks.srl") as log:
        feature = task.encode([LONG], tokenizer)[0]
    words = [w.lower() for w in LONG["tokens"][:kept]]
    assert tokenizer.convert_ids_to_tokens(feature["input_ids"]) == ["[CLS]", *words, "[SEP]", "bought", "[SEP]"]
    whole = [tag if not tag.endswith("A1") else None for tag in LONG["tags"][:kept]]  # a cut A1 is masked out
    assert [task.labels[x] if x != -100 else None for x in feature["labels"][1:kept + 1]] == whole
    assert task.truncated_words == dropped
    assert f"dropped {dropped} labelled (non-O) words" in log.text and f"the {cut} spans" in log.text


def test_continuation_of_the_predicate_is_not_scored() -> None:
    """srl-eval.pl merges C-V into V and leaves V out: a missed particle costs nothing, a spurious one neither."""
    gold = [["B-A0", "B-V", "B-A1", "I-A1", "B-C-V"]]
    assert srl_span_f1(gold, [["B-A0", "B-V", "B-A1", "I-A1", "O"]])["f1"] == 1.0
    assert srl_span_f1([["B-A0", "B-V", "O"]], [["B-A0", "B-V", "B-C-V"]])["f1"] == 1.0
    assert srl_span_f1(gold, [["B-A0", "B-V", "B-A1", "I-A1", "O"]], ignore_labels=("V",))["recall"] == 2 / 3


def test_span_metric_by_hand_per_test_set(srl_dirs) -> None:
    task = _task(srl_dirs["conll05"])
    metric = task.metric()
    index = {label: i for i, label in enumerate(task.labels)}

    def row(tags):
        return [index[t] for t in tags]

    gold = [["B-A0", "B-V", "B-A1", "I-A1"], ["B-A0", "I-A0", "B-V", "O"]]
    pred = [["B-A0", "B-V", "B-A1", "O"], ["B-A0", "I-A0", "B-V", "O"]]
    logits = torch.nn.functional.one_hot(torch.tensor([row(t) for t in pred]), len(task.labels)).float()
    # WSJ row: A0 right, A1 too short (wrong); Brown row: A0 right. V is not scored.
    metric.update(logits, {"labels": torch.tensor([row(t) for t in gold]), "subset": ["", "brown"]})
    scores = metric.compute()
    assert scores["precision"] == pytest.approx(1 / 2) and scores["recall"] == pytest.approx(1 / 2)
    assert scores["f1"] == pytest.approx(1 / 2) and scores["f1_brown"] == pytest.approx(1.0)


def test_labels_come_from_the_files_and_an_unknown_tag_names_file_and_line(tmp_path) -> None:
    write_srl(tmp_path, "conll05", n_train=6, n_dev=3, n_test=3)
    task = _task(tmp_path)
    assert task.labels[0] == "O" and {"B-A0", "I-A1", "B-V", "B-AM-TMP"} <= set(task.labels)
    dev = tmp_path / "conll05.devel.txt"
    lines = dev.read_text().splitlines()
    lines[1] = lines[1].replace("B-A0", "B-A9", 1)
    dev.write_text("\n".join(lines) + "\n")
    explicit = _task(tmp_path, "conll05", f"task.labels=[{','.join(task.labels)}]")
    with pytest.raises(DataFormatError, match=r"conll05\.devel\.txt, line 2: unknown tag 'B-A9'"):
        explicit.examples("validation")
