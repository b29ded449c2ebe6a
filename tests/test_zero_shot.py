"""benchmarks/zero_shot.py: the untrained model's verbaliser scores, in a results.json that accuracy.py collects."""

from __future__ import annotations

import json

from benchmarks import accuracy, zero_shot
from ptrain.testing.fixtures import write_superglue


def test_zero_shot_scores_label_words_and_is_collected(tmp_path) -> None:
    data = tmp_path / "RTE"
    write_superglue("rte", data, n_train=4, n_val=12, n_test=4)
    out = tmp_path / "out"
    run = out / "rte_verbalizer" / "zeroshot" / "s1"
    args = accuracy.parse_args(["--model", "tiny_llama", "--tasks", "rte_verbalizer", "--methods", "zeroshot",
                                "--seeds", "1", "--data", str(tmp_path), "--out", str(out)])
    args.data = tmp_path  # the fixture's folder layout: <data>/RTE, not superglue/RTE
    cmd = accuracy.command("rte_verbalizer", "zeroshot", 1, args)
    assert cmd[1] == "benchmarks/zero_shot.py" and f"hydra.run.dir={run}" in cmd
    overrides = [c.replace(str(tmp_path / "superglue" / "RTE"), str(data)) for c in cmd[2:]]
    results = zero_shot.main([*overrides, "--words", "no,yes", "--words", "yes,no"])
    saved = json.loads((run / "results.json").read_text())
    assert saved["trainable_params"] == 0 and saved["method"] == "zeroshot"
    assert saved["config"]["method"]["name"] == "head"
    accuracy_ = saved["metrics"]["val/accuracy"]
    assert results["metrics"] == saved["metrics"] and 0.0 <= accuracy_ <= 1.0
    # the configured words are yes,no: the same pair scores the same, the swapped pair the rest (two labels)
    assert saved["alternatives"]["yes,no"] == accuracy_
    assert abs(saved["alternatives"]["no,yes"] - (1 - accuracy_)) < 1e-9 or accuracy_ in (0.0, 1.0)
    [row] = accuracy.collect(out)
    assert (row["task"], row["method"], row["trainable"]) == ("rte_verbalizer", "zeroshot", 0)
