"""Classification through the LM head: label words scored at the answer position (P-Tuning v1's setting).

The input is a template filled with the example's fields (e.g. `"{premise} question: {hypothesis} yes or no?
answer:"`); the model's next-token distribution after it is read at the label words' first tokens (`" yes"`,
`" no"`), and those logits are the class scores. No new output layer is trained: the frozen LM head does the
scoring, so a prompt method alone (or `finetune`) adapts the model.

The task declares `head_kind = "lm"`: it needs a backbone with an LM head, which decoders (GPT-2, Llama, Qwen,
Mistral: the state of the last real token) and T5 (the decoder's first state) have. Masked-LM encoders are not
supported (their answer position is a [MASK] token inside the input, a different layout); asking for one
raises an error naming the supported model types.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from ptrain.tasks.classification import ClassificationTask, _SequenceMetric


class VerbalizerTask(ClassificationTask):
    """A `ClassificationTask` (same readers, labels and metrics) with `template` and one label word per label.

    Templates name example fields in braces; the end of the text is kept when truncating, since the answer
    position is there.
    """

    head_kind = "lm"

    def __init__(self, name: str, labels: list[str], label_words: list[str], template: str,
                 text_fields: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(name, labels, list(text_fields or []), **kwargs)
        if len(label_words) != len(self.labels):
            raise ValueError(f"task.label_words has {len(label_words)} words for {len(self.labels)} labels "
                             f"({', '.join(self.labels)})")
        self.label_words = [str(w) for w in label_words]
        self.template = template

    def extra_fingerprint(self) -> dict:
        return {**super().extra_fingerprint(), "template": self.template, "label_words": self.label_words}

    def label_token_ids(self, tokenizer: Any) -> list[int]:
        """First token of each label word as it follows a space (word-initial for BPE and SentencePiece)."""
        ids = []
        for word in self.label_words:
            pieces = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
            if not pieces:
                raise ValueError(f"task.label_words: {word!r} gives no token")
            ids.append(pieces[0])
        if len(set(ids)) != len(ids):
            raise ValueError(f"task.label_words {self.label_words} share first tokens {ids}; pick words that "
                             "start differently")
        return ids

    def encode(self, examples: list[dict], tokenizer: Any) -> list[dict]:
        index = {label: i for i, label in enumerate(self.labels)}
        words = self.label_token_ids(tokenizer)
        texts = []
        for example in examples:
            try:
                texts.append(self.template.format(**example))
            except KeyError as error:
                raise ValueError(f"task.template names field {error.args[0]!r}, which {self.name} examples lack "
                                 f"(fields: {', '.join(sorted(example))})") from None
        side = tokenizer.truncation_side
        tokenizer.truncation_side = "left"  # keep the answer cue at the end
        try:
            encoded = tokenizer(texts, truncation=True, max_length=self.max_length)
        finally:
            tokenizer.truncation_side = side
        features = []
        for row, example in enumerate(examples):
            label = example.get(self.label_field)
            features.append({"input_ids": encoded["input_ids"][row], "attention_mask": encoded["attention_mask"][row],
                             "labels": -100 if label is None else index[str(label)], "label_token_ids": words})
        return features

    @staticmethod
    def label_logits(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, V] vocabulary logits -> [B, num_labels] at the label words."""
        return logits.gather(1, batch["label_token_ids"].to(logits.device))

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(self.label_logits(logits, batch), batch["labels"], ignore_index=-100)

    def metric_inputs(self, outputs: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The class scores, not the vocabulary: a distributed evaluation gathers B x num_labels, not B x V."""
        return self.label_logits(outputs, batch)

    def metric(self) -> Any:
        return _SequenceMetric(self.num_labels, self.f1)
