"""Training-step time, throughput and peak memory of every method on one frozen backbone, against fine-tuning
and HF PEFT, plus the end-to-end cost of `python train.py`.

    python benchmarks/speed.py --model minilm                 # CPU figures (about 5 minutes on 2 cores)
    python benchmarks/speed.py --model roberta-large-config   # on a GPU: bf16 autocast, MFU against --peak-tflops
    python benchmarks/speed.py --model minilm --e2e --readme  # + end-to-end timings, README sections rewritten

How it measures (see benchmarks/README.md for the reasoning):
- Every variant is built on the same backbone weights (`load_backbone` of the same `ptrain/conf/model` entry, or a
  seeded config) and trained on the same synthetic batch (fixed length, no padding, so all do the same work).
- A step is what training does: forward, loss, backward, AdamW over the trainable parameters only (fused when
  every trainable parameter is on one CUDA or CPU device, as in `PromptTuningModule`), zero_grad. ptrain
  variants draw CPU dropout masks as `train.py` does (`model.dropout_impl`, fast by default); the PEFT peers
  keep torch's dropout, as PEFT ships.
- Variants are interleaved in one process: each round visits them in a fresh random order and times `--steps`
  steps each, so drift of a shared machine falls on all of them alike; tables show medians over all steps.
- Peak memory is taken in a fresh subprocess per variant (GPU: `torch.cuda.max_memory_allocated`; CPU: the
  kernel's resident-set high-water mark, reset after imports via /proc/self/clear_refs, minus the resident set
  before the model was built), so one variant's freed memory never hides another's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/speed.py` puts benchmarks/ first, not the repository
    sys.path.insert(0, str(ROOT))

from benchmarks._markdown import README, replace_section, table  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
MiB = 2**20

#: Backbones built from a config with seeded random weights: speed does not depend on the weight values, so a
#: RoBERTa-large-sized encoder needs no download.
CONFIG_MODELS: dict[str, dict[str, Any]] = {
    "roberta-large-config": dict(model_type="roberta", vocab_size=50265, hidden_size=1024, num_hidden_layers=24,
                                 num_attention_heads=16, intermediate_size=4096, max_position_embeddings=514,
                                 type_vocab_size=1, pad_token_id=1, layer_norm_eps=1e-5),
    "bert-large-config": dict(model_type="bert", vocab_size=30522, hidden_size=1024, num_hidden_layers=24,
                              num_attention_heads=16, intermediate_size=4096, max_position_embeddings=512),
    "bert-base-config": dict(model_type="bert", vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                             num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512),
}

#: Dense bf16 peak of known GPUs (TFLOP/s, no sparsity), for model FLOPs utilisation; `--peak-tflops` overrides.
GPU_PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0}


@dataclass(frozen=True)
class Variant:
    """One row of the table: a ptrain method config (with overrides) or an HF PEFT peer."""

    name: str
    label: str
    method: str | None = None  # ptrain/conf/method/<method>.yaml for ptrain variants
    overrides: dict[str, Any] = field(default_factory=dict)
    peft: str | None = None  # "prefix" | "prompt" for the HF PEFT peers
    peer: str | None = None  # the PEFT variant doing the same work, for the throughput ratio
    patch: str | None = None  # a benchmark-local prototype of a core change (see PATCHES)


VARIANTS: tuple[Variant, ...] = (
    Variant("finetune", "finetune", "finetune"),
    Variant("head", "head (linear probe)", "head"),
    Variant("prompt", "prompt (input, P)", "prompt", peer="peft_prompt"),
    Variant("ptv1", "ptv1 (LSTM encoder, P)", "ptv1"),
    Variant("ptv2", "ptv2 (all layers, P)", "ptv2", peer="peft_prefix"),
    Variant("ptv2_upper", "ptv2 (upper half, P)", "ptv2", {"layers": "upper"}),
    Variant("ptv2_nodrop", "ptv2, backbone_dropout=false", "ptv2", {"backbone_dropout": False},
            peer="peft_prefix_eval"),
    Variant("peft_prefix", "PEFT prefix tuning (P)", peft="prefix"),
    Variant("peft_prefix_eval", "PEFT prefix tuning, backbone in eval mode", peft="prefix", patch="eval_backbone"),
    Variant("peft_prompt", "PEFT prompt tuning (P)", peft="prompt"),
)
#: Opt-in rows (`--methods`): more settings, and prototypes of possible core changes measured without touching
#: ptrain/ (`patch`, applied to the built model only).
EXTRA_VARIANTS: tuple[Variant, ...] = (
    Variant("head_nodrop", "head, backbone_dropout=false", "head", {"backbone_dropout": False}),
    Variant("prompt_nodrop", "prompt, backbone_dropout=false", "prompt", {"backbone_dropout": False},
            peer="peft_prompt"),
    Variant("ptv2_upper_nodrop", "ptv2 (upper half), backbone_dropout=false", "ptv2",
            {"layers": "upper", "backbone_dropout": False}),
    Variant("ptv2_noattndrop", "ptv2, attention-probability dropout off (prototype)", "ptv2",
            patch="no_attention_dropout", peer="peft_prefix"),
    Variant("ptv2_nodrop_eager", "ptv2, backbone_dropout=false, eager attention", "ptv2",
            {"backbone_dropout": False}, patch="eager_attention", peer="peft_prefix_eval"),
    Variant("ptv2_nodrop_noprefixdrop", "ptv2, backbone_dropout=false, prefix dropout 0", "ptv2",
            {"backbone_dropout": False, "dropout": 0.0}, peer="peft_prefix_eval"),
    Variant("finetune_foreach", "finetune, unfused (foreach) AdamW", "finetune", patch="foreach_adamw"),
    Variant("ptv2_torchdrop", "ptv2, model.dropout_impl=torch", "ptv2", {"dropout_impl": "torch"},
            peer="peft_prefix"),
    Variant("finetune_torchdrop", "finetune, model.dropout_impl=torch", "finetune", {"dropout_impl": "torch"}),
)
ALL_VARIANTS = {v.name: v for v in (*VARIANTS, *EXTRA_VARIANTS)}


# ---- building -----------------------------------------------------------------------------------------------
def model_config(name: str) -> dict[str, Any]:
    """A `ptrain/conf/model/<name>.yaml` entry, or one of CONFIG_MODELS (random weights, no download)."""
    if name in CONFIG_MODELS:
        return {"name": name, "pretrained": None, "tokenizer": "bundled:minilm", "init_seed": 0,
                "attn_implementation": "sdpa", "dtype": None, "config": dict(CONFIG_MODELS[name])}
    path = ROOT / "ptrain" / "conf" / "model" / f"{name}.yaml"
    if not path.exists():
        known = sorted([p.stem for p in (ROOT / "ptrain" / "conf" / "model").glob("*.yaml")] + list(CONFIG_MODELS))
        raise SystemExit(f"--model {name}: no ptrain/conf/model/{name}.yaml; choose one of {', '.join(known)}")
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def method_config(variant: Variant, length: int | None, num_layers: int) -> dict[str, Any]:
    """The method's own defaults from ptrain/conf/method, then the variant's overrides (and `--length`)."""
    from omegaconf import OmegaConf

    path = ROOT / "ptrain" / "conf" / "method" / f"{variant.method}.yaml"
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    cfg.update(variant.overrides)
    if length is not None and "length" in cfg:
        cfg["length"] = length
    if cfg.get("layers") == "upper":
        cfg["layers"] = list(range(num_layers // 2, num_layers))
    return cfg


@dataclass
class Built:
    """A variant ready to step: its module, a logits function, the optimizer over what trains."""

    variant: Variant
    module: Any
    logits: Callable[[Any, Any], Any]
    optimizer: Any
    trainable: int
    total: int
    virtual_input: int  # virtual tokens placed before the input (prompt, ptv1, PEFT prompt tuning)
    prefix_layers: dict[int, int]  # layer -> prefix length
    trains_backbone: bool
    layers: list[Any]  # the backbone's transformer layers, for the gradient-depth check
    note: str = ""


class _PeftTokens:
    """Wraps a PEFT model + the same task head as ptrain's variants, so PEFT rows do the same work."""

    def __init__(self, peft_model: Any, head: Any, strip: int) -> None:
        self.peft_model, self.head, self.strip = peft_model, head, strip

    def __call__(self, input_ids: Any, attention_mask: Any) -> Any:
        hidden = self.peft_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden[:, self.strip:], attention_mask)


def _encoder_layers(hf_model: Any, n: int) -> list[Any]:
    import torch

    encoder = getattr(hf_model, "encoder", None)
    if encoder is not None and hasattr(encoder, "layer"):
        return list(encoder.layer)
    for module in hf_model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return list(module)
    raise RuntimeError(f"cannot find the {n} transformer layers of {type(hf_model).__name__}")


def build(variant: Variant, args: argparse.Namespace) -> Built:
    """Same weights for every variant: each loads the same pretrained files or the same seeded config."""
    import torch

    from ptrain.backbones import load_backbone
    from ptrain.heads import build_head

    torch.manual_seed(0)
    base = model_config(args.model)
    num_labels = args.num_labels
    device = torch.device(args.device)
    if variant.peft is None:
        from ptrain.methods import build_prompt, trains_backbone
        from ptrain.model import PromptedModel

        if variant.patch == "eager_attention":
            base = {**base, "attn_implementation": "eager"}
        if "dropout_impl" in variant.overrides:
            base = {**base, "dropout_impl": variant.overrides["dropout_impl"]}
        backbone, tokenizer = load_backbone(dict(base))
        cfg = method_config(variant, args.length, backbone.geometry.num_layers)
        backbone.shift_positions = bool(cfg.get("shift_positions", True))
        prompt = build_prompt(cfg, backbone, tokenizer)
        geometry = backbone.geometry
        head = build_head(args.head, geometry.hidden_size, num_labels, 0.1, backbone.default_pooling)
        model = PromptedModel(backbone, head, prompt, train_backbone=trains_backbone(cfg),
                              backbone_dropout=bool(cfg.get("backbone_dropout", True)))
        if base.get("dropout_impl", "fast") == "fast":  # as ptrain.train.build does
            from ptrain import dropout

            dropout.install(model)
        model.check_position_budget(args.seq)
        model.to(device).train()
        if variant.patch == "no_attention_dropout":  # what a finer knob than backbone_dropout would do
            for sub in backbone.modules():
                if type(sub).__name__.endswith("SelfAttention") and isinstance(getattr(sub, "dropout", None),
                                                                              torch.nn.Dropout):
                    sub.dropout.p = 0.0
        virtual_input = prompt.length if prompt is not None and prompt.kind == "input" else 0
        prefix_layers = ({i: prompt.length for i in prompt.layer_ids}
                         if prompt is not None and prompt.kind == "prefix" else {})
        logits = lambda ids, mask: model(ids, mask, None)  # noqa: E731
        layers = _encoder_layers(backbone.model, geometry.num_layers)
        module, lr, trains = model, float(cfg["lr"]), trains_backbone(cfg)
    else:
        import peft

        backbone, _ = load_backbone({**base, "dropout_impl": "torch"})  # PEFT as shipped: torch's dropout
        hf = backbone.model
        # PEFT gets stock transformers attention, not ptrain's wrapper
        hf.set_attn_implementation(base.get("attn_implementation") or "sdpa")
        geometry = backbone.geometry
        # the same P as the ptrain method doing the same work
        length = method_config(Variant("", "", "ptv2" if variant.peft == "prefix" else "prompt"), args.length,
                               geometry.num_layers)["length"]
        if variant.peft == "prefix":
            config = peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=length)
        else:
            config = peft.PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=length)
        peer = peft.get_peft_model(hf, config)
        head = build_head(args.head, geometry.hidden_size, num_labels, 0.1, backbone.default_pooling)
        module = torch.nn.ModuleDict({"peft": peer, "head": head}).to(device).train()
        if variant.patch == "eval_backbone":
            peer.get_base_model().eval()
        logits = _PeftTokens(peer, head, 0 if variant.peft == "prefix" else length)
        virtual_input = length if variant.peft == "prompt" else 0
        prefix_layers = {i: length for i in range(geometry.num_layers)} if variant.peft == "prefix" else {}
        layers = _encoder_layers(peer.get_base_model(), geometry.num_layers)
        lr, trains = 1e-2, False
    params = [p for p in module.parameters() if p.requires_grad]
    # as PromptTuningModule: fused AdamW when every trainable parameter is on one CUDA or CPU device
    fused = len({p.device.type for p in params}) == 1 and variant.patch != "foreach_adamw"
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=fused or None)
    return Built(variant, module, logits, optimizer, sum(p.numel() for p in params),
                 sum(p.numel() for p in module.parameters()), virtual_input, prefix_layers, trains, layers)


# ---- stepping -----------------------------------------------------------------------------------------------
def make_batch(args: argparse.Namespace, vocab_size: int) -> dict[str, Any]:
    """Fixed length, no padding: every variant sees exactly the same real tokens."""
    import torch

    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(1000, min(vocab_size, 30000), (args.batch, args.seq), generator=g)
    shape = (args.batch, args.seq) if args.head == "token" else (args.batch,)
    labels = torch.randint(0, args.num_labels, shape, generator=g)
    return {"input_ids": ids.to(args.device), "attention_mask": torch.ones_like(ids).to(args.device),
            "labels": labels.to(args.device)}


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def step(built: Built, batch: dict[str, Any], args: argparse.Namespace) -> tuple[float, float, float]:
    """One optimizer step; returns (forward+loss, backward, optimizer) seconds of wall time."""
    import torch
    import torch.nn.functional as F

    autocast = torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16,
                              enabled=args.dtype == "bfloat16")
    t0 = time.perf_counter()
    with autocast:
        logits = built.logits(batch["input_ids"], batch["attention_mask"])
    loss = F.cross_entropy(logits.float().flatten(0, -2), batch["labels"].flatten())
    _sync(args.device)
    t1 = time.perf_counter()
    loss.backward()
    _sync(args.device)
    t2 = time.perf_counter()
    built.optimizer.step()
    built.optimizer.zero_grad(set_to_none=True)
    _sync(args.device)
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def gradient_depth(built: Built, batch: dict[str, Any], args: argparse.Namespace) -> int | None:
    """The lowest layer whose output is part of the autograd graph (None: backward never enters the backbone).

    Backward runs exactly through layers whose outputs require grad, so a prefix on the upper half must give
    the index of its lowest prefix layer here: every layer below costs nothing in backward.
    """
    import torch

    seen: list[bool] = [False] * len(built.layers)

    def hook(index: int) -> Callable:
        def record(_module: Any, _inputs: Any, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            seen[index] = bool(out.requires_grad)
        return record

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(built.layers)]
    try:
        with torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16,
                            enabled=args.dtype == "bfloat16"):
            built.logits(batch["input_ids"], batch["attention_mask"])
    finally:
        for handle in handles:
            handle.remove()
    return next((i for i, s in enumerate(seen) if s), None)


#: names of the query/key/value projections (BERT/RoBERTa/DeBERTa, Llama/Qwen/Mistral)
QKV_NAMES = ("query", "key", "value", "query_proj", "key_proj", "value_proj", "q_proj", "k_proj", "v_proj")


def step_flops(built: Built, args: argparse.Namespace, lowest: int | None) -> float:
    """Model FLOPs of one step, counting only the work the method needs (documented in README.md).

    Per layer l with linear weights N_l, T' = real + virtual input tokens, S_l = T' + prefix length keys:
    forward 2·N_l·T' + 4·T'·S_l·H; backward to the inputs (layers at or above the lowest layer in the graph)
    2·N_l·T' + 8·T'·S_l·H; weight gradients (fine-tuning only) 2·N_l·T'. Times the batch size. For fine-tuning
    this is the familiar 6·N per token plus attention; a frozen backbone does not pay the weight-gradient third.
    The lowest layer in the graph of a frozen backbone without an input prompt gets its input from frozen
    layers, so it has no query/key/value input gradients and no gradient of the queries (2·N_qkv·T' and
    2·T'·S_l·H fewer): only the keys and values carry the prefix's gradient.
    """
    import torch

    B, t = args.batch, args.seq + built.virtual_input
    total = 0.0
    for index, layer in enumerate(built.layers):
        n = sum(m.weight.numel() for m in layer.modules() if isinstance(m, torch.nn.Linear))
        hidden = next(m.weight.shape[1] for m in layer.modules() if isinstance(m, torch.nn.Linear))
        s = t + built.prefix_layers.get(index, 0)
        total += 2 * n * t + 4 * t * s * hidden
        if lowest is not None and index >= lowest:
            total += 2 * n * t + 8 * t * s * hidden
            if index == lowest and not built.trains_backbone and not built.virtual_input:
                qkv = sum(m.weight.numel() for name, m in layer.named_modules()
                          if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in QKV_NAMES)
                total -= 2 * qkv * t + 2 * t * s * hidden
        if built.trains_backbone:
            total += 2 * n * t
    return B * total


# ---- memory probe (subprocess) ------------------------------------------------------------------------------
def _status_kib(field_name: str) -> int:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM to the current resident set."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def probe_memory(args: argparse.Namespace) -> dict[str, Any]:
    """Runs in a fresh process: build one variant, take `--probe-steps` steps, report its peak."""
    import peft  # noqa: F401  (imported before the baseline, like everything the variants import)
    import torch

    from ptrain.backbones import load_backbone  # noqa: F401

    variant = ALL_VARIANTS[args.probe]
    cuda = args.device.startswith("cuda")
    gc.collect()
    rss0 = _status_kib("VmRSS") * 1024
    built = build(variant, args)
    batch = make_batch(args, _vocab(built))
    with torch.no_grad():  # page in memory-mapped weights, so "after build" counts them
        for tensor in [*built.module.parameters(), *built.module.buffers()]:
            tensor.float().sum()
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        resident = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        method = "torch.cuda.max_memory_allocated"
    else:
        resident = _status_kib("VmRSS") * 1024 - rss0
        method = "VmHWM after clear_refs" if _reset_peak_rss() else "ru_maxrss (includes model loading)"
    for _ in range(args.probe_steps):
        step(built, batch, args)
    if cuda:
        peak = torch.cuda.max_memory_allocated()
    elif method.startswith("VmHWM"):
        peak = _status_kib("VmHWM") * 1024 - rss0
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
    return {"variant": variant.name, "peak_bytes": int(peak), "resident_bytes": int(resident), "method": method}


def _vocab(built: Built) -> int:
    base = built.module.backbone if hasattr(built.module, "backbone") else built.module["peft"].get_base_model()
    config = base.config if hasattr(base, "config") else base.model.config
    return int(config.vocab_size)


def run_probe(name: str, argv: Sequence[str]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--probe", name]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    for line in done.stdout.splitlines():
        if line.startswith("PROBE "):
            return json.loads(line[6:])
    raise RuntimeError(f"memory probe for {name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


# ---- end to end ---------------------------------------------------------------------------------------------
def end_to_end(args: argparse.Namespace) -> dict[str, float]:
    """Wall times of the real entry point, each in a fresh interpreter (see README.md for what each includes)."""
    import tempfile

    env = {**os.environ, "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ptrain-e2e-") as tmp:
        def timed(key: str, cmd: list[str], extra_env: dict[str, str] | None = None) -> float:
            start = time.perf_counter()
            done = subprocess.run(cmd, cwd=ROOT, env={**env, **(extra_env or {})}, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
            results[key] = round(wall, 2)
            return wall

        py = sys.executable
        timed("compose_config_s", [py, "train.py", "--cfg", "job"])
        for case, overrides in (("cold", ["logger=none"]), ("warm", ["logger=none"]), ("warm_wandb", [])):
            marker = Path(tmp) / f"first-step-{case}.json"
            start = time.time()
            timed(f"first_step_process_{case}_s",
                  [py, str(ROOT / "benchmarks" / "_first_step.py"), str(marker), *overrides,
                   f"hydra.run.dir={tmp}/first-{case}", "trainer.enable_progress_bar=false"],
                  {"PTRAIN_CACHE": f"{tmp}/cache"})
            info = json.loads(marker.read_text())
            results[f"to_first_step_{case}_s"] = round(info["first_step_start"] - start, 2)
            results[f"first_step_done_{case}_s"] = round(info["first_step_end"] - start, 2)
            del results[f"first_step_process_{case}_s"]
        if args.e2e_full:
            timed("train_py_default_s", [py, "train.py", f"hydra.run.dir={tmp}/default",
                                         "trainer.enable_progress_bar=false"], {"PTRAIN_CACHE": f"{tmp}/cache"})
            # what that run scored, so the README's example output can be checked against a command
            run = json.loads((Path(tmp) / "default" / "results.json").read_text())
            scores = {k: round(v, 4) for k, v in run["metrics"].items() if k in ("val/f1", "test/f1")}
            results["default_run_scores"] = {**scores, "trainable_params": run["trainable_params"]}
    return results


# ---- reporting ----------------------------------------------------------------------------------------------
def _median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _iqr(xs: Sequence[float]) -> float:
    if len(xs) < 4:
        return max(xs) - min(xs) if xs else float("nan")
    q = statistics.quantiles(xs, n=4)
    return q[2] - q[0]


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Medians, ratios and target checks from the raw per-step samples."""
    rows = results["variants"]
    for row in rows.values():
        totals = [sum(s[:3]) for s in row["samples"]]
        row["ms"] = 1000 * _median(totals)
        row["min_ms"] = 1000 * min(totals)
        row["iqr_ms"] = 1000 * _iqr(totals)
        rounds: dict[int, list[float]] = {}
        for s in row["samples"]:
            rounds.setdefault(int(s[3]), []).append(sum(s[:3]))
        row["round_ms"] = {r: _median(v) for r, v in rounds.items()}
        row["fwd_ms"] = 1000 * _median([s[0] for s in row["samples"]])
        row["bwd_ms"] = 1000 * _median([s[1] for s in row["samples"]])
        row["opt_ms"] = 1000 * _median([s[2] for s in row["samples"]])
        row["tokens_per_s"] = results["config"]["batch"] * results["config"]["seq"] / (row["ms"] / 1000)
        row["tflops"] = row["flops"] / (row["ms"] / 1000) / 1e12
        peak = results["config"].get("peak_tflops")
        row["mfu"] = row["tflops"] / peak if peak else None
    ft = rows.get("finetune")
    for row in rows.values():
        row["x_finetune"] = _paired(row, ft) if ft else None
        row["flops_x_finetune"] = row["flops"] / ft["flops"] if ft else None
        peer = rows.get(row["peer"]) if row.get("peer") else None
        row["vs_peft"] = _paired(peer, row) if peer else None
        mem, ft_mem = row.get("memory"), (ft or {}).get("memory")
        row["mem_x_finetune"] = mem["peak_bytes"] / ft_mem["peak_bytes"] if mem and ft_mem else None
    results["targets"] = targets(results)
    return results


def _paired(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Median over rounds of a's time / b's time in the same round: the two ran back to back, so slow phases
    of a shared machine cancel in the ratio (falls back to the ratio of overall medians without rounds)."""
    common = sorted(set(a["round_ms"]) & set(b["round_ms"]))
    if not common:
        return a["ms"] / b["ms"]
    return _median([a["round_ms"][r] / b["round_ms"][r] for r in common])


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, checked on the default ptv2 row (and its backbone_dropout=false twin when run)."""
    rows, out = results["variants"], []
    for name in ("ptv2", "ptv2_nodrop"):
        row = rows.get(name)
        if row is None:
            continue
        peer = row.get("peer") or "peft_prefix"
        if row["x_finetune"] is not None:
            out.append({"target": f"{name} step time <= 0.65 x finetune (its model FLOPs are "
                                  f"{row['flops_x_finetune']:.2f} x finetune's)", "value": row["x_finetune"],
                        "ok": row["x_finetune"] <= 0.65})
            # the part of the time ratio the implementation controls: the same FLOPs per second as fine-tuning
            # (below 1 means the frozen path wastes time; the 0.65 target needs it at FLOPs ratio / 0.65)
            rate = row["flops_x_finetune"] / row["x_finetune"]
            out.append({"target": f"{name} model FLOP/s >= finetune's (needed for 0.65: "
                                  f"{row['flops_x_finetune'] / 0.65:.2f})", "value": rate, "ok": rate >= 1.0})
        if row["vs_peft"] is not None:
            out.append({"target": f"{name} throughput >= 1.15 x {peer} (same work)", "value": row["vs_peft"],
                        "ok": row["vs_peft"] >= 1.15})
        if row["mem_x_finetune"] is not None:
            out.append({"target": f"{name} peak memory <= 0.6 x finetune", "value": row["mem_x_finetune"],
                        "ok": row["mem_x_finetune"] <= 0.6})
    nodrop, shipped = rows.get("ptv2_nodrop"), rows.get("peft_prefix")
    if nodrop and shipped:  # ptrain's knob against PEFT as it is used (PEFT never touches module modes)
        ratio = _paired(shipped, nodrop)
        out.append({"target": "ptv2_nodrop throughput >= 1.15 x peft_prefix (PEFT as shipped: dropout on; "
                              "not the same work)", "value": ratio, "ok": ratio >= 1.15})
    upper = rows.get("ptv2_upper")
    if upper is not None:
        lowest = min(upper["prefix_layers"]) if upper["prefix_layers"] else None
        out.append({"target": "ptv2 upper half: no backward below its lowest prefix layer",
                    "value": f"graph from layer {upper['grad_from']}, lowest prefix layer {lowest}",
                    "ok": upper["grad_from"] == lowest})
        head, full = rows.get("head"), rows.get("ptv2")
        if head and full and full["bwd_ms"] > head["bwd_ms"]:
            share = (upper["bwd_ms"] - head["bwd_ms"]) / (full["bwd_ms"] - head["bwd_ms"])
            n_layers = results["config"]["num_layers"]
            expected = len(upper["prefix_layers"]) / n_layers
            out.append({"target": f"ptv2 upper half backward ~ {expected:.2f} of full-depth backward "
                                  "(above the head-only backward)", "value": share, "ok": share <= expected + 0.25})
    return out


def _fmt(value: Any, spec: str = ".2f", none: str = "–") -> str:
    return none if value is None else format(value, spec)


def _layers_text(row: dict[str, Any], n_layers: int) -> str:
    return "none" if row["grad_from"] is None else f"{row['grad_from']}–{n_layers - 1}"


def render(results: dict[str, Any]) -> str:
    c, rows = results["config"], results["variants"]
    n = c["num_layers"]
    lines = [
        f"**{c['model']}** on {c['device_name']} ({c['threads']} threads) · batch {c['batch']} × {c['seq']} tokens "
        f"(no padding) · {c['dtype']} · P = {c['length']} virtual tokens (the ptrain/conf/method defaults) · "
        f"{c['repeats']} interleaved rounds × {c['steps']} steps after {c['warmup']} warm-up · medians; ratios "
        "are medians of per-round ratios · "
        f"torch {c['torch']}, transformers {c['transformers']}, peft {c['peft']} · {c['date']}"
        + (f" · load average {c['loadavg_start']} → {c.get('loadavg_end')}" if c.get("loadavg_start") else ""),
        "",
    ]
    head = ["variant", "trainable params", "ms/step (IQR)", "min", "fwd", "bwd", "optim", "tokens/s",
            "× finetune time", "× finetune FLOPs", "× PEFT throughput", "backward through layers", "TFLOP/s"]
    if c.get("peak_tflops"):
        head.append("MFU")
    body = []
    for row in rows.values():
        cells = [row["label"], f"{row['trainable']:,}", f"{row['ms']:.0f} ({row['iqr_ms']:.0f})",
                 f"{row['min_ms']:.0f}",
                 f"{row['fwd_ms']:.0f}", f"{row['bwd_ms']:.0f}", f"{row['opt_ms']:.1f}",
                 f"{row['tokens_per_s']:,.0f}", _fmt(row["x_finetune"]), _fmt(row.get("flops_x_finetune")),
                 _fmt(row["vs_peft"]) + (f" (vs {row['peer']})" if row["vs_peft"] is not None else ""),
                 _layers_text(row, n), f"{row['tflops']:.3g}"]
        if c.get("peak_tflops"):
            cells.append(f"{100 * row['mfu']:.1f}%")
        body.append(cells)
    lines += [table(head, body), ""]
    if any(r.get("memory") for r in rows.values()):
        method = next(r["memory"]["method"] for r in rows.values() if r.get("memory"))
        mem_rows = [[r["label"], f"{r['memory']['peak_bytes'] / MiB:,.0f}",
                     f"{r['memory']['resident_bytes'] / MiB:,.0f}",
                     f"{(r['memory']['peak_bytes'] - r['memory']['resident_bytes']) / MiB:,.0f}",
                     _fmt(r["mem_x_finetune"])] for r in rows.values() if r.get("memory")]
        lines += [f"Peak memory ({method}; one fresh process per variant, {c['probe_steps']} steps):", "",
                  table(["variant", "peak MiB", "after build MiB", "training MiB", "× finetune peak"], mem_rows), ""]
    if results.get("targets"):
        lines += ["Targets:", "", table(["target", "measured", "met"], [
            [t["target"], t["value"] if isinstance(t["value"], str) else f"{t['value']:.2f}",
             "yes" if t["ok"] else "**no**"] for t in results["targets"]]), ""]
    if results.get("e2e"):
        e = results["e2e"]
        labels = {
            "compose_config_s": "`python train.py --cfg job` (imports + compose the config, no training)",
            "to_first_step_cold_s": "start → first training step begins (logger=none, cold cache: data "
                                    "generated and tokenised)",
            "first_step_done_cold_s": "start → first training step done (logger=none, cold cache)",
            "to_first_step_warm_s": "start → first training step begins (logger=none, warm tokenisation cache)",
            "first_step_done_warm_s": "start → first training step done (logger=none, warm cache)",
            "to_first_step_warm_wandb_s": "start → first training step begins (default logger: W&B offline, warm)",
            "first_step_done_warm_wandb_s": "start → first training step done (default logger, warm)",
            "train_py_default_s": "`python train.py` (default config, to the end of the test pass)",
        }
        scores = e.get("default_run_scores")
        timings = {k: v for k, v in e.items() if k != "default_run_scores"}
        lines += ["End to end (fresh interpreter each; default config: minilm, synthetic_ner, ptv2):", "",
                  table(["measurement", "wall s"], [[labels.get(k, k), f"{v:.1f}"] for k, v in timings.items()]),
                  ""]
        if scores:
            lines += ["The default run scored " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()
                                                           if k != "trainable_params")
                      + f" with {scores['trainable_params']:,} trainable parameters.", ""]
    return "\n".join(lines).rstrip() + "\n"


# ---- driver -------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=None, help="ptrain/conf/model name or one of: " + ", ".join(CONFIG_MODELS)
                   + " (default: minilm on CPU, roberta-large-config on a GPU)")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (cuda when available)")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 (autocast; default: bfloat16 on GPU)")
    p.add_argument("--batch", type=int, default=None, help="default 8 on CPU, 32 on GPU")
    p.add_argument("--seq", type=int, default=None, help="real tokens per example; default 128 on CPU, 256 on GPU")
    p.add_argument("--length", type=int, default=None, help="virtual tokens P (default: ptrain/conf/method, 16)")
    p.add_argument("--head", default="token", choices=("token", "sequence"), help="task head (token = NER-like)")
    p.add_argument("--num-labels", type=int, default=9)
    p.add_argument("--steps", type=int, default=None, help="timed steps per variant per round (1 CPU, 10 GPU)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds (8 CPU, 5 GPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per variant first (1 CPU, 3 GPU)")
    p.add_argument("--methods", default=None, help="comma list of variants; default: "
                   + ",".join(v.name for v in VARIANTS) + "; extra: " + ",".join(v.name for v in EXTRA_VARIANTS))
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--peak-tflops", type=float, default=None, help="GPU dense bf16 peak for MFU (default: by "
                   "GPU name, " + ", ".join(f"{k} {v}" for k, v in GPU_PEAK_TFLOPS.items()) + ")")
    p.add_argument("--no-memory", action="store_true", help="skip the per-variant memory subprocesses")
    p.add_argument("--probe-steps", type=int, default=2, help="steps taken by each memory probe")
    p.add_argument("--e2e", action="store_true", help="also time the entry point (compose, first step)")
    p.add_argument("--e2e-full", action="store_true", help="with --e2e: also the default `python train.py` run")
    p.add_argument("--seed", type=int, default=0, help="seed of the interleaving order")
    p.add_argument("--out", type=Path, default=OUT, help="where speed-<model>-<device>.md/.json go")
    p.add_argument("--readme", type=Path, nargs="?", const=README, default=None,
                   help="rewrite this README's speed section (default path: benchmarks/README.md)")
    p.add_argument("--from-json", type=Path, default=None, metavar="JSON",
                   help="re-render a saved speed-*.json (tables, --readme section) without measuring")
    p.add_argument("--probe", default=None, help=argparse.SUPPRESS)  # internal: memory probe of one variant
    args = p.parse_args(argv)
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = args.device.startswith("cuda")
    args.model = args.model or ("roberta-large-config" if gpu else "minilm")
    args.dtype = args.dtype or ("bfloat16" if gpu else "float32")
    defaults = {"batch": (32, 8), "seq": (256, 128), "steps": (10, 1), "repeats": (5, 8), "warmup": (3, 1)}
    for key, (on_gpu, on_cpu) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, on_gpu if gpu else on_cpu)
    names = [v.name for v in VARIANTS] if not args.methods else [m.strip() for m in args.methods.split(",")]
    unknown = [m for m in names if m not in ALL_VARIANTS]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; known: {', '.join(ALL_VARIANTS)}")
    args.variants = names
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def _forwarded_argv(args: argparse.Namespace) -> list[str]:
    """The settings a memory-probe subprocess needs to build the same variant on the same batch."""
    argv = ["--model", args.model, "--device", args.device, "--dtype", args.dtype, "--batch", str(args.batch),
            "--seq", str(args.seq), "--head", args.head, "--num-labels", str(args.num_labels),
            "--probe-steps", str(args.probe_steps)]
    if args.length:
        argv += ["--length", str(args.length)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    return argv


def _environment(args: argparse.Namespace, num_layers: int) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    if args.device.startswith("cuda"):
        name = torch.cuda.get_device_name()
        peak = args.peak_tflops or next((v for k, v in GPU_PEAK_TFLOPS.items() if k in name), None)
    else:
        name = _cpu_name()
        peak = args.peak_tflops
    return {"model": args.model, "device": args.device, "device_name": name, "dtype": args.dtype,
            "batch": args.batch, "seq": args.seq, "head": args.head,
            "length": args.length or method_config(Variant("", "", "ptv2"), None, num_layers)["length"],
            "steps": args.steps, "repeats": args.repeats, "warmup": args.warmup, "probe_steps": args.probe_steps,
            "threads": torch.get_num_threads(), "num_layers": num_layers, "peak_tflops": peak,
            "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "loadavg_start": _loadavg()}


def _loadavg() -> float | None:
    """The 1-minute load average: on a machine shared with other jobs, numbers are only as quiet as this."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    args = parse_args(argv)
    if args.probe:
        print("PROBE " + json.dumps(probe_memory(args)), flush=True)
        return {}
    if args.from_json is not None:
        results = summarise(json.loads(args.from_json.read_text()))
        publish(results, args, results.get("command", "python benchmarks/speed.py"))
        return results
    started = time.perf_counter()
    built = {name: build(ALL_VARIANTS[name], args) for name in args.variants}
    first = next(iter(built.values()))
    batch = make_batch(args, _vocab(first))
    results: dict[str, Any] = {"config": _environment(args, len(first.layers)), "variants": {}}
    for name, b in built.items():
        lowest = gradient_depth(b, batch, args)
        results["variants"][name] = {
            "label": b.variant.label, "peer": b.variant.peer if b.variant.peer in built else None,
            "trainable": b.trainable, "total": b.total, "grad_from": lowest,
            "prefix_layers": sorted(b.prefix_layers), "flops": step_flops(b, args, lowest), "samples": [],
        }
    for b in built.values():
        for _ in range(args.warmup):
            step(b, batch, args)
    order = list(built)
    rng = random.Random(args.seed)
    for round_ in range(args.repeats):
        rng.shuffle(order)
        for name in order:
            for _ in range(args.steps):
                results["variants"][name]["samples"].append((*step(built[name], batch, args), round_))
        print(f"round {round_ + 1}/{args.repeats} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    del built
    gc.collect()
    if not args.no_memory:
        forwarded = _forwarded_argv(args)
        for name in args.variants:
            results["variants"][name]["memory"] = run_probe(name, forwarded)
    print(f"memory probes done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    results["benchmark_s"] = round(time.perf_counter() - started, 1)
    results["config"]["loadavg_end"] = _loadavg()
    if args.e2e:
        results["e2e"] = end_to_end(args)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    results["command"] = "python benchmarks/speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    summarise(results)
    publish(results, args, results["command"])
    return results


def publish(results: dict[str, Any], args: argparse.Namespace, command: str) -> None:
    """Print the tables, write speed-<model>-<device>.md/.json under --out, and the README section if asked."""
    text = render(results)
    print(text)
    c = results["config"]
    stem = f"speed-{c['model']}-{c['device'].split(':')[0]}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
    (args.out / f"{stem}.md").write_text(text)
    if args.readme is not None:
        timing = f"speed and memory {results['benchmark_s']:.0f} s" if "benchmark_s" in results else ""
        if results.get("e2e"):
            timing += f", end-to-end measurements {results['wall_s'] - results['benchmark_s']:.0f} s"
        body = f"`{command.strip()}` ({timing or str(results.get('wall_s', '?')) + ' s'})\n\n{text}"
        replace_section(args.readme, f"speed:{stem[6:]}", body, heading=f"{c['model']} on {c['device']}")


if __name__ == "__main__":
    main()
