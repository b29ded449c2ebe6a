"""GLUE sentence(-pair) tasks from GLUE tsv files: every method trains on SST-2, MRPC and RTE fixtures; the other
GLUE configs read their official layouts; a new pair task is only config."""

from __future__ import annotations

from pathlib import Path

import pytest
from _task_utils import METHODS, train_briefly
from _train_utils import compose_run
from hydra.utils import instantiate

from ptrain.testing.fixtures import write_glue_tsv, write_superglue
from ptrain.train import run


def write_rte_glue(directory: Path) -> Path:
    """GLUE RTE tsv (index, sentence1, sentence2, label), from the SuperGLUE RTE fixture's examples."""
    write_superglue("rte", directory / "jsonl", n_train=24, n_val=12, n_test=4)
    from ptrain.readers.superglue import read_rte

    for split, name in (("train", "train.tsv"), ("val", "dev.tsv"), ("test", "test.tsv")):
        rows = read_rte(directory / "jsonl", split)
        header = "index\tsentence1\tsentence2" + ("" if split == "test" else "\tlabel")
        body = [f"{r['idx']}\t{r['premise']}\t{r['hypothesis']}" + ("" if split == "test" else f"\t{r['label']}")
                for r in rows]
        (directory / name).write_text("\n".join([header, *body]) + "\n")
    return directory


@pytest.fixture(scope="module")
def glue_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("glue")
    write_glue_tsv("sst2", root / "sst2", n_train=24, n_dev=12, n_test=4)
    write_glue_tsv("mrpc", root / "mrpc", n_train=24, n_dev=12, n_test=4)
    write_rte_glue(root / "rte_glue")
    return {name: root / name for name in ("sst2", "mrpc", "rte_glue")}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("task", ["sst2", "mrpc", "rte_glue"])
def test_glue_tasks_train_with_every_method(tmp_path, glue_dirs, task, method) -> None:
    metrics = train_briefly(tmp_path, task, glue_dirs[task], method)["metrics"]
    assert "val/accuracy" in metrics and ("val/f1" in metrics) == (task == "mrpc")


LAYOUTS = {  # official GLUE headers, one labelled row each, and the first text the task must read from it
    "qnli": ("index\tquestion\tsentence\tlabel", "0\tWho won?\tMary won the race.\tentailment", "Who won?"),
    "mnli": ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
             "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label",
             "0\t1\t1n\tfiction\t( a )\t( b )\t(S a)\t(S b)\tA man sleeps.\tA person rests.\tentailment\tneutral",
             "A man sleeps."),
    "qqp": ("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "0\t1\t2\tHow old are you?\tWhat is your age?\t1",
            "How old are you?"),
    "rte_glue": ("index\tsentence1\tsentence2\tlabel", "0\tMary bought a car.\tMary has a car.\tentailment",
                 "Mary bought a car."),
    "mrpc": ("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String", "1\t11\t12\tHe said hi.\tHe said hello.",
             "He said hi."),
}
GOLD = {"qnli": "entailment", "mnli": "neutral", "qqp": "1", "rte_glue": "entailment", "mrpc": "1"}


@pytest.mark.parametrize("task", sorted(LAYOUTS))
def test_glue_configs_read_their_official_layout(tmp_path, task) -> None:
    header, row, first_text = LAYOUTS[task]
    cfg = compose_run(tmp_path / "run", f"task={task}", f"task.data_dir={tmp_path}")
    for split in ("train", "validation"):
        (tmp_path / cfg.task.files[split]).write_text(f"{header}\n{row}\n")
    task_obj = instantiate(cfg.task, _convert_="all")
    example = task_obj.examples("validation")[0]
    assert str(example[task_obj.label_field]) == GOLD[task]  # MNLI: gold_label, not the first annotator's label1
    assert example[task_obj.text_fields[0]] == first_text and all(example[f] for f in task_obj.text_fields)


HUB = {  # the hub's glue/<name> schema: text columns, label names in id order, and a row's label id
    "sst2": (["sentence"], ["negative", "positive"], 1, "1"),
    "mrpc": (["sentence1", "sentence2"], ["not_equivalent", "equivalent"], 1, "1"),
    "qnli": (["question", "sentence"], ["entailment", "not_entailment"], 1, "not_entailment"),
    "mnli": (["premise", "hypothesis"], ["entailment", "neutral", "contradiction"], 2, "contradiction"),
    "qqp": (["question1", "question2"], ["not_duplicate", "duplicate"], 0, "0"),
    "rte_glue": (["sentence1", "sentence2"], ["entailment", "not_entailment"], 0, "entailment"),
}


@pytest.mark.parametrize("task", sorted(HUB))
def test_glue_configs_read_the_hub_schema(tmp_path, monkeypatch, task) -> None:
    """With task.data_dir=null every GLUE config reads datasets' glue/<name> columns (mocked: no network)."""
    import datasets

    columns, names, label_id, gold = HUB[task]
    features = datasets.Features({**{c: datasets.Value("string") for c in columns},
                                  "label": datasets.ClassLabel(names=names), "idx": datasets.Value("int32")})
    rows = {**{c: [f"{c} text"] for c in columns}, "label": [label_id], "idx": [0]}
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda *args, **kwargs: datasets.Dataset.from_dict(rows, features=features))
    task_obj = instantiate(compose_run(tmp_path / "run", f"task={task}").task, _convert_="all")
    example = task_obj.examples("validation")[0]
    assert example[task_obj.label_field] == gold
    assert [example[f] for f in task_obj.text_fields] == [f"{c} text" for c in columns]


@pytest.mark.parametrize("task", ["mnli", "copa"])
def test_the_label_column_is_part_of_the_cache_key(tmp_path, task) -> None:
    """MNLI's label1 (first annotator) and gold_label give different labels: a cache keyed without the column
    would hand one run the other's labels."""
    def fingerprint(*overrides: str) -> str:
        cfg = compose_run(tmp_path / "run", f"task={task}", f"task.data_dir={tmp_path}", *overrides)
        return instantiate(cfg.task, _convert_="all").fingerprint()

    assert fingerprint() == fingerprint()
    assert fingerprint() != fingerprint("++task.label_field=label1")
    if task == "mnli":  # a header mapped to another field
        assert fingerprint() != fingerprint("task.tsv_columns={sentence1: hypothesis, sentence2: premise}")


def test_a_new_pair_task_is_only_config(tmp_path) -> None:
    """Any tsv with a header: point an existing GLUE config at new columns and labels from the command line."""
    rows = ["left\tright\tverdict"]
    for i in range(24):
        same = i % 2 == 0
        rows.append(f"the cat sat {i}\t{'the cat sat' if same else 'a dog ran'} {i}\t{'same' if same else 'diff'}")
    for name in ("train.tsv", "dev.tsv"):
        (tmp_path / name).write_text("\n".join(rows) + "\n")
    results, _, _ = run(compose_run(
        tmp_path / "run", "task=rte_glue", "task.name=pairs", f"task.data_dir={tmp_path}", "task.hub=null",
        "task.text_fields=[left,right]", "task.label_field=verdict", "task.labels=[diff,same]",
        "task.max_length=32", "trainer.max_epochs=1", "data.batch_size=8"))
    assert results["task"] == "pairs" and "val/accuracy" in results["metrics"]
