"""SuperGLUE tasks: every task trains and evaluates with every method on tiny_bert from official-format fixtures;
the task-level pieces (choice reshaping, WiC/WSC marking, MultiRC grouping, ReCoRD ranking) against hand values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from _task_utils import METHODS, LogCapture, train_briefly
from _train_utils import compose_run
from hydra.utils import instantiate
from transformers import AutoTokenizer

from ptrain.backbones import resolve_path
from ptrain.readers.errors import DataFormatError
from ptrain.tasks.multiple_choice import MultipleChoiceTask
from ptrain.tasks.superglue import (
    MultiRCTask,
    ReCoRDTask,
    WiCTask,
    WSCTask,
    locate_span,
    mark_chars,
    mark_words,
)
from ptrain.testing.fixtures import write_superglue
from ptrain.train import run

# sizes: examples, except MultiRC and ReCoRD which count passages (8 options / 2 queries each)
SIZES = {"multirc": (3, 2, 1), "record": (4, 2, 1)}
TASKS = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("superglue")
    for task in TASKS:
        n_train, n_val, n_test = SIZES.get(task, (24, 12, 4))
        write_superglue(task, root / task, n_train=n_train, n_val=n_val, n_test=n_test)
    return {task: root / task for task in TASKS}


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_path("bundled:minilm"))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("task", TASKS)
def test_every_superglue_task_trains_with_every_method(tmp_path, data, task, method) -> None:
    results = train_briefly(tmp_path, task, data[task], method)
    expected = {"boolq": {"val/accuracy"}, "cb": {"val/accuracy", "val/f1"}, "copa": {"val/accuracy"},
                "multirc": {"val/f1a", "val/em"}, "record": {"val/em", "val/f1"}, "rte": {"val/accuracy"},
                "wic": {"val/accuracy"}, "wsc": {"val/accuracy"}}[task]
    assert expected <= set(results["metrics"])
    assert not any(k.startswith("test/") for k in results["metrics"]), "SuperGLUE test splits are unlabelled"


def _task(name: str, data_dir: Path, **overrides):
    cfg = compose_run(data_dir / "unused-run", f"task={name}", f"task.data_dir={data_dir}",
                      *[f"task.{k}={v}" for k, v in overrides.items()])
    return instantiate(cfg.task, _convert_="all")


# ---- COPA: one row per choice, scores compared -------------------------------------------------------------
def test_copa_collates_choices_example_major_and_scores_by_reshape(data, tokenizer) -> None:
    task = _task("copa", data["copa"])
    assert isinstance(task, MultipleChoiceTask) and task.head_kind == "choice" and task.num_labels == 2
    examples = task.examples("validation")[:2]
    features = task.encode(examples, tokenizer)
    batch = task.collate(features, pad_id=0)
    assert batch["input_ids"].shape[0] == 4 and batch["labels"].tolist() == [e["label"] for e in examples]
    joiner = {"cause": "because", "effect": "so"}[examples[0]["question"]]
    for choice, row in (("choice1", 0), ("choice2", 1)):  # rows 0, 1 are example 0's two choices
        text = tokenizer.decode(batch["input_ids"][row], skip_special_tokens=True)
        assert text == tokenizer.decode(tokenizer(f"{examples[0]['premise']} {joiner}", examples[0][choice],
                                                  add_special_tokens=False)["input_ids"])

    logits = torch.tensor([[1.0], [3.0], [2.0], [0.0]])
    batch["labels"] = torch.tensor([1, 0])
    # both examples: right choice ahead by 2 -> loss log(1 + e^-2)
    assert task.loss(logits, batch).item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)
    metric = task.metric()
    metric.update(logits, {"labels": torch.tensor([1, 1])})
    assert metric.compute() == {"accuracy": pytest.approx(0.5)}


def test_copa_batches_are_grouped_by_their_longest_choice(data, tokenizer) -> None:
    """Length-grouped batching must see a choice feature's padded length, not its number of choices."""
    from ptrain.data import TaskDataModule, feature_length

    task = _task("copa", data["copa"])
    features = task.encode(task.examples("train"), tokenizer)
    assert feature_length(features[0]) == max(len(row) for row in features[0]["input_ids"])
    assert feature_length({"input_ids": [5, 6, 7]}) == 3
    module = TaskDataModule(task, tokenizer, batch_size=4)
    module.features = {"train": features}
    module._loader("train", train=True)
    lengths = module.train_sampler.lengths
    assert lengths == [max(len(row) for row in f["input_ids"]) for f in features]
    assert len(set(lengths)) > 1, "the fixture's choices differ in length, so the sampler has something to group"


# ---- WiC / WSC: positions are part of the input ------------------------------------------------------------
def test_mark_helpers_by_hand() -> None:
    sentence = "The bank by the river bank."
    assert mark_chars(sentence, 22, 26) == "The bank by the river * bank *."
    text = "John could not lift the box because he was weak ."
    marked = mark_words(text.split(" "), [(4, 2, "#"), (7, 1, "*")])
    assert marked == "John could not lift # the box # because * he * was weak ."
    # spans sharing words nest: the longer opens first and closes last (WSC val idx 95)
    assert mark_words(["their", "mothers", "came"], [(0, 2, "#"), (0, 1, "*")]) == "# * their * mothers # came"
    assert mark_words(["their", "mothers"], [(1, 1, "#"), (0, 2, "*")]) == "* their # mothers # *"
    assert mark_words(["it", "is"], [(0, 1, "#"), (0, 1, "*")]) == "# * it * # is"


def test_locate_span_by_hand() -> None:
    words = ["Some", "day", "they", "might", "want", "to", "use", "it", ",", "but", "Emma's", "dog", "."]
    assert locate_span(words, 7, "it") == 7
    assert locate_span(words, 6, "it") == 7  # off by one, as WSC val idx 42
    assert locate_span(words, 10, "Emma") == 10  # a possessive still marks the word
    assert locate_span(words, 0, "Emma and Kamenev") is None


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_wic_marks_the_target_occurrence_not_the_first(tmp_path, tokenizer) -> None:
    record = {"word": "bank", "sentence1": "The bank by the river bank.", "start1": 22, "end1": 26,
              "sentence2": "A bank loan.", "start2": 2, "end2": 6, "idx": 0, "label": True, "version": 1.1}
    for split in ("train", "val"):
        _write_jsonl(tmp_path / f"{split}.jsonl", [record])
    task = _task("wic", tmp_path)
    assert isinstance(task, WiCTask)
    example = task.examples("validation")[0]
    assert example["marked_sentence1"] == "bank: The bank by the river * bank *."
    assert example["marked_sentence2"] == "bank: A * bank * loan."
    ids = task.encode([example], tokenizer)[0]["input_ids"]
    assert tokenizer.decode(ids[1:-1]).startswith("bank : the bank by the river * bank *.")


def test_wsc_marks_candidate_and_pronoun_and_pairs_the_candidate(tmp_path) -> None:
    record = {"text": "John could not lift the box because he was weak .", "idx": 0, "label": False,
              "target": {"span1_text": "the box", "span1_index": 4, "span2_text": "he", "span2_index": 7}}
    for split in ("train", "val"):
        _write_jsonl(tmp_path / f"{split}.jsonl", [record])
    task = _task("wsc", tmp_path)
    assert isinstance(task, WSCTask) and task.text_fields == ["marked_text", "span1_text"]
    example = task.examples("validation")[0]
    assert example["marked_text"] == "John could not lift # the box # because * he * was weak ."


def test_wsc_moves_an_index_that_misses_its_text_and_warns(tmp_path) -> None:
    record = {"text": "Mr. Farley put the pebble in a safe . Some day they might use it .", "idx": 42, "label": False,
              "target": {"span1_text": "safe", "span1_index": 7, "span2_text": "it", "span2_index": 13}}
    for split in ("train", "val"):
        _write_jsonl(tmp_path / f"{split}.jsonl", [record])
    with LogCapture("ptrain.tasks.superglue") as log:
        example = _task("wsc", tmp_path).examples("validation")[0]
    assert example["marked_text"] == "Mr. Farley put the pebble in a # safe # . Some day they might use * it * ."
    assert example["span2_index"] == 14 and "42:span2 13->14" in log.text and "val.jsonl" in log.text


# ---- MultiRC: options grouped into questions ---------------------------------------------------------------
def test_multirc_metric_groups_options_by_question(data, tokenizer) -> None:
    task = _task("multirc", data["multirc"])
    assert isinstance(task, MultiRCTask) and task.main_metric == "f1a"
    features = task.encode(task.examples("validation"), tokenizer)
    assert {f["question_id"] for f in features} == {"0-0", "0-1", "1-2", "1-3"}  # passage-question
    assert isinstance(task.collate(features[:3], 0)["question_id"], list)

    metric = task.metric()
    # q 0-0: options right/wrong predicted right; q 0-1: a right option missed -> tp 2, fp 0, fn 1
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    metric.update(logits, {"question_id": ["0-0", "0-0", "0-1", "0-1"], "labels": torch.tensor([1, 0, 1, 1])})
    scores = metric.compute()
    assert scores["f1a"] == pytest.approx(4 / 5) and scores["em"] == pytest.approx(0.5)
    assert scores["accuracy"] == pytest.approx(0.75)


# ---- ReCoRD: candidates ranked per query -------------------------------------------------------------------
def test_record_builds_one_row_per_candidate_labelled_by_the_answers(data, tokenizer) -> None:
    task = _task("record", data["record"])
    assert isinstance(task, ReCoRDTask) and task.head_kind == "choice"
    examples = task.examples("validation")
    features = task.encode(examples, tokenizer)
    assert len(features) == sum(len(e["entities"]) for e in examples)
    for feature in features:
        assert feature["labels"] == int(feature["entity"] in feature["answers"])
    query = examples[0]["query"].replace("@placeholder", examples[0]["entities"][0])
    assert tokenizer.decode(features[0]["input_ids"], skip_special_tokens=True).endswith(
        tokenizer.decode(tokenizer(query, add_special_tokens=False)["input_ids"]))
    assert "@highlight" not in tokenizer.decode(features[0]["input_ids"])


def test_record_metric_takes_the_best_candidate_per_query(data) -> None:
    task = _task("record", data["record"])
    metric = task.metric()
    metric.update(torch.tensor([[0.2], [1.5], [-1.0]]),
                  {"query_id": ["a", "a", "b"], "entity": ["Mary", "Alice", "Peter"],
                   "answers": [["Alice"], ["Alice"], ["Mary"]], "labels": torch.tensor([0, 1, 0])})
    metric.update(torch.tensor([[0.5], [-3.0]]),
                  {"query_id": ["b", "b"], "entity": ["Mary Smith", "Mary"],
                   "answers": [["Mary"], ["Mary"]], "labels": torch.tensor([0, 1])})
    # a -> Alice (EM 1, F1 1); b -> "Mary Smith" (EM 0, F1 = 2 * 1/2 * 1 / (1/2 + 1) = 2/3)
    assert metric.compute() == {"em": pytest.approx(0.5), "f1": pytest.approx((1 + 2 / 3) / 2)}
    batch = {"labels": torch.tensor([1, 0, -100])}
    logits = torch.tensor([[2.0], [-1.0], [50.0]])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2  # the -100 row is ignored
    assert task.loss(logits, batch).item() == pytest.approx(expected, abs=1e-6)


# ---- bad input and sampling --------------------------------------------------------------------------------
def test_missing_field_names_file_line_and_field(tmp_path, data) -> None:
    target = tmp_path / "copa"
    write_superglue("copa", target, n_train=8, n_val=4, n_test=2)
    lines = (target / "val.jsonl").read_text().splitlines()
    broken = json.loads(lines[2])
    del broken["choice2"]
    lines[2] = json.dumps(broken)
    (target / "val.jsonl").write_text("\n".join(lines) + "\n")
    cfg = compose_run(tmp_path / "run", "task=copa", f"task.data_dir={target}", "trainer.max_epochs=1")
    with pytest.raises(DataFormatError, match=r"val\.jsonl, line 3: missing field 'choice2'") as info:
        run(cfg)
    assert (info.value.line, info.value.field) == (3, "choice2")


def test_max_train_examples_samples_training_only_and_changes_the_cache_key(data) -> None:
    full, sampled = _task("rte", data["rte"]), _task("rte", data["rte"], max_train_examples=10)
    train = sampled.examples("train")
    assert len(train) == 10 and len(full.examples("train")) == 24
    ids = [e["idx"] for e in train]
    assert ids == sorted(ids) and set(ids) <= {e["idx"] for e in full.examples("train")}
    assert sampled.examples("validation") == full.examples("validation")
    assert sampled.fingerprint() != full.fingerprint()
