"""SQuAD v1.1 / v2.0: document-stride windows, span labels, n-best decoding and official scoring through the task;
every method trains on a fixture; bad answer offsets name the question id; tokenised data is cached."""

from __future__ import annotations

import json

import pytest
import torch
from _task_utils import METHODS, LogCapture, train_briefly
from _train_utils import compose_run
from hydra.utils import instantiate
from transformers import AutoTokenizer

from ptrain.backbones import resolve_path
from ptrain.readers.errors import DataFormatError
from ptrain.tasks.qa import QATask
from ptrain.testing.fixtures import write_squad
from ptrain.train import run

# windows of 40 tokens with 16-token questions: some fixture contexts need two windows
WINDOW = ["task.max_length=40", "task.max_query_length=16", "task.doc_stride=8"]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_path("bundled:minilm"))


@pytest.fixture(scope="module")
def squad_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("squad")
    write_squad(root / "v1", "1.1", n_train=12, n_dev=6)
    write_squad(root / "v2", "2.0", n_train=12, n_dev=6)
    return {"squad": root / "v1", "squad_v2": root / "v2"}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("task", ["squad", "squad_v2"])
def test_squad_trains_with_every_method(tmp_path, squad_dirs, task, method) -> None:
    results = train_briefly(tmp_path, task, squad_dirs[task], method, *WINDOW)
    metrics = results["metrics"]
    assert {"val/em", "val/f1"} <= set(metrics)
    if task == "squad_v2":
        assert {"val/has_ans_f1", "val/no_ans_f1", "val/best_f1", "val/best_f1_thresh"} <= set(metrics)


def _task(name: str, data_dir, *overrides: str) -> QATask:
    cfg = compose_run(data_dir / "unused", f"task={name}", f"task.data_dir={data_dir}", *overrides)
    return instantiate(cfg.task, _convert_="all")


LONG = {"id": "long-1", "question": "Who won?",
        "context": "It rained all day in the small town. Nobody expected much from the final. "
                   "In the end Maria Garcia won the race easily. Everyone went home happy after that.",
        "answers": {"text": ["Maria Garcia"], "answer_start": [85]}, "is_impossible": False}


def test_long_context_is_split_with_overlap_and_labels_point_at_the_answer(tmp_path, tokenizer) -> None:
    assert LONG["context"][85:97] == "Maria Garcia"
    write_squad(tmp_path, "1.1", n_train=2, n_dev=2)
    task = _task("squad", tmp_path, "task.max_length=24", "task.max_query_length=8", "task.doc_stride=6")
    features = task.encode([LONG], tokenizer)
    assert len(features) > 2
    containing = 0
    for feature in features:
        offsets = feature["offsets"]
        assert offsets[0] is None and feature["example_id"] == "long-1" and feature["golds"] == ["Maria Garcia"]
        start, end = feature["start_positions"], feature["end_positions"]
        if start == 0:
            assert end == 0  # answer outside this window: [CLS]
            continue
        containing += 1
        assert LONG["context"][offsets[start][0]:offsets[end][1]] == "Maria Garcia"
    assert containing >= 1
    # consecutive windows overlap by doc_stride context tokens
    first = [tuple(o) for o in features[0]["offsets"] if o is not None]
    second = [tuple(o) for o in features[1]["offsets"] if o is not None]
    assert first[-6:] == second[:6]


def test_answer_in_no_window_is_counted_and_warned_with_its_id(tmp_path, tokenizer) -> None:
    write_squad(tmp_path, "1.1", n_train=2, n_dev=2)
    task = _task("squad", tmp_path, "task.max_length=20", "task.max_query_length=4", "task.doc_stride=2")
    context = "Intro words here. " + "one two three four five six seven eight nine ten eleven twelve thirteen ."
    answer = context[18:]
    example = {"id": "too-long-7", "question": "What?", "context": context,
               "answers": {"text": [answer], "answer_start": [18]}, "is_impossible": False}
    with LogCapture("ptrain.tasks.qa") as log:
        features = task.encode([example, LONG], tokenizer)
    assert all(f["start_positions"] == 0 for f in features if f["example_id"] == "too-long-7")
    assert task.unanswerable_windows == ["too-long-7"]
    assert "1 answerable questions have their answer in no window" in log.text
    assert "too-long-7" in log.text


# offsets of "[CLS] q [SEP] Paris is the capital of France . [SEP]" (question tokens outside the context: None)
CONTEXT = "Paris is the capital of France."
OFFSETS = [None, None, None, [0, 5], [6, 8], [9, 12], [13, 20], [21, 23], [24, 30], [30, 31], None]


def _logits(start: int, end: int, null: float = 0.0) -> torch.Tensor:
    row = torch.full((len(OFFSETS), 2), -5.0)
    row[start, 0], row[end, 1] = 5.0, 5.0
    row[0] = null
    return row


def _batch(ids: list[str], golds: list[list[str]]) -> dict:
    return {"example_id": ids, "offsets": [OFFSETS] * len(ids), "context": [CONTEXT] * len(ids), "golds": golds,
            "attention_mask": torch.ones(len(ids), len(OFFSETS), dtype=torch.long)}


def test_v1_metric_decodes_the_best_span_across_windows(squad_dirs) -> None:
    metric = _task("squad", squad_dirs["squad"]).metric()
    # "a": two windows; the second holds the stronger span "Paris" (window 1 prefers "France" with a lower score)
    logits = torch.stack([_logits(8, 8) * 0.5, _logits(3, 3), _logits(5, 8)])
    metric.update(logits, _batch(["a", "a", "b"], [["Paris"], ["Paris"], ["the capital"]]))
    scores = metric.compute()
    # a: EM 1, F1 1; b: "the capital of France" vs "the capital" -> normalised 3 vs 1 tokens: P 1/3, R 1, F1 1/2
    assert scores == {"em": pytest.approx(0.5), "f1": pytest.approx(0.75)}


def test_v2_metric_no_answer_and_null_threshold(squad_dirs) -> None:
    task = _task("squad_v2", squad_dirs["squad_v2"])
    logits = torch.stack([_logits(3, 3, null=-10.0), _logits(6, 6, null=8.0)])  # "b": null 16 vs span 10
    batch = _batch(["a", "b"], [["Paris"], []])
    metric = task.metric()
    metric.update(logits, batch)
    scores = metric.compute()
    assert scores["em"] == pytest.approx(1.0) and scores["f1"] == pytest.approx(1.0)
    assert scores["has_ans_em"] == pytest.approx(1.0) and scores["no_ans_em"] == pytest.approx(1.0)
    task.null_threshold = 7.0  # null - best span = 16 - 10 = 6 <= 7: "b" now gets a span, wrongly
    metric = task.metric()
    metric.update(logits, batch)
    scores = metric.compute()
    assert scores["em"] == pytest.approx(0.5) and scores["no_ans_em"] == pytest.approx(0.0)
    assert scores["best_em"] == pytest.approx(1.0)


def test_v2_impossible_questions_train_on_cls(tmp_path, tokenizer) -> None:
    write_squad(tmp_path, "2.0", n_train=2, n_dev=2)
    task = _task("squad_v2", tmp_path)
    impossible = [e for e in task.examples("train") if e["is_impossible"]]
    features = task.encode(impossible, tokenizer)
    assert features and all((f["start_positions"], f["end_positions"]) == (0, 0) for f in features)
    assert all(f["golds"] == [] for f in features)


def _break_first_answer(path) -> str:
    doc = json.loads(path.read_text())
    qa = doc["data"][0]["paragraphs"][0]["qas"][0]
    qa["answers"][0]["answer_start"] += 1
    path.write_text(json.dumps(doc))
    return qa["id"]


def test_answer_that_does_not_match_its_context_is_reported_with_its_id(tmp_path) -> None:
    write_squad(tmp_path / "data", "1.1", n_train=4, n_dev=2)
    bad_id = _break_first_answer(tmp_path / "data" / "train.json")
    cfg = compose_run(tmp_path / "run", "task=squad", f"task.data_dir={tmp_path / 'data'}", *WINDOW)
    with pytest.raises(DataFormatError, match=f"question id '{bad_id}', answer 0: context"):
        run(cfg)
    lenient = _task("squad", tmp_path / "data", "task.strict=false")
    with pytest.warns(UserWarning, match=bad_id):
        rows = lenient.examples("train")
    assert bad_id not in {r["id"] for r in rows}


def test_second_run_reuses_tokenised_features(tmp_path, monkeypatch) -> None:
    write_squad(tmp_path / "data", "2.0", n_train=6, n_dev=3)  # a fresh folder: nothing cached for it yet
    calls = []
    original = QATask.encode

    def counting(self, examples, tokenizer):
        calls.append(len(examples))
        return original(self, examples, tokenizer)

    monkeypatch.setattr(QATask, "encode", counting)
    first = train_briefly(tmp_path / "a", "squad_v2", tmp_path / "data", "ptv2", *WINDOW, "task.n_best=5")
    assert len(calls) == 2  # train and validation (no test file)
    second = train_briefly(tmp_path / "b", "squad_v2", tmp_path / "data", "ptv2", *WINDOW, "task.n_best=5")
    assert len(calls) == 2, "the second run tokenised again"
    assert second["metrics"] == first["metrics"]
