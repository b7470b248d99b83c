"""The image upload API (FastAPI, served by uvicorn: `memberflow api`). No Dagster.

    POST /v1/images          the image as the body (raw bytes, or a multipart form with one file part);
                             any other method there is 405 with `Allow: POST`
    GET  /v1/images/{id}     its registry status: landed / processed / rejected / purged
    GET  /healthz            the database and the zones answer; uploads in progress and the bytes they hold
    GET  /openapi.json, /docs, /redoc (their assets served from the installed fastapi-offline: no CDN)

Clients authenticate with `X-API-Key: <key>` or `Authorization: Bearer <key>` (api_keys.py). The
uploads themselves are served by a plain ASGI endpoint in front of FastAPI (upload_endpoint.py: the
body's limits, then validation and landing in batches); FastAPI serves and documents the rest, and
documents the upload route too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from importlib.resources import files
from typing import Annotated

import anyio
import psycopg2
from fastapi import Depends, FastAPI, Request, Security
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from memberflow_assets import postgres
from memberflow_assets.images.ingestion.admission import Admission
from memberflow_assets.images.ingestion.api_keys import ApiKeys
from memberflow_assets.images.ingestion.config import IngestSettings
from memberflow_assets.images.ingestion.content import ImageRejected
from memberflow_assets.images.ingestion.landing import open_lander, rebuild_lost_sidecars
from memberflow_assets.images.ingestion.upload_endpoint import (
    INTERNAL_ERROR,
    REGISTRY_UNAVAILABLE,
    RETRY_AFTER_SECONDS,
    STORAGE_UNAVAILABLE,
    UPLOAD_PATH,
    BodyLimits,
    Receive,
    RequestRefused,
    Scope,
    Send,
    UploadBatches,
    UploadEndpoint,
    answer,
    authorised_client,
    error_answer,
)
from memberflow_assets.settings import Settings
from memberflow_assets.zones import Zones

log = logging.getLogger(__name__)

IMAGE_ID = re.compile(r"[0-9a-f]{32}")  # landing.image_id_for: the only ids images have


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


def _error_responses(*statuses: int) -> dict:
    return {status: {"model": ApiError} for status in statuses}


# -- authentication (the FastAPI routes; the upload endpoint reads the same headers itself) ---------
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the client's API key")
_bearer = HTTPBearer(auto_error=False, description="the client's API key as a bearer token")


def authenticated_client(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> str:
    return authorised_client(request.app.state.keys, api_key, bearer.credentials if bearer else None)


Client = Annotated[str, Depends(authenticated_client)]


# -- the upload route's documentation (upload_endpoint.py serves it, in front of FastAPI) -----------
def _json_of(model: type[BaseModel], description: str) -> dict:
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_BINARY = {"schema": {"type": "string", "format": "binary"}}
UPLOAD_OPERATION = {
    "summary": "Upload an image",
    "description": "The body is the image: raw bytes (any Content-Type; the content decides), or "
    "`multipart/form-data` with the image in field `file`. JPEG, PNG, WebP, GIF and TIFF are accepted. "
    "201 for a new image; 200 with the same `image_id` when this client already uploaded these bytes.",
    "operationId": "upload_image_v1_images_post",
    "security": [{"APIKeyHeader": []}, {"HTTPBearer": []}],
    "requestBody": {
        "required": True,
        "content": {
            "image/*": _BINARY,
            "application/octet-stream": _BINARY,
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    },
    "responses": {
        "201": _json_of(UploadResult, "the image is landed (durably, with the default settings)"),
        "200": _json_of(UploadResult, "already uploaded by this client; nothing new stored"),
        **{
            str(status): _json_of(ApiError, meaning)
            for status, meaning in {
                400: "empty, incomplete or a malformed form",
                401: "no key, or an unknown one",
                408: "the body arrived too slowly",
                413: "over the size limit",
                415: "not an accepted image type, by its content",
                422: "a damaged, oversized (pixels) or overly complex image",
                503: "busy (Retry-After) or the registry is unavailable",
            }.items()
        },
    },
}


def document_upload_route(app: FastAPI) -> None:
    """Add POST /v1/images, which no FastAPI route serves, to the app's OpenAPI document."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema["paths"].setdefault(UPLOAD_PATH, {})["post"] = UPLOAD_OPERATION
            models = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (UploadResult, ApiError):
                models[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


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
class ImageApi:
    """The ASGI application: POST /v1/images goes straight to the upload endpoint, the rest to FastAPI
    (which also runs the lifespan that opens the lander)."""

    def __init__(self, app: FastAPI):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _route_path(scope) == UPLOAD_PATH:
            if scope["method"] == "POST":
                await self.app.state.uploads(scope, receive, send)
            else:  # the path exists, for uploads only
                detail = f"{scope['method']} is not allowed on {UPLOAD_PATH}: upload with POST"
                await answer(send, 405, {"code": "method_not_allowed", "detail": detail}, {"Allow": "POST"})
        else:
            await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The request path below the app's root path, as Starlette's router matches it."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root + "/") else path


def create_app(
    settings: IngestSettings | None = None, zones: Zones | None = None, dsn: str | None = None, pool_size: int = 16
) -> ImageApi:
    """The API, configured from the environment unless told otherwise (tests pass zones and a DSN)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configured = Settings.from_env()  # the API process's configuration, unless the caller gave its own
        ingest = settings or configured.ingest
        app.state.keys = ApiKeys(ingest.api_keys, ingest.api_keys_file)
        if app.state.keys.count == 0:
            log.warning("no API keys configured: every upload is refused. Mint one with `memberflow api-key`.")
        app.state.limiter = anyio.CapacityLimiter(pool_size)
        app.state.admission = Admission(ingest.api_max_bodies, ingest.api_max_body_memory_bytes)
        limits = BodyLimits(ingest.max_upload_bytes, ingest.api_body_timeout_seconds, ingest.api_body_deadline_seconds)
        with open_lander(
            zones or Zones.from_settings(configured), dsn or postgres.sales_dsn(configured), ingest, pool_size
        ) as lander:
            app.state.lander = lander
            rebuilt = rebuild_lost_sidecars(lander)
            if rebuilt:
                log.warning("rebuilt %d sidecar(s) a crash lost, from the registry and the images", len(rebuilt))
            app.state.uploads = UploadEndpoint(app.state.keys, app.state.admission, limits, UploadBatches(lander))
            try:
                yield
            finally:
                app.state.uploads.close()

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
    document_upload_route(app)

    # Answers never carry internals (driver messages, socket paths, file paths): details go to the log.
    @app.exception_handler(RequestRefused)
    @app.exception_handler(ImageRejected)
    @app.exception_handler(psycopg2.OperationalError)
    @app.exception_handler(psycopg2.InterfaceError)
    async def refused(request: Request, error: Exception) -> JSONResponse:
        status, content, headers = error_answer(error)
        return JSONResponse(content, status, headers=headers)

    @app.exception_handler(Exception)  # the server logs the traceback (Starlette re-raises after answering)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse(INTERNAL_ERROR, 500)

    async def in_thread(function, *args):
        return await anyio.to_thread.run_sync(function, *args, limiter=app.state.limiter)

    @app.get(
        "/v1/images/{image_id}",
        response_model=ImageStatus,
        response_model_exclude_none=True,
        summary="An image's status",
        responses=_error_responses(401, 404, 503),
    )
    async def image_status(image_id: str, client: Client) -> ImageStatus:
        # An id no image can have is unknown without a query (the registry refuses some, e.g. with a NUL).
        row = await in_thread(app.state.lander.lookup, image_id) if IMAGE_ID.fullmatch(image_id) else None
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
            reason = REGISTRY_UNAVAILABLE if isinstance(error, psycopg2.Error) else STORAGE_UNAVAILABLE
            raise RequestRefused(503, "unavailable", reason, {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        held = app.state.admission.total
        return {"status": "ok", "uploads_in_progress": held.bodies, "upload_bytes_held": held.bytes}

    return ImageApi(app)


# `uvicorn memberflow_assets.images.ingestion.api:app`: configured from the environment when it starts, not on import.
app = create_app()
