"""ptrain.report on a synthetic sweep whose numbers are known, so every table cell can be checked by hand."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
from _results_fixture import GRID, PARAMS, TOTAL_PARAMS, make_sweep, write_results

from ptrain import report

REPO = Path(__file__).resolve().parent.parent


def _expected(method: str, split: int) -> tuple[float, float]:
    """Hand-computed mean and sample std (points) of one method's seeds; split 0 = val, 1 = test."""
    values = [100 * scores[split] for (m, _), scores in GRID.items() if m == method]
    return statistics.mean(values), statistics.stdev(values)


def _paper(rows: list[dict[str, object]]) -> pd.DataFrame:
    base = {"table": "Table 2", "source": "test", "certain": "yes", "note": ""}
    return pd.DataFrame([{**base, **row} for row in rows])


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    return make_sweep(tmp_path / "sweep")


def test_load_runs_flattens_factors_and_metrics(sweep: Path) -> None:
    runs = report.load_runs(sweep)
    assert len(runs) == 4
    assert set(runs["method"]) == {"prompt", "ptv2"}
    assert sorted(runs["seed"]) == [1, 1, 2, 2]
    for col in ("val/accuracy", "test/accuracy", "trainable_params", "trainable_share", "prompt_bytes",
                "length", "layers", "reparam", "experiment", "run_dir"):
        assert col in runs.columns, col
    ptv2 = runs[runs["method"] == "ptv2"].iloc[0]
    assert ptv2["layers"] == "all" and ptv2["reparam"] == "none" and ptv2["length"] == 20
    assert ptv2["trainable_params"] == PARAMS["ptv2"]
    assert ptv2["trainable_share"] == pytest.approx(PARAMS["ptv2"] / TOTAL_PARAMS)
    prompt = runs[runs["method"] == "prompt"].iloc[0]
    assert pd.isna(prompt["layers"]) and pd.isna(prompt["reparam"])  # ptv2-only factors are blank
    assert runs.loc[(runs["method"] == "ptv2") & (runs["seed"] == 2), "val/accuracy"].item() == 0.80


def test_summary_mean_std_match_hand_computation(sweep: Path) -> None:
    summary = report.summarize(report.load_runs(sweep), paper=_paper([]))
    assert len(summary) == 4  # 2 methods x (val, test)
    for method in ("prompt", "ptv2"):
        for split_i, split in enumerate(("val", "test")):
            row = summary[(summary["method"] == method) & (summary["split"] == split)].iloc[0]
            mean, std = _expected(method, split_i)
            assert row["n"] == 2
            assert row["seeds"] == [1, 2]
            assert row["metric"] == "accuracy"
            assert row["mean"] == pytest.approx(mean)
            assert row["std"] == pytest.approx(std)
    # spot-check against numbers written by hand: ptv2 val = (78, 80) -> 79 ± 1.414
    ptv2_val = summary[(summary["method"] == "ptv2") & (summary["split"] == "val")].iloc[0]
    assert ptv2_val["mean"] == pytest.approx(79.0)
    assert ptv2_val["std"] == pytest.approx(math.sqrt(2))
    # methods are ordered from more to fewer trainable parameters: prompt before ptv2 in the method order
    assert list(summary["method"]) == ["prompt", "prompt", "ptv2", "ptv2"]


def test_single_seed_has_no_std(tmp_path: Path) -> None:
    write_results(tmp_path / "0", method="ptv2", seed=1, metrics={"val/accuracy": 0.5})
    summary = report.summarize(report.load_runs(tmp_path), paper=_paper([]))
    assert summary["n"].tolist() == [1]
    assert math.isnan(summary["std"].iloc[0])
    assert report.format_cell(50.0, float("nan")) == "50.00"


def test_paper_join_maps_backbone_split_and_metric(sweep: Path) -> None:
    paper = _paper([
        # the paper says "dev" and "BERT-large"; our runs say "val" and bert-large
        {"task": "rte", "model": "bert-large", "method": "ptv2", "split": "dev", "metric": "accuracy",
         "value": 78.3},
        # a lower-priority source for the same cell must not win over the paper's table
        {"task": "rte", "model": "bert-large", "method": "ptv2", "split": "dev", "metric": "accuracy",
         "value": 80.1, "table": "README reimplementation"},
        {"task": "rte", "model": "bert-large", "method": "prompt", "split": "dev", "metric": "acc",
         "value": 53.5, "certain": "no"},
    ])
    summary = report.summarize(report.load_runs(sweep), paper=paper)
    ptv2_val = summary[(summary["method"] == "ptv2") & (summary["split"] == "val")].iloc[0]
    assert ptv2_val["paper"] == pytest.approx(78.3)
    assert ptv2_val["diff"] == pytest.approx(79.0 - 78.3)
    assert ptv2_val["paper_certain"] == "yes"
    prompt_val = summary[(summary["method"] == "prompt") & (summary["split"] == "val")].iloc[0]
    assert prompt_val["paper"] == pytest.approx(53.5)  # "acc" is the same metric as "accuracy"
    assert prompt_val["paper_certain"] == "no"
    test_rows = summary[summary["split"] == "test"]
    assert test_rows["paper"].isna().all()  # the paper's dev numbers are not compared with test scores
    # an uncertain paper value is flagged in the rendered table
    markdown = report.to_markdown(summary)
    assert "53.5?" in markdown and "| 78.3 |" in markdown


def test_backbone_aliases() -> None:
    assert report.backbone_of("microsoft/deberta-v2-xlarge") == "deberta-xlarge"
    assert report.backbone_of("bert-large-cased") == "bert-large"
    assert report.backbone_of("roberta_large") == "roberta-large"


def test_write_report_files(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = report.write_report(sweep, out, paper=_paper([]))
    assert result.markdown == out / "report.md"
    md = result.markdown.read_text()
    mean, std = _expected("ptv2", 0)
    assert f"| {mean:.2f} ± {std:.2f} |" in md
    assert "![efficiency](efficiency.png)" in md

    with result.csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    row = next(r for r in rows if r["method"] == "prompt" and r["split"] == "test")
    mean, std = _expected("prompt", 1)
    assert float(row["mean"]) == pytest.approx(mean)
    assert float(row["std"]) == pytest.approx(std)
    assert row["n"] == "2" and row["seeds"] == "1 2"

    assert result.figure is not None
    data = result.figure.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_bundled_paper_numbers_are_well_formed() -> None:
    paper = report.load_paper_numbers(REPO / "experiments" / "paper_numbers.csv")
    assert len(paper) > 0
    assert set(paper["certain"]) <= {"yes", "no"}
    assert paper["value"].between(0, 100).all()  # percent, as printed
    assert set(paper["method"]) <= {"finetune", "head", "prompt", "ptv1", "ptv2"}
    assert paper["source"].str.len().gt(0).all()
    uncertain = paper[paper["certain"] == "no"]
    assert uncertain["note"].str.len().gt(0).all()  # every uncertain number says what is unknown
    keys = paper[["table", "task", "model", "method", "split", "metric"]].astype(str).agg("|".join, axis=1)
    assert keys.is_unique


def test_malformed_results_are_skipped_with_their_path(sweep: Path) -> None:
    bad = sweep / "9" / "results.json"
    bad.parent.mkdir()
    bad.write_text('{"method": "ptv2", "task": ')  # truncated: a job killed mid-write without atomic rename
    missing = sweep / "10" / "results.json"
    missing.parent.mkdir()
    missing.write_text(json.dumps({"method": "ptv2", "task": "rte", "model": "bert-large"}))

    skipped: list[report.Skipped] = []
    with pytest.warns(report.ResultsWarning) as caught:
        runs = report.load_runs(sweep, skipped=skipped)
    assert len(runs) == 4  # the good runs still load
    messages = [str(w.message) for w in caught]
    assert any(str(bad) in m and "not valid JSON" in m for m in messages)
    assert any(str(missing) in m and "missing key(s) seed, metrics" in m for m in messages)
    assert {s.path for s in skipped} == {bad, missing}

    with pytest.warns(report.ResultsWarning):
        result = report.write_report(sweep, paper=_paper([]))
    md = result.markdown.read_text()
    assert "## Skipped runs" in md and str(bad) in md


def test_malformed_results_raise_in_strict_mode(sweep: Path) -> None:
    bad = sweep / "9" / "results.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"method": "ptv2", "task": "rte", "model": "m", "seed": 1,
                               "metrics": {"val/accuracy": "high"}}))
    with pytest.raises(report.ResultsError) as info:
        report.load_runs(sweep, errors="raise")
    assert info.value.path == bad
    assert "val/accuracy" in str(info.value)


def test_cli_writes_report_and_prints_table(sweep: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert report.main([str(sweep), "--out", str(out), "--metric", "accuracy"]) == 0
    printed = capsys.readouterr().out
    assert "79.00 ± 1.41" in printed
    assert (out / "report.md").is_file() and (out / "report.csv").is_file()
    assert (out / "efficiency.png").stat().st_size > 0


def test_cli_strict_reports_path_and_fails(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = sweep / "9" / "results.json"
    bad.parent.mkdir()
    bad.write_text("not json")
    assert report.main([str(sweep), "--strict"]) == 2
    assert str(bad) in capsys.readouterr().err


def test_cli_empty_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main([str(tmp_path)]) == 1
    assert "no results.json" in capsys.readouterr().err


def test_cli_wandb_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert report.main(["--wandb", "me/ptrain"]) == 2
    err = capsys.readouterr().err
    assert "offline" in err and "local sweep directory" in err


def test_wandb_runs_use_best_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs read through wandb.Api() get the best-checkpoint scores ptrain logs as best/<split>/<metric>."""
    import types

    import wandb

    class FakeRun:
        def __init__(self, run_id: str, method: str, seed: int, last: float, best: float) -> None:
            self.id = run_id
            self.config = {"method": {"name": method, "length": 20}, "task": {"name": "rte"},
                           "model": {"name": "bert-large"}, "seed": seed, "experiment": "demo"}
            self.summary = {"val/accuracy": last, "best/val/accuracy": best, "trainable_params": 10,
                            "total_params": 1000, "trainable_share": 0.01, "_step": 9}

    runs = [FakeRun("a", "ptv2", 1, 0.70, 0.78), FakeRun("b", "ptv2", 2, 0.71, 0.80)]
    fake_api = types.SimpleNamespace(runs=lambda path, filters=None: runs)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(wandb, "Api", lambda timeout=None: fake_api)

    frame = report.load_wandb_runs("me/ptrain")
    assert sorted(frame["val/accuracy"]) == [0.78, 0.80]  # best, not last epoch
    assert frame["run_dir"].tolist() == ["wandb:a", "wandb:b"]
    summary = report.summarize(frame, metric="accuracy", paper=_paper([]))
    assert summary["mean"].tolist() == [pytest.approx(79.0)]
    assert report.summarize(frame, paper=_paper([])).empty  # no main_metric anywhere: nothing to pick
    for run in runs:  # as ptrain.train logs it: main_metric beside the config, best_epoch and wall_s as metrics
        run.config["main_metric"] = "accuracy"
        run.summary.update(best_epoch=3, wall_s=12.5)
    frame = report.load_wandb_runs("me/ptrain")
    assert frame["best_epoch"].tolist() == [3, 3] and frame["wall_s"].tolist() == [12.5, 12.5]
    assert report.summarize(frame, paper=_paper([]))["mean"].tolist() == [pytest.approx(79.0)]


def test_extra_test_sets_and_aliases(tmp_path: Path) -> None:
    """CoNLL05's Brown test set (test/f1_brown) gets its own row; an alias never doubles a metric."""
    metrics = {"val/f1": 0.85, "test/f1": 0.89, "test/f1_brown": 0.80, "test/precision": 0.9, "val/acc": 0.1}
    write_results(tmp_path / "0", method="ptv2", seed=1, task="conll05", model="roberta-large",
                  metrics=metrics, main_metric="f1")
    write_results(tmp_path / "1", method="ptv2", seed=1, task="rte", metrics={"val/accuracy": 0.7,
                  "val/acc": 0.1})
    paper = report.load_paper_numbers(REPO / "experiments" / "paper_numbers.csv")
    summary = report.summarize(report.load_runs(tmp_path), paper=paper)
    conll = summary[summary["task"] == "conll05"].set_index(["split", "metric"])
    assert sorted(conll.index) == [("test", "f1"), ("test", "f1_brown"), ("val", "f1")]
    # WSJ: the paper's Table 3 row (89.2) wins over the authors' README re-run (89.4) of the same cell;
    # Brown has only the README row
    assert conll.loc[("test", "f1"), "paper"] == pytest.approx(89.2)
    assert conll.loc[("test", "f1"), "paper_source"].startswith("Table 3")
    assert conll.loc[("test", "f1_brown"), "paper"] == pytest.approx(83.9)
    assert conll.loc[("test", "f1_brown"), "mean"] == pytest.approx(80.0)
    rte = summary[summary["task"] == "rte"]
    assert rte["metric"].tolist() == ["accuracy"] and rte["mean"].tolist() == [pytest.approx(70.0)]


def test_job_directories_without_results_are_listed(sweep: Path) -> None:
    """A Hydra job that died before writing results.json is named in the report, not silently dropped."""
    failed = sweep / "7"
    (failed / ".hydra").mkdir(parents=True)
    (failed / ".hydra" / "config.yaml").write_text("seed: 3\n")
    result = report.write_report(sweep, paper=_paper([]))
    assert len(result.runs) == 4
    assert [(s.path, s.reason.split(" ")[0]) for s in result.skipped] == [(failed, "no")]
    assert str(failed) in result.markdown.read_text()
