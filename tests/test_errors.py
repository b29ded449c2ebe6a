"""Bad input fails early with a message that names the key, file or line to fix."""

from __future__ import annotations

import pytest
from _train_utils import compose_run
from hydra.errors import MissingConfigException

from ptrain.readers.errors import DataFormatError
from ptrain.train import build, run


@pytest.mark.parametrize(("group", "known"), [("method", "ptv2"), ("task", "conll03"), ("model", "minilm")])
def test_unknown_group_option_lists_the_available_ones(tmp_path, group, known) -> None:
    with pytest.raises(MissingConfigException, match=rf"(?s)Could not find '{group}/nope'.*{known}"):
        compose_run(tmp_path, f"{group}=nope")


def test_missing_data_dir_is_named(tmp_path) -> None:
    cfg = compose_run(tmp_path, "task=conll03", f"task.data_dir={tmp_path}/absent")
    with pytest.raises(FileNotFoundError, match=r"task.data_dir='.*/absent' does not exist .*train.txt"):
        build(cfg)


def _write_conll(folder, train: str, dev: str) -> None:
    folder.mkdir()
    (folder / "train.txt").write_text(train)
    (folder / "dev.txt").write_text(dev)
    (folder / "test.txt").write_text(dev)


GOOD = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n"


def test_malformed_conll_line_names_file_and_line(tmp_path) -> None:
    data = tmp_path / "data"
    _write_conll(data, GOOD + "Blackburn\n", GOOD)
    cfg = compose_run(tmp_path / "run", "task=ner", f"task.data_dir={data}")
    with pytest.raises(DataFormatError, match=r"train.txt, line 7: malformed line 'Blackburn' \(at least 2"):
        build(cfg)


def test_unknown_dev_label_names_file_line_and_label(tmp_path) -> None:
    data = tmp_path / "data"
    _write_conll(data, GOOD, GOOD + "\nParis NNP B-NP B-LOC\n")
    cfg = compose_run(tmp_path / "run", "task=ner", f"task.data_dir={data}")
    with pytest.raises(DataFormatError, match=r"dev.txt, line 8: unknown label 'B-LOC' \(one of the training labels"):
        run(cfg)


def test_malformed_tag_is_reported(tmp_path) -> None:
    data = tmp_path / "data"
    _write_conll(data, GOOD.replace("B-PER", "PERSON"), GOOD)
    cfg = compose_run(tmp_path / "run", "task=ner", f"task.data_dir={data}")
    with pytest.raises(DataFormatError, match=r"train.txt, line 6: malformed tag 'PERSON'"):
        build(cfg)


def test_position_budget_error_from_config(tmp_path) -> None:
    cfg = compose_run(tmp_path, "method=ptv2", "method.length=100", "task.max_length=100")
    with pytest.raises(ValueError, match="exceeds the backbone's 160 positions"):
        build(cfg)


@pytest.mark.parametrize(("override", "message"), [
    ("+method.lenght=4", r"method.lenght is not a key of method \(a typo\?\); known keys: .*length"),
    ("+optim.warmup_steps=5", r"optim.warmup_steps is not a key of optim \(a typo\?\); known keys: .*warmup_ratio"),
])
def test_a_key_nothing_reads_is_an_error(tmp_path, override, message) -> None:
    with pytest.raises(ValueError, match=message):
        run(compose_run(tmp_path, override))
    assert not (tmp_path / "results.json").exists()


def test_a_key_another_method_reads_is_allowed_in_a_grid(tmp_path) -> None:
    """Experiment grids set `length` for every method of the grid; finetune simply does not read it."""
    task, model, _ = build(compose_run(tmp_path, "method=finetune", "+method.length=20"))
    assert model.prompt is None


def test_a_conll_line_that_lost_a_column_is_an_error_naming_it(tmp_path) -> None:
    from ptrain.readers.conll import read_conll

    (tmp_path / "train.txt").write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nstaff NNS I-NP\n\n")
    with pytest.raises(DataFormatError, match=r"train.txt, line 3: line has 3 columns, line 1 has 4 \(the same "
                                              r"columns on every token line"):
        read_conll(tmp_path / "train.txt")


@pytest.mark.parametrize("reader", ["conll", "superglue"])
def test_latin1_input_is_an_error_naming_file_and_line(tmp_path, reader: str) -> None:
    from ptrain.readers.conll import read_conll
    from ptrain.readers.superglue import read_superglue

    if reader == "conll":
        path = tmp_path / "train.txt"
        path.write_bytes("Paris NNP B-LOC\n\nCaf\xe9 NN O\n".encode("latin-1"))
        call = lambda: read_conll(path)  # noqa: E731
    else:
        path = tmp_path / "train.jsonl"
        rows = ['{"premise": "a", "hypothesis": "b", "label": "entailment", "idx": 0}',
                '{"premise": "caf\xe9", "hypothesis": "b", "label": "entailment", "idx": 1}']
        path.write_bytes("\n".join(rows).encode("latin-1"))
        call = lambda: read_superglue("rte", path)  # noqa: E731
    with pytest.raises(DataFormatError, match=rf"{path.name}, line \d: byte 0xe9 is not UTF-8 .*iconv"):
        call()


@pytest.mark.parametrize(("override", "message"), [
    ("method.length=0", r"method.length=0: method ptv2 needs a whole number of virtual tokens >= 1"),
    ("method.length=-1", r"method.length=-1: method ptv2 needs"),
    ("method.dropout=1.5", r"method.dropout=1.5: expected a probability in \[0, 1\)"),
])
def test_prompt_values_a_method_cannot_use_name_the_key(tmp_path, override: str, message: str) -> None:
    from _train_utils import compose_run

    from ptrain.train import build

    with pytest.raises(ValueError, match=message):
        build(compose_run(tmp_path, "method=ptv2", override))
