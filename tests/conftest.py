"""Shared test set-up: an isolated ptrain cache, quiet loggers, and small backbone configs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# converted bundled models (ptrain/backbones/bundled.py) are keyed by content and never change: tests share the
# user's copy instead of de-quantizing SmolLM2 again in every session's isolated cache
os.environ.setdefault("PTRAIN_MODEL_CACHE",
                      str(Path(os.environ.get("PTRAIN_CACHE", Path.home() / ".cache" / "ptrain")) / "bundled"))
_CACHE = tempfile.mkdtemp(prefix="ptrain-test-cache-")
os.environ.setdefault("PTRAIN_CACHE", _CACHE)
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

TINY = {
    "tiny_bert": dict(model_type="bert", vocab_size=30522, hidden_size=32, num_hidden_layers=3,
                      num_attention_heads=4, intermediate_size=48, max_position_embeddings=96),
    "tiny_roberta": dict(model_type="roberta", vocab_size=30522, hidden_size=32, num_hidden_layers=3,
                         num_attention_heads=4, intermediate_size=48, max_position_embeddings=98, pad_token_id=0),
    "tiny_deberta": dict(model_type="deberta-v2", vocab_size=30522, hidden_size=32, num_hidden_layers=3,
                         num_attention_heads=4, intermediate_size=48, max_position_embeddings=96,
                         relative_attention=True, position_buckets=16, max_relative_positions=32,
                         pos_att_type=["p2c", "c2p"], position_biased_input=False, norm_rel_ebd="layer_norm",
                         share_att_key=True),
}


def tiny_model_cfg(name: str, attn: str = "sdpa", **extra) -> dict:
    return {"config": dict(TINY[name]), "tokenizer": "bundled:minilm", "init_seed": 0,
            "attn_implementation": attn, **extra}


#: the packages whose versions decide whether the suite passes; printed in pytest's header (CI's log shows them)
REPORTED_PACKAGES = ("torch", "transformers", "lightning", "peft", "datasets", "hydra-core", "torchmetrics")


def pytest_report_header(config) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return ["packages: " + ", ".join(f"{name} {installed(name)}" for name in REPORTED_PACKAGES)]


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA
