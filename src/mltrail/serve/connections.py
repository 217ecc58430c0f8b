"""Bounded connections: uvicorn's httptools protocol with a deadline for the headers and for the
body, and a cap on the size of the headers.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``) and answers 503 beyond
``limit_concurrency``, but it has no deadline of its own for a request's headers or body, and
the httptools parser buffers a header of any size: a client that sends one byte a second, a
socket opened and left silent, or a 50 MB header would hold a connection (and its memory)
for as long as it likes. :func:`bounded_protocol` closes those:

- headers: from the connection's opening, or from the first byte of the next request on a
  kept-alive connection, to the end of the headers: ``header_timeout_s`` (then 408 when some
  of a request came, a plain close when nothing did);
- body: from the end of the headers to the end of the body: ``body_timeout_s`` (then 408);
- size: more than ``max_header_bytes`` before the end of the headers: 431.

Each answer closes the connection. The rest (keep-alive, pipelining, flow control) is
uvicorn's, untouched.
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    body_timeout_s: float
    max_header_bytes: int


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the deadlines and the header cap of ``limits``."""

    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: TimerHandle | None = None
        self._in_headers = True  # waiting for (the rest of) a request's headers
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            if self._deadline is None:  # the first byte of the next request on this connection
                self._arm(self.limits.header_timeout_s)
            self._header_bytes += len(data)
        super().data_received(data)
        # Still in the headers after this chunk (a chunk that ends them resets the count): the
        # parser holds every byte so far.
        if self._in_headers and self._header_bytes > self.limits.max_header_bytes:
            self._refuse(431, f"request headers over {self.limits.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._header_bytes = 0
        self._arm(self.limits.body_timeout_s)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_headers = True
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if self._in_headers and self._header_bytes == 0:
            self.transport.close()  # an idle connection: nothing to answer
        elif self._in_headers:
            self._refuse(
                408, f"request headers not received within {self.limits.header_timeout_s} s"
            )
        elif cycle is not None and not cycle.response_started:
            # The app waits for the body: it is told the client left, and what it might still
            # send is dropped (uvicorn writes nothing for a disconnected cycle).
            cycle.disconnected = True
            cycle.message_event.set()
            self._refuse(408, f"request body not received within {self.limits.body_timeout_s} s")
        else:
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        if self.transport.is_closing():  # uvicorn has answered already (a parser error: 400)
            return
        body = message.encode()
        head = b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
        length = b"content-length: %d\r\n\r\n" % len(body)
        self.transport.write(STATUS_LINE[status] + head + length + body)
        self.transport.close()


def bounded_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """The protocol class to give uvicorn (``http=``): one per server, with its limits."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"limits": limits})
