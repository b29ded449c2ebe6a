"""Zero-shot scores of a verbaliser task: the frozen LM head's choice between the label words, before any training.

    python benchmarks/zero_shot.py model=smollm2-135m task=sst2_verbalizer task.data_dir=../shared/data/glue/SST-2 \
        hydra.run.dir=benchmarks/out/smollm2/sst2_verbalizer/zeroshot/s1 --words terrible,great --words bad,good

`train.py` refuses a run without training steps (its results.json would hold an untrained model's scores as a
trained one's), so the baseline every prompt method starts from is measured here: the same config composition and
`ptrain.train.build` as `train.py` (with `method=head`: no prompt, frozen backbone, nothing trained), the dev split
(and a labelled test split) scored with the task's own metric, and a `results.json` in train.py's layout with
`trainable_params` 0, so `accuracy.py` collects it beside trained runs (its `zeroshot` method runs this script).
`--words A,B` scores other label-word pairs (one per label, in label order) from the same forward pass; they are
printed and stored under `alternatives`.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def compose(overrides: Sequence[str]) -> Any:
    """ptrain/conf/train.yaml with train.py-style overrides; `hydra.run.dir=DIR` becomes the run directory."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    run_dir = next((o.split("=", 1)[1] for o in overrides if o.startswith("hydra.run.dir=")), None)
    if run_dir is None:
        raise SystemExit("zero_shot.py: give hydra.run.dir=DIR (where results.json goes)")
    kept = [o for o in overrides if not o.startswith(("hydra.", "method=", "method."))]  # nothing trains here
    with initialize_config_dir(config_dir=str(ROOT / "ptrain" / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=[*kept, "method=head", f"run_dir={run_dir}"])


def score(cfg: Any, pairs: list[list[str]], batch_size: int = 32) -> dict[str, Any]:
    """Dev (and labelled test) metrics of the untrained model, and the dev accuracy of each alternative pair."""
    import torch
    from omegaconf import OmegaConf

    from ptrain.train import build

    task, model, tokenizer = build(cfg)
    if task.head_kind != "lm":
        raise SystemExit(f"zero_shot.py: task {task.name} is not scored through the LM head (head kind "
                         f"{task.head_kind!r}); use a verbaliser task such as sst2_verbalizer")
    alternatives = [_with_words(task, words).label_token_ids(tokenizer) for words in pairs]
    model.eval()
    metrics: dict[str, float] = {}
    correct, n_val = [0] * len(pairs), 0
    for split, prefix in (("validation", "val"), ("test", "test")):
        rows = task.examples(split) or []
        features = task.encode(rows, tokenizer)
        if not features or all(f["labels"] == -100 for f in features):
            continue  # GLUE/SuperGLUE test files carry no labels
        order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))  # little padding
        metric = task.metric()
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                batch = task.collate([features[i] for i in order[start:start + batch_size]], tokenizer.pad_token_id)
                logits = model(batch["input_ids"], batch["attention_mask"]).float()
                # the task's own reduction (verbalisers: the label words' logits), as the training module's evaluation
                reduce = getattr(task, "metric_inputs", None)
                metric.update(logits if reduce is None else reduce(logits, batch), batch)
                if split == "validation":
                    for k, ids in enumerate(alternatives):
                        picked = logits[:, ids].argmax(-1)
                        correct[k] += int((picked == batch["labels"]).sum())
        metrics.update({f"{prefix}/{k}": float(v) for k, v in metric.compute().items()})
        if split == "validation":
            n_val = len(features)
    return {"task": task, "model": model, "metrics": metrics,
            "alternatives": {",".join(w): correct[k] / max(1, n_val) for k, w in enumerate(pairs)},
            "config": OmegaConf.to_container(cfg, resolve=True)}


def _with_words(task: Any, words: list[str]) -> Any:
    """A shallow copy of the task with other label words."""
    if len(words) != task.num_labels:
        raise SystemExit(f"--words {','.join(words)}: {task.name} has {task.num_labels} labels ({task.labels})")
    other = copy.copy(task)
    other.label_words = list(words)
    return other


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("overrides", nargs="*", help="train.py overrides (model=..., task=..., hydra.run.dir=...)")
    p.add_argument("--words", action="append", default=[], metavar="A,B",
                   help="another label-word pair to score from the same pass (repeatable)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    from ptrain.results import write_json_atomic

    cfg = compose(args.overrides)
    out = score(cfg, [w.split(",") for w in args.words])
    summary = out["model"].parameter_summary()
    results = {
        "method": "zeroshot", "task": cfg.task.name, "model": cfg.model.name, "seed": int(cfg.seed),
        **summary, "trainable_params": 0, "trainable_share": 0.0, "prompt_bytes": 0,
        "metrics": out["metrics"], "main_metric": out["task"].main_metric, "best_epoch": None,
        "best_checkpoint": None, "experiment": None, "alternatives": out["alternatives"],
        "wall_s": round(time.perf_counter() - started, 3), "config": out["config"],
    }
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "results.json", results)
    words = ",".join(out["task"].label_words)
    print(f"{cfg.task.name} zero-shot on {cfg.model.name}: " + ", ".join(f"{k} {v:.4f}" for k, v in
                                                                        out["metrics"].items()) + f" ({words})")
    for pair, accuracy in out["alternatives"].items():
        print(f"  label words {pair}: val accuracy {accuracy:.4f}")
    return results


if __name__ == "__main__":
    main()
