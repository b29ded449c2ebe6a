"""A small NER data set the project writes itself, in CoNLL-2003 column format.

It lets `python train.py` run offline in minutes. Sentences come from templates whose context predicts the
entity type ("... said chairman <PER>", "shares of <ORG> ..."), and the dev/test entities are partly names never
seen in training, so a model must use context rather than memorise names to score well.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from ptrain.tasks.token import NERTask

FIRST = ["John", "Maria", "Ahmed", "Li", "Sofia", "Peter", "Anna", "Carlos", "Yuki", "Olga", "David", "Fatima",
         "Lars", "Elena", "Kwame", "Ingrid", "Rahul", "Chloe", "Mateo", "Hana", "Ivan", "Grace", "Omar", "Nina"]
LAST = ["Smith", "Garcia", "Khan", "Wang", "Rossi", "Muller", "Novak", "Silva", "Tanaka", "Petrov", "Brown",
        "Haddad", "Berg", "Costa", "Mensah", "Larsen", "Gupta", "Martin", "Lopez", "Sato", "Volkov", "Kim"]
LOC = ["Paris", "Berlin", "New York", "Tokyo", "Cairo", "Lima", "Oslo", "Nairobi", "Madrid", "Seoul", "Sydney",
       "Toronto", "Mumbai", "Vienna", "Lagos", "Buenos Aires", "Hong Kong", "Lisbon", "Dublin", "Prague",
       "Santiago", "Athens", "Helsinki", "Hanoi", "Quito", "Accra"]
ORG = ["Acme Corp", "Globex", "Initech", "Umbrella Holdings", "Stark Industries", "Wayne Enterprises", "Hooli",
       "Vandelay Industries", "Soylent Group", "Tyrell Corporation", "Cyberdyne Systems", "Massive Dynamic",
       "Oceanic Airlines", "Pied Piper", "Monarch Bank", "Blue Sun", "Aperture Labs", "Gringotts Bank",
       "Nakatomi Trading", "Wonka Foods", "Sterling Cooper", "Dunder Mifflin"]
MISC = ["French", "German", "Olympic", "Japanese", "Brazilian", "Nobel", "Christmas", "Islamic", "Euro",
        "Kenyan", "Nordic", "Asian", "Scottish", "Mexican", "Democratic", "Grand Slam"]

CONLL_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]

TEMPLATES = [
    "{PER} said on Monday that {ORG} would open an office in {LOC} .",
    "Shares of {ORG} fell 3 percent in {LOC} trading .",
    "{PER} , chairman of {ORG} , resigned after the {MISC} inquiry .",
    "The {MISC} team beat {LOC} 2 - 1 in the final .",
    "Police in {LOC} arrested {PER} late on Friday .",
    "{ORG} agreed to buy a stake in {ORG} for 40 million dollars .",
    "Minister {PER} flew to {LOC} for talks with {PER} .",
    "{PER} won the {MISC} title after beating {PER} in straight sets .",
    "Analysts at {ORG} expect {MISC} exports to rise next year .",
    "Floods hit {LOC} and parts of {LOC} on Sunday .",
    "Striker {PER} joined {ORG} from a club in {LOC} .",
    "The {MISC} central bank left rates unchanged , {PER} said .",
    "Prices rose slightly in the second quarter , the report said .",
    "Talks will resume next week after a short break .",
]


def _entity(kind: str, rng: random.Random, pool: dict[str, list[str]]) -> list[str]:
    if kind == "PER":
        name = [rng.choice(pool["FIRST"]), rng.choice(pool["LAST"])]
        return name if rng.random() < 0.7 else name[1:]
    return rng.choice(pool[kind]).split()


def _sentence(rng: random.Random, pool: dict[str, list[str]]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for word in rng.choice(TEMPLATES).split():
        if word.startswith("{") and word.endswith("}"):
            kind = word[1:-1]
            for i, token in enumerate(_entity(kind, rng, pool)):
                rows.append((token, f"{'B' if i == 0 else 'I'}-{kind}"))
        else:
            rows.append((word, "O"))
    return rows


def write_synthetic_ner(directory: str | Path, n_train: int = 1500, n_dev: int = 300, n_test: int = 300,
                        seed: int = 0) -> Path:
    """Write train.txt, dev.txt and test.txt (IOB2, 4 columns) and return the directory.

    Entity pools are split in halves: training draws from the first half only, dev/test from both halves,
    so about half of held-out entities are unseen names.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    full = {"FIRST": FIRST, "LAST": LAST, "LOC": LOC, "ORG": ORG, "MISC": MISC}
    seen = {k: v[: len(v) // 2] for k, v in full.items()}
    for name, count, pool in (("train", n_train, seen), ("dev", n_dev, full), ("test", n_test, full)):
        lines = ["-DOCSTART- -X- -X- O", ""]
        for _ in range(count):
            lines += [f"{token} NN O {tag}" for token, tag in _sentence(rng, pool)] + [""]
        tmp = directory / f".{name}.txt.{os.getpid()}.tmp"  # concurrent first runs of a sweep each write their own
        tmp.write_text("\n".join(lines), encoding="utf-8")
        tmp.replace(directory / f"{name}.txt")
    return directory


class SyntheticNERTask(NERTask):
    """The generated NER task; files are written under `task.data_dir` (default: the ptrain cache)."""

    def __init__(self, name: str = "synthetic_ner", data_dir: str | None = None, max_length: int = 64,
                 n_train: int = 1500, n_dev: int = 300, n_test: int = 300, seed: int = 0) -> None:
        from ptrain.paths import cache_dir

        target = Path(data_dir) if data_dir else cache_dir() / f"synthetic_ner-{n_train}-{n_dev}-{n_test}-{seed}"
        if not (target / "test.txt").exists():
            write_synthetic_ner(target, n_train, n_dev, n_test, seed)
        super().__init__(name, str(target), max_length, labels=CONLL_LABELS)
