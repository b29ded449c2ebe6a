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


LAYOUTS = {  # official GLUE headers, one labelled row each
    "qnli": ("index\tquestion\tsentence\tlabel", "0\tWho won?\tMary won the race.\tentailment"),
    "mnli": ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
             "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label",
             "0\t1\t1n\tfiction\t( a )\t( b )\t(S a)\t(S b)\tA man sleeps.\tA person rests.\tentailment\tentailment"),
    "qqp": ("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "0\t1\t2\tHow old are you?\tWhat is your age?\t1"),
    "rte_glue": ("index\tsentence1\tsentence2\tlabel", "0\tMary bought a car.\tMary has a car.\tentailment"),
}


@pytest.mark.parametrize("task", sorted(LAYOUTS))
def test_glue_configs_read_their_official_layout(tmp_path, task) -> None:
    header, row = LAYOUTS[task]
    cfg = compose_run(tmp_path / "run", f"task={task}", f"task.data_dir={tmp_path}")
    for split in ("train", "validation"):
        (tmp_path / cfg.task.files[split]).write_text(f"{header}\n{row}\n")
    task_obj = instantiate(cfg.task, _convert_="all")
    example = task_obj.examples("validation")[0]
    assert str(example[task_obj.label_field]) in task_obj.labels
    assert all(example[field] for field in task_obj.text_fields)


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
