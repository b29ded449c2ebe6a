"""Conditional generation (data-to-text, summarisation): a source text in, a target text out, BLEU/ROUGE.

The task declares `head_kind = "generate"`: it needs a backbone with a language-model head (decoders, T5) and
says nothing about prompt methods or architectures. Features keep the source (`input_ids`) and the target
(`labels`, ending with the end token) apart; the backbone arranges them (a decoder reads `[source; target]`,
T5 encodes the source and decodes the target), and returns logits aligned with `labels`, so the loss is the
ordinary token cross-entropy. Evaluation generates from the source (`evaluate`, greedy unless
`task.num_beams` > 1) and scores the text against every reference of the input.

Formats: `csv` (E2E NLG: `mr`, `ref` columns; dev/test rows sharing an `mr` are one input with several
references), `jsonl` (one object per line), `hub` (`datasets.load_dataset(**task.hub)`); the field names are
`source_field` and `target_field` (a list-valued target field gives several references).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ptrain.metrics.generation import GenerationScores
from ptrain.readers.errors import DataFormatError
from ptrain.tasks.base import Task

FORMATS = ("csv", "jsonl", "hub")


class GenerationTask(Task):
    head_kind = "generate"
    token_loss = True
    meta_keys = ("references",)

    def __init__(self, name: str, data_dir: str | None = None, max_length: int = 128, max_target_length: int = 64,
                 format: str = "csv", files: dict[str, str] | None = None, hub: dict | None = None,
                 source_field: str = "mr", target_field: str = "ref", source_prefix: str = "",
                 source_suffix: str = "", lowercase: bool = False, num_beams: int = 1,
                 main_metric: str = "rougeL", max_train_examples: int | None = None,
                 max_eval_examples: int | None = None) -> None:
        super().__init__(name, data_dir, max_length, hub, files, max_train_examples=max_train_examples)
        if format not in FORMATS:
            raise ValueError(f"task.format must be one of {', '.join(FORMATS)}; got {format!r}")
        if main_metric not in ("bleu", "rouge1", "rouge2", "rougeL"):
            raise ValueError(f"task.main_metric must be bleu, rouge1, rouge2 or rougeL; got {main_metric!r}")
        self.format = format
        self.max_target_length = int(max_target_length)
        self.source_field, self.target_field = source_field, target_field
        self.source_prefix, self.source_suffix = source_prefix, source_suffix
        self.lowercase = bool(lowercase)
        self.num_beams = int(num_beams)
        self.main_metric = main_metric
        self.max_eval_examples = None if max_eval_examples is None else int(max_eval_examples)

    @property
    def labels(self) -> list[str]:
        return []  # no classes: the "labels" are target tokens

    def extra_fingerprint(self) -> dict:
        return {"format": self.format, "fields": [self.source_field, self.target_field],
                "source": [self.source_prefix, self.source_suffix], "max_target_length": self.max_target_length,
                "max_eval_examples": self.max_eval_examples}

    # ---- reading ----------------------------------------------------------------------------------
    def read(self, split: str) -> list[dict] | None:
        """Rows `{"source", "references"}`: one per (source, reference) pair for training, one per distinct
        source (references grouped, file order kept) for validation and test."""
        if self.format == "hub" or self.data_dir is None:
            raw = self.load_hub(split)
            pairs = None if raw is None else [self._pair(row, None, i) for i, row in enumerate(raw, start=1)]
        else:
            path = self.split_file(split)
            pairs = None if path is None else self._read_file(path)
        if pairs is None:
            return None
        if split == "train":
            return [{"source": s, "references": [r]} for s, refs in pairs for r in refs]
        grouped: dict[str, list[str]] = {}
        for source, refs in pairs:
            grouped.setdefault(source, []).extend(refs)
        rows = [{"source": s, "references": refs} for s, refs in grouped.items()]
        return rows if self.max_eval_examples is None else rows[: self.max_eval_examples]

    def _read_file(self, path: Path) -> list[tuple[str, list[str]]]:
        if self.format == "csv":
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                missing = {self.source_field, self.target_field} - set(reader.fieldnames or [])
                if missing:
                    raise DataFormatError(path, f"missing column(s) {sorted(missing)}", line=1,
                                          expected=f"a header with {self.source_field} and {self.target_field}")
                return [self._pair(row, path, line) for line, row in enumerate(reader, start=2)]
        pairs = []
        with path.open(encoding="utf-8") as handle:
            for line, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as error:
                    raise DataFormatError(path, f"not valid JSON ({error.msg})", line=line) from None
                pairs.append(self._pair(row, path, line))
        return pairs

    def _pair(self, row: dict, path: Path | None, line: int) -> tuple[str, list[str]]:
        where = path if path is not None else f"{self.name} hub split"
        for field in (self.source_field, self.target_field):
            if not isinstance(row.get(field), (str, list)) or row.get(field) in ("", []):
                raise DataFormatError(where, f"empty or missing {field!r}", line=line, field=field,
                                      expected="a non-empty string" + (" or list of strings"
                                                                       if field == self.target_field else ""))
        target = row[self.target_field]
        return str(row[self.source_field]), [target] if isinstance(target, str) else [str(t) for t in target]

    # ---- tokenisation -----------------------------------------------------------------------------
    def encode(self, examples: list[dict], tokenizer: Any) -> list[dict]:
        end = tokenizer.eos_token_id
        if end is None:
            raise ValueError(f"task {self.name} needs a tokenizer with an end-of-sequence token")
        sources = [f"{self.source_prefix}{e['source']}{self.source_suffix}" for e in examples]
        encoded = tokenizer(sources, truncation=True, max_length=self.max_length)
        # a leading space makes BPE tokenizers (GPT-2) start the target with a word-initial token
        targets = tokenizer([" " + e["references"][0] for e in examples], add_special_tokens=False,
                            truncation=True, max_length=self.max_target_length - 1)
        features = []
        for row, example in enumerate(examples):
            features.append({"input_ids": encoded["input_ids"][row], "attention_mask": encoded["attention_mask"][row],
                             "labels": targets["input_ids"][row] + [end], "references": list(example["references"])})
        return features

    # ---- evaluation -------------------------------------------------------------------------------
    def evaluate(self, model: Any, batch: dict[str, Any]) -> list[str]:
        """Generated text for the batch's sources (what the metric scores)."""
        return model.generate_text(batch["input_ids"], batch["attention_mask"],
                                   max_new_tokens=self.max_target_length, num_beams=self.num_beams)

    def metric(self) -> Any:
        return _GenerationMetric(self.lowercase)


class _GenerationMetric(GenerationScores):
    def update(self, predictions, batch) -> None:  # type: ignore[override]
        super().update(predictions, batch["references"])


class SyntheticDataToTextTask(GenerationTask):
    """E2E-format data written by `ptrain.testing.fixtures_generation.write_e2e` (default: into the ptrain
    cache), so generation runs offline: `python train.py model=tiny_llama method=ptv2 task=d2t_synthetic`."""

    def __init__(self, name: str = "d2t_synthetic", data_dir: str | None = None, n_train: int = 600,
                 n_dev: int = 60, n_test: int = 60, seed: int = 0, **kwargs: Any) -> None:
        from ptrain.paths import cache_dir
        from ptrain.testing.fixtures_generation import write_e2e

        target = Path(data_dir) if data_dir else cache_dir() / f"d2t_synthetic-{n_train}-{n_dev}-{n_test}-{seed}"
        if not (target / "testset_w_refs.csv").exists():
            write_e2e(target, n_train, n_dev, n_test, seed)
        files = kwargs.pop("files", None) or {"train": "trainset.csv", "validation": "devset.csv",
                                               "test": "testset_w_refs.csv"}
        super().__init__(name, str(target), files=files, format="csv", **kwargs)


__all__ = ["GenerationTask", "SyntheticDataToTextTask"]
