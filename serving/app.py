"""The HTTP API: `POST /v1/datasets/{name}/rows`, `GET /healthz`, `GET /readyz` (OpenAPI at /docs).

No `from __future__ import annotations` here: FastAPI must see the body model, made per app, as a class.
"""

import threading
from contextlib import asynccontextmanager
from typing import Annotated, Any

import pandas as pd
from fastapi import FastAPI, Header, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipelines.config import EnvConfig
from serving import formats
from serving.champions import Champions
from serving.middleware import RequestMiddleware
from synthlake.conditions import ConditionError, Conditions
from synthlake.generators.base import sample_conditional

INT64 = 2**63


class ApiError(Exception):
    def __init__(self, status: int, error: str, field: str | None = None):
        self.status, self.error, self.field = status, error, field


def error_response(status: int, error: str, field: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "field": field}, status_code=status, headers=headers)


def request_model(max_rows: int) -> type[BaseModel]:
    class RowsRequest(BaseModel):
        """What to generate; the same (rows, seed, offset) always gives the same rows."""

        model_config = ConfigDict(extra="forbid", strict=True)
        rows: int = Field(ge=0, le=max_rows, description=f"rows to generate (0 to {max_rows})")
        seed: int = Field(0, ge=0, lt=INT64, description="the sampling seed")
        offset: int | None = Field(None, ge=0, lt=INT64, description=(
            "the first generated identifier's row number; default: one past the highest row this server has "
            "served for the dataset, so identifiers keep increasing across requests"))
        where: str | None = Field(None, max_length=4000, description=(
            "a condition every row meets, in Spark SQL on learned columns, e.g. \"age >= 60 AND sex = 'F'\""))
        seed_rows: list[dict[str, Any]] | None = Field(None, description=(
            "partial rows whose values are kept, one generated row each (`rows` must equal their number)"))

    return RowsRequest


def create_app(env: EnvConfig, datasets: list[str], tokens: tuple[str, ...] | list[str], max_rows: int,
               reload_s: float = 5.0) -> FastAPI:
    """The app over `datasets`' champions in `env`'s MLflow registry; `tokens` empty: no auth (loopback only,
    enforced by serving.server)."""
    from pipelines import tracking

    tracking.use_store(env)
    champions = Champions(datasets, reload_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=champions.refresh_all, name="load-champions", daemon=True).start()
        yield

    app = FastAPI(title="synthlake", summary="Synthetic rows from each dataset's champion model.",
                  version=_version(), lifespan=lifespan)
    app.add_middleware(RequestMiddleware, tokens=tuple(tokens))
    _add_error_handlers(app)
    _add_probes(app, champions)
    _add_rows(app, champions, request_model(max_rows))
    return app


def _version() -> str:
    import synthlake

    return synthlake.__version__


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.error, exc.field)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        err = exc.errors()[0]
        if err["type"] == "json_invalid":
            return error_response(400, f"malformed JSON body: {err.get('ctx', {}).get('error', err['msg'])}", "body")
        field = ".".join(str(p) for p in err["loc"] if p != "body") or None
        if field is None and err["type"] in ("model_attributes_type", "dict_type"):  # not an object, or not JSON
            return error_response(422, 'the body must be a JSON object such as {"rows": 10} '
                                       "(Content-Type: application/json)", "body")
        return error_response(422, f"{field or 'body'}: {err['msg']}", field)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):  # logged with its traceback by the server
        return error_response(500, f"internal error: {type(exc).__name__}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), None, getattr(exc, "headers", None))


def _add_probes(app: FastAPI, champions: Champions) -> None:
    @app.get("/healthz", summary="The process is alive")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="Every configured dataset's champion is loaded",
             responses={503: {"description": "the datasets whose champion is not loaded, and why"}})
    def readyz():
        champions.refresh_all(wait=False)  # a probe does not wait for a load in progress
        missing = champions.not_ready()
        if missing:
            return JSONResponse({"error": f"no champion loaded for: {', '.join(sorted(missing))}",
                                 "field": None, "not_ready": missing}, status_code=503)
        return {"status": "ready", "versions": {d: c.loaded.version for d, c in champions.by_dataset.items()}}


def _conditions(body) -> Conditions:
    if body.seed_rows is None:
        return Conditions(where=body.where)
    if len(body.seed_rows) != body.rows:
        raise ApiError(422, f"rows is {body.rows} but {len(body.seed_rows)} seed rows were given: one row each",
                       "seed_rows")
    return Conditions(where=body.where, seed_rows=pd.DataFrame(body.seed_rows))


def _add_rows(app: FastAPI, champions: Champions, body_model: type[BaseModel]) -> None:
    bearer = HTTPBearer(auto_error=False)  # documents the scheme in OpenAPI; RequestMiddleware enforces it

    @app.post("/v1/datasets/{name}/rows", summary="Generate synthetic rows of a dataset",
              description="Rows from the dataset's champion model (MLflow alias `champion`), deterministic for "
                          "(rows, seed, offset). The Accept header picks the format: "
                          f"{', '.join(formats.MEDIA_TYPES)}.",
              dependencies=[Security(bearer)], response_class=Response,
              responses={200: {"content": {t: {} for t in formats.MEDIA_TYPES}}})
    def rows(name: str, request: Request, body: body_model,  # type: ignore[valid-type]
             accept: Annotated[str | None, Header()] = None):
        media = formats.negotiate(accept)
        if media is None:
            raise ApiError(406, f"cannot serve {accept!r}; available: {', '.join(formats.MEDIA_TYPES)}", "Accept")
        champion = champions.get(name)
        if champion is None:
            raise ApiError(404, f"unknown dataset {name!r}; served: {', '.join(sorted(champions.by_dataset))}",
                           "name")
        loaded = champion.loaded
        if loaded is None:
            raise ApiError(503, f"dataset {name!r} has no champion model loaded: {champion.problem}", "name")
        conditions = _conditions(body)
        offset = champion.reserve(body.rows, body.offset)
        try:
            table = sample_conditional(loaded.sampler, body.rows, body.seed, offset, conditions)
        except ConditionError as exc:
            raise ApiError(422, str(exc), "seed_rows" if str(exc).startswith("seed rows") else "where") from None
        request.state.rows = table.num_rows
        headers = {"X-Synthlake-Seed": str(body.seed), "X-Synthlake-Offset": str(offset),
                   "X-Synthlake-Model-Version": loaded.version}
        if media == formats.NDJSON:
            return StreamingResponse(formats.ndjson_chunks(table), media_type=media, headers=headers)
        return Response(formats.ENCODERS[media](table), media_type=media, headers=headers)
