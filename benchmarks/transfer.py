"""Prompt transfer on real data: does a P-Tuning v2 prompt trained on RTE give CB a better start than random?

    python benchmarks/transfer.py --dry-run            # print the commands only
    python benchmarks/transfer.py --readme             # run what is missing, then the table into benchmarks/README.md
    python benchmarks/transfer.py --collect-only --readme   # rebuild the table from finished runs

One source run (`ptv2` on RTE, MiniLM), exported (`python -m ptrain export`), then for every seed two CB runs with
the same method settings and budget: random init, and `method.init_from=<the RTE artifact>` (the prompt module is
loaded; CB's three labels differ from RTE's two, so the head is re-initialised). Every run is a plain `python
train.py` subprocess writing under `--out`; finished runs (results.json) are skipped, so an interrupted benchmark
resumes. Read back per run: the dev scores at the best epoch (results.json: the best checkpoint re-validated), the
dev curve (csv/metrics.csv: one validation per epoch), and from the curve the optimizer steps each run needs to
reach the random-init run's best dev accuracy of the same seed. CPU seconds (user + system of the subprocess) and
wall seconds of every run are recorded beside it (`bench_time.json`).
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._markdown import README, replace_section, table  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "transfer"
DATA = ROOT.parent / "shared" / "data"
SECTION, HEADING = "transfer", "Prompt transfer: RTE -> CB"
ARMS = ("random", "transfer")


def method_overrides(args: argparse.Namespace) -> list[str]:
    return ["method=ptv2", f"method.length={args.length}", f"method.reparam={args.reparam}", *args.set]


def common(args: argparse.Namespace, seed: int, epochs: int, run_dir: Path) -> list[str]:
    return [f"seed={seed}", f"trainer.max_epochs={epochs}", "logger=csv", "trainer.enable_progress_bar=false",
            f"hydra.run.dir={run_dir}"]


def source_dir(args: argparse.Namespace) -> Path:
    return args.out / "rte" / f"s{args.source_seed}"


def target_dir(args: argparse.Namespace, arm: str, seed: int) -> Path:
    return args.out / "cb" / arm / f"s{seed}"


def commands(args: argparse.Namespace) -> list[tuple[str, Path, list[str]]]:
    """(label, run dir, argv) of every step in order: source run, its export, then the CB runs seed by seed."""
    source = source_dir(args)
    steps = [("source", source, [sys.executable, "train.py", "model=minilm", "task=rte",
                                 f"task.data_dir={args.data / 'superglue' / 'RTE'}", *method_overrides(args),
                                 *common(args, args.source_seed, args.source_epochs, source)]),
             ("export", source / "artifact", [sys.executable, "-m", "ptrain", "export", str(source)])]
    for seed in args.seeds:
        for arm in ARMS:
            run = target_dir(args, arm, seed)
            extra = [f"method.init_from={source / 'artifact'}"] if arm == "transfer" else []
            steps.append((f"cb-{arm}-s{seed}", run, [sys.executable, "train.py", "model=minilm", "task=cb",
                                                     f"task.data_dir={args.data / 'superglue' / 'CB'}",
                                                     *method_overrides(args), *extra,
                                                     *common(args, seed, args.target_epochs, run)]))
    return steps


def display(cmd: Sequence[str]) -> str:
    """A command as someone would type it from the repository root."""
    parts = ["python", *cmd[1:]]
    return " ".join(shlex.quote(str(p).replace(str(ROOT) + "/", "").replace(str(ROOT.parent) + "/", "../"))
                    for p in parts)


def finished(label: str, run: Path) -> bool:
    return (run / "prompt.json").exists() if label == "export" else (run / "results.json").exists()


def run_steps(steps: list[tuple[str, Path, list[str]]], args: argparse.Namespace) -> None:
    for label, run, cmd in steps:
        if finished(label, run) and not args.force:
            print(f"{label}: done already ({run})", file=sys.stderr)
            continue
        if args.force and label != "export":
            cmd = [*cmd, "overwrite=true"]
        log_dir = run if label != "export" else run.parent
        log_dir.mkdir(parents=True, exist_ok=True)
        print(f"{label}: {display(cmd)}", file=sys.stderr, flush=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        with (log_dir / f"{label}.log").open("w") as handle:
            done = subprocess.run(cmd, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        timing = {"wall_s": round(time.perf_counter() - start, 1),
                  "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 1),
                  "command": display(cmd)}
        (log_dir / f"{label}.time.json").write_text(json.dumps(timing))
        print(f"{label}: rc {done.returncode}, {timing['wall_s']:.0f} s wall, {timing['cpu_s']:.0f} s CPU",
              file=sys.stderr, flush=True)
        if done.returncode != 0:
            raise SystemExit(f"{label} failed (rc {done.returncode}); see {log_dir / f'{label}.log'}")


# ---- reading the runs --------------------------------------------------------------------------------------
def curve(run: Path) -> list[dict[str, float]]:
    """The per-epoch validation rows of csv/metrics.csv in order: epoch (1-based), optimizer steps done, val/*
    metrics (the re-validation of the best checkpoint after training, logged with epoch = max_epochs, is left out)."""
    epochs = json.loads((run / "results.json").read_text())["config"]["trainer"]["max_epochs"]
    rows = []
    with (run / "csv" / "metrics.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row.get("val/accuracy") and int(float(row["epoch"])) < epochs:
                point = {"epoch": int(float(row["epoch"])) + 1, "steps": int(float(row["step"])) + 1}
                point.update({k[4:]: float(v) for k, v in row.items() if k.startswith("val/") and v})
                rows.append(point)
    return rows


def steps_to(points: list[dict[str, float]], score: float) -> int | None:
    """Optimizer steps at the first validation whose dev accuracy reaches `score` (None: never)."""
    return next((int(p["steps"]) for p in points if p["accuracy"] >= score - 1e-9), None)


def read_run(run: Path) -> dict[str, Any]:
    results = json.loads((run / "results.json").read_text())
    timing_path = run / f"{_label_of(run)}.time.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    metrics = results["metrics"]
    return {"accuracy": 100 * metrics["val/accuracy"], "f1": 100 * metrics["val/f1"] if "val/f1" in metrics else None,
            "best_epoch": (results.get("best_epoch") or 0) + 1, "curve": curve(run),
            "cpu_s": timing.get("cpu_s"), "wall_s": timing.get("wall_s") or results.get("wall_s")}


def _label_of(run: Path) -> str:
    return f"cb-{run.parent.name}-{run.name}"


def majority(args: argparse.Namespace) -> float | None:
    path = args.data / "superglue" / "CB" / "val.jsonl"
    if not path.exists():
        return None
    labels = [json.loads(line)["label"] for line in path.read_text().splitlines() if line.strip()]
    return 100 * max(labels.count(v) for v in set(labels)) / len(labels)


def collect(args: argparse.Namespace) -> dict[str, Any]:
    source = source_dir(args)
    if not (source / "results.json").exists():
        raise SystemExit(f"{source / 'results.json'}: not found; run the benchmark first (without --collect-only)")
    src = json.loads((source / "results.json").read_text())
    src_time_path = source / "source.time.json"
    src_time = json.loads(src_time_path.read_text()) if src_time_path.exists() else {}
    rows: dict[int, dict[str, dict[str, Any]]] = {}
    for seed in args.seeds:
        if all((target_dir(args, arm, seed) / "results.json").exists() for arm in ARMS):
            rows[seed] = {arm: read_run(target_dir(args, arm, seed)) for arm in ARMS}
    for arms in rows.values():
        bar = max(p["accuracy"] for p in arms["random"]["curve"])
        for run in arms.values():
            run["steps_to_random_best"] = steps_to(run["curve"], bar)
            run["epoch1"] = 100 * run["curve"][0]["accuracy"] if run["curve"] else None
    return {"source": {"accuracy": 100 * src["metrics"]["val/accuracy"], "best_epoch": (src.get("best_epoch") or 0) + 1,
                       "curve": curve(source), "cpu_s": src_time.get("cpu_s"), "wall_s": src_time.get("wall_s")},
            "seeds": rows, "majority": majority(args)}


def _mean_std(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def render(data: dict[str, Any], args: argparse.Namespace) -> str:
    src, seeds = data["source"], data["seeds"]
    steps_per_epoch = None
    for arms in seeds.values():
        first = arms["random"]["curve"][0]
        steps_per_epoch = first["steps"] // first["epoch"]
        break
    src_curve = ", ".join(f"{100 * p['accuracy']:.1f}" for p in src["curve"])
    lines = [f"Source: ptv2 on RTE (all 2,490 training examples, {args.source_epochs} epochs, seed "
             f"{args.source_seed}): dev accuracy {src['accuracy']:.1f} at epoch {src['best_epoch']} (per epoch: "
             f"{src_curve}; RTE majority class 52.7)"
             + (f", {src['cpu_s'] / 60:.1f} CPU min" if src.get("cpu_s") else "") + ".", ""]
    lines.append(f"Target: CB, {args.target_epochs} epochs"
                 + (f" ({steps_per_epoch} steps each)" if steps_per_epoch else "")
                 + f", the same ptv2 settings in both arms (method.length={args.length}, method.reparam="
                 f"{args.reparam}, the method's lr 1e-2 with linear decay, batch 32); dev = 56 examples, majority "
                 f"class {data['majority']:.1f}." if data.get("majority") is not None else "")
    lines.append("")

    def fmt(x: float | None, digits: int = 1) -> str:
        return "–" if x is None else f"{x:.{digits}f}"

    def steps(x: int | None) -> str:
        return "not reached" if x is None else str(x)

    body = []
    for seed, arms in seeds.items():
        for arm in ARMS:
            r = arms[arm]
            body.append([arm, seed, fmt(r["accuracy"]), fmt(r["f1"]), r["best_epoch"], fmt(r["epoch1"]),
                         steps(r["steps_to_random_best"]),
                         " ".join(f"{100 * p['accuracy']:.0f}" for p in r["curve"]),
                         fmt(r["cpu_s"] / 60 if r.get("cpu_s") else None)])
    for arm in ARMS:
        runs = [arms[arm] for arms in seeds.values()]
        reached = [r["steps_to_random_best"] for r in runs]
        body.append([f"**{arm}, mean ± std**", ",".join(map(str, seeds)), _mean_std([r["accuracy"] for r in runs]),
                     _mean_std([r["f1"] for r in runs]), _mean_std([r["best_epoch"] for r in runs]),
                     _mean_std([r["epoch1"] for r in runs]),
                     _mean_std(reached) + (f" ({sum(x is None for x in reached)} not reached)"
                                           if any(x is None for x in reached) else ""), "", ""])
    deltas_acc = [arms["transfer"]["accuracy"] - arms["random"]["accuracy"] for arms in seeds.values()]
    deltas_f1 = [arms["transfer"]["f1"] - arms["random"]["f1"] for arms in seeds.values()
                 if arms["transfer"]["f1"] is not None and arms["random"]["f1"] is not None]
    deltas_e1 = [arms["transfer"]["epoch1"] - arms["random"]["epoch1"] for arms in seeds.values()]
    body.append(["**transfer − random**", ",".join(map(str, seeds)), _mean_std(deltas_acc), _mean_std(deltas_f1),
                 "", _mean_std(deltas_e1), "", "", ""])
    lines.append(table(["CB run", "seed", "dev accuracy (best epoch)", "dev macro-F1 (same checkpoint)",
                        "best epoch", "dev accuracy after epoch 1", "steps to reach random init's best",
                        "dev accuracy per epoch", "CPU min"], body))
    lines += ["", "Dev scores in points; \"steps to reach random init's best\": optimizer steps until the run's dev "
              "accuracy first reaches the best dev accuracy of the random-init run of the same seed (validated once "
              "per epoch, so in multiples of an epoch's steps)."]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder (superglue/RTE, superglue/CB)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--seeds", default="1,2,3", help="CB seeds (both arms)")
    p.add_argument("--source-seed", type=int, default=1)
    p.add_argument("--source-epochs", type=int, default=3, help="RTE epochs")
    p.add_argument("--target-epochs", type=int, default=6, help="CB epochs (both arms)")
    p.add_argument("--length", type=int, default=16, help="method.length (both tasks)")
    p.add_argument("--reparam", default="none", help="method.reparam (both tasks)")
    p.add_argument("--set", action="append", default=[], help="another override for every run (key=value)")
    p.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    p.add_argument("--collect-only", action="store_true", help="only read finished runs and build the table")
    p.add_argument("--force", action="store_true", help="rerun steps that finished (overwrite=true)")
    p.add_argument("--readme", nargs="?", type=Path, const=README, default=None,
                   help="write the table into this file's transfer section (default benchmarks/README.md)")
    args = p.parse_args(argv)
    args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    args.data = args.data.resolve()
    args.out = args.out.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> str:
    args = parse_args(argv)
    steps = commands(args)
    if args.dry_run:
        print("\n".join(display(cmd) for _, _, cmd in steps))
        return ""
    started = time.perf_counter()
    if not args.collect_only:
        run_steps(steps, args)
    data = collect(args)
    text = render(data, args)
    invocation = display([sys.executable, "benchmarks/transfer.py", *(argv if argv is not None else sys.argv[1:])])
    times = [r.get("cpu_s") for arms in data["seeds"].values() for r in arms.values()] + [data["source"].get("cpu_s")]
    cpu = sum(t for t in times if t)
    body = (f"Generated by `{invocation}` on {time.strftime('%Y-%m-%d')} (model=minilm; {cpu / 60:.0f} CPU minutes "
            f"for the {1 + 2 * len(data['seeds'])} training runs).\n\n{text}\n\n<details><summary>The "
            f"{len(steps)} commands</summary>\n\n```\n" + "\n".join(display(c) for _, _, c in steps)
            + "\n```\n</details>")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transfer.md").write_text(body + "\n")
    (args.out / "transfer.json").write_text(json.dumps(data, indent=1, default=str))
    print(body)
    if args.readme is not None:
        replace_section(args.readme, SECTION, body, heading=HEADING)
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return body


if __name__ == "__main__":
    main()
