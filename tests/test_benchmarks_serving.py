"""benchmarks/serving.py runs on its tiny configuration, its table has every row, and the batches it times give
what each task gives alone. Nothing here is timed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest.importorskip("peft")  # the (p) row is HF PEFT (a test-only peer)

from benchmarks import serving  # noqa: E402


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("serving")
    readme = out / "README.md"
    readme.write_text(f"intro\n{serving.BEGIN}\nold\n{serving.END}\nrest\n")
    results = serving.main(["--quick", "--model", "tiny_bert", "--threads", "1", "--no-rss", "--out", str(out),
                            "--readme", str(readme)])
    return results, out


def _close(a, b) -> float:
    """Max |a - b| over the positions both have (a padded row's token logits are longer than the row alone)."""
    if a.dim() >= 2:
        a = a[: b.shape[0]]
    assert a.shape == b.shape
    return float((a - b).abs().max())


def test_quick_run_prints_every_row(quick: tuple[dict, Path]) -> None:
    results, out = quick
    text = results["table"]
    for label in serving.VARIANTS.values():
        assert f"| {label} |" in text
    assert "| 1 |" in text and "| 8 |" in text  # memory for K = 1 and K = 8
    assert "(m) rows/s >= 0.9 × (s)" in text and "(m) rows/s >= 3 × (p)" in text
    rows = results["variants"]
    assert list(rows) == list(serving.VARIANTS)
    assert all(r["rows_per_s"] > 0 and len(r["seconds"]) == 1 for r in rows.values())
    assert rows["s"]["x_single"] == pytest.approx(1.0)
    memory = {m["k"]: m for m in results["memory"]}
    assert memory[8]["backbone"] == memory[1]["backbone"] > 0  # one backbone, however many artifacts
    assert memory[8]["prompts"] > memory[1]["prompts"] > 0
    saved = json.loads((out / "serving-tiny_bert-mixed-cpu.json").read_text())
    assert saved["config"]["requests"] == 48 and saved["config"]["batch"] == 8
    readme = (out / "README.md").read_text()
    assert readme.startswith("intro\n") and readme.endswith("rest\n") and "old" not in readme
    assert "python benchmarks/serving.py --quick --model tiny_bert --threads 1" in readme


def test_mixed_and_single_batches_give_each_task_alone(quick: tuple[dict, Path]) -> None:
    results, _ = quick
    st = results["setup"]
    bank = st.bank
    names, features = st.batches["m"][0]
    kinds = {bank.tasks[n].prompt.input_length > 0 for n in names}
    assert len(set(names)) >= 4 and kinds == {True, False}  # input prompts and prefixes in one batch
    mixed = bank.forward_rows(names, features)
    single_task = st.single_names[0]
    single = bank.forward_rows([single_task] * len(features), features)
    for i in range(4):
        alone = bank.forward_rows([names[i]], [features[i]])[0]
        assert _close(mixed[i], alone) < 1e-5
        alone_single = bank.forward_rows([single_task], [features[i]])[0]
        assert _close(single[i], alone_single) < 1e-5
    # the run's own check over the first 16 requests, against the same one-row reference
    assert results["checks"]["m"] < 1e-5 and results["checks"]["s"] < 1e-5
    # PEFT's adapters are the same prompts: full-depth, single-segment rows agree with the bank
    assert results["checks"]["p"] < 1e-4


def test_batches_cover_every_request_once(quick: tuple[dict, Path]) -> None:
    st = quick[0]["setup"]
    n = len(st.requests)
    for variant, batches in st.batches.items():
        rows = [id(f) for _, feats in batches for f in feats]
        assert sorted(rows) == sorted(id(f) for f in st.features), variant
        assert all(len(feats) <= 8 for _, feats in batches)
    assert all(len(set(names)) == 1 for names, _ in st.batches["g"] + st.batches["p"])
    assert len(st.batches["m"]) == n // 8
