"""POST /v1/images: the upload API's hot path, a plain ASGI endpoint in front of FastAPI (api.py). No Dagster.

FastAPI's middleware, routing, dependency injection and response validation cost as much CPU per
upload as writing it durably (docs/images_ingestion.md, "Upload API against its ceilings"), so this
one route reads the request itself; api.py documents it in the OpenAPI schema and serves the rest.

    event loop     authenticate, admit (admission.py), receive the body within its limits, queue it
    batch worker   take every upload queued (fairly, per client), validate and hash each, write every
                   image and sidecar under temporary names with their disk writes started, claim them
                   all in one registry statement while the disk writes, fsync the images together (an
                   API sidecar is rebuilt after a power failure: landing.rebuilt_sidecar), rename them
                   with one folder fsync, then wake the event loop once to answer the whole batch
                   (UploadBatches)

The body is streamed: a declared Content-Length over the limit is refused before any byte is read,
and a streamed body as soon as it passes the limit, so an oversized upload never sits in memory. A
body that stalls or takes too long is answered 408; the bodies in flight and the memory they hold are
capped, in all and per client (503 with Retry-After beyond).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2
from python_multipart.multipart import MultipartParser, parse_options_header

from memberflow_assets.images.ingestion.admission import Admission, Hold, Overloaded
from memberflow_assets.images.ingestion.api_keys import ApiKeys
from memberflow_assets.images.ingestion.content import ImageRejected
from memberflow_assets.images.ingestion.landing import (
    Landed,
    Lander,
    LandingInProgress,
    Prepared,
    Upload,
    image_id_for,
)

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

UPLOAD_PATH = "/v1/images"
MULTIPART_ENVELOPE_BYTES = 64 * 1024  # boundaries, part headers and small fields around the file part
FILE_FIELDS = ("file", "image")
MAX_MULTIPART_PARTS = 16  # the image and a few form fields
REGISTRY_UNAVAILABLE = "the image registry is unavailable"
STORAGE_UNAVAILABLE = "the image storage is unavailable"
LANDING_NOT_FINISHED = "the same image was being landed and that landing did not finish; retry"
INTERNAL_ERROR = {"code": "internal", "detail": "internal error; it has been logged"}
# The validation time one client's uploads may take in a batch; its other uploads wait for the next
# batch, so crafted images that are slow to validate delay another client's upload by little.
CLIENT_VALIDATION_SECONDS = 0.01
BODY_RESERVE_STEP = 1 << 20  # memory reserved at a time for a body of undeclared length
RETRY_AFTER_SECONDS = 5
_READ_HEADERS = (b"content-length", b"content-type", b"x-api-key", b"authorization")


class RequestRefused(Exception):
    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None):
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


# -- authentication ------------------------------------------------------------------------------
def authorised_client(keys: ApiKeys, api_key: str | None, bearer: str | None) -> str:
    """The client a presented key (`X-API-Key`, or the `Authorization: Bearer` token) belongs to; else 401."""
    client = keys.client_for(api_key or bearer)
    if client is None:
        problem = "invalid API key" if (api_key or bearer) else "missing API key (X-API-Key or Authorization: Bearer)"
        raise RequestRefused(401, "unauthorized", problem, {"WWW-Authenticate": "Bearer"})
    return client


def bearer_token(authorization: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>`, read as FastAPI's HTTPBearer reads it."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


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
    receive: Receive, declared: str | None, admission: Admission, hold: Hold, limits: BodyLimits, body_limit: int
) -> AsyncIterator[bytes]:
    """The request body as it arrives, within the API's limits: 413 past `body_limit` (on the declared
    Content-Length before a byte is read), 408 when it stalls or takes too long, 503 when the memory it
    needs is not available (a declared length is reserved in full before reading, else step by step)."""
    if declared and declared.isdigit():
        if int(declared) > body_limit:
            raise _too_large(limits.image_bytes)
        try:
            admission.reserve(hold, int(declared))
        except Overloaded as overloaded:
            raise _busy(overloaded) from None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.deadline_seconds
    received = 0
    while True:
        wait = min(limits.timeout_seconds, deadline - loop.time())
        try:
            async with asyncio.timeout(max(wait, 0)):
                message = await receive()
        except TimeoutError:  # the connection is closed: this client is not sending anyway
            stalled = wait == limits.timeout_seconds
            problem = f"no data for {wait:g} s" if stalled else f"not complete after {limits.deadline_seconds:g} s"
            raise RequestRefused(
                408, "body_timeout", f"the body arrives too slowly: {problem}", {"Connection": "close"}
            ) from None
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


async def read_image_body(
    headers: dict[bytes, str], receive: Receive, admission: Admission, hold: Hold, limits: BodyLimits
) -> bytes:
    """The uploaded image's bytes: the raw body, or the file part of a multipart form."""
    content_type, options = parse_options_header(headers.get(b"content-type", ""))
    declared = headers.get(b"content-length")
    if content_type == b"multipart/form-data":
        limit = limits.image_bytes + MULTIPART_ENVELOPE_BYTES
        body = receive_body(receive, declared, admission, hold, limits, limit)
        return await _read_multipart(body, options.get(b"boundary"), limits.image_bytes)
    body = receive_body(receive, declared, admission, hold, limits, limits.image_bytes)
    return b"".join([chunk async for chunk in body])


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

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
    }
    try:
        parser = MultipartParser(boundary, callbacks=callbacks)  # refuses a boundary of over 256 characters
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


def quarantine_once(lander: Lander, data: bytes, rejection: ImageRejected, client: str, details: dict) -> None:
    """Keep a refused upload in quarantine once per client, bytes and hour: a client sending the same
    bad bytes again and again costs no further writes (its first copy and reason are already there)."""
    quarantine_id = f"api-{image_id_for(client, hashlib.sha256(data).hexdigest())}"
    files = lander.quarantine_files(
        data, rejection, source="api", client=client, quarantine_id=quarantine_id, details=details
    )
    if not lander.zones.exists(files[-1][0]):
        lander.store(files)


# -- answering -----------------------------------------------------------------------------------
def upload_result(landed: Landed) -> dict[str, Any]:
    """The answer's body: api.UploadResult, as FastAPI would serialise it."""
    return {
        "image_id": landed.image_id,
        "sha256": landed.sha256,
        "size_bytes": landed.size_bytes,
        "content_type": landed.content_type,
        "received_at": landed.received_at.isoformat().replace("+00:00", "Z"),
        "status": landed.status,
        "duplicate": landed.duplicate,
    }


async def answer(send: Send, status: int, content: dict, headers: dict[str, str] | None = None) -> None:
    """A JSON answer, encoded as Starlette's JSONResponse encodes it."""
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    head = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    head += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def error_answer(error: Exception) -> tuple[int, dict, dict[str, str] | None]:
    """Status, body and headers for a failed request; never internals (driver messages, paths): those
    go to the log."""
    if isinstance(error, RequestRefused):
        return error.status, {"code": error.code, "detail": error.detail}, error.headers
    if isinstance(error, ImageRejected):
        return error.status, {"code": error.code, "detail": error.detail}, None
    if isinstance(error, LandingInProgress):  # a copy of an image whose landing failed meanwhile
        return 503, {"code": "unavailable", "detail": LANDING_NOT_FINISHED}, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if isinstance(error, psycopg2.OperationalError | psycopg2.InterfaceError):
        log.error("registry unavailable: %s", error)
        return 503, {"code": "unavailable", "detail": REGISTRY_UNAVAILABLE}, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if isinstance(error, OSError):  # the files could not be written or made durable: nothing was landed
        log.error("image storage failed: %s", error)
        return 503, {"code": "unavailable", "detail": STORAGE_UNAVAILABLE}, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    log.error("upload failed", exc_info=error)
    return 500, INTERNAL_ERROR, None


# -- landing in batches ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Queued:
    """An upload received, waiting for a batch worker; `answer` is settled on the event loop."""

    upload: Upload
    declared_type: str | None  # the request's Content-Type, kept with a refused upload in quarantine
    answer: asyncio.Future[Landed]


class UploadBatches:
    """Lands the uploads the event loop queues, a batch at a time, on `workers` threads.

    A worker takes what is waiting — one upload per waiting client in turn, up to `max_batch` uploads or
    `max_batch_bytes`, so a client with many uploads queued delays another's by at most a batch — and
    lands it with as few hand-offs and durability waits as it can: each upload validated and hashed (a
    refusal is quarantined and answered alone), every image and sidecar written under temporary names,
    all claimed in one registry statement while the disk writes, the images fsynced together and all
    renamed with one folder fsync (Lander.land_prepared), then one wake-up of the event loop settles the
    whole batch's answers. A storage or registry failure fails the batch's landings, none of which is
    then visible.
    """

    def __init__(self, lander: Lander, workers: int = 2, max_batch: int = 32, max_batch_bytes: int = 64 << 20):
        self.lander = lander
        self.max_batch, self.max_batch_bytes = max_batch, max_batch_bytes
        self._waiting: dict[str, deque[Queued]] = {}  # per client, in turn order
        self._ready = threading.Condition()
        self._closing = False
        self._workers = [threading.Thread(target=self._run, name=f"uploads-{n}", daemon=True) for n in range(workers)]
        for worker in self._workers:
            worker.start()

    def submit(self, queued: Queued) -> None:
        with self._ready:
            self._waiting.setdefault(queued.upload.client, deque()).append(queued)
            self._ready.notify()

    @property
    def waiting(self) -> int:
        """Uploads queued, not yet taken by a worker."""
        with self._ready:
            return sum(len(queued) for queued in self._waiting.values())

    def close(self) -> None:
        """Land what was submitted, then stop the workers."""
        with self._ready:
            self._closing = True
            self._ready.notify_all()
        for worker in self._workers:
            worker.join()

    def next_batch(self) -> list[Queued] | None:
        """The next batch, in turn order (None: closing, nothing left)."""
        with self._ready:
            while not self._waiting and not self._closing:
                self._ready.wait()
            batch: list[Queued] = []
            size = 0
            while self._waiting and len(batch) < self.max_batch and size < self.max_batch_bytes:
                client, queued = next(iter(self._waiting.items()))
                batch.append(queued.popleft())
                size += len(batch[-1].upload.data)
                del self._waiting[client]
                if queued:
                    self._waiting[client] = queued  # to the back of the turn order
            return batch or None

    def _put_back(self, deferred: Sequence[Queued]) -> None:
        """Uploads taken but not landed: first in their clients' queues again."""
        if not deferred:
            return
        with self._ready:
            for queued in reversed(deferred):
                self._waiting.setdefault(queued.upload.client, deque()).appendleft(queued)
            self._ready.notify()

    def _run(self) -> None:
        while (batch := self.next_batch()) is not None:
            try:
                results = self.land(batch)
            except BaseException as error:  # every upload taken is answered, whatever happened
                results = [(queued, error) for queued in batch]
            for _, result in results:
                if isinstance(result, BaseException):
                    # An error's frames hold the whole batch (its bodies) and, through its answer, the error
                    # itself: a cycle that only the garbage collector would free, much later.
                    traceback.clear_frames(result.__traceback__)
            settle(results)

    def land(self, batch: Sequence[Queued]) -> list[tuple[Queued, Landed | BaseException]]:
        """Land a batch; per upload landed or refused, its result. Uploads of a client whose validations
        took CLIENT_VALIDATION_SECONDS in this batch are put back for the next one."""
        results: list[tuple[Queued, Landed | BaseException]] = []
        accepted: list[tuple[Queued, Prepared]] = []
        deferred: list[Queued] = []
        spent: dict[str, float] = {}  # validation seconds per client in this batch
        for queued in batch:
            client = queued.upload.client
            if spent.get(client, 0.0) >= CLIENT_VALIDATION_SECONDS:
                deferred.append(queued)
                continue
            start = time.perf_counter()
            try:
                accepted.append((queued, self._prepare(queued)))
            except Exception as error:
                results.append((queued, error))
            spent[client] = spent.get(client, 0.0) + time.perf_counter() - start
        self._put_back(deferred)
        if not accepted:
            return results
        try:
            landed = self.lander.land_prepared(self.lander.stage_many([prepared for _, prepared in accepted]))
        except Exception as error:  # storage or registry: none of the batch's landings happened
            return results + [(queued, error) for queued, _ in accepted]
        return results + list(zip([queued for queued, _ in accepted], landed, strict=True))

    def _prepare(self, queued: Queued) -> Prepared:
        try:
            return self.lander.prepare(queued.upload)
        except ImageRejected as rejection:
            details = {"declared_content_type": queued.declared_type}
            quarantine_once(self.lander, queued.upload.data, rejection, queued.upload.client, details)
            raise


def settle(results: Sequence[tuple[Queued, Landed | BaseException]]) -> None:
    """Settle the answers of a batch with one wake-up of each event loop waiting for them."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Queued, Landed | BaseException]]] = {}
    for queued, result in results:
        by_loop.setdefault(queued.answer.get_loop(), []).append((queued, result))
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_on_loop, settled)
        except RuntimeError:  # the loop is closed: nobody is waiting for these answers any more
            log.warning("%d upload answers dropped: their event loop is closed", len(settled))


def _settle_on_loop(results: Sequence[tuple[Queued, Landed | BaseException]]) -> None:
    for queued, result in results:
        if queued.answer.done():  # the request was cancelled meanwhile
            continue
        if isinstance(result, BaseException):
            queued.answer.set_exception(result)
        else:
            queued.answer.set_result(result)


# -- the endpoint --------------------------------------------------------------------------------
class UploadEndpoint:
    """POST /v1/images: receives each upload on the event loop and queues it for the batch workers."""

    def __init__(self, keys: ApiKeys, admission: Admission, limits: BodyLimits, batches: UploadBatches):
        self.keys, self.admission, self.limits = keys, admission, limits
        self.batches = batches

    def close(self) -> None:
        """Finish the uploads in progress."""
        self.batches.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, content, headers = await self._upload(scope, receive)
        except Exception as error:
            status, content, headers = error_answer(error)
        await answer(send, status, content, headers)

    async def _upload(self, scope: Scope, receive: Receive) -> tuple[int, dict, dict[str, str]]:
        headers: dict[bytes, str] = {}
        for name, value in scope["headers"]:
            if name in _READ_HEADERS and name not in headers:  # the first of repeated headers, as Starlette
                headers[name] = value.decode("latin-1")
        client = authorised_client(self.keys, headers.get(b"x-api-key"), bearer_token(headers.get(b"authorization")))
        try:
            hold = self.admission.admit(client)
        except Overloaded as overloaded:
            raise _busy(overloaded) from None
        try:  # the body's memory is free once the upload is answered
            data = await read_image_body(headers, receive, self.admission, hold, self.limits)
            if not data:
                raise RequestRefused(400, "empty", "the body is empty: send the image bytes")
            landing: asyncio.Future[Landed] = asyncio.get_running_loop().create_future()
            self.batches.submit(Queued(Upload(data, "api", client), headers.get(b"content-type"), landing))
            del data  # the batch holds it, until answered; an error's traceback through this frame must not
            landed = await landing
        finally:
            self.admission.release(hold)
        return (
            (200 if landed.duplicate else 201),
            upload_result(landed),
            {"Location": f"{UPLOAD_PATH}/{landed.image_id}"},
        )
