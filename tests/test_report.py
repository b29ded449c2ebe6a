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


# --------------------------------------------------------------------------------------------------
# Figures: a richer synthetic grid (two tasks, five methods, length and depth ablations, CSV curves)
# --------------------------------------------------------------------------------------------------

HIDDEN, DEPTH = 1024, 24  # bert-large shapes, so parameter counts look like the paper's
#: Seed offsets in points; they sum to zero, so a cell's mean is exactly its base score below.
SEED_OFFSETS = {11: -0.5, 22: 0.0, 33: 0.5}
HEAD = {"synthetic_ner": HIDDEN * 9 + 9, "synthetic_cls": HIDDEN * 2 + 2}
PTV1_ENCODER = 5_250_000  # P-Tuning v1's LSTM prompt encoder
MLP = HIDDEN * 512 + 512 * 2 * DEPTH * HIDDEN  # P-Tuning v2's reparameterisation MLP
EPOCHS, STEPS_PER_EPOCH = 5, 50


def _prompt_params(method: str, length: int, layers: list[int] | None) -> int:
    """Parameters of the prompt itself (what prompt_bytes stores), without the task head."""
    if method == "ptv2":
        return 2 * (DEPTH if layers is None else len(layers)) * length * HIDDEN
    return length * HIDDEN if method in ("prompt", "ptv1") else 0


def _base_score(task: str, method: str, length: int, layers: list[int] | None, reparam: str) -> float:
    """Made-up scores (points) shaped like the paper's findings: longer and deeper prompts help, last layers
    matter more than first ones. Synthetic numbers, for figures and tests only."""
    log_len = math.log2(length)
    if task == "synthetic_cls":
        return {"finetune": 70.5, "head": 55.0, "prompt": 58.0, "ptv1": 60.0}.get(
            method, 70.8 if reparam == "mlp" else 70.0)
    if method in ("finetune", "head"):
        return {"finetune": 91.0, "head": 55.0}[method]
    if method in ("prompt", "ptv1"):
        return round(62.0 + 1.6 * log_len + (3.0 if method == "ptv1" else 0.0), 2)
    score = 84.0 + 6.0 * (1 - 2 ** (-log_len / 2)) + (0.4 if reparam == "mlp" else 0.0)
    if layers is not None:
        k = len(layers)
        score -= (30.0 if layers[0] == 0 else 12.0) * (1 - k / DEPTH) ** 2
    return round(score, 2)


def _write_curve_csv(run_dir: Path, metric: str, final: float, method: str) -> None:
    """A CSVLogger metrics.csv shaped like a real ptrain run: train/loss every 10 steps, one validation per
    epoch, then the best checkpoint's re-validation one epoch past the last (not a curve point) and the
    summary row."""
    csv_dir = run_dir / "csv"
    csv_dir.mkdir(parents=True, exist_ok=True)
    tau = {"finetune": 60.0, "head": 150.0, "prompt": 120.0, "ptv1": 100.0}.get(method, 80.0)
    floor = 1.2 * (1 - final)
    lines = [f"epoch,step,train/loss,val/{metric},best/val/{metric}"]
    for epoch in range(EPOCHS):
        for step in range(epoch * STEPS_PER_EPOCH + 9, (epoch + 1) * STEPS_PER_EPOCH, 10):
            lines.append(f"{epoch},{step},{floor + 1.5 * math.exp(-step / tau):.4f},,")
        score = final * (1 - 0.35 * (1 - (epoch + 1) / EPOCHS) ** 2)
        lines.append(f"{epoch},{(epoch + 1) * STEPS_PER_EPOCH - 1},,{score:.6f},")
    lines.append(f"{EPOCHS},{EPOCHS * STEPS_PER_EPOCH - 1},,{final:.6f},")
    lines.append(f",0,,,{final:.6f}")
    (csv_dir / "metrics.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_figure_grid(root: Path) -> Path:
    """Three experiments of made-up runs (3 seeds each): a method comparison on two tasks with CSV curves,
    and a length and a depth ablation on synthetic_ner (trained without logger=csv, so no curves)."""
    cells: list[tuple[str, str, str, int, list[int] | None, str]] = []
    for task in ("synthetic_ner", "synthetic_cls"):
        for method in ("finetune", "head", "prompt", "ptv1", "ptv2"):
            cells.append(("comparison", task, method, 20, None, "none"))
        cells.append(("comparison", task, "ptv2", 20, None, "mlp"))
    for method in ("prompt", "ptv2"):
        cells += [("ablation_length", "synthetic_ner", method, n, None, "none") for n in (1, 4, 16, 64)]
    for k in (1, 3, 6, 12):
        cells.append(("ablation_depth", "synthetic_ner", "ptv2", 16, list(range(k)), "none"))
        cells.append(("ablation_depth", "synthetic_ner", "ptv2", 16, list(range(DEPTH - k, DEPTH)), "none"))
    cells.append(("ablation_depth", "synthetic_ner", "ptv2", 16, None, "none"))
    job = 0
    for experiment, task, method, length, layers, reparam in cells:
        metric = "f1" if task == "synthetic_ner" else "accuracy"
        prompt = _prompt_params(method, length, layers)
        trainable = {"finetune": TOTAL_PARAMS, "head": HEAD[task]}.get(method, prompt + HEAD[task])
        trainable += PTV1_ENCODER if method == "ptv1" else MLP if reparam == "mlp" else 0
        base = _base_score(task, method, length, layers, reparam)
        for seed, offset in SEED_OFFSETS.items():
            score = (base + offset) / 100
            metrics = {f"val/{metric}": score}
            if task == "synthetic_ner":
                metrics[f"test/{metric}"] = score - 0.01
            run_dir = root / experiment / str(job)
            path = write_results(run_dir, method=method, seed=seed, task=task, metrics=metrics,
                                 experiment=experiment, length=length, layers=layers, reparam=reparam,
                                 trainable_params=trainable, main_metric=metric)
            record = json.loads(path.read_text())
            record["prompt_bytes"] = 4 * prompt  # write_results assumes every trainable weight is prompt
            path.write_text(json.dumps(record, indent=2))
            if experiment == "comparison":
                _write_curve_csv(run_dir, metric, score, method)
            job += 1
    return root


@pytest.fixture(scope="module")
def figure_grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_figure_grid(tmp_path_factory.mktemp("figures") / "grid")


@pytest.fixture(scope="module")
def figure_summary(figure_grid: Path) -> pd.DataFrame:
    return report.summarize(report.load_runs(figure_grid), paper=_paper([]))


def _ax(fig: object, title: str) -> object:
    return next(ax for ax in fig.axes if ax.get_title() == title)  # type: ignore[attr-defined]


def _line(ax: object, label: str) -> object:
    """The data line of a plotted series by legend label (an errorbar series keeps its label on its container)."""
    for container in ax.containers:  # type: ignore[attr-defined]
        if container.get_label() == label:
            return container.lines[0]
    return next(line for line in ax.get_lines() if line.get_label() == label)  # type: ignore[attr-defined]


def test_pareto_front_hand_cases() -> None:
    assert report.pareto_front([]) == []
    assert report.pareto_front([(5.0, 50.0)]) == [0]
    # (3, 55) costs more than (2, 60) and scores less: dominated; the rest each buy a higher score
    assert report.pareto_front([(1, 50), (2, 60), (3, 55), (4, 70)]) == [0, 1, 3]
    assert report.pareto_front([(4, 70), (1, 50), (3, 55), (2, 60)]) == [1, 3, 0]  # ordered by cost
    assert report.pareto_front([(1, 50), (1, 60)]) == [1]  # same cost: only the better score
    assert report.pareto_front([(1, 60), (2, 60)]) == [0]  # same score: only the cheaper one
    assert report.pareto_front([(1, 60), (1, 60), (3, 61)]) == [0, 1, 2]  # exact duplicates both stay
    assert report.pareto_front([(10, 90), (1, 95)]) == [1]  # cheapest is best: one-point frontier
    assert report.pareto_front([(float("nan"), 99), (2, 50)]) == [1]  # NaN never wins


def test_frontier_one_panel_per_task_with_hand_computed_front(figure_summary: pd.DataFrame) -> None:
    fig = report.plot_frontier(figure_summary, x="trainable_params")
    assert sorted(ax.get_title() for ax in fig.axes) == ["synthetic_cls", "synthetic_ner"]
    cls = _ax(fig, "synthetic_cls")
    assert cls.get_xscale() == "log" and cls.get_ylabel() == "val/accuracy (points)"  # no test split here
    assert _ax(fig, "synthetic_ner").get_ylabel() == "test/f1 (points)"  # never F1 and accuracy on one axis
    # by hand: head 2,050 (55) < prompt 22,530 (58) < ptv2 985,090 (70) < ptv2+mlp 26.7M (70.8); ptv1
    # (5.3M, 60) and finetune (335M, 70.5) are dominated
    front = _line(cls, "Pareto frontier")
    ptv2 = 2 * DEPTH * 20 * HIDDEN + HEAD["synthetic_cls"]
    assert list(front.get_xdata()) == [HEAD["synthetic_cls"], 20 * HIDDEN + 2050, ptv2, ptv2 + MLP]
    assert list(front.get_ydata()) == pytest.approx([55.0, 58.0, 70.0, 70.8])
    assert front.get_drawstyle() == "steps-post"
    # the frontier cells are labelled, the dominated ones are not
    assert sorted(t.get_text() for t in cls.texts) == ["head", "prompt", "ptv2", "ptv2 mlp"]


def test_frontier_over_prompt_bytes_names_methods_left_out(figure_summary: pd.DataFrame) -> None:
    fig = report.plot_frontier(figure_summary, task="synthetic_cls", x="prompt_bytes")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    # in bytes, ptv1's encoder is free: it stores the same 20 vectors as prompt and beats it (60 > 58); ptv2
    # with and without MLP store the same prefix, so the MLP's 0.8 points cost nothing either
    front = _line(ax, "Pareto frontier")
    assert list(front.get_xdata()) == [4 * 20 * HIDDEN, 4 * 2 * DEPTH * 20 * HIDDEN]
    assert list(front.get_ydata()) == pytest.approx([60.0, 70.8])
    assert sorted(t.get_text() for t in ax.texts if t.get_text().startswith("ptv")) == ["ptv1", "ptv2 mlp"]
    assert any("not shown (no prompt_bytes): finetune, head" in t.get_text() for t in ax.texts)
    with pytest.raises(ValueError, match="x must be one of"):
        report.plot_frontier(figure_summary, x="wall_s")


def test_ablation_points_equal_summary_means(figure_summary: pd.DataFrame) -> None:
    rows = figure_summary[(figure_summary["experiment"] == "ablation_length") & (figure_summary["split"] == "test")]
    fig = report.plot_ablation(figure_summary, factor="length")
    assert [ax.get_title() for ax in fig.axes] == ["synthetic_ner"]  # synthetic_cls has no length ablation
    ax = fig.axes[0]
    for method, label in (("prompt", "prompt"), ("ptv2", "ptv2")):
        cells = rows[rows["method"] == method].sort_values("length")
        line = _line(ax, label)
        assert list(line.get_xdata()) == [1, 4, 16, 64]
        assert list(line.get_ydata()) == pytest.approx(cells["mean"].tolist())
        assert list(line.get_ydata()) == pytest.approx([_base_score("synthetic_ner", method, n, None, "none") - 1
                                                        for n in (1, 4, 16, 64)])
    assert len(ax.containers) == 2  # the comparison's single length (20) is not an ablation


def test_depth_ablation_separates_first_and_last_layers(figure_summary: pd.DataFrame) -> None:
    series = {s["label"]: s for s in report.ablation_series(figure_summary, "synthetic_ner", "depth")}
    assert set(series) == {"ptv2, first k layers", "ptv2, last k layers"}
    first, last = series["ptv2, first k layers"], series["ptv2, last k layers"]
    assert first["x"] == last["x"] == [1, 3, 6, 12]
    assert first["mean"] == pytest.approx(
        [_base_score("synthetic_ner", "ptv2", 16, list(range(k)), "none") - 1 for k in (1, 3, 6, 12)])
    assert last["mean"] == pytest.approx(
        [_base_score("synthetic_ner", "ptv2", 16, list(range(DEPTH - k, DEPTH)), "none") - 1 for k in (1, 3, 6, 12)])
    assert first["all"] == pytest.approx(_base_score("synthetic_ner", "ptv2", 16, None, "none") - 1)
    fig = report.plot_ablation(figure_summary, task="synthetic_ner", factor="depth")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "prefix depth (number of prompted layers)"
    all_line = _line(ax, "ptv2, all layers")
    assert list(all_line.get_ydata()) == pytest.approx([first["all"]] * 2)  # a horizontal line
    assert list(_line(ax, "ptv2, last k layers").get_ydata()) == pytest.approx(last["mean"])


def test_ablation_without_variation_is_skipped_with_a_note(sweep: Path, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    summary = report.summarize(report.load_runs(sweep), paper=_paper([]))
    with caplog.at_level("INFO", logger="ptrain.report"):
        assert report.plot_ablation(summary, factor="length") is None
    assert "no length ablation" in caplog.text
    result = report.write_report(sweep, tmp_path / "out", paper=_paper([]))
    assert sorted(result.figures) == ["efficiency-bytes.png", "efficiency.png"]
    md = result.markdown.read_text()
    assert "ablation-length.png not written" in md and "no training curves" in md
    assert not (tmp_path / "out" / "ablation-depth.png").exists()


def test_load_curves_long_frame(figure_grid: Path) -> None:
    runs = report.load_runs(figure_grid)
    curves = report.load_curves(figure_grid, runs)
    assert list(curves.columns) == list(report.CURVE_COLUMNS)
    assert curves["run_dir"].nunique() == 2 * 6 * 3  # comparison runs only: the ablations have no CSV
    assert set(curves["metric"]) == {"train/loss", "val/f1", "val/accuracy"}  # best/* is not a curve
    one = curves[(curves["run_dir"] == "comparison/0") & (curves["metric"] == "val/f1")]
    # one point per trained epoch: the re-validation of the best checkpoint (epoch 5) is dropped
    assert one["step"].tolist() == [49, 99, 149, 199, 249] and one["epoch"].max() == EPOCHS - 1
    assert one["value"].iloc[-1] == pytest.approx(runs.set_index("run_dir").loc["comparison/0", "val/f1"])


def test_curves_figure_has_one_line_per_cell(figure_grid: Path) -> None:
    curves = report.load_curves(figure_grid, report.load_runs(figure_grid))
    fig = report.plot_curves(curves, "synthetic_cls")
    val, loss = fig.axes[:2]
    assert val.get_ylabel() == "val/accuracy (points)" and loss.get_ylabel() == "train/loss"
    assert len(val.get_lines()) == len(loss.get_lines()) == 6  # 6 cells, seeds averaged
    ptv2 = _line(val, "ptv2")
    assert ptv2.get_ydata()[-1] == pytest.approx(70.0)  # mean of the seeds' last validation
    assert report.plot_curves(curves, "no_such_task") is None


def test_wandb_curves_from_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """run.history() rows become the same long frame as CSV logs, stepped by Lightning's global step."""
    import types

    import wandb

    history = [
        {"_step": 0, "trainable_params": 10},
        {"_step": 1, "trainer/global_step": 9, "epoch": 0, "train/loss": 1.2},
        {"_step": 2, "trainer/global_step": 19, "epoch": 0, "val/accuracy": 0.61},
        {"_step": 3, "trainer/global_step": 29, "epoch": 1, "train/loss": 0.8},
        {"_step": 4, "trainer/global_step": 39, "epoch": 1, "val/accuracy": 0.70},
        {"_step": 5, "trainer/global_step": 39, "epoch": 2, "val/accuracy": 0.70},  # best-checkpoint re-run
        {"_step": 6, "best/val/accuracy": 0.70},
    ]

    class FakeRun:
        id = "a"
        config = {"method": {"name": "ptv2", "length": 20}, "task": {"name": "rte"}, "model": {"name": "m"},
                  "seed": 1, "main_metric": "accuracy"}
        summary = {"best/val/accuracy": 0.70, "trainable_params": 10}

        def history(self, samples: int = 500, pandas: bool = True) -> list[dict[str, object]]:
            assert not pandas and samples >= 1000
            return history

    fake_api = types.SimpleNamespace(runs=lambda path, filters=None: [FakeRun()])
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(wandb, "Api", lambda timeout=None: fake_api)
    curves = report.load_wandb_curves("me/ptrain")
    assert list(curves.columns) == list(report.CURVE_COLUMNS)
    assert curves[["step", "metric", "value"]].values.tolist() == [
        [9, "train/loss", 1.2], [29, "train/loss", 0.8], [19, "val/accuracy", 0.61], [39, "val/accuracy", 0.70]]
    assert set(curves["run_dir"]) == {"wandb:a"} and set(curves["method"]) == {"ptv2"}
    assert report.plot_curves(curves, "rte") is not None


def test_cli_writes_every_figure_and_links_them(figure_grid: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert report.main([str(figure_grid), "--out", str(out)]) == 0
    names = ["efficiency.png", "efficiency-bytes.png", "ablation-length.png", "ablation-depth.png",
             "curves-synthetic_cls.png", "curves-synthetic_ner.png"]
    md = (out / "report.md").read_text()
    for name in names:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({name})" in md, name


if __name__ == "__main__":  # python tests/test_report.py DIR: write the synthetic figure grid into DIR
    import sys

    print(make_figure_grid(Path(sys.argv[1] if len(sys.argv) > 1 else "figure-grid")))
