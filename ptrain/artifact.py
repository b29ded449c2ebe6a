"""Prompt artifacts: a trained prompt as two files that load onto the frozen backbone later, anywhere.

`prompt.safetensors` holds tensors only: the materialised prompt (`prompt.embeds` [P, H] for input prompts, or
`prefix.<layer>.key` / `.value` [kv_heads, P, head_dim] per layer, after any reparameterisation), the head's weights
(`head.*`), the trainable prompt module where it is more than its materialised prompt (`module.*`: P-Tuning v1's
encoder, a prefix's reparameterisation MLP; a later run can start from it, `method.init_from`), and for `finetune`
the trained backbone (`backbone.*`).
`prompt.json` says what they are: method and its config, the task's config, head kind, pooling, label names,
`max_length`, the tokenizer's settings, the backbone's name with fingerprints of its weights and tokenizer, the
ptrain version, and the SHA-256 of the tensor file. Nothing is unpickled on load: safetensors and JSON only.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptrain.prompts.base import PromptModule, PromptOutput

log = logging.getLogger(__name__)

FORMAT = "ptrain-prompt"
FORMAT_VERSION = 1
TENSORS, META = "prompt.safetensors", "prompt.json"


class ArtifactError(ValueError):
    """A prompt artifact that cannot be used: missing, tampered, truncated, or for another backbone."""


# ---- fingerprints ------------------------------------------------------------------------------------------
def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 over every parameter and buffer of the frozen model (names, shapes, dtypes, bytes), 16 hex digits.

    Two loads of the same weights agree; a different checkpoint, size or dtype does not. MiniLM takes ~0.2 s.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 of the tokenizer's class, vocabulary and special tokens, 16 hex digits."""
    state = {"class": type(tokenizer).__name__, "vocab": sorted(tokenizer.get_vocab().items()),
             "special": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())}}
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()[:16]


def backbone_identity(backbone: nn.Module, tokenizer: Any, model_cfg: dict) -> dict:
    return {"name": model_cfg.get("name") or model_cfg.get("pretrained"), "model_type": backbone.config.model_type,
            "weights": weights_fingerprint(backbone.model), "tokenizer": tokenizer_fingerprint(tokenizer)}


# ---- the materialised prompt as a module ---------------------------------------------------------------
class FixedPrompt(PromptModule):
    """A materialised prompt (no reparameterisation left): what a deployment keeps per task.

    Built from an artifact's tensors; `forward(batch)` gives the same `PromptOutput` the trained module gave in
    eval mode, and `prompt_bytes()` is the size of those tensors.
    """

    def __init__(self, embeds: torch.Tensor | None = None,
                 kv: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        super().__init__()
        kv = kv or {}
        self.kind = "input" if embeds is not None else "prefix"
        self.layer_ids = sorted(kv)
        self.register_buffer("embeds", embeds, persistent=True)
        for layer, (key, value) in kv.items():
            self.register_buffer(f"key_{layer}", key)
            self.register_buffer(f"value_{layer}", value)
        self.length = embeds.shape[0] if embeds is not None else (next(iter(kv.values()))[0].shape[1] if kv else 0)

    @property
    def position_cost(self) -> int:
        return self.length if (self.embeds is not None or self.layer_ids) else 0

    def forward(self, batch_size: int) -> PromptOutput:
        embeds = None if self.embeds is None else self.embeds.unsqueeze(0).expand(batch_size, -1, -1)
        kv = {layer: (getattr(self, f"key_{layer}").unsqueeze(0).expand(batch_size, -1, -1, -1),
                      getattr(self, f"value_{layer}").unsqueeze(0).expand(batch_size, -1, -1, -1))
              for layer in self.layer_ids}
        return PromptOutput(embeds=embeds, kv=kv)


def materialise(prompt: PromptModule | None) -> dict[str, torch.Tensor]:
    """The eval-mode output of a prompt module as artifact tensors (one row; no batch axis)."""
    if prompt is None:
        return {}
    was_training = prompt.training
    prompt.eval()
    try:
        with torch.no_grad():
            out = prompt(1)
    finally:
        prompt.train(was_training)
    tensors = {}
    if out.embeds is not None:
        tensors["prompt.embeds"] = out.embeds[0]
    for layer, (key, value) in out.kv.items():
        tensors[f"prefix.{layer}.key"] = key[0]
        tensors[f"prefix.{layer}.value"] = value[0]
    return tensors


# ---- reading ------------------------------------------------------------------------------------------
@dataclass
class Artifact:
    """An artifact read from disk and checked (JSON parsed, file hash verified, tensors loaded)."""

    path: Path
    meta: dict
    tensors: dict[str, torch.Tensor] = field(repr=False)

    @property
    def name(self) -> str:
        return self.meta["task"]["name"]

    def fixed_prompt(self) -> FixedPrompt | None:
        embeds = self.tensors.get("prompt.embeds")
        layers = sorted({int(k.split(".")[1]) for k in self.tensors if k.startswith("prefix.")})
        if embeds is None and not layers:
            return None
        kv = {layer: (self.tensors[f"prefix.{layer}.key"], self.tensors[f"prefix.{layer}.value"]) for layer in layers}
        return FixedPrompt(embeds, kv)

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors under `prefix.` with the prefix removed (`head`, `module`, `backbone`)."""
        cut = len(prefix) + 1
        return {k[cut:]: v for k, v in self.tensors.items() if k.startswith(prefix + ".")}


def read_artifact(path: str | Path) -> Artifact:
    """Read and check an artifact directory; every failure is an `ArtifactError` naming the file and what is wrong."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    root = Path(path)
    meta_path, tensor_path = root / META, root / TENSORS
    for needed in (meta_path, tensor_path):
        if not needed.is_file():
            raise ArtifactError(f"{needed}: not found (a prompt artifact is a directory with {META} and {TENSORS}; "
                                "make one with `ptrain export RUN_DIR`)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{meta_path}: not valid JSON ({error})") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArtifactError(f"{meta_path}: field 'format' must be {FORMAT!r}; got "
                            f"{meta.get('format') if isinstance(meta, dict) else type(meta).__name__!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{meta_path}: field 'format_version' is {meta.get('format_version')!r}; this ptrain "
                            f"reads version {FORMAT_VERSION}")
    for key in ("method", "task", "head", "model", "backbone", "sha256"):
        if key not in meta:
            raise ArtifactError(f"{meta_path}: missing field {key!r}")
    data = tensor_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["sha256"]:
        raise ArtifactError(f"{tensor_path}: SHA-256 {digest[:16]}… differs from the {meta['sha256'][:16]}… that "
                            f"{META} records: the file was changed or cut short after export")
    try:
        tensors = load_tensors(data)
    except (SafetensorError, ValueError) as error:
        raise ArtifactError(f"{tensor_path}: not a readable safetensors file ({error})") from error
    return Artifact(root, meta, tensors)


def check_backbone(artifact: Artifact, backbone: nn.Module, tokenizer: Any, allow_mismatch: bool = False) -> None:
    """Refuse a backbone whose weights or tokenizer differ from the one the prompt was trained on."""
    want = artifact.meta["backbone"]
    have = {"weights": weights_fingerprint(backbone.model), "tokenizer": tokenizer_fingerprint(tokenizer)}
    differ = [key for key in ("weights", "tokenizer") if want.get(key) != have[key]]
    if not differ:
        return
    detail = "; ".join(f"{key}: artifact {want.get(key)} vs backbone {have[key]}" for key in differ)
    message = (f"{artifact.path}: trained on backbone {want.get('name')!r} ({want.get('model_type')}), which differs "
               f"from the one loaded ({backbone.config.model_type}): {detail}")
    if not allow_mismatch:
        raise ArtifactError(message + "; pass --allow-mismatch (allow_mismatch=True) for a deliberate transfer")
    log.warning("%s (allowed)", message)


# ---- a task model from an artifact ----------------------------------------------------------------------
def inference_task(meta: dict) -> Any:
    """The task object that encodes new inputs the way training did, without the training data.

    The task is rebuilt from its config with an empty temporary data directory (data paths belong to the machine
    that trained) and the label names recorded at export.
    """
    from hydra.utils import get_class, instantiate

    cfg = dict(meta["task"]["config"])
    scratch = tempfile.mkdtemp(prefix="ptrain-artifact-task-")
    cfg["data_dir"] = scratch
    target = get_class(cfg["_target_"])
    if "labels" in inspect.signature(target.__init__).parameters and meta["task"].get("labels"):
        cfg["labels"] = list(meta["task"]["labels"])
    return instantiate(cfg, _convert_="all")


def require_head(artifact: Artifact) -> None:
    """A task model needs the task: an artifact imported from a bare PEFT adapter has none."""
    if not artifact.meta.get("head") or not artifact.meta["task"].get("config"):
        raise ArtifactError(f"{artifact.path / META}: no task head (an adapter imported without ptrain's head); it "
                            "gives backbone states only: ptrain.peft_io.load_prompt loads its prompt on the backbone")


def build_head_from(artifact: Artifact) -> nn.Module:
    from ptrain.heads import build_head

    head_meta = artifact.meta["head"]
    head = build_head(head_meta["kind"], head_meta["hidden_size"], head_meta["num_labels"],
                      head_meta.get("dropout", 0.0), head_meta["pooling"])
    weights = artifact.group("head")
    try:
        head.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise ArtifactError(f"{artifact.path / TENSORS}: the head's tensors do not fit a {head_meta['kind']} head "
                            f"({error})") from error
    return head.eval()


def load_model(artifact: Artifact, backbone: nn.Module | None = None, tokenizer: Any = None,
               allow_mismatch: bool = False) -> tuple[Any, Any, Any]:
    """(task, PromptedModel, tokenizer) from an artifact: on `backbone` when given (a bank shares one), else on
    the backbone its `model` config names, loaded as training did."""
    from ptrain.backbones import load_backbone
    from ptrain.model import PromptedModel

    require_head(artifact)
    if backbone is None:
        model_cfg = dict(artifact.meta["model"])
        model_cfg.update(shift_positions=artifact.meta["method"].get("shift_positions", True),
                         lm_head=artifact.meta["head"]["kind"] in ("lm", "generate"), dropout_impl="torch")
        backbone, tokenizer = load_backbone(model_cfg)
        check_backbone(artifact, backbone, tokenizer, allow_mismatch)
        trained = artifact.group("backbone")
        if trained:  # finetune: the trained weights replace the frozen ones
            backbone.model.load_state_dict(trained, strict=True)
    else:
        check_backbone(artifact, backbone, tokenizer, allow_mismatch)
        if artifact.group("backbone"):
            raise ArtifactError(f"{artifact.path}: a finetune artifact carries its own backbone; it cannot share one")
    task = inference_task(artifact.meta)
    model = PromptedModel(backbone, build_head_from(artifact), artifact.fixed_prompt(), train_backbone=False)
    return task, model.eval(), tokenizer


# ---- writing ------------------------------------------------------------------------------------------
def write_artifact(out: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write both files through temporary names and rename them into place: a reader never sees half of one, and
    an existing artifact is replaced whole or not at all."""
    import os

    from safetensors.torch import save as save_tensors

    from ptrain.results import write_json_atomic

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    data = save_tensors({k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()})  # no shared storage
    meta = {**meta, "sha256": hashlib.sha256(data).hexdigest()}
    tmp = root / f".{TENSORS}.{os.getpid()}.tmp"
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(root / TENSORS)
    write_json_atomic(root / META, meta)
    return root


def artifact_meta(cfg: dict, task: Any, model: Any, tokenizer: Any, identity: dict) -> dict:
    import ptrain

    head = model.head
    pooling = getattr(head, "pooling", None)
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "ptrain_version": ptrain.__version__,
        "method": {k: v for k, v in cfg["method"].items()},
        "kind": None if model.prompt is None else model.prompt.kind,
        "task": {"name": task.name, "config": cfg["task"], "head_kind": task.head_kind, "labels": list(task.labels),
                 "max_length": task.max_length, "main_metric": task.main_metric},
        "head": {"kind": task.head_kind, "num_labels": task.num_labels, "pooling": pooling,
                 "hidden_size": model.backbone.geometry.hidden_size, "dropout": 0.0},
        "model": cfg["model"],
        "tokenizer": {"name_or_path": getattr(tokenizer, "name_or_path", None), "padding_side": tokenizer.padding_side,
                      "class": type(tokenizer).__name__, "vocab_size": len(tokenizer)},
        "backbone": identity,
        "geometry": vars(model.backbone.geometry),
        "prompt_bytes": 0 if model.prompt is None else model.prompt.prompt_bytes(),
    }


def reconstructible(prompt: PromptModule) -> bool:
    """True when the trainable module is its materialised prompt laid out otherwise (a soft prompt, a prefix
    without reparameterisation): the artifact then stores it once, and `module_state` rebuilds the module."""
    from ptrain.prompts import DeepPrefix, SoftPrompt

    return isinstance(prompt, SoftPrompt) or (isinstance(prompt, DeepPrefix) and prompt.transform is None)


def module_state(artifact: Artifact) -> dict[str, torch.Tensor]:
    """The trainable prompt module's state: stored (`module.*`), or rebuilt from the materialised prompt for a
    soft prompt (`embedding.weight` = the embeddings) or an unreparameterised prefix (`embedding.weight` = the
    per-layer keys and values in the flat layout [P, layer0 key, layer0 value, layer1 key, ...])."""
    stored = artifact.group("module")
    if stored:
        return stored
    if "prompt.embeds" in artifact.tensors:
        return {"embedding.weight": artifact.tensors["prompt.embeds"]}
    layers = sorted({int(k.split(".")[1]) for k in artifact.tensors if k.startswith("prefix.")})
    if not layers:
        return {}
    blocks = [artifact.tensors[f"prefix.{layer}.{part}"] for layer in layers for part in ("key", "value")]
    stacked = torch.stack(blocks)  # [2L, kv_heads, P, head_dim]
    return {"embedding.weight": stacked.permute(2, 0, 1, 3).reshape(stacked.shape[2], -1)}


def export_model(out: str | Path, cfg: dict, task: Any, model: Any, tokenizer: Any, identity: dict) -> Path:
    """An artifact from a trained `PromptedModel`; `identity` is the frozen backbone's (taken before any
    fine-tuning changed it)."""
    tensors = materialise(model.prompt)
    tensors.update({f"head.{k}": v for k, v in model.head.state_dict().items()})
    if model.prompt is not None and not reconstructible(model.prompt):
        tensors.update({f"module.{k}": v for k, v in model.prompt.state_dict().items()})
    if model.train_backbone:
        tensors.update({f"backbone.{k}": v for k, v in model.backbone.model.state_dict().items()})
    return write_artifact(out, tensors, artifact_meta(cfg, task, model, tokenizer, identity))


def export_run(run_dir: str | Path, out: str | Path | None = None, checkpoint: str = "best") -> Path:
    """`ptrain export RUN_DIR`: the run's best checkpoint (or `last`) as an artifact in `out` (default
    RUN_DIR/artifact). The model is rebuilt from the run's resolved config, as `ptrain.train.build` built it."""
    from omegaconf import OmegaConf

    from ptrain.results import read_results
    from ptrain.train import build

    run_dir = Path(run_dir)
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise ArtifactError(f"{results_path}: not found; export needs a finished run (its results.json and "
                            "checkpoints/)")
    results = read_results(results_path)
    ckpt = _checkpoint(run_dir, results, checkpoint)
    cfg = results["config"]
    task, model, tokenizer = build(OmegaConf.create(cfg))
    identity = backbone_identity(model.backbone, tokenizer, cfg["model"])
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]  # tensors only: nothing runs
    own = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    missing = [k for k, p in model.named_parameters() if p.requires_grad and k not in own]
    if missing:
        raise ArtifactError(f"{ckpt}: lacks trained weights {missing[:3]} for method {cfg['method']['name']}")
    model.load_state_dict(own, strict=False)
    model.eval()
    return export_model(out or run_dir / "artifact", cfg, task, model, tokenizer, identity)


def _checkpoint(run_dir: Path, results: dict, which: str) -> Path:
    if which == "last":
        path = run_dir / "checkpoints" / "last.ckpt"
    elif which == "best":
        best = results.get("best_checkpoint")
        path = Path(best) if best else run_dir / "checkpoints" / "last.ckpt"
        if not path.is_absolute() and not path.exists():
            path = run_dir / "checkpoints" / path.name
        if not path.exists():  # the run directory was moved: find the best checkpoint by name
            found = sorted((run_dir / "checkpoints").glob("best-*.ckpt"))
            path = found[-1] if found else path
    else:
        path = Path(which)
    if not path.is_file():
        raise ArtifactError(f"{path}: checkpoint not found (export reads checkpoints/best-*.ckpt or last.ckpt)")
    return path


__all__ = ["Artifact", "ArtifactError", "FixedPrompt", "export_model", "export_run", "load_model",
           "read_artifact", "weights_fingerprint"]
