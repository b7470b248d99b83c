"""The image upload API (FastAPI, served by uvicorn: `memberflow api`). No Dagster.

    POST /v1/images          the image as the body (raw bytes, or a multipart form with one file part)
    GET  /v1/images/{id}     its registry status: landed / processed / rejected / purged
    GET  /healthz            the database and the zones answer; uploads in progress and the bytes they hold
    GET  /openapi.json, /docs, /redoc (their assets served from the installed fastapi-offline: no CDN)

Clients authenticate with `X-API-Key: <key>` or `Authorization: Bearer <key>` (api_keys.py). The body
is streamed: a declared Content-Length over the limit is refused before any byte is read, and a
streamed body is refused as soon as it passes the limit, so an oversized upload never sits in memory.
A body that stalls or takes too long is answered 408; the bodies in flight and the memory they hold
are capped, in all and per client (admission.py: 503 with Retry-After beyond).
Each upload is validated on its request's thread (at most VALIDATIONS_PER_CLIENT of one client's at
once); landings (landing.py) then run on worker threads that land concurrent requests together, one
client at a time in turn (GroupLander).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from typing import Annotated

import anyio
import psycopg2
from fastapi import Depends, FastAPI, Request, Response, Security
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from python_multipart.multipart import MultipartParser, parse_options_header

from memberflow_assets import postgres
from memberflow_assets.images.admission import Admission, Hold, Overloaded
from memberflow_assets.images.api_keys import ApiKeys
from memberflow_assets.images.ingest_config import IngestSettings
from memberflow_assets.images.landing import GroupLander, Lander, Upload, image_id_for, open_lander
from memberflow_assets.images.validation import ImageFacts, ImageRejected, inspect_image
from memberflow_assets.zones import Zones

log = logging.getLogger(__name__)

MULTIPART_ENVELOPE_BYTES = 64 * 1024  # boundaries, part headers and small fields around the file part
FILE_FIELDS = ("file", "image")
MAX_MULTIPART_PARTS = 16  # the image and a few form fields
REGISTRY_UNAVAILABLE = "the image registry is unavailable"
VALIDATIONS_PER_CLIENT = 2  # uploads of one client being validated at once (threads, CPU)
BODY_RESERVE_STEP = 1 << 20  # memory reserved at a time for a body of undeclared length
RETRY_AFTER_SECONDS = 5


class UploadResult(BaseModel):
    image_id: str
    sha256: str
    size_bytes: int
    content_type: str  # detected from the content
    received_at: datetime
    status: str
    duplicate: bool  # the same client already sent these bytes; nothing new was stored


class ImageStatus(BaseModel):
    image_id: str
    status: str  # landed / processed / rejected / purged
    source: str | None = None
    content_type: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    received_at: datetime | None = None
    processed_at: datetime | None = None
    purged_at: datetime | None = None
    error: str | None = None


class ApiError(BaseModel):
    code: str
    detail: str


class RequestRefused(Exception):
    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None):
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


def _error_responses(*statuses: int) -> dict:
    return {status: {"model": ApiError} for status in statuses}


# -- authentication ------------------------------------------------------------------------------
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the client's API key")
_bearer = HTTPBearer(auto_error=False, description="the client's API key as a bearer token")


def authenticated_client(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> str:
    client = request.app.state.keys.client_for(api_key or (bearer.credentials if bearer else None))
    if client is None:
        problem = "invalid API key" if (api_key or bearer) else "missing API key (X-API-Key or Authorization: Bearer)"
        raise RequestRefused(401, "unauthorized", problem, {"WWW-Authenticate": "Bearer"})
    return client


Client = Annotated[str, Depends(authenticated_client)]


# -- reading the body ----------------------------------------------------------------------------
def _too_large(limit: int) -> RequestRefused:
    return RequestRefused(413, "too_large", f"the image exceeds the limit of {limit:,} bytes")


@dataclass(frozen=True)
class BodyLimits:
    image_bytes: int  # the 413 limit (MEMBERFLOW_MAX_UPLOAD_BYTES)
    timeout_seconds: float  # the longest wait for the next part of a body
    deadline_seconds: float  # the longest a whole body may take


def _busy(overloaded: Overloaded) -> RequestRefused:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return RequestRefused(503, "busy", f"{overloaded.detail}; retry in a few seconds", headers)


async def receive_body(
    request: Request, admission: Admission, hold: Hold, limits: BodyLimits, body_limit: int
) -> AsyncIterator[bytes]:
    """The request body as it arrives, within the API's limits: 413 past `body_limit` (on the declared
    Content-Length before a byte is read), 408 when it stalls or takes too long, 503 when the memory it
    needs is not available (a declared length is reserved in full before reading, else step by step)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        if int(declared) > body_limit:
            raise _too_large(limits.image_bytes)
        try:
            admission.reserve(hold, int(declared))
        except Overloaded as overloaded:
            raise _busy(overloaded) from None
    deadline = anyio.current_time() + limits.deadline_seconds
    received = 0
    while True:
        wait = min(limits.timeout_seconds, deadline - anyio.current_time())
        with anyio.move_on_after(max(wait, 0)) as waited:
            message = await request.receive()
        if waited.cancelled_caught:  # the connection is closed: this client is not sending anyway
            stalled = wait == limits.timeout_seconds
            problem = f"no data for {wait:g} s" if stalled else f"not complete after {limits.deadline_seconds:g} s"
            raise RequestRefused(
                408, "body_timeout", f"the body arrives too slowly: {problem}", {"Connection": "close"}
            )
        if message["type"] == "http.disconnect":
            raise RequestRefused(400, "incomplete", "the client went away before the body was complete")
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > body_limit:
            raise _too_large(limits.image_bytes)
        try:
            while received > hold.bytes:
                admission.reserve(hold, BODY_RESERVE_STEP)
        except Overloaded as overloaded:
            raise _busy(overloaded) from None
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def read_image_body(request: Request, admission: Admission, hold: Hold, limits: BodyLimits) -> bytes:
    """The uploaded image's bytes: the raw body, or the file part of a multipart form."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type == b"multipart/form-data":
        body = receive_body(request, admission, hold, limits, limits.image_bytes + MULTIPART_ENVELOPE_BYTES)
        return await _read_multipart(body, options.get(b"boundary"), limits.image_bytes)
    return b"".join([chunk async for chunk in receive_body(request, admission, hold, limits, limits.image_bytes)])


async def _read_multipart(body: AsyncIterator[bytes], boundary: bytes | None, limit: int) -> bytes:
    """Stream a multipart body; keep only the first file part (field `file`/`image`, or any with a filename).

    The client's filename is never used for anything: landing names come from the image id.
    """
    if not boundary:
        raise RequestRefused(400, "bad_multipart", "multipart body without a boundary")
    state = {"headers": {}, "field": None, "value": b"", "current": None, "file": None, "parts": 0}

    def on_part_begin() -> None:
        state["headers"], state["current"] = {}, None
        state["parts"] += 1
        if state["parts"] > MAX_MULTIPART_PARTS:  # each part costs the parser ~70 µs of Python
            raise RequestRefused(400, "bad_multipart", f"the form has more than {MAX_MULTIPART_PARTS} parts")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] = data[start:end].lower()
        state["value"] = b""

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"]] = state["value"]

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        is_file = b"filename" in disposition or disposition.get(b"name", b"").decode() in FILE_FIELDS
        if is_file and state["file"] is None:
            state["current"] = state["file"] = bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part = state["current"]
        if part is not None:
            part += data[start:end]
            if len(part) > limit:
                raise _too_large(limit)

    parser = MultipartParser(
        boundary,
        callbacks={
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )
    try:
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
    except RequestRefused:
        raise
    except Exception as error:  # python-multipart raises its own errors for malformed bodies
        raise RequestRefused(400, "bad_multipart", f"malformed multipart body: {error}") from error
    if state["file"] is None:
        raise RequestRefused(400, "bad_multipart", "the multipart form has no file part (field 'file')")
    return bytes(state["file"])


def inspect_upload(data: bytes, max_pixels: int) -> tuple[ImageFacts, str]:
    """What landing needs to know of an upload: its facts (or ImageRejected) and its SHA-256."""
    facts = inspect_image(data, max_pixels)
    return facts, hashlib.sha256(data).hexdigest()


def quarantine_once(lander: Lander, data: bytes, rejection: ImageRejected, client: str, details: dict) -> None:
    """Keep a refused upload in quarantine once per client, bytes and hour: a client sending the same
    bad bytes again and again costs no further writes (its first copy and reason are already there)."""
    quarantine_id = f"api-{image_id_for(client, hashlib.sha256(data).hexdigest())}"
    files = lander.quarantine_files(
        data, rejection, source="api", client=client, quarantine_id=quarantine_id, details=details
    )
    if not lander.zones.exists(files[-1][0]):
        lander.store(files)


# -- the documentation pages, from an installed package's assets (they work without internet) ------
DOCS_ASSETS = "/docs-assets"


def serve_docs_offline(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc with their scripts served by the API itself, from fastapi-offline."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=files("fastapi_offline") / "static"), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + app.openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


# -- the application -----------------------------------------------------------------------------
def create_app(
    settings: IngestSettings | None = None, zones: Zones | None = None, dsn: str | None = None, pool_size: int = 16
) -> FastAPI:
    """The API, configured from the environment unless told otherwise (tests pass zones and a DSN)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ingest = settings or IngestSettings.from_env()
        app.state.settings = ingest
        app.state.keys = ApiKeys(ingest.api_keys, ingest.api_keys_file)
        if app.state.keys.count == 0:
            log.warning("no API keys configured: every upload is refused. Mint one with `memberflow api-key`.")
        app.state.limiter = anyio.CapacityLimiter(pool_size)
        app.state.admission = Admission(ingest.api_max_bodies, ingest.api_max_body_memory_bytes)
        app.state.body_limits = BodyLimits(
            ingest.max_upload_bytes, ingest.api_body_timeout_seconds, ingest.api_body_deadline_seconds
        )
        with open_lander(zones or Zones.from_settings(), dsn or postgres.sales_dsn(), ingest, pool_size) as lander:
            app.state.lander = lander
            app.state.landings = GroupLander(lander)
            try:
                yield
            finally:
                app.state.landings.close()

    app = FastAPI(
        title="memberflow image upload API",
        version="1",
        description="Upload images into memberflow's landing zone and follow their status. "
        "Authenticate with `X-API-Key: <key>` or `Authorization: Bearer <key>`.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own pages load their scripts from a CDN: blank offline
        redoc_url=None,
    )
    serve_docs_offline(app)

    @app.exception_handler(RequestRefused)
    async def refused(request: Request, error: RequestRefused) -> JSONResponse:
        return JSONResponse({"code": error.code, "detail": error.detail}, error.status, headers=error.headers)

    @app.exception_handler(ImageRejected)
    async def rejected(request: Request, error: ImageRejected) -> JSONResponse:
        return JSONResponse({"code": error.code, "detail": error.detail}, error.status)

    # Answers never carry internals (driver messages, socket paths, file paths): details go to the log.
    @app.exception_handler(psycopg2.OperationalError)
    @app.exception_handler(psycopg2.InterfaceError)
    async def database_down(request: Request, error: psycopg2.Error) -> JSONResponse:
        log.error("registry unavailable: %s", error)
        return JSONResponse({"code": "unavailable", "detail": REGISTRY_UNAVAILABLE}, 503)

    @app.exception_handler(Exception)  # the server logs the traceback (Starlette re-raises after answering)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"code": "internal", "detail": "internal error; it has been logged"}, 500)

    validation_limiters: dict[str, anyio.CapacityLimiter] = {}

    def validation_slots(client: str) -> anyio.CapacityLimiter:
        if client not in validation_limiters:
            validation_limiters[client] = anyio.CapacityLimiter(VALIDATIONS_PER_CLIENT)
        return validation_limiters[client]

    async def in_thread(function, *args, **kwargs):
        return await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs), limiter=app.state.limiter)

    @app.post(
        "/v1/images",
        status_code=201,
        response_model=UploadResult,
        summary="Upload an image",
        description="The body is the image: raw bytes (any Content-Type; the content decides), or "
        "`multipart/form-data` with the image in field `file`. JPEG, PNG, WebP, GIF and TIFF are accepted. "
        "201 for a new image; 200 with the same `image_id` when this client already uploaded these bytes.",
        responses={
            200: {"model": UploadResult, "description": "already uploaded by this client; nothing new stored"},
            **_error_responses(400, 401, 413, 415, 422, 503),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "image/*": {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                            "required": ["file"],
                        }
                    },
                },
            }
        },
    )
    async def upload_image(request: Request, response: Response, client: Client) -> UploadResult:
        try:
            hold = app.state.admission.admit(client)
        except Overloaded as overloaded:
            raise _busy(overloaded) from None
        try:
            return await receive_and_land(request, response, client, hold)
        finally:
            app.state.admission.release(hold)  # the body's memory is free once the upload is answered

    async def receive_and_land(request: Request, response: Response, client: str, hold: Hold) -> UploadResult:
        lander: Lander = app.state.lander
        data = await read_image_body(request, app.state.admission, hold, app.state.body_limits)
        if not data:
            raise RequestRefused(400, "empty", "the body is empty: send the image bytes")
        try:
            # Validated on this request's thread, at most VALIDATIONS_PER_CLIENT of a client's at once: the
            # landing workers every client shares only write and register.
            facts, sha256 = await anyio.to_thread.run_sync(
                inspect_upload, data, app.state.settings.max_pixels, limiter=validation_slots(client)
            )
            upload = Upload(data, "api", client, facts=facts, sha256=sha256)
            landed = await asyncio.wrap_future(app.state.landings.submit(upload))
        except ImageRejected as rejection:
            details = {"declared_content_type": request.headers.get("content-type")}
            await in_thread(quarantine_once, lander, data, rejection, client, details)
            raise
        if landed.duplicate:
            response.status_code = 200
        response.headers["Location"] = f"/v1/images/{landed.image_id}"
        return UploadResult(
            image_id=landed.image_id,
            sha256=landed.sha256,
            size_bytes=landed.size_bytes,
            content_type=landed.content_type,
            received_at=landed.received_at,
            status=landed.status,
            duplicate=landed.duplicate,
        )

    @app.get(
        "/v1/images/{image_id}",
        response_model=ImageStatus,
        response_model_exclude_none=True,
        summary="An image's status",
        responses=_error_responses(401, 404, 503),
    )
    async def image_status(image_id: str, client: Client) -> ImageStatus:
        row = await in_thread(app.state.lander.lookup, image_id)
        # Another client's image is reported as unknown; a purged tombstone no longer has an owner.
        if row is None or (row.status != "purged" and row.client != client):
            raise RequestRefused(404, "not_found", f"no image {image_id!r}")
        return ImageStatus(
            image_id=image_id,
            status=row.status,
            source=row.source,
            content_type=row.content_type,
            size_bytes=row.size_bytes,
            sha256=row.sha256,
            received_at=row.received_at,
            processed_at=row.processed_at,
            purged_at=row.purged_at,
            error=row.error,
        )

    @app.get("/healthz", summary="Liveness and readiness", responses=_error_responses(503))
    async def healthz() -> dict[str, str | int]:
        try:
            await in_thread(app.state.lander.check_health)
        except Exception as error:
            log.error("health check failed: %s: %s", type(error).__name__, error)
            reason = REGISTRY_UNAVAILABLE if isinstance(error, psycopg2.Error) else "the image storage is unavailable"
            raise RequestRefused(503, "unavailable", reason) from None
        held = app.state.admission.total
        return {"status": "ok", "uploads_in_progress": held.bodies, "upload_bytes_held": held.bytes}

    return app


# `uvicorn memberflow_assets.images.api:app`: configured from the environment when it starts, not on import.
app = create_app()
