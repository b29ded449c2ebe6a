"""Readers: exact parses of small hand-written files, located errors, and the real shared data if present."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from ptrain.readers import (
    DataFormatError,
    read_boolq,
    read_cb,
    read_copa,
    read_glue,
    read_glue_tsv,
    read_multirc,
    read_ontonotes,
    read_record,
    read_rte,
    read_squad,
    read_srl,
    read_srl_split,
    read_superglue,
    read_wic,
    read_wsc,
)


def _jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _shared_data() -> Path | None:
    """The read-only benchmark copies, wherever this checkout sees them (env var, ./shared, ../shared)."""
    root = Path(__file__).resolve().parents[1]
    for candidate in (
        os.environ.get("PTRAIN_SHARED_DATA"),
        root / "shared" / "data",
        root.parent / "shared" / "data",
    ):
        if candidate and (Path(candidate) / "superglue").is_dir():
            return Path(candidate)
    return None


SHARED = _shared_data()
needs_shared = pytest.mark.skipif(SHARED is None, reason="shared benchmark data not available")


# ------------------------------------------------------------------------------------------- SuperGLUE


def test_rte_and_cb_labels_and_test_split(tmp_path: Path) -> None:
    _jsonl(
        tmp_path / "rte" / "val.jsonl",
        [{"premise": "P", "hypothesis": "H", "label": "not_entailment", "idx": 3}],
    )
    _jsonl(tmp_path / "rte" / "test.jsonl", [{"premise": "P2", "hypothesis": "H2", "idx": 0}])
    assert read_rte(tmp_path / "rte", "val") == [
        {"premise": "P", "hypothesis": "H", "label": "not_entailment", "idx": 3}
    ]
    assert read_rte(tmp_path / "rte" / "test.jsonl")[0]["label"] is None
    _jsonl(tmp_path / "cb.jsonl", [{"premise": "P", "hypothesis": "H", "label": "neutral", "idx": 0}])
    assert read_cb(tmp_path / "cb.jsonl")[0]["label"] == "neutral"


def test_boolq_wic_wsc_bool_labels_become_strings(tmp_path: Path) -> None:
    _jsonl(tmp_path / "b.jsonl", [{"question": "q", "passage": "p", "idx": 0, "label": False}])
    assert read_boolq(tmp_path / "b.jsonl") == [{"question": "q", "passage": "p", "label": "False", "idx": 0}]
    wic = {
        "word": "bank",
        "sentence1": "a bank.",
        "sentence2": "the bank",
        "start1": 2,
        "end1": 6,
        "start2": 4,
        "end2": 8,
        "idx": 5,
        "label": True,
        "version": 1.1,
    }
    _jsonl(tmp_path / "wic.jsonl", [wic])
    assert read_wic(tmp_path / "wic.jsonl") == [
        {
            "word": "bank",
            "sentence1": "a bank.",
            "start1": 2,
            "end1": 6,
            "sentence2": "the bank",
            "start2": 4,
            "end2": 8,
            "label": "True",
            "idx": 5,
        }
    ]
    wsc = {
        "text": "Tom hit the ball because he was angry",
        "target": {"span1_text": "Tom", "span1_index": 0, "span2_text": "he", "span2_index": 5},
        "idx": 1,
        "label": True,
    }
    _jsonl(tmp_path / "wsc.jsonl", [wsc])
    assert read_wsc(tmp_path / "wsc.jsonl") == [
        {
            "text": wsc["text"],
            "span1_text": "Tom",
            "span1_index": 0,
            "span2_text": "he",
            "span2_index": 5,
            "label": "True",
            "idx": 1,
        }
    ]


def test_copa_keeps_int_label(tmp_path: Path) -> None:
    rec = {"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "label": 1, "idx": 0}
    _jsonl(tmp_path / "c.jsonl", [rec])
    assert read_copa(tmp_path / "c.jsonl") == [rec]


def test_multirc_flattens_one_example_per_answer(tmp_path: Path) -> None:
    rec = {
        "idx": 7,
        "version": 1.1,
        "passage": {
            "text": "T",
            "questions": [
                {
                    "question": "Q1",
                    "idx": 0,
                    "answers": [{"text": "a", "idx": 0, "label": 1}, {"text": "b", "idx": 1, "label": 0}],
                },
                {"question": "Q2", "idx": 1, "answers": [{"text": "c", "idx": 2, "label": 0}]},
            ],
        },
    }
    _jsonl(tmp_path / "m.jsonl", [rec])
    out = read_multirc(tmp_path / "m.jsonl")
    assert [(e["question_id"], e["answer"], e["label"], e["answer_idx"]) for e in out] == [
        ("7-0", "a", 1, 0),
        ("7-0", "b", 0, 1),
        ("7-1", "c", 0, 2),
    ]
    assert out[0]["passage"] == "T" and out[2]["question"] == "Q2"


def test_record_entities_use_inclusive_end(tmp_path: Path) -> None:
    text = "Ann met Bob in Rome. @highlight Ann won"
    rec = {
        "source": "x",
        "idx": 4,
        "passage": {
            "text": text,
            "entities": [{"start": 0, "end": 2}, {"start": 8, "end": 10}, {"start": 32, "end": 34}],
        },
        "qas": [
            {
                "query": "@placeholder met Bob",
                "idx": 9,
                "answers": [{"start": 0, "end": 2, "text": "Ann"}, {"start": 32, "end": 34, "text": "Ann"}],
            }
        ],
    }
    _jsonl(tmp_path / "val.jsonl", [rec])
    assert read_record(tmp_path / "val.jsonl") == [
        {
            "passage": text,
            "query": "@placeholder met Bob",
            "entities": ["Ann", "Bob"],
            "answers": ["Ann"],
            "idx": 9,
            "passage_idx": 4,
        }
    ]
    del rec["qas"][0]["answers"]
    _jsonl(tmp_path / "test.jsonl", [rec])
    assert read_record(tmp_path / "test.jsonl")[0]["answers"] == []


def test_missing_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "val.jsonl",
        [
            {"premise": "p", "hypothesis": "h", "label": "entailment", "idx": 0},
            {"premise": "p", "label": "entailment", "idx": 1},
        ],
    )
    with pytest.raises(
        DataFormatError, match=r"val\.jsonl, line 2: missing field 'hypothesis' \(RTE records need"
    ) as info:
        read_rte(path)
    assert (info.value.line, info.value.field, info.value.path) == (2, "hypothesis", str(path))


def test_labelled_split_without_label_fails_but_test_split_does_not(tmp_path: Path) -> None:
    rec = {"premise": "p", "hypothesis": "h", "idx": 0}
    _jsonl(tmp_path / "val.jsonl", [rec])
    _jsonl(tmp_path / "test.jsonl", [rec])
    with pytest.raises(DataFormatError, match=r"line 1: missing field 'label'"):
        read_rte(tmp_path / "val.jsonl")
    assert read_rte(tmp_path / "test.jsonl")[0]["label"] is None
    assert read_rte(tmp_path / "val.jsonl", labeled=False)[0]["label"] is None


@pytest.mark.parametrize(
    ("reader", "record", "pattern"),
    [
        (
            read_rte,
            {"premise": "p", "hypothesis": "h", "label": "yes", "idx": 0},
            r"line 1: field 'label' has unknown value 'yes'.*not_entailment",
        ),
        (
            read_cb,
            {"premise": "p", "hypothesis": 3, "label": "neutral", "idx": 0},
            r"line 1: field 'hypothesis' should be str, got int",
        ),
        (
            read_boolq,
            {"question": "q", "passage": "p", "idx": 0, "label": "maybe"},
            r"field 'label' has unknown value 'maybe'",
        ),
        (
            read_copa,
            {"premise": "p", "choice1": "a", "choice2": "b", "question": "why", "label": 0, "idx": 0},
            r"field 'question'.*cause or effect",
        ),
        (
            read_copa,
            {"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "label": True, "idx": 0},
            r"field 'label' should be int",
        ),
        (
            read_wic,
            {
                "word": "w",
                "sentence1": "abc",
                "sentence2": "abc",
                "start1": 1,
                "end1": 9,
                "start2": 0,
                "end2": 1,
                "idx": 0,
                "label": True,
            },
            r"start1=1, end1=9 is outside sentence1 \(length 3\)",
        ),
        (
            read_wsc,
            {
                "text": "a b",
                "target": {"span1_text": "a", "span1_index": 0, "span2_text": "x", "span2_index": 5},
                "idx": 0,
                "label": True,
            },
            r"span2_index=5 is outside the text \(2 words\)",
        ),
        (
            read_record,
            {"idx": 0, "passage": {"text": "abc", "entities": [{"start": 1, "end": 3}]}, "qas": []},
            r"entity span start=1, end=3 is outside the passage \(length 3\)",
        ),
        (
            read_record,
            {
                "idx": 0,
                "passage": {"text": "abc", "entities": []},
                "qas": [{"query": "no gap", "idx": 0, "answers": []}],
            },
            r"query has no '@placeholder'",
        ),
        (
            read_multirc,
            {
                "idx": 0,
                "passage": {
                    "text": "t",
                    "questions": [
                        {"question": "q", "idx": 0, "answers": [{"text": "a", "idx": 0, "label": 2}]}
                    ],
                },
            },
            r"field 'label' has value 2 \(expected 0 or 1\)",
        ),
    ],
)
def test_bad_values_are_located(tmp_path: Path, reader, record: dict, pattern: str) -> None:
    with pytest.raises(DataFormatError, match=pattern):
        reader(_jsonl(tmp_path / "train.jsonl", [record]))


def test_invalid_json_and_missing_paths(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"premise": "p", "hypothesis": "h", "label": "entailment", "idx": 0}\n{oops\n')
    with pytest.raises(DataFormatError, match=r"train\.jsonl, line 2: invalid JSON"):
        read_rte(path)
    with pytest.raises(
        FileNotFoundError, match=r"nowhere.*expected files: test\.jsonl, train\.jsonl, val\.jsonl"
    ):
        read_rte(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty/val\.jsonl"):
        read_rte(tmp_path / "empty", "val")
    with pytest.raises(ValueError, match="pass split="):
        read_rte(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown SuperGLUE task 'axb'"):
        read_superglue("axb", path)


def test_read_superglue_dispatches_case_insensitively(tmp_path: Path) -> None:
    _jsonl(tmp_path / "val.jsonl", [{"premise": "p", "hypothesis": "h", "label": "entailment", "idx": 0}])
    assert read_superglue("RTE", tmp_path, "val") == read_rte(tmp_path / "val.jsonl")


@needs_shared
def test_real_superglue_counts_match_the_release() -> None:
    sg = SHARED / "superglue"
    # Counts from the official release (also listed in shared/data/README.md).
    rte = read_superglue("rte", sg / "RTE", "val")
    assert Counter(e["label"] for e in rte) == {"entailment": 146, "not_entailment": 131}
    assert Counter(e["label"] for e in read_superglue("cb", sg / "CB", "val")) == {
        "contradiction": 28,
        "entailment": 23,
        "neutral": 5,
    }
    assert Counter(e["label"] for e in read_superglue("boolq", sg / "BoolQ", "val")) == {
        "True": 2033,
        "False": 1237,
    }
    assert Counter(e["label"] for e in read_superglue("copa", sg / "COPA", "val")) == {0: 55, 1: 45}
    assert len(read_superglue("wic", sg / "WiC", "val")) == 638
    assert Counter(e["label"] for e in read_superglue("wsc", sg / "WSC", "val")) == {"False": 66, "True": 38}
    multirc = read_superglue("multirc", sg / "MultiRC", "val")
    assert len(multirc) == 4848 and len({e["question_id"] for e in multirc}) == 953
    test = read_superglue("rte", sg / "RTE", "test")
    assert len(test) == 3000 and all(e["label"] is None for e in test)
    with pytest.raises(FileNotFoundError, match="BoolQ/train.jsonl"):
        read_superglue("boolq", sg / "BoolQ", "train")


# ---------------------------------------------------------------------------------------------------- GLUE


def test_mrpc_bom_and_bare_quotes(tmp_path: Path) -> None:
    path = tmp_path / "dev.tsv"
    path.write_text(
        '\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t11\t12\tHe said "hi.\tHe said hi "again".\n',
        encoding="utf-8",
    )
    rows = read_glue_tsv(path, ["#1 String", "#2 String"], "Quality")
    assert rows == [
        {
            "#1 String": 'He said "hi.',
            "#2 String": 'He said hi "again".',
            "label": "1",
            "Quality": "1",
            "idx": 0,
        }
    ]
    assert read_glue("mrpc", tmp_path, "dev")[0]["sentence1"] == 'He said "hi.'


def test_sst2_test_split_has_no_label_and_uses_index(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("sentence\tlabel\ngood film \t1\nbad film \t0\n")
    (tmp_path / "test.tsv").write_text("index\tsentence\n7\tfine film .\n")
    assert read_glue("sst2", tmp_path, "train") == [
        {"sentence": "good film", "label": "1", "idx": 0},
        {"sentence": "bad film", "label": "0", "idx": 1},
    ]
    assert read_glue("sst2", tmp_path, "test") == [{"sentence": "fine film .", "label": None, "idx": 7}]


def test_glue_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\nok\t1\ntoo\tmany\tcells\n")
    with pytest.raises(
        DataFormatError, match=r"train\.tsv, line 3: row has 3 tab-separated columns \(expected 2"
    ):
        read_glue_tsv(path, ["sentence"], "label")
    path.write_text("text\tlabel\nok\t1\n")
    with pytest.raises(DataFormatError, match=r"train\.tsv, line 1: missing header column 'sentence'"):
        read_glue_tsv(path, ["sentence"], "label")
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        read_glue_tsv(tmp_path / "missing.tsv", ["sentence"], "label")


@needs_shared
def test_real_glue_counts() -> None:
    sst = read_glue("sst2", SHARED / "glue" / "SST-2", "dev")
    assert Counter(e["label"] for e in sst) == {"1": 444, "0": 428}
    mrpc = read_glue("mrpc", SHARED / "glue" / "MRPC", "dev")
    assert Counter(e["label"] for e in mrpc) == {"1": 279, "0": 129}
    assert len(read_glue("mrpc", SHARED / "glue" / "MRPC", "test")) == 1725


# --------------------------------------------------------------------------------------------------- SQuAD


def _squad(path: Path, qas: list[dict], context: str = "Paris is the capital of France.") -> Path:
    doc = {"version": "v2.0", "data": [{"title": "T", "paragraphs": [{"context": context, "qas": qas}]}]}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_squad_one_example_per_question(tmp_path: Path) -> None:
    path = _squad(
        tmp_path / "dev.json",
        [
            {
                "id": "a",
                "question": "Capital?",
                "answers": [{"text": "Paris", "answer_start": 0}, {"text": "France", "answer_start": 24}],
            },
            {
                "id": "b",
                "question": "Of Spain?",
                "answers": [],
                "is_impossible": True,
                "plausible_answers": [{"text": "Paris", "answer_start": 0}],
            },
        ],
    )
    out = read_squad(tmp_path, "dev")
    assert out[0] == {
        "id": "a",
        "title": "T",
        "context": "Paris is the capital of France.",
        "question": "Capital?",
        "answers": {"text": ["Paris", "France"], "answer_start": [0, 24]},
        "is_impossible": False,
    }
    assert out[1]["answers"] == {"text": [], "answer_start": []} and out[1]["is_impossible"] is True
    assert read_squad(path) == out


def test_squad_offset_mismatch_strict_and_lenient(tmp_path: Path) -> None:
    path = _squad(
        tmp_path / "train.json",
        [
            {"id": "good", "question": "q", "answers": [{"text": "Paris", "answer_start": 0}]},
            {"id": "bad", "question": "q", "answers": [{"text": "France", "answer_start": 23}]},
        ],
    )
    with pytest.raises(
        DataFormatError, match=r"train\.json: question id 'bad', answer 0: context\[23:29\] is ' Franc'"
    ):
        read_squad(path)
    with pytest.warns(UserWarning, match=r"dropped 1 answers .* and 1 questions .*\[.bad.\]"):
        out = read_squad(path, strict=False)
    assert [e["id"] for e in out] == ["good"]
    # context "Paris is the capital of France.": [-7:-1] is "France", but a negative start indexes nothing
    path = _squad(tmp_path / "neg.json", [{"id": "neg", "question": "q",
                                             "answers": [{"text": "France", "answer_start": -7}]}])
    with pytest.raises(DataFormatError, match=r"question id 'neg', answer 0: context\[-7:-1\] is 'before the"):
        read_squad(path)


def test_squad_structure_errors(tmp_path: Path) -> None:
    path = _squad(tmp_path / "x.json", [{"id": "q1", "answers": []}])
    with pytest.raises(DataFormatError, match=r"question id 'q1': missing field 'question'"):
        read_squad(path)
    path = _squad(tmp_path / "y.json", [{"id": "q1", "question": "?", "answers": []}])
    with pytest.raises(DataFormatError, match=r"question id 'q1': answerable question without answers"):
        read_squad(path)
    q = {"id": "q1", "question": "?", "answers": [{"text": "Paris", "answer_start": 0}]}
    path = _squad(tmp_path / "z.json", [q, q])
    with pytest.raises(DataFormatError, match=r"question id 'q1': duplicate id"):
        read_squad(path)


# ----------------------------------------------------------------------------------------------------- SRL


def test_srl_docstring_example_and_multiple_predicates(tmp_path: Path) -> None:
    path = tmp_path / "conll05.devel.txt"
    path.write_text(
        "1 John ate the apple yesterday ||| B-A0 B-V B-A1 I-A1 B-AM-TMP\n\n"
        "1 Ann said Bob ran ||| B-A0 B-V B-A1 I-A1\n"
        "3 Ann said Bob ran ||| O O B-A0 B-V\n"
    )
    out = read_srl(path)
    assert out[0] == {
        "tokens": ["John", "ate", "the", "apple", "yesterday"],
        "predicate_index": 1,
        "tags": ["B-A0", "B-V", "B-A1", "I-A1", "B-AM-TMP"],
    }
    assert [(e["predicate_index"], e["tokens"][e["predicate_index"]]) for e in out[1:]] == [
        (1, "said"),
        (3, "ran"),
    ]
    assert read_srl_split(tmp_path, "conll05", "dev") == out


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("1 a b B-V O", r"line 2: line needs exactly one '\|\|\|' separator"),
        ("1 a b ||| O", r"line 2: 2 tokens but 1 tags"),
        ("5 a b ||| O B-V", r"line 2: predicate index 5 is outside the 2 tokens"),
        ("x a b ||| O B-V", r"line 2: predicate index 'x' is not a non-negative integer"),
        ("1 a b ||| O V", r"line 2: tag 'V' is not BIO"),
    ],
)
def test_srl_errors(tmp_path: Path, line: str, pattern: str) -> None:
    path = tmp_path / "s.txt"
    path.write_text("0 ok ||| B-V\n" + line + "\n")
    with pytest.raises(DataFormatError, match=r"s\.txt, " + pattern):
        read_srl(path)


def test_srl_missing_files_and_names(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"conll2012\.train\.txt"):
        read_srl_split(tmp_path, "conll12", "train")
    with pytest.raises(ValueError, match="unknown conll05 split 'test'"):
        read_srl_split(tmp_path, "conll05", "test")
    with pytest.raises(ValueError, match="unknown SRL dataset"):
        read_srl_split(tmp_path, "propbank", "train")


# ----------------------------------------------------------------------------------------------- OntoNotes


def _conllx(rows: list[tuple[str, str]], start: int = 1) -> str:
    return "".join(
        f"{i}\t{w}\t_\tNN\tNN\t_\t0\troot\t_\t_\t{t}\n" for i, (w, t) in enumerate(rows, start=start)
    )


def test_ontonotes_reads_form_and_last_column(tmp_path: Path) -> None:
    (tmp_path / "dev.sd.conllx").write_text(
        _conllx([("Peter", "B-PERSON"), ("Pan", "I-PERSON"), ("flew", "O")])
        + "\n"
        + _conllx([("Oslo", "B-GPE")])
        + "\n"
    )
    assert read_ontonotes(tmp_path, "dev") == [
        {"tokens": ["Peter", "Pan", "flew"], "tags": ["B-PERSON", "I-PERSON", "O"]},
        {"tokens": ["Oslo"], "tags": ["B-GPE"]},
    ]


def test_ontonotes_errors(tmp_path: Path) -> None:
    path = tmp_path / "train.sd.conllx"
    path.write_text(_conllx([("a", "O")]) + "2\tb\tO\n")
    with pytest.raises(
        DataFormatError, match=r"train\.sd\.conllx, line 2: 3 tab-separated columns \(expected 11"
    ):
        read_ontonotes(path)
    path.write_text(_conllx([("a", "O")]) + _conllx([("b", "O")]))  # blank line between sentences missing
    with pytest.raises(DataFormatError, match=r"line 2: token ID '1' where 2 was expected"):
        read_ontonotes(path)
    path.write_text(_conllx([("a", "PERSON")]))
    with pytest.raises(DataFormatError, match=r"line 1: NER tag 'PERSON' is not BIO"):
        read_ontonotes(path)
    with pytest.raises(FileNotFoundError, match=r"dev\.sd\.conllx"):
        read_ontonotes(tmp_path, "dev")


def test_conll_byte_order_mark_and_missing_tag_column(tmp_path: Path) -> None:
    from ptrain.readers.conll import read_conll

    path = tmp_path / "train.txt"
    path.write_text("\ufeff-DOCSTART- -X- -X- O\n\nAnna NN B-PER\nwent VB O\n", encoding="utf-8")
    assert read_conll(path) == [{"tokens": ["Anna", "went"], "tags": ["B-PER", "O"], "line": 3}]
    with pytest.raises(DataFormatError, match=r"train.txt, line 3: line has 3 columns, no column 5"):
        read_conll(path, tag_column=5)


def test_squad_is_impossible_must_be_a_boolean(tmp_path: Path) -> None:
    path = _squad(tmp_path / "dev.json", [{"id": "q", "question": "?", "is_impossible": "false",
                                           "answers": [{"text": "Paris", "answer_start": 0}]}])
    with pytest.raises(DataFormatError, match=r"question id 'q': field 'is_impossible' should be bool, got str"):
        read_squad(path)
