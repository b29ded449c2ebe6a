"""Faults and bad input, end to end: every trial of issue 19 as real `python train.py` commands, and what came of it.

    python benchmarks/faults.py                 # run every trial, print the table
    python benchmarks/faults.py --readme        # ... and put it in benchmarks/README.md ("Faults and bad input")
    python benchmarks/faults.py -k ckpt seed    # only the trials whose name contains one of these words

Each trial starts `python train.py` (tiny_bert, a generated or written data set; a few seconds each) in a scratch
folder, injects its fault (a bad value, a folder of other files, a killed or signalled run, a truncated checkpoint,
two runs at once) and checks the outcome: **clean** when ptrain stopped with an error naming what to fix, or when
nothing was lost and the run says what it did; **failed** otherwise. The message column is the first line of what
the user sees (the error, or the outcome checked). tests/test_faults.py checks the same list in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._markdown import README, replace_section, table  # noqa: E402

SECTION = "faults"
RUN = ["model=tiny_bert", "trainer.max_epochs=1", "logger=none", "data.batch_size=16",
       "trainer.enable_progress_bar=false", "method.length=4"]
TINY = [*RUN, "task.n_train=48", "task.n_dev=16", "task.n_test=16"]  # the generated task's sizes
CONLL = "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\nwent VBD B-VP O\n"


class Trial:
    """One fault: `name` (the input or fault, as the table shows it) and `check(work) -> (clean, message)`."""

    def __init__(self, name: str, check: Callable[[Path], tuple[bool, str]]) -> None:
        self.name, self.check = name, check


def train(work: Path, *overrides: str, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    base.update({"HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PTRAIN_CACHE": str(work.parent / "cache")})
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=work, capture_output=True,
                          text=True, timeout=timeout, env={**base, **(env or {})})


def error_line(done: subprocess.CompletedProcess) -> str:
    """The error a user reads: the last `SomeError: ...` line of stderr (Hydra prints the traceback above it)."""
    found = [line for line in done.stderr.splitlines() if re.match(r"^[\w.]*(Error|Exception|Taken): ", line)]
    return found[-1] if found else (done.stderr.strip().splitlines() or ["(no output)"])[-1]


def refused(done: subprocess.CompletedProcess, *expected: str, work: Path | None = None) -> tuple[bool, str]:
    """Clean: a non-zero exit whose error holds every expected piece, and no results.json written under `work`."""
    message = error_line(done)
    results = list(work.rglob("results.json")) if work is not None else []
    return done.returncode != 0 and all(piece in message for piece in expected) and not results, message


def conll_folder(path: Path, names: tuple[str, ...] = ("train.txt", "dev.txt", "test.txt")) -> Path:
    path.mkdir(parents=True)
    for name in names:
        (path / name).write_text(CONLL)
    return path


def finished_run(work: Path) -> Path:
    """A finished run to resume, refuse or damage (made once, copied per trial)."""
    source = work.parent / "finished"
    if not (source / "results.json").exists():
        done = train(work, *TINY, f"hydra.run.dir={source}")
        assert done.returncode == 0, done.stderr[-2000:]
    copy = work / "finished"
    shutil.copytree(source, copy)
    return copy


# ---- silent wrong results ---------------------------------------------------------------------------------------
def max_epochs_zero(work: Path) -> tuple[bool, str]:
    return refused(train(work, *TINY, "trainer.max_epochs=0"), "trainer.max_epochs=0", work=work)


def last_without_checkpoint(work: Path) -> tuple[bool, str]:
    (work / "empty").mkdir()
    done = train(work, *TINY, "ckpt_path=last", f"hydra.run.dir={work / 'empty'}")
    return refused(done, "ckpt_path=last", str(work / "empty"), "checkpoints/last.ckpt", work=work)


def other_model(work: Path) -> tuple[bool, str]:
    run_dir = finished_run(work)
    done = train(work, *TINY, "model=tiny_roberta", "trainer.max_epochs=2", "ckpt_path=last",
                 f"hydra.run.dir={run_dir}")
    return refused(done, "saved by another run: model tiny_bert", "tiny_roberta")


# ---- data loss ----------------------------------------------------------------------------------------------------
def same_second(work: Path) -> tuple[bool, str]:
    """Two runs into one time-stamped directory at once (the default's `${now:}`, at day resolution so they surely
    collide)."""
    runs = [subprocess.Popen([sys.executable, str(ROOT / "train.py"), *TINY, f"seed={seed}",
                              "hydra.run.dir=outputs/${now:%Y-%m-%d}"], cwd=work, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "HF_HUB_OFFLINE": "1", "PTRAIN_CACHE": str(work.parent / "cache")})
            for seed in (1, 2)]
    outputs = [process.communicate(timeout=300)[0] for process in runs]
    seeds = sorted(json.loads(p.read_text())["seed"] for p in (work / "outputs").glob("*/results.json"))
    moved = [line.split("] ", 1)[-1] for output in outputs for line in output.splitlines()
             if "this run writes to" in line]
    return seeds == [1, 2] and len(moved) == 1, (moved or ["no run moved"])[0].replace(str(work) + "/", "")


def refused_keeps_files(work: Path) -> tuple[bool, str]:
    run_dir = work / "run"
    assert train(work, *TINY, f"hydra.run.dir={run_dir}").returncode == 0
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    done = train(work, *TINY, "seed=7", f"hydra.run.dir={run_dir}")
    same = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    return done.returncode == 1 and same, error_line(done) + (
        "" if same else " (but files changed)")


def kill_and_resume(work: Path) -> tuple[bool, str]:
    """kill -9 once epoch 1's checkpoint is written, then `ckpt_path=last`: rows and wall time of both parts."""
    import csv

    import torch

    run_dir = work / "run"
    overrides = [*TINY, "trainer.max_epochs=4", "logger=csv", "trainer.log_every_n_steps=1", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PTRAIN_CACHE": str(work.parent / "cache")}
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *overrides], cwd=work, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.ckpt"
    while process.poll() is None and saved_epoch(last) < 1:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = torch.load(last, weights_only=True)
    done = train(work, *overrides, "ckpt_path=last")
    if done.returncode != 0:
        return False, error_line(done)
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    epochs = sorted({int(float(r["epoch"])) for r in rows if r.get("val/f1") and r.get("epoch")})
    steps = [r["step"] for r in rows if r.get("train/loss")]
    wall = json.loads((run_dir / "results.json").read_text())["wall_s"]
    clean = epochs[:4] == [0, 1, 2, 3] and len(steps) == len(set(steps)) and wall > saved["ptrain_elapsed_s"]
    return clean, (f"killed after epoch {saved['epoch']} (step {saved['global_step']}); resumed: metrics.csv has "
                   f"val rows of epochs {epochs[:4]}, {len(steps)} distinct train steps; wall_s {wall:.1f} "
                   f"includes the killed part's {saved['ptrain_elapsed_s']:.1f} s")


def saved_epoch(path: Path) -> int:
    """The epoch of a checkpoint, -1 while there is none (or it is being written)."""
    import torch

    try:
        return int(torch.load(path, weights_only=True)["epoch"])
    except (OSError, RuntimeError, EOFError, KeyError):
        return -1


def usr1_outside_slurm(work: Path) -> tuple[bool, str]:
    run_dir = work / "run"
    overrides = [*TINY, "trainer.max_epochs=10", f"hydra.run.dir={run_dir}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *overrides], cwd=work, text=True,
                               env={**env, "HF_HUB_OFFLINE": "1", "PTRAIN_CACHE": str(work.parent / "cache")},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while process.poll() is None and not (run_dir / "checkpoints" / "last.ckpt").exists():
        time.sleep(0.05)
    process.send_signal(signal.SIGUSR1)
    stderr = process.communicate(timeout=300)[1]
    command = next((line.strip() for line in stderr.splitlines() if "ckpt_path=last" in line), "")
    if process.returncode != 75 or not command or (run_dir / "results.json").exists():
        return False, f"exit {process.returncode}: {stderr.strip().splitlines()[-1:]}"
    resumed = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=work, capture_output=True, text=True,
                             env={**env, "HF_HUB_OFFLINE": "1", "PTRAIN_CACHE": str(work.parent / "cache")})
    stopped = next(line for line in stderr.splitlines() if line.startswith("stopped by signal"))
    return resumed.returncode == 0 and (run_dir / "results.json").exists(), (
        f"exit 75, {stopped} python train.py ... hydra.run.dir=DIR ckpt_path=last (printed in full), which then "
        "finished the run")


def cache_orphan(work: Path) -> tuple[bool, str]:
    """A writer killed mid-write leaves `.<cache file>.<host>.<pid>.tmp`; the next cache write removes it."""
    tokenized = work.parent / "cache" / "tokenized"
    tokenized.mkdir(parents=True, exist_ok=True)
    writer = subprocess.Popen([sys.executable, "-c", (
        "import os, signal, socket, sys; d = sys.argv[1]; "
        "f = open(os.path.join(d, f'.k-train.json.{socket.gethostname()}.{os.getpid()}.tmp'), 'w'); f.write('[1,'); "
        "f.flush(); os.kill(os.getpid(), signal.SIGKILL)"), str(tokenized)])
    writer.wait()
    orphan = tokenized / f".k-train.json.{socket.gethostname()}.{writer.pid}.tmp"
    assert orphan.exists()
    done = train(work, *TINY, "task.n_train=40", f"hydra.run.dir={work / 'run'}")  # new data: the cache is written
    return done.returncode == 0 and not orphan.exists(), (
        f"orphan of killed pid {writer.pid} {'removed' if not orphan.exists() else 'still there'} by the next "
        "cache write")


# ---- errors that name the key, the file or the line ---------------------------------------------------------------
def bad_value(override: str, *expected: str, task: Callable[[Path], list[str]] = lambda work: []):
    def check(work: Path) -> tuple[bool, str]:
        setup = task(work) or ["task.n_train=48", "task.n_dev=16", "task.n_test=16"]
        return refused(train(work, *RUN, *setup, override, f"hydra.run.dir={work / 'run'}"), *expected)

    return check


def ner_folder(work: Path) -> list[str]:
    return ["task=ner", f"task.data_dir={conll_folder(work / 'data')}"]


def truncated(work: Path) -> tuple[bool, str]:
    run_dir = finished_run(work)
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:2000])
    done = train(work, *TINY, "trainer.max_epochs=2", "ckpt_path=last", f"hydra.run.dir={run_dir}")
    return refused(done, str(last), "truncated or corrupt")


def other_tasks_folder(work: Path) -> tuple[bool, str]:
    data = conll_folder(work / "conll03")
    done = train(work, *RUN, "task=rte", f"task.data_dir={data}", f"hydra.run.dir={work / 'run'}")
    return refused(done, "train.jsonl (task.files.train)", str(data), "train.txt")


def wnut_names(work: Path) -> tuple[bool, str]:
    data = conll_folder(work / "wnut17", ("wnut17train.conll", "emerging.dev.conll", "emerging.test.annotated"))
    done = train(work, *RUN, "task=ner", f"task.data_dir={data}", f"hydra.run.dir={work / 'run'}")
    return refused(done, str(data), "train.txt (task.files.train)", "wnut17train.conll")


def squad_dev_v11(work: Path) -> tuple[bool, str]:
    from ptrain.testing.fixtures import write_squad

    data = work / "squad"
    write_squad(data)
    (data / "dev.json").rename(data / "dev-v1.1.json")
    (data / "train.json").unlink()
    done = train(work, *RUN, "task=squad", f"task.data_dir={data}", "task.train_from_validation=0.5",
                 "task.max_length=64", "task.max_query_length=16", f"hydra.run.dir={work / 'run'}")
    return refused(done, "train.json (task.files.train)", "dev.json (task.files.validation)", "dev-v1.1.json")


def max_steps_short(work: Path) -> tuple[bool, str]:
    run_dir = work / "run"
    done = train(work, *TINY, "trainer.max_steps=2", f"hydra.run.dir={run_dir}")
    results = json.loads((run_dir / "results.json").read_text()) if (run_dir / "results.json").exists() else {}
    warned = "no model selection on val/f1" in (run_dir / "train.log").read_text()
    selection = str(results.get("selection"))
    return done.returncode == 0 and warned and selection.startswith("none:"), f"results.json selection: {selection}"


def label_line(work: Path) -> tuple[bool, str]:
    data = work / "sst2"
    data.mkdir()
    rows = "sentence\tlabel\ngood film\t1\n\nbad film\t0\nodd film\t2\n"
    for name in ("train.tsv", "dev.tsv"):
        (data / name).write_text(rows)
    done = train(work, *RUN, "task=sst2", f"task.data_dir={data}", f"hydra.run.dir={work / 'run'}")
    return refused(done, "train.tsv, line 5: unknown label '2'")


TRIALS = [
    Trial("`trainer.max_epochs=0`", max_epochs_zero),
    Trial("`ckpt_path=last` in a directory without a checkpoint", last_without_checkpoint),
    Trial("resume a tiny_bert run with `model=tiny_roberta` (same shapes)", other_model),
    Trial("two runs started in the same second into the time-stamped directory", same_second),
    Trial("a new run into a finished run's `hydra.run.dir`", refused_keeps_files),
    Trial("kill -9 after an epoch, then `ckpt_path=last`", kill_and_resume),
    Trial("SIGUSR1 outside SLURM", usr1_outside_slurm),
    Trial("a cache writer killed mid-write", cache_orphan),
    Trial("`data.batch_size=0`", bad_value("data.batch_size=0", "data.batch_size=0")),
    Trial("`seed=abc`", bad_value("seed=abc", "seed='abc'")),
    Trial("a truncated `last.ckpt`", truncated),
    Trial("`optim.lr=-1`", bad_value("optim.lr=-1", "optim.lr=-1")),
    Trial("`task.max_train_examples=0`", bad_value("task.max_train_examples=0", "task.max_train_examples=0",
                                                   task=ner_folder)),
    Trial("`task=rte` pointed at a CoNLL folder", other_tasks_folder),
    Trial("`task=ner` on files named `wnut17train.conll`, ...", wnut_names),
    Trial("`task=squad task.train_from_validation=0.5`, only dev-v1.1.json", squad_dev_v11),
    Trial("`trainer.max_steps=2`, shorter than one epoch", max_steps_short),
    Trial("a bad label after a blank line (SST-2 tsv)", label_line),
]


def run_trials(trials: list[Trial], scratch: Path) -> list[tuple[str, str, str]]:
    rows = []
    for number, trial in enumerate(trials):
        work = scratch / f"trial{number:02d}"
        work.mkdir(parents=True)
        started = time.perf_counter()
        try:
            clean, message = trial.check(work)
        except Exception as error:  # noqa: BLE001 - a trial that crashes is a failed trial, shown in the table
            clean, message = False, f"trial crashed: {type(error).__name__}: {error}"
        message = message.replace(str(scratch) + "/", "").replace("|", "\\|")
        print(f"{'clean ' if clean else 'FAILED'} {time.perf_counter() - started:5.1f} s  {trial.name}: {message}",
              file=sys.stderr, flush=True)
        rows.append((trial.name, "clean" if clean else "**failed**", f"`{message}`" if message else ""))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    parser.add_argument("-k", nargs="*", default=[], help="only trials whose name contains one of these words")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (printed)")
    args = parser.parse_args(argv)
    trials = [t for t in TRIALS if not args.k or any(word.lower() in t.name.lower() for word in args.k)]
    scratch = Path(tempfile.mkdtemp(prefix="ptrain-faults-"))
    try:
        rows = run_trials(trials, scratch)
    finally:
        if args.keep:
            print(f"scratch folder: {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    body = table(["input or fault", "outcome", "message (first line)"], rows, align="lll")
    clean = sum(outcome == "clean" for _, outcome, _ in rows)
    body += f"\n\n{clean} of {len(rows)} trials clean (`python benchmarks/faults.py`)."
    print(body)
    if args.readme:
        replace_section(README, SECTION, body)
    return 0 if clean == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
