"""Decoders (GPT-2, Llama with GQA, Qwen3): prefix injection against independent computations, padding sides,
GQA accounting, gradient checkpointing and the errors for unsupported combinations.

The reference for a prefix is the full model run on P real leading tokens: if each layer's prefix holds exactly
the keys/values (after rotary embeddings) the model computes for those tokens, the prefixed model must reproduce
the full model's states and logits on the remaining tokens. The keys are captured from the projections and
rotated here with positions 0..P-1, so a prefix that were rotated again, cached, or placed at the wrong positions
would fail.
"""

from __future__ import annotations

import sys

import pytest
import torch
from _lm_utils import DECODERS, batch, load

from ptrain.backbones import load_backbone
from ptrain.heads import build_head
from ptrain.methods import build_prompt
from ptrain.model import PromptedModel
from ptrain.prompts import DeepPrefix, PromptOutput, SoftPrompt

TEXTS = ["the quick brown fox jumps over the lazy dog", "a short one", "prefix tuning on decoders"]


def _heads(x: torch.Tensor, heads: int, dim: int) -> torch.Tensor:
    b, t, _ = x.shape
    return x.view(b, t, heads, dim).transpose(1, 2)


def _captured_prefix(backbone, ids: torch.Tensor, plen: int):
    """Keys/values of the first `plen` tokens at every layer, as attention sees them (after RoPE), and the
    full model's hidden states."""
    g = backbone.geometry
    seen: dict[tuple[int, str], torch.Tensor] = {}
    handles = []
    for layer, block in enumerate(backbone.base.layers if hasattr(backbone.base, "layers") else backbone.base.h):
        if hasattr(block, "attn"):  # GPT-2: one fused projection
            def fused(_m, _i, out, layer=layer):
                _, k, v = out.split(g.hidden_size, dim=2)
                seen[(layer, "k")], seen[(layer, "v")] = _heads(k, g.num_kv_heads, g.head_dim), \
                    _heads(v, g.num_kv_heads, g.head_dim)
            handles.append(block.attn.c_attn.register_forward_hook(fused))
            continue
        attn = block.self_attn
        key_source = attn.k_norm if hasattr(attn, "k_norm") else attn.k_proj  # Qwen3 normalises keys first

        def keys(_m, _i, out, layer=layer):
            seen[(layer, "k")] = out.view(*out.shape[:2], g.num_kv_heads, g.head_dim).transpose(1, 2)

        def values(_m, _i, out, layer=layer):
            seen[(layer, "v")] = _heads(out, g.num_kv_heads, g.head_dim)
        handles += [key_source.register_forward_hook(keys), attn.v_proj.register_forward_hook(values)]
    full = backbone(ids, torch.ones_like(ids))
    for handle in handles:
        handle.remove()
    kv = {}
    for layer in range(g.num_layers):
        k, v = seen[(layer, "k")][:, :, :plen], seen[(layer, "v")][:, :, :plen]
        if hasattr(backbone.base, "rotary_emb"):
            module = sys.modules[type(backbone.base).__module__]
            positions = torch.arange(plen)[None].expand(ids.shape[0], plen)
            cos, sin = backbone.base.rotary_emb(k, positions)
            _, k = module.apply_rotary_pos_emb(k, k, cos, sin)
        kv[layer] = (k, v)
    return kv, full


@pytest.mark.parametrize("name", [*DECODERS, "tiny_mistral", "tiny_qwen2"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_prefix_reproduces_full_model_on_leading_tokens(name: str, attn: str) -> None:
    backbone, _ = load(name, sharp=True, attn=attn)
    ids = torch.randint(1000, 5000, (2, 11), generator=torch.Generator().manual_seed(0))
    plen = 4
    with torch.no_grad():
        kv, full = _captured_prefix(backbone, ids, plen)
        rest = ids[:, plen:]
        prefixed = backbone(rest, torch.ones_like(rest), prompt=PromptOutput(kv=kv))
        torch.testing.assert_close(prefixed, full[:, plen:], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(backbone.lm_logits(prefixed), backbone.lm_logits(full[:, plen:]),
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", DECODERS)
def test_prefix_with_padding_equals_full_model_per_example(name: str) -> None:
    """The same check with a padded batch on both sides: each row's real tokens match the full model."""
    backbone, tokenizer = load(name, sharp=True)
    plen = 3
    lead = torch.randint(1000, 5000, (1, plen), generator=torch.Generator().manual_seed(1))
    for side in ("left", "right"):
        ids, mask = batch(tokenizer, TEXTS, side)
        with torch.no_grad():
            rows = []
            for row in range(ids.shape[0]):
                real = ids[row][mask[row].bool()][None]
                kv, full = _captured_prefix(backbone, torch.cat([lead, real], 1), plen)
                rows.append((kv, full[:, plen:]))
            # every row got the same prefix (same leading tokens at the same positions)
            kv = rows[0][0]
            together = backbone(ids, mask, prompt=PromptOutput(kv={k: (a.expand(3, -1, -1, -1), b.expand(
                3, -1, -1, -1)) for k, (a, b) in kv.items()}))
        for row, (_, expected) in enumerate(rows):
            torch.testing.assert_close(together[row][mask[row].bool()], expected[0], atol=1e-4, rtol=1e-4)


# With GQA, PEFT's reparameterisation embeds the virtual tokens in the key/value width (32 here), where ours (and
# the official P-tuning v2 code) use the hidden size; the two MLPs differ in shape, so only reparam=none compares
# on Llama. Without GQA (GPT-2) both layouts agree.
@pytest.mark.parametrize(("name", "reparam"), [("tiny_llama", "none"), ("tiny_gpt2", "none"), ("tiny_gpt2", "mlp")])
def test_ptv2_equals_peft_prefix_tuning_on_causal_lm(name: str, reparam: str) -> None:
    peft = pytest.importorskip("peft")
    ours, tokenizer = load(name, sharp=True)
    peer_base, _ = load(name, sharp=True)
    prefix = DeepPrefix(5, ours.geometry, reparam=reparam, reparam_hidden=24).eval()
    config = peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5,
                                     prefix_projection=reparam == "mlp", encoder_hidden_size=24)
    peer = peft.get_peft_model(peer_base.model, config).eval()
    peer.prompt_encoder["default"].load_state_dict(prefix.state_dict(), strict=True)
    ids, mask = batch(tokenizer, TEXTS, "right")  # PEFT numbers positions from the cache, so right padding
    with torch.no_grad():
        mine = ours.lm_logits(ours(ids, mask, prompt=prefix(3)))
        theirs = peer(input_ids=ids, attention_mask=mask).logits
    keep = mask.bool()
    torch.testing.assert_close(mine[keep], theirs[keep], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", ["prompt", "ptv1"])
def test_input_prompts_equal_peft_on_causal_lm(method: str) -> None:
    peft = pytest.importorskip("peft")
    ours, tokenizer = load("tiny_llama", sharp=True)
    peer_base, _ = load("tiny_llama", sharp=True)
    cfg = {"name": method, "length": 4, "init": "random", "encoder": "mlp", "encoder_hidden": 16}
    module = build_prompt(cfg, ours, tokenizer).eval()
    if method == "prompt":
        config = peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    else:
        config = peft.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=4,
                                          encoder_reparameterization_type="MLP", encoder_hidden_size=16)
    peer = peft.get_peft_model(peer_base.model, config).eval()
    peer.prompt_encoder["default"].load_state_dict(module.state_dict(), strict=True)
    ids, mask = batch(tokenizer, TEXTS, "right")
    with torch.no_grad():
        mine = ours.lm_logits(ours(ids, mask, prompt=module(3)))
        theirs = peer(input_ids=ids, attention_mask=mask).logits[:, 4:]  # PEFT keeps the virtual positions
    keep = mask.bool()
    torch.testing.assert_close(mine[keep], theirs[keep], atol=1e-4, rtol=1e-4)


def _model(backbone, tokenizer, method: str, kind: str = "sequence", labels: int = 3, **extra) -> PromptedModel:
    cfg = {"name": method, "length": 4, "init": "random", "encoder": "mlp", "encoder_hidden": 16, **extra}
    prompt = build_prompt(cfg, backbone, tokenizer)
    head = build_head(kind, backbone.geometry.hidden_size, labels, 0.1, backbone.default_pooling)
    return PromptedModel(backbone, head, prompt, train_backbone=method == "finetune").eval()


@pytest.mark.parametrize("name", DECODERS)
@pytest.mark.parametrize("method", ["head", "prompt", "ptv1", "ptv2"])
def test_left_and_right_padding_give_the_same_predictions(name: str, method: str) -> None:
    """Sequence head (pooling the last real token) and verbaliser head, on left- and right-padded batches and
    on each example alone: the same logits for every example."""
    backbone, tokenizer = load(name, sharp=True)
    for kind in ("sequence", "lm"):
        model = _model(backbone, tokenizer, method, kind)
        with torch.no_grad():
            left = model(*batch(tokenizer, TEXTS, "left"))
            right = model(*batch(tokenizer, TEXTS, "right"))
            alone = torch.cat([model(*batch(tokenizer, [t])) for t in TEXTS])
        torch.testing.assert_close(left, right, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(left, alone, atol=1e-4, rtol=1e-4)
        assert torch.equal(left.argmax(-1), right.argmax(-1))


def test_sequence_head_pools_the_last_real_token_on_either_side() -> None:
    backbone, tokenizer = load("tiny_llama", sharp=True, lm_head=False)
    model = _model(backbone, tokenizer, "ptv2")
    seen = {}
    model.head.register_forward_hook(lambda _m, args, _o: seen.__setitem__("hidden", args[0]))
    for side in ("left", "right"):
        ids, mask = batch(tokenizer, TEXTS, side)
        with torch.no_grad():
            logits = model(ids, mask)
        last = [int(torch.nonzero(row).max()) for row in mask]
        expected = model.head.classifier(seen["hidden"][torch.arange(3), last])
        torch.testing.assert_close(logits, expected)


@pytest.mark.parametrize(
    ("name", "method", "expected"),
    [
        # tiny_llama: L=2 layers, 2 key/value heads of 16 dims (4 query heads): a prefix slot is 2 x 2 x 32 wide
        ("tiny_llama", {"name": "ptv2", "length": 8}, 8 * 2 * 2 * (2 * 16)),
        ("tiny_llama", {"name": "ptv2", "length": 8, "layers": [1]}, 8 * 1 * 2 * (2 * 16)),
        ("tiny_llama", {"name": "ptv2", "length": 8, "reparam": "mlp", "reparam_hidden": 32},
         8 * 64 + (64 * 32 + 32) + (32 * 2 * 2 * 32 + 2 * 2 * 32)),
        # tiny_qwen: 1 key/value head of 24 dims (head_dim is not hidden / heads = 16)
        ("tiny_qwen", {"name": "ptv2", "length": 8}, 8 * 2 * 2 * (1 * 24)),
        # tiny_gpt2: no GQA, 4 heads x 16 = the hidden size
        ("tiny_gpt2", {"name": "ptv2", "length": 8}, 8 * 2 * 2 * 64),
        ("tiny_llama", {"name": "prompt", "length": 8, "init": "random"}, 8 * 64),
    ],
)
def test_trainable_counts_match_closed_form_with_gqa(name, method, expected) -> None:
    backbone, tokenizer = load(name, lm_head=False)
    prompt = build_prompt(method, backbone, tokenizer)
    head = build_head("sequence", 64, 3, 0.1, "last")
    model = PromptedModel(backbone, head, prompt)
    summary = model.parameter_summary()
    assert summary["trainable_params"] == expected + 64 * 3 + 3
    if method["name"] == "ptv2":
        kv = prompt(2).kv
        geometry = backbone.geometry
        assert all(k.shape == (2, geometry.num_kv_heads, 8, geometry.head_dim) for k, _ in kv.values())


@pytest.mark.parametrize(("name", "method"), [("tiny_llama", "ptv2"), ("tiny_gpt2", "ptv2"), ("tiny_llama", "prompt"),
                                            ("tiny_gpt2", "ptv1"), ("tiny_llama", "finetune")])
def test_gradient_checkpointing_gives_the_same_gradients(name: str, method: str) -> None:
    grads = {}
    for checkpointing in (False, True):
        backbone, tokenizer = load(name, sharp=True, lm_head=False, gradient_checkpointing=checkpointing)
        torch.manual_seed(0)
        model = _model(backbone, tokenizer, method, reparam="mlp", reparam_hidden=16, layers=[1]).train()
        ids, mask = batch(tokenizer, TEXTS)
        torch.manual_seed(1)  # same dropout masks; non-reentrant checkpointing replays the RNG state
        model(ids, mask).logsumexp(-1).sum().backward()
        grads[checkpointing] = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        assert _checkpointing(backbone.model) == checkpointing
        # the embedding output must not require a gradient: no backward below the lowest prefix
        assert not getattr(backbone.model, "_require_grads_hooks", [])
    assert grads[False].keys() == grads[True].keys()
    for key, value in grads[False].items():
        torch.testing.assert_close(grads[True][key], value, atol=1e-6, rtol=1e-5)


def _checkpointing(model) -> bool:
    return any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


def test_checkpointed_forward_recomputes_the_layers() -> None:
    """Checkpointing is really on: the decoder layers run twice per training step (forward and recompute)."""
    backbone, tokenizer = load("tiny_llama", lm_head=False, gradient_checkpointing=True)
    model = _model(backbone, tokenizer, "ptv2").train()
    calls = []
    backbone.base.layers[0].self_attn.register_forward_hook(lambda *_: calls.append(1))
    model(*batch(tokenizer, TEXTS)).sum().backward()
    assert len(calls) == 2


def test_lm_task_on_an_encoder_names_supported_backbones() -> None:
    from conftest import tiny_model_cfg

    with pytest.raises(ValueError, match=r"model_type 'bert' \(BertBackbone\) does not have here; supported model "
                                         r"types: gpt2, llama, mistral, qwen2, qwen3, t5"):
        load_backbone({**tiny_model_cfg("tiny_bert"), "lm_head": True})
    backbone, tokenizer = load_backbone(tiny_model_cfg("tiny_bert"))
    with pytest.raises(ValueError, match=r"head kind 'generate' .* BertBackbone \(model_type 'bert'\) .* supported "
                                         r"model types: gpt2, llama, mistral, qwen2, qwen3, t5"):
        PromptedModel(backbone, build_head("generate", 64, 0, 0.1, "first"))
    with pytest.raises(ValueError, match="generation needs a backbone with an LM head; supported model types: gpt2"):
        PromptedModel(backbone, build_head("sequence", 32, 2, 0.1, "first")).generate(
            torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3))


def test_decoder_without_lm_head_cannot_score_tokens() -> None:
    backbone, tokenizer = load("tiny_gpt2", lm_head=False)
    with pytest.raises(ValueError, match="was not loaded with; supported model types: gpt2.*model.lm_head=true"):
        PromptedModel(backbone, build_head("lm", 64, 2, 0.1, "last"))


def test_method_head_with_an_lm_head_task_is_refused(tmp_path) -> None:
    from _train_utils import compose_run

    from ptrain.train import run

    cfg = compose_run(tmp_path, "model=tiny_gpt2", "method=head", "task=d2t_synthetic", "task.n_train=8",
                      "task.n_dev=2", "task.n_test=2")
    with pytest.raises(ValueError, match=r"nothing would train: .* task d2t_synthetic \(head kind 'generate'\); "
                                         "use method prompt, ptv1, ptv2 or finetune"):
        run(cfg)


def test_bad_padding_side_is_named() -> None:
    with pytest.raises(ValueError, match="model.padding_side must be one of right, left; got 'middle'"):
        load("tiny_gpt2", padding_side="middle")


def test_soft_prompt_and_prefix_are_exclusive() -> None:
    backbone, tokenizer = load("tiny_gpt2")
    ids, mask = batch(tokenizer, TEXTS)
    both = PromptOutput(embeds=SoftPrompt(2, 64)(3).embeds, kv=DeepPrefix(2, backbone.geometry)(3).kv)
    with pytest.raises(ValueError, match="either input embeddings or layer prefixes"):
        backbone(ids, mask, prompt=both)
