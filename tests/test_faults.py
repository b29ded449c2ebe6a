"""Faults and bad input (issue 19): no silent wrong results, no lost data, and errors that name the key, file or line
to fix. Each test is one item of the issue; `benchmarks/faults.py` runs the same list as `python train.py` commands."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _task_utils import LogCapture
from _train_utils import compose_run
from lightning.pytorch.callbacks import Callback

from ptrain.readers.errors import DataFormatError
from ptrain.train import run

ROOT = Path(__file__).resolve().parents[1]
ONE_EPOCH = ["method=ptv2", "method.length=4", "trainer.max_epochs=1"]
#: what `python train.py` needs for a tiny run (tests/_train_utils.FAST, as command-line overrides)
TINY_CLI = ["model=tiny_bert", "task.n_train=32", "task.n_dev=16", "task.n_test=16", "trainer.max_epochs=1",
            "logger=none", "data.batch_size=16", "trainer.enable_progress_bar=false", "method.length=4"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 1-epoch run (read only: tests that change a run copy it)."""
    run_dir = tmp_path_factory.mktemp("faults") / "finished"
    run(compose_run(run_dir, *ONE_EPOCH))
    return run_dir


def _train_py(cwd: Path, *overrides: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLURM_")}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**env, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"})


# ---- silent wrong results ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("override", ["trainer.max_epochs=0", "trainer.max_steps=0"])
def test_a_run_that_would_not_train_is_refused(tmp_path, override) -> None:
    key = override.split("=")[0]
    with pytest.raises(ValueError, match=rf"{key}=0: nothing would train, and results.json would hold the untrained"):
        run(compose_run(tmp_path, override))
    assert not (tmp_path / "results.json").exists()


def test_ckpt_path_last_without_a_checkpoint_names_the_directory(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=rf"ckpt_path=last: the run directory {tmp_path}/empty has no "
                                                r"checkpoints/last.ckpt, no hpc_ckpt_<n>.ckpt: nothing to resume"):
        run(compose_run(tmp_path / "empty", "ckpt_path=last"))
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}/absent does not exist: nothing to resume"):
        run(compose_run(tmp_path / "absent", "ckpt_path=last"))
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize(("override", "part"), [("model=tiny_roberta", r"model tiny_bert \(\w+\) there, tiny_roberta"),
                                                ("task.n_train=64", r"task synthetic_ner \(\w+\) there, synthetic_ner"),
                                                ("method.reparam=mlp", r"method ptv2 \(\w+\) there, ptv2")])
def test_resuming_with_another_model_task_or_method_is_refused(finished, override, part) -> None:
    """tiny_roberta has tiny_bert's shapes: the prefix would load without complaint and train on another model."""
    with pytest.raises(ValueError, match=rf"last.ckpt was saved by another run: {part} \(\w+\) here"):
        run(compose_run(finished, *ONE_EPOCH, "trainer.max_epochs=2", override, "ckpt_path=last"))
    saved = torch.load(finished / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["ptrain_fingerprint"]["model"] == "tiny_bert" and saved["global_step"] == 6


# ---- data loss --------------------------------------------------------------------------------------------------
def test_two_runs_started_in_the_same_second_keep_both_results(tmp_path) -> None:
    """Both into one time-stamped directory, the default's `${now:...}` at day resolution so they surely collide:
    the second to claim it takes `<dir>-1` and says so."""
    stamped = "hydra.run.dir=outputs/${now:%Y-%m-%d}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLURM_")}
    runs = [subprocess.Popen([sys.executable, str(ROOT / "train.py"), *TINY_CLI, f"seed={seed}", stamped],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for seed in (1, 2)]
    outputs = [process.communicate(timeout=180)[0] for process in runs]
    assert [process.returncode for process in runs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    seeds = sorted(json.loads(path.read_text())["seed"] for path in (tmp_path / "outputs").glob("*/results.json"))
    assert seeds == [1, 2]
    assert sum("this run writes to outputs/" in output and "-1 instead" in output for output in outputs) == 1


def _claim_in_a_process(run_dir: str, start, done, results) -> None:
    """One contender of the race below: claim when the barrier falls, then hold the claim (stay alive) until all
    have tried, as a run would."""
    from ptrain.train import RunDirTaken, claim_run_dir

    start.wait()
    try:
        claim_run_dir(Path(run_dir))
        results.put("claimed")
    except RunDirTaken as taken:
        results.put(f"refused: {taken}")
    done.wait()


def test_of_many_processes_claiming_one_directory_at_once_exactly_one_gets_it(tmp_path) -> None:
    """The race CI once lost (two runs both in one directory): a claim created empty and written after was read
    in between as no claim. Six real processes (forked: only file operations run in them) released at once by a
    barrier, twenty rounds."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    contenders, results = 6, context.Queue()
    start, done = context.Barrier(contenders), context.Barrier(contenders)
    for round_ in range(20):
        run_dir = tmp_path / f"round-{round_}"
        processes = [context.Process(target=_claim_in_a_process, args=(str(run_dir), start, done, results))
                     for _ in range(contenders)]
        for process in processes:
            process.start()
        outcomes = sorted(results.get(timeout=60) for _ in processes)
        for process in processes:
            process.join(timeout=60)
        assert outcomes.count("claimed") == 1, (round_, outcomes)
        assert all("is in use by a running process" in outcome for outcome in outcomes if outcome != "claimed")
        assert sorted(path.name for path in run_dir.iterdir()) == [".ptrain-claim"]  # no staged claim left


def test_a_run_that_fails_before_training_leaves_no_folder(tmp_path) -> None:
    """A bad value found while building (not by the config check) used to leave outputs/.../<time>/ holding only
    Hydra's .hydra/ and an empty train.log; a folder that holds anything else is another run's, and stays."""
    other = tmp_path / "outputs" / "synthetic_ner" / "ptv2" / "tiny_bert" / "earlier"
    other.mkdir(parents=True)
    done = _train_py(tmp_path, *TINY_CLI, "method.length=-1")
    assert done.returncode == 1 and "method.length=-1: method ptv2 needs a whole number" in done.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == [
        Path("outputs"), Path("outputs/synthetic_ner"), Path("outputs/synthetic_ner/ptv2"),
        Path("outputs/synthetic_ner/ptv2/tiny_bert"), Path("outputs/synthetic_ner/ptv2/tiny_bert/earlier")]


def test_a_model_with_both_pretrained_and_config_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"model.pretrained=/x and model.config are both set: .*model.config=null"):
        run(compose_run(tmp_path / "r", "model.pretrained=/x"))


def test_a_refused_run_leaves_the_finished_runs_files_as_they_were(finished, tmp_path) -> None:
    """Hydra writes .hydra/ and train.log before the task function runs; the refusal comes before that."""
    run_dir = tmp_path / "finished"
    shutil.copytree(finished, run_dir)
    (run_dir / ".hydra").mkdir()
    for path in (run_dir / ".hydra" / "config.yaml", run_dir / ".hydra" / "overrides.yaml", run_dir / "train.log"):
        path.write_text(f"the finished run's {path.name}\n")
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    done = _train_py(tmp_path, *TINY_CLI, "seed=7", f"hydra.run.dir={run_dir}")
    assert done.returncode == 1
    assert f"RunDirTaken: {run_dir} already holds a run (results.json, checkpoints/best-0.ckpt" in done.stderr
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before


class CrashInSecondEpoch(Callback):
    """Stops the run mid-way through epoch 1, after epoch 0's last.ckpt, as a kill would (no results.json)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == 1 and batch_idx == 2:
            raise RuntimeError("killed")


def test_a_resumed_run_keeps_the_earlier_csv_rows_and_counts_all_its_wall_time(tmp_path) -> None:
    import csv

    common = ["method=ptv2", "method.length=4", "trainer.max_epochs=2", "logger=csv", "trainer.log_every_n_steps=1"]
    with pytest.raises(RuntimeError, match="killed"):
        run(compose_run(tmp_path, *common), callbacks=[CrashInSecondEpoch()])
    metrics = tmp_path / "csv" / "metrics.csv"
    steps = [row["step"] for row in csv.DictReader(metrics.open()) if row.get("train/loss")]
    assert steps[-2:] == ["6", "7"] and not (tmp_path / "results.json").exists()  # after the checkpoint of step 6
    first = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["ptrain_elapsed_s"]
    started = time.perf_counter()
    results, _, _ = run(compose_run(tmp_path, *common, "ckpt_path=last"))
    resumed = time.perf_counter() - started
    rows = list(csv.DictReader(metrics.open()))
    steps = [row["step"] for row in rows if row.get("train/loss")]
    assert steps == [str(step) for step in range(12)]  # epoch 0's rows kept, steps 6-7 once (the resumed run's)
    assert [float(row["epoch"]) for row in rows if row.get("val/f1")][:2] == [0.0, 1.0]  # both epochs' dev scores
    assert len([row for row in rows if row.get("trainable_params")]) == 1
    assert first > 0 and abs(results["wall_s"] - (first + resumed)) < 1.0  # both parts counted


class SignalAtStep(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 2:
            os.kill(os.getpid(), signal.SIGUSR1)


def test_the_requeue_signal_outside_slurm_stops_resumably_and_says_how(tmp_path, monkeypatch, capsys) -> None:
    from ptrain.resume import RESUMABLE_EXIT

    for key in [key for key in os.environ if key.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    with pytest.raises(SystemExit) as stop:
        run(compose_run(tmp_path, *ONE_EPOCH), callbacks=[SignalAtStep()])
    assert stop.value.code == RESUMABLE_EXIT == 75
    message = capsys.readouterr().err
    assert f"{tmp_path} holds no results yet; resume from hpc_ckpt_1.ckpt with" in message
    assert f"hydra.run.dir={tmp_path} ckpt_path=last" in message
    assert not (tmp_path / "results.json").exists()
    results, _, _ = run(compose_run(tmp_path, *ONE_EPOCH, "ckpt_path=last"))
    assert results["best_epoch"] == 0 and (tmp_path / "results.json").exists()
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6


def test_stale_temporaries_of_the_cache_are_removed_when_it_is_written(tmp_path, monkeypatch) -> None:
    import socket

    from transformers import AutoTokenizer

    from ptrain.backbones import resolve_path
    from ptrain.data import TaskDataModule
    from ptrain.tasks.synthetic import SyntheticNERTask

    monkeypatch.setenv("PTRAIN_CACHE", str(tmp_path / "cache"))
    tokenized = tmp_path / "cache" / "tokenized"
    tokenized.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no process has now
    host = socket.gethostname()
    dead = tokenized / f".x-train.json.{host}.{gone.pid}.tmp"
    live = tokenized / f".y-train.json.{host}.{os.getpid()}.tmp"  # a write in progress
    other = tokenized / f".z-train.json.otherhost.{gone.pid}.tmp"  # not ours to judge, and recent
    old = tokenized / ".w-train.json.1234.tmp"  # the old naming, two hours old
    for path in (dead, live, other, old):
        path.write_text("[")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    task = SyntheticNERTask(data_dir=str(tmp_path / "data"), n_train=8, n_dev=4, n_test=4)
    TaskDataModule(task, AutoTokenizer.from_pretrained(resolve_path("bundled:minilm"))).setup()
    assert sorted(p.name for p in tokenized.glob(".*.tmp")) == sorted([live.name, other.name])
    assert len(list(tokenized.glob("*.json"))) == 3


# ---- errors that name the key, the file or the line -------------------------------------------------------------
@pytest.mark.parametrize(("override", "message"), [
    ("data.batch_size=0", r"data.batch_size=0: expected a whole number >= 1"),
    ("seed=abc", r"seed='abc': expected a whole number from 0 to 2\*\*32-1"),
    ("optim.lr=-1", r"optim.lr=-1: expected a number > 0 \(it defaults to method.lr\)"),
    ("task.max_train_examples=0", r"task.max_train_examples=0: expected a number of training examples >= 1"),
])
def test_a_bad_value_is_an_error_naming_its_key(tmp_path, override, message) -> None:
    task = []
    if override.startswith("task."):  # a task with local files (the generated one has no such key)
        task = ["task=ner", f"task.data_dir={_conll(tmp_path / 'data', ('train.txt', 'dev.txt'))}"]
    with pytest.raises(ValueError, match=message):
        run(compose_run(tmp_path / "run", *task, override))
    assert not (tmp_path / "run" / "results.json").exists()


def test_a_truncated_checkpoint_is_an_error_naming_it(finished, tmp_path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # killed while saving
    with pytest.raises(ValueError, match=rf"{last}: not a readable ptrain checkpoint, truncated or corrupt"):
        run(compose_run(run_dir, *ONE_EPOCH, "trainer.max_epochs=2", "ckpt_path=last"))


def _conll(folder: Path, names: tuple[str, ...]) -> Path:
    folder.mkdir()
    for name in names:
        (folder / name).write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n")
    return folder


def test_a_task_pointed_at_another_tasks_folder_names_the_files_and_keys_it_expects(tmp_path) -> None:
    data = _conll(tmp_path / "conll", ("train.txt", "dev.txt", "test.txt"))
    with pytest.raises(FileNotFoundError, match=rf"task rte has no train split: no train file in {data}: expected "
                                                r"train.jsonl \(task.files.train\); the folder holds dev.txt, "
                                                r"test.txt, train.txt"):
        run(compose_run(tmp_path / "run", "task=rte", f"task.data_dir={data}"))


def test_ner_files_named_otherwise_name_the_folder_the_file_and_the_key(tmp_path) -> None:
    data = _conll(tmp_path / "wnut17", ("wnut17train.conll", "dev.conll"))
    with pytest.raises(ValueError, match=rf"task ner: no training file to read labels from \(no train file in {data}: "
                                         r"expected train.txt \(task.files.train\); the folder holds dev.conll, "
                                         r"wnut17train.conll\); set task.files.train"):
        run(compose_run(tmp_path / "run", "task=ner", f"task.data_dir={data}"))
    results, _, _ = run(compose_run(tmp_path / "run", "task=ner", f"task.data_dir={data}", "trainer.max_epochs=1",
                                    "task.files.train=wnut17train.conll", "task.files.validation=dev.conll",
                                    "task.files.test=dev.conll"))
    assert "val/f1" in results["metrics"]


def test_squad_carved_from_a_missing_dev_file_names_both_files(tmp_path) -> None:
    from ptrain.testing.fixtures import write_squad

    data = tmp_path / "squad"
    write_squad(data)
    (data / "dev.json").rename(data / "dev-v1.1.json")
    (data / "train.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"task squad has no train split: no train file in .*: expected "
                                                r"train.json \(task.files.train\); the folder holds dev-v1.1.json; nor "
                                                r"the validation file dev.json \(task.files.validation\) to cut "
                                                r"task.train_from_validation=0.5"):
        run(compose_run(tmp_path / "run", "task=squad", f"task.data_dir={data}", "task.train_from_validation=0.5",
                        "task.max_length=64", "task.max_query_length=16"))


def test_max_steps_before_the_first_validation_says_no_selection_happened(tmp_path) -> None:
    with LogCapture("ptrain.train") as log:
        results, _, _ = run(compose_run(tmp_path, *ONE_EPOCH, "trainer.max_steps=3"))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["best_checkpoint"] is None and saved["best_epoch"] is None
    assert saved["selection"].startswith("none: no validation ran during training (trainer.max_steps=3")
    assert "no model selection on val/f1: no validation ran during training" in log.text
    assert "val/f1" in saved["metrics"]  # of the last weights, as `selection` says


@pytest.mark.parametrize("kind", ["classification", "multiple_choice", "srl"])
def test_a_bad_label_names_its_file_line_not_its_row_number(tmp_path, kind) -> None:
    """Blank lines (and a header) make row numbers and file lines differ; the label sits on line 4 each time."""
    if kind == "classification":
        from ptrain.tasks.classification import ClassificationTask

        (tmp_path / "train.tsv").write_text("sentence\tlabel\ngood\t1\n\nodd\t2\n")
        task = ClassificationTask("sst2", labels=["0", "1"], text_fields=["sentence"], format="glue_tsv",
                                  data_dir=str(tmp_path), files={"train": "train.tsv"})
    elif kind == "multiple_choice":
        from ptrain.tasks.multiple_choice import MultipleChoiceTask

        row = {"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "idx": 0}
        (tmp_path / "train.jsonl").write_text("\n".join([json.dumps({**row, "label": 0}), "", "",
                                                         json.dumps({**row, "label": 1})]) + "\n")
        task = MultipleChoiceTask("copa", choice_fields=["choice1"], data_dir=str(tmp_path),
                                  files={"train": "train.jsonl"})
    else:
        from ptrain.tasks.srl import SRLTask

        (tmp_path / "train.txt").write_text("0 ate it ||| B-V B-A1\n\n\n0 ate it ||| B-V B-A2\n")
        task = SRLTask("conll05", data_dir=str(tmp_path), files={"train": "train.txt"},
                       labels=["O", "B-V", "B-A1", "I-A1"])
    with pytest.raises(DataFormatError, match=r"train\.\w+, line 4: (unknown label '2'|label 1 is not a choice index|"
                                              r"unknown tag 'B-A2')"):
        task.read("train")
