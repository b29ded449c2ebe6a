"""Word-level gold tags on a sub-word input: which labelled words have no token, and which spans that cuts.

A word has no token when truncation cut it off or the tokenizer made nothing of it (a soft hyphen, a zero-width
space). Its own label cannot be scored, and neither can the entity or argument it belongs to: scoring the kept
rest of that span would grade a shorter span as gold (a prediction of "John Ronald" would count as a hit for
the four-word name it was cut from). Such spans are left out whole, of training labels and of the score alike,
and both counts are reported so the loss is never silent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

#: a function giving the (label, start, end) spans, end inclusive, of one tag sequence
SpanReader = Callable[[Sequence[str]], list[tuple[str, int, int]]]


def unscored_words(tags: Sequence[str], kept: Collection[int],
                   spans: SpanReader) -> tuple[int, int, set[int]]:
    """(labelled words without a token, spans they cut, kept words of those spans).

    `kept` holds the indices of the words that have a token in the input; the third value is the set of words
    whose labels must be masked out (-100) so that the cut spans are not scored at all.
    """
    missing = sum(1 for i, tag in enumerate(tags) if tag != "O" and i not in kept)
    if not missing:
        return 0, 0, set()
    cut = [(start, end) for _, start, end in spans(tags)
           if any(i not in kept for i in range(start, end + 1))]
    rest = {i for start, end in cut for i in range(start, end + 1) if i in kept}
    return missing, len(cut), rest


def first_subword_labels(words: Sequence[int | None], tags: Sequence[str], index: dict[str, int],
                         spans: SpanReader) -> tuple[list[int], int, int]:
    """Label ids per input position: the tag of its word on the word's first sub-word, -100 elsewhere (special
    tokens, markers, later sub-words, and every kept word of a span that lost a word); with the counts of
    `unscored_words` (labelled words without a token, spans they cut)."""
    missing, cut, rest = unscored_words(tags, set(words) - {None}, spans)
    labels, previous = [], None
    for word in words:
        first = word is not None and word != previous and word not in rest
        labels.append(index[tags[word]] if first else -100)
        previous = word
    return labels, missing, cut


#: while ptrain.data encodes a split: [split, words, spans], the counts gathered over its chunks (`encoding_split`)
_SPLIT: ContextVar[list | None] = ContextVar("ptrain_encoding_split", default=None)


@contextmanager
def encoding_split(split: str) -> Iterator[list]:
    """Encode one split in chunks with one warning for all of them: inside, `warn_unscored` adds to the yielded
    [split, words, spans] instead of warning, and the caller warns once (`warn_unscored(..., split=split)`) and
    keeps the counts with the cached features, so a run that reads the cache warns as well."""
    counts = [split, 0, 0]
    token = _SPLIT.set(counts)
    try:
        yield counts
    finally:
        _SPLIT.reset(token)


def warn_unscored(log: logging.Logger, task: str, max_length: int, words: int, spans: int,
                  split: str | None = None) -> None:
    """One warning per encoded split, naming the split (when known), what was lost and why."""
    gathering = _SPLIT.get()
    if gathering is not None:
        gathering[1] += words
        gathering[2] += spans
        return
    if words:
        log.warning("task %s%s: dropped %d labelled (non-O) words (cut at task.max_length=%d, or tokenised to "
                    "nothing); the %d spans they belong to are not scored, their kept words neither",
                    task, f" {split} split" if split else "", words, max_length, spans)
