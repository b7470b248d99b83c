"""The upload API's HTTP protocol: uvicorn's httptools protocol with a deadline for each request's head. No Dagster.

uvicorn times a body only through the app (upload_endpoint.py) and an idle keep-alive connection only
until its next byte arrives: a connection opened and left silent, or a request line and headers sent a
byte every few seconds, would hold its socket and memory for ever, and enough of them refuse everyone
else (file descriptors, the kernel's accept queue). Here a request's head — from the connection's
opening, or the end of the previous response, to the end of its headers — must arrive within
`MEMBERFLOW_API_HEADER_TIMEOUT_SECONDS` (10); else the client is answered 408 and the connection closed.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from memberflow_assets.settings import Settings

log = logging.getLogger(__name__)

_TIMEOUT_MESSAGE = b"the request's headers did not arrive in time"
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: " + str(len(_TIMEOUT_MESSAGE)).encode() + b"\r\n\r\n" + _TIMEOUT_MESSAGE
)


@functools.cache
def configured_header_timeout() -> float:
    return Settings.from_env().ingest.api_header_timeout_seconds


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; a request head slower than `header_timeout_seconds` is answered 408."""

    header_timeout_seconds: float | None = None  # None: the configured value (a subclass may fix one)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._await_head()

    def on_headers_complete(self) -> None:
        self._cancel_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Only when nothing is in flight (uvicorn then arms its keep-alive timer): a pipelined request
        # started here has its head already.
        if self.timeout_keep_alive_task is not None:
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
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
