"""benchmarks/plain_loop.py (issue 15): the reference loop reads, samples and scores CoNLL as ptrain does, so a gap
between the two is a training difference, not a data or metric one."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from benchmarks import plain_loop as pl

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O
"""


def _write(tmp_path: Path, sentences: int) -> Path:
    rng = random.Random(3)
    blocks = [CONLL]
    for i in range(sentences):
        tag = rng.choice(["B-PER", "B-LOC", "O"])
        blocks.append(f"w{i} NN B-NP {tag}\nx{i} NN I-NP {'I-' + tag[2:] if tag != 'O' else 'O'}\n")
    path = tmp_path / "train.txt"
    path.write_text("\n".join(blocks))
    return path


def test_reader_and_seeded_sample_match_ptrain(tmp_path: Path) -> None:
    from ptrain.tasks.token import NERTask

    _write(tmp_path, 40)
    for name in ("dev.txt", "test.txt"):
        (tmp_path / name).write_text(CONLL)
    task = NERTask("conll03", data_dir=str(tmp_path), labels=pl.LABELS, max_train_examples=17,
                   files={"train": "train.txt", "validation": "dev.txt", "test": "test.txt"})
    ours = pl.sample(pl.read_conll(tmp_path / "train.txt"), 17)
    theirs = task.examples("train")
    assert len(ours) == len(theirs) == 17
    for (words, tags), row in zip(ours, theirs):
        assert words == row["tokens"]
        assert tags == [t if isinstance(t, str) else pl.LABELS[t] for t in row["tags"]]


def test_own_span_f1_equals_seqeval() -> None:
    from seqeval.metrics import f1_score

    rng = random.Random(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(300)]
    pred = [[t if rng.random() < 0.7 else rng.choice(tags) for t in g] for g in gold]
    assert pl.own_f1(gold, pred) == pytest.approx(f1_score(gold, pred), abs=1e-12)


def test_first_subword_labels() -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(pl.default_model())
    [f] = pl.encode([(["Blackburnshire", "rejects"], ["B-LOC", "O"])], tok, 128)
    words = tok(["Blackburnshire", "rejects"], is_split_into_words=True).word_ids()
    assert words.count(0) > 1  # the first word is split
    labelled = [i for i, label in enumerate(f["labels"]) if label != -100]
    assert labelled == f["first"] == [words.index(0), words.index(1)]
    assert [f["labels"][i] for i in labelled] == [pl.LABELS.index("B-LOC"), 0]


# ---- causes of the gap (issue 15) -------------------------------------------------------------------------------

def _conll_like_lengths(n: int = 3000) -> list[int]:
    """Sentence lengths shaped like CoNLL-2003 train: a fifth are 1-4-word headlines and score lines."""
    rng = random.Random(5)
    return [rng.randint(1, 4) if rng.random() < 0.2 else rng.randint(8, 40) for _ in range(n)]


def _short_loss_share(lengths: list[int], group: bool) -> tuple[float, float]:
    """(share of labelled tokens in sentences of <= 4 words, share of the loss weight they get) when each batch's
    loss is the mean over its labelled tokens, as ptrain's Task.loss is."""
    from ptrain.data import LengthGroupedBatches

    weight = {}
    for batch in LengthGroupedBatches(lengths, 32, seed=1, group=group)._all_batches():
        tokens = sum(lengths[i] for i in batch)
        weight.update({i: lengths[i] / tokens for i in batch})
    short = [i for i, n in enumerate(lengths) if n <= 4]
    return sum(lengths[i] for i in short) / sum(lengths), sum(weight[i] for i in short) / sum(weight.values())


def test_length_grouping_overweights_short_sentences() -> None:
    """The mechanism: grouped batches of 1-4-word sentences weigh as much as batches of long ones, so the short
    sentences' tokens get several times their share of the loss; shuffled batches keep it near their share."""
    lengths = _conll_like_lengths()
    token_share, grouped = _short_loss_share(lengths, group=True)
    _, shuffled = _short_loss_share(lengths, group=False)
    assert grouped > 2.5 * token_share
    assert shuffled < 1.3 * token_share


def test_official_grids_keep_their_pinned_recipe(tmp_path: Path) -> None:
    """Defaults do not leak into an official-recipe grid: it pins its schedule and weight decay."""
    from _train_utils import compose_run

    cfg = compose_run(tmp_path, "experiment=ner/bert_large_conll03", fast=False)
    assert cfg.optim.schedule == "exponential"
    assert cfg.optim.weight_decay == 0.0


def test_grouped_batches_keep_each_tokens_loss_weight() -> None:
    """A labelled token's gradient must not depend on how many labelled tokens share its batch. The batch mean gives a
    token in a batch of one-word sentences 20x the weight of one in a batch of 20-word ones; the fixed divisor
    (`tokens_per_batch`, what length-grouped runs use) gives both the same, and equals the batch mean where the batch
    holds exactly that many tokens."""
    import torch

    from ptrain.tasks.token import NERTask

    task = NERTask("conll03", labels=pl.LABELS, hub={"path": "unused"})  # nothing is read: the loss alone
    assert task.token_loss
    mean_grads, fixed_grads, losses = [], [], []
    for words in (1, 20):
        for norm, grads in ((None, mean_grads), (320.0, fixed_grads)):
            logits = torch.randn(32, words, len(pl.LABELS), generator=torch.Generator().manual_seed(words),
                                 requires_grad=True)
            labels = torch.zeros(32, words, dtype=torch.long)
            labels[:, 1:] = torch.where(torch.arange(words - 1) % 3 == 0, -100, 2)  # some positions unlabelled
            loss = task.loss(logits, {"labels": labels}, tokens_per_batch=norm)
            loss.backward()
            grads.append(logits.grad[0, 0, 0].item() / torch.softmax(logits[0, 0].detach(), -1)[0].sub(1).item())
            losses.append((words, norm, loss.item(), labels))
    labelled = [int((lab != -100).sum()) for words, norm, _, lab in losses if norm is None]  # 32 and 32 * 13
    assert mean_grads[0] == pytest.approx(1 / labelled[0]) and mean_grads[1] == pytest.approx(1 / labelled[1])
    assert fixed_grads[0] == pytest.approx(1 / 320) == pytest.approx(fixed_grads[1])
    # with as many labelled tokens as the divisor, the two losses agree
    logits = torch.randn(32, 10, len(pl.LABELS))
    labels = torch.randint(0, len(pl.LABELS), (32, 10))
    assert task.loss(logits, {"labels": labels}, tokens_per_batch=320.0).item() == \
        pytest.approx(task.loss(logits, {"labels": labels}).item(), rel=1e-6)


def test_grouped_runs_divide_the_summed_token_loss_by_the_epochs_mean(tmp_path: Path) -> None:
    """`data.group_by_length=true` on a token task: the data module's divisor is the training split's labelled
    positions over its batches (counted by hand here), the loss of each training step is the batch's summed
    cross-entropy over that divisor, and shuffled runs (the default) keep the batch mean."""
    import torch
    import torch.nn.functional as F
    from _train_utils import compose_run
    from lightning.pytorch.callbacks import Callback

    from ptrain.train import run

    class Record(Callback):
        """The batch's summed cross-entropy and labelled count at the step's own weights (dropout is off, so the
        forward is the step's), then the loss the step returned."""

        def __init__(self) -> None:
            self.seen: list[list[float]] = []

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            with torch.no_grad():
                logits = module(batch)
            summed = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1),
                                     ignore_index=-100, reduction="sum").item()
            self.seen.append([summed, float((batch["labels"] != -100).sum())])

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.seen[-1].append(outputs["loss"].item())

    for grouped in (True, False):
        record = Record()
        cfg = compose_run(tmp_path / str(grouped), f"data.group_by_length={grouped}", "trainer.max_epochs=1",
                          "method.length=4", "method.dropout=0.0", "head_dropout=0.0", "method.backbone_dropout=false")
        _, _, trainer = run(cfg, callbacks=[record])
        dm = trainer.datamodule
        train = dm.features["train"]
        hand = sum(sum(1 for t in f["labels"] if t != -100) for f in train) / -(-len(train) // cfg.data.batch_size)
        assert dm.tokens_per_batch == (pytest.approx(hand) if grouped else None)
        if grouped:  # grouped batches hold 9-15-word sentences each: their counts stray from the mean
            assert max(abs(count / hand - 1) for _, count, _ in record.seen) > 0.1
        for summed, count, loss in record.seen:
            assert loss == pytest.approx(summed / (hand if grouped else count), rel=1e-5)


def test_head_init_normal_starts_the_head_as_hf_task_models_do(tmp_path: Path) -> None:
    """`head_init=normal`: N(0, initializer_range) weights and zero bias, as BertForTokenClassification (the plain
    loop's head); `torch` keeps nn.Linear's uniform weights and non-zero bias."""
    import torch
    from _train_utils import compose_run

    from ptrain.heads import build_head
    from ptrain.train import build

    torch.manual_seed(0)
    normal = build_head("token", 384, 9, 0.1, "first", init="normal", init_std=0.02).classifier
    default = build_head("token", 384, 9, 0.1, "first").classifier
    assert torch.count_nonzero(normal.bias) == 0 and abs(normal.weight.std().item() - 0.02) < 0.001
    assert torch.count_nonzero(default.bias) == 9 and default.weight.abs().max() <= 384 ** -0.5
    _, model, _ = build(compose_run(tmp_path, "head_init=normal", "+model.config.initializer_range=0.05"))
    assert abs(model.head.classifier.weight.std().item() - 0.05) < 0.005
    with pytest.raises(ValueError, match="head_init must be one of torch, normal; got 'xavier'"):
        build(compose_run(tmp_path, "head_init=xavier"))


# ---- the defaults are the plain loop's recipe (issue 15): each fails on the old defaults -------------------------

def test_default_batches_give_short_sentences_their_share_of_the_loss(tmp_path: Path) -> None:
    """Old default `data.group_by_length=true`: CoNLL-shaped sentences of <= 4 words got >2.5x their token share."""
    from _train_utils import compose_run

    from ptrain.data import LengthGroupedBatches

    cfg = compose_run(tmp_path, fast=False)
    lengths = _conll_like_lengths()
    sampler = LengthGroupedBatches(lengths, cfg.data.batch_size, seed=1, group=cfg.data.group_by_length)
    weight = {}
    for batch in sampler._all_batches():
        tokens = sum(lengths[i] for i in batch)
        weight.update({i: lengths[i] / tokens for i in batch})
    short = [i for i, n in enumerate(lengths) if n <= 4]
    token_share = sum(lengths[i] for i in short) / sum(lengths)
    assert sum(weight[i] for i in short) / sum(weight.values()) < 1.3 * token_share


def test_a_default_run_steps_at_the_methods_lr_with_the_loops_weight_decay(tmp_path: Path) -> None:
    """Old default `optim.schedule=linear`: a one-epoch run's mean lr was half of `method.lr` (and wd 0)."""
    from _train_utils import compose_run
    from lightning.pytorch.callbacks import Callback

    from ptrain.train import run

    seen: list[tuple[float, float]] = []

    class RecordLR(Callback):
        def on_train_batch_start(self, trainer, *_args) -> None:
            group = trainer.optimizers[0].param_groups[0]
            seen.append((group["lr"], group["weight_decay"]))

    cfg = compose_run(tmp_path, "trainer.max_epochs=1", "method.length=4")
    run(cfg, callbacks=[RecordLR()])
    assert cfg.method.lr == 2e-2  # ptv2's default: the PEFT prefix loop's lr
    assert len(seen) == 6 and set(seen) == {(2e-2, 0.01)}  # 96 examples / 16: six steps, all at the full lr


def test_the_default_head_starts_as_hf_task_heads_do(tmp_path: Path) -> None:
    """Old default `head_init=torch`: a non-zero uniform bias; now N(0, initializer_range) and zero bias."""
    import torch
    from _train_utils import compose_run

    from ptrain.train import build

    _, model, _ = build(compose_run(tmp_path, "+model.config.initializer_range=0.05"))
    head = model.head.classifier
    assert torch.count_nonzero(head.bias) == 0 and abs(head.weight.std().item() - 0.05) < 0.01


def test_sentence_readers_and_sample_match_ptrain(tmp_path: Path) -> None:
    """SST-2's tsv and RTE's jsonl: the loop reads the same texts and labels, and samples the same rows."""
    import json

    from ptrain.tasks.classification import ClassificationTask

    rng = random.Random(1)
    (tmp_path / "train.tsv").write_text("sentence\tlabel\n" + "".join(
        f"a film {i} , it seems \t{rng.randint(0, 1)}\n" for i in range(30)))
    rows = [{"premise": f"P {i}.", "hypothesis": f"H {i}?", "label": rng.choice(["entailment", "not_entailment"]),
             "idx": i} for i in range(30)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sst2 = ClassificationTask("sst2", ["0", "1"], ["sentence"], format="glue_tsv", data_dir=str(tmp_path),
                              files={"train": "train.tsv"}, max_train_examples=11)
    rte = ClassificationTask("rte", ["entailment", "not_entailment"], ["premise", "hypothesis"],
                             data_dir=str(tmp_path), files={"train": "train.jsonl"}, max_train_examples=11)
    for task, name, fields in ((sst2, "train.tsv", ["sentence"]), (rte, "train.jsonl", ["premise", "hypothesis"])):
        ours = pl.sample(pl.read_sentences(tmp_path / name), 11)
        theirs = task.examples("train")
        assert [(tuple(str(r[f]).strip() for f in fields), str(r["label"])) for r in theirs] == \
            [(tuple(s.strip() for s in texts), label) for texts, label in ours]


def test_against_loop_table_means_gaps_and_ablation_deltas() -> None:
    """benchmarks/against_loop.py: mean ± sample std over seeds, the gap over the seeds both sides ran, the
    ablation's delta against the same seed at the defaults (hand-computed below)."""
    from benchmarks import against_loop as al

    rows = [{"task": "conll03", "side": "loop", "method": "prefix", "seed": 1, "dev": 0.80, "row": ""},
            {"task": "conll03", "side": "loop", "method": "prefix", "seed": 2, "dev": 0.78, "row": ""},
            {"task": "conll03", "side": "ptrain", "method": "ptv2", "seed": 1, "dev": 0.81, "row": ""},
            {"task": "conll03", "side": "ptrain", "method": "ptv2", "seed": 2, "dev": 0.80, "row": ""},
            {"task": "conll03", "side": "ablation", "method": "ptv2", "seed": 1, "dev": 0.70,
             "row": "+ length-grouped batches"}]
    rows += [{"task": "conll03", "side": "ptrain", "method": "finetune", "seed": 1, "dev": 0.86, "row": ""},
             {"task": "conll03", "side": "ptrain", "method": "finetune", "seed": 3, "dev": 0.99, "row": ""}]
    text = al.render(rows)
    # the gap to ptrain's fine-tuning is over the seeds both ran (seed 1 alone): 81 - 86
    assert "conll03 `ptv2` -5.0." in text
    # loop 79.0 ± 1.4 (std of 80, 78 = 1.414); ptrain 80.5 ± 0.7; gap +1.5; ablation 70.0, delta -11.0
    assert "| 79.0 ± 1.4 (80.0, 78.0) | 80.5 ± 0.7 (81.0, 80.0) | +1.5 |" in text
    assert "| conll03 | `ptv2` + length-grouped batches | 70.0 (70.0) | -11.0 |" in text
    cell = al.Cell("sst2", "ptrain", "ptv2", 2, ["data.group_by_length=true"])
    cmd = cell.command(Path("/r"), Path("/o.json"))
    assert "task.max_train_examples=10000" in cmd and "trainer.max_epochs=1" in cmd and cmd[-1] == \
        "data.group_by_length=true" and "hydra.run.dir=/r" in cmd
    loop = al.Cell("rte", "loop", "prompt", 1).command(Path("/r"), Path("/o.json"))
    assert loop[loop.index("--epochs") + 1] == "5" and "--max-train-examples" not in loop


def test_against_loop_cells_with_dotted_overrides_keep_their_own_logs() -> None:
    """Two ablation rows whose names differ only after a dot (`method.lr_0.01`, `method.lr_0.02`) write two logs."""
    from benchmarks import against_loop as al

    a = al.run_paths(Path("/w"), al.Cell("conll03", "ablation", "ptv2", 1, ["method.lr=0.01"]))
    b = al.run_paths(Path("/w"), al.Cell("conll03", "ablation", "ptv2", 1, ["method.lr=0.02"]))
    assert a[1] != b[1] and a[1].name == "ablation-ptv2-s1-method.lr_0.01.log"
    assert a[2].name == "ablation-ptv2-s1-method.lr_0.01.loop.json"
