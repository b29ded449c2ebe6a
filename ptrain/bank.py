"""A prompt bank: K prompt artifacts on ONE frozen backbone, a batch of rows from any of their tasks in one pass.

Each row of a batch carries its own prompt or prefix (`ptrain.prompts.mixed.stack_prompts`): the backbone runs
once for the whole mixed batch, and only the task heads (a linear layer each) run per task, on their rows' states.
Generation tasks decode step by step with their own prompt, one task at a time (the decoding loop is HF's).
Rows give what each task gives alone (tests/test_bank.py: within 1e-5).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptrain.artifact import Artifact, ArtifactError, check_backbone, inference_task, read_artifact, require_head
from ptrain.prompts.base import PromptOutput
from ptrain.prompts.mixed import stack_prompts

log = logging.getLogger(__name__)


class InputError(ValueError):
    """A request input that a task cannot take (missing or mistyped field, too long); names the field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class BankTask:
    """One task of the bank: its artifact, the task object that encodes inputs, its head and its prompt row."""

    name: str
    artifact: Artifact
    task: Any
    head: nn.Module
    prompt: PromptOutput | None

    @property
    def head_kind(self) -> str:
        return self.artifact.meta["head"]["kind"]

    @property
    def labels(self) -> list[str]:
        return list(self.artifact.meta["task"].get("labels") or [])

    def describe(self) -> dict:
        meta = self.artifact.meta
        return {"task": self.name, "method": meta["method"]["name"], "head": self.head_kind, "labels": self.labels,
                "max_length": meta["task"]["max_length"], "prompt_bytes": meta.get("prompt_bytes", 0),
                "input_fields": input_fields(self.task)}


def input_fields(task: Any) -> list[str]:
    """The raw fields a request gives for this task (a plain string is taken for a single field)."""
    if hasattr(task, "text_fields") and task.head_kind != "generate":
        fields = list(task.text_fields)
        if not fields and hasattr(task, "template"):  # a verbaliser names its fields in its template
            import string

            fields = [name for _, name, _, _ in string.Formatter().parse(task.template) if name]
        return fields
    if task.head_kind == "generate":
        return ["source"]
    if is_qa(task):
        return ["question", "context"]
    if task.head_kind == "token" and hasattr(task, "tag_column"):
        return ["tokens"]
    raise ArtifactError(f"task {task.name} ({type(task).__name__}) has no inference input format in ptrain yet")


def is_qa(task: Any) -> bool:
    """Extractive QA: a token head over question + context windows (`ptrain.tasks.qa.QATask`)."""
    return hasattr(task, "doc_stride")


def to_example(task: Any, raw: Any, where: str = "input") -> dict:
    """A raw request input (a string, or a dict of the task's fields) as the example `task.encode` takes."""
    fields = input_fields(task)
    if isinstance(raw, str):
        if len(fields) != 1:
            raise InputError(f"{where}: task {task.name} takes fields {fields}, not a plain string", field=where)
        raw = {fields[0]: raw}
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a string or an object with {fields}; got {type(raw).__name__}",
                         field=where)
    example = dict(raw)
    for name in fields:
        if name not in example:
            raise InputError(f"{where}.{name}: missing (task {task.name} takes {fields})", field=f"{where}.{name}")
    if is_qa(task):
        for name in fields:
            if not isinstance(example[name], str) or not example[name].strip():
                raise InputError(f"{where}.{name}: expected a non-empty string", field=f"{where}.{name}")
        return {"id": where, "question": example["question"], "context": example["context"], "answers": None}
    if task.head_kind == "token":
        tokens = example["tokens"]
        if isinstance(tokens, str):
            tokens = tokens.split()
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens) or not tokens:
            raise InputError(f"{where}.tokens: expected a non-empty list of strings or a string",
                             field=f"{where}.tokens")
        return {"tokens": tokens, "tags": ["O"] * len(tokens)}
    if task.head_kind == "generate":
        if not isinstance(example["source"], str):
            raise InputError(f"{where}.source: expected a string", field=f"{where}.source")
        return {"source": example["source"], "references": [""]}
    for name in fields:
        if not isinstance(example[name], str):
            raise InputError(f"{where}.{name}: expected a string; got {type(example[name]).__name__}",
                             field=f"{where}.{name}")
    example[getattr(task, "label_field", "label")] = None
    return example


class PromptBank(nn.Module):
    """K artifacts sharing one frozen backbone; `forward_rows` runs a mixed batch in one backbone pass."""

    def __init__(self, backbone: nn.Module, tokenizer: Any, artifacts: Iterable[Artifact],
                 allow_mismatch: bool = False) -> None:
        from ptrain.artifact import build_head_from

        super().__init__()
        self.backbone, self.tokenizer = backbone.eval(), tokenizer
        self.tasks: dict[str, BankTask] = {}
        heads = {}
        for artifact in artifacts:
            name = artifact.name
            if name in self.tasks:
                raise ArtifactError(f"{artifact.path}: task {name!r} is already in the bank (from "
                                    f"{self.tasks[name].artifact.path}); two artifacts of one task need other names")
            if artifact.group("backbone"):
                raise ArtifactError(f"{artifact.path}: a finetune artifact carries its own backbone; it cannot "
                                    "share one in a bank")
            require_head(artifact)
            check_backbone(artifact, backbone, tokenizer, allow_mismatch)
            head = build_head_from(artifact)
            if getattr(head, "needs", "hidden") != "hidden":
                head.attach(backbone.lm_logits)
            fixed = artifact.fixed_prompt()
            with torch.no_grad():
                prompt = None if fixed is None else fixed(1)
            self.tasks[name] = BankTask(name, artifact, inference_task(artifact.meta), head, prompt)
            heads[name] = head
        self.heads = nn.ModuleDict(heads)
        self._index = {name: i for i, name in enumerate(self.tasks)}

    @classmethod
    def load(cls, paths: Sequence[str | Path], allow_mismatch: bool = False) -> PromptBank:
        """Read the artifacts and load the backbone the first one names (with the LM head if any task needs it)."""
        from ptrain.backbones import load_backbone

        artifacts = [read_artifact(p) for p in paths]
        if not artifacts:
            raise ArtifactError("a prompt bank needs at least one artifact")
        model_cfg = dict(artifacts[0].meta["model"])
        model_cfg.update(shift_positions=artifacts[0].meta["method"].get("shift_positions", True),
                         lm_head=any(a.meta["head"]["kind"] in ("lm", "generate") for a in artifacts),
                         dropout_impl="torch")
        backbone, tokenizer = load_backbone(model_cfg)
        return cls(backbone, tokenizer, artifacts, allow_mismatch)

    def __contains__(self, name: str) -> bool:
        return name in self.tasks

    # ---- encoding ---------------------------------------------------------------------------------------
    def encode(self, name: str, raw: Any, where: str = "input") -> dict:
        """One raw input of task `name` as a feature; an input longer than the task's `max_length` is an error."""
        entry = self.tasks[name]
        example = to_example(entry.task, raw, where)
        untruncated = _token_count(entry.task, example, self.tokenizer)
        limit = entry.task.max_length
        if untruncated > limit:
            raise InputError(f"{where}: {untruncated} tokens, over task {name}'s max_length of {limit}", field=where)
        if is_qa(entry.task):  # a long context gives several windows: one feature of several rows
            windows = entry.task.encode([example], self.tokenizer)
            keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in windows[0]]
            feature = {k: [w[k] for w in windows] for k in keys}
            feature.update(offsets=[w["offsets"] for w in windows], context=example["context"], qa=True)
            return feature
        [feature] = entry.task.encode([example], self.tokenizer)
        if entry.head_kind == "token":
            feature["_tokens"] = example["tokens"]  # the words that entity spans are given in
        return feature

    # ---- the mixed forward pass -------------------------------------------------------------------------
    @torch.no_grad()
    def forward_rows(self, names: Sequence[str], features: Sequence[dict]) -> list[torch.Tensor]:
        """Head outputs per feature (logits as each head gives them), for features of any of the bank's tasks,
        in one backbone pass (generation features are refused: use `generate`)."""
        rows, owners, widths = [], [], []
        for name, feature in zip(names, features):
            split = _rows(feature)
            rows.extend(split)
            owners.extend([name] * len(split))
            widths.append(len(split))
        ids, mask, types = self._pad(rows)
        prompt = stack_prompts([self.tasks[n].prompt for n in self.tasks], [self._index[n] for n in owners])
        needs = {getattr(self.tasks[n].head, "needs", "hidden") for n in owners}
        if "targets" in needs:
            raise ValueError("generation tasks decode with `generate`, not in a scoring batch")
        from ptrain.backbones.decoder import DecoderBackbone

        # a decoder's answer state is its last real token's hidden state, read from the same pass; T5 answers from
        # its decoder, which is another call
        if "answer" in needs and not isinstance(self.backbone, DecoderBackbone):
            return self._separate_answers(names, features)
        hidden = self.backbone(ids, mask, types, prompt)
        outputs: list[torch.Tensor | None] = [None] * len(features)
        starts = torch.tensor([0, *widths]).cumsum(0).tolist()
        by_task: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            by_task.setdefault(name, []).append(i)
        for name, items in by_task.items():
            head = self.tasks[name].head
            index = torch.tensor([r for i in items for r in range(starts[i], starts[i + 1])])
            states, rows_mask = hidden[index], mask[index]
            if getattr(head, "needs", "hidden") == "answer":
                from ptrain.backbones.lm import last_real

                logits = head(last_real(states, rows_mask), rows_mask)
            else:
                logits = head(states, rows_mask)
            self._split_back(logits, rows_mask, items, outputs, widths, head)
        return outputs  # type: ignore[return-value]

    def _separate_answers(self, names, features) -> list[torch.Tensor]:
        """LM-head scoring on an encoder-decoder: its answer state comes from the decoder, one call per task."""
        outputs: list[torch.Tensor | None] = [None] * len(features)
        by_task: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            by_task.setdefault(name, []).append(i)
        for name, items in by_task.items():
            entry = self.tasks[name]
            ids, mask, types = self._pad([features[i] for i in items])
            prompt = stack_prompts([entry.prompt], [0] * len(items))
            if getattr(entry.head, "needs", "hidden") == "answer":
                logits = entry.head(self.backbone.answer_state(ids, mask, types, prompt), mask)
            else:
                logits = entry.head(self.backbone(ids, mask, types, prompt), mask)
            for row, i in enumerate(items):
                outputs[i] = logits[row]
        return outputs  # type: ignore[return-value]

    @staticmethod
    def _split_back(logits: torch.Tensor, mask: torch.Tensor, items: list[int], outputs: list, widths: list[int],
                    head: nn.Module) -> None:
        """One task's head output back to its features: token logits of the real tokens only (either padding
        side), a pair head's one row per two inputs, a choice head's scores per feature."""
        offset = 0
        for i in items:
            width = widths[i]
            if type(head).__name__ == "PairHead":  # two rows in, one row of logits out
                outputs[i] = logits[offset // 2]
            elif logits.dim() == 3 and width > 1:  # QA windows: token logits of each window's real tokens
                outputs[i] = [logits[r][mask[r].bool()] for r in range(offset, offset + width)]
            elif width > 1:  # choices: one score per row
                outputs[i] = logits[offset:offset + width].reshape(-1)
            elif logits.dim() == 3:  # token logits [rows, T, labels]
                outputs[i] = logits[offset][mask[offset].bool()]
            else:
                outputs[i] = logits[offset]
            offset += width

    def _pad(self, rows: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        length = max(len(r["input_ids"]) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        left = self.tokenizer.padding_side == "left"

        def padded(values: list[int], fill: int) -> list[int]:
            extra = [fill] * (length - len(values))
            return extra + list(values) if left else list(values) + extra

        ids = torch.tensor([padded(r["input_ids"], pad) for r in rows])
        mask = torch.tensor([padded(r["attention_mask"], 0) for r in rows])
        types = None
        if all("token_type_ids" in r for r in rows):
            types = torch.tensor([padded(r["token_type_ids"], 0) for r in rows])
        return ids, mask, types

    @torch.no_grad()
    def generate(self, name: str, features: Sequence[dict], **generate_kwargs: Any) -> list[str]:
        """Generated text for features of one generation task, with its prompt at every step."""
        from ptrain.model import PromptedModel

        entry = self.tasks[name]
        ids, mask, _ = self._pad(features)
        model = PromptedModel(self.backbone, entry.head, _Fixed(entry.prompt), train_backbone=False)
        kwargs = {"max_new_tokens": entry.task.max_target_length, "num_beams": entry.task.num_beams}
        kwargs.update(generate_kwargs)
        return model.generate_text(ids, mask, **kwargs)

    # ---- predictions ------------------------------------------------------------------------------------
    def _width(self, name: str) -> int:
        """Virtual columns a task's rows add: input-prompt positions and prefix slots."""
        prompt = self.tasks[name].prompt
        return 0 if prompt is None else prompt.input_length + prompt.prefix_length

    def predict(self, requests: Sequence[tuple[str, Any]], batch_size: int = 32, progress: bool = False) -> list[dict]:
        """Predictions for (task, raw input) pairs, in order; scoring tasks are batched together across tasks."""

        for name, _ in requests:
            if name not in self.tasks:
                raise InputError(f"task: unknown task {name!r}; the bank holds {sorted(self.tasks)}", field="task")
        features = [self.encode(name, raw, where=f"inputs[{i}]") for i, (name, raw) in enumerate(requests)]
        return self.predict_features(requests, features, batch_size, progress)

    @torch.no_grad()
    def predict_features(self, requests: Sequence[tuple[str, Any]], features: Sequence[dict], batch_size: int = 32,
                         progress: bool = False) -> list[dict]:
        """`predict` for inputs already encoded with `encode` (a server checks each request that way first)."""
        from ptrain.predict_output import decode

        results: list[dict | None] = [None] * len(requests)
        scoring = [i for i, (name, _) in enumerate(requests) if self.tasks[name].head_kind != "generate"]
        generating = [i for i, (name, _) in enumerate(requests) if self.tasks[name].head_kind == "generate"]
        # Every row of a batch pays for the batch's longest input and widest prompt: rows are batched in order of
        # (virtual columns, tokens), so batches hold similar rows (benchmarks/README.md, "Serving": arrival order
        # ran at 0.71 of single-task batches on MiniLM, length-sorted at 1.09); results keep the request order.
        scoring.sort(key=lambda i: (self._width(requests[i][0]), _length(features[i])))
        batches = [scoring[s:s + batch_size] for s in range(0, len(scoring), batch_size)]
        for batch in _progress(batches, progress, "predict"):
            names = [requests[i][0] for i in batch]
            outputs = self.forward_rows(names, [features[i] for i in batch])
            for i, output in zip(batch, outputs):
                name, raw = requests[i]
                results[i] = decode(self.tasks[name], features[i], output, raw, self.tokenizer)
        by_task: dict[str, list[int]] = {}
        for i in generating:
            by_task.setdefault(requests[i][0], []).append(i)
        for name, items in by_task.items():
            for s in range(0, len(items), batch_size):
                chunk = items[s:s + batch_size]
                for i, text in zip(chunk, self.generate(name, [features[i] for i in chunk])):
                    results[i] = {"text": text}
        return results  # type: ignore[return-value]


def _length(feature: dict) -> int:
    ids = feature["input_ids"]
    return max(len(row) for row in ids) if ids and isinstance(ids[0], list) else len(ids)


class _Fixed(nn.Module):
    """A computed one-row prompt as a prompt module (for `PromptedModel.generate`)."""

    def __init__(self, prompt: PromptOutput | None) -> None:
        super().__init__()
        self.value = prompt or PromptOutput()
        self.kind = "input" if self.value.embeds is not None else "prefix"
        self.length = max(self.value.input_length, self.value.prefix_length)

    def forward(self, batch_size: int) -> PromptOutput:
        return stack_prompts([self.value], [0] * batch_size)


def _rows(feature: dict) -> list[dict]:
    """A feature's token rows: one, or several (choices, siamese segments) as separate rows."""
    ids = feature["input_ids"]
    if ids and isinstance(ids[0], list):
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in feature]
        return [{k: feature[k][r] for k in keys} for r in range(len(ids))]
    return [feature]


def _token_count(task: Any, example: dict, tokenizer: Any) -> int:
    """Tokens the input takes before truncation (with special tokens), the way the task tokenises it."""
    if is_qa(task):
        return 0  # a long context is read in windows (doc_stride) and a long question is cut: nothing to refuse
    if task.head_kind == "token":
        return len(tokenizer(example["tokens"], is_split_into_words=True)["input_ids"])
    if task.head_kind == "generate":
        return len(tokenizer(f"{task.source_prefix}{example['source']}{task.source_suffix}")["input_ids"])
    if hasattr(task, "template"):
        return len(tokenizer(task.template.format(**example))["input_ids"])
    texts = [str(example[f]) for f in task.text_fields]
    if getattr(task, "pair_encoding", "cross") == "siamese":
        return max(len(tokenizer(t)["input_ids"]) for t in texts)
    return len(tokenizer(*texts)["input_ids"])


def _progress(items: list, show: bool, label: str):
    if not show or len(items) < 2:
        yield from items
        return
    from rich.progress import track

    yield from track(items, description=label)


__all__ = ["BankTask", "InputError", "PromptBank", "to_example"]
