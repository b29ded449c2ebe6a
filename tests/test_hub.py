"""The hub code path (issue 18), offline. `datasets` 4 and later refuse loading scripts, so the task configs name the
hub's parquet copies (README.md, "Data from the hub"). Each test writes a local directory laid out like the hub
repository at the revision the config uses, with the hub's column names, types and split names, and points
`task.hub.path` at it: `load_dataset` takes a local directory through the same call, so what is checked is the
config's `name` / `data_dir` / split mapping and the task's reading of the hub's columns, not a mock."""

from __future__ import annotations

from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _train_utils import CONF, compose_run
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ptrain.train import run

SPLITS = ("train", "validation", "test")
CONLL_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]  # the hub's id order
#: two steps of 8: one epoch, so validation (and the test split) run as in a real run
TWO_STEPS = ["method=ptv2", "method.length=4", "trainer.max_epochs=1", "trainer.max_steps=2", "data.batch_size=8",
             "task.max_length=32"]


@pytest.fixture(autouse=True)
def _hf_cache(tmp_path, monkeypatch) -> None:
    """`load_dataset` writes Arrow copies of what it reads: into the test's directory, not the user's HF cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def _conll_rows(split: str, n: int) -> list[dict]:
    """conll2003's columns: id (string), tokens, and pos/chunk/ner tags as int ids."""
    rows = []
    for i in range(n):
        tokens = ["EU", "rejects", f"{split}{i}", "call", "by", "Peter", "Blackburn"]
        rows.append({"id": str(i), "tokens": tokens, "pos_tags": [22, 42, 16, 21, 35, 22, 22],
                     "chunk_tags": [11, 21, 11, 12, 21, 11, 12], "ner_tags": [3, 0, 7, 0, 0, 1, 2]})
    return rows


def _write_conll_export(root: Path, names: list[str] | None = None, splits: tuple[str, ...] = SPLITS) -> dict:
    """eriktks/conll2003 at refs/convert/parquet: `conll2003/<split>/0000.parquet`, no dataset card. With `names`
    the files carry the `datasets` schema (ner_tags a list of ClassLabel, as the converter writes); without, plain
    int lists, as a copy written by pandas or pyarrow would be."""
    written = {}
    for n, split in zip((16, 4, 4), splits):
        rows = _conll_rows(split, n)
        path = root / "conll2003" / split / "0000.parquet"
        path.parent.mkdir(parents=True)
        if names is None:
            pq.write_table(pa.Table.from_pylist(rows), path)
        else:
            ids = datasets.List(datasets.Value("int64"))
            text, tags = datasets.List(datasets.Value("string")), datasets.List(datasets.ClassLabel(names=names))
            features = datasets.Features({"id": datasets.Value("string"), "tokens": text, "pos_tags": ids,
                                          "chunk_tags": ids, "ner_tags": tags})
            datasets.Dataset.from_list(rows, features=features).to_parquet(str(path))
        written[split] = rows
    return written


def _write_native(root: Path, configs: dict[str, tuple[datasets.Features, dict[str, list[dict]]]]) -> None:
    """A repo converted to parquet on main (aps/super_glue, nyu-mll/glue): `<config>/<split>-00000-of-00001.parquet`
    and a dataset card whose `configs` YAML names each config's files, the layout `convert_to_parquet` writes."""
    card = ["---", "configs:"]
    for config, (features, splits) in configs.items():
        (root / config).mkdir(parents=True)
        card += [f"- config_name: {config}", "  data_files:"]
        for split, rows in splits.items():
            datasets.Dataset.from_list(rows, features=features).to_parquet(
                str(root / config / f"{split}-00000-of-00001.parquet"))
            card += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    (root / "README.md").write_text("\n".join([*card, "---", ""]))


def _rte_rows(split: str, n: int) -> list[dict]:
    return [{"premise": f"{split} premise {i}", "hypothesis": f"hypothesis {i}", "idx": i,
             "label": -1 if split == "test" else i % 2} for i in range(n)]


def _sst2_rows(split: str, n: int) -> list[dict]:
    return [{"sentence": f"{split} sentence {i}", "label": -1 if split == "test" else (i + 1) % 2, "idx": i}
            for i in range(n)]


RTE = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                         "idx": datasets.Value("int32"), "label": datasets.ClassLabel(names=["entailment",
                                                                                             "not_entailment"])})
SST2 = datasets.Features({"sentence": datasets.Value("string"),
                          "label": datasets.ClassLabel(names=["negative", "positive"]), "idx": datasets.Value("int32")})
CB = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                        "idx": datasets.Value("int32"),
                        "label": datasets.ClassLabel(names=["entailment", "contradiction", "neutral"])})


def _hub_dir(task: str, root: Path) -> dict[str, list[dict]]:
    """Write `task`'s hub layout under root; return the rows as the task should read them (labels as names)."""
    if task == "conll03":
        written = _write_conll_export(root)
        return {split: [{"tokens": r["tokens"], "tags": [CONLL_LABELS[t] for t in r["ner_tags"]]} for r in rows]
                for split, rows in written.items()}
    rows_of, features, config, names = {"rte": (_rte_rows, RTE, "rte", ["entailment", "not_entailment"]),
                                        "sst2": (_sst2_rows, SST2, "sst2", ["0", "1"])}[task]
    splits = {split: rows_of(split, n) for split, n in zip(SPLITS, (16, 4, 4))}
    other = "cb" if task == "rte" else "cola"  # a second config, so the config name must pick the right files
    other_features = CB if task == "rte" else SST2
    _write_native(root, {config: (features, splits), other: (other_features, {"train": [
        {key: (0 if key in ("idx", "label") else "other config") for key in other_features}]})})
    return {split: [{**r, "label": None if r["label"] < 0 else names[r["label"]]} for r in rows]
            for split, rows in splits.items()}


@pytest.mark.parametrize("task", ["conll03", "rte", "sst2"])
def test_a_hub_layout_directory_loads_through_the_tasks_call_and_trains_two_steps(tmp_path, task) -> None:
    """What the config says (repo layout, config name or folder, split names) and what the task reads (the hub's
    columns; labels by ClassLabel name for RTE, by id for SST-2 and for conll2003 stored as plain ids) match the
    rows written, value for value; then two training steps on them."""
    expected = _hub_dir(task, tmp_path / "repo")
    revision = ["task.hub.revision=null"]  # a local directory has no branches: its files are the revision
    cfg = compose_run(tmp_path / "run", "model=tiny_bert", f"task={task}", f"task.hub.path={tmp_path / 'repo'}",
                      *revision, *TWO_STEPS)
    task_obj = instantiate(cfg.task, _convert_="all")
    for split in SPLITS:
        assert task_obj.examples(split) == expected[split], split
    results, _, trainer = run(cfg)
    assert trainer.global_step == 2
    assert f"val/{task_obj.main_metric}" in results["metrics"]


def test_the_shipped_hub_keys_are_what_the_readme_documents() -> None:
    """Script repos go through the hub's parquet export; converted ones through main; none by a redirected name."""
    expected = {"conll03": ("eriktks/conll2003", None, "refs/convert/parquet", "conll2003"),
                "e2e": ("tuetschek/e2e_nlg", None, "refs/convert/parquet", "default"),
                "rte": ("aps/super_glue", "rte", None, None), "wsc": ("aps/super_glue", "wsc.fixed", None, None),
                "sst2": ("nyu-mll/glue", "sst2", None, None), "squad": ("rajpurkar/squad", None, None, None)}
    for name, (path, config, revision, data_dir) in expected.items():
        hub = OmegaConf.load(CONF / "task" / f"{name}.yaml").hub
        assert (hub.path, hub.name, hub.revision, hub.get("data_dir")) == (path, config, revision, data_dir), name
    for yaml in sorted((CONF / "task").glob("*.yaml")):
        hub = OmegaConf.load(yaml).get("hub")
        assert hub is None or "/" in hub.path, f"{yaml.name}: hub.path {hub.path} is a redirect, not the repo"


def test_conll_tag_ids_follow_the_files_classlabel_names_over_the_config_order(tmp_path) -> None:
    """A copy whose ClassLabel lists the tags in another order: ids are named by the file, not by task.labels."""
    shuffled = list(reversed(CONLL_LABELS))
    written = _write_conll_export(tmp_path / "repo", names=shuffled, splits=("train", "validation"))
    cfg = compose_run(tmp_path / "run", "task=conll03", f"task.hub.path={tmp_path / 'repo'}", "task.hub.revision=null")
    task_obj = instantiate(cfg.task, _convert_="all")
    assert [r["tags"] for r in task_obj.examples("train")] == [[shuffled[t] for t in r["ner_tags"]]
                                                               for r in written["train"]]
    assert task_obj.examples("test") is None  # no test folder: no test split, as for any hub set without one


def test_a_script_repo_or_a_wrong_config_fails_naming_the_call(tmp_path) -> None:
    """datasets refuses a loading script; the error names path, config and split, and the keys that avoid it."""
    script = tmp_path / "conll2003"
    script.mkdir()
    (script / "conll2003.py").write_text("# a loading script\n")
    cfg = compose_run(tmp_path / "run", "task=conll03", f"task.hub.path={script}", "task.hub.revision=null",
                      "task.hub.data_dir=null")
    with pytest.raises(RuntimeError, match=rf"task conll03: datasets.load_dataset\('{script}', None, split='train'\) "
                                           r"failed: Dataset scripts are no longer supported.*task.hub.revision="
                                           r"refs/convert/parquet task.hub.data_dir=<config>"):
        instantiate(cfg.task, _convert_="all").examples("train")
    _hub_dir("rte", tmp_path / "repo")
    cfg = compose_run(tmp_path / "run", "task=rte", f"task.hub.path={tmp_path / 'repo'}", "task.hub.name=rte_typo")
    with pytest.raises(ValueError, match=r"task rte: datasets.load_dataset\('.*/repo', 'rte_typo', "
                                         r"split='validation'\) failed: BuilderConfig 'rte_typo' not found"):
        instantiate(cfg.task, _convert_="all").examples("validation")
