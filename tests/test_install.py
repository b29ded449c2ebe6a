"""ptrain installed from a wheel, not from the clone (issue 18): `ptrain train` runs from an empty directory on
the packaged configs, `--help` lists the config groups, and a user's config directory adds a task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model=tiny_bert", "task.n_train=32", "task.n_dev=16", "task.n_test=16", "trainer.max_steps=2",
        "logger=none", "data.batch_size=16", "method.length=4"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A new virtual environment holding ptrain's wheel, built from this checkout, installed without the clone.

    Its dependencies come from the test environment: a `.pth` file puts that environment's site-packages on the
    path. A `.pth` line does not run the `.pth` files found there, so the editable install of the clone (a `.pth`
    hook) stays out, and `import ptrain` finds the wheel's copy (checked below)."""
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob("ptrain-*.whl"))
    done = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    where = subprocess.run([str(python), "-c", "import ptrain; print(ptrain.__file__)"], cwd=root,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(site), where  # the wheel's copy, not the clone's
    return venv


def _ptrain(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLURM_")}
    env.update(WANDB_MODE="offline", HF_HUB_OFFLINE="1", PYTHONPATH="")
    return subprocess.run([str(venv / "bin" / "ptrain"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def test_ptrain_train_runs_from_an_empty_directory(installed, tmp_path) -> None:
    done = _ptrain(installed, tmp_path, "train", "task=synthetic_ner", *TINY)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (result,) = tmp_path.glob("outputs/synthetic_ner/ptv2/tiny_bert/*/results.json")
    assert json.loads(result.read_text())["config"]["trainer"]["max_steps"] == 2
    assert (result.parent / ".hydra" / "config.yaml").is_file() and (result.parent / "train.log").is_file()


def test_ptrain_train_help_lists_the_config_groups(installed, tmp_path) -> None:
    done = _ptrain(installed, tmp_path, "train", "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    groups = dict(line.split(": ", 1) for line in done.stdout.splitlines()
                  if ": " in line and line.split(": ", 1)[0] in {"method", "model", "task", "optim", "logger"})
    assert groups["method"] == "finetune, head, prompt, ptv1, ptv2"
    assert {"minilm", "tiny_bert", "smollm2-135m"} <= set(groups["model"].split(", "))
    assert {"conll03", "rte", "sst2", "synthetic_ner"} <= set(groups["task"].split(", "))
    assert set(groups["optim"].split(", ")) == {"adafactor", "adamw", "sgd"}


def test_a_users_config_directory_adds_a_task(installed, tmp_path) -> None:
    """A task of one's own in a directory of one's own, found through hydra.searchpath; the package is untouched."""
    mine = tmp_path / "my_configs" / "task"
    mine.mkdir(parents=True)
    (mine / "tiny_ner.yaml").write_text("defaults:\n  - synthetic_ner\n  - _self_\nname: tiny_ner\nn_train: 24\n")
    done = _ptrain(installed, tmp_path, "train", f"hydra.searchpath=[file://{tmp_path / 'my_configs'}]",
                   "task=tiny_ner", *[o for o in TINY if not o.startswith("task.n_train")])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (result,) = tmp_path.glob("outputs/tiny_ner/ptv2/tiny_bert/*/results.json")
    saved = json.loads(result.read_text())
    assert saved["task"] == "tiny_ner" and saved["config"]["task"]["n_train"] == 24
