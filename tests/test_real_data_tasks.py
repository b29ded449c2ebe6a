"""The real SuperGLUE and SST-2 files in ../shared/data (skipped when absent): the task-specific inputs are built
right on every example, and (slow) short MiniLM runs score above the dev majority-class baseline."""

from __future__ import annotations

from collections import Counter

import pytest
from _train_utils import compose_run
from hydra.utils import instantiate
from transformers import AutoTokenizer

from ptrain.backbones import resolve_path
from ptrain.tasks.superglue import locate_span
from ptrain.train import run

FOLDERS = {"rte": "superglue/RTE", "cb": "superglue/CB", "boolq": "superglue/BoolQ", "copa": "superglue/COPA",
           "wic": "superglue/WiC", "wsc": "superglue/WSC", "sst2": "glue/SST-2"}


def _task(shared_data, name: str, *overrides: str):
    cfg = compose_run(shared_data / "unused", f"task={name}", f"task.data_dir={shared_data / FOLDERS[name]}",
                      *overrides)
    return instantiate(cfg.task, _convert_="all")


def majority(task) -> float:
    labels = Counter(str(e[getattr(task, "label_field", "label")]) for e in task.examples("validation"))
    return max(labels.values()) / sum(labels.values())


def test_wic_marks_the_annotated_occurrence_in_every_example(shared_data) -> None:
    task = _task(shared_data, "wic")
    for split in ("train", "validation"):
        for e in task.examples(split):
            for k in ("1", "2"):
                target = e["sentence" + k][e["start" + k]:e["end" + k]]
                marked, original = e["marked_sentence" + k], e["sentence" + k]
                assert f"* {target} *" in marked and marked.count("*") == original.count("*") + 2


def test_wsc_marks_both_spans_in_every_example(shared_data) -> None:
    task = _task(shared_data, "wsc")
    for split in ("train", "validation"):
        for e in task.examples(split):
            words, marked = e["text"].split(), e["marked_text"].split()
            assert [w for w in marked if w not in "#*"] == [w for w in words if w not in "#*"]
            for marker, key in (("#", "span1_index"), ("*", "span2_index")):
                after = marked[marked.index(marker) + 1:]
                assert [w for w in after if w not in "#*"][0] == words[e[key]]
                assert locate_span(words, e[key], e[key.replace("index", "text")]) == e[key]  # val 42 moved
            stack = []  # markers nest (val 95: the pronoun "their" inside "their mothers")
            for w in (w for w in marked if w in ("#", "*")):
                stack = stack[:-1] if stack and stack[-1] == w else [*stack, w]
            assert stack == []


def test_copa_gives_two_rows_per_question(shared_data) -> None:
    task = _task(shared_data, "copa")
    tokenizer = AutoTokenizer.from_pretrained(resolve_path("bundled:minilm"))
    examples = task.examples("validation")
    batch = task.collate(task.encode(examples[:8], tokenizer), tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 16 and len(examples) == 100


# task -> overrides, from the real-data tables (benchmarks/README.md; SST-2 shortened); tasks whose short MiniLM
# runs stay at or below the majority baseline there (WSC, RTE, BoolQ) are not asserted here
RUNS = {
    "sst2": ["method=ptv2", "task.max_train_examples=2000", "trainer.max_epochs=1"],
    "cb": ["method=ptv2", "trainer.max_epochs=8", "data.batch_size=16"],
    "copa": ["method=finetune", "trainer.max_epochs=10", "data.batch_size=16"],  # 61.7 ± 2.5 over 3 seeds vs 55
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_minilm_beats_the_majority_baseline(shared_data, tmp_path, name) -> None:
    baseline = majority(_task(shared_data, name))
    results, _, _ = run(compose_run(tmp_path, "model=minilm", f"task={name}",
                                    f"task.data_dir={shared_data / FOLDERS[name]}", *RUNS[name]))
    assert results["metrics"][f"val/{results['main_metric']}"] > baseline
