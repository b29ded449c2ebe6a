"""Accuracy of every method on real data with a bundled backbone (MiniLM by default), and the tables of
benchmarks/README.md.

    python benchmarks/accuracy.py                      # the full grid (hours on 2 CPU cores), then the table
    python benchmarks/accuracy.py --dry-run            # print the train.py commands only
    python benchmarks/accuracy.py --collect-only       # rebuild the table from finished runs
    python benchmarks/accuracy.py --estimate           # how long the grid would take here (from speed.py's json)
    python benchmarks/accuracy.py --tasks cb --methods head,ptv2 --seeds 1 --limit-train-batches 5   # smoke
    python benchmarks/accuracy.py --model smollm2-135m --tasks sst2_verbalizer --methods zeroshot,prompt,ptv2

Each run is a plain `python train.py model=minilm task=... method=... seed=...` subprocess (`--model` picks
another ptrain/conf/model entry; the `zeroshot` rows run `benchmarks/zero_shot.py` with the same overrides)
(the real entry point, nothing benchmark-specific), writing `results.json` under `--out/<task>/<method>/s<seed>`;
finished runs are skipped, so an interrupted grid resumes. The table (mean ± sample std over seeds, in points; trainable
parameters and their share beside each score; the gap to fine-tuning) is written to `--out/accuracy.md` and,
with `--readme`, into the `accuracy` section of benchmarks/README.md together with the exact commands.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._markdown import README, replace_section, table  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "accuracy"
DATA = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class TaskSpec:
    """How one task of the grid is run and read: data folder, metric, default epochs, extra overrides."""

    data: str  # folder under --data
    metric: str  # reported on dev ("val/<metric>") and, where the test split has labels, on test
    label: str
    epochs: int
    overrides: tuple[str, ...] = ()


TASKS: dict[str, TaskSpec] = {
    "conll03": TaskSpec("conll2003", "f1", "CoNLL-2003 NER (entity F1)", 3),
    "rte": TaskSpec("superglue/RTE", "accuracy", "RTE (accuracy)", 10),
    # ../shared/data has no BoolQ train file: 70% of val trains, the other 30% is the dev set reported here
    "boolq": TaskSpec("superglue/BoolQ", "accuracy", "BoolQ (accuracy, 30% of val held out)", 5,
                      ("task.train_from_validation=0.7",)),
    "cb": TaskSpec("superglue/CB", "accuracy", "CB (accuracy)", 30),
    # the rest of the task suite on the shared files (not in the default grid; --tasks copa,wsc,wic,sst2)
    "copa": TaskSpec("superglue/COPA", "accuracy", "COPA (accuracy)", 10, ("data.batch_size=16",)),
    "wsc": TaskSpec("superglue/WSC", "accuracy", "WSC (accuracy)", 10, ("data.batch_size=16",)),
    "wic": TaskSpec("superglue/WiC", "accuracy", "WiC (accuracy)", 3),
    "sst2": TaskSpec("glue/SST-2", "accuracy", "SST-2 (accuracy)", 2),
    # decoders (--model smollm2-135m): label words read from the frozen LM head after a template
    "sst2_verbalizer": TaskSpec("glue/SST-2", "accuracy", "SST-2 verbaliser (accuracy)", 1),
    "rte_verbalizer": TaskSpec("superglue/RTE", "accuracy", "RTE verbaliser (accuracy)", 1),
}
DEFAULT_TASKS = ("conll03", "rte", "boolq", "cb")


@dataclass(frozen=True)
class MethodSpec:
    """A row: a ptrain/conf/method entry with overrides (learning rates are the method configs' own defaults)."""

    method: str
    overrides: tuple[str, ...] = field(default_factory=tuple)


METHODS: dict[str, MethodSpec] = {
    "finetune": MethodSpec("finetune"),  # lr 5e-5
    "head": MethodSpec("head"),  # lr 1e-3
    "prompt": MethodSpec("prompt"),  # lr 3e-2, P=16
    "ptv1": MethodSpec("ptv1"),  # lr 1e-2, P=16
    "ptv2": MethodSpec("ptv2"),  # lr 1e-2, P=16, all layers
    # opt-in: what turning the frozen backbone's dropout off (3x cheaper on CPU, see speed.py) costs in accuracy
    "ptv2_nodrop": MethodSpec("ptv2", ("method.backbone_dropout=false",)),
    # no training at all: the pretrained LM head's own choice between a verbaliser task's label words, scored by
    # benchmarks/zero_shot.py (train.py refuses a run without steps)
    "zeroshot": MethodSpec("head"),
}
DEFAULT_METHODS = ("finetune", "head", "prompt", "ptv1", "ptv2")
METHOD_ORDER = list(METHODS)


def run_dir(out: Path, task: str, method: str, seed: int) -> Path:
    return out / task / method / f"s{seed}"


def command(task: str, method: str, seed: int, args: argparse.Namespace) -> list[str]:
    """The exact `python train.py` invocation of one grid cell."""
    spec, mspec = TASKS[task], METHODS[method]
    epochs = args.epochs or spec.epochs
    script = "benchmarks/zero_shot.py" if method == "zeroshot" else "train.py"
    cmd = [sys.executable, script, f"model={args.model}", f"task={task}", f"task.data_dir={args.data / spec.data}",
           *spec.overrides, f"method={mspec.method}", *mspec.overrides, f"seed={seed}",
           f"trainer.max_epochs={epochs}", "logger=csv", "trainer.enable_progress_bar=false",
           f"hydra.run.dir={run_dir(args.out, task, method, seed)}"]
    if args.lr.get(method):
        cmd.append(f"method.lr={args.lr[method]}")
    if args.max_train_examples:
        cmd.append(f"task.max_train_examples={args.max_train_examples}")
    if args.limit_train_batches:
        cmd.append(f"+trainer.limit_train_batches={args.limit_train_batches}")
    cmd += list(args.set)
    for override in args.per_task.get(task, []):  # replaces the same key set above (e.g. trainer.max_epochs)
        key = override.split("=", 1)[0]
        cmd = [c for c in cmd if not (isinstance(c, str) and c.split("=", 1)[0] == key)] + [override]
    return cmd


def display(cmd: Sequence[str]) -> str:
    """A command as someone would type it from the repository root."""
    parts = ["python", *cmd[1:]]
    return " ".join(shlex.quote(str(p).replace(str(ROOT) + "/", "").replace(str(ROOT.parent) + "/", "../"))
                    for p in parts)


# ---- estimating ---------------------------------------------------------------------------------------------
def split_tokens(task_name: str, args: argparse.Namespace) -> dict[str, int]:
    """Real tokens per split as `train.py` would encode them (truncation and BoolQ's val split included)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from transformers import AutoTokenizer

    from ptrain.backbones import resolve_path

    overrides = [f"task={task_name}", f"task.data_dir={args.data / TASKS[task_name].data}",
                 *TASKS[task_name].overrides, "run_dir=/tmp"]
    if args.max_train_examples:
        overrides.append(f"task.max_train_examples={args.max_train_examples}")
    overrides += [o for o in args.per_task.get(task_name, []) if o.startswith("task.")]  # subsample, max_length
    with initialize_config_dir(config_dir=str(ROOT / "ptrain" / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    task = instantiate(cfg.task, _convert_="all")
    tokenizer = AutoTokenizer.from_pretrained(resolve_path("bundled:minilm"))
    counts = {}
    for split in ("train", "validation", "test"):
        rows = task.examples(split)
        labelled = split != "test" or task_name == "conll03"  # SuperGLUE test files carry no labels
        counts[split] = sum(len(f["input_ids"]) for f in task.encode(rows, tokenizer)) if rows and labelled else 0
    return counts


def task_overrides(task: str, args: argparse.Namespace, prefix: str) -> list[str]:
    """The `prefix*` overrides a task's runs get, in the order train.py applies them (the last of a key wins)."""
    cmd = command(task, args.methods[0], args.seeds[0], args)
    return [c for c in cmd[2:] if isinstance(c, str) and c.startswith(prefix)]


def task_epochs(task: str, args: argparse.Namespace) -> int:
    """The epochs a task's runs train for, as their command sets it (`--per-task`, `--set`, `--epochs`, default)."""
    values = [o.split("=", 1)[1] for o in task_overrides(task, args, "trainer.max_epochs=")]
    return int(values[-1]) if values else args.epochs or TASKS[task].epochs


def estimate(args: argparse.Namespace, speed_json: Path) -> str:
    """Hours the grid would take on this machine, from token counts and `speed.py`'s measured throughputs.

    Per run: startup + epochs x (train tokens / training tokens/s of the method + dev tokens / forward tokens/s)
    + one more dev and one test pass at the best checkpoint. Training throughput is the method's row of the
    speed table (its default settings); forward-only throughput is the `ptv2, backbone_dropout=false` forward
    (evaluation runs the backbone in eval mode). Real batches are padded to their longest member; length-grouped
    batching keeps that small, counted here as 10% extra. `--limit-train-batches` caps the training tokens.
    """
    speed = json.loads(speed_json.read_text())
    rows = speed["variants"]
    batch_tokens = speed["config"]["batch"] * speed["config"]["seq"]
    forward_row = rows.get("ptv2_nodrop") or rows.get("ptv2")
    eval_tps = batch_tokens / (forward_row["fwd_ms"] / 1000)
    startup_s, padding = 15.0, 1.1
    lines, total = [], 0.0
    for task in args.tasks:
        counts = split_tokens(task, args)
        epochs = task_epochs(task, args)
        train_tokens = counts["train"] * padding
        if args.limit_train_batches:
            # the data module's batch size is 32 examples
            per_example = counts["train"] / max(1, _n_examples(task, args))
            train_tokens = min(train_tokens, args.limit_train_batches * 32 * per_example * padding)
        for method in args.methods:
            row = rows.get(method) or rows.get(METHODS[method].method)
            train_s = epochs * train_tokens / row["tokens_per_s"]
            eval_s = ((epochs + 1) * counts["validation"] + counts["test"]) * padding / eval_tps
            run_s = startup_s + train_s + eval_s
            total += run_s * len(args.seeds)
            lines.append([task, method, f"{counts['train']:,}", str(epochs), f"{run_s / 60:.1f}",
                          f"{run_s * len(args.seeds) / 60:.0f}"])
    text = table(["task", "method", "train tokens", "epochs", "min/run", f"min for {len(args.seeds)} seeds"],
                 lines, align="llrrrr")
    return (f"{text}\n\nEstimated grid time: {total / 3600:.1f} h (from {speed_json.name}: "
            f"{speed['config']['device_name']}, {speed['config']['threads']} threads)\n")


def majority(task: str, args: argparse.Namespace) -> float | None:
    """Dev accuracy of always answering the most frequent dev label (None for span tasks such as NER).

    Read through the task itself, so BoolQ's held-out 30% of val is the split counted."""
    if TASKS[task].metric != "accuracy" or not (args.data / TASKS[task].data).is_dir():
        return None
    from collections import Counter

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    # the runs' own task overrides (--per-task, --set included), so the split counted is the one they score
    overrides = [f"task={task}", *task_overrides(task, args, "task."), "run_dir=/tmp"]
    with initialize_config_dir(config_dir=str(ROOT / "ptrain" / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    rows = instantiate(cfg.task, _convert_="all").examples("validation") or []
    counts = Counter(str(row["label"]) for row in rows)
    return counts.most_common(1)[0][1] / len(rows) if rows else None


def _n_examples(task: str, args: argparse.Namespace) -> int:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    # the runs' own task overrides (--per-task, --set included), so the split counted is the one they score
    overrides = [f"task={task}", *task_overrides(task, args, "task."), "run_dir=/tmp"]
    with initialize_config_dir(config_dir=str(ROOT / "ptrain" / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return len(instantiate(cfg.task, _convert_="all").examples("train") or [])


# ---- collecting ---------------------------------------------------------------------------------------------
def collect(out: Path) -> list[dict[str, Any]]:
    """One row per finished run under `out/<task>/<method>/s<seed>/results.json`."""
    rows = []
    for path in sorted(out.glob("*/*/s*/results.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        task, method = path.parts[-4], path.parts[-3]
        spec = TASKS.get(task)
        metric = spec.metric if spec else data.get("main_metric", "accuracy")
        metrics = data.get("metrics", {})
        rows.append({
            "task": task, "method": method, "seed": int(data["seed"]), "path": str(path),
            "dev": metrics.get(f"val/{metric}"), "test": metrics.get(f"test/{metric}"),
            "trainable": int(data["trainable_params"]), "share": float(data["trainable_share"]),
            "wall_s": float(data.get("wall_s", 0.0)),
        })
    return rows


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [100 * v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample std (points) over seeds per (task, method), with the gap to fine-tuning's mean."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault((row["task"], row["method"]), []).append(row)
    task_order = {t: i for i, t in enumerate(TASKS)}
    out = []
    for (task, method), runs in sorted(cells.items(), key=lambda kv: (
            task_order.get(kv[0][0], 99), kv[0][0], _rank(kv[0][1]), kv[0][1])):
        dev, dev_std = _mean_std([r["dev"] for r in runs])
        test, test_std = _mean_std([r["test"] for r in runs])
        out.append({"task": task, "method": method, "seeds": sorted(r["seed"] for r in runs),
                    "dev": dev, "dev_std": dev_std, "test": test, "test_std": test_std,
                    "trainable": runs[0]["trainable"], "share": runs[0]["share"],
                    "wall_s": statistics.mean(r["wall_s"] for r in runs)})
    finetune = {c["task"]: c for c in out if c["method"] == "finetune"}
    for cell in out:
        ref = finetune.get(cell["task"])
        cell["gap"] = (None if ref is None or ref is cell or ref["dev"] is None or cell["dev"] is None
                       else cell["dev"] - ref["dev"])
    return out


def _rank(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def _score(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.1f} ± {std:.1f}" if std is not None else f"{mean:.1f}"


def render(cells: list[dict[str, Any]], majorities: dict[str, float | None] | None = None) -> str:
    """The markdown table, and one line per task on the paper's finding (ptv2 near fine-tuning, prompt behind)."""
    if not cells:
        return "_No finished runs yet._\n"
    rows = []
    for c in cells:
        label = TASKS[c["task"]].label if c["task"] in TASKS else c["task"]
        base = (majorities or {}).get(c["task"])
        rows.append([label, c["method"], ",".join(map(str, c["seeds"])), _score(c["dev"], c["dev_std"]),
                     "–" if base is None else f"{100 * base:.1f}",
                     _score(c["test"], c["test_std"]), "–" if c["gap"] is None else f"{c['gap']:+.1f}",
                     f"{c['trainable']:,}", f"{100 * c['share']:.3g}%", f"{c['wall_s'] / 60:.1f}"])
    text = table(["task", "method", "seeds", "dev", "dev majority class", "test", "dev Δ vs finetune",
                  "trainable params", "share of total", "min/run"], rows, align="lllrrrrrrr")
    findings = []
    for task in dict.fromkeys(c["task"] for c in cells):
        by = {c["method"]: c for c in cells if c["task"] == task}
        parts = [f"{m} {by[m]['gap']:+.1f}" for m in ("ptv2", "ptv1", "prompt", "head")
                 if m in by and by[m]["gap"] is not None]
        if parts:
            findings.append(f"- {task}: dev points against fine-tuning: " + ", ".join(parts))
    if findings:
        text += "\n\nGap to fine-tuning (the paper's finding is ptv2 ≈ 0 while prompt falls well behind):\n\n"
        text += "\n".join(findings)
    return text + "\n"


def write_outputs(cells: list[dict[str, Any]], commands: list[str], invocation: str, args: argparse.Namespace) -> str:
    body = render(cells, {task: majority(task, args) for task in dict.fromkeys(c["task"] for c in cells)})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy.md").write_text(body, encoding="utf-8")
    (args.out / "accuracy.json").write_text(json.dumps(cells, indent=1), encoding="utf-8")
    if args.readme is not None:
        shown = "\n".join(commands) if commands else "(collected from finished runs)"
        section = (f"Generated by `{invocation}` on {time.strftime('%Y-%m-%d')} (model={args.model}, "
                   f"dev = score at the best dev epoch, test at that checkpoint; points, mean ± sample std over "
                   f"seeds).\n\n{body}\n<details><summary>The {len(commands)} train.py commands</summary>\n\n"
                   f"```\n{shown}\n```\n</details>")
        replace_section(args.readme, args.section, section, heading=args.heading)
    return body


# ---- driver -------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="minilm", help="ptrain/conf/model entry every run uses (default minilm)")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma list of " + ", ".join(TASKS)
                   + f" (default {','.join(DEFAULT_TASKS)})")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma list of " + ", ".join(METHODS))
    p.add_argument("--seeds", default="1,2,3", help="comma list of seeds")
    p.add_argument("--epochs", type=int, default=None, help="epochs for every task (default per task: "
                   + ", ".join(f"{t} {s.epochs}" for t, s in TASKS.items()) + ")")
    p.add_argument("--max-train-examples", type=int, default=None, help="seeded subsample of the training set")
    p.add_argument("--limit-train-batches", type=int, default=None, help="Lightning limit per epoch (smoke runs)")
    p.add_argument("--lr", action="append", default=[], metavar="METHOD=LR", help="override a method's lr")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra train.py override for every run (e.g. data.batch_size=16); part of the commands shown")
    p.add_argument("--per-task", action="append", default=[], metavar="TASK:KEY=VALUE",
                   help="a train.py override for one task's runs only, replacing that key if set (e.g. "
                        "rte:task.max_train_examples=1000, rte:trainer.max_epochs=4)")
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at once, the cores shared equally between them (OMP_NUM_THREADS)")
    p.add_argument("--force", action="store_true", help="rerun cells whose results.json exists")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--collect-only", action="store_true", help="only rebuild the table from finished runs")
    p.add_argument("--estimate", type=Path, nargs="?", const=ROOT / "benchmarks" / "out" / "speed-minilm-cpu.json",
                   default=None, metavar="SPEED_JSON",
                   help="estimate the grid's time from token counts and a speed.py result; run nothing")
    p.add_argument("--readme", type=Path, nargs="?", const=README, default=None,
                   help="rewrite this README's accuracy section (default path: benchmarks/README.md)")
    p.add_argument("--section", default="accuracy", help="the marked README section to rewrite")
    p.add_argument("--heading", default="Accuracy on real data", help="its heading when the section is new")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs {args.jobs}: expected a positive number of runs at once")
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    for kind, names, known in (("--tasks", args.tasks, TASKS), ("--methods", args.methods, METHODS)):
        unknown = [n for n in names if n not in known]
        if unknown:
            p.error(f"{kind}: unknown {unknown}; known: {', '.join(known)}")
    lrs = {}
    for item in args.lr:
        method, _, value = item.partition("=")
        if method not in METHODS or not value:
            p.error(f"--lr {item!r}: expected METHOD=LR with METHOD one of {', '.join(METHODS)}")
        lrs[method] = value
    args.lr = lrs
    per_task: dict[str, list[str]] = {}
    for item in args.per_task:
        task, _, override = item.partition(":")
        if task not in TASKS or "=" not in override:
            p.error(f"--per-task {item!r}: expected TASK:KEY=VALUE with TASK one of {', '.join(TASKS)}")
        per_task.setdefault(task, []).append(override)
    args.per_task = per_task
    return args


def run_grid(grid: list[tuple[str, str, int]], commands: list[list[str]], args: argparse.Namespace) -> None:
    """Run the unfinished cells, `--jobs` at a time, each a `train.py` subprocess logging to its run folder.

    With several jobs each process gets an equal share of the cores (OMP_NUM_THREADS), so the runs side by side
    do not oversubscribe the machine; the per-run minutes in the table are then times on that share.
    """
    env = dict(os.environ)
    if args.jobs > 1:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))

    def run(index: int, cell: tuple[str, str, int], cmd: list[str]) -> None:
        task, method, seed = cell
        results = run_dir(args.out, task, method, seed) / "results.json"
        if results.exists() and not args.force:
            print(f"[{index}/{len(grid)}] {task} {method} s{seed}: done before, skipped", file=sys.stderr)
            return
        start = time.perf_counter()
        log = results.parent / "train.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        # a --force rerun, or a cell whose earlier run was killed, starts over in its directory
        again = ["overwrite=true"] if results.exists() or (results.parent / "checkpoints").exists() else []
        with log.open("w") as handle:
            done = subprocess.run([*cmd, *again], cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env=env)
        status = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode}, see {log})"
        print(f"[{index}/{len(grid)}] {task} {method} s{seed}: {status} in {time.perf_counter() - start:.0f} s",
              file=sys.stderr, flush=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(run, i, cell, cmd) for i, (cell, cmd) in enumerate(zip(grid, commands), 1)]:
            future.result()


def main(argv: Sequence[str] | None = None) -> str:
    args = parse_args(argv)
    invocation = "python benchmarks/accuracy.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    # seed-major: an interrupted grid still has every (task, method) cell of the first seeds
    grid = [(t, m, s) for s in args.seeds for t in args.tasks for m in args.methods]
    commands = [command(t, m, s, args) for t, m, s in grid]
    if args.dry_run:
        print("\n".join(display(c) for c in commands))
        return ""
    if args.estimate is not None:
        text = estimate(args, args.estimate)
        print(text)
        if args.readme is not None:
            replace_section(args.readme, "accuracy-estimate", f"`{invocation}`\n\n{text}",
                            heading="Estimated time of the grid")
        return text
    if not args.collect_only:
        missing = [d for d in (args.data / TASKS[t].data for t in args.tasks) if not d.is_dir()]
        if missing:
            raise SystemExit(f"data folder(s) not found: {', '.join(map(str, missing))} (set --data)")
        run_grid(grid, commands, args)
    # the table and the commands shown cover the requested cells that finished, nothing else under --out
    finished = [(cell, cmd) for cell, cmd in zip(grid, commands)
                if (run_dir(args.out, *cell) / "results.json").exists()]
    done = {cell for cell, _ in finished}
    runs = [r for r in collect(args.out) if (r["task"], r["method"], r["seed"]) in done]
    body = write_outputs(aggregate(runs), [display(cmd) for _, cmd in finished], invocation, args)
    print(body)
    return body


if __name__ == "__main__":
    main()
