"""`ptrain serve` as a real process: predictions equal the in-process bank's, concurrent requests share a batch,
and every kind of bad request gets its own 4xx naming the field while the server keeps serving."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from _artifact_utils import make_artifact  # noqa: E402

from ptrain.bank import InputError, PromptBank  # noqa: E402
from ptrain.testing.fixtures import write_superglue  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SERVER_FLAGS = ["--max-wait-ms", "100", "--max-batch-size", "64", "--max-body-bytes", "4096", "--max-inputs", "16"]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two NER tasks with different methods and lengths, and RTE on a ptv2 prompt in one layer only."""
    root = tmp_path_factory.mktemp("serve")
    write_superglue("rte", root / "rte_data")
    specs = {"ner_a": ["method=ptv2", "method.length=4", "task.name=ner_a"],
             "ner_b": ["method=prompt", "method.length=3", "task.name=ner_b"],
             "rte": ["task=rte", f"task.data_dir={root / 'rte_data'}", "method=ptv2", "method.length=2",
                     "method.layers=[1]"]}
    return {name: make_artifact(root / name, "model=tiny_bert", *overrides, seed=i)[0]
            for i, (name, overrides) in enumerate(specs.items())}


@pytest.fixture(scope="module")
def reference(artifacts: dict[str, Path]) -> PromptBank:
    return PromptBank.load(list(artifacts.values()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(artifacts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of `python -m ptrain.serve` on the artifacts; the process is always stopped afterwards."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve_log") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "ptrain.serve", *map(str, artifacts.values()),
                                    "--port", str(port), *SERVER_FLAGS],
                                   cwd=ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline, last = time.monotonic() + 90, "no answer"
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"server not healthy within 90 s ({last}):\n{log.read_text()}")
            try:
                health = httpx.get(f"{url}/health", timeout=1)
                # ready = the ready line is printed; the socket may answer a moment before the server prints it
                if health.status_code == 200 and f"3 tasks on {url}" in log.read_text():
                    break
                last = f"{health.status_code} {health.text}"
            except httpx.TransportError as error:
                last = repr(error)
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _same(got: list[dict], want: list[dict]) -> None:
    """Labels, tags and entity spans equal; scores within 1e-5."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert set(g) == set(w)
        if "label" in w:
            assert g["label"] == w["label"]
            assert g["score"] == pytest.approx(w["score"], abs=1e-5)
            assert g["scores"] == pytest.approx(w["scores"], abs=1e-5)
        else:
            assert g["tags"] == w["tags"] and g["tokens"] == w["tokens"]
            assert [{k: v for k, v in e.items() if k != "score"} for e in g["entities"]] == \
                   [{k: v for k, v in e.items() if k != "score"} for e in w["entities"]]
            assert [e["score"] for e in g["entities"]] == pytest.approx([e["score"] for e in w["entities"]],
                                                                          abs=1e-5)


REQUESTS: list[tuple[str, list[Any]]] = [
    ("ner_a", ["John lives in Paris", {"tokens": ["IBM", "is", "big"]}]),
    ("rte", [{"premise": "a cat sat on the mat", "hypothesis": "a cat sat"}]),
    ("ner_b", ["Mary went to Berlin today"]),
    ("rte", [{"premise": "x", "hypothesis": "y z"}, {"premise": "it rains", "hypothesis": "it is dry"}]),
    ("ner_a", [{"tokens": "Angela Merkel visited Washington"}]),
    ("ner_b", [{"tokens": ["Apple", "sued", "Samsung"]}, "the end"]),
    ("rte", [{"premise": "Paris is in France", "hypothesis": "Paris is in Europe"}]),
    ("ner_a", ["one", "two words", "three more words"]),
]


def test_tasks_lists_tasks_and_fields(server: str, reference: PromptBank) -> None:
    listed = httpx.get(f"{server}/v1/tasks").json()
    assert [t["task"] for t in listed] == ["ner_a", "ner_b", "rte"]
    fields = {t["task"]: t["input_fields"] for t in listed}
    assert fields == {"ner_a": ["tokens"], "ner_b": ["tokens"], "rte": ["premise", "hypothesis"]}
    assert listed == [entry.describe() for entry in reference.tasks.values()]
    assert {t["task"]: t["method"] for t in listed} == {"ner_a": "ptv2", "ner_b": "prompt", "rte": "ptv2"}
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["tasks"] == 3


def test_concurrent_requests_match_the_bank_and_share_batches(server: str, reference: PromptBank) -> None:
    before = httpx.get(f"{server}/health").json()
    start = threading.Barrier(len(REQUESTS))

    def send(request: tuple[str, list[Any]]) -> httpx.Response:
        task, inputs = request
        with httpx.Client(base_url=server, timeout=30) as client:
            start.wait()
            return client.post("/v1/predict", json={"task": task, "inputs": inputs})

    with ThreadPoolExecutor(len(REQUESTS)) as pool:
        responses = list(pool.map(send, REQUESTS))
    for (task, inputs), response in zip(REQUESTS, responses):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["task"] == task
        _same(body["outputs"], reference.predict([(task, raw) for raw in inputs]))
    after = httpx.get(f"{server}/health").json()
    assert after["requests"] - before["requests"] == len(REQUESTS)
    assert after["rows"] - before["rows"] == sum(len(inputs) for _, inputs in REQUESTS)
    assert after["batches"] - before["batches"] < len(REQUESTS), (before, after)


def _chunks(size: int) -> Iterator[bytes]:
    """A body sent chunked (no Content-Length), so only the bytes actually received can tell its size."""
    yield b'{"task": "ner_a", "inputs": ["'
    for _ in range(size // 100):
        yield b"x" * 100
    yield b'"]}'


LONG = " ".join(["word"] * 300)
BAD = {  # case: (request kwargs, status, text the error names, field)
    "not_json": (dict(content=b"{not json"), 400, "not JSON", "body"),
    "not_an_object": (dict(json=["ner_a"]), 422, "JSON object", "body"),
    "unknown_task": (dict(json={"task": "nope", "inputs": ["x"]}), 404, "'nope'", "task"),
    "missing_task": (dict(json={"inputs": ["x"]}), 422, "task: missing", "task"),
    "missing_inputs": (dict(json={"task": "ner_a"}), 422, "inputs: missing", "inputs"),
    "inputs_not_a_list": (dict(json={"task": "ner_a", "inputs": "John"}), 422, "expected a list", "inputs"),
    "empty_inputs": (dict(json={"task": "ner_a", "inputs": []}), 422, "empty", "inputs"),
    "input_not_string_or_object": (dict(json={"task": "ner_a", "inputs": ["ok", 5]}), 422, "got int", "inputs[1]"),
    "input_missing_field": (dict(json={"task": "rte", "inputs": [{"premise": "a", "hypothesis": "b"}] * 2
                                       + [{"premise": "x"}]}), 422, "missing", "inputs[2].hypothesis"),
    "field_wrong_type": (dict(json={"task": "rte", "inputs": [{"premise": "a", "hypothesis": 3}]}), 422,
                         "expected a string", "inputs[0].hypothesis"),
    "tokens_wrong_type": (dict(json={"task": "ner_b", "inputs": [{"tokens": [1, 2]}]}), 422, "list of strings",
                          "inputs[0].tokens"),
    "input_over_max_length": (dict(json={"task": "rte", "inputs": [{"premise": LONG, "hypothesis": "b"}]}), 422,
                              "max_length", "inputs[0]"),
    "body_over_limit": (dict(json={"task": "ner_a", "inputs": ["x" * 5000]}), 413, "limit of 4096", "body"),
    "chunked_body_over_limit": (dict(content=_chunks(5000)), 413, "limit of 4096", "body"),
    "too_many_inputs": (dict(json={"task": "ner_a", "inputs": ["x"] * 17}), 413, "limit of 16", "inputs"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_request(server: str, case: str) -> None:
    kwargs, status, text, field = BAD[case]
    if case == "chunked_body_over_limit":
        kwargs = dict(content=_chunks(5000))  # a generator is spent once
    response = httpx.post(f"{server}/v1/predict", timeout=30, **kwargs)
    assert response.status_code == status, response.text
    error = response.json()
    assert text in error["error"] and error["field"] == field, error
    if case == "unknown_task":
        assert all(name in error["error"] for name in ("ner_a", "ner_b", "rte"))


def test_still_serves_after_bad_requests(server: str, reference: PromptBank) -> None:
    assert httpx.get(f"{server}/v1/nowhere").status_code == 404
    assert httpx.get(f"{server}/v1/predict").status_code == 405
    inputs = [{"premise": "the sky is blue", "hypothesis": "the sky has a colour"}]
    response = httpx.post(f"{server}/v1/predict", json={"task": "rte", "inputs": inputs}, timeout=30)
    assert response.status_code == 200, response.text
    _same(response.json()["outputs"], reference.predict([("rte", raw) for raw in inputs]))
    assert httpx.get(f"{server}/health").json()["status"] == "ok"


# ---- in process: a failing batch, and the missing extra -------------------------------------------------------
class _EchoTask:
    def describe(self) -> dict:
        return {"task": "echo", "input_fields": ["text"]}


class _FlakyBank:
    """A bank whose predict_features fails on the input "boom", to show a failed batch fails only its own requests."""

    tasks = {"echo": _EchoTask()}

    def encode(self, name: str, raw: Any, where: str = "input") -> dict:
        if not isinstance(raw, str):
            raise InputError(f"{where}: expected a string", field=where)
        return {}

    def predict_features(self, requests: list[tuple[str, Any]], features: list[dict], batch_size: int = 32) -> list:
        if any(raw == "boom" for _, raw in requests):
            raise RuntimeError("the backbone fell over")
        return [{"text": raw} for _, raw in requests]


def test_failed_batch_gives_500_and_the_worker_goes_on() -> None:
    from starlette.testclient import TestClient

    from ptrain.serve import create_app

    with TestClient(create_app(_FlakyBank(), max_wait_ms=0)) as client:  # type: ignore[arg-type]
        failed = client.post("/v1/predict", json={"task": "echo", "inputs": ["boom"]})
        assert failed.status_code == 500 and "the backbone fell over" in failed.json()["error"]
        ok = client.post("/v1/predict", json={"task": "echo", "inputs": ["a", "b"]})
        assert ok.status_code == 200 and ok.json() == {"task": "echo", "outputs": [{"text": "a"}, {"text": "b"}]}
        assert client.get("/health").json() == {"status": "ok", "tasks": 1, "batches": 1, "rows": 2, "requests": 1}


def test_missing_fastapi_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from ptrain import serve

    monkeypatch.setitem(sys.modules, "fastapi", None)
    with pytest.raises(ImportError, match=r"pip install 'ptrain\[serve\]'"):
        serve.create_app(_FlakyBank())  # type: ignore[arg-type]
    assert serve.main(["some/artifact"]) == 1
