"""ptrain's tokenisation cache (JSON lists, ptrain/data.py) against datasets' own (`Dataset.map`, Arrow files keyed
by the fingerprint), side by side on one split in one run:

    python benchmarks/tokenize_cache.py                        # CoNLL-2003 train from ../shared/data, MiniLM
    python benchmarks/tokenize_cache.py --readme               # ... and into benchmarks/README.md
    python benchmarks/tokenize_cache.py --task rte --data ../shared/data/superglue/RTE

Rows: tokenising the split (the task's own `encode`, which both caches store), writing each cache, and what a
later run pays to get the features back: ptrain reads its JSON file into lists of dicts (what the task's collate
takes); datasets memory-maps its Arrow file, then the collate needs rows as dicts, so the row conversion is timed
too. Best of `--repeats` for each; file sizes beside.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._markdown import README, replace_section, table  # noqa: E402

SECTION = "tokenize-cache"
TASKS = {"conll03": "conll2003", "rte": "superglue/RTE"}


def best(seconds: list[float]) -> str:
    return f"{min(seconds):.2f} s"


def measure(task_name: str, data_dir: str, repeats: int) -> list[list[str]]:
    import datasets
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from ptrain.backbones import load_backbone
    from ptrain.data import _write_cache

    with initialize_config_dir(config_dir=str(ROOT / "ptrain" / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"task={task_name}", f"task.data_dir={data_dir}"])
    task = instantiate(cfg.task, _convert_="all")
    _, tokenizer = load_backbone({"pretrained": "bundled:minilm"})
    examples = task.examples("train")

    encode_s, json_write_s, json_read_s, arrow_write_s, arrow_read_s, rows_s = ([] for _ in range(6))
    with tempfile.TemporaryDirectory() as scratch:
        for attempt in range(repeats):
            started = time.perf_counter()
            features = task.encode(examples, tokenizer)
            encode_s.append(time.perf_counter() - started)

            path = Path(scratch) / f"features-{attempt}.json"
            started = time.perf_counter()
            _write_cache(path, json.dumps({"features": features, "unscored": [0, 0]}, separators=(",", ":")))
            json_write_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            back = json.loads(path.read_text(encoding="utf-8"))["features"]
            json_read_s.append(time.perf_counter() - started)
            assert back == features

            arrow = Path(scratch) / f"features-{attempt}.arrow"
            started = time.perf_counter()
            dataset = datasets.Dataset.from_list(features)
            dataset = dataset.map(lambda row: row, cache_file_name=str(arrow), load_from_cache_file=False)
            arrow_write_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            dataset = datasets.Dataset.from_file(str(arrow))
            arrow_read_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            rows = dataset.to_list()
            rows_s.append(time.perf_counter() - started)
            assert [row["input_ids"] for row in rows] == [f["input_ids"] for f in features]
        json_mb = path.stat().st_size / 2**20
        arrow_mb = arrow.stat().st_size / 2**20
    n = f"{len(examples):,} examples → {len(features):,} features"
    return [[f"{task_name} train ({n})", "tokenise (the task's encode; both caches store its output)",
             best(encode_s), best(encode_s)],
            ["", "write the cache", best(json_write_s), best(arrow_write_s)],
            ["", "a later run: open it", best(json_read_s), best(arrow_read_s) + " (memory-mapped)"],
            ["", "... as the dicts the collate takes", "(the same)", best(rows_s)],
            ["", "file size", f"{json_mb:.1f} MiB", f"{arrow_mb:.1f} MiB"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="conll03", choices=sorted(TASKS))
    parser.add_argument("--data", default=None, help="the task's data directory (default: ../shared/data/...)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    args = parser.parse_args(argv)
    data = args.data or str(ROOT.parent / "shared" / "data" / TASKS[args.task])
    rows = measure(args.task, data, args.repeats)
    body = table(["split", "step", "ptrain JSON cache", "datasets Arrow cache (Dataset.map)"], rows)
    import platform

    import datasets
    import transformers

    header = (f"`python benchmarks/tokenize_cache.py --task {args.task}` · MiniLM tokenizer · best of {args.repeats} "
              f"· {platform.processor() or platform.machine()} · datasets {datasets.__version__}, transformers "
              f"{transformers.__version__} · {time.strftime('%Y-%m-%d %H:%M')}")
    print(header + "\n\n" + body)
    if args.readme:
        replace_section(README, f"{SECTION}-{args.task}", header + "\n\n" + body,
                        heading=f"Tokenisation cache: ptrain's JSON against datasets' Arrow ({args.task})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
