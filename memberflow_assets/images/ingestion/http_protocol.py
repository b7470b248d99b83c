"""The upload API's HTTP protocol: uvicorn's httptools protocol with a deadline and size limits for each
request's head. No Dagster.

uvicorn times a body only through the app (upload_endpoint.py) and an idle keep-alive connection only
until its next byte arrives: a connection opened and left silent, or a request line and headers sent a
byte every few seconds, would hold its socket and memory for ever, and enough of them refuse everyone
else (file descriptors, the kernel's accept queue). Here a request's head — from the connection's
opening, or the end of the previous response, to the end of its headers — must arrive within
`MEMBERFLOW_API_HEADER_TIMEOUT_SECONDS` (10); else the client is answered 408 and the connection closed.

Nor does httptools bound a head's size: uvicorn keeps every header line as Python objects, and httptools
joins a long value's pieces by repeated concatenation (quadratic), all before the app sees the request —
18 MB of short header lines cost the API 320 MB, one 80 MB value 4.5 s of the event loop. Here a head is
counted as it arrives: more than `MEMBERFLOW_API_MAX_HEAD_BYTES` (64 KiB) before its end, or more than
`MEMBERFLOW_API_MAX_HEADERS` (100) header fields, is answered 431 and the connection closed, having fed
the parser no more than the limit.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from memberflow_assets.settings import Settings

log = logging.getLogger(__name__)

_TIMEOUT_MESSAGE = b"the request's headers did not arrive in time"
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: " + str(len(_TIMEOUT_MESSAGE)).encode() + b"\r\n\r\n" + _TIMEOUT_MESSAGE
)
_HEAD_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
# After a 431, what the client is still sending is read and dropped for this long before the connection is
# closed: closing with unread data resets it, and the reset can destroy the answer before the client reads it.
LINGER_SECONDS = 1.0


@functools.cache
def configured_header_timeout() -> float:
    return Settings.from_env().ingest.api_header_timeout_seconds


@functools.cache
def configured_head_limits() -> tuple[int, int]:
    ingest = Settings.from_env().ingest
    return ingest.api_max_head_bytes, ingest.api_max_headers


class _HeadRefused(Exception):
    """Raised in a parser callback to stop the parser; the client has been answered already."""


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; a request head slower than `header_timeout_seconds` is answered 408,
    one larger than `max_head_bytes` or with more than `max_headers` fields 431."""

    # None: the configured values (a subclass may fix them)
    header_timeout_seconds: float | None = None
    max_head_bytes: int | None = None
    max_headers: int | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        head_bytes, headers = configured_head_limits()
        self._max_head_bytes = self.max_head_bytes or head_bytes
        self._max_headers = self.max_headers or headers
        self._head_bytes: int | None = 0  # bytes received of the head being read; None while a body is
        self._headers = 0
        self._refused = False
        self._head_deadline: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        counted = self._head_bytes
        if counted is None or counted + len(data) <= self._max_head_bytes:  # the fast path: a body, or room left
            if counted is not None:
                self._head_bytes = counted + len(data)
            super().data_received(data)
            return
        if self._refused:  # lingering after a 431: dropped unparsed
            return
        # The head may end inside `data` (a body follows, or the next request): the parser gets only the
        # head's remaining room first, and the rest only if the head has ended within it.
        room = self._max_head_bytes - counted
        view = memoryview(data)
        self._head_bytes = self._max_head_bytes  # on_headers_complete / on_message_complete reset it
        super().data_received(view[:room])
        if self._refused or self.transport.is_closing():
            return
        if self._head_bytes == self._max_head_bytes:
            self._refuse(f"the request's line and headers exceed {self._max_head_bytes:,} bytes")
        else:
            self.data_received(view[room:])

    def on_message_begin(self) -> None:
        self._headers = 0
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        if self._headers > self._max_headers:
            self._refuse(f"the request has more than {self._max_headers} header fields")
            raise _HeadRefused  # uvicorn catches the parser's error; its 400 is not sent (send_400_response)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self._cancel_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_bytes = 0  # what follows is the next request's head
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            super().send_400_response(msg)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Only when nothing is in flight (uvicorn then arms its keep-alive timer): a pipelined request
        # started here has its head already.
        if self.timeout_keep_alive_task is not None:
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._cancel_deadline()
        timeout = self.header_timeout_seconds or configured_header_timeout()
        self._head_deadline = self.loop.call_later(timeout, self._head_too_slow)

    def _cancel_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        log.info("%s closed: the request's headers did not arrive in time", self.client)
        self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()

    def _refuse(self, reason: str) -> None:
        """431, the sending side closed; what still arrives is dropped until the client closes or LINGER_SECONDS."""
        self._refused = True
        self._head_bytes = self._max_head_bytes  # every later read takes data_received's slow path: dropped
        self._cancel_deadline()
        if self.transport.is_closing():
            return
        log.info("%s refused: %s", self.client, reason)
        body = reason.encode()
        length = b"content-length: " + str(len(body)).encode() + b"\r\n"
        self.transport.write(_HEAD_TOO_LARGE + length + b"connection: close\r\n\r\n" + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger = self.loop.call_later(LINGER_SECONDS, self.transport.close)


# What the API is served with: `memberflow api`, the tests' servers and the benchmark's ceilings alike.
UVICORN_OPTIONS: dict[str, Any] = {"http": HeaderDeadlineProtocol}
