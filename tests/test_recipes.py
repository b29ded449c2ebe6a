"""Per-(task, method) defaults (ptrain/conf/recipe, issue 15): the plain command of a generation task reparameterises
ptv2's prefix, because without it a decoder's prefix is not learnt (benchmarks/README.md "Recipes")."""

from __future__ import annotations

from pathlib import Path

import pytest
from _train_utils import compose_run


@pytest.mark.parametrize("task", ["d2t_synthetic", "e2e"])
def test_generation_tasks_reparameterise_ptv2_by_default(tmp_path: Path, task: str) -> None:
    cfg = compose_run(tmp_path, f"task={task}", "method=ptv2")
    assert cfg.method.reparam == "mlp"
    assert cfg.method.lr == 2e-2 and cfg.method.length == 16  # the rest of ptv2's defaults stand
    assert compose_run(tmp_path, f"task={task}", "method=ptv2", "method.reparam=none").method.reparam == "none"


@pytest.mark.parametrize(("task", "method"), [("synthetic_ner", "ptv2"), ("rte_verbalizer", "ptv2"),
                                              ("d2t_synthetic", "ptv1"), ("d2t_synthetic", "prompt")])
def test_other_pairs_keep_the_methods_defaults(tmp_path: Path, task: str, method: str) -> None:
    from _train_utils import CONF
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        plain = compose("train", overrides=[f"method={method}"])
    cfg = compose_run(tmp_path, f"task={task}", f"method={method}")
    assert cfg.method == plain.method


def test_an_experiment_still_overrides_a_recipe(tmp_path: Path) -> None:
    """Experiments come after recipes in train.yaml's defaults, so a grid's own settings stand (here a user's
    experiment, on the search path, that pins reparam=none for a generation task)."""
    mine = tmp_path / "my_configs" / "experiment"
    mine.mkdir(parents=True)
    (mine / "gen.yaml").write_text("# @package _global_\ndefaults:\n  - override /task: d2t_synthetic\n"
                                   "  - override /method: ptv2\nmethod:\n  reparam: none\n")
    cfg = compose_run(tmp_path, f"hydra.searchpath=[file://{mine.parent}]", "experiment=gen", fast=False)
    assert cfg.task.name == "d2t_synthetic" and cfg.method.reparam == "none"
    cfg = compose_run(tmp_path, f"hydra.searchpath=[file://{mine.parent}]", "task=d2t_synthetic", fast=False)
    assert cfg.method.reparam == "mlp"


def test_the_plain_generation_command_learns_and_would_not_without_the_recipe(tmp_path: Path) -> None:
    """`python train.py model=tiny_gpt2 method=ptv2 task=d2t_synthetic` (3 epochs, 30 dev inputs): the recipe's
    reparameterised prefix learns to write (ROUGE-L 0.2 and more); the same command with `method.reparam=none` emits
    the end token first and scores 0 (what the plain command did before the recipe)."""
    from ptrain.train import run

    scores = {}
    for reparam in ([], ["method.reparam=none"]):
        cfg = compose_run(tmp_path / str(len(reparam)), "model=tiny_gpt2", "task=d2t_synthetic", "method=ptv2",
                          "task.n_dev=30", "task.n_test=6", "trainer.max_epochs=3", "logger=none", *reparam,
                          fast=False)
        scores[cfg.method.reparam] = run(cfg)[0]["metrics"]["val/rougeL"]
    assert scores["mlp"] > 0.2 and scores["none"] < 0.05, scores
