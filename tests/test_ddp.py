"""Two real processes (Lightning DDP over gloo on CPU, started as `python train.py` starts them): evaluation is
split across ranks and scored exactly as one process scores it, rank 0 alone records, and a signal that reaches
one rank checkpoints every rank at the same step, requeues once and resumes exactly, in the same W&B run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _train_utils import compose_run

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "train.py"
DRIVER = Path(__file__).with_name("_ddp_driver.py")  # train.py plus a test hook that signals one rank

# 96 training sentences in batches of 16: 6 batches an epoch, 3 per rank; dev and test: 5 batches of 8 each
COMMON = ["model=tiny_bert", "task=synthetic_ner", "task.n_train=96", "task.n_dev=40", "task.n_test=40",
          "data.batch_size=16", "data.eval_batch_size=8", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
          "method=ptv2", "method.length=4", "method.reparam=mlp", "method.reparam_hidden=16", "method.dropout=0.2"]
DDP_VARIABLES = {"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"}
TWO = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]


@pytest.mark.parametrize(("size", "world"), [(40, 2), (40, 3), (8, 2), (17, 1)])
def test_eval_batches_deal_one_process_batches_to_ranks_in_step(monkeypatch, size, world) -> None:
    from ptrain.data import EvalBatches, LengthGroupedBatches

    sampler = EvalBatches(size, 8)
    owned, lengths = [], set()
    for rank in range(world):
        monkeypatch.setattr(LengthGroupedBatches, "_rank_world", staticmethod(lambda rank=rank: (rank, world)))
        batches = list(sampler)
        lengths.add(len(batches))  # the same number of forward passes on every rank
        owned += [(sampler.number(i), batch) for i, batch in enumerate(batches) if sampler.number(i) is not None]
    assert len(lengths) == 1
    # the owned batches are exactly the 1-process batches, each once
    assert [batch for _, batch in sorted(owned)] == [list(range(i, min(i + 8, size))) for i in range(0, size, 8)]


def test_fsdp_without_cuda_is_an_error_that_says_so(tmp_path) -> None:
    from ptrain.train import run

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: FSDP can run here")
    with pytest.raises(ValueError, match=r"trainer.strategy=fsdp shards the backbone across CUDA GPUs.*does not run "
                                         r"on CPU. On CPU, use trainer=ddp"):
        run(compose_run(tmp_path, "trainer.strategy=fsdp"))


def test_the_trainer_presets_compose(tmp_path) -> None:
    ddp = compose_run(tmp_path, "trainer=ddp").trainer
    assert (ddp.strategy, ddp.devices, ddp.use_distributed_sampler, ddp.num_sanity_val_steps) == ("ddp", 2, False, 0)
    gpu = compose_run(tmp_path, "trainer=gpu").trainer
    assert (gpu.accelerator, gpu.devices, gpu.use_distributed_sampler) == ("gpu", 1, False)


def _train(run_dir: Path, *extra: str, env: dict | None = None, script: Path = TRAIN) -> str:
    """`python train.py` on 2 processes; returns what both ranks printed (the second rank shares the terminal)."""
    # one thread per rank, as in the 1-process check below, so that no float depends on the thread count
    # and none of a surrounding cluster job's or launcher's variables: Lightning would take them for its own
    inherited = {key: value for key, value in os.environ.items()
                 if not key.startswith("SLURM_") and key not in DDP_VARIABLES}
    env = {**inherited, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})}
    done = subprocess.run([sys.executable, str(script), *COMMON, *TWO, "logger=none", *extra,
                           f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ptrain-cache")  # a fresh tokenisation cache: who builds it is visible


@pytest.fixture(scope="module")
def straight(tmp_path_factory, cache) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("ddp") / "straight"
    return run_dir, _train(run_dir, env={"PTRAIN_CACHE": str(cache)})


def test_two_ranks_share_the_dev_set_and_score_it_exactly_as_one_process(straight, cache, monkeypatch) -> None:
    import lightning as L

    from ptrain.data import TaskDataModule
    from ptrain.module import PromptTuningModule
    from ptrain.train import build

    run_dir, output = straight
    results = json.loads((run_dir / "results.json").read_text())
    # each rank evaluated its share (batches 0, 2, 4 and 1, 3 of 5; rank 1 repeats one to keep step with rank 0,
    # and it is dropped), counted from what every rank gathered
    for split in ("val", "test"):
        assert f"{split}: 40 examples in 5 batches over 2 ranks (rank 0: 24, rank 1: 16)" in output
    # rank 0 tokenised each split once and wrote the cache; rank 1 waited, then read it
    assert sorted(re.findall(r"tokenised synthetic_ner (\w+)", output)) == ["test", "train", "validation"]

    # the best checkpoint, evaluated by one process, scores exactly what the two processes reported
    monkeypatch.setenv("PTRAIN_CACHE", str(cache))
    cfg = compose_run(run_dir / "one", *COMMON)
    task, model, tokenizer = build(cfg)
    module = PromptTuningModule(model, task, {"lr": 1e-3})
    data = TaskDataModule(task, tokenizer, seed=cfg.seed, **cfg.data)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False,
                        default_root_dir=str(run_dir / "one"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = {**trainer.validate(module, datamodule=data, ckpt_path=results["best_checkpoint"], verbose=False)[0],
               **trainer.test(module, datamodule=data, ckpt_path=results["best_checkpoint"], verbose=False)[0]}
    finally:
        torch.set_num_threads(threads)
    assert results["metrics"] == {name: float(value) for name, value in one.items()}
    # not a trivial tie: token accuracy moves with every row scored (a row dropped or counted twice shows)
    assert 0 < results["metrics"]["val/accuracy"] < 1 and 0 < results["metrics"]["test/accuracy"] < 1


def test_rank_zero_alone_records_the_results(straight) -> None:
    run_dir, output = straight
    results = json.loads((run_dir / "results.json").read_text())
    for key in ("method", "task", "model", "seed", "trainable_params", "total_params", "trainable_share",
                "prompt_bytes", "main_metric", "best_epoch", "best_checkpoint", "wall_s", "config"):
        assert key in results, key
    assert set(results["metrics"]) == {f"{split}/{name}" for split in ("val", "test")
                                       for name in ("f1", "precision", "recall", "accuracy")}
    assert results["config"]["trainer"]["devices"] == 2
    assert output.count("synthetic_ner · ptv2 · tiny_bert · seed 42") == 1  # one results table: one writer
    assert not list(run_dir.glob(".results.json.*"))  # no other rank's temporary file


def test_a_signal_to_one_rank_checkpoints_both_at_one_step_requeues_once_and_resumes_exactly(
        straight, cache, tmp_path, monkeypatch) -> None:
    from ptrain.loggers import stable_run_id

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.log"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
             "PTRAIN_CACHE": str(cache)}
    run_dir = tmp_path / "interrupted"

    # rank 1 alone gets the signal after optimizer step 4, mid-way through epoch 1 (steps 3, 4, 5)
    output = _train(run_dir, "logger=wandb", env={**slurm, "PTRAIN_TEST_SIGNAL": "1:4"}, script=DRIVER)
    saved = torch.load(run_dir / "hpc_ckpt_1.ckpt", weights_only=True)
    assert saved["global_step"] == 4 and saved["epoch"] == 1
    for rank in (0, 1):
        assert f"rank {rank}: checkpoint {run_dir / 'hpc_ckpt_1.ckpt'} at global step 4" in output
    assert len(saved["ptrain_rng_ranks"]) == 2  # each rank's dropout stream, not rank 0's for both
    assert calls.read_text().splitlines() == ["requeue 4242"]  # one job, one requeue
    assert not (run_dir / "results.json").exists()

    # the requeued job: the same command, the same job id, in the same directory
    _train(run_dir, "logger=wandb", env={**slurm, "SLURM_RESTART_COUNT": "1"})
    straight_dir, _ = straight
    assert json.loads((run_dir / "results.json").read_text())["metrics"] == \
        json.loads((straight_dir / "results.json").read_text())["metrics"]
    a, b = _weights(straight_dir), _weights(run_dir)
    assert a.keys() == b.keys() and all(torch.equal(value, b[name]) for name, value in a.items())
    assert calls.read_text().splitlines() == ["requeue 4242"] and not list(run_dir.glob("hpc_ckpt_*"))

    # both jobs logged to one W&B run (offline: one folder per job, named by the run id), and only rank 0 logged
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    run_id = stable_run_id(run_dir)
    runs = sorted(path.name for path in (run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(name.endswith(f"-{run_id}") for name in runs), runs
