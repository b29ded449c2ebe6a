"""`ptrain serve`: an HTTP JSON service over a prompt bank, with dynamic batching across tasks.

Requests that arrive together, for any of the bank's tasks, are answered by ONE `PromptBank.predict` call (one mixed
backbone pass), which is the point of a bank: K tasks cost about what one costs. Each request's inputs are checked
(`PromptBank.encode`) before it is queued, so a bad input is a 4xx for its own request and never fails a batch.

All bank work (checking and predicting) runs on one dedicated thread: the event loop keeps accepting requests while
a batch runs, and the tokenizer is never used from two threads at once (a fast tokenizer changes its truncation
settings per call, which is not safe across threads).

    POST /v1/predict  {"task": str, "inputs": [raw, ...]}  ->  {"task": str, "outputs": [...]}
    GET  /v1/tasks    -> [BankTask.describe(), ...]
    GET  /health      -> {"status": "ok", "tasks": n, "batches": ..., "rows": ..., "requests": ...}

Errors are `{"error": message, "field": name or null}`. fastapi and uvicorn are imported inside functions, so
`import ptrain` works without them (they are the `ptrain[serve]` extra).
"""

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ptrain.bank import PromptBank

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MISSING_EXTRA = "ptrain serve needs fastapi and uvicorn: pip install 'ptrain[serve]'"


class ApiError(Exception):
    """An error answered as `{"error": message, "field": field}` with its HTTP status."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def _require_fastapi() -> None:
    """Fail with the install hint, not a bare ModuleNotFoundError, when the `serve` extra is missing."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise ImportError(f"{MISSING_EXTRA} ({error})") from error


# ---- request body size ----------------------------------------------------------------------------------------
class BodyLimit:
    """ASGI middleware: 413 for a body over `limit` bytes, by its Content-Length and by the bytes actually sent
    (a chunked body, or a Content-Length that lies, is counted as it streams in)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _send_error(send, 413, f"body: {int(declared)} bytes, over the limit of {self.limit}")
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # raised inside the endpoint's body read: the app's handler answers 413
                raise ApiError(413, f"body: over the limit of {self.limit} bytes", "body")
            return message

        await self.app(scope, counted, send)


async def _send_error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message, "field": "body"}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# ---- dynamic batching -----------------------------------------------------------------------------------------
@dataclass
class _Item:
    """One queued request: its task, its (already checked) raw inputs and the future its handler awaits."""

    task: str
    inputs: list[Any]
    features: list[dict]
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Collects queued requests into batches of up to `max_batch_size` rows, waiting at most `max_wait_ms` after
    the first, and answers each batch with one `bank.predict_features` call on the bank thread.

    A batch that raises fails only its own requests (500); the worker goes on with the next one.
    """

    def __init__(self, bank: "PromptBank", max_batch_size: int, max_wait_ms: float) -> None:
        self.bank, self.max_batch_size, self.max_wait = bank, max_batch_size, max_wait_ms / 1000
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ptrain-bank")
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.stats = {"batches": 0, "rows": 0, "requests": 0}
        self._carry: _Item | None = None
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="ptrain-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        pending = [self._carry] if self._carry else []
        while not self.queue.empty():
            pending.append(self.queue.get_nowait())
        for item in pending:
            if not item.future.done():
                item.future.set_exception(ApiError(503, "server is shutting down"))
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def in_bank_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn` on the bank thread (see the module docstring for why there is only one)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def submit(self, task: str, inputs: list[Any], features: list[dict]) -> list[dict]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Item(task, inputs, features, future))
        return await future

    async def _collect(self) -> list[_Item]:
        """The next batch: the first item, then whatever arrives within `max_wait` while rows fit; an item that
        would overflow the batch waits for the next one (a single request larger than the batch goes alone)."""
        first = self._carry or await self.queue.get()
        self._carry = None
        batch, rows = [first], len(first.inputs)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while rows < self.max_batch_size:
            timeout = deadline - asyncio.get_running_loop().time()
            try:
                item = self.queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self.queue.get(), timeout)
            except (asyncio.QueueEmpty, TimeoutError):
                break
            if rows + len(item.inputs) > self.max_batch_size:
                self._carry = item
                break
            batch.append(item)
            rows += len(item.inputs)
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            live = [item for item in batch if not item.future.done()]  # a client that went away is skipped
            if not live:
                continue
            requests = [(item.task, raw) for item in live for raw in item.inputs]
            features = [feature for item in live for feature in item.features]
            try:
                results = await self.in_bank_thread(self.bank.predict_features, requests, features,
                                                    self.max_batch_size)
            except Exception as error:  # noqa: BLE001 - one failed batch must not stop the service
                log.exception("batch of %d requests failed", len(live))
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(ApiError(500, f"prediction failed: {type(error).__name__}: {error}"))
                continue
            self.stats["batches"] += 1
            self.stats["rows"] += len(requests)
            self.stats["requests"] += len(live)
            offset = 0
            for item in live:
                if not item.future.done():
                    item.future.set_result(results[offset:offset + len(item.inputs)])
                offset += len(item.inputs)


# ---- the app --------------------------------------------------------------------------------------------------
def _check_request(bank: "PromptBank", body: Any, max_inputs: int) -> tuple[str, list[Any], list[dict]]:
    """The task, inputs and features of a predict body (each input encoded once, which checks it); raises
    `ApiError`."""
    from ptrain.bank import InputError

    if not isinstance(body, dict):
        raise ApiError(422, f"body: expected a JSON object with 'task' and 'inputs'; got {type(body).__name__}",
                       "body")
    if "task" not in body:
        raise ApiError(422, "task: missing", "task")
    task = body["task"]
    if not isinstance(task, str):
        raise ApiError(422, f"task: expected a string; got {type(task).__name__}", "task")
    if task not in bank.tasks:
        raise ApiError(404, f"task: unknown task {task!r}; the bank holds {sorted(bank.tasks)}", "task")
    if "inputs" not in body:
        raise ApiError(422, "inputs: missing (a list of inputs)", "inputs")
    inputs = body["inputs"]
    if not isinstance(inputs, list):
        raise ApiError(422, f"inputs: expected a list; got {type(inputs).__name__}", "inputs")
    if not inputs:
        raise ApiError(422, "inputs: empty; give at least one input", "inputs")
    if len(inputs) > max_inputs:
        raise ApiError(413, f"inputs: {len(inputs)} inputs, over the limit of {max_inputs} per request", "inputs")
    features = []
    for i, raw in enumerate(inputs):
        try:
            features.append(bank.encode(task, raw, where=f"inputs[{i}]"))
        except InputError as error:
            raise ApiError(422, str(error), error.field) from error
    return task, inputs, features


def create_app(bank: "PromptBank", max_batch_size: int = 32, max_wait_ms: float = 5.0,
               max_body_bytes: int = 1 << 20, max_inputs: int = 256) -> "FastAPI":
    """The FastAPI app over `bank`; its batch worker starts and stops with the app's lifespan.

    (This module has no `from __future__ import annotations`: FastAPI reads the handlers' annotations at run
    time to inject `Request`, and `Request` is imported here, inside the function.)
    """
    _require_fastapi()
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.batcher = Batcher(bank, max_batch_size, max_wait_ms)
        app.state.batcher.start()
        try:
            yield
        finally:
            await app.state.batcher.stop()

    app = FastAPI(title="ptrain serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, limit=max_body_bytes)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"error": error.message, "field": error.field}, status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:  # 404 route, 405 method
        return JSONResponse({"error": str(error.detail), "field": None}, status_code=error.status_code,
                            headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse({"error": f"internal error: {type(error).__name__}: {error}", "field": None},
                            status_code=500)

    @app.get("/health")
    async def health(request: Request) -> dict:
        return {"status": "ok", "tasks": len(bank.tasks), **request.app.state.batcher.stats}

    @app.get("/v1/tasks")
    async def tasks() -> list[dict]:
        return [entry.describe() for entry in bank.tasks.values()]

    @app.post("/v1/predict")
    async def predict(request: Request) -> dict:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ApiError(400, f"body: not JSON ({error})", "body") from error
        batcher: Batcher = request.app.state.batcher
        task, inputs, features = await batcher.in_bank_thread(_check_request, bank, body, max_inputs)
        return {"task": task, "outputs": await batcher.submit(task, inputs, features)}

    return app


# ---- the command ----------------------------------------------------------------------------------------------
def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ptrain serve", description="Serve prompt artifacts over HTTP (JSON), "
                                "all on one frozen backbone, with requests batched together across tasks.")
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help="prompt artifact directories (one task each)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port, printed when ready)")
    p.add_argument("--max-batch-size", type=_positive(int), default=32, help="rows per backbone pass")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests")
    p.add_argument("--max-body-bytes", type=_positive(int), default=1 << 20, help="largest request body (413)")
    p.add_argument("--max-inputs", type=_positive(int), default=256, help="most inputs in one request (413)")
    p.add_argument("--allow-mismatch", action="store_true", help="load artifacts made on another backbone")
    return p


def main(argv: list[str]) -> int:
    """`ptrain serve ARTIFACT ...`: load the bank, print one line when the port is open, serve until stopped."""
    args = parser().parse_args(argv)
    if args.max_wait_ms < 0:
        print("ptrain serve: --max-wait-ms must be >= 0", file=sys.stderr)
        return 2
    try:
        _require_fastapi()
    except ImportError as error:
        print(f"ptrain serve: {error}", file=sys.stderr)
        return 1
    import uvicorn

    from ptrain.artifact import ArtifactError
    from ptrain.bank import PromptBank

    try:
        bank = PromptBank.load(args.artifacts, allow_mismatch=args.allow_mismatch)
    except (ArtifactError, OSError) as error:
        print(f"ptrain serve: {error}", file=sys.stderr)
        return 2
    app = create_app(bank, args.max_batch_size, args.max_wait_ms, args.max_body_bytes, args.max_inputs)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning"))

    async def run() -> None:
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.02)
        if server.started:
            port = server.servers[0].sockets[0].getsockname()[1]
            print(f"ptrain serve: {len(bank.tasks)} tasks on http://{args.host}:{port}", flush=True)
        await serving

    try:
        asyncio.run(run())
    except SystemExit as stop:  # uvicorn exits this way when it cannot bind (it has logged why)
        print(f"ptrain serve: could not serve on {args.host}:{args.port}", file=sys.stderr)
        return int(stop.code or 1)
    return 0 if server.started else 1


__all__ = ["ApiError", "Batcher", "BodyLimit", "create_app", "main", "parser"]

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
