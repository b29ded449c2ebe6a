"""SQuAD metrics and span post-processing against hand-computed values (arithmetic in the comments)."""

from __future__ import annotations

import numpy as np
import pytest

from ptrain.metrics.squad import (
    best_null_threshold,
    exact_match,
    f1,
    normalize_answer,
    postprocess_spans,
    squad_v1,
    squad_v2,
)


def test_normalize_answer_official_steps() -> None:
    # lower -> drop punctuation -> drop a/an/the as words -> collapse whitespace
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words
    assert normalize_answer("U.S.-based") == "usbased"


def test_exact_match_and_f1_take_the_best_gold() -> None:
    assert exact_match("the Cat", ["dog", "cat"]) == 1.0
    assert exact_match("cat sat", "cat") == 0.0
    # pred [cat, sat, on, mat], gold [cat, sat]: common 2, P = 2/4, R = 2/2, F1 = 2*.5*1/1.5 = 2/3
    assert f1("cat sat on mat", ["the cat sat"]) == pytest.approx(2 / 3)
    # against "mat" alone: common 1, P = 1/4, R = 1, F1 = 2*.25/1.25 = 0.4 -> max(2/3, 0.4)
    assert f1("cat sat on mat", ["the cat sat", "mat"]) == pytest.approx(2 / 3)
    # multiplicity: pred [x, x, y], gold [x, y, y]: common {x: 1, y: 1} = 2, P = R = 2/3
    assert f1("x x y", ["x y y"]) == pytest.approx(2 / 3)
    # empty gold list = unanswerable (a v2.0 notion: its empty-vs-empty F1 is 1)
    assert f1("", [], version="2.0") == 1.0 and f1("cat", [], version="2.0") == 0.0


def test_v1_and_v2_keep_their_own_rules_for_golds_that_normalise_to_nothing() -> None:
    # gold "The" normalises to "": v1.1 keeps it (EM of "a" against it is 1: "" == ""; F1 0, no token shared),
    # v2.0 drops it and scores against "cat" alone (EM 0, F1 0)
    refs = {"q": ["The", "cat"]}
    assert squad_v1({"q": "a"}, refs) == {"exact_match": 100.0, "f1": 0.0}
    assert (squad_v2({"q": "a"}, refs)["exact"], squad_v2({"q": "a"}, refs)["f1"]) == (0.0, 0.0)
    # gold "." only: v1.1 EM 1 and F1 0 for an empty prediction; v2.0 makes it unanswerable, so EM = F1 = 1
    assert squad_v1({"q": ""}, {"q": ["."]}) == {"exact_match": 100.0, "f1": 0.0}
    assert (squad_v2({"q": ""}, {"q": ["."]})["exact"], squad_v2({"q": ""}, {"q": ["."]})["f1"]) == (100.0, 100.0)
    with pytest.raises(ValueError, match="SQuAD version must be one of 1.1, 2.0; got '3'"):
        f1("a", ["a"], version="3")


def test_squad_v1_percent_and_missing_prediction() -> None:
    refs = {"q1": ["Denver Broncos", "Broncos"], "q2": ["Santa Clara, California"], "q3": ["gold"]}
    preds = {"q1": "the Broncos", "q2": "Santa Clara", "extra": "ignored"}
    out = squad_v1(preds, refs)
    # q1: "broncos" == "broncos" -> EM 1, F1 1; q2: EM 0, F1 P=2/2 R=2/3 -> 0.8; q3 missing -> 0
    assert out["exact_match"] == pytest.approx(100 * 1 / 3)
    assert out["f1"] == pytest.approx(100 * (1 + 0.8 + 0) / 3)


# a, b answerable; c, d unanswerable. Predictions are the best non-null spans.
REFS = {"a": ["x"], "b": ["big red dog"], "c": [], "d": []}
PREDS = {"a": "x", "b": "red dog", "c": "w", "d": "v"}
DIFFS = {"a": -3.0, "b": -1.0, "c": 0.5, "d": 2.0}


def test_squad_v2_breakdown() -> None:
    out = squad_v2(PREDS, REFS)
    # EM: a 1, b 0, c 0 ("w" vs ""), d 0 -> 25%.  F1: a 1, b P=2/2 R=2/3 -> .8, c 0, d 0 -> 45%
    assert out["exact"] == pytest.approx(25.0) and out["f1"] == pytest.approx(45.0) and out["total"] == 4
    assert out["HasAns_exact"] == pytest.approx(50.0) and out["HasAns_f1"] == pytest.approx(90.0)
    assert out["NoAns_exact"] == 0.0 and out["NoAns_total"] == 2
    assert squad_v2({**PREDS, "c": ""}, REFS)["NoAns_exact"] == pytest.approx(50.0)  # "" = no answer, right


def test_squad_v2_only_reports_non_empty_breakdowns() -> None:
    out = squad_v2({"a": "x"}, {"a": ["x"]})
    assert "NoAns_exact" not in out and out["HasAns_exact"] == 100.0


def test_squad_v2_with_null_scores_applies_threshold_and_searches_best() -> None:
    out = squad_v2(PREDS, REFS, na_probs=DIFFS, na_prob_thresh=0.0)
    # c (0.5 > 0) and d (2 > 0) become "no answer" -> right; EM (1+0+1+1)/4, F1 (1+.8+1+1)/4
    assert out["exact"] == pytest.approx(75.0) and out["f1"] == pytest.approx(95.0)
    assert out["best_f1"] == pytest.approx(95.0) and out["best_f1_thresh"] == -1.0


def test_best_null_threshold_sweep() -> None:
    out = best_null_threshold(PREDS, REFS, DIFFS)
    # start: all "no answer" -> 2 right (c, d). Sweep by diff: +a (EM 1) = 3 best @ -3; +b (EM 0) = 3;
    # +c (wrong span) = 2; +d = 1.  EM best 3/4 at -3.
    assert out["best_exact"] == pytest.approx(75.0) and out["best_exact_thresh"] == -3.0
    # F1: +a = 3 @ -3; +b (.8) = 3.8 best @ -1; +c = 2.8; +d = 1.8 -> 3.8/4
    assert out["best_f1"] == pytest.approx(95.0) and out["best_f1_thresh"] == -1.0
    with pytest.raises(ValueError, match="lack a prediction"):
        best_null_threshold({"a": "x"}, REFS, DIFFS)


CONTEXT = "red big dog"
# feature 0: [CLS] q [SEP] red big dog [SEP]; feature 1 (stride window): [CLS] q big dog [SEP]
OFFSETS = [
    [None, None, None, (0, 3), (4, 7), (8, 11), None],
    [None, None, (4, 7), (8, 11), None],
]
STARTS = [np.array([1.0, 5.0, 0.0, 2.0, 0.5, 0.0, 0.0]), np.array([0.5, 0.0, 1.0, 4.5, 0.0])]
ENDS = [np.array([1.0, 0.0, 0.0, 0.0, 3.0, 1.0, 6.0]), np.array([0.5, 0.0, 0.0, 2.0, 0.0])]


def test_postprocess_spans_best_over_features() -> None:
    out = postprocess_spans(STARTS, ENDS, OFFSETS, CONTEXT)
    # f0 best valid: start 3 (2.0) + end 4 (3.0) = 5.0 "red big" (start 1 / end 6 are outside the context)
    # f1 best: start 3 (4.5) + end 3 (2.0) = 6.5 "dog"  -> overall "dog"
    assert (out["text"], out["score"], out["start_char"], out["end_char"]) == ("dog", 6.5, 8, 11)
    # null: f0 1+1 = 2, f1 .5+.5 = 1 -> min 1; diff 1 - 6.5
    assert out["null_score"] == 1.0 and out["null_score_diff"] == pytest.approx(-5.5)
    assert [c["text"] for c in out["n_best"][:2]] == ["dog", "red big"]


def test_postprocess_spans_length_limit_and_n_best() -> None:
    one = postprocess_spans(STARTS[:1], ENDS[:1], OFFSETS[:1], CONTEXT, max_answer_length=1)
    # single-token spans of f0: "big" .5+3 = 3.5, "red" 2+0 = 2, "dog" 0+1 = 1
    assert one["text"] == "big" and one["score"] == 3.5
    # n_best=2: starts {1 (None), 3}, ends {6 (None), 4}: only (3, 4) "red big" survives
    two = postprocess_spans(STARTS[:1], ENDS[:1], OFFSETS[:1], CONTEXT, n_best=2)
    assert [c["text"] for c in two["n_best"]] == ["red big"]
    # n_best=1: start 1 and end 6 are both outside the context -> no span at all
    none = postprocess_spans(STARTS[:1], ENDS[:1], OFFSETS[:1], CONTEXT, n_best=1, null_index=None)
    assert none["text"] == "" and none["score"] == float("-inf") and none["null_score"] is None


def test_postprocess_spans_rejects_end_before_start_and_ragged_input() -> None:
    starts = [np.array([0.0, 0.0, 9.0])]
    ends = [np.array([0.0, 9.0, 1.0])]  # best end (1) lies before best start (2)
    out = postprocess_spans(starts, ends, [[None, (0, 2), (3, 5)]], "ab cd")
    assert out["text"] == "cd" and out["score"] == 10.0  # start 2 + end 2 = 9 + 1
    with pytest.raises(ValueError, match="one start/end logit row"):
        postprocess_spans(starts, ends, [], "ab cd")
