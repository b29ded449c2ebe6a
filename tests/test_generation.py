"""Generation with prompts and prefixes: HF `generate` (cache on and off) against a cache-free greedy loop through
the training path; mixed-length batches against one-by-one; the generation task (reading, encoding, BLEU/ROUGE)
and end-to-end runs whose frozen weights stay bit-identical."""

from __future__ import annotations

import json

import pytest
import torch
from _lm_utils import DECODERS, batch, load, manual_greedy, strip
from _train_utils import compose_run

from ptrain.methods import build_prompt
from ptrain.metrics.generation import GenerationScores
from ptrain.readers.errors import DataFormatError
from ptrain.tasks.generation import GenerationTask
from ptrain.testing.fixtures import write_superglue
from ptrain.testing.fixtures_generation import write_e2e
from ptrain.train import build, run

TEXTS = ["name [ the eagle ] , food [ french ] , area [ riverside ]", "name [ zizzi ]",
         "a much longer input with several more words than the others here"]
STEPS = 6
METHODS = {
    "none": None,
    "prompt": {"name": "prompt", "length": 3, "init": "vocab"},
    "ptv1": {"name": "ptv1", "length": 3, "encoder": "mlp", "encoder_hidden": 16},
    "ptv2": {"name": "ptv2", "length": 3, "reparam": "none"},
}


def _prompt(backbone, tokenizer, method: str):
    cfg = METHODS[method]
    if cfg is None:
        return None
    torch.manual_seed(0)
    module = build_prompt(cfg, backbone, tokenizer).eval()
    if method == "ptv2":  # a prefix of unit scale, so it visibly changes what is generated
        with torch.no_grad():
            module.embedding.weight.normal_(0, 1.0)
    return module


@pytest.mark.parametrize("name", [*DECODERS, "tiny_t5"])
@pytest.mark.parametrize("method", list(METHODS))
def test_generate_matches_greedy_with_and_without_cache_and_batching(name: str, method: str) -> None:
    backbone, tokenizer = load(name, sharp=True)
    module = _prompt(backbone, tokenizer, method)
    prompt = None if module is None else module(1)
    eos = backbone.eos_token_id
    ids, mask = batch(tokenizer, TEXTS, "right")
    reference = manual_greedy(backbone, ids, mask, prompt, STEPS)
    assert len({tuple(r) for r in reference}) > 1 and any(len(set(r)) > 2 for r in reference), reference
    with torch.no_grad():
        for side in ("right", "left"):
            ids, mask = batch(tokenizer, TEXTS, side)
            for cache in (True, False):
                out = backbone.generate(ids, mask, prompt, max_new_tokens=STEPS, use_cache=cache)
                assert strip(out, eos) == reference, (side, cache)
        alone = [strip(backbone.generate(*batch(tokenizer, [t]), prompt, max_new_tokens=STEPS), eos)[0]
                 for t in TEXTS]
    assert alone == reference


def test_the_prompt_changes_what_is_generated() -> None:
    """Guards the test above against a prompt that is silently dropped."""
    backbone, tokenizer = load("tiny_llama", sharp=True)
    ids, mask = batch(tokenizer, TEXTS)
    with torch.no_grad():
        plain = backbone.generate(ids, mask, None, max_new_tokens=STEPS)
        for method in ("prompt", "ptv2"):
            prompted = backbone.generate(ids, mask, _prompt(backbone, tokenizer, method)(1), max_new_tokens=STEPS)
            assert not torch.equal(plain, prompted), method


def test_beam_search_with_a_prefix_runs_and_is_deterministic() -> None:
    backbone, tokenizer = load("tiny_qwen", sharp=True)
    prompt = _prompt(backbone, tokenizer, "ptv2")(1)
    ids, mask = batch(tokenizer, TEXTS, "left")
    with torch.no_grad():
        a = backbone.generate(ids, mask, prompt, max_new_tokens=4, num_beams=3)
        b = backbone.generate(ids, mask, prompt, max_new_tokens=4, num_beams=3, use_cache=False)
    assert a.shape[0] == 3 and torch.equal(a, b)


# ---- the task --------------------------------------------------------------------------------------------
def test_csv_reader_groups_references_of_eval_inputs(tmp_path) -> None:
    paths = write_e2e(tmp_path, n_train=5, n_dev=3, n_test=2, seed=1)
    task = GenerationTask("e2e", data_dir=str(tmp_path), files={"train": "trainset.csv", "validation": "devset.csv",
                                                                "test": "testset_w_refs.csv"})
    train, dev = task.examples("train"), task.examples("validation")
    assert len(train) == 5 and all(len(row["references"]) == 1 for row in train)
    assert len(dev) == 3 and all(len(row["references"]) == 2 for row in dev)
    lines = paths["validation"].read_text().splitlines()
    assert lines[0] == '"mr","ref"' and dev[0]["source"] in lines[1] and dev[0]["references"][1] in lines[2]


def test_encoding_keeps_source_and_target_apart(tmp_path) -> None:
    _, tokenizer = load("tiny_gpt2")
    (tmp_path / "train.jsonl").write_text(json.dumps({"document": "the cat sat", "summary": "cat sits"}) + "\n")
    task = GenerationTask("toy", data_dir=str(tmp_path), format="jsonl", files={"train": "train.jsonl"},
                          source_field="document", target_field="summary", source_suffix=" =")
    [feature] = task.encode(task.examples("train"), tokenizer)
    assert tokenizer.decode(feature["input_ids"]) == "[CLS] the cat sat = [SEP]"
    assert feature["labels"] == tokenizer("cat sits", add_special_tokens=False)["input_ids"] + [102]
    assert feature["references"] == ["cat sits"]


def test_reader_errors_name_file_line_and_field(tmp_path) -> None:
    (tmp_path / "train.jsonl").write_text('{"source": "a", "target": "b"}\n{"source": "c"}\n')
    task = GenerationTask("toy", data_dir=str(tmp_path), format="jsonl", files={"train": "train.jsonl"},
                          source_field="source", target_field="target")
    with pytest.raises(DataFormatError, match=r"train.jsonl, line 2: empty or missing 'target'") as info:
        task.read("train")
    assert info.value.field == "target"
    (tmp_path / "trainset.csv").write_text("meaning,ref\nx,y\n")
    with pytest.raises(DataFormatError, match=r"trainset.csv, line 1: missing column\(s\) \['mr'\]"):
        GenerationTask("e2e", data_dir=str(tmp_path), files={"train": "trainset.csv"}).read("train")
    with pytest.raises(ValueError, match="task.format must be one of csv, jsonl, hub; got 'tsv'"):
        GenerationTask("e2e", data_dir=str(tmp_path), format="tsv")


def test_scores_against_hand_computed_values() -> None:
    scores = GenerationScores()
    scores.update(["the cat sat"], [["the cat is here", "a dog"]])
    result = scores.compute()
    # ROUGE-L: LCS("the cat sat", "the cat is here") = 2 -> P = 2/3, R = 2/4, F = 4/7; "a dog" scores 0
    assert result["rougeL"] == pytest.approx(4 / 7)
    assert result["rouge1"] == pytest.approx(4 / 7) and result["rouge2"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (
        1 / 2 + 1 / 3))
    perfect = GenerationScores()
    perfect.update(["a b c d e", "f g h i"], [["a b c d e"], ["x", "f g h i"]])
    assert perfect.compute()["bleu"] == pytest.approx(1.0)
    cased = GenerationScores(lowercase=True)
    cased.update(["The Eagle is here"], [["the eagle is here"]])
    assert cased.compute()["bleu"] == pytest.approx(1.0)
    assert GenerationScores().compute() == {}


# ---- end to end ------------------------------------------------------------------------------------------
SMALL_D2T = ["task=d2t_synthetic", "task.n_train=48", "task.n_dev=6", "task.n_test=6", "trainer.max_epochs=1",
             "data.batch_size=16", "task.max_target_length=12"]


@pytest.mark.parametrize(("model", "method"), [("tiny_llama", "ptv2"), ("tiny_gpt2", "prompt"),
                                               ("tiny_t5", "ptv2"), ("tiny_llama", "finetune")])
def test_generation_task_trains_reports_and_freezes(tmp_path, model: str, method: str) -> None:
    length = [] if method == "finetune" else ["method.length=4"]
    cfg = compose_run(tmp_path, f"model={model}", f"method={method}", *length, *SMALL_D2T)
    _, fresh, _ = build(cfg)
    before = {k: v.clone() for k, v in fresh.backbone.state_dict().items()}
    results, module, _ = run(cfg)
    after = module.model.backbone.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert (changed != []) == (method == "finetune"), changed[:3]
    assert {"val/bleu", "val/rougeL", "test/rouge1", "test/rouge2"} <= set(results["metrics"])
    assert all(0.0 <= v <= 1.0 for v in results["metrics"].values())
    assert results["main_metric"] == "rougeL"


def test_generation_trains_with_gradient_checkpointing_and_a_deep_prefix(tmp_path) -> None:
    results, module, _ = run(compose_run(tmp_path, "model=tiny_llama", "model.gradient_checkpointing=true",
                                         "method=ptv2", "method.length=4", "method.reparam=mlp",
                                         "method.reparam_hidden=16", *SMALL_D2T))
    assert any(getattr(m, "gradient_checkpointing", False) for m in module.model.backbone.modules())
    assert "val/rougeL" in results["metrics"]


@pytest.mark.parametrize(("model", "task", "method"), [("tiny_gpt2", "rte", "prompt"),
                                                       ("tiny_llama", "rte_verbalizer", "ptv2"),
                                                       ("tiny_t5", "rte_verbalizer", "prompt")])
def test_decoder_and_t5_classification_train_and_evaluate(tmp_path, model, task, method) -> None:
    data = tmp_path / "RTE"
    write_superglue("rte", data, n_train=24, n_val=12, n_test=4)
    cfg = compose_run(tmp_path / "run", f"model={model}", f"task={task}", f"task.data_dir={data}",
                      f"method={method}", "method.length=4", "trainer.max_epochs=1", "data.batch_size=8",
                      "task.max_length=64")
    _, fresh, _ = build(cfg)
    before = {k: v.clone() for k, v in fresh.backbone.state_dict().items()}
    results, module, _ = run(cfg)
    after = module.model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert 0.0 <= results["metrics"]["val/accuracy"] <= 1.0


def test_a_batch_pads_each_key_to_its_own_length(tmp_path) -> None:
    """A target longer than every source of its batch (padded with -100 to the longest target), and the
    verbalizer's label words (K of them per example: never padded to the input's length)."""
    _, tokenizer = load("tiny_gpt2")
    rows = [{"src": "a b", "tgt": "one two three four five six seven"}, {"src": "c d e", "tgt": "x"}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = GenerationTask("toy", data_dir=str(tmp_path), format="jsonl", files={"train": "train.jsonl"},
                          source_field="src", target_field="tgt")
    features = task.encode(task.examples("train"), tokenizer)
    batch = task.collate(features, tokenizer.pad_token_id)
    long = features[0]["labels"]
    assert batch["labels"].shape == (2, len(long)) and len(long) > batch["input_ids"].shape[1]
    assert batch["labels"][1].tolist() == features[1]["labels"] + [-100] * (len(long) - len(features[1]["labels"]))

    from ptrain.tasks.verbalizer import VerbalizerTask

    write_superglue("rte", tmp_path / "RTE", n_train=4, n_val=4, n_test=2)
    cfg = compose_run(tmp_path / "run", "model=tiny_llama", "task=rte_verbalizer", f"task.data_dir={tmp_path / 'RTE'}")
    task = build(cfg)[0]
    assert isinstance(task, VerbalizerTask)
    _, tokenizer = load("tiny_llama")
    batch = task.collate(task.encode(task.examples("train"), tokenizer), tokenizer.pad_token_id)
    assert batch["label_token_ids"].shape == (4, 2)
    logits = torch.zeros(4, tokenizer.vocab_size)
    logits[:, 0] = 5.0  # a token that is no label word: it must not enter the class scores
    assert task.label_logits(logits, batch).shape == (4, 2)
    assert float(task.loss(logits, batch)) == pytest.approx(float(torch.log(torch.tensor(2.0))))  # two equal logits
