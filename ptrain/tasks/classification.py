"""Sentence and sentence-pair classification: a new GLUE/SuperGLUE-style task is a few lines of config."""

from __future__ import annotations

from typing import Any

from ptrain.metrics.classification import ClassificationScores
from ptrain.readers.errors import DataFormatError
from ptrain.tasks.base import Task

#: how a sentence pair meets the backbone (see ClassificationTask)
PAIR_ENCODINGS = ("cross", "siamese")


class ClassificationTask(Task):
    """`text_fields`: one or two example fields fed to the tokenizer as a (pair of) segment(s).

    `format` picks the reader: `superglue` (official jsonl, via `ptrain.readers.superglue`), `glue_tsv`
    (GLUE tsv with a header), or `hub` (`datasets.load_dataset(**task.hub)`). `labels` are the label strings
    in logit order; `f1` adds macro (CB) or binary (MRPC) F1 to accuracy. `tsv_columns` maps the header names of
    local tsv files to the field names the task uses (MRPC's `#1 String` → `sentence1`), so one config serves
    the local files and the hub's copy alike.

    `pair_encoding` says how two segments meet the backbone. `cross` (default, the paper's setting): one sequence
    in the tokenizer's pair format, so attention runs across the segments. `siamese`: each segment is encoded
    alone (as two rows of the batch, each with the prompt or prefix) and the `pair` head compares the two pooled
    vectors, as sentence-transformers models such as MiniLM were trained; with such a backbone the frozen
    methods start from features that already relate the two sentences.
    """

    head_kind = "sequence"

    def __init__(self, name: str, labels: list[str], text_fields: list[str], format: str = "superglue",
                 data_dir: str | None = None, max_length: int = 128, hub: dict | None = None,
                 files: dict[str, str] | None = None, label_field: str = "label", f1: str | None = None,
                 main_metric: str = "accuracy", pooling: str | None = None, reader: str | None = None,
                 train_from_validation: float | None = None, max_train_examples: int | None = None,
                 pair_encoding: str = "cross", tsv_columns: dict[str, str] | None = None) -> None:
        super().__init__(name, data_dir, max_length, hub, files, train_from_validation, max_train_examples)
        if pair_encoding not in PAIR_ENCODINGS:
            raise ValueError(f"task.pair_encoding must be one of {', '.join(PAIR_ENCODINGS)}; got {pair_encoding!r}")
        if pair_encoding == "siamese":
            if len(text_fields) != 2:
                raise ValueError(f"task.pair_encoding=siamese encodes two segments apart, but task {name} has "
                                 f"task.text_fields={list(text_fields)} ({len(text_fields)} field(s)); "
                                 "use pair_encoding=cross")
            self.head_kind = "pair"  # the pooled segments are compared by the pair head
        self.pair_encoding = pair_encoding
        self._labels = [str(label) for label in labels]
        self.text_fields = list(text_fields)
        self.format = format
        self.label_field = label_field
        self.f1 = f1
        self.main_metric = main_metric
        self.pooling = pooling
        self.reader = reader  # reader name when it differs from the task name (e.g. rte_glue)
        self.tsv_columns = dict(tsv_columns or {})

    @property
    def labels(self) -> list[str]:
        return self._labels

    def extra_fingerprint(self) -> dict:
        state = {"text_fields": self.text_fields, "format": self.format}
        # each below only when not the default, so existing cache keys stay valid
        optional = {"pair_encoding": (self.pair_encoding, "cross"), "label_field": (self.label_field, "label"),
                    "reader": (self.reader, None), "tsv_columns": (self.tsv_columns, {})}
        state.update({key: value for key, (value, default) in optional.items() if value != default})
        return state

    def read(self, split: str) -> list[dict] | None:
        if self.data_dir is None:
            rows = self.load_hub(split)
            if rows is None:
                return None
            feature = self._hub_features.get(self.label_field)
            names = getattr(feature, "names", None)
            # Hub labels are class ids; map them to our label strings by name when the names match
            # (super_glue: "entailment", "False"...), else by id (glue/sst2 names are negative/positive).
            use_names = names is not None and set(names) <= set(self.labels)
            for row in rows:
                value = row[self.label_field]
                if isinstance(value, int) and value < 0:
                    row[self.label_field] = None  # hub test splits mark missing labels as -1
                elif isinstance(value, int):
                    known = names if use_names else self.labels
                    if value >= len(known):
                        raise ValueError(f"task {self.name}: {self._hub_call} has {self.label_field} id {value}, "
                                         f"outside the {len(known)} labels {list(known)}")
                    row[self.label_field] = known[value]
            return rows
        path = self.split_file(split)
        if path is None:
            return None
        label_name = self.label_field  # as the file calls it, for errors
        if self.format == "superglue":
            from ptrain.readers.superglue import read_superglue

            rows = read_superglue(self.reader or self.name, path)
        elif self.format == "glue_tsv":
            from ptrain.readers.glue import read_glue_tsv

            has_labels = split != "test"
            column = {field: name for name, field in self.tsv_columns.items()}
            label_name = column.get(self.label_field, self.label_field)
            rows = read_glue_tsv(path, [column.get(field, field) for field in self.text_fields],
                                 label_name if has_labels else None, rename=self.tsv_columns)
        else:
            raise ValueError(f"task.format must be superglue, glue_tsv or hub; got {self.format!r}")
        known = set(self.labels)
        for row, line in zip(rows, rows.lines):  # the file's line, not the row's index (headers, blank lines)
            label = row.get(self.label_field)
            if label is not None and str(label) not in known:
                raise DataFormatError(path, f"unknown label {label!r}", line=line, field=label_name,
                                      expected=f"one of {', '.join(self.labels)}")
        return rows

    def encode(self, examples: list[dict], tokenizer: Any) -> list[dict]:
        index = {label: i for i, label in enumerate(self.labels)}
        texts = [[str(e[field]) for e in examples] for field in self.text_fields]
        if self.pair_encoding == "siamese":  # each segment alone; a feature holds its two rows
            segments = [tokenizer(column, truncation=True, max_length=self.max_length) for column in texts]
        else:
            segments = [tokenizer(*texts, truncation=True, max_length=self.max_length)]
        features = []
        for row, example in enumerate(examples):
            if self.pair_encoding == "siamese":
                feature = {key: [encoded[key][row] for encoded in segments] for key in segments[0]}
            else:
                feature = {key: segments[0][key][row] for key in segments[0]}
            label = example.get(self.label_field)
            feature["labels"] = -100 if label is None else index[str(label)]  # -100: unlabelled test split
            features.append(feature)
        return features

    def collate(self, features: list[dict], pad_id: int) -> dict[str, Any]:
        """Siamese: B features of two segments -> [2B, T] rows (example-major: a0, b0, a1, b1, ...)."""
        if self.pair_encoding != "siamese":
            return super().collate(features, pad_id)
        return self.collate_rows(features, pad_id)

    def metric(self) -> Any:
        return _SequenceMetric(self.num_labels, self.f1)


class _SequenceMetric(ClassificationScores):
    def update(self, logits, batch) -> None:  # type: ignore[override]
        keep = batch["labels"] != -100
        if keep.any():
            super().update(logits.argmax(-1)[keep], batch["labels"][keep])

    def compute(self) -> dict[str, float]:
        if self.accuracy.update_count == 0:
            return {}
        return super().compute()


