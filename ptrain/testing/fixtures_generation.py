"""A small data-to-text set in the E2E NLG Challenge format (csv with `mr` and `ref` columns).

Meaning representations list restaurant attributes (`name[The Eagle], eatType[pub], food[French], ...`); each
reference verbalises them with one of a few fixed templates, so the mapping is learnable by a small model and
ROUGE/BLEU rise as it learns. Dev and test repeat each meaning representation with two references, as the real
E2E dev/test sets do (several references per input), which the metrics use as multiple references.

Files: `trainset.csv`, `devset.csv`, `testset_w_refs.csv` (the official E2E file names).
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

NAMES = ["The Eagle", "The Mill", "Blue Spice", "The Punter", "Aromi", "Loch Fyne", "Zizzi", "The Vaults",
         "Alimentum", "Cotto", "Fitzbillies", "Giraffe", "Strada", "The Golden Curry", "Wildwood", "Browns"]
EAT_TYPES = ["restaurant", "coffee shop", "pub"]
FOODS = ["French", "Italian", "Chinese", "Indian", "English", "Japanese", "Fast food"]
PRICES = ["cheap", "moderate", "high"]
AREAS = ["city centre", "riverside"]

TEMPLATES = [
    "{name} is a {price} {food} {eat} in the {area} area.",
    "In the {area} area there is a {price} {eat} called {name} serving {food} food.",
    "{name} is a {eat} in the {area} that serves {price} {food} food.",
]


def _record(rng: random.Random) -> dict[str, str]:
    return {"name": rng.choice(NAMES), "eat": rng.choice(EAT_TYPES), "food": rng.choice(FOODS),
            "price": rng.choice(PRICES), "area": rng.choice(AREAS)}


def meaning_representation(record: dict[str, str]) -> str:
    return (f"name[{record['name']}], eatType[{record['eat']}], food[{record['food']}], "
            f"priceRange[{record['price']}], area[{record['area']}]")


def write_e2e(directory: str | os.PathLike[str], n_train: int = 600, n_dev: int = 60, n_test: int = 60,
              seed: int = 0) -> dict[str, Path]:
    """Write the three E2E csv files; dev/test give each input two references (consecutive rows)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"e2e-{seed}")
    written = {}
    for split, filename, count, refs in (("train", "trainset.csv", n_train, 1),
                                         ("validation", "devset.csv", n_dev, 2),
                                         ("test", "testset_w_refs.csv", n_test, 2)):
        rows = []
        for _ in range(count):
            record = _record(rng)
            for template in rng.sample(TEMPLATES, refs):
                rows.append((meaning_representation(record), template.format(**record)))
        path = directory / filename
        tmp = path.with_name(f".{filename}.{os.getpid()}.tmp")  # concurrent first runs each write their own
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
            writer.writerow(["mr", "ref"])
            writer.writerows(rows)
        tmp.replace(path)
        written[split] = path
    return written
