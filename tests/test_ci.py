"""CI runs what the README tells a new user to run, in an environment of its own."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT


def _readme_command(comment: str) -> str:
    """The line after `comment` in the README's set-up block."""
    lines = (ROOT / "README.md").read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(comment))
    return lines[index + 1].strip()


def test_ci_runs_the_readme_test_command_in_a_fresh_virtual_environment() -> None:
    command = _readme_command("# 2. install the test extras")
    assert command.endswith("python -m pytest"), command
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in [line.strip() for line in script], f".ci/run does not run the README's command {command!r}"
    venv = next(i for i, line in enumerate(script) if re.search(r"python3? -m venv ", line))
    activate = next(i for i, line in enumerate(script) if "bin/activate" in line)
    assert venv < activate < script.index(command), "the README command must run inside the new environment"


def test_constraints_pin_every_declared_dependency_inside_its_range() -> None:
    """constraints.txt (the last known-good install) must satisfy pyproject's ranges, or `pip install -c` fails."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            pins[canonicalize_name(name)] = pinned
    for requirement in declared:
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"constraints.txt pins no version of {requirement.name}"
        assert requirement.specifier.contains(pinned, prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pinned}, outside pyproject's {requirement}")
