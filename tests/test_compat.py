"""The transformers code paths the adapters hook into are the ones they were checked against.

ptrain's prefix injection and CPU dropout path sit inside transformers' attention calls, and generation with input
prompts reads the cache transformers hands each step. A new release can change both without any API error (5.24
renamed `past_key_values` to `cache`, and generation with input prompts went silently wrong). These tests read
what actually reaches those hooks on the installed release and fail naming what is new.
"""

from __future__ import annotations

from importlib.metadata import version

import pytest
import torch
from _lm_utils import DECODERS, batch, load
from conftest import tiny_model_cfg
from packaging.specifiers import SpecifierSet

import ptrain.backbones.attention as attention
from ptrain.backbones import load_backbone
from ptrain.backbones.lm import CACHE_KWARGS, pre_hooks
from ptrain.prompts import DeepPrefix

CHECKED = SpecifierSet(attention.CHECKED_TRANSFORMERS)
INSTALLED = version("transformers")
ADVICE = (f"ptrain/backbones/attention.py was checked against transformers{CHECKED}, this is {INSTALLED}: read what "
          "changed in that release's attention and generation code, then list the kwarg in FAST_PATH_KWARGS (the CPU "
          "dropout path handles it) or STOCK_ONLY_KWARGS, and widen CHECKED_TRANSFORMERS and pyproject's range")


def test_installed_transformers_is_a_checked_release() -> None:
    assert CHECKED.contains(INSTALLED, prereleases=True), ADVICE


@pytest.fixture
def seen(monkeypatch) -> dict[str, dict]:
    """kwarg names that reach the attention wrapper, per attention class, and how often the fast path ran."""
    record: dict[str, dict] = {"kwargs": {}, "fast": {}}
    decide = attention._fast_dropout_applies

    def spy(module, base, query, kwargs):
        name = type(module).__name__
        record["kwargs"].setdefault(name, set()).update(kwargs)
        fast = decide(module, base, query, kwargs)
        record["fast"][name] = record["fast"].get(name, 0) + int(fast)
        return fast

    monkeypatch.setattr(attention, "_fast_dropout_applies", spy)
    return record


def _assert_all_known(seen: dict) -> None:
    known = attention.FAST_PATH_KWARGS | attention.STOCK_ONLY_KWARGS
    for module, names in seen["kwargs"].items():
        unknown = sorted(names - known)
        assert not unknown, f"{module}'s attention call passes {unknown}, which ptrain never saw. {ADVICE}"


@pytest.mark.parametrize("name", ["tiny_bert", "tiny_roberta"])
def test_encoder_attention_kwargs_are_known_and_take_the_fast_dropout_path(name: str, seen: dict) -> None:
    backbone, tokenizer = load_backbone(tiny_model_cfg(name))
    backbone.train()
    enc = tokenizer(["a b c", "d"], padding=True, return_tensors="pt")
    backbone(enc["input_ids"], enc["attention_mask"], None, DeepPrefix(2, backbone.geometry)(2))
    _assert_all_known(seen)
    assert seen["kwargs"] and all(seen["fast"].values()), f"the CPU dropout path never ran: {seen}"


@pytest.mark.parametrize("name", [*DECODERS, "tiny_t5"])
def test_language_model_attention_kwargs_are_known_in_training_and_generation(name: str, seen: dict) -> None:
    backbone, tokenizer = load(name)
    ids, mask = batch(tokenizer, ["a b c", "d"])
    prefix = DeepPrefix(2, backbone.geometry)
    backbone.train()
    if name == "tiny_t5":
        backbone.target_states(ids, mask, ids, prefix(2))
    else:
        backbone(ids, mask, None, prefix(2))
    backbone.eval()
    with torch.no_grad():
        backbone.generate(ids, mask, prefix(1), max_new_tokens=2)
    _assert_all_known(seen)
    assert len(seen["kwargs"]) == 1, seen  # the wrapper ran (these tiny configs have no attention dropout)


@pytest.mark.parametrize("name", DECODERS)
def test_generate_hands_each_step_a_cache_under_a_name_the_prompt_hook_reads(name: str) -> None:
    """The decoder's generation hook tells the step that starts the sequence by the cache's length."""
    backbone, tokenizer = load(name)
    ids, mask = batch(tokenizer, ["a b c", "d"])
    named, lengths = [], []

    def record(module, args, kwargs):
        caches = {key: kwargs[key] for key in CACHE_KWARGS if kwargs.get(key) is not None}
        named.append(sorted(caches))
        lengths.append([cache.get_seq_length() for cache in caches.values()])
        return args, kwargs

    with torch.no_grad(), pre_hooks([(backbone.model, record)]):
        backbone.generate(ids, mask, None, max_new_tokens=3, min_new_tokens=3, use_cache=True)
    assert len(named) == 3 and all(len(names) == 1 for names in named), (
        f"generate passed the cache as {named}; the hook reads the first of {CACHE_KWARGS}. {ADVICE}")
    assert lengths == [[0], [ids.shape[1]], [ids.shape[1] + 1]], lengths


@pytest.mark.parametrize("name", [*DECODERS, "tiny_t5"])
def test_ptrain_itself_passes_no_deprecated_cache_argument(name: str, recwarn) -> None:
    backbone, tokenizer = load(name)
    ids, mask = batch(tokenizer, ["a b c", "d"])
    with torch.no_grad():
        for use_cache in (True, False):
            backbone.generate(ids, mask, DeepPrefix(2, backbone.geometry)(1), max_new_tokens=2, use_cache=use_cache)
    deprecated = [str(w.message) for w in recwarn if "past_key_values" in str(w.message)]
    assert not deprecated, deprecated


def test_pyproject_admits_exactly_the_checked_transformers_releases() -> None:
    import re

    from conftest import ROOT

    declared = re.search(r'"transformers([<>=!~][^"]*)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert SpecifierSet(declared) == CHECKED, (
        f"pyproject.toml admits transformers{declared} but the adapters were checked against {CHECKED}")
