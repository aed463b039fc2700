"""The FastAPI application of ``structrnn serve``: the JSON API and the page.

::

    from structrnn.serve import create_app
    app = create_app(["runs/sst", "runs/esol"], parser="runs/parser")   # an ASGI app
    # uvicorn.run(app, host="127.0.0.1", port=8000)

Routes:

- ``POST /v1/models/{name}/predict`` ``{"inputs": [...], "nodes": false}`` -> ``{"rows": [...]}``,
  the rows ``Predictor.predict`` gives (``nodes``: sentiment runs, a row per phrase too);
- ``GET /v1/models`` -> ``{"models": [{"name", "task", "targets", "labels", "format_version",
  ...}]}``;
- ``GET /v1/models/{name}/molecule.svg?smiles=...``: RDKit's drawing (molecule runs);
- ``GET /health``, ``GET /ready``: 200 once every run is loaded, 503 before (or when loading
  failed);
- ``GET /``: the page (``static/``, served by the package: no CDN); ``/docs``: OpenAPI.

Every error is JSON ``{"error": "..."}`` (validation errors keep FastAPI's ``detail`` too).
The runs load on the worker thread after the server starts; predictions run there too, one batch
at a time, so the event loop keeps answering while a batch runs.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from structrnn.serve.limits import BodyLimit
from structrnn.serve.models import (
    MOLECULE_TASKS,
    ServedModel,
    ServeSettings,
    model_name,
    named_runs,
)
from structrnn.tasks.predictor import Predictor, load

__all__ = ["create_app", "PredictRequest", "ServeState", "STATIC"]

STATIC = Path(__file__).parent / "static"


class PredictRequest(BaseModel):
    """The body of ``POST /v1/models/{name}/predict``."""

    model_config = ConfigDict(extra="forbid")
    inputs: list[Any] = Field(description="the inputs of Predictor.predict: sentences or PTB "
                                          "trees (sentiment), SMILES (molecules)")
    nodes: bool = Field(False, description="sentiment: also a row per phrase (pre-order)")


@dataclass
class ServeState:
    """What the application holds: the runs to load, the loaded models, the worker thread."""

    runs: Mapping[str, str | Path | Predictor]
    parser: str | Path | Predictor | None
    settings: ServeSettings
    models: dict[str, ServedModel] = field(default_factory=dict)
    error: str | None = None
    ready: bool = False
    executor: ThreadPoolExecutor | None = None
    on_failure: Callable[[str], None] | None = None
    in_flight: int = 0  # POST requests the server is handling (reading, batching, answering)

    def incoming(self) -> int:
        """The requests on their way to a batcher: in flight but in none yet."""
        return self.in_flight - sum(b.holding for m in self.models.values()
                                    for b in m.batchers())

    def load_all(self) -> None:
        """Load the parser and every run (on the worker thread), then mark the state ready."""
        parser, parser_name = self.parser, None
        if isinstance(parser, (str, Path)):
            parser_name = model_name(parser)
            parser = load(parser)
            if parser.task != "parser":
                raise ValueError(f"--parser {self.parser}: a {parser.task!r} run, not a parser "
                                 "(structrnn train parser)")
        elif parser is not None:
            parser_name = "the given parser"
        for name, run in self.runs.items():
            predictor = load(run) if isinstance(run, (str, Path)) else run
            served = ServedModel(name, predictor, self.settings,
                                 parser if predictor.task == "sst" else None, parser_name,
                                 incoming=self.incoming)
            for nodes in (False, True) if predictor.task == "sst" else (False,):
                served.batcher(nodes, self.executor)  # built here: its error-row template too
            self.models[name] = served
        self.ready = True


def create_app(runs: Sequence[str | Path] | Mapping[str, str | Path | Predictor],
               parser: str | Path | Predictor | None = None,
               settings: ServeSettings | None = None,
               on_failure: Callable[[str], None] | None = None) -> FastAPI:
    """The ASGI application serving ``runs``.

    Args:
        runs: run folders or model files (each named by its base name), or ``{name: run or
            loaded Predictor}``.
        parser: a parser run (or its predictor) that gives sentences their trees; None: the
            balanced tree.
        settings: limits and batching (default :class:`ServeSettings`).
        on_failure: called with the reason when loading fails (the command stops the server).
    """
    state = ServeState(named_runs(runs), parser, settings or ServeSettings(), on_failure=on_failure)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.executor = ThreadPoolExecutor(1, thread_name_prefix="structrnn-predict")
        loading = asyncio.get_running_loop().run_in_executor(state.executor, state.load_all)
        loading.add_done_callback(_loaded)
        yield
        state.executor.shutdown(wait=False, cancel_futures=True)

    def _loaded(future: asyncio.Future) -> None:
        if future.cancelled() or future.exception() is None:
            return
        err = future.exception()
        state.error = f"{type(err).__name__}: {err}"
        traceback.print_exception(err, file=sys.stderr)
        if state.on_failure is not None:
            state.on_failure(state.error)

    app = FastAPI(title="structrnn serve", lifespan=lifespan,
                  description="Predictions of trained structrnn runs (structrnn.load(RUN)"
                              ".predict(inputs)) over HTTP, and a page to try them.")
    app.state.serve = state
    app.add_middleware(BodyLimit, max_body=state.settings.max_body)
    app.add_middleware(CountRequests, state=state)  # the outermost: counts from the headers on
    _error_handlers(app)
    _api_routes(app, state)
    _page_routes(app, state)
    return app


class CountRequests:
    """ASGI middleware: :attr:`ServeState.in_flight` counts the POST requests being handled
    (what a batch waits for while they are on their way)."""

    def __init__(self, app, state: ServeState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        self.state.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.state.in_flight -= 1


def _served(state: ServeState, name: str) -> ServedModel:
    if not state.ready:
        raise HTTPException(503, state.error or "the runs are still loading")
    if name not in state.models:
        raise HTTPException(404, f"no model {name!r}; served: {', '.join(state.models)}")
    return state.models[name]


def _page_routes(app: FastAPI, state: ServeState) -> None:
    """The page, its files and the molecule drawings it shows."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/v1/models/{name}/molecule.svg", summary="RDKit's drawing of a SMILES",
             response_class=Response)
    async def molecule(name: str, smiles: str = Query(max_length=2000)) -> Response:
        model = _served(state, name)
        if model.task not in MOLECULE_TASKS:
            raise HTTPException(404, f"{name!r} is a {model.task!r} model: no molecules")
        from structrnn.serve.chemistry import molecule_svg

        try:
            svg = molecule_svg(smiles)
        except ValueError as err:
            raise HTTPException(422, str(err)) from err
        return Response(svg, media_type="image/svg+xml")


def _api_routes(app: FastAPI, state: ServeState) -> None:
    """The JSON API: health, readiness, the models and their predictions."""

    def status() -> JSONResponse:
        if state.ready:
            return JSONResponse({"status": "ok", "models": list(state.models),
                                 "batches": {name: m.batch_counts()
                                             for name, m in state.models.items()}})
        if state.error:
            return JSONResponse({"status": "failed", "error": state.error}, 503)
        return JSONResponse({"status": "loading", "models": list(state.runs)}, 503)

    @app.get("/health", summary="200 once every run is loaded, else 503")
    async def health() -> JSONResponse:
        return status()

    @app.get("/ready", summary="200 once every run is loaded, else 503")
    async def ready() -> JSONResponse:
        return status()

    @app.get("/v1/models", summary="the served models")
    async def models() -> JSONResponse:
        if not state.ready:
            raise HTTPException(503, state.error or "the runs are still loading")
        return JSONResponse({"models": [m.describe() for m in state.models.values()]})

    @app.post("/v1/models/{name}/predict", summary="Predictor.predict(inputs), batched")
    async def predict(name: str, body: PredictRequest) -> JSONResponse:
        model = _served(state, name)
        if len(body.inputs) > state.settings.max_items:
            raise HTTPException(413, f"too many inputs: {len(body.inputs)}, this server takes "
                                     f"at most {state.settings.max_items} a request "
                                     "(--max-items)")
        if body.nodes and model.task != "sst":
            raise HTTPException(422, f"nodes: only sentiment models predict per phrase, "
                                     f"{name!r} is a {model.task!r} model")
        rows = await model.batcher(body.nodes, state.executor).submit(body.inputs)
        # a JSONResponse straight away: no response model to validate megabytes of rows with
        return JSONResponse({"rows": rows})


def _error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": "..."}``."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(err.detail)}, err.status_code,
                            headers=getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = []
        for e in err.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {e.get('msg')}")
        message = ("the body must be JSON {\"inputs\": [...]}: " + "; ".join(problems))
        # the offending input itself is left out: it may be a megabyte
        detail = [{k: v for k, v in e.items() if k != "input"} for e in err.errors()]
        return JSONResponse({"error": message, "detail": _plain(detail)}, 422)


def _plain(value: Any) -> Any:
    """Validation errors as JSON (their ``ctx`` may hold exceptions)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
