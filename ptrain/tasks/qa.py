"""Extractive question answering (SQuAD v1.1 / v2.0): document-stride windows, a span head, n-best decoding.

The span head is the token head with two labels (start, end): logits [B, T, 2] over real tokens. Contexts
longer than the window are split into overlapping features (`doc_stride` tokens of overlap); a feature whose
window does not contain the answer is labelled with the [CLS] token (index 0), as in the Hugging Face and
official P-tuning v2 QA code. Features carry their example id, token offsets, context and gold answers
(`meta_keys`), so evaluation joins the features of each example and decodes the best span with
`ptrain.metrics.squad.postprocess_spans`, then scores with the official EM/F1 definitions. Scores are
fractions (x100 = the official percentages), like every other ptrain metric.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch.nn import functional as F

from ptrain.metrics.squad import postprocess_spans, squad_v1, squad_v2
from ptrain.tasks.base import Task

log = logging.getLogger(__name__)


class QATask(Task):
    """`version_2_with_negative` switches to SQuAD v2 scoring: the [CLS] span is the "no answer" score and a
    question is answered "" when null score - best span score > `null_threshold`; `best_f1`/`best_f1_thresh`
    report the threshold the dev set would have liked."""

    head_kind = "token"
    main_metric = "f1"
    meta_keys = ("example_id", "offsets", "context", "golds")

    def __init__(self, name: str = "squad", data_dir: str | None = None, max_length: int = 384,
                 hub: dict | None = None, files: dict[str, str] | None = None,
                 version_2_with_negative: bool = False, doc_stride: int = 128, max_query_length: int = 64,
                 n_best: int = 20, max_answer_length: int = 30, null_threshold: float = 0.0,
                 strict: bool = True, train_from_validation: float | None = None,
                 max_train_examples: int | None = None) -> None:
        super().__init__(name, data_dir, max_length, hub, files, train_from_validation, max_train_examples)
        self.v2 = bool(version_2_with_negative)
        self.doc_stride = int(doc_stride)
        self.max_query_length = int(max_query_length)
        self.n_best, self.max_answer_length = int(n_best), int(max_answer_length)
        self.null_threshold = float(null_threshold)
        self.strict = strict
        if self.max_length - self.max_query_length - 3 < 8:
            raise ValueError(f"task.max_length={self.max_length} leaves no room for the context after "
                             f"task.max_query_length={self.max_query_length} question tokens")
        self.unanswerable_windows: list[str] = []  # ids of answerable questions no window contains

    @property
    def labels(self) -> list[str]:
        return ["start", "end"]

    def extra_fingerprint(self) -> dict:
        return {"v2": self.v2, "doc_stride": self.doc_stride, "max_query_length": self.max_query_length,
                "strict": self.strict, "encoding": 1}

    # ---- data ------------------------------------------------------------------------------------
    def read(self, split: str) -> list[dict] | None:
        if self.data_dir is None:
            rows = self.load_hub(split)
            for row in rows or []:
                row["answers"] = {"text": list(row["answers"]["text"]),
                                  "answer_start": list(row["answers"]["answer_start"])}
                row["is_impossible"] = not row["answers"]["text"]
            return rows
        path = self.split_file(split)
        if path is None:
            return None
        from ptrain.readers.squad import read_squad

        # strict: a bad answer offset fails naming the question id; lenient: such answers are dropped with
        # one warning listing the ids (the reader's two modes).
        return read_squad(path, strict=self.strict)

    def stride(self) -> int:
        """The overlap actually used: at most half of the room left for the context, so windows advance."""
        room = self.max_length - self.max_query_length - 3
        return max(1, min(self.doc_stride, room // 2))

    def _question(self, question: str, tokenizer: Any) -> str:
        """Strip and cut a question to `max_query_length` tokens (at a token boundary) so it always fits."""
        question = question.strip()
        encoded = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
        if len(encoded["input_ids"]) <= self.max_query_length:
            return question
        return question[: encoded["offset_mapping"][self.max_query_length - 1][1]]

    def encode(self, examples: list[dict], tokenizer: Any) -> list[dict]:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"task {self.name} needs a fast tokenizer (offset mappings); got {type(tokenizer)}")
        if self.stride() < self.doc_stride:
            log.warning("task %s: doc_stride=%d does not fit task.max_length=%d; using %d", self.name,
                        self.doc_stride, self.max_length, self.stride())
        questions = [self._question(e["question"], tokenizer) for e in examples]
        encoded = tokenizer(questions, [e["context"] for e in examples], truncation="only_second",
                            max_length=self.max_length, stride=self.stride(), return_overflowing_tokens=True,
                            return_offsets_mapping=True)
        features: list[dict] = []
        found: dict[int, bool] = {}
        for i in range(len(encoded["input_ids"])):
            sample = encoded["overflow_to_sample_mapping"][i]
            example = examples[sample]
            sequence = encoded.sequence_ids(i)
            offsets = [list(o) if sequence[k] == 1 else None for k, o in enumerate(encoded["offset_mapping"][i])]
            start, end = self._positions(example, offsets)
            if start > 0:
                found[sample] = True
            feature = {key: encoded[key][i] for key in encoded
                       if key not in ("offset_mapping", "overflow_to_sample_mapping")}
            feature.update(start_positions=start, end_positions=end, labels=start,
                           example_id=str(example["id"]), offsets=offsets, context=example["context"],
                           golds=list(example["answers"]["text"]) if self._labelled(example) else None)
            features.append(feature)
        lost = [str(e["id"]) for n, e in enumerate(examples)
                if self._labelled(e) and e["answers"]["text"] and not found.get(n)]
        if lost:
            log.warning("task %s: %d answerable questions have their answer in no window at task.max_length=%d "
                        "(they train as 'no answer'; ids %s%s)", self.name, len(lost), self.max_length,
                        lost[:5], " ..." if len(lost) > 5 else "")
        self.unanswerable_windows += lost
        return features

    @staticmethod
    def _labelled(example: dict) -> bool:
        return example.get("answers") is not None and (bool(example["answers"]["text"])
                                                       or bool(example.get("is_impossible")))

    def _positions(self, example: dict, offsets: list) -> tuple[int, int]:
        """Token (start, end) of the first gold answer in this window; (0, 0) = [CLS] when it is not inside
        or there is no answer; (-100, -100) for unlabelled examples."""
        if not self._labelled(example):
            return -100, -100
        if not example["answers"]["text"]:
            return 0, 0
        start_char = example["answers"]["answer_start"][0]
        end_char = start_char + len(example["answers"]["text"][0])
        inside = [k for k, o in enumerate(offsets) if o is not None]
        if not inside or offsets[inside[0]][0] > start_char or offsets[inside[-1]][1] < end_char:
            return 0, 0
        start = next(k for k in inside if offsets[k][1] > start_char)
        end = next(k for k in reversed(inside) if offsets[k][0] < end_char)
        return start, end

    # ---- loss and metric -------------------------------------------------------------------------
    def loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        padding = batch["attention_mask"] == 0
        losses = []
        for column, key in ((0, "start_positions"), (1, "end_positions")):
            scores = logits[..., column].masked_fill(padding, torch.finfo(logits.dtype).min)
            losses.append(F.cross_entropy(scores, batch[key], ignore_index=-100))
        return (losses[0] + losses[1]) / 2

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(1)  # [B, 2]: best start and end token per feature

    def metric(self) -> Any:
        return _SpanMetric(self)


class _SpanMetric:
    def __init__(self, task: QATask) -> None:
        self.task = task
        self.examples: dict[str, dict[str, Any]] = {}

    def update(self, logits: torch.Tensor, batch: dict[str, Any]) -> None:
        logits = logits.detach().float().cpu()
        lengths = batch["attention_mask"].sum(1).tolist()
        for row, example_id in enumerate(batch["example_id"]):
            if batch["golds"][row] is None:
                continue
            entry = self.examples.setdefault(example_id, {"starts": [], "ends": [], "offsets": [],
                                                          "context": batch["context"][row],
                                                          "golds": batch["golds"][row]})
            length = int(lengths[row])
            entry["starts"].append(logits[row, :length, 0].numpy())
            entry["ends"].append(logits[row, :length, 1].numpy())
            entry["offsets"].append(batch["offsets"][row][:length])

    def compute(self) -> dict[str, float]:
        if not self.examples:
            return {}
        task = self.task
        predictions, diffs, references = {}, {}, {}
        for example_id, entry in self.examples.items():
            best = postprocess_spans(entry["starts"], entry["ends"], entry["offsets"], entry["context"],
                                     n_best=task.n_best, max_answer_length=task.max_answer_length,
                                     null_index=0 if task.v2 else None)
            predictions[example_id] = best["text"]
            diffs[example_id] = best["null_score_diff"]
            references[example_id] = entry["golds"]
        if not task.v2:
            scores = squad_v1(predictions, references)
            return {"em": scores["exact_match"] / 100, "f1": scores["f1"] / 100}
        scores = squad_v2(predictions, references, na_probs=diffs, na_prob_thresh=task.null_threshold)
        out = {"em": scores["exact"] / 100, "f1": scores["f1"] / 100}
        for source, name in (("HasAns", "has_ans"), ("NoAns", "no_ans")):
            if f"{source}_exact" in scores:
                out[f"{name}_em"] = scores[f"{source}_exact"] / 100
                out[f"{name}_f1"] = scores[f"{source}_f1"] / 100
        out.update(best_em=scores["best_exact"] / 100, best_em_thresh=scores["best_exact_thresh"],
                   best_f1=scores["best_f1"] / 100, best_f1_thresh=scores["best_f1_thresh"])
        return out
