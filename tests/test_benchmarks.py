"""The benchmarks run on a tiny configuration, and their tables are built right. Nothing here is timed."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import accuracy, speed  # noqa: E402
from benchmarks._markdown import replace_section  # noqa: E402


def test_speed_runs_every_variant_on_a_tiny_backbone(tmp_path: Path) -> None:
    pytest.importorskip("peft")  # the PEFT rows need it (a test-only peer)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- speed:tiny_bert-cpu:begin -->\nold\n<!-- speed:tiny_bert-cpu:end -->\nrest\n")
    results = speed.main(["--model", "tiny_bert", "--device", "cpu", "--batch", "2", "--seq", "8", "--steps", "1",
                          "--repeats", "1", "--warmup", "0", "--no-memory", "--out", str(tmp_path),
                          "--methods", "finetune,head,ptv2,ptv2_upper,peft_prefix", "--readme", str(readme)])
    rows = results["variants"]
    assert list(rows) == ["finetune", "head", "ptv2", "ptv2_upper", "peft_prefix"]
    assert rows["finetune"]["x_finetune"] == 1.0
    assert rows["ptv2"]["vs_peft"] == pytest.approx(rows["peft_prefix"]["ms"] / rows["ptv2"]["ms"])
    # tiny_bert has 2 layers: the upper-half prefix sits on layer 1 only, and backward starts there
    assert rows["ptv2_upper"]["prefix_layers"] == [1] and rows["ptv2_upper"]["grad_from"] == 1
    assert rows["head"]["grad_from"] is None and rows["ptv2"]["grad_from"] == 0
    # the same prefix parameters as PEFT's (2 layers x 2 (k, v) x 16 tokens x 64 hidden) + the same head
    head_params = rows["head"]["trainable"]
    assert rows["ptv2"]["trainable"] - head_params == rows["peft_prefix"]["trainable"] - head_params == 2 * 2 * 16 * 64
    names = [t["target"] for t in results["targets"]]
    assert any(name.startswith("ptv2 step time <= 0.65 x finetune (its model FLOPs are 0.") for name in names)
    assert "ptv2 upper half: no backward below its lowest prefix layer" in names
    saved = json.loads((tmp_path / "speed-tiny_bert-cpu.json").read_text())
    assert saved["config"]["batch"] == 2
    assert "| ptv2 (all layers, P) |" in (tmp_path / "speed-tiny_bert-cpu.md").read_text()
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("rest\n") and "old" not in text
    assert "| finetune |" in text and "--model tiny_bert" in text


def test_memory_probe_runs_in_a_fresh_process() -> None:
    probe = speed.run_probe("ptv2", ["--model", "tiny_bert", "--device", "cpu", "--batch", "2", "--seq", "8",
                                     "--probe-steps", "1"])
    assert probe["variant"] == "ptv2"
    # training adds activations, gradients and optimizer state on top of the built model
    assert probe["peak_bytes"] > probe["resident_bytes"] > 0


def test_step_flops_follow_the_documented_formula() -> None:
    """Hand count for a 2-layer encoder with linear weights N per layer (N_qkv of them the query, key and value
    projections), H = 64, batch 2, T = 8, P = 4."""
    import torch

    args = speed.parse_args(["--model", "tiny_bert", "--device", "cpu", "--batch", "2", "--seq", "8"])

    linear = torch.nn.Linear
    layer = torch.nn.ModuleDict({"query": linear(64, 64), "key": linear(64, 64), "value": linear(64, 64),
                                 "up": linear(64, 128), "down": linear(128, 64)})
    qkv = 3 * 64 * 64
    n = qkv + 64 * 128 + 128 * 64
    built = speed.Built(speed.ALL_VARIANTS["ptv2_upper"], None, None, None, 0, 0, 0, {1: 4}, False, [layer, layer])
    B, T, H = 2, 8, 64
    fwd0 = 2 * n * T + 4 * T * T * H
    fwd1 = 2 * n * T + 4 * T * (T + 4) * H
    # layer 1 is the lowest in the graph and its input is frozen: no q/k/v input gradients, no query gradient
    bwd1 = 2 * (n - qkv) * T + 6 * T * (T + 4) * H
    assert speed.step_flops(built, args, lowest=1) == B * (fwd0 + fwd1 + bwd1)
    finetune = speed.Built(speed.ALL_VARIANTS["finetune"], None, None, None, 0, 0, 0, {}, True, [layer, layer])
    per_layer = 3 * 2 * n * T + 12 * T * T * H  # 6N per token + attention forward and backward
    assert speed.step_flops(finetune, args, lowest=0) == B * 2 * per_layer


def test_speed_targets_and_ratios_from_known_samples() -> None:
    results = {"config": {"batch": 4, "seq": 10, "num_layers": 4, "peak_tflops": None}, "variants": {}}

    def row(ms: float, peer: str | None = None, peak: int = 100, grad_from: int | None = 0,
            prefix_layers: list[int] | None = None, bwd: float | None = None, flops: float = 1e9) -> dict:
        bwd = ms / 2 if bwd is None else bwd
        sample = ((ms - bwd) / 1000, bwd / 1000, 0.0)  # forward + backward + optimizer = ms
        return {"label": "x", "peer": peer, "trainable": 1, "total": 2, "grad_from": grad_from, "flops": flops,
                "prefix_layers": prefix_layers or [], "samples": [(*sample, r) for r in range(3)],
                "memory": {"peak_bytes": peak, "resident_bytes": 10, "method": "test"}}

    results["variants"] = {
        "finetune": row(1000, peak=1000, bwd=600), "head": row(200, grad_from=None, bwd=10),
        "ptv2": row(600, "peft_prefix", peak=500, prefix_layers=[0, 1, 2, 3], bwd=410, flops=0.66e9),
        "ptv2_upper": row(400, peak=450, grad_from=2, prefix_layers=[2, 3], bwd=210),
        "peft_prefix": row(750, peak=520, bwd=400),
    }
    speed.summarise(results)
    v = results["variants"]
    assert v["ptv2"]["x_finetune"] == pytest.approx(0.6)
    assert v["ptv2"]["vs_peft"] == pytest.approx(1.25)
    assert v["ptv2"]["tokens_per_s"] == pytest.approx(40 / 0.6)
    checks = {t["target"]: t for t in results["targets"]}
    assert checks["ptv2 step time <= 0.65 x finetune (its model FLOPs are 0.66 x finetune's)"]["ok"]
    assert v["ptv2"]["flops_x_finetune"] == pytest.approx(0.66)
    rate = checks["ptv2 model FLOP/s >= finetune's (needed for 0.65: 1.02)"]
    assert rate["value"] == pytest.approx(0.66 / 0.6) and rate["ok"]
    assert checks["ptv2 throughput >= 1.15 x peft_prefix (same work)"]["ok"]
    assert checks["ptv2 peak memory <= 0.6 x finetune"]["value"] == pytest.approx(0.5)
    assert checks["ptv2 upper half: no backward below its lowest prefix layer"]["ok"]
    share = next(t for t in results["targets"] if t["target"].startswith("ptv2 upper half backward"))
    assert share["value"] == pytest.approx((210 - 10) / (410 - 10))
    v["ptv2_upper"]["grad_from"] = 0
    assert not next(t for t in speed.targets(results) if "no backward below" in t["target"])["ok"]


def _write_result(root: Path, task: str, method: str, seed: int, dev: float, test: float | None,
                  trainable: int, share: float) -> None:
    metric = "f1" if task == "conll03" else "accuracy"
    metrics = {f"val/{metric}": dev, **({f"test/{metric}": test} if test is not None else {})}
    path = root / task / method / f"s{seed}" / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"seed": seed, "metrics": metrics, "trainable_params": trainable,
                                "trainable_share": share, "wall_s": 60.0, "main_metric": metric}))


def test_accuracy_table_from_results_files(tmp_path: Path) -> None:
    _write_result(tmp_path, "conll03", "finetune", 1, 0.90, 0.86, 22_000_000, 1.0)
    _write_result(tmp_path, "conll03", "finetune", 2, 0.92, 0.88, 22_000_000, 1.0)
    _write_result(tmp_path, "conll03", "ptv2", 1, 0.85, 0.80, 77_000, 0.0034)
    _write_result(tmp_path, "conll03", "ptv2", 2, 0.89, 0.82, 77_000, 0.0034)
    _write_result(tmp_path, "cb", "prompt", 1, 0.50, None, 6_000, 0.0003)
    cells = accuracy.aggregate(accuracy.collect(tmp_path))
    assert [(c["task"], c["method"]) for c in cells] == [("conll03", "finetune"), ("conll03", "ptv2"),
                                                          ("cb", "prompt")]
    ft, p2, cb = cells
    assert ft["dev"] == pytest.approx(91.0) and ft["dev_std"] == pytest.approx(1.4142, abs=1e-4)
    assert p2["gap"] == pytest.approx(87.0 - 91.0) and p2["test"] == pytest.approx(81.0)
    assert cb["dev_std"] is None and cb["gap"] is None and cb["test"] is None
    text = accuracy.render(cells, {"conll03": None, "cb": 28 / 56})
    assert "| CoNLL-2003 NER (entity F1) | ptv2 | 1,2 | 87.0 ± 2.8 | – | 81.0 ± 1.4 | -4.0 | 77,000 | 0.34% |" in text
    assert "| CB (accuracy) | prompt | 1 | 50.0 | 50.0 | – | – | 6,000 |" in text
    assert "- conll03: dev points against fine-tuning: ptv2 -4.0" in text


def test_majority_baseline_reads_the_task_split(tmp_path: Path) -> None:
    """Counted through the task itself: BoolQ's dev set is the held-out 30% of val (train_from_validation)."""
    data = tmp_path / "superglue" / "BoolQ"
    data.mkdir(parents=True)
    labels = [True] * 70 + [False] * 30
    data.joinpath("val.jsonl").write_text("".join(
        json.dumps({"question": f"q{i}?", "passage": "p.", "label": lab, "idx": i}) + "\n"
        for i, lab in enumerate(labels)))
    args = accuracy.parse_args(["--data", str(tmp_path)])
    held_out = accuracy.majority("boolq", args)
    import random

    order = list(range(100))
    random.Random(0).shuffle(order)
    expected = sum(labels[i] for i in order[70:]) / 30
    assert held_out == pytest.approx(max(expected, 1 - expected))
    assert accuracy.majority("conll03", args) is None  # span F1 has no majority class


def test_accuracy_commands_and_readme_section(tmp_path: Path) -> None:
    args = accuracy.parse_args(["--tasks", "boolq", "--methods", "ptv2_nodrop", "--seeds", "3", "--out",
                                str(tmp_path), "--limit-train-batches", "5", "--lr", "ptv2_nodrop=5e-3",
                                "--data", "/data"])
    cmd = accuracy.display(accuracy.command("boolq", "ptv2_nodrop", 3, args))
    assert cmd.startswith("python train.py model=minilm task=boolq task.data_dir=/data/superglue/BoolQ "
                          "task.train_from_validation=0.7 method=ptv2 method.backbone_dropout=false seed=3 "
                          "trainer.max_epochs=5 logger=csv")
    assert cmd.endswith("method.lr=5e-3 +trainer.limit_train_batches=5")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n")
    args.readme = readme
    _write_result(tmp_path, "boolq", "ptv2_nodrop", 3, 0.7, None, 10, 0.1)
    _write_result(tmp_path, "boolq", "ptv2_nodrop", 4, 0.5, None, 10, 0.1)  # a seed not asked for
    accuracy.main(["--collect-only", "--tasks", "boolq", "--methods", "ptv2_nodrop", "--seeds", "3,5",
                   "--out", str(tmp_path), "--readme", str(readme)])
    text = readme.read_text()
    assert "<!-- accuracy:begin -->" in text and "| BoolQ" in text and "method.backbone_dropout=false" in text
    # seed 4 was not asked for, seed 5 never ran: the table is seed 3 alone, and so is the command list
    assert "| ptv2_nodrop | 3 | 70.0 |" in text and "The 1 train.py commands" in text
    assert "seed=3" in text and "seed=5" not in text
    replace_section(readme, "accuracy", "new body")
    assert readme.read_text().count("<!-- accuracy:begin -->") == 1 and "new body" in readme.read_text()
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--methods", "nope"])


def test_accuracy_grid_runs_jobs_side_by_side_with_a_share_of_the_cores(tmp_path: Path) -> None:
    """`--jobs 2`: both runs are alive at once (each waits for the other's mark), each with half the cores;
    a cell whose results.json exists is skipped."""
    args = accuracy.parse_args(["--out", str(tmp_path), "--jobs", "2"])
    script = ("import os, sys, time, pathlib; me, other = map(pathlib.Path, sys.argv[1:]); me.touch(); "
              "end = time.time() + 60\nwhile not other.exists() and time.time() < end: time.sleep(0.05)\n"
              "print(os.environ.get('OMP_NUM_THREADS'), other.exists())")
    a, b = tmp_path / "a.mark", tmp_path / "b.mark"
    grid = [("rte", "head", 1), ("rte", "ptv2", 1), ("cb", "head", 1)]
    commands = [[sys.executable, "-c", script, str(a), str(b)], [sys.executable, "-c", script, str(b), str(a)],
                [sys.executable, "-c", "raise SystemExit('must be skipped')"]]
    _write_result(tmp_path, "cb", "head", 1, 0.5, None, 10, 0.1)
    accuracy.run_grid(grid, commands, args)
    share = str(max(1, (os.cpu_count() or 1) // 2))
    for method in ("head", "ptv2"):
        assert (tmp_path / "rte" / method / "s1" / "train.log").read_text().split() == [share, "True"]
    assert not (tmp_path / "cb" / "head" / "s1" / "train.log").exists()
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--jobs", "0"])


def test_epochs_and_majority_follow_the_overrides_the_runs_get(shared_data) -> None:
    """The last override of a key wins, as in train.py; the majority class is counted on the runs' own dev split."""
    args = accuracy.parse_args(["--tasks", "boolq,rte", "--methods", "finetune", "--seeds", "1", "--data",
                                str(shared_data), "--per-task", "boolq:trainer.max_epochs=3", "--per-task",
                                "boolq:trainer.max_epochs=6", "--set", "trainer.max_epochs=2"])
    assert accuracy.task_epochs("boolq", args) == 6 and accuracy.task_epochs("rte", args) == 2
    half = accuracy.parse_args(["--tasks", "boolq", "--data", str(shared_data), "--per-task",
                                "boolq:task.train_from_validation=0.5"])
    rows = [json.loads(line) for line in (shared_data / "superglue" / "BoolQ" / "val.jsonl").open()]
    import random

    order = list(range(len(rows)))
    random.Random(0).shuffle(order)  # as Task.examples: the held-out half is what the runs score
    dev = [rows[i] for i in order[len(rows) // 2:]]
    expected = max(sum(r["label"] for r in dev), sum(not r["label"] for r in dev)) / len(dev)
    assert accuracy.majority("boolq", half) == pytest.approx(expected)
    assert accuracy.majority("boolq", half) != pytest.approx(accuracy.majority("boolq", args))


@pytest.mark.parametrize("variant", ["finetune", "head", "prompt", "ptv2", "ptv2_upper"])
def test_step_flops_equal_torch_flop_counter_per_layer(variant: str) -> None:
    """speed.py's closed form against torch's FlopCounterMode on the transformer layers of one real step."""
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    args = speed.parse_args(["--model", "tiny_bert", "--device", "cpu", "--batch", "2", "--seq", "16",
                             "--length", "4"])
    built = speed.build(speed.ALL_VARIANTS[variant], args)
    batch = speed.make_batch(args, speed._vocab(built))
    lowest = speed.gradient_depth(built, batch, args)
    counter = FlopCounterMode(display=False, depth=None)
    with counter:
        logits = built.logits(batch["input_ids"], batch["attention_mask"])
        F.cross_entropy(logits.float().flatten(0, -2), batch["labels"].flatten()).backward()
    per_module = counter.get_flop_counts()
    layers = [key for key in per_module if key.rsplit(".", 1)[-1].isdigit() and ".layer." in key]
    assert len(layers) == 2
    assert speed.step_flops(built, args, lowest) == sum(sum(per_module[key].values()) for key in layers)
