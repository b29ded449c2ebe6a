"""Serving K prompt artifacts from one frozen backbone: a prompt bank's mixed batches against the alternatives.

    python benchmarks/serving.py                        # MiniLM, 8 artifacts, 512 requests (2 CPU cores: 10-20 min)
    python benchmarks/serving.py --readme               # the same, and rewrite the section in benchmarks/README.md
    python benchmarks/serving.py --quick --model tiny_bert   # the smoke configuration (its test)

Eight artifacts are made without training (seeded random prompt and head weights, exported as `ptrain export`
exports them): synthetic-NER copies (`task.name=ner_0..`) and RTE / CB classification on the fixture files of
`ptrain.testing.fixtures`, with prompt / ptv1 / ptv2 prompts of different lengths and depths (`SPECS`). A seeded
stream of requests, interleaved over the 8 tasks, with lengths drawn to match the real dev files (`LENGTHS`), is
served five ways, all on the same features (tokenisation is done once, untimed), under `torch.inference_mode`:

- (m) the bank's mixed batches: B consecutive requests in arrival order, whatever their tasks, one `forward_rows`
  call each (one backbone pass, a prompt per row);
- (m+b) the same with length bucketing: each window of `--window` arrival-order requests sorted by length before
  it is cut into batches of B (what a server with a short queue can do; less padding, still mixed tasks);
- (s) single-task batches: the same batches of (m), same rows and padding, each run under ONE task's prompt (the
  task rotating over the batches), so (m) / (s) is the cost of giving every row its own prompt and nothing else;
- (g) grouped: each task's requests in arrival order, in batches of B of that task only, through the same bank;
- (p) HF PEFT's way: one base model, every artifact a PEFT adapter, requests served in arrival order with
  `set_adapter` whenever the next request's task differs (a batch = consecutive requests of one task, at most B),
  then the task's head. PEFT refuses to mix adapter types in one `PeftModel`, so the prefix artifacts (ptv2) are
  `PrefixTuningConfig` adapters of one `PeftModel` and the input-prompt artifacts (prompt, and ptv1 counted as
  prompt tuning of its materialised prompt) `PromptTuningConfig` adapters of a second one on the same base model.
  PEFT's prefixes have no depth limit: a depth-limited ptv2 artifact runs as a full-depth prefix of its length (a
  few more attention columns than the bank computes for it; its outputs are then not compared).

Each round visits the variants in a fresh seeded order and times one whole pass over the requests each (after
`--warmup` untimed batches of every variant); tables show the median over `--repeats` rounds, ratios are medians
of per-round ratios. Rows per second count requests. Memory: the bytes of the tensors the bank holds (backbone
parameters and buffers, each task's materialised prompt and head) for K = 1 and K = 8, and the process's resident
set before and after `PromptBank.load` of K artifacts, each K in a fresh process (`malloc_trim` before reading).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/serving.py` puts benchmarks/ first, not the repository
    sys.path.insert(0, str(ROOT))

from benchmarks._markdown import README, table  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
MiB, KiB = 2**20, 2**10
BEGIN, END = "<!-- serving:start -->", "<!-- serving:end -->"
HEADING = "Serving: a prompt bank's mixed batches"


@dataclass(frozen=True)
class Spec:
    """One artifact of the bank: task family, method, prompt length and prefix depth."""

    name: str
    task: str  # ner | rte | cb
    method: str  # prompt | ptv1 | ptv2
    length: int
    layers: str | None = None  # ptv2 only: None = every layer, "upper" / "lower" = that half of the layers
    extra: tuple[str, ...] = ()

    def describe(self, num_layers: int) -> str:
        depth = ""
        if self.method == "ptv2":
            chosen = _layers(self.layers, num_layers)
            depth = ", all layers" if chosen is None else f", layers {chosen[0]}-{chosen[-1]}"
        return f"{self.method} P={self.length}{depth}"


SPECS: tuple[Spec, ...] = (
    Spec("ner_0", "ner", "ptv2", 16),
    Spec("ner_1", "ner", "prompt", 20),
    Spec("ner_2", "ner", "ptv1", 8),
    Spec("ner_3", "ner", "ptv2", 4, layers="upper"),
    Spec("rte_0", "rte", "ptv2", 20),
    Spec("rte_1", "rte", "prompt", 8),
    Spec("cb_0", "cb", "ptv1", 16, extra=("method.encoder=mlp",)),
    Spec("cb_1", "cb", "ptv2", 8, layers="lower"),
)

#: Request lengths in tokens (special tokens included) by task family: (median, 90th percentile) of the MiniLM
#: tokenisation of the real dev files in shared/data (CoNLL-2003 dev sentences 16 / 42; RTE val premise +
#: hypothesis 53 / 134, hypothesis alone 10 / 16; CB val 84 / 161, hypothesis 8 / 12), drawn log-normally and
#: cut to the task's max_length (64 for synthetic NER, 128 for RTE and CB), as truncation would.
#: the same eight tasks, each with the same prompt shape (ptv2, P=16, every layer: one recipe for every task, the
#: common deployment): what a mixed batch costs when no row pays for another row's wider prompt
UNIFORM_SPECS: tuple[Spec, ...] = tuple(Spec(s.name, s.task, "ptv2", 16) for s in SPECS)
SPEC_SETS = {"mixed": SPECS, "uniform": UNIFORM_SPECS}

LENGTHS = {"ner": (16, 42), "rte": (53, 134), "cb": (84, 161)}
HYPOTHESIS = {"rte": (10, 16), "cb": (8, 12)}


def _layers(which: str | None, num_layers: int) -> list[int] | None:
    if which is None:
        return None
    half = num_layers // 2
    return list(range(half, num_layers)) if which == "upper" else list(range(max(half, 1)))


# ---- artifacts ---------------------------------------------------------------------------------------------
def build_artifacts(model: str, out: Path, specs: Sequence[Spec] = SPECS) -> list[Path]:
    """The artifacts of `specs` on `model`, exported under `out`: what tests/_artifact_utils.make_artifact makes
    (a model built from the real configs, its prompt and head given seeded random weights of unit scale, then
    `export_model`), with the backbone loaded once for all of them."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from ptrain.artifact import backbone_identity, export_model
    from ptrain.backbones import load_backbone
    from ptrain.heads import build_head
    from ptrain.methods import build_prompt
    from ptrain.model import PromptedModel
    from ptrain.testing.fixtures import write_superglue

    data = out / "data"
    for family in ("rte", "cb"):
        if not (data / family / "train.jsonl").exists():
            write_superglue(family, data / family)
    backbone = tokenizer = identity = None
    paths = []
    with initialize_config_dir(config_dir=str(ROOT / "ptrain" / "conf"), version_base="1.3"):
        configs = [compose("train", overrides=_overrides(model, spec, out, data)) for spec in specs]
    for index, (spec, cfg) in enumerate(zip(specs, configs)):
        container = OmegaConf.to_container(cfg, resolve=True)
        if backbone is None:
            model_cfg = dict(container["model"])
            model_cfg.update(shift_positions=True, lm_head=False, dropout_impl="torch")
            backbone, tokenizer = load_backbone(model_cfg)
            identity = backbone_identity(backbone, tokenizer, container["model"])
        method = container["method"]
        if spec.method == "ptv2":
            method["layers"] = _layers(spec.layers, backbone.geometry.num_layers)
            container["method"] = method
        task = instantiate(cfg.task, _convert_="all")
        prompt = build_prompt(method, backbone, tokenizer)
        head = build_head(task.head_kind, backbone.geometry.hidden_size, task.num_labels, 0.0,
                          task.pooling or backbone.default_pooling)
        prompted = PromptedModel(backbone, head, prompt, train_backbone=False)
        generator = torch.Generator().manual_seed(index)
        with torch.no_grad():
            for module in (prompted.prompt, prompted.head):
                for parameter in module.parameters():
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
        prompted.eval()
        paths.append(export_model(out / spec.name / "artifact", container, task, prompted, tokenizer, identity))
    return paths


def _overrides(model: str, spec: Spec, out: Path, data: Path) -> list[str]:
    overrides = [f"model={model}", f"method={spec.method}", f"method.length={spec.length}", "logger=none",
                 f"run_dir={out / spec.name / 'run'}", f"task.name={spec.name}", *spec.extra]
    if spec.task == "ner":
        return [*overrides, "task=synthetic_ner", "task.n_train=16", "task.n_dev=8", "task.n_test=8",
                f"task.data_dir={data / 'ner'}"]
    return [*overrides, f"task={spec.task}", f"task.data_dir={data / spec.task}"]


# ---- requests ----------------------------------------------------------------------------------------------
def _lognormal(rng: random.Random, median: float, p90: float) -> float:
    return median * math.exp(rng.gauss(0.0, math.log(p90 / median) / 1.2816))


def make_requests(bank: Any, n: int, seed: int) -> list[tuple[str, Any]]:
    """`n` requests, n / K of each task, in a seeded shuffled order; words are single word-piece vocabulary words,
    so a request of W words is W tokens (plus the special tokens)."""
    rng = random.Random(seed)
    vocab = sorted(t for t in bank.tokenizer.get_vocab() if t.isalpha() and t.islower() and len(t) >= 3)
    names = list(bank.tasks)
    order = [names[i % len(names)] for i in range(n)]
    rng.shuffle(order)
    requests = []
    for name in order:
        family = name.split("_")[0]
        limit = bank.tasks[name].task.max_length
        total = int(min(max(_lognormal(rng, *LENGTHS[family]), 5), limit))
        if family == "ner":
            requests.append((name, {"tokens": rng.choices(vocab, k=total - 2)}))
        else:
            hyp = int(min(max(_lognormal(rng, *HYPOTHESIS[family]), 2), total - 6))
            premise = total - 3 - hyp
            requests.append((name, {"premise": " ".join(rng.choices(vocab, k=premise)),
                                    "hypothesis": " ".join(rng.choices(vocab, k=hyp))}))
    return requests


# ---- the PEFT peer -----------------------------------------------------------------------------------------
class PeftServer:
    """Every artifact as an HF PEFT adapter on one base model; `set_adapter` per change of task."""

    def __init__(self, bank: Any) -> None:
        import peft
        import torch

        from ptrain.backbones import load_backbone

        model_cfg = dict(next(iter(bank.tasks.values())).artifact.meta["model"])
        model_cfg.update(shift_positions=True, lm_head=False, dropout_impl="torch")
        base = load_backbone(model_cfg)[0].model.eval()
        geometry = bank.backbone.geometry
        self.models: dict[str, Any] = {}  # task -> the PeftModel holding its adapter
        self.strip: dict[str, int] = {}  # task -> virtual positions PEFT returns in front of the real ones
        self.full_depth: dict[str, bool] = {}
        wrappers: dict[str, Any] = {}
        for name, entry in bank.tasks.items():
            fixed = entry.prompt
            if fixed.embeds is not None:
                kind, length = "prompt", fixed.embeds.shape[1]
                config = peft.PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=length)
                weight = fixed.embeds[0]
                self.full_depth[name] = True
            else:
                kind, length = "prefix", fixed.prefix_length
                config = peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=length,
                                                 prefix_projection=False)
                width = geometry.num_kv_heads * geometry.head_dim
                blocks = []
                for layer in range(geometry.num_layers):  # PEFT's layout: [l0 key, l0 value, l1 key, ...] per token
                    pair = fixed.kv.get(layer)
                    for tensor in (pair or (None, None)):
                        blocks.append(torch.zeros(length, width) if tensor is None
                                      else tensor[0].permute(1, 0, 2).reshape(length, width))
                weight = torch.cat(blocks, dim=1)
                self.full_depth[name] = len(fixed.kv) == geometry.num_layers
            if kind not in wrappers:
                wrappers[kind] = peft.get_peft_model(base, config, adapter_name=name)
            else:
                wrappers[kind].add_adapter(name, config)
            model = wrappers[kind]
            with torch.no_grad():
                model.prompt_encoder[name].embedding.weight.copy_(weight)
            self.models[name] = model.eval()
            self.strip[name] = length if kind == "prompt" else 0
        self.heads = {name: entry.head for name, entry in bank.tasks.items()}
        self.pad_id = bank.tokenizer.pad_token_id or 0
        self.current: dict[int, str] = {}
        self.switches = 0

    def activate(self, name: str) -> None:
        model = self.models[name]
        if self.current.get(id(model)) != name:
            model.set_adapter(name, inference_mode=True)
            self.current[id(model)] = name
            self.switches += 1

    def forward(self, name: str, features: Sequence[dict]) -> Any:
        """Head outputs [rows, ...] for features of one task (one PEFT forward pass)."""
        self.activate(name)
        ids, mask, types = pad(features, self.pad_id)
        out = self.models[name](input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        return self.heads[name](out[:, self.strip[name]:], mask)


def pad(features: Sequence[dict], pad_id: int) -> tuple[Any, Any, Any]:
    import torch

    length = max(len(f["input_ids"]) for f in features)

    def rows(key: str, fill: int) -> Any:
        return torch.tensor([list(f[key]) + [fill] * (length - len(f[key])) for f in features])

    types = rows("token_type_ids", 0) if all("token_type_ids" in f for f in features) else None
    return rows("input_ids", pad_id), rows("attention_mask", 0), types


# ---- setup and the variants ---------------------------------------------------------------------------------
@dataclass
class Setup:
    bank: Any
    peft: PeftServer
    requests: list[tuple[str, Any]]
    features: list[dict]
    paths: list[Path]
    batches: dict[str, list[tuple[list[str], list[dict]]]]  # variant -> [(row task names, features)]
    single_names: list[str]  # (s): the task whose prompt batch j runs under


def make_batches(setup_requests: list[tuple[str, Any]], features: list[dict], batch: int, window: int,
                 names: list[str]) -> tuple[dict, list[str]]:
    idx = list(range(len(features)))
    chunks = [idx[s:s + batch] for s in range(0, len(idx), batch)]
    bucketed = []
    for w in range(0, len(idx), window):
        block = sorted(idx[w:w + window], key=lambda i: len(features[i]["input_ids"]))
        bucketed += [block[s:s + batch] for s in range(0, len(block), batch)]
    grouped = []
    for name in names:
        mine = [i for i in idx if setup_requests[i][0] == name]
        grouped += [mine[s:s + batch] for s in range(0, len(mine), batch)]
    runs: list[list[int]] = []
    for i in idx:
        if runs and setup_requests[runs[-1][0]][0] == setup_requests[i][0] and len(runs[-1]) < batch:
            runs[-1].append(i)
        else:
            runs.append([i])

    def as_batches(groups: list[list[int]]) -> list[tuple[list[str], list[dict]]]:
        return [([setup_requests[i][0] for i in g], [features[i] for i in g]) for g in groups]

    single_names = [names[j % len(names)] for j in range(len(chunks))]
    return ({"m": as_batches(chunks), "mb": as_batches(bucketed), "s": as_batches(chunks), "g": as_batches(grouped),
             "p": as_batches(runs)}, single_names)


def setup(args: argparse.Namespace) -> Setup:
    from ptrain.bank import PromptBank

    paths = build_artifacts(args.model, args.out / f"serving-{args.model}-{args.specs}", SPEC_SETS[args.specs])
    bank = PromptBank.load(paths)
    requests = make_requests(bank, args.requests, args.seed)
    features = [bank.encode(name, raw) for name, raw in requests]
    batches, single_names = make_batches(requests, features, args.batch, args.window, list(bank.tasks))
    return Setup(bank, PeftServer(bank), requests, features, paths, batches, single_names)


VARIANTS = {
    "m": "(m) bank, mixed batches (arrival order)",
    "mb": "(m+b) bank, mixed batches, length-bucketed windows",
    "s": "(s) bank, single-task batches (the rows of (m), one prompt per batch)",
    "g": "(g) bank, grouped per task (batches of one task)",
    "p": "(p) HF PEFT, set_adapter per task change",
}


def run_variant(name: str, st: Setup, limit: int | None = None) -> list[Any]:
    """One pass of variant `name` over its batches (the first `limit` only when given); the head outputs."""
    outputs: list[Any] = []
    batches = st.batches[name][:limit] if limit is not None else st.batches[name]
    for j, (names, feats) in enumerate(batches):
        if name == "s":
            outputs += st.bank.forward_rows([st.single_names[j]] * len(feats), feats)
        elif name == "p":
            outputs += list(st.peft.forward(names[0], feats))
        else:
            outputs += st.bank.forward_rows(names, feats)
    return outputs


def count_switches(st: Setup) -> int:
    """`set_adapter` calls in one (p) pass (each PeftModel keeps its active adapter between calls)."""
    active: dict[int, str] = {}
    switches = 0
    for names, _ in st.batches["p"]:
        model = id(st.peft.models[names[0]])
        if active.get(model) != names[0]:
            active[model] = names[0]
            switches += 1
    return switches


def check_outputs(st: Setup, rows: int = 16) -> dict[str, float]:
    """Largest difference, over the first `rows` requests, between each variant's output for a row and the output
    of the task it ran under alone on that row (a one-row `forward_rows`). (p) is compared on full-depth artifacts'
    single-segment rows only: PEFT's prompt-learning forward drops `token_type_ids` ("not supported for parameter
    efficient tuning"), so its sentence-pair outputs differ from the model's by design."""
    import torch

    width = len(st.batches["m"][0][1])
    limit = math.ceil(rows / width)
    diffs = {"m": 0.0, "s": 0.0, "p": 0.0}
    with torch.inference_mode():
        outputs = {"m": run_variant("m", st, limit=limit), "s": run_variant("s", st, limit=limit)}
        for i in range(min(rows, len(outputs["m"]))):
            name, feature = st.requests[i][0], st.features[i]
            for variant, task in (("m", name), ("s", st.single_names[i // width])):
                alone = st.bank.forward_rows([task], [feature])[0]
                diffs[variant] = max(diffs[variant], _diff(outputs[variant][i], alone))
            if st.peft.full_depth[name] and not any(feature.get("token_type_ids") or [0]):
                alone = st.bank.forward_rows([name], [feature])[0]
                diffs["p"] = max(diffs["p"], _diff(st.peft.forward(name, [feature])[0], alone))
    return diffs


def _diff(a: Any, b: Any) -> float:
    """Max |a - b| over the positions both have (a padded row's token logits are longer than the row alone)."""
    if a.dim() >= 2 and a.shape[0] != b.shape[0]:
        n = min(a.shape[0], b.shape[0])
        a, b = a[:n], b[:n]
    return float((a - b).abs().max())


def padded_positions(st: Setup, name: str) -> float:
    """Mean positions per row that pass through every layer: padded real length + input-prompt columns."""
    total = rows = 0
    for j, (names, feats) in enumerate(st.batches[name]):
        used = [st.single_names[j]] if name == "s" else sorted(set(names))
        widths = [st.bank.tasks[n].prompt.input_length for n in used]
        total += len(feats) * (max(len(f["input_ids"]) for f in feats) + max(widths))
        rows += len(feats)
    return total / rows


def prefix_columns(st: Setup, name: str) -> float:
    """Mean prefix key columns per row and layer-with-a-prefix: the widest prefix its batch holds."""
    total = rows = 0
    for j, (names, feats) in enumerate(st.batches[name]):
        used = [st.single_names[j]] if name == "s" else sorted(set(names))
        total += len(feats) * max(st.bank.tasks[n].prompt.prefix_length for n in used)
        rows += len(feats)
    return total / rows


# ---- memory ------------------------------------------------------------------------------------------------
def tensor_bytes(bank: Any, names: Sequence[str] | None = None) -> dict[str, int]:
    """Bytes of the tensors the bank holds: backbone (unique storages), and each task's prompt and head."""
    names = list(bank.tasks) if names is None else list(names)
    seen, backbone = set(), 0
    for tensor in [*bank.backbone.parameters(), *bank.backbone.buffers()]:
        key = tensor.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            backbone += tensor.untyped_storage().nbytes()
    prompts = heads = 0
    for name in names:
        entry = bank.tasks[name]
        p = entry.prompt
        if p is not None:
            prompts += 0 if p.embeds is None else p.embeds.numel() * p.embeds.element_size()
            prompts += sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in p.kv.values())
        heads += sum(t.numel() * t.element_size() for t in entry.head.state_dict().values())
    return {"backbone": backbone, "prompts": prompts, "heads": heads}


def _rss() -> int:
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    from benchmarks.speed import _status_kib

    return _status_kib("VmRSS") * 1024


def probe_rss(paths: Sequence[str], threads: int) -> dict[str, Any]:
    """In a fresh process: resident set after imports, and after `PromptBank.load` of the artifacts."""
    import importlib

    import torch

    torch.set_num_threads(threads)
    from hydra.utils import get_class
    from transformers import AutoModel

    from ptrain.artifact import read_artifact
    from ptrain.bank import PromptBank

    # import what loading will import (the model class, the task classes), so "before" holds the code and
    # "after" only what the K artifacts bring: weights, tokenizer, task objects, prompts, heads
    for meta in {read_artifact(p).meta["task"]["config"]["_target_"] for p in paths}:
        get_class(meta)
    importlib.import_module(AutoModel._model_mapping[type(_config(paths[0]))].__module__)
    before = _rss()
    bank = PromptBank.load(paths)
    with torch.no_grad():  # page in memory-mapped weights
        for tensor in [*bank.backbone.parameters(), *bank.backbone.buffers()]:
            tensor.float().sum()
    after = _rss()
    return {"k": len(paths), "rss_before": before, "rss_after": after, **tensor_bytes(bank)}


def _config(path: str) -> Any:
    from transformers import AutoConfig

    from ptrain.artifact import read_artifact
    from ptrain.backbones import resolve_path

    model = read_artifact(path).meta["model"]
    if model.get("config"):
        spec = dict(model["config"])
        return AutoConfig.for_model(spec.pop("model_type"), **spec)
    return AutoConfig.from_pretrained(resolve_path(model["pretrained"]))


def run_probe(paths: Sequence[Path], threads: int) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--probe-rss", *map(str, paths),
               "--threads", str(threads)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    for line in done.stdout.splitlines():
        if line.startswith("PROBE "):
            return json.loads(line[6:])
    raise RuntimeError(f"RSS probe failed ({done.returncode}): {done.stderr[-2000:]}")


# ---- measuring ---------------------------------------------------------------------------------------------
def measure(st: Setup, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    names = [v for v in VARIANTS if v in args.variants]
    samples: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for name in names:
            run_variant(name, st, limit=args.warmup)
        order = list(names)
        rng = random.Random(args.seed)
        for round_ in range(args.repeats):
            rng.shuffle(order)
            for name in order:
                start = time.perf_counter()
                run_variant(name, st)
                samples[name].append(time.perf_counter() - start)
            print(f"round {round_ + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    n = len(st.requests)
    rows = {}
    for name in names:
        seconds = samples[name]
        rows[name] = {"label": VARIANTS[name], "batches": len(st.batches[name]), "seconds": seconds,
                      "median_s": statistics.median(seconds), "rows_per_s": n / statistics.median(seconds),
                      "best_rows_per_s": n / min(seconds), "positions": padded_positions(st, name),
                      "prefix_columns": prefix_columns(st, name)}

    def ratio(a: str, b: str) -> float | None:  # median over rounds of (rows/s of a) / (rows/s of b)
        if a not in samples or b not in samples:
            return None
        return statistics.median(tb / ta for ta, tb in zip(samples[a], samples[b]))

    for name in names:
        rows[name]["x_single"] = ratio(name, "s")
        rows[name]["x_peft"] = ratio(name, "p")
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm", help="a ptrain/conf/model name (minilm, tiny_bert, ...)")
    parser.add_argument("--requests", type=int, default=512, help="requests in the stream (a multiple of 8 keeps "
                        "the tasks balanced)")
    parser.add_argument("--batch", type=int, default=32, help="batch size B")
    parser.add_argument("--window", type=int, default=None, help="(m+b) bucketing window in requests (default 4B)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (medians over them)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches of every variant first")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the CPU count)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--specs", choices=sorted(SPEC_SETS), default="mixed",
                        help="mixed: eight prompt shapes (methods, lengths, depths); uniform: ptv2 P=16 for all")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    parser.add_argument("--no-rss", action="store_true", help="skip the resident-set probes (fresh processes)")
    parser.add_argument("--quick", action="store_true", help="tiny configuration for the smoke test: 48 requests, "
                        "B = 8, 1 round, no warm-up")
    parser.add_argument("--out", type=Path, default=OUT, help="artifacts and serving-<model>.md/.json go here")
    parser.add_argument("--readme", nargs="?", type=Path, const=README, default=None,
                        help=f"rewrite the {BEGIN} section of this file (default benchmarks/README.md)")
    parser.add_argument("--probe-rss", nargs="+", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.batch, args.repeats, args.warmup = 48, 8, 1, 0
    args.window = args.window or 4 * args.batch
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    args.threads = args.threads or os.cpu_count() or 1
    return args


# ---- output ------------------------------------------------------------------------------------------------
def render(results: dict[str, Any]) -> str:
    c, rows = results["config"], results["variants"]
    lines = [f"**{c['model']}** on {c['device_name']} ({c['threads']} threads, `torch.set_num_threads`) · "
             f"{c['tasks']} tasks, {c['requests']} requests interleaved (seeded shuffle), mean "
             f"{c['mean_tokens']:.0f} tokens (max {c['max_tokens']}) · B = {c['batch']}, bucketing window "
             f"{c['window']} · {c['repeats']} rounds after {c['warmup']} warm-up batches each, medians · float32, "
             f"`torch.inference_mode` · torch {c['torch']}, transformers {c['transformers']}, peft {c['peft']} · "
             f"{c['date']} · load average {c['loadavg_start']} → {c['loadavg_end']}", ""]
    lines.append("Artifacts: " + "; ".join(f"`{name}` {what}" for name, what in c["artifacts"].items()) + ".")
    lines.append("")

    def fmt(x: float | None, digits: int = 2) -> str:
        return "–" if x is None else f"{x:.{digits}f}"

    body = []
    for r in rows.values():
        body.append([r["label"], r["batches"], f"{r['rows_per_s']:,.1f}", f"{r['best_rows_per_s']:,.1f}",
                     f"{1000 * r['median_s'] / c['requests']:.2f}", f"{r['positions']:.0f}",
                     f"{r['prefix_columns']:.0f}", fmt(r["x_single"]), fmt(r["x_peft"])])
    lines.append(table(["variant", "batches", "rows/s (median)", "rows/s (best)", "ms/row", "positions/row",
                        "prefix keys/row", "× (s)", "× (p)"], body))
    lines += ["", "positions/row: padded real tokens + input-prompt columns, what every layer computes per row; "
              "prefix keys/row: prefix columns each attention of a prefixed layer adds.", ""]
    checks = results.get("checks")
    if checks:
        lines.append(f"Outputs against each task alone (one-row `forward_rows`), max |Δ| over the first "
                     f"{checks['rows']} requests: (m) {checks['m']:.1e}, (s) {checks['s']:.1e}, "
                     f"(p) full-depth artifacts, single-segment rows (PEFT drops token_type_ids) {checks['p']:.1e}. "
                     f"PEFT set_adapter calls in one (p) pass: "
                     f"{c['peft_switches']}.")
        lines.append("")
    mem = results["memory"]
    mem_rows = []
    for m in mem:
        total = m["backbone"] + m["prompts"] + m["heads"]
        rss = "–" if m.get("rss_before") is None else f"{m['rss_before'] / MiB:.0f}"
        rss_after = "–" if m.get("rss_after") is None else f"{m['rss_after'] / MiB:.0f}"
        delta = "–" if m.get("rss_before") is None else f"{(m['rss_after'] - m['rss_before']) / MiB:.0f}"
        mem_rows.append([m["k"], f"{m['backbone'] / MiB:.1f}", f"{m['prompts'] / KiB:.1f}", f"{m['heads'] / KiB:.1f}",
                         f"{total / MiB:.2f}", f"{(m['k'] * m['backbone'] + m['prompts'] + m['heads']) / MiB:.1f}",
                         rss, rss_after, delta])
    lines.append("Memory (bytes of the tensors; resident set in a fresh process per K, after `malloc_trim`):")
    lines.append("")
    lines.append(table(["K artifacts", "backbone MiB", "prompts KiB", "heads KiB", "bank MiB",
                        "K backbones MiB (one model per task)", "RSS before load MiB", "RSS after load MiB",
                        "RSS Δ MiB"], mem_rows))
    lines.append("")
    target_rows = []
    m = rows.get("m", {})
    if m.get("x_single") is not None:
        target_rows.append(["(m) rows/s >= 0.9 × (s)", f"{m['x_single']:.2f}", "yes" if m["x_single"] >= 0.9
                            else "**no**"])
    if m.get("x_peft") is not None:
        target_rows.append(["(m) rows/s >= 3 × (p)", f"{m['x_peft']:.2f}", "yes" if m["x_peft"] >= 3 else "**no**"])
    mb = rows.get("mb", {})
    if mb.get("x_peft") is not None:
        target_rows.append(["(m+b) rows/s >= 3 × (p) (not the target's variant: bucketed)", f"{mb['x_peft']:.2f}",
                            "yes" if mb["x_peft"] >= 3 else "**no**"])
    if target_rows:
        lines += ["Targets:", "", table(["target", "measured", "met"], target_rows), ""]
    return "\n".join(lines)


def replace_marked(path: Path, specs: str, body: str) -> None:
    """Rewrite what lies between the serving markers of this artifact set; append the heading and markers if
    absent (`mixed`: `serving:start`/`end`; `uniform`: `serving-uniform:start`/`end`)."""
    begin, end_marker = (BEGIN, END) if specs == "mixed" else (f"<!-- serving-{specs}:start -->",
                                                               f"<!-- serving-{specs}:end -->")
    heading = HEADING if specs == "mixed" else f"{HEADING}, {specs} prompt shapes"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{begin}\n{body.rstrip()}\n{end_marker}"
    start, end = text.find(begin), text.find(end_marker)
    if start >= 0 and end > start:
        text = text[:start] + block + text[end + len(end_marker):]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n{block}\n"
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def quiet() -> None:
    """A benchmark's console: no warnings, no HF load reports or bars, ptrain's errors only. Process-wide, so
    only the script's own entry calls it (a test that calls `main` keeps its logging)."""
    import logging

    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("ptrain").setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.probe_rss:
        print("PROBE " + json.dumps(probe_rss(args.probe_rss, args.threads)), flush=True)
        return {}
    import peft
    import transformers

    from benchmarks.speed import _cpu_name, _loadavg

    started = time.perf_counter()
    loadavg_start = _loadavg()
    st = setup(args)
    built_s = time.perf_counter() - started
    lengths = [len(f["input_ids"]) for f in st.features]
    num_layers = st.bank.backbone.geometry.num_layers
    specs = {s.name: s for s in SPEC_SETS[args.specs]}
    config = {"model": args.model, "device": "cpu", "device_name": _cpu_name(), "threads": torch.get_num_threads(),
              "tasks": len(st.bank.tasks), "requests": len(st.requests), "batch": args.batch, "window": args.window,
              "repeats": args.repeats, "warmup": args.warmup, "seed": args.seed,
              "mean_tokens": statistics.mean(lengths), "max_tokens": max(lengths),
              "artifacts": {n: specs[n].describe(num_layers) + f" ({st.bank.tasks[n].head_kind} head)"
                            for n in st.bank.tasks},
              "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "loadavg_start": loadavg_start}
    checks = check_outputs(st)
    checks["rows"] = 16
    rows = measure(st, args)
    config["peft_switches"] = count_switches(st)
    memory = []
    for k in (1, len(st.paths)):
        entry = {"k": k, **tensor_bytes(st.bank, list(st.bank.tasks)[:k])}
        if not args.no_rss:
            probe = run_probe(st.paths[:k], args.threads)
            entry.update(rss_before=probe["rss_before"], rss_after=probe["rss_after"])
        memory.append(entry)
    config["loadavg_end"] = _loadavg()
    wall = time.perf_counter() - started
    command = "python benchmarks/serving.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {"config": config, "variants": rows, "checks": checks, "memory": memory,
               "setup_s": round(built_s, 1), "wall_s": round(wall, 1), "command": command.strip()}
    text = render(results)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"serving-{args.model}-{args.specs}-cpu"
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
    (args.out / f"{stem}.md").write_text(text)
    if args.readme is not None:
        replace_marked(args.readme, args.specs, f"`{results['command']}` ({wall:.0f} s, of which {built_s:.0f} s "
                                                f"building the artifacts, the bank and the PEFT peer)\n\n{text}")
    results["setup"] = st
    results["table"] = text
    return results


if __name__ == "__main__":
    quiet()
    main()
