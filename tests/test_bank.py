"""A prompt bank: K artifacts on one backbone; a batch mixing their tasks gives each row what its task gives alone."""

from __future__ import annotations

import pytest
import torch
from _artifact_utils import make_artifact

from ptrain.artifact import ArtifactError, load_model, read_artifact
from ptrain.bank import InputError, PromptBank
from ptrain.testing.fixtures import write_superglue

SPECS = {  # two NER tasks, one sentence-pair classification with a depth-limited prefix, and a P-Tuning v1 task
    "ner_a": ["method=ptv2", "method.length=4", "task.name=ner_a"],
    "ner_b": ["method=prompt", "method.length=3", "task.name=ner_b"],
    "rte": ["task=rte", "method=ptv2", "method.length=2", "method.layers=[1]"],
    "ner_c": ["method=ptv1", "method.length=5", "method.encoder=mlp", "method.encoder_hidden=8", "task.name=ner_c"],
}
REQUESTS = [("ner_a", "John Smith flew to Paris"), ("rte", {"premise": "a cat sat on the mat", "hypothesis": "a cat"}),
            ("ner_b", "Mary went to Berlin with IBM"), ("ner_c", {"tokens": ["IBM", "is", "big"]}),
            ("rte", {"premise": "x", "hypothesis": "the weather was nice in the hills"}), ("ner_a", "Berlin"),
            ("ner_c", "a much longer sentence about Acme Corp and its people in Lyon"), ("ner_b", "ok")]


def _artifacts(tmp_path, backbone: str) -> dict:
    write_superglue("rte", tmp_path / "rte_data")
    out = {}
    for seed, (name, overrides) in enumerate(SPECS.items()):
        extra = [f"task.data_dir={tmp_path / 'rte_data'}"] if name == "rte" else []
        out[name] = make_artifact(tmp_path / name, f"model={backbone}", *overrides, *extra, seed=seed)[0]
    return out


def _alone(paths: dict, bank: PromptBank, name: str, raw) -> torch.Tensor:
    """The task's own model (`load_model`: one prompt, no bank) on this one input, unpadded."""
    _, model, _ = load_model(read_artifact(paths[name]))
    feature = bank.encode(name, raw)
    ids = torch.tensor([feature["input_ids"]])
    types = torch.tensor([feature["token_type_ids"]]) if "token_type_ids" in feature else None
    with torch.no_grad():
        return model(ids, torch.ones_like(ids), types)[0]


@pytest.mark.parametrize(("backbone", "side"), [("tiny_bert", "right"), ("tiny_llama", "right"),
                                                ("tiny_llama", "left")])
def test_a_mixed_batch_of_four_tasks_gives_each_row_its_task_alone(tmp_path, backbone: str, side: str) -> None:
    paths = _artifacts(tmp_path, backbone)
    bank = PromptBank.load(list(paths.values()))
    bank.tokenizer.padding_side = side
    names = [name for name, _ in REQUESTS]
    features = [bank.encode(name, raw) for name, raw in REQUESTS]
    calls = []
    hook = bank.backbone.register_forward_hook(lambda *args: calls.append(1))
    outputs = bank.forward_rows(names, features)
    hook.remove()
    assert len(calls) == 1  # one backbone pass for the whole mixed batch
    for (name, raw), output in zip(REQUESTS, outputs):  # token logits come back for the real tokens only
        torch.testing.assert_close(output, _alone(paths, bank, name, raw), atol=1e-5, rtol=1e-5)
    # guard: the tasks' prompts differ, so a row run with another task's prompt would not match
    assert not torch.allclose(_alone(paths, bank, "ner_a", "Berlin"), _alone(paths, bank, "ner_b", "Berlin"))


def test_predict_decodes_labels_and_entities_and_keeps_request_order(tmp_path) -> None:
    paths = _artifacts(tmp_path, "tiny_bert")
    bank = PromptBank.load(list(paths.values()))
    results = bank.predict(REQUESTS, batch_size=3)
    assert len(results) == len(REQUESTS)
    for (name, raw), result in zip(REQUESTS, results):
        if name == "rte":
            assert result["label"] in ("entailment", "not_entailment")
            assert result["score"] == pytest.approx(max(result["scores"].values()))
            assert sum(result["scores"].values()) == pytest.approx(1.0)
        else:
            words = raw.split() if isinstance(raw, str) else raw["tokens"]
            assert result["tokens"] == words and len(result["tags"]) == len(words)
            for entity in result["entities"]:
                assert entity["text"] == " ".join(words[entity["start"]:entity["end"]])
                assert result["tags"][entity["start"]] in (f"B-{entity['type']}", f"I-{entity['type']}")
    alone = [bank.predict([request])[0] for request in REQUESTS]
    assert [r.get("label", r.get("tags")) for r in alone] == [r.get("label", r.get("tags")) for r in results]


def test_bad_inputs_name_their_field(tmp_path) -> None:
    paths = _artifacts(tmp_path, "tiny_bert")
    bank = PromptBank.load([paths["rte"], paths["ner_a"]])
    cases = [
        (("rte", "just a string"), r"inputs\[0\]: task rte takes fields \['premise', 'hypothesis'\]"),
        (("rte", {"premise": "a"}), r"inputs\[0\]\.hypothesis: missing"),
        (("rte", {"premise": "a", "hypothesis": 3}), r"inputs\[0\]\.hypothesis: expected a string; got int"),
        (("ner_a", {"tokens": []}), r"inputs\[0\]\.tokens: expected a non-empty list"),
        (("ner_a", " ".join(["word"] * 200)), r"inputs\[0\]: 202 tokens, over task ner_a's max_length of 64"),
        (("nope", "x"), r"task: unknown task 'nope'; the bank holds \['ner_a', 'rte'\]"),
    ]
    for request, message in cases:
        with pytest.raises(InputError, match=message):
            bank.predict([request])


def test_two_artifacts_of_one_task_name_and_a_finetune_artifact_are_refused(tmp_path) -> None:
    a, _, _, _ = make_artifact(tmp_path / "a", "model=tiny_bert", "method=prompt", "method.length=2")
    b, _, _, _ = make_artifact(tmp_path / "b", "model=tiny_bert", "method=ptv2", "method.length=2")
    with pytest.raises(ArtifactError, match="task 'synthetic_ner' is already in the bank"):
        PromptBank.load([a, b])
    f, _, _, _ = make_artifact(tmp_path / "f", "model=tiny_bert", "method=finetune", "task.name=other")
    with pytest.raises(ArtifactError, match="a finetune artifact carries its own backbone"):
        PromptBank.load([a, f])


def test_qa_reads_a_long_context_in_windows_and_answers_with_a_span_of_it(tmp_path) -> None:
    from ptrain.testing.fixtures import write_squad

    write_squad(tmp_path / "squad")
    qa, _, _, _ = make_artifact(tmp_path / "qa", "model=tiny_bert", "task=squad", f"task.data_dir={tmp_path / 'squad'}",
                                "task.max_length=48", "task.doc_stride=16", "task.max_query_length=12",
                                "method=ptv2", "method.length=2")
    ner, _, _, _ = make_artifact(tmp_path / "ner", "model=tiny_bert", "method=prompt", "method.length=3")
    bank = PromptBank.load([qa, ner])
    context = " ".join(f"Sentence {i} says that the river Elbe flows through town number {i}." for i in range(12))
    request = {"question": "Which river flows through the towns?", "context": context}
    feature = bank.encode("squad", request)
    assert len(feature["input_ids"]) > 3  # several windows, one feature
    mixed = bank.predict([("synthetic_ner", "Paris is nice"), ("squad", request)])[1]
    alone = bank.predict([("squad", request)])[0]
    assert mixed == alone and set(alone) == {"answer", "start", "end", "score"}
    assert alone["answer"] == context[alone["start"]:alone["end"]] and alone["answer"]
    _, model, _ = load_model(read_artifact(qa))  # the task's own model, window by window
    with torch.no_grad():
        windows = [model(torch.tensor([ids]), torch.tensor([m]), torch.tensor([t]))[0]
                   for ids, m, t in zip(feature["input_ids"], feature["attention_mask"], feature["token_type_ids"])]
    for mine, theirs in zip(bank.forward_rows(["squad"], [feature])[0], windows):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)


def test_generation_and_verbaliser_tasks_in_a_decoder_bank(tmp_path) -> None:
    """A generation task decodes with its own prefix; a verbaliser scores its label words from the same pass."""
    from _lm_utils import SHARP

    sharp = [f"+model.config.{k}={v}" for k, v in SHARP["tiny_llama"].items()]
    write_superglue("rte", tmp_path / "rte_data")
    gen, _, _, _ = make_artifact(tmp_path / "gen", "model=tiny_llama", *sharp, "task=d2t_synthetic", "task.n_train=8",
                                 "task.n_dev=4", "task.n_test=4", "method=ptv2", "method.length=3")
    verb, _, _, _ = make_artifact(tmp_path / "verb", "model=tiny_llama", *sharp, "task=rte_verbalizer",
                                  f"task.data_dir={tmp_path / 'rte_data'}", "method=prompt", "method.length=2", seed=1)
    bank = PromptBank.load([gen, verb])
    source = "name [ the eagle ] , food [ french ]"
    request = {"premise": "a cat sat on the mat", "hypothesis": "a cat"}
    text, label = bank.predict([("d2t_synthetic", source), ("rte_verbalizer", request)])
    _, model, tokenizer = load_model(read_artifact(gen))
    feature = bank.encode("d2t_synthetic", source)
    ids = torch.tensor([feature["input_ids"]])
    expected = model.generate_text(ids, torch.ones_like(ids), max_new_tokens=model_budget(bank))
    assert text == {"text": expected[0]} and expected[0].strip()
    _, verbaliser, _ = load_model(read_artifact(verb))
    feature = bank.encode("rte_verbalizer", request)
    ids = torch.tensor([feature["input_ids"]])
    with torch.no_grad():
        scores = verbaliser(ids, torch.ones_like(ids))[0, feature["label_token_ids"]].softmax(-1)
    assert label["label"] == bank.tasks["rte_verbalizer"].labels[int(scores.argmax())]
    assert label["score"] == pytest.approx(float(scores.max()), abs=1e-5)


def model_budget(bank: PromptBank) -> int:
    return bank.tasks["d2t_synthetic"].task.max_target_length
