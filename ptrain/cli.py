"""`ptrain <command>`: small dispatcher; training itself runs through `python train.py` (Hydra)."""

from __future__ import annotations

import sys

USAGE = """usage: ptrain <command> [args]

commands:
  report DIR [--metric M] [--out OUT]   collect results.json files under DIR into tables and a plot
  synth-ner DIR                         write the generated NER data set (CoNLL format) into DIR

Training: python train.py [key=value ...]   (see README.md and conf/train.yaml)
"""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = args[0], args[1:]
    if command == "report":
        from ptrain.report import main as report_main

        return int(report_main(rest) or 0)
    if command == "synth-ner":
        from ptrain.tasks.synthetic import write_synthetic_ner

        if len(rest) != 1:
            print("usage: ptrain synth-ner DIR", file=sys.stderr)
            return 2
        print(write_synthetic_ner(rest[0]))
        return 0
    print(f"ptrain: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
