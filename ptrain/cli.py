"""`ptrain <command>`: small dispatcher; training itself runs through `python train.py` (Hydra)."""

from __future__ import annotations

import sys

USAGE = """usage: ptrain <command> [args]

commands:
  train [key=value ...]                 a training run (Hydra: the configs in ptrain/conf; --help lists groups)
  report DIR [--metric M] [--out OUT]   collect results.json files under DIR into tables and a plot
  export RUN_DIR [--out DIR] [--format ptrain|peft] [--checkpoint best|last|PATH]
                                        a trained prompt as an artifact (prompt.safetensors + prompt.json)
  import-peft PEFT_DIR --out DIR        a HF PEFT prompt/prefix adapter as a ptrain artifact
  predict ARTIFACT... --input FILE [--output FILE]
                                        predictions on new data (JSON lines, CoNLL columns or plain lines)
  serve ARTIFACT... [--host H] [--port P]
                                        an HTTP JSON service: the artifacts on one backbone, batched together
  synth-ner DIR                         write the generated NER data set (CoNLL format) into DIR

In a clone, `python train.py [key=value ...]` is `ptrain train` (see README.md and ptrain/conf/train.yaml).
"""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = args[0], args[1:]
    if command == "train":
        from ptrain.train import main_with_args

        main_with_args(rest)
        return 0
    if command == "report":
        from ptrain.report import main as report_main

        return int(report_main(rest) or 0)
    if command == "export":
        return _export(rest)
    if command == "import-peft":
        return _import_peft(rest)
    if command == "predict":
        from ptrain.predict import main as predict_main

        return predict_main(rest)
    if command == "serve":
        from ptrain.serve import main as serve_main

        return serve_main(rest)
    if command == "synth-ner":
        from ptrain.tasks.synthetic import write_synthetic_ner

        if len(rest) != 1:
            print("usage: ptrain synth-ner DIR", file=sys.stderr)
            return 2
        print(write_synthetic_ner(rest[0]))
        return 0
    print(f"ptrain: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


def _export(argv: list[str]) -> int:
    import argparse

    from ptrain.artifact import ArtifactError, export_run

    parser = argparse.ArgumentParser(prog="ptrain export", description="a trained prompt as an artifact")
    parser.add_argument("run_dir", help="a finished run's directory (results.json, checkpoints/)")
    parser.add_argument("--out", help="artifact directory (default: RUN_DIR/artifact, or RUN_DIR/peft)")
    parser.add_argument("--format", choices=("ptrain", "peft"), default="ptrain",
                        help="ptrain (safetensors + JSON) or a HF PEFT adapter directory")
    parser.add_argument("--checkpoint", default="best", help="best (dev-selected, default), last, or a .ckpt path")
    args = parser.parse_args(argv)
    try:
        if args.format == "peft":
            import tempfile

            from ptrain.peft_io import export_peft

            with tempfile.TemporaryDirectory() as scratch:
                artifact = export_run(args.run_dir, scratch, args.checkpoint)
                out = export_peft(artifact, args.out or f"{args.run_dir}/peft")
        else:
            out = export_run(args.run_dir, args.out, args.checkpoint)
    except (ArtifactError, FileNotFoundError) as error:
        print(f"ptrain export: {error}", file=sys.stderr)
        return 2
    print(out)
    return 0


def _import_peft(argv: list[str]) -> int:
    import argparse

    from ptrain.artifact import ArtifactError

    parser = argparse.ArgumentParser(prog="ptrain import-peft", description="a PEFT adapter as a ptrain artifact")
    parser.add_argument("peft_dir", help="a PEFT adapter directory (adapter_config.json, adapter_model.safetensors)")
    parser.add_argument("--out", required=True, help="artifact directory to write")
    parser.add_argument("--model", help="the backbone as a ptrain model config: a name in ptrain/conf/model (minilm, "
                                        "tiny_bert, ...) or a YAML file (default: the adapter's base model)")
    args = parser.parse_args(argv)
    try:
        from ptrain.peft_io import import_peft

        out = import_peft(args.peft_dir, args.out, model_cfg=_model_config(args.model) if args.model else None)
    except (ArtifactError, FileNotFoundError) as error:
        print(f"ptrain import-peft: {error}", file=sys.stderr)
        return 2
    print(out)
    return 0


def _model_config(name: str) -> dict:
    from pathlib import Path

    import yaml

    path = Path(name)
    if not path.is_file():
        path = Path(__file__).resolve().parent / "conf" / "model" / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"--model {name}: neither a YAML file nor a config in ptrain/conf/model")
    return yaml.safe_load(path.read_text())


if __name__ == "__main__":
    raise SystemExit(main())
