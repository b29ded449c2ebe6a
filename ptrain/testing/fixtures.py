"""Writers of tiny, well-formed data files in each official benchmark format.

Tests and smoke runs must train every task end to end without external data, so these writers produce
files byte-compatible with the real layouts (the ones :mod:`ptrain.readers` parses) and *learnable*: each
label follows a simple lexical cue, so a tiny model trained for a few steps beats chance.

======================  ======================================================================
writer                  cue that decides the label
======================  ======================================================================
SST-2                   sentiment word (``great`` vs ``awful``)
MRPC                    sentence 2 rewords sentence 1 (paraphrase) or is about something else
BoolQ                   ``always`` (True) vs ``never`` (False) in the passage
CB                      ``knows`` (entailment) / ``doubts`` (contradiction) / ``wonders whether``
RTE                     ``not`` in the hypothesis (not_entailment)
COPA                    the right choice comes from a fixed pool of plausible outcomes
WiC                     sentence 2's context words (``money`` sense vs ``river`` sense)
WSC                     span1 is a person name (True) or an object (False)
MultiRC                 right options name the passage's city; wrong ones another city / ``Nowhere``
ReCoRD                  the answer is the person before ``won`` in the passage
SQuAD                   answers are the capital / the product named in a one-paragraph context
SRL / OntoNotes / NER   entity and argument words come from fixed lists at fixed template slots
======================  ======================================================================

Every writer takes a directory (created if needed), split sizes and a ``seed``; the output depends only
on those (string-seeded ``random.Random``), and it returns ``{split: path}`` of the files written.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "iob2_to_bioes",
    "iob2_to_iob1",
    "write_conll",
    "write_glue_tsv",
    "write_ontonotes",
    "write_squad",
    "write_srl",
    "write_superglue",
]

PathLike = str | os.PathLike[str]

# ----------------------------------------------------------------------------------------------- vocab

PERSONS = ["John", "Mary", "Alice", "Peter", "Laura", "David", "Sarah", "James"]
SURNAMES = ["Smith", "Brown", "Chen", "Jones", "Garcia", "Miller"]
CITIES = ["Paris", "Berlin", "Tokyo", "Madrid", "Cairo", "Lima", "Oslo", "Rome"]
COUNTRIES = {
    "France": "Paris",
    "Germany": "Berlin",
    "Japan": "Tokyo",
    "Spain": "Madrid",
    "Egypt": "Cairo",
    "Peru": "Lima",
    "Norway": "Oslo",
    "Italy": "Rome",
}
ORGS = [["Acme", "Corp"], ["United", "Nations"], ["Google"], ["Reuters"], ["Red", "Cross"]]
MISC_ADJ = ["German", "French", "Olympic"]
MISC_EVENTS = [["World", "Cup"], ["Grand", "Prix"], ["Open"]]
NOUNS = ["movie", "film", "story", "plot", "show", "book"]
POSITIVE = ["great", "wonderful", "excellent", "delightful", "brilliant", "charming"]
NEGATIVE = ["awful", "terrible", "boring", "dreadful", "dull", "clumsy"]
OBJECTS = ["table", "box", "chair", "bag", "piano", "rock"]
PRODUCTS = ["cheese", "wine", "music", "cars", "tea", "art"]


def _rng(seed: int, *salt: str) -> random.Random:
    """A generator per (seed, task, split): splits differ, and reruns give the same files."""
    return random.Random(":".join([str(seed), *salt]))


def _balanced(rng: random.Random, n: int, k: int) -> list[int]:
    """``n`` class ids over ``k`` classes, as balanced as possible, in random order (all classes show up)."""
    ids = [i % k for i in range(n)]
    rng.shuffle(ids)
    return ids


class _Cycle:
    """Draw from ``items`` in shuffled rounds, so every cue word shows up once ``len(items)`` draws are made.

    Plain random choice can leave a cue word out of a small training split while it appears in dev, which
    no model can learn; cycling makes even 12-example splits cover the vocabulary.
    """

    def __init__(self, rng: random.Random, items: list[str]) -> None:
        self.rng = rng
        self.items = list(items)
        self.queue: list[str] = []

    def __call__(self) -> str:
        if not self.queue:
            self.queue = self.rng.sample(self.items, len(self.items))
        return self.queue.pop()


def _dir(directory: PathLike) -> Path:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    return path


# ------------------------------------------------------------------------------------------ SuperGLUE


def _boolq(rng: random.Random, i: int, label: int) -> dict[str, Any]:
    noun, adj = rng.choice(NOUNS), rng.choice(POSITIVE + NEGATIVE)
    city = rng.choice(CITIES)
    adverb = "always" if label else "never"
    passage = (
        f"The {noun} ({city}) -- The {noun} from {city} is {adverb} {adj}. "
        f"It was first shown in {rng.randint(1950, 2020)}."
    )
    return {
        "question": f"is the {noun} from {city} {adj}",
        "passage": passage,
        "idx": i,
        "label": bool(label),
    }


CB_VERBS = {"entailment": "knows that", "contradiction": "doubts that", "neutral": "wonders whether"}


def _cb(rng: random.Random, i: int, label: int) -> dict[str, Any]:
    name, noun, adj = rng.choice(PERSONS), rng.choice(NOUNS), rng.choice(POSITIVE + NEGATIVE)
    gold = list(CB_VERBS)[label]
    premise = f"B: What about the {noun}? A: Well, {name} {CB_VERBS[gold]} the {noun} was {adj}."
    return {"premise": premise, "hypothesis": f"the {noun} was {adj}", "label": gold, "idx": i}


def _rte(rng: random.Random, i: int, label: int) -> dict[str, Any]:
    name, noun, city = rng.choice(PERSONS), rng.choice(OBJECTS), rng.choice(CITIES)
    premise = f"{name} {rng.choice(SURNAMES)} bought a new {noun} in {city} last year, officials said."
    if label == 0:
        hypothesis, gold = f"{name} bought a {noun}.", "entailment"
    else:
        hypothesis, gold = f"{name} did not buy a {noun}.", "not_entailment"
    return {"premise": premise, "hypothesis": hypothesis, "label": gold, "idx": i}


COPA_ITEMS = [
    ("The glass fell off the table.", "effect", "The glass broke.", "The glass sang a song."),
    ("The man turned on the faucet.", "effect", "Water flowed from the tap.", "The tap turned blue."),
    ("The girl was hungry.", "effect", "She ate a sandwich.", "She painted the fence."),
    ("It started to rain.", "effect", "The street got wet.", "The street got longer."),
    ("The boy was tired.", "cause", "He stayed up all night.", "He ate an apple."),
    ("The ice melted.", "cause", "The sun came out.", "The dog barked."),
    ("The woman smiled.", "cause", "She heard good news.", "She lost her keys."),
    ("The car stopped.", "cause", "It ran out of fuel.", "It was painted red."),
]


def _copa(rng: random.Random, i: int, label: int) -> dict[str, Any]:
    premise, question, right, wrong = rng.choice(COPA_ITEMS)
    choices = [wrong, right] if label == 1 else [right, wrong]
    return {
        "premise": premise,
        "choice1": choices[0],
        "choice2": choices[1],
        "question": question,
        "label": label,
        "idx": i,
    }


WIC_WORDS = {
    "bank": (
        ["She put her money in the bank.", "The bank gave him a loan for money."],
        ["They had a picnic on the river bank.", "The river bank was muddy after the flood."],
    ),
    "bat": (
        ["He swung the bat and hit the ball.", "The player dropped his bat after the game."],
        ["A bat flew out of the dark cave.", "The bat hunts insects at night in the cave."],
    ),
    "pitch": (
        ["The players ran onto the pitch for the match.", "The football pitch was wet after the match."],
        ["She sang at a very high pitch.", "The pitch of the note was too low to sing."],
    ),
}


def _wic(rng: random.Random, i: int, label: int) -> dict[str, Any]:
    word = rng.choice(sorted(WIC_WORDS))
    sense_a, sense_b = WIC_WORDS[word]
    s1 = rng.choice(sense_a)
    s2 = rng.choice([s for s in sense_a if s != s1]) if label else rng.choice(sense_b)
    ex: dict[str, Any] = {"word": word, "sentence1": s1, "sentence2": s2, "idx": i, "label": bool(label)}
    for k, sentence in (("1", s1), ("2", s2)):
        start = _word_offset(sentence, word)
        ex["start" + k], ex["end" + k] = start, start + len(word)
    ex["version"] = 1.1
    return ex


def _word_offset(sentence: str, word: str) -> int:
    """Character offset of ``word`` as a whole word (so 'bat' is not found inside 'batter')."""
    pos = 0
    for token in sentence.split(" "):
        if token.strip(".,?!").lower() == word:
            return pos
        pos += len(token) + 1
    raise ValueError(f"{word!r} not in {sentence!r}")


def _wsc(rng: random.Random, i: int, label: int) -> dict[str, Any]:
    name, obj = rng.choice(PERSONS), rng.choice(OBJECTS)
    text = f"{name} could not lift the {obj} because he was too weak that day ."
    words = text.split()
    span1 = name if label else obj
    return {
        "text": text,
        "target": {
            "span1_text": span1,
            "span1_index": words.index(span1),
            "span2_text": "he",
            "span2_index": words.index("he"),
        },
        "idx": i,
        "label": bool(label),
    }


def _multirc_passages(rng: random.Random, n_passages: int, labeled: bool) -> list[dict[str, Any]]:
    records = []
    q_idx = a_idx = 0
    for p in range(n_passages):
        questions = []
        text_parts = []
        people = rng.sample(PERSONS, 2)
        for person in people:
            city, other = rng.sample(CITIES, 2)
            text_parts.append(
                f"{person} lives in {city} and works as a {rng.choice(['baker', 'nurse', 'pilot'])}."
            )
            options = [(city, 1), (f"In {city}", 1), (other, 0), ("Nowhere", 0)]
            rng.shuffle(options)
            answers = []
            for text, gold in options:
                answer: dict[str, Any] = {"text": text, "idx": a_idx}
                if labeled:
                    answer["label"] = gold
                answers.append(answer)
                a_idx += 1
            questions.append({"question": f"Where does {person} live?", "answers": answers, "idx": q_idx})
            q_idx += 1
        records.append(
            {"idx": p, "version": 1.1, "passage": {"text": " ".join(text_parts), "questions": questions}}
        )
    return records


def _record_passages(rng: random.Random, n_passages: int, labeled: bool) -> list[dict[str, Any]]:
    records = []
    qa_idx = 0
    for p in range(n_passages):
        winner, loser = rng.sample(PERSONS, 2)
        city = rng.choice(CITIES)
        text = (
            f"{winner} met {loser} in {city} for the final.\n@highlight\n{winner} won the final in {city}"
            f"\n@highlight\n{loser} lost to {winner}"
        )
        entities = []
        for name in (winner, loser, city):
            start = text.find(name)
            while start != -1:
                entities.append({"start": start, "end": start + len(name) - 1})
                start = text.find(name, start + 1)
        qas = []
        for query in (f"@placeholder won the final in {city}", f"{loser} lost the final to @placeholder"):
            qa: dict[str, Any] = {"query": query, "idx": qa_idx}
            if labeled:
                start = text.find(winner)
                qa["answers"] = [{"start": start, "end": start + len(winner) - 1, "text": winner}]
            qas.append(qa)
            qa_idx += 1
        records.append(
            {
                "source": "ptrain-fixture",
                "passage": {"text": text, "entities": entities},
                "qas": qas,
                "idx": p,
            }
        )
    return records


_SUPERGLUE_SINGLE: dict[str, tuple[Callable[[random.Random, int, int], dict[str, Any]], int]] = {
    "boolq": (_boolq, 2),
    "cb": (_cb, 3),
    "rte": (_rte, 2),
    "copa": (_copa, 2),
    "wic": (_wic, 2),
    "wsc": (_wsc, 2),
}
SUPERGLUE_FIXTURE_TASKS = (*_SUPERGLUE_SINGLE, "multirc", "record")


def write_superglue(
    task: str, directory: PathLike, n_train: int = 32, n_val: int = 16, n_test: int = 8, seed: int = 0
) -> dict[str, Path]:
    """Write ``train.jsonl``, ``val.jsonl``, ``test.jsonl`` (no labels) for a SuperGLUE task.

    For MultiRC and ReCoRD the sizes count passages (MultiRC: 2 questions x 4 options each; ReCoRD:
    2 queries each), as the real files hold one passage per line.
    """
    key = task.lower()
    if key not in SUPERGLUE_FIXTURE_TASKS:
        raise ValueError(f"unknown SuperGLUE task {task!r}: expected one of {SUPERGLUE_FIXTURE_TASKS}")
    out_dir = _dir(directory)
    paths: dict[str, Path] = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        rng = _rng(seed, key, split)
        labeled = split != "test"
        if key == "multirc":
            records = _multirc_passages(rng, n, labeled)
        elif key == "record":
            records = _record_passages(rng, n, labeled)
        else:
            make, n_classes = _SUPERGLUE_SINGLE[key]
            records = [make(rng, i, label) for i, label in enumerate(_balanced(rng, n, n_classes))]
            if not labeled:
                for record in records:
                    record.pop("label")
        paths[split] = _write_jsonl(out_dir / f"{split}.jsonl", records)
    return paths


# ----------------------------------------------------------------------------------------------- GLUE


def _sst2_sentence(rng: random.Random, label: int, adjectives: dict[int, _Cycle]) -> str:
    noun = rng.choice(NOUNS)
    adj = adjectives[label]()
    frame = rng.choice(
        [
            "the {n} is {a} .",
            "this {n} is so {a} , really .",
            "the {n} was {a} overall .",
            "i found the {n} {a} .",
        ]
    )
    return frame.format(n=noun, a=adj) + " "  # real SST-2 rows keep a space before the tab


MRPC_TEMPLATES = [
    (
        '{p} said the {o} was "too expensive" for the city.',
        '{p} stated that the {o} was "too costly" for the city.',
    ),
    ("Shares of {org} rose 5 percent on Monday.", "{org} stock gained 5 percent on Monday."),
    ("{p} will visit {c} next week.", "Next week {p} is going to travel to {c}."),
    ("The {o} was sold in {c} for $2.5 million.", "Someone in {c} bought the {o} for $2.5 million."),
]


def _mrpc_pair(rng: random.Random, label: int) -> tuple[str, str]:
    fill = {
        "p": f"{rng.choice(PERSONS)} {rng.choice(SURNAMES)}",
        "o": rng.choice(OBJECTS),
        "org": " ".join(rng.choice(ORGS)),
        "c": rng.choice(CITIES),
    }
    i = rng.randrange(len(MRPC_TEMPLATES))
    first, second = MRPC_TEMPLATES[i]
    if not label:
        second = MRPC_TEMPLATES[(i + 1 + rng.randrange(len(MRPC_TEMPLATES) - 1)) % len(MRPC_TEMPLATES)][1]
        fill2 = dict(fill, p=f"{rng.choice(PERSONS)} {rng.choice(SURNAMES)}", c=rng.choice(CITIES))
        return first.format(**fill), second.format(**fill2)
    return first.format(**fill), second.format(**fill)


def write_glue_tsv(
    task: str, directory: PathLike, n_train: int = 32, n_dev: int = 16, n_test: int = 8, seed: int = 0
) -> dict[str, Path]:
    """Write GLUE ``train.tsv``, ``dev.tsv``, ``test.tsv`` for ``sst2`` or ``mrpc`` in the official layout.

    MRPC train/dev start with a UTF-8 BOM and some sentences hold bare ``"``, as the real files do.
    """
    key = task.lower().replace("-", "")
    if key not in ("sst2", "mrpc"):
        raise ValueError(f"unknown GLUE fixture task {task!r}: expected 'sst2' or 'mrpc'")
    out_dir = _dir(directory)
    paths: dict[str, Path] = {}
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        rng = _rng(seed, key, split)
        labels = _balanced(rng, n, 2)
        rows: list[str] = []
        if key == "sst2":
            adjectives = {0: _Cycle(rng, NEGATIVE), 1: _Cycle(rng, POSITIVE)}
            rows.append("index\tsentence" if split == "test" else "sentence\tlabel")
            for i, label in enumerate(labels):
                sentence = _sst2_sentence(rng, label, adjectives)
                rows.append(f"{i}\t{sentence.strip()}" if split == "test" else f"{sentence}\t{label}")
            bom = ""
        else:
            first = "index" if split == "test" else "Quality"
            rows.append(f"{first}\t#1 ID\t#2 ID\t#1 String\t#2 String")
            for i, label in enumerate(labels):
                s1, s2 = _mrpc_pair(rng, label)
                id1, id2 = rng.randrange(10**5, 10**7), rng.randrange(10**5, 10**7)
                rows.append(f"{i if split == 'test' else label}\t{id1}\t{id2}\t{s1}\t{s2}")
            bom = "" if split == "test" else "\ufeff"
        path = out_dir / f"{split}.tsv"
        path.write_text(bom + "\n".join(rows) + "\n", encoding="utf-8")
        paths[split] = path
    return paths


# ---------------------------------------------------------------------------------------------- SQuAD


def _squad_article(
    rng: random.Random, country: str, version: str, n_golds: int, q_counter: list[int]
) -> dict:
    capital = COUNTRIES[country]
    product = rng.choice(PRODUCTS)
    context = (
        f"{capital} is the capital of {country}. It has {rng.randint(1, 9)} million inhabitants "
        f"and is known for its {product}. Many visitors come to {capital} every year."
    )

    def qa(question: str, answer: str | None) -> dict[str, Any]:
        q_counter[0] += 1
        item: dict[str, Any] = {"id": f"q{q_counter[0]:05d}", "question": question}
        if answer is None:
            item["answers"] = []
            item["plausible_answers"] = [{"text": capital, "answer_start": context.index(capital)}]
        else:
            start = context.index(answer)
            # dev files list several (often identical) gold answers; train files one.
            golds = [{"text": answer, "answer_start": start}] * n_golds
            if n_golds > 1 and answer == product:
                golds[-1] = {"text": f"its {product}", "answer_start": context.index(f"its {product}")}
            item["answers"] = golds
        if version == "2.0":
            item["is_impossible"] = answer is None
        return item

    qas = [
        qa(f"What is the capital of {country}?", capital),
        qa(f"What is {capital} known for?", product),
    ]
    if version == "2.0":
        other = rng.choice([c for c in COUNTRIES if c != country])
        qas.append(qa(f"What is the capital of {other}?", None))
    return {"title": country, "paragraphs": [{"context": context, "qas": qas}]}


def write_squad(
    directory: PathLike, version: str = "1.1", n_train: int = 16, n_dev: int = 8, seed: int = 0
) -> dict[str, Path]:
    """Write SQuAD ``train.json`` and ``dev.json`` (``n_*`` paragraphs, 2 questions each, plus one
    unanswerable question each for ``version="2.0"``) with ``answer_start`` consistent with the context."""
    if version not in ("1.1", "2.0"):
        raise ValueError(f"version must be '1.1' or '2.0', got {version!r}")
    out_dir = _dir(directory)
    paths: dict[str, Path] = {}
    q_counter = [0]
    for split, n, n_golds in (("train", n_train, 1), ("dev", n_dev, 3)):
        rng = _rng(seed, "squad", version, split)
        countries = [rng.choice(sorted(COUNTRIES)) for _ in range(n)]
        data = [_squad_article(rng, c, version, n_golds, q_counter) for c in countries]
        doc = {"version": "1.1" if version == "1.1" else "v2.0", "data": data}
        path = out_dir / f"{split}.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        paths[split] = path
    return paths


# ------------------------------------------------------------------------------------------------ SRL

_CONLL12_ROLES = {"A0": "ARG0", "A1": "ARG1", "A2": "ARG2", "AM-TMP": "ARGM-TMP", "AM-LOC": "ARGM-LOC"}
_SRL_FILES = {
    "conll05": {
        "train": "conll05.train.txt",
        "dev": "conll05.devel.txt",
        "test_wsj": "conll05.test.wsj.txt",
        "test_brown": "conll05.test.brown.txt",
    },
    "conll12": {"train": "conll2012.train.txt", "dev": "conll2012.devel.txt", "test": "conll2012.test.txt"},
}
_VERBS = ["ate", "bought", "sold", "painted", "moved"]
_TIMES = [["yesterday"], ["last", "week"], ["on", "Monday"]]


def _role_tags(role: str, n: int) -> list[str]:
    return [f"B-{role}"] + [f"I-{role}"] * (n - 1)


def _srl_sentence(rng: random.Random) -> list[tuple[list[str], int, list[str]]]:
    """One sentence as (tokens, predicate index, tags) per predicate (1 or 2 predicates)."""
    agent = [rng.choice(PERSONS)] + ([rng.choice(SURNAMES)] if rng.random() < 0.5 else [])
    theme = ["the", rng.choice(OBJECTS)]
    verb = rng.choice(_VERBS)
    when = rng.choice(_TIMES)
    where = ["in", rng.choice(CITIES)] if rng.random() < 0.5 else []
    clause = agent + [verb] + theme + where + when
    clause_tags = (
        _role_tags("A0", len(agent))
        + ["B-V"]
        + _role_tags("A1", len(theme))
        + (_role_tags("AM-LOC", len(where)) if where else [])
        + _role_tags("AM-TMP", len(when))
    )
    if rng.random() < 0.5:
        return [(clause + ["."], len(agent), clause_tags + ["O"])]
    speaker = [rng.choice(PERSONS)]
    tokens = speaker + ["said"] + clause + ["."]
    said = _role_tags("A0", 1) + ["B-V"] + _role_tags("A1", len(clause)) + ["O"]
    inner = ["O", "O"] + clause_tags + ["O"]
    return [(tokens, 1, said), (tokens, 2 + len(agent), inner)]


def write_srl(
    directory: PathLike,
    dataset: str = "conll05",
    n_train: int = 24,
    n_dev: int = 12,
    n_test: int = 12,
    seed: int = 0,
) -> dict[str, Path]:
    """Write SRL files in the P-Tuning v2 ``<index> tokens ||| tags`` layout (see :mod:`ptrain.readers.srl`).

    ``n_*`` count sentences; about half have two predicates (``X said Y verb Z``) and so two lines.
    ``conll12`` writes CoNLL-2012 role names (``ARG0``, ``ARGM-TMP``) instead of CoNLL-2005 ones.
    """
    if dataset not in _SRL_FILES:
        raise ValueError(f"unknown SRL dataset {dataset!r}: expected one of {sorted(_SRL_FILES)}")
    out_dir = _dir(directory)
    sizes = {"train": n_train, "dev": n_dev}
    paths: dict[str, Path] = {}
    for split, name in _SRL_FILES[dataset].items():
        rng = _rng(seed, dataset, split)
        lines = []
        for _ in range(sizes.get(split, n_test)):
            for tokens, index, tags in _srl_sentence(rng):
                if dataset == "conll12":
                    tags = [t[:2] + _CONLL12_ROLES.get(t[2:], t[2:]) if t != "O" else t for t in tags]
                lines.append(f"{index} {' '.join(tokens)} ||| {' '.join(tags)}")
        path = out_dir / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths[split] = path
    return paths


# ------------------------------------------------------------------------------------ NER (sentences)


def _ner_sentence(rng: random.Random, types: dict[str, str]) -> list[tuple[str, str, str]]:
    """(token, POS, IOB2 tag) triples of one template sentence; ``types`` maps the template's entity kinds
    (PER, LOC, ORG, NORP, EVENT, optional DATE and NUM) to type names (CoNLL-2003 vs OntoNotes)."""

    def ent(kind: str, words: list[str], pos: str = "NNP") -> list[tuple[str, str, str]]:
        label = types[kind]
        return [(w, pos, ("B-" if j == 0 else "I-") + label) for j, w in enumerate(words)]

    def plain(words: str, pos: str) -> list[tuple[str, str, str]]:
        return [(w, p, "O") for w, p in zip(words.split(), pos.split())]

    person = [rng.choice(PERSONS)] + ([rng.choice(SURNAMES)] if rng.random() < 0.5 else [])
    city, org = rng.choice(CITIES), rng.choice(ORGS)
    frame = rng.randrange(4)
    if frame == 0:
        out = ent("PER", person) + plain("visited", "VBD") + ent("LOC", [city])
        if "DATE" in types:
            out += plain("on", "IN") + ent("DATE", ["Monday"])
    elif frame == 1:
        out = (
            ent("ORG", org)
            + plain("hired", "VBD")
            + ent("PER", person)
            + plain("in", "IN")
            + ent("LOC", [city])
        )
    elif frame == 2:
        # two MISC entities touch: IOB1 needs a B- tag on the second one.
        out = ent("PER", person) + plain("watched the", "VBD DT") + ent("NORP", [rng.choice(MISC_ADJ)], "JJ")
        out += ent("EVENT", rng.choice(MISC_EVENTS))
    else:
        count = str(rng.randint(2, 90))
        out = plain("The", "DT") + ent("ORG", org) + plain("office in", "NN IN") + ent("LOC", [city])
        out += plain("has", "VBZ") + (ent("NUM", [count], "CD") if "NUM" in types else plain(count, "CD"))
        out += plain("staff", "NNS")
    return out + [(".", ".", "O")]


def iob2_to_iob1(tags: list[str]) -> list[str]:
    """IOB2 → IOB1: ``I-`` everywhere, ``B-`` only where an entity directly follows one of the same type."""
    out = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-"):
            prev = tags[i - 1] if i else "O"
            out.append(tag if prev != "O" and prev[2:] == tag[2:] else "I-" + tag[2:])
        else:
            out.append(tag)
    return out


def iob2_to_bioes(tags: list[str]) -> list[str]:
    """IOB2 → BIOES: single-token entities become ``S-``, the last token of a longer one ``E-``."""
    out = []
    for i, tag in enumerate(tags):
        nxt = tags[i + 1] if i + 1 < len(tags) else "O"
        ends = not nxt.startswith("I-")
        if tag.startswith("B-"):
            out.append(("S-" if ends else "B-") + tag[2:])
        elif tag.startswith("I-"):
            out.append(("E-" if ends else "I-") + tag[2:])
        else:
            out.append(tag)
    return out


def _chunks(pos_tags: list[str]) -> list[str]:
    """Crude IOB2 chunk tags from POS (NP runs, single-token VP/PP, O for punctuation)."""
    out = []
    prev = "O"
    for pos in pos_tags:
        kind = {"VBD": "VP", "VBZ": "VP", "IN": "PP", ".": None}.get(pos, "NP")
        if kind is None:
            tag = "O"
        elif kind == "NP" and prev == "NP":
            tag = "I-NP"
        else:
            tag = f"B-{kind}"
        out.append(tag)
        prev = kind or "O"
    return out


# NORP + EVENT both map to MISC in CoNLL-2003, so "German Grand Prix" is two touching MISC entities.
_CONLL_TYPES = {"PER": "PER", "LOC": "LOC", "ORG": "ORG", "NORP": "MISC", "EVENT": "MISC"}
_CONLL_SCHEMES = {"iob2": lambda t: t, "iob1": iob2_to_iob1, "bioes": iob2_to_bioes}


def write_conll(
    directory: PathLike,
    scheme: str = "iob2",
    n_train: int = 32,
    n_dev: int = 16,
    n_test: int = 16,
    seed: int = 0,
) -> dict[str, Path]:
    """Write CoNLL-2003-style ``train.txt``, ``dev.txt``, ``test.txt``: ``token POS chunk NER`` lines.

    Each file starts with ``-DOCSTART- -X- -X- O`` and a blank line; sentences are blank-line separated.
    ``scheme`` sets the NER (and, for ``iob1``, the chunk) tag scheme: ``iob2``, ``iob1`` or ``bioes``.
    """
    if scheme not in _CONLL_SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}: expected one of {sorted(_CONLL_SCHEMES)}")
    convert = _CONLL_SCHEMES[scheme]
    out_dir = _dir(directory)
    paths: dict[str, Path] = {}
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        rng = _rng(seed, "conll", split)
        blocks = ["-DOCSTART- -X- -X- O"]
        for _ in range(n):
            sent = _ner_sentence(rng, _CONLL_TYPES)
            pos = [p for _, p, _ in sent]
            chunks = _chunks(pos)
            if scheme == "iob1":
                chunks = iob2_to_iob1(chunks)
            ner = convert([t for _, _, t in sent])
            blocks.append("\n".join(f"{w} {p} {c} {t}" for (w, p, _), c, t in zip(sent, chunks, ner)))
        path = out_dir / f"{split}.txt"
        path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
        paths[split] = path
    return paths


_ONTO_TYPES = {
    "PER": "PERSON",
    "LOC": "GPE",
    "ORG": "ORG",
    "NORP": "NORP",
    "EVENT": "EVENT",
    "DATE": "DATE",
    "NUM": "CARDINAL",
}


def write_ontonotes(
    directory: PathLike, n_train: int = 32, n_dev: int = 16, n_test: int = 16, seed: int = 0
) -> dict[str, Path]:
    """Write ``{train,dev,test}.sd.conllx``: 11 tab-separated CoNLL-X columns with the NER tag last.

    The dependency columns are a flat but valid tree (every token attached to the verb, the verb to 0).
    """
    out_dir = _dir(directory)
    paths: dict[str, Path] = {}
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        rng = _rng(seed, "ontonotes", split)
        blocks = []
        for _ in range(n):
            sent = _ner_sentence(rng, _ONTO_TYPES)
            root = next(i for i, (_, p, _) in enumerate(sent) if p.startswith("VB")) + 1
            lines = []
            for i, (word, pos, tag) in enumerate(sent, start=1):
                head, rel = (0, "root") if i == root else (root, "punct" if pos == "." else "dep")
                lines.append("\t".join([str(i), word, "_", pos, pos, "_", str(head), rel, "_", "_", tag]))
            blocks.append("\n".join(lines))
        path = out_dir / f"{split}.sd.conllx"
        path.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
        paths[split] = path
    return paths
