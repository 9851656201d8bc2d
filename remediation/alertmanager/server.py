"""Running the receiver under uvicorn (httptools), with a deadline for request headers.

uvicorn has no header-read timeout: its keep-alive timer starts only after a response and every
byte that arrives cancels it, so a client that opens a connection and sends its headers a byte at
a time (slowloris) holds the connection, and a file descriptor, for as long as it likes. A few
hundred of them exhaust the server. `HeaderDeadline` is uvicorn's httptools protocol with one
timer more: armed when a connection opens and when each request starts, disarmed when its
headers are complete; when it fires the client gets a 408 and the connection is closed. (The body
is bounded by `BodyLimit`; the time an authenticated sender takes to send it is not.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                    b"content-length: 38\r\nconnection: close\r\n\r\n"
                    b"request headers did not arrive in time")


class HeaderDeadline(HttpToolsProtocol):
    """httptools protocol that closes a connection whose request headers take longer than
    `header_timeout_s` (set on a subclass: `with_header_timeout`)."""

    header_timeout_s: float = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # the next request on a keep-alive connection

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.write(_REQUEST_TIMEOUT)
            self.transport.close()


def with_header_timeout(seconds: float) -> type[HeaderDeadline]:
    """The protocol class to give uvicorn (`http=`) for a header deadline of `seconds`.

    >>> with_header_timeout(2.5).header_timeout_s
    2.5
    """
    return type("HeaderDeadline", (HeaderDeadline,), {"header_timeout_s": float(seconds)})


def run(app: Any, host: str, port: int, header_timeout_s: float, **options: Any) -> None:
    """`uvicorn.run` with httptools, the header deadline and Vigil's log level."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning",
                http=with_header_timeout(header_timeout_s), **options)
