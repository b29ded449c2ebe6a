"""The SLURM launcher config renders the sbatch script we expect, without a cluster.

The launcher is driven exactly as ``python train.py -m ... hydra/launcher=slurm`` drives it: the config
is composed by Hydra, the grid is expanded by Hydra's basic sweeper, and the real submitit launcher
builds and "submits" the job array. Only the cluster binaries are fakes: ``srun`` exists so submitit
accepts the machine as a SLURM host, and ``sbatch`` copies the script it is given and prints a job id.
This checks what the cluster would receive (array size, tasks and GPUs per node, the USR1 signal and
requeue lines) rather than re-deriving it from submitit internals.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import ptrain  # noqa: F401  (registers the resolvers ptrain/conf/train.yaml uses)

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "ptrain" / "conf"
LAUNCHERS = CONF / "hydra" / "launcher"

#: The grid of the test: 2 methods x 3 seeds = 6 jobs, each on 2 GPUs.
GRID = ["method=prompt,ptv2", "seed=1,2,3"]
N_JOBS = 6


def _noop_task(cfg: DictConfig) -> None:
    """Stand-in task function; it is pickled into the job files but never run here."""


def _standin_conf(root: Path) -> Path:
    """A minimal config tree with the contract's keys, using the real launcher files.

    It checks the launcher apart from everything else ptrain/conf/train.yaml sets.
    """
    conf = root / "conf"
    (conf / "hydra").mkdir(parents=True)
    shutil.copytree(LAUNCHERS, conf / "hydra" / "launcher")
    (conf / "method").mkdir()
    for method in ("prompt", "ptv2"):
        (conf / "method" / f"{method}.yaml").write_text(f"name: {method}\nlr: 0.01\nlength: 20\n")
    (conf / "train.yaml").write_text(textwrap.dedent("""\
        defaults:
          - _self_
          - method: ptv2
        seed: 11
        experiment: null
        trainer:
          devices: 1
          num_nodes: 1
          accelerator: gpu
          max_epochs: 1
        """))
    return conf


@pytest.fixture(params=["standin", "repo"])
def conf_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The config directory under test: a stand-in tree, and ptrain's own ptrain/conf."""
    if request.param == "standin":
        return _standin_conf(tmp_path)
    return CONF


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Put fake ``srun``/``sbatch`` on PATH; yields the folder where submitted scripts are copied."""
    bindir = tmp_path / "bin"
    captured = tmp_path / "captured"
    bindir.mkdir()
    captured.mkdir()
    scripts = {
        "srun": "#!/bin/sh\nexit 0\n",
        "sbatch": f'#!/bin/sh\ncp "$1" "{captured}/"\necho "Submitted batch job 4242"\n',
    }
    for name, body in scripts.items():
        path = bindir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")

    # The launcher waits for results after submitting; nothing runs here, so hand back empty results.
    import submitit.slurm.slurm as submitit_slurm

    monkeypatch.setattr(submitit_slurm.SlurmJob, "results", lambda self: [None])
    yield captured


def _compose(conf_dir: Path, overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3", job_name="train"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def _job_overrides(grid: list[str]) -> list[list[str]]:
    """The jobs Hydra's basic sweeper makes of a command-line grid, in its order."""
    parsed = OverridesParser.create().parse_overrides(grid)
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [list(job) for batch in batches for job in batch]


def _render_sbatch(conf_dir: Path, tmp_path: Path, captured: Path, extra: list[str]) -> str:
    """Compose, instantiate the launcher, launch the grid into the fake cluster; return the script."""
    cfg = _compose(conf_dir, ["hydra/launcher=slurm", "trainer.devices=2",
                              f"hydra.sweep.dir={tmp_path / 'sweep'}", *extra])
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=_noop_task, config=cfg)
    jobs = _job_overrides(GRID)
    assert len(jobs) == N_JOBS
    returns = launcher.launch(jobs, initial_job_idx=0)
    assert len(returns) == N_JOBS
    scripts = sorted(captured.iterdir())
    assert len(scripts) == 1, "a grid must be submitted as ONE job array"
    return scripts[0].read_text()


def _sbatch_flags(script: str) -> dict[str, str | bool]:
    flags: dict[str, str | bool] = {}
    for line in script.splitlines():
        match = re.fullmatch(r"#SBATCH --([\w-]+)(?:=(.*))?", line.strip())
        if match:
            flags[match.group(1)] = match.group(2) if match.group(2) is not None else True
    return flags


def test_sbatch_for_two_gpu_grid(conf_dir: Path, tmp_path: Path, fake_slurm: Path) -> None:
    """A 6-job grid on 2 GPUs: one array of 6, 2 tasks and 2 GPUs per node, USR1 before the limit."""
    script = _render_sbatch(conf_dir, tmp_path, fake_slurm, ["hydra.launcher.partition=gpu"])
    flags = _sbatch_flags(script)

    assert flags["array"] == f"0-{N_JOBS - 1}%{N_JOBS}"  # one array task per grid job
    assert flags["ntasks-per-node"] == "2"  # == trainer.devices, as Lightning's SLURMEnvironment needs
    assert flags["gpus-per-node"] == "2"
    assert flags["nodes"] == "1"  # == trainer.num_nodes
    assert flags["signal"] == "USR1@300"  # Lightning's auto-requeue listens to SIGUSR1
    assert flags["requeue"] is True
    assert flags["open-mode"] == "append"  # a requeued task appends to its log
    assert flags["partition"] == "gpu"
    assert flags["time"] == "1440"
    assert "USR2" not in script  # submitit's default signal must not be sent as well
    assert "source slurm/setup.sh" in script
    assert "srun" in script and "submitit.core._submit" in script


def test_signal_delay_and_nodes_follow_overrides(conf_dir: Path, tmp_path: Path, fake_slurm: Path) -> None:
    """The USR1 lead time follows signal_delay_s and the node count follows trainer.num_nodes."""
    script = _render_sbatch(conf_dir, tmp_path, fake_slurm,
                            ["hydra.launcher.signal_delay_s=600", "trainer.num_nodes=2"])
    flags = _sbatch_flags(script)
    assert flags["signal"] == "USR1@600"
    assert flags["nodes"] == "2"
    assert flags["ntasks-per-node"] == "2"


def test_local_launcher_config(conf_dir: Path) -> None:
    """The local launcher runs one process per job (Lightning spawns DDP itself) and is CPU by default."""
    cfg = _compose(conf_dir, ["hydra/launcher=local"])
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "LocalLauncher"
    assert launcher.params["tasks_per_node"] == 1
    assert launcher.params["gpus_per_node"] == 0
    assert launcher.params["nodes"] == 1


# --------------------------------------------------------------------------------------------------
# The experiment grids a SLURM array would run: every job must compose, with the experiment's values.
# --------------------------------------------------------------------------------------------------

EXPERIMENTS = CONF / "experiment"  # experiments/ in the clone links here


def _experiment_names() -> list[str]:
    return sorted(str(p.relative_to(EXPERIMENTS).with_suffix("")) for p in EXPERIMENTS.rglob("*.yaml"))


def _group_choice(spec: DictConfig, group: str) -> str | None:
    for entry in spec.get("defaults", []):
        if isinstance(entry, DictConfig) and f"override /{group}" in entry:
            return str(entry[f"override /{group}"])
    return None


def _grid_without_seed(spec: DictConfig) -> list[list[str]]:
    params = OmegaConf.select(spec, "hydra.sweeper.params") or {}
    grid = [f"{key}={value}" for key, value in params.items() if key != "seed"]
    return _job_overrides(grid) if grid else [[]]


@pytest.mark.parametrize("name", _experiment_names())
def test_experiment_grid_composes_with_its_values(name: str) -> None:
    """Each job of the experiment's grid composes against ptrain/conf and keeps the experiment's settings."""
    spec = OmegaConf.load(EXPERIMENTS / f"{name}.yaml")
    for group in ("task", "model"):
        choice = _group_choice(spec, group)
        assert not choice or (CONF / group / f"{choice}.yaml").is_file(), f"{name}: no {group} config {choice}"
    hp = OmegaConf.to_container(spec, resolve=False).get("hp", {}).get("ptv2", {})

    for job in _grid_without_seed(spec):
        cfg = _compose(CONF, [f"experiment={name}", *job])
        assert cfg.experiment == name, (
            f"experiment={name} composed to experiment={cfg.experiment!r}: ptrain/conf/train.yaml must list "
            "`_self_` BEFORE `optional experiment: null` in its defaults, or its own values "
            "(experiment: null, optim.*, data.*) override every experiment file"
        )
        assert cfg.trainer.gradient_clip_val == 1.0, job  # the official HF Trainer's max_grad_norm
        expected_schedule = OmegaConf.select(spec, "optim.schedule")
        if expected_schedule is not None:
            assert cfg.optim.schedule == expected_schedule, job
        if OmegaConf.select(spec, "task.max_length") is not None:
            assert cfg.task.max_length == spec.task.max_length, job
        if hp and cfg.method.name == "ptv2":
            assert cfg.optim.lr == pytest.approx(float(hp["lr"])), job
            assert cfg.method.length == hp["length"], job
            assert cfg.data.batch_size == hp["batch_size"], job
            assert cfg.trainer.max_epochs == hp["epochs"], job


@pytest.mark.parametrize("parallel", ["0", "1"])
def test_run_table_runs_every_task_when_one_multirun_fails(tmp_path: Path, parallel: str) -> None:
    """One crashed job makes its multirun exit non-zero; the table goes on and says which task failed."""
    import subprocess

    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    fake = bin_dir / "python"  # stands in for `python train.py -m experiment=...`
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\ncase "$*" in *bert_large_cb*) exit 1;; esac\nexit 0\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PARALLEL": parallel}
    done = subprocess.run(["bash", str(REPO / "slurm" / "run_table.sh"), "superglue/bert_large"], env=env,
                          capture_output=True, text=True, check=False)
    started = sorted(line.split("experiment=")[1].split()[0] for line in calls.read_text().splitlines())
    assert started == sorted(f"superglue/{p.stem}" for p in (EXPERIMENTS / "superglue").glob("bert_large_*.yaml"))
    assert done.returncode == 1 and "multiruns with failed jobs: superglue/bert_large_cb" in done.stderr
