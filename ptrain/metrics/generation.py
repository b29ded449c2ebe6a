"""BLEU (sacrebleu) and ROUGE (Google's rouge-score) for generated text, with several references per input.

Both are the maintained reference implementations: corpus BLEU as sacrebleu computes it (13a tokenisation,
the E2E/WMT convention, `None` filling the reference streams of inputs with fewer references) and ROUGE-1/2/L
F-measures from `rouge_score`, the best over an input's references, averaged over inputs. Scores are fractions
(0..1) like every ptrain metric (BLEU / 100); reports print them in points.
"""

from __future__ import annotations

from collections.abc import Sequence


class GenerationScores:
    """Collects (prediction, references) pairs; `compute` gives bleu, rouge1, rouge2, rougeL.

    `lowercase` compares case-insensitively (for uncased tokenizers, whose output is lowercase); rouge-score
    always lowercases.
    """

    def __init__(self, lowercase: bool = False) -> None:
        self.lowercase = lowercase
        self.predictions: list[str] = []
        self.references: list[list[str]] = []

    def reset(self) -> None:
        self.predictions, self.references = [], []

    def update(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} reference sets")
        for prediction, refs in zip(predictions, references):
            if not refs:
                raise ValueError("every prediction needs at least one reference")
            self.predictions.append(prediction.strip())
            self.references.append([r.strip() for r in refs])

    def compute(self) -> dict[str, float]:
        if not self.predictions:
            return {}
        import sacrebleu
        from rouge_score import rouge_scorer

        most = max(len(refs) for refs in self.references)
        streams = [[refs[i] if i < len(refs) else None for refs in self.references] for i in range(most)]
        bleu = sacrebleu.corpus_bleu(self.predictions, streams, lowercase=self.lowercase).score / 100.0
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
        totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
        for prediction, refs in zip(self.predictions, self.references):
            for name, score in scorer.score_multi(refs, prediction).items():
                totals[name] += score.fmeasure
        n = len(self.predictions)
        return {"bleu": float(bleu), **{name: total / n for name, total in totals.items()}}
