"""`ptrain export` and `ptrain predict` from the command line: the formats in, JSON lines out."""

from __future__ import annotations

import json
import subprocess
import sys

from _artifact_utils import make_artifact
from _train_utils import compose_run
from conftest import ROOT

from ptrain.bank import PromptBank
from ptrain.cli import main
from ptrain.testing.fixtures import write_superglue
from ptrain.train import run


def _read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_export_a_run_then_predict_plain_lines_and_conll(tmp_path, capsys) -> None:
    run(compose_run(tmp_path / "run", "method=ptv2", "method.length=3", "trainer.max_epochs=1"))
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "ner")]) == 0
    (tmp_path / "in.txt").write_text("John Smith flew to Paris\n\nMary met IBM in Berlin\n")
    (tmp_path / "in.conll").write_text("-DOCSTART- -X- O O\n\nJohn NNP\nSmith NNP\nflew VBD\nto TO\nParis NNP\n\n"
                                       "Mary NNP\nmet VBD\nIBM NNP\nin IN\nBerlin NNP\n")
    for name in ("in.txt", "in.conll"):
        out = tmp_path / f"{name}.out.jsonl"
        assert main(["predict", str(tmp_path / "ner"), "--input", str(tmp_path / name), "--output", str(out)]) == 0
        rows = _read(out)
        assert [r["tokens"] for r in rows] == [["John", "Smith", "flew", "to", "Paris"],
                                               ["Mary", "met", "IBM", "in", "Berlin"]]
        assert all(r["task"] == "synthetic_ner" and len(r["tags"]) == 5 for r in rows)
    txt, conll = _read(tmp_path / "in.txt.out.jsonl"), _read(tmp_path / "in.conll.out.jsonl")
    assert [r["tags"] for r in txt] == [r["tags"] for r in conll]
    assert txt[0]["input"] == "John Smith flew to Paris" and conll[1]["input"]["tokens"][2] == "IBM"


def test_predict_jsonl_for_several_tasks_equals_the_bank(tmp_path) -> None:
    write_superglue("rte", tmp_path / "rte")
    rte, _, _, _ = make_artifact(tmp_path / "a", "model=tiny_bert", "task=rte", f"task.data_dir={tmp_path / 'rte'}",
                                 "method=prompt", "method.length=2")
    ner, _, _, _ = make_artifact(tmp_path / "b", "model=tiny_bert", "method=ptv2", "method.length=3")
    records = [{"task": "rte", "premise": "a cat sat", "hypothesis": "a cat"},
               {"task": "synthetic_ner", "input": "Paris is nice"},
               {"task": "rte", "input": {"premise": "x", "hypothesis": "y"}}]
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    out = tmp_path / "out.jsonl"
    # a real process, as a user runs it
    done = subprocess.run([sys.executable, "-m", "ptrain", "predict", str(rte), str(ner), "--input",
                           str(tmp_path / "in.jsonl"), "--output", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = _read(out)
    expected = PromptBank.load([rte, ner]).predict([
        ("rte", {"premise": "a cat sat", "hypothesis": "a cat"}), ("synthetic_ner", "Paris is nice"),
        ("rte", {"premise": "x", "hypothesis": "y"})])
    assert [r["task"] for r in rows] == ["rte", "synthetic_ner", "rte"]
    assert rows[0]["label"] == expected[0]["label"] and abs(rows[0]["score"] - expected[0]["score"]) < 1e-6
    assert rows[1]["tags"] == expected[1]["tags"] and rows[2]["label"] == expected[2]["label"]


def test_predict_errors_name_the_file_record_and_field(tmp_path, capsys) -> None:
    write_superglue("rte", tmp_path / "rte")
    rte, _, _, _ = make_artifact(tmp_path / "a", "model=tiny_bert", "task=rte", f"task.data_dir={tmp_path / 'rte'}",
                                 "method=prompt", "method.length=2")
    ner, _, _, _ = make_artifact(tmp_path / "b", "model=tiny_bert", "method=ptv2", "method.length=3")
    (tmp_path / "bad.jsonl").write_text('{"task": "rte", "premise": "a", "hypothesis": "b"}\n{oops\n')
    assert main(["predict", str(rte), "--input", str(tmp_path / "bad.jsonl")]) == 2
    assert "bad.jsonl, line 2: not valid JSON" in capsys.readouterr().err
    (tmp_path / "lines.txt").write_text("hello there\n")
    assert main(["predict", str(rte), str(ner), "--input", str(tmp_path / "lines.txt")]) == 2
    assert "lines.txt, record 1: no task; give --task" in capsys.readouterr().err
    assert main(["predict", str(rte), "--input", str(tmp_path / "lines.txt")]) == 2
    assert "task rte takes fields ['premise', 'hypothesis'], not a plain string" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nowhere"), "--input", str(tmp_path / "lines.txt")]) == 2
    assert "nowhere/prompt.json: not found" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    assert "results.json: not found; export needs a finished run" in capsys.readouterr().err


def test_peft_export_and_import_from_the_command_line_round_trip(tmp_path) -> None:
    pytest = __import__("pytest")
    peft = pytest.importorskip("peft")
    import torch

    from ptrain.backbones import load_backbone

    run(compose_run(tmp_path / "run", "method=prompt", "method.length=3", "trainer.max_epochs=1"))
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "art")]) == 0
    assert main(["export", str(tmp_path / "run"), "--format", "peft", "--out", str(tmp_path / "peft")]) == 0
    assert {p.name for p in (tmp_path / "peft").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    backbone, tokenizer = load_backbone(compose_run(tmp_path / "x").model)
    with torch.no_grad():
        peer = peft.PeftModel.from_pretrained(backbone.model, str(tmp_path / "peft")).eval()
        assert peer.peft_config["default"].num_virtual_tokens == 3
    assert main(["import-peft", str(tmp_path / "peft"), "--out", str(tmp_path / "back"), "--model", "tiny_bert"]) == 0
    (tmp_path / "in.txt").write_text("John Smith flew to Paris\n")
    for name in ("art", "back"):
        assert main(["predict", str(tmp_path / name), "--input", str(tmp_path / "in.txt"), "--output",
                     str(tmp_path / f"{name}.jsonl")]) == 0
    assert _read(tmp_path / "art.jsonl") == _read(tmp_path / "back.jsonl")
