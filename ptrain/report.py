"""Turn a sweep directory full of ``results.json`` files into tables, a paper comparison and figures.

Every training run writes ``<run_dir>/results.json`` (the contract with ``ptrain.train``). This module
never imports the training stack: reading a finished sweep must work on a laptop without a GPU,
without the models and without the data, so that results copied off a cluster can be analysed anywhere.

Public entry points:

* :func:`load_runs` - one row per run, sweep factors and metrics flattened into columns.
* :func:`summarize` - mean and standard deviation over seeds per cell, joined with the paper's numbers.
* :func:`write_report` - ``report.md``, ``report.csv`` and the figures for a sweep: per task, the score
  against trainable parameters and prompt bytes with the Pareto frontier (:func:`plot_frontier`), against
  prompt length and prefix depth (:func:`plot_ablation`), and training curves (:func:`plot_curves`) from
  each run's CSV log (:func:`load_curves`) or W&B history (:func:`load_wandb_curves`).
* :func:`main` - the command line, ``python -m ptrain.report DIR`` (also reachable as ``ptrain report``).

Scores are reported in percent points (fractions times 100) because that is how the paper prints them;
the difference column is then directly "points above or below the paper".
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"

#: The keys that define one cell of a grid; seeds are averaged within a cell.
CELL_KEYS: tuple[str, ...] = ("experiment", "task", "model", "method", "length", "layers", "reparam")

#: Keys every results.json must carry; a file without them cannot be placed in a table.
REQUIRED_KEYS: tuple[str, ...] = ("method", "task", "model", "seed", "metrics")

#: Environment variable that points at a paper-numbers CSV, for installs without the source tree.
PAPER_ENV = "PTRAIN_PAPER_NUMBERS"

#: Paper split names mapped to the split prefix ptrain uses in metric names ("val/f1").
_SPLIT_ALIASES = {"dev": "val", "validation": "val", "valid": "val", "eval": "val"}

#: Metric spellings treated as the same quantity when joining with the paper. MultiRC's F1a and
#: ReCoRD's F1 are the "f1" of their tasks, so they join with a run's f1.
_METRIC_ALIASES = {
    "acc": "accuracy",
    "f1a": "f1",
    "f1_a": "f1",
    "micro_f1": "f1",
    "micro-f1": "f1",
    "f1_micro": "f1",
    "exact_match": "em",
    "exact": "em",
}

#: Model names (config option or Hugging Face id) mapped to the paper's backbone names.
_BACKBONE_ALIASES = {
    "bert-large": "bert-large",
    "bert-large-cased": "bert-large",
    "bert-large-uncased": "bert-large",
    "roberta-large": "roberta-large",
    "deberta-xlarge": "deberta-xlarge",
    "deberta-v2-xlarge": "deberta-xlarge",
}

#: Method order in tables and legends: from most to fewest trainable parameters.
_METHOD_ORDER = ("finetune", "head", "ptv1", "prompt", "ptv2")


class ResultsError(ValueError):
    """A results.json that cannot be read; carries the path so the user can go and look at it."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ResultsWarning(UserWarning):
    """Emitted for each results.json skipped by ``load_runs(errors="warn")``."""


@dataclass
class Skipped:
    """A results.json that was left out of the tables, and why."""

    path: Path
    reason: str


@dataclass
class Report:
    """What :func:`write_report` produced, so callers (and tests) need not guess file names."""

    markdown: Path
    csv: Path
    figure: Path | None
    runs: pd.DataFrame
    summary: pd.DataFrame
    skipped: list[Skipped] = field(default_factory=list)
    #: Every figure written, by file name (``efficiency.png``, ``ablation-length.png``, ``curves-rte.png``).
    figures: dict[str, Path] = field(default_factory=dict)
    #: Figures not written and why (no ablation in the grid, no CSV logs), also listed in report.md.
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def _get(mapping: Any, *keys: str, default: Any = None) -> Any:
    """Nested lookup that tolerates missing levels: configs of some methods lack prompt keys."""
    node = mapping
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


def _layers_label(layers: Any) -> str | None:
    """A hashable, readable label for ``method.layers``: null means every layer."""
    if layers is None:
        return "all"
    if isinstance(layers, str):
        return layers
    if isinstance(layers, Iterable):
        items = [int(x) for x in layers]
        if items and items == list(range(items[0], items[-1] + 1)) and len(items) > 2:
            return f"{items[0]}-{items[-1]}"
        return ",".join(str(x) for x in items)
    return str(layers)


def _parse_record(path: Path, data: Any) -> dict[str, Any]:
    """Flatten one results.json into a row, or raise ResultsError saying what is wrong with it."""
    if not isinstance(data, Mapping):
        raise ResultsError(path, f"expected a JSON object, got {type(data).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ResultsError(path, f"missing key(s) {', '.join(missing)}")
    metrics = data["metrics"]
    if not isinstance(metrics, Mapping):
        raise ResultsError(path, "'metrics' must be an object of name -> number")
    config = data.get("config") or {}
    if not isinstance(config, Mapping):
        raise ResultsError(path, "'config' must be an object (the resolved Hydra config)")
    try:
        seed = int(data["seed"])
    except (TypeError, ValueError):
        raise ResultsError(path, f"'seed' must be an integer, got {data['seed']!r}") from None

    method = str(data["method"])
    prompt_method = method not in ("finetune", "head")
    length = _get(config, "method", "length")
    reparam = _get(config, "method", "reparam")
    row: dict[str, Any] = {
        "experiment": data.get("experiment") or _get(config, "experiment"),
        "task": str(data["task"]),
        "model": str(data["model"]),
        "method": method,
        # Prompt-only factors are blanked for full fine-tuning and head tuning so that a stray default
        # in their config does not split one cell into several.
        "length": int(length) if (prompt_method and length is not None) else None,
        "layers": _layers_label(_get(config, "method", "layers")) if method == "ptv2" else None,
        "reparam": (str(reparam) if reparam is not None else "none") if method == "ptv2" else None,
        "seed": seed,
        "trainable_params": data.get("trainable_params"),
        "total_params": data.get("total_params"),
        "trainable_share": data.get("trainable_share"),
        "prompt_bytes": data.get("prompt_bytes"),
        "main_metric": data.get("main_metric"),
        "best_epoch": data.get("best_epoch"),
        "wall_s": data.get("wall_s"),
    }
    if row["trainable_share"] is None and row["trainable_params"] and row["total_params"]:
        row["trainable_share"] = row["trainable_params"] / row["total_params"]
    for name, value in metrics.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ResultsError(path, f"metric {name!r} is not a number: {value!r}")
        row[str(name)] = float(value)
    return row


def _iter_results(root: Path) -> list[Path]:
    """All results.json below root (or root itself), sorted so tables come out in a stable order."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob(RESULTS_FILE) if p.is_file())


def load_runs(
    root: str | os.PathLike[str],
    *,
    errors: Literal["warn", "raise"] = "warn",
    skipped: list[Skipped] | None = None,
) -> pd.DataFrame:
    """Read every ``results.json`` under ``root`` into one DataFrame, one row per run.

    Columns: ``run_dir`` (relative to root), the cell keys (experiment, task, model, method, length,
    layers, reparam), ``seed``, the efficiency numbers (trainable_params, total_params, trainable_share,
    prompt_bytes), ``main_metric``, ``best_epoch``, ``wall_s`` and one column per metric exactly as the
    run named it (``"val/f1"``, ``"test/accuracy"``, ...), as fractions.

    A malformed file (bad JSON, missing keys, non-numeric metric) is skipped with a
    :class:`ResultsWarning` naming its path by default, because one crashed job should not hide a
    whole grid; pass ``errors="raise"`` to get a :class:`ResultsError` instead (for CI). Skipped files
    are also appended to ``skipped`` when a list is given, so a report can list them, together with Hydra
    job directories (those holding ``.hydra/``) that have no results.json at all: jobs that failed, were
    killed or are still running, which would otherwise silently shrink a cell's seed count.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no such results directory: {root}")
    rows: list[dict[str, Any]] = []
    for path in _iter_results(root):
        try:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ResultsError(path, f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
            except OSError as exc:
                raise ResultsError(path, f"cannot be read ({exc.strerror})") from None
            row = _parse_record(path, data)
        except ResultsError as exc:
            if errors == "raise":
                raise
            warnings.warn(f"skipping {exc.path}: {exc.reason}", ResultsWarning, stacklevel=2)
            if skipped is not None:
                skipped.append(Skipped(exc.path, exc.reason))
            continue
        run_dir = path.parent
        row["run_dir"] = str(run_dir.relative_to(root)) if root.is_dir() else str(run_dir)
        rows.append(row)
    if skipped is not None and root.is_dir():
        for hydra_dir in sorted(root.rglob(".hydra")):
            if hydra_dir.is_dir() and not (hydra_dir.parent / RESULTS_FILE).exists():
                reason = "no results.json (job failed, was killed or is running)"
                skipped.append(Skipped(hydra_dir.parent, reason))
    return _runs_frame(rows)


def _runs_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows to a DataFrame with the fixed columns first and metric columns sorted after them."""
    fixed = [
        "run_dir", *CELL_KEYS, "seed", "trainable_params", "total_params", "trainable_share",
        "prompt_bytes", "main_metric", "best_epoch", "wall_s",
    ]
    frame = pd.DataFrame(rows)
    for col in fixed:
        if col not in frame.columns:
            frame[col] = None
    metric_cols = sorted(c for c in frame.columns if c not in fixed)
    frame = frame[fixed + metric_cols]
    if len(frame):
        frame = frame.sort_values(["experiment", "task", "model", "method", "seed"], na_position="first",
                                  key=lambda s: s.astype(str), kind="stable").reset_index(drop=True)
    return frame


# --------------------------------------------------------------------------------------------------
# Paper numbers
# --------------------------------------------------------------------------------------------------


def default_paper_path() -> Path | None:
    """Where the bundled paper numbers live: $PTRAIN_PAPER_NUMBERS, else the package's experiment configs
    (ptrain/conf/experiment, experiments/ in a clone)."""
    env = os.environ.get(PAPER_ENV)
    if env:
        return Path(env)
    candidate = Path(__file__).resolve().parent / "conf" / "experiment" / "paper_numbers.csv"
    return candidate if candidate.is_file() else None


def canonical_metric(name: str) -> str:
    """Metric name without split prefix and spelling variants, for joining with the paper."""
    base = name.split("/")[-1].strip().lower()
    return _METRIC_ALIASES.get(base, base)


def canonical_split(name: str) -> str:
    """Paper split names (dev) in ptrain's spelling (val)."""
    low = str(name).strip().lower()
    return _SPLIT_ALIASES.get(low, low)


def backbone_of(model: str) -> str:
    """The paper backbone a model name stands for (``microsoft/deberta-v2-xlarge`` -> deberta-xlarge)."""
    base = str(model).strip().lower().split("/")[-1].replace("_", "-")
    return _BACKBONE_ALIASES.get(base, base)


def load_paper_numbers(path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Read the paper-numbers CSV (see experiments/README.md for its columns).

    Returns an empty frame with the right columns when no file is found, so a report still renders
    (without the paper column) from an installed package.
    """
    columns = ["table", "task", "model", "method", "split", "metric", "value", "source", "certain", "note"]
    resolved = Path(path) if path is not None else default_paper_path()
    if resolved is None or not resolved.is_file():
        if path is not None:
            raise FileNotFoundError(f"paper numbers not found: {resolved}")
        return pd.DataFrame(columns=columns)
    frame = pd.read_csv(resolved, dtype=str, keep_default_na=False)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{resolved}: missing column(s) {', '.join(missing)}")
    frame["value"] = pd.to_numeric(frame["value"], errors="raise")
    return frame[columns]


def _paper_lookup(paper: pd.DataFrame) -> dict[tuple[str, str, str, str, str], dict[str, Any]]:
    """Index paper rows by (task, backbone, method, split, metric).

    Rows from the paper's own tables win over other sources (e.g. the authors' README
    re-implementation), and certain rows over uncertain ones, because the comparison column is meant to
    answer "how far are we from what the paper printed".
    """
    lookup: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
    if paper.empty:
        return lookup

    def rank(row: Mapping[str, Any]) -> tuple[int, int]:
        from_paper = 0 if str(row["table"]).lower().startswith("table") else 1
        certain = 0 if str(row["certain"]).lower() == "yes" else 1
        return (from_paper, certain)

    for row in sorted(paper.to_dict("records"), key=rank):
        key = (
            str(row["task"]).lower(),
            backbone_of(row["model"]),
            str(row["method"]).lower(),
            canonical_split(row["split"]),
            canonical_metric(row["metric"]),
        )
        lookup.setdefault(key, row)
    return lookup


# --------------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------------


def _split_metric_columns(columns: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Map metric columns ("val/f1") to (split, metric); columns without a split prefix are skipped."""
    out: dict[str, tuple[str, str]] = {}
    for col in columns:
        if isinstance(col, str) and "/" in col:
            split, _, metric = col.partition("/")
            if split and metric:
                out[col] = (split, metric)
    return out


def _wants(name: str, wanted: str, exact_present: bool) -> bool:
    """Does metric ``name`` belong to the requested metric ``wanted``?

    The exact name, and its suffixed variants for extra test sets (``f1_brown`` beside ``f1`` for
    CoNLL05's Brown test set), always do. A spelling alias (``acc`` for ``accuracy``) only stands in when
    the split has no metric of the exact name, so one quantity is never counted twice.
    """
    if name == wanted or name.startswith(f"{wanted}_"):
        return True
    return not exact_present and canonical_metric(name) == canonical_metric(wanted)


def _scores_long(runs: pd.DataFrame, metric: str | None) -> pd.DataFrame:
    """One row per (run, split, metric variant) holding the score of the requested (or main) metric."""
    metric_cols = _split_metric_columns(runs.columns)
    records: list[dict[str, Any]] = []
    for run in runs.to_dict("records"):
        wanted = metric or run.get("main_metric")
        if not wanted or _missing(wanted):
            continue
        wanted = str(wanted)
        for col, (split, name) in metric_cols.items():
            value = run.get(col)
            if _missing(value):
                continue
            if not _wants(name, wanted, not _missing(run.get(f"{split}/{wanted}"))):
                continue
            rec = {key: run.get(key) for key in CELL_KEYS}
            rec.update(
                split=split,
                metric=name,
                seed=run.get("seed"),
                score=100.0 * float(value),
                trainable_params=run.get("trainable_params"),
                trainable_share=run.get("trainable_share"),
                prompt_bytes=run.get("prompt_bytes"),
            )
            records.append(rec)
    return pd.DataFrame(records)


def _missing(value: Any) -> bool:
    """None, NaN or pandas NA: pandas turns None into NaN in string and float columns."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists (seeds) are never "missing"
        return False


def _none_if_nan(value: Any) -> Any:
    """Group keys come back as NaN for missing values; tables should say None instead."""
    return None if _missing(value) else value


def _method_rank(method: Any) -> int:
    return _METHOD_ORDER.index(method) if method in _METHOD_ORDER else len(_METHOD_ORDER)


def summarize(
    runs: pd.DataFrame,
    metric: str | None = None,
    paper: pd.DataFrame | str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Mean and standard deviation over seeds for every cell and split, compared with the paper.

    A cell is (experiment, task, model, method, length, layers, reparam); one summary row is written
    per cell and split (``val``, ``test``, ...) for which the runs logged the metric. ``metric`` picks
    the metric by name (``"f1"``, ``"accuracy"``); by default each run's ``main_metric`` is used.

    Columns: the cell keys, ``split``, ``metric``, ``n`` (seeds), ``mean`` and ``std`` in percent points
    (sample standard deviation, ddof=1, so NaN for a single seed), ``seeds``, the mean
    ``trainable_params`` / ``trainable_share`` / ``prompt_bytes`` of the cell, and from the paper
    ``paper`` (points as printed), ``paper_source``, ``paper_certain`` and ``diff`` (mean - paper).
    The paper is joined on (task, backbone, method, split, metric), where the model name is mapped to
    the paper's backbone and the paper's "dev" split is ptrain's "val".
    """
    paper_frame = paper if isinstance(paper, pd.DataFrame) else load_paper_numbers(paper)
    lookup = _paper_lookup(paper_frame)

    columns = [
        *CELL_KEYS, "split", "metric", "n", "mean", "std", "seeds", "trainable_params", "trainable_share",
        "prompt_bytes", "paper", "paper_source", "paper_certain", "diff",
    ]
    long = _scores_long(runs, metric)
    if long.empty:
        return pd.DataFrame(columns=columns)

    keys = [*CELL_KEYS, "split", "metric"]
    # Group on string keys: None and NaN in prompt-only factors must form their own group, not vanish.
    key_frame = long[keys].astype(object).map(lambda v: "\x00none" if _none_if_nan(v) is None else str(v))
    rows: list[dict[str, Any]] = []
    for _, idx in key_frame.groupby(keys, sort=False).groups.items():
        part = long.loc[idx]
        first = part.iloc[0]
        scores = part["score"].astype(float)
        row: dict[str, Any] = {k: _none_if_nan(first[k]) for k in keys}
        row["n"] = int(scores.count())
        row["mean"] = float(scores.mean())
        row["std"] = float(scores.std(ddof=1)) if row["n"] > 1 else float("nan")
        row["seeds"] = sorted(int(s) for s in part["seed"])
        for col in ("trainable_params", "trainable_share", "prompt_bytes"):
            values = pd.to_numeric(part[col], errors="coerce")
            row[col] = float(values.mean()) if values.notna().any() else None
        key = (
            str(row["task"]).lower(),
            backbone_of(row["model"]),
            str(row["method"]).lower(),
            canonical_split(row["split"]),
            canonical_metric(row["metric"]),
        )
        ref = lookup.get(key)
        row["paper"] = float(ref["value"]) if ref else None
        row["paper_source"] = f"{ref['table']} ({ref['source']})" if ref else None
        row["paper_certain"] = str(ref["certain"]) if ref else None
        row["diff"] = row["mean"] - row["paper"] if ref else None
        rows.append(row)

    summary = pd.DataFrame(rows, columns=columns)
    order = summary.assign(
        _exp=summary["experiment"].astype(str),
        _m=summary["method"].map(_method_rank),
        _len=pd.to_numeric(summary["length"], errors="coerce").fillna(-1),
        _split=summary["split"].map(lambda s: {"val": 0, "test": 1}.get(s, 2)),
    ).sort_values(["_exp", "task", "model", "_m", "_len", "layers", "reparam", "_split", "split"],
                  key=lambda s: s if s.dtype.kind in "if" else s.astype(str), kind="stable")
    return summary.loc[order.index].reset_index(drop=True)


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: the test score when the cell has one, else the validation score.

    This is the number :func:`plot_efficiency` shows; it mirrors how the paper reports test sets where
    labels exist (NER, SRL) and dev sets where they do not (SuperGLUE, SQuAD).
    """
    if summary.empty:
        return summary
    pref = summary.assign(_p=summary["split"].map(lambda s: {"test": 0, "val": 1}.get(s, 2)))
    keys = list(CELL_KEYS)
    key_frame = pref[keys].astype(object).map(lambda v: "\x00none" if _none_if_nan(v) is None else str(v))
    best = pref.assign(_k=key_frame.apply(tuple, axis=1)).sort_values("_p", kind="stable")
    best = best.drop_duplicates("_k", keep="first").sort_index()
    return best.drop(columns=["_p", "_k"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def _fmt_num(value: Any, digits: int = 2) -> str:
    if _missing(value):
        return "-"
    return f"{value:.{digits}f}"


def _fmt_share(value: Any) -> str:
    if _missing(value):
        return "-"
    return f"{100.0 * value:.3g}%"


def format_cell(mean: Any, std: Any) -> str:
    """``mean ± std`` in points; a single seed has no spread, so only the mean is shown."""
    if _missing(std):
        return _fmt_num(mean)
    return f"{_fmt_num(mean)} ± {_fmt_num(std)}"


def table_rows(summary: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and string cells shared by the markdown and the rich renderings."""
    header = ["experiment", "task", "model", "method", "length", "layers", "reparam", "split", "metric",
              "n", "mean ± std", "paper", "Δ", "trainable"]
    body: list[list[str]] = []
    for row in summary.to_dict("records"):
        paper = row.get("paper")
        paper_txt = _fmt_num(paper, 1)
        if paper_txt != "-" and str(row.get("paper_certain", "")).lower() != "yes":
            paper_txt += "?"
        diff = row.get("diff")
        diff_txt = "-" if _missing(diff) else f"{diff:+.2f}"
        length = row.get("length")

        def text(key: str, row: dict[str, Any] = row) -> str:
            return "-" if _missing(row.get(key)) else str(row[key])

        body.append([
            text("experiment"),
            str(row["task"]),
            str(row["model"]),
            str(row["method"]),
            "-" if _missing(length) else str(int(length)),
            text("layers"),
            text("reparam"),
            str(row["split"]),
            str(row["metric"]),
            str(row["n"]),
            format_cell(row["mean"], row["std"]),
            paper_txt,
            diff_txt,
            _fmt_share(row.get("trainable_share")),
        ])
    return header, body


def to_markdown(summary: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of a summary (no tabulate dependency needed)."""
    header, body = table_rows(summary)
    if not body:
        return "_no runs with the requested metric_\n"

    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def print_table(summary: pd.DataFrame, file: Any = None) -> None:
    """Print the summary with rich when it is installed (aligned, coloured), else as markdown."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency, but the report must not need it
        print(to_markdown(summary), file=file or sys.stdout)
        return
    header, body = table_rows(summary)
    table = Table(show_lines=False, title="ptrain report (points; ? = paper value marked uncertain)")
    for name in header:
        table.add_column(name, justify="right" if name in ("n", "mean ± std", "paper", "Δ") else "left")
    for cells in body:
        table.add_row(*cells)
    Console(file=file, width=200).print(table)


def plot_efficiency(summary: pd.DataFrame, ax: Any = None) -> Any:
    """Trainable share (log x) against the headline score of every task on one axis, one colour per method.

    Kept for the analysis notebook's single-axis overview; it mixes tasks (and so F1 with accuracy), which
    is why reports draw :func:`plot_frontier` (one panel per task, with the frontier) instead.

    Returns the matplotlib Figure. With ``ax=None`` a fresh Figure is built without pyplot, so calling
    this from a script never switches the backend of an interactive session.
    """
    from matplotlib.figure import Figure

    if ax is None:
        fig = Figure(figsize=(7, 4.5), dpi=120)
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    points = headline(summary)
    points = points[pd.to_numeric(points["trainable_share"], errors="coerce") > 0] if len(points) else points
    methods = sorted(points["method"].unique(), key=_method_rank) if len(points) else []
    tasks = sorted(points["task"].astype(str).unique()) if len(points) else []
    markers = "osD^v<>pPX*h"
    cmap = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    labelled: set[str] = set()
    for method in methods:
        for t_i, task in enumerate(tasks):
            part = points[(points["method"] == method) & (points["task"].astype(str) == task)]
            if part.empty:
                continue
            std = pd.to_numeric(part["std"], errors="coerce").fillna(0.0)
            ax.errorbar(
                part["trainable_share"].astype(float), part["mean"].astype(float), yerr=std,
                fmt=markers[t_i % len(markers)], color=cmap[method], capsize=3, linestyle="none",
                label=None if method in labelled else method,
            )
            labelled.add(method)
    ax.set_xscale("log")
    ax.set_xlabel("trainable share of parameters (log)")
    ax.set_ylabel("score (points; test where available, else val)")
    title = "Parameter efficiency"
    if len(tasks) > 1:
        title += " (marker = task: " + ", ".join(
            f"{markers[i % len(markers)]} {t}" for i, t in enumerate(tasks)) + ")"
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if methods:
        ax.legend(title="method", fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Per-task figures: Pareto frontier, ablation curves, training curves
# --------------------------------------------------------------------------------------------------

#: x quantities of the frontier figure, with their axis labels.
FRONTIER_X: dict[str, str] = {
    "trainable_params": "trainable parameters (log)",
    "prompt_bytes": "prompt bytes stored per task (log)",
}

#: Cell keys that can tell two cells of one task apart in a legend or point label.
_LABEL_KEYS: tuple[str, ...] = ("model", "length", "layers", "reparam")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, score) points no other point dominates, by ascending cost.

    A point is dominated when another costs no more and scores no less, and is strictly better in one of
    the two: that is "the best score available for at most this many parameters". Exact duplicates do
    not dominate each other, so both stay (one cell run twice under two experiment names is still a
    frontier cell). Points with a NaN coordinate are left out rather than guessed.
    """
    valid = [(i, float(c), float(s)) for i, (c, s) in enumerate(points) if not (math.isnan(c) or math.isnan(s))]
    front = [
        (c, i) for i, c, s in valid
        if not any(c2 <= c and s2 >= s and (c2 < c or s2 > s) for _, c2, s2 in valid)
    ]
    return [i for _, i in sorted(front)]


def _task_metric(summary: pd.DataFrame, task: str) -> tuple[pd.DataFrame, str, str]:
    """The cells of one task scored on one split and one metric, so a panel never mixes F1 and accuracy.

    The metric is the task's most common one (ties: the shortest name, which is the main metric rather
    than a suffixed extra test set such as ``f1_brown``); the split is ``test`` when every cell of the
    task has it, else ``val``, so that no panel puts test and dev numbers on one axis.
    """
    part = summary[summary["task"].astype(str) == task]
    counts = part["metric"].value_counts()
    metric = sorted(counts.index, key=lambda m: (-counts[m], len(str(m)), str(m)))[0]
    part = part[part["metric"] == metric]
    cells = _key_strings(part, CELL_KEYS).apply(tuple, axis=1)
    split = "test" if cells[part["split"] == "test"].nunique() == cells.nunique() else "val"
    return part[part["split"] == split].reset_index(drop=True), split, str(metric)


def _tasks(summary: pd.DataFrame, task: str | None) -> list[str]:
    if task is not None:
        return [task]
    return sorted(summary["task"].astype(str).unique()) if len(summary) else []


def _cell_label(row: Mapping[str, Any], keys: Iterable[str]) -> str:
    """``method`` plus the factors that vary in the figure (``ptv2 L16 mlp``), short enough for a point label."""
    parts = [str(row["method"])]
    for key in keys:
        value = row.get(key)
        if _missing(value) or (key == "reparam" and value == "none") or (key == "layers" and value == "all"):
            continue  # the defaults: a label names what differs from them
        if key == "length":
            parts.append(f"L{int(value)}")
        elif key == "layers":
            parts.append(f"layers {value}")
        else:
            parts.append(str(value))
    return " ".join(parts)


def _key_strings(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Cell keys as strings with a marker for missing ones: pandas keeps NaN missing through astype(str),
    and prompt-only factors are missing for fine-tuning, which must still count as a value of its own."""
    return frame[list(keys)].astype(object).map(lambda v: "\x00none" if _none_if_nan(v) is None else str(v))


def _varying(frame: pd.DataFrame, keys: Iterable[str]) -> list[str]:
    """The keys with more than one value in ``frame``: those a label must show to tell cells apart.

    Missing values do not count: fine-tuning has no prompt length, and that alone is no reason to write
    ``L20`` beside every prompt method."""
    return [k for k in keys if k in frame.columns and frame[k].dropna().astype(str).nunique() > 1]


def _panels(n: int, width: float = 5.0, height: float = 4.0) -> tuple[Any, list[Any]]:
    """A pyplot-free Figure with n panels, at most three a row (pyplot would switch a notebook's backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(max(n, 1), 3)
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(width * cols, height * rows), dpi=110)
    FigureCanvasAgg(fig)  # a renderer to measure labels with (see _place_labels), still without pyplot
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(max(n, 1))]
    return fig, axes


def _method_colours(methods: Iterable[Any]) -> dict[str, str]:
    """One colour per method, fixed by the method order, so a method keeps its colour across figures."""
    return {m: f"C{_METHOD_ORDER.index(m) if m in _METHOD_ORDER else len(_METHOD_ORDER) + i}"
            for i, m in enumerate(sorted({str(x) for x in methods}, key=_method_rank))}


def plot_frontier(summary: pd.DataFrame, task: str | None = None, x: str = "trainable_params") -> Any:
    """Score against ``trainable_params`` or ``prompt_bytes`` (log x), one panel per task, frontier drawn.

    Each point is a cell (mean over seeds, error bar = sample std), coloured by method. The black step
    line is the Pareto frontier: the best score reachable with at most that many parameters (or bytes),
    and its cells are labelled. Cells with no positive x (fine-tuning and head tuning store no prompt)
    cannot sit on a log axis; the panel says which methods were left out instead of hiding them silently.
    """
    if x not in FRONTIER_X:
        raise ValueError(f"x must be one of {', '.join(FRONTIER_X)}, got {x!r}")
    tasks = _tasks(summary, task)
    fig, axes = _panels(len(tasks))
    colours = _method_colours(summary["method"]) if len(summary) else {}
    labels: dict[Any, list[tuple[str, float, float]]] = {}
    for ax, name in zip(axes, tasks):
        cells, split, metric = _task_metric(summary, name)
        values = pd.to_numeric(cells[x], errors="coerce")
        left_out = sorted(set(cells.loc[~(values > 0), "method"].astype(str)), key=_method_rank)
        cells = cells[values > 0].reset_index(drop=True)
        label_keys = _varying(cells, _LABEL_KEYS)
        for method in sorted(cells["method"].unique(), key=_method_rank):
            part = cells[cells["method"] == method]
            ax.errorbar(part[x].astype(float), part["mean"].astype(float),
                        yerr=pd.to_numeric(part["std"], errors="coerce").fillna(0.0), fmt="o",
                        color=colours[str(method)], capsize=3, label=str(method), alpha=0.85)
        front = pareto_front(list(zip(cells[x].astype(float), cells["mean"].astype(float))))
        if front:
            fx = cells.loc[front, x].astype(float).tolist()
            fy = cells.loc[front, "mean"].astype(float).tolist()
            ax.step(fx, fy, where="post", color="black", linestyle="--", linewidth=1.2, label="Pareto frontier")
            labels[ax] = [(_cell_label(cells.loc[i], label_keys), px, py) for i, px, py in zip(front, fx, fy)]
        ax.set_xscale("log")
        ax.margins(x=0.12)  # room for the labels of the cheapest and the largest cells
        ax.set_xlabel(FRONTIER_X[x])
        ax.set_ylabel(f"{split}/{metric} (points)")
        ax.set_title(name, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        if left_out:
            ax.text(0.99, 0.01, f"not shown (no {x}): {', '.join(left_out)}", transform=ax.transAxes,
                    ha="right", va="bottom", fontsize=7, color="0.4")
        if len(cells):
            ax.legend(fontsize=7, loc="lower right" if not left_out else "center right")
    fig.tight_layout()
    for ax, items in labels.items():
        _place_labels(fig, ax, items)
    return fig


#: Where a point label may go, in points from the point: right-below, right-above, left-above, left-below,
#: then a line further off either way.
_LABEL_SPOTS: tuple[tuple[float, float, str], ...] = ((4, -11, "left"), (4, 4, "left"), (-4, 4, "right"),
                                                      (-4, -11, "right"), (4, -21, "left"), (-4, 13, "right"))


def _place_labels(fig: Any, ax: Any, items: Sequence[tuple[str, float, float]]) -> None:
    """Label points without overlapping: each label takes the first spot clear of the labels already placed
    and of the legend, and is left out when none is (frontier cells sit close on a log axis; an unreadable
    pile of text helps nobody, and every cell is in report.csv)."""
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend()
    taken = [legend.get_window_extent(renderer)] if legend is not None else []
    panel = ax.get_window_extent(renderer)
    for text, px, py in dict.fromkeys(items):  # one cell run under two experiments: one label
        for dx, dy, ha in _LABEL_SPOTS:
            note = ax.annotate(text, (px, py), textcoords="offset points", xytext=(dx, dy), fontsize=7, ha=ha)
            box = note.get_window_extent(renderer).expanded(1.05, 1.1)
            inside = panel.x0 <= box.x0 and box.x1 <= panel.x1 and panel.y0 <= box.y0 and box.y1 <= panel.y1
            if inside and not any(box.overlaps(other) for other in taken):
                taken.append(box)
                break
            note.remove()


def _layer_set(label: Any) -> list[int] | None:
    """Parse a ``layers`` label back into layer indices (``"0-2"`` -> [0, 1, 2]); None for ``all``/unknown."""
    text = str(label)
    try:
        if "-" in text:
            lo, hi = text.split("-", 1)
            return list(range(int(lo), int(hi) + 1))
        return [int(x) for x in text.split(",")]
    except ValueError:
        return None


def ablation_series(summary: pd.DataFrame, task: str, factor: str = "length") -> list[dict[str, Any]]:
    """Curves of an ablation: cells of one method that differ only in ``factor`` (``length`` or ``depth``).

    Each series is ``{"label", "method", "x", "mean", "std", "all"}``. For depth, x is the number of
    prompted layers, and the paper's two directions are kept apart: prefixes on the first k layers and
    on the last k layers (the highest layer index the group used counts as the last layer); ``all`` is the
    score with every layer prompted (drawn as a line, since the backbone depth is not in results.json), or
    None. Only groups with at least two values of the factor make a series: one value is no ablation.
    """
    if factor not in ("length", "depth"):
        raise ValueError(f"factor must be 'length' or 'depth', got {factor!r}")
    if summary.empty or task not in set(summary["task"].astype(str)):
        return []
    cells, _, _ = _task_metric(summary, task)
    column = "length" if factor == "length" else "layers"
    cells = cells[cells[column].map(lambda v: not _missing(v))]
    fixed = [k for k in CELL_KEYS if k != column]
    series: list[dict[str, Any]] = []
    if cells.empty:
        return series
    groups = [cells.loc[idx] for _, idx in _key_strings(cells, fixed).groupby(fixed, sort=False).groups.items()]
    groups = [g for g in groups if _key_strings(g, [column])[column].nunique() > 1]
    label_keys = _varying(pd.concat(groups) if groups else cells, [k for k in _LABEL_KEYS if k != column])
    for group in sorted(groups, key=lambda g: _method_rank(g["method"].iloc[0])):
        base = _cell_label(group.iloc[0], label_keys)
        method = str(group["method"].iloc[0])
        if factor == "length":
            group = group.assign(_x=group["length"].astype(float)).sort_values("_x")
            series.append({"label": base, "method": method, "x": group["_x"].tolist(),
                           "mean": group["mean"].astype(float).tolist(), "std": group["std"].astype(float).tolist(),
                           "all": None})
            continue
        sets = {str(lab): _layer_set(lab) for lab in group["layers"]}
        top = max((max(s) for s in sets.values() if s), default=0)
        every = group[group["layers"].astype(str) == "all"]
        all_score = float(every["mean"].iloc[0]) if len(every) else None
        for direction in ("first", "last"):
            rows = []
            for _, row in group.iterrows():
                layer_set = sets[str(row["layers"])]
                if not layer_set:
                    continue
                k = len(layer_set)
                wanted = list(range(k)) if direction == "first" else list(range(top - k + 1, top + 1))
                if sorted(layer_set) == wanted and not (direction == "last" and wanted[0] == 0):
                    rows.append((k, float(row["mean"]), float(row["std"])))
            if rows:
                rows.sort()
                series.append({"label": f"{base}, {direction} k layers", "method": method,
                               "x": [r[0] for r in rows], "mean": [r[1] for r in rows],
                               "std": [r[2] for r in rows], "all": all_score})
    return series


def plot_ablation(summary: pd.DataFrame, task: str | None = None, factor: str = "length") -> Any | None:
    """Score against prompt length or prefix depth, one panel per task that has such an ablation.

    Returns None (and logs why) when no task varies the factor, so a report of a plain method comparison
    does not carry an empty figure.
    """
    tasks = [t for t in _tasks(summary, task) if ablation_series(summary, t, factor)]
    if not tasks:
        log.info("no %s ablation in this grid (no cells of one method differing only in %s); figure skipped",
                 factor, factor)
        return None
    fig, axes = _panels(len(tasks))
    colours = _method_colours(summary["method"])
    for ax, name in zip(axes, tasks):
        _, split, metric = _task_metric(summary, name)
        ticks: set[float] = set()
        for s in ablation_series(summary, name, factor):
            ticks.update(s["x"])
            style = "-" if "last k" not in s["label"] else ":"
            ax.errorbar(s["x"], s["mean"], yerr=[0.0 if math.isnan(v) else v for v in s["std"]], fmt="o",
                        linestyle=style, color=colours[s["method"]], capsize=3, label=s["label"],
                        markerfacecolor="white" if style == ":" else None)
            if s["all"] is not None and "first k" in s["label"]:
                ax.axhline(s["all"], color=colours[s["method"]], linestyle="--", linewidth=1, alpha=0.7,
                           label=s["label"].replace("first k layers", "all layers"))
        if factor == "length":
            ax.set_xscale("log", base=2)
            ax.set_xlabel("prompt length (tokens, log scale)")
        else:
            ax.set_xlabel("prefix depth (number of prompted layers)")
        ax.set_xticks(sorted(ticks), [f"{t:g}" for t in sorted(ticks)])  # the grid's values, not powers of 2
        ax.minorticks_off()
        ax.set_ylabel(f"{split}/{metric} (points)")
        ax.set_title(name, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _curve_frame(log_frame: pd.DataFrame, run: Mapping[str, Any], step_col: str) -> pd.DataFrame:
    """A logger's wide table (one column per metric) as long rows ``(step, epoch, metric, value)`` of one run.

    Only ``train/*`` and ``val/*`` columns are curves (``best/*``, ``test/*`` and the efficiency numbers are
    one-off values). ptrain re-validates the best checkpoint after training, logged one epoch past the last
    trained one; that row repeats the best epoch and is dropped, as it is not a point of the curve.
    """
    columns = [c for c in log_frame.columns if str(c).startswith(("train/", "val/"))]
    if step_col not in log_frame.columns or not columns:
        return pd.DataFrame()
    frame = log_frame.copy()
    frame["epoch"] = pd.to_numeric(frame["epoch"], errors="coerce") if "epoch" in frame.columns else float("nan")
    if "train/loss" in frame.columns and frame["train/loss"].notna().any():
        last_trained = frame.loc[frame["train/loss"].notna(), "epoch"].max()
        if not _missing(last_trained):
            frame = frame[~(frame["epoch"] > last_trained)]
    frame = frame.rename(columns={step_col: "step"})
    long = frame[["step", "epoch", *columns]].melt(id_vars=["step", "epoch"], var_name="metric", value_name="value")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    long = long.dropna(subset=["value", "step"])
    for key in ("run_dir", *CELL_KEYS, "seed", "main_metric"):
        long[key] = run.get(key)
    return long


#: Columns of the long training-curve frame, from CSV logs and from W&B alike.
CURVE_COLUMNS: tuple[str, ...] = ("run_dir", *CELL_KEYS, "seed", "main_metric", "step", "epoch", "metric", "value")


def _curves_frame(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=list(CURVE_COLUMNS))
    frame = pd.concat(parts, ignore_index=True)[list(CURVE_COLUMNS)]
    frame["step"] = frame["step"].astype(int)
    return frame


def load_curves(root: str | os.PathLike[str], runs: pd.DataFrame) -> pd.DataFrame:
    """Training curves from each run's ``csv/metrics.csv`` (Lightning CSVLogger), in one long frame.

    Columns: :data:`CURVE_COLUMNS`; ``value`` is as logged (scores as fractions). Runs trained without
    ``logger=csv`` have no file and simply contribute no rows.
    """
    root = Path(root)
    parts: list[pd.DataFrame] = []
    for run in runs.to_dict("records"):
        run_dir = Path(str(run["run_dir"]))
        path = (run_dir if run_dir.is_absolute() else root / run_dir) / "csv" / "metrics.csv"
        if path.is_file():
            parts.append(_curve_frame(pd.read_csv(path), run, "step"))
    return _curves_frame(parts)


def plot_curves(curves: pd.DataFrame, task: str) -> Any | None:
    """Validation main metric and training loss against optimizer step for one task, one line per cell.

    Seeds of a cell are averaged at each step (one line per seed would bury the comparison between cells);
    colour is the method, so cells of one method (an ablation) share a colour and differ in line style.
    Returns None when the task has no curves.
    """
    part = curves[curves["task"].astype(str) == task]
    if part.empty:
        return None
    metric = part["main_metric"].dropna().astype(str).mode()
    val_name = f"val/{metric.iloc[0]}" if len(metric) else None
    fig, axes = _panels(2, width=5.5)
    colours = _method_colours(part["method"])
    part = part.assign(_cell=_key_strings(part, CELL_KEYS).apply(" ".join, axis=1))
    cells = part.drop_duplicates("_cell")
    label_keys = _varying(cells, _LABEL_KEYS)
    styles = ("-", "--", ":", "-.")
    used: dict[str, int] = {}
    for _, cell in cells.sort_values("method", key=lambda s: s.map(_method_rank), kind="stable").iterrows():
        method = str(cell["method"])
        style = styles[used.get(method, 0) % len(styles)]
        used[method] = used.get(method, 0) + 1
        rows = part[part["_cell"] == cell["_cell"]]
        for ax, name, scale in ((axes[0], val_name, 100.0), (axes[1], "train/loss", 1.0)):
            line = rows[rows["metric"] == name].groupby("step")["value"].mean()
            if len(line):
                ax.plot(line.index, scale * line.values, linestyle=style, color=colours[method],
                        marker="o" if name == val_name else None, markersize=3,
                        label=_cell_label(cell, label_keys))
    axes[0].set_ylabel(f"{val_name} (points)" if val_name else "validation")
    axes[1].set_ylabel("train/loss")
    for ax, title in zip(axes, ("validation", "training loss")):
        ax.set_xlabel("optimizer step")
        ax.set_title(f"{task}: {title} (mean over seeds)", fontsize=10)
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(fontsize=7, ncol=2 if len(handles) > 6 else 1)
    fig.tight_layout()
    return fig


def _file_part(name: str) -> str:
    """A task name as a safe file-name part (task names are config names, but W&B ones need not be)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "task"


#: Caption of each figure in report.md, by file name (curves-<task>.png gets its own).
_CAPTIONS = {
    "efficiency.png": "Score against trainable parameters per task (mean ± std over seeds); dashed: Pareto "
    "frontier, the best score for at most that many parameters.",
    "efficiency-bytes.png": "Score against the prompt bytes a deployment stores per task, with the frontier.",
    "ablation-length.png": "Score against prompt length, for cells of one method that differ only in length.",
    "ablation-depth.png": "Score against prefix depth (number of prompted layers): first k layers (solid), "
    "last k layers (dotted), all layers (dashed line).",
}


def write_figures(summary: pd.DataFrame, curves: pd.DataFrame, out: Path) -> tuple[dict[str, Path], list[str]]:
    """Write every figure the grid supports into ``out``; return them by name, and notes on those skipped.

    Figures are closed over the data they need: an ablation figure only when the grid has an ablation,
    a curve figure only for tasks with logged curves, so a report never links an empty plot.
    """
    figures: dict[str, Path] = {}
    notes: list[str] = []

    def save(name: str, fig: Any) -> None:
        if fig is not None:
            fig.savefig(out / name)
            figures[name] = out / name

    if not summary.empty:
        save("efficiency.png", plot_frontier(summary, x="trainable_params"))
        if (pd.to_numeric(summary["prompt_bytes"], errors="coerce") > 0).any():
            save("efficiency-bytes.png", plot_frontier(summary, x="prompt_bytes"))
        else:
            notes.append("no run stored prompt bytes (no prompt method): efficiency-bytes.png not written")
        for factor in ("length", "depth"):
            fig = plot_ablation(summary, factor=factor)
            if fig is None:
                notes.append(f"no {factor} ablation in this grid (no cells of one method differing only in "
                             f"{factor}): ablation-{factor}.png not written")
            save(f"ablation-{factor}.png", fig)
    tasks = sorted(curves["task"].astype(str).unique()) if len(curves) else []
    for task in tasks:
        save(f"curves-{_file_part(task)}.png", plot_curves(curves, task))
    if not tasks:
        notes.append("no training curves: no run has csv/metrics.csv (train with logger=csv) or W&B history")
    for note in notes:
        log.info(note)
    return figures, notes


def write_report(
    root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    metric: str | None = None,
    paper: pd.DataFrame | str | os.PathLike[str] | None = None,
    errors: Literal["warn", "raise"] = "warn",
    runs: pd.DataFrame | None = None,
    curves: pd.DataFrame | None = None,
    source: str | None = None,
) -> Report:
    """Write ``report.md``, ``report.csv`` and the figures for the sweep under ``root``.

    ``out_dir`` defaults to ``root`` so the report sits beside the runs it describes. ``runs`` (and
    ``curves``) let a caller pass runs loaded elsewhere (the W&B path) instead of scanning ``root``;
    without ``curves``, training curves are read from the runs' ``csv/metrics.csv`` under ``root``.
    Figures: ``efficiency.png`` (per-task frontier over trainable parameters), ``efficiency-bytes.png``,
    ``ablation-length.png``, ``ablation-depth.png`` and ``curves-<task>.png``, each when the grid has data.
    """
    skipped: list[Skipped] = []
    from_dir = runs is None
    if runs is None:
        runs = load_runs(root, errors=errors, skipped=skipped)
    if curves is None:
        curves = load_curves(root, runs) if from_dir else _curves_frame([])
    out = Path(out_dir) if out_dir is not None else Path(root)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(runs, metric=metric, paper=paper)

    csv_path = out / "report.csv"
    csv_frame = summary.copy()
    csv_frame["seeds"] = csv_frame["seeds"].map(lambda s: " ".join(str(x) for x in s) if s else "")
    csv_frame.to_csv(csv_path, index=False)

    figures, notes = write_figures(summary, curves, out)

    md_path = out / "report.md"
    lines = [
        "# ptrain report",
        "",
        f"- source: `{source or Path(root)}`",
        f"- runs: {len(runs)}; cells x splits: {len(summary)}",
        f"- metric: {metric or 'each run main_metric'}; scores in points (x100), "
        "mean ± sample std over seeds",
        "- paper: joined on (task, backbone, method, split, metric); `?` marks a value the CSV lists as "
        "uncertain; Δ = mean - paper",
        "",
        to_markdown(summary),
    ]
    if figures or notes:
        lines += ["", "## Figures", ""]
        for name in figures:
            stem = name.removesuffix(".png")
            caption = _CAPTIONS.get(name) or (
                f"Training curves of {stem.removeprefix('curves-')}: validation score and training loss.")
            lines += [caption, "", f"![{stem}]({name})", ""]
        lines += [f"- {note}" for note in notes]
        lines.append("")
    if skipped:
        lines += ["", "## Skipped runs", ""]
        lines += [f"- `{s.path}`: {s.reason}" for s in skipped]
        lines.append("")
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return Report(
        markdown=md_path, csv=csv_path, figure=figures.get("efficiency.png"), runs=runs, summary=summary,
        skipped=skipped, figures=figures, notes=notes,
    )


# --------------------------------------------------------------------------------------------------
# Weights & Biases
# --------------------------------------------------------------------------------------------------


class WandbUnavailable(RuntimeError):
    """The W&B source was asked for but cannot be reached (offline, no key, no network)."""


def _wandb_api_runs(path: str, group: str | None) -> list[Any]:
    """The runs of a W&B project through ``wandb.Api()``, or :class:`WandbUnavailable` saying what to do."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        raise WandbUnavailable(
            f"W&B is {mode} (WANDB_MODE={mode}); the --wandb source needs the online API. Sync the runs "
            "with `wandb sync` and retry online, or point the report at the local sweep directory."
        )
    try:
        import wandb

        api = wandb.Api(timeout=30)
        filters = {"group": group} if group else None
        return list(api.runs(path, filters=filters))
    except Exception as exc:  # wandb raises many types (CommError, UsageError, requests errors)
        raise WandbUnavailable(
            f"cannot read W&B project {path!r}: {type(exc).__name__}: {exc}. Are you online and logged in "
            "(`wandb login`)? Offline, point the report at the local sweep directory instead."
        ) from exc


def _wandb_row(path: str, run: Any) -> dict[str, Any] | None:
    """One W&B run as a run-table row (see :func:`load_wandb_runs`); None, with a warning, if unusable."""
    config = dict(run.config)
    summary = {k: v for k, v in dict(run.summary).items() if not str(k).startswith("_")}
    numeric = {
        str(k): v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    metrics = {k[len("best/"):]: v for k, v in numeric.items() if k.startswith("best/")}
    if not metrics:
        metrics = {k: v for k, v in numeric.items() if "/" in k}
    record = {
        "method": _get(config, "method", "name"),
        "task": _get(config, "task", "name"),
        "model": _get(config, "model", "name"),
        "seed": config.get("seed"),
        "experiment": config.get("experiment"),
        "metrics": metrics,
        "config": config,
    }
    for key in ("trainable_params", "total_params", "trainable_share", "prompt_bytes", "main_metric",
                "best_epoch", "wall_s"):
        if key in summary:
            record[key] = summary[key]
    record.setdefault("main_metric", config.get("main_metric"))  # ptrain logs it beside the config
    try:
        row = _parse_record(Path(f"wandb:{path}/{run.id}"), record)
    except ResultsError as exc:
        warnings.warn(f"skipping {exc.path}: {exc.reason}", ResultsWarning, stacklevel=3)
        return None
    row["run_dir"] = f"wandb:{run.id}"
    return row


def load_wandb_runs(path: str, *, group: str | None = None) -> pd.DataFrame:
    """Build the same run table from a W&B project (``ENTITY/PROJECT``) through ``wandb.Api()``.

    The run's config must be the resolved Hydra config (as ``ptrain.train`` logs it). Scores come from
    the summary's ``best/<split>/<metric>`` keys, which ptrain logs after testing the best checkpoint;
    the plain ``val/...`` keys of the summary are the *last* epoch, used only when no ``best/`` key exists.
    The efficiency numbers (logged at step 0) are read from the summary too.
    Raises :class:`WandbUnavailable` with an actionable message when W&B is offline.
    """
    rows = [row for run in _wandb_api_runs(path, group) if (row := _wandb_row(path, run)) is not None]
    return _runs_frame(rows)


def load_wandb_curves(path: str, *, group: str | None = None, samples: int = 10_000) -> pd.DataFrame:
    """Training curves of a W&B project from each run's ``run.history()``, in :func:`load_curves`' frame.

    The step is Lightning's ``trainer/global_step`` (what the CSV logger calls ``step``), so CSV and W&B
    curves line up; W&B's own ``_step`` counts log calls and is used only when the former is absent.
    ``samples`` caps the points W&B returns per run (its history is sampled, which is enough for a plot).
    """
    parts: list[pd.DataFrame] = []
    for run in _wandb_api_runs(path, group):
        row = _wandb_row(path, run)
        if row is None:
            continue
        try:
            history = pd.DataFrame(list(run.history(samples=samples, pandas=False)))
        except Exception as exc:  # network errors of one run should not lose the others' curves
            warnings.warn(f"no W&B history for run {run.id}: {type(exc).__name__}: {exc}", ResultsWarning,
                          stacklevel=2)
            continue
        step = "trainer/global_step" if "trainer/global_step" in history.columns else "_step"
        parts.append(_curve_frame(history, row, step))
    return _curves_frame(parts)


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def build_parser(prog: str = "python -m ptrain.report") -> argparse.ArgumentParser:
    """The argument parser, exposed so the ``ptrain`` dispatcher can reuse help and options."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Summarise a ptrain sweep (every results.json below DIR): mean ± std over seeds, "
        "the paper's numbers beside them, and per-task figures: Pareto frontier over trainable parameters "
        "and prompt bytes, length and depth ablations, training curves.",
    )
    parser.add_argument("dir", nargs="?", help="sweep directory (e.g. multirun/2025-01-01/12-00-00)")
    parser.add_argument("--metric", help="metric name to report (default: each run's main_metric)")
    parser.add_argument("--out", help="where to write report.md/.csv and the figures (default: DIR)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read runs from W&B instead of DIR")
    parser.add_argument("--group", help="with --wandb: only runs of this W&B group")
    parser.add_argument("--paper", help="paper-numbers CSV (default: experiments/paper_numbers.csv)")
    parser.add_argument("--strict", action="store_true", help="fail on a malformed results.json")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 1 no runs, 2 usage/source error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.dir and not args.wandb:
        parser.error("give a sweep directory or --wandb ENTITY/PROJECT")
    try:
        if args.wandb:
            runs = load_wandb_runs(args.wandb, group=args.group)
            curves = load_wandb_curves(args.wandb, group=args.group)
            out = Path(args.out or args.dir or ".")
            report = write_report(out, out, metric=args.metric, paper=args.paper, runs=runs, curves=curves,
                                  source=f"wandb:{args.wandb}")
        else:
            report = write_report(args.dir, args.out, metric=args.metric, paper=args.paper,
                                  errors="raise" if args.strict else "warn")
    except WandbUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ResultsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if report.runs.empty:
        print(f"error: no results.json found under {args.dir or args.wandb}", file=sys.stderr)
        return 1
    print_table(report.summary)
    for skipped in report.skipped:
        print(f"skipped {skipped.path}: {skipped.reason}", file=sys.stderr)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    written = [str(report.markdown), str(report.csv), *(str(p) for p in report.figures.values())]
    print("wrote " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
