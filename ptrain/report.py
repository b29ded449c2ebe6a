"""Turn a sweep directory full of ``results.json`` files into tables, a paper comparison and a plot.

Every training run writes ``<run_dir>/results.json`` (the contract with ``ptrain.train``). This module
never imports the training stack: reading a finished sweep must work on a laptop without a GPU,
without the models and without the data, so that results copied off a cluster can be analysed anywhere.

Public entry points:

* :func:`load_runs` - one row per run, sweep factors and metrics flattened into columns.
* :func:`summarize` - mean and standard deviation over seeds per cell, joined with the paper's numbers.
* :func:`write_report` - ``report.md``, ``report.csv`` and ``efficiency.png`` for a sweep.
* :func:`main` - the command line, ``python -m ptrain.report DIR`` (also reachable as ``ptrain report``).

Scores are reported in percent points (fractions times 100) because that is how the paper prints them;
the difference column is then directly "points above or below the paper".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

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

    This is the number the efficiency plot shows; it mirrors how the paper reports test sets where
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
    """Trainable share (log x) against the headline score, one colour per method.

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


def write_report(
    root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    metric: str | None = None,
    paper: pd.DataFrame | str | os.PathLike[str] | None = None,
    errors: Literal["warn", "raise"] = "warn",
    runs: pd.DataFrame | None = None,
    source: str | None = None,
) -> Report:
    """Write ``report.md``, ``report.csv`` and ``efficiency.png`` for the sweep under ``root``.

    ``out_dir`` defaults to ``root`` so the report sits beside the runs it describes. ``runs`` lets a
    caller pass runs loaded elsewhere (the W&B path) instead of scanning ``root``.
    """
    skipped: list[Skipped] = []
    if runs is None:
        runs = load_runs(root, errors=errors, skipped=skipped)
    out = Path(out_dir) if out_dir is not None else Path(root)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(runs, metric=metric, paper=paper)

    csv_path = out / "report.csv"
    csv_frame = summary.copy()
    csv_frame["seeds"] = csv_frame["seeds"].map(lambda s: " ".join(str(x) for x in s) if s else "")
    csv_frame.to_csv(csv_path, index=False)

    fig_path: Path | None = out / "efficiency.png"
    if summary.empty:
        fig_path = None
    else:
        fig = plot_efficiency(summary)
        fig.savefig(fig_path)

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
    if fig_path is not None:
        lines += ["", f"![efficiency]({fig_path.name})", ""]
    if skipped:
        lines += ["", "## Skipped runs", ""]
        lines += [f"- `{s.path}`: {s.reason}" for s in skipped]
        lines.append("")
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return Report(
        markdown=md_path, csv=csv_path, figure=fig_path, runs=runs, summary=summary, skipped=skipped
    )


# --------------------------------------------------------------------------------------------------
# Weights & Biases
# --------------------------------------------------------------------------------------------------


class WandbUnavailable(RuntimeError):
    """The W&B source was asked for but cannot be reached (offline, no key, no network)."""


def load_wandb_runs(path: str, *, group: str | None = None) -> pd.DataFrame:
    """Build the same run table from a W&B project (``ENTITY/PROJECT``) through ``wandb.Api()``.

    The run's config must be the resolved Hydra config (as ``ptrain.train`` logs it). Scores come from
    the summary's ``best/<split>/<metric>`` keys, which ptrain logs after testing the best checkpoint;
    the plain ``val/...`` keys of the summary are the *last* epoch, used only when no ``best/`` key exists.
    The efficiency numbers (logged at step 0) are read from the summary too.
    Raises :class:`WandbUnavailable` with an actionable message when W&B is offline.
    """
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
        wb_runs = list(api.runs(path, filters=filters))
    except Exception as exc:  # wandb raises many types (CommError, UsageError, requests errors)
        raise WandbUnavailable(
            f"cannot read W&B project {path!r}: {type(exc).__name__}: {exc}. Are you online and logged in "
            "(`wandb login`)? Offline, point the report at the local sweep directory instead."
        ) from exc
    rows: list[dict[str, Any]] = []
    for run in wb_runs:
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
            warnings.warn(f"skipping {exc.path}: {exc.reason}", ResultsWarning, stacklevel=2)
            continue
        row["run_dir"] = f"wandb:{run.id}"
        rows.append(row)
    return _runs_frame(rows)


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def build_parser(prog: str = "python -m ptrain.report") -> argparse.ArgumentParser:
    """The argument parser, exposed so the ``ptrain`` dispatcher can reuse help and options."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Summarise a ptrain sweep (every results.json below DIR): mean ± std over seeds, "
        "the paper's numbers beside them, and an efficiency plot.",
    )
    parser.add_argument("dir", nargs="?", help="sweep directory (e.g. multirun/2025-01-01/12-00-00)")
    parser.add_argument("--metric", help="metric name to report (default: each run's main_metric)")
    parser.add_argument("--out", help="where to write report.md/.csv/efficiency.png (default: DIR)")
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
            out = Path(args.out or args.dir or ".")
            report = write_report(out, out, metric=args.metric, paper=args.paper, runs=runs,
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
    print(f"wrote {report.markdown}, {report.csv}" + (f", {report.figure}" if report.figure else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
