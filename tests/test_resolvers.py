"""The resolvers of ptrain/conf/train.yaml's run and sweep folders (issue 18: multirun folders named by their
factors; `multirun/None/` when no experiment was set)."""

from __future__ import annotations

from ptrain.resolvers import MAX_NAME, first_set, job_dirname


def test_a_job_folder_is_its_number_and_overrides_with_no_nested_folder() -> None:
    assert job_dirname(3, "method.length=20,seed=2") == "3_method.length=20,seed=2"
    assert job_dirname("0", "+optim/scheduler=cosine") == "0_+optim-scheduler=cosine"
    assert job_dirname(5, "") == "5"


def test_a_long_job_folder_name_is_cut_with_a_digest_that_keeps_jobs_apart() -> None:
    one, two = (job_dirname(1, ",".join(f"key{i}={i + shift}" for i in range(60))) for shift in (0, 1))
    assert len(one.encode()) <= MAX_NAME and len(two.encode()) <= MAX_NAME
    assert one != two and one.startswith("1_key0=0,key1=1") and one[-11] == "-"


def test_first_set_skips_nulls() -> None:
    assert first_set(None, "sweep") == "sweep" and first_set("rte", "sweep") == "rte" and first_set(None) is None
