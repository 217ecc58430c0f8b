"""The server's one middleware: body size limits (413) and request metrics, pure ASGI.

It wraps the whole app (outside routing and its error handling) so it sees every response,
413s included; it does no I/O and holds no lock: counting a request is two in-memory updates.
"""

from __future__ import annotations

import time

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mltrail.contracts.tasks import PREDICT_ENDPOINTS
from mltrail.serve.state import ServerState

METRIC_PATHS = frozenset(
    {
        *("/health", "/ready", "/version", "/metrics"),
        *PREDICT_ENDPOINTS,
        *("/feedback", "/admin/reload", "/docs", "/openapi.json"),
    }
)
"""The routes request metrics are labelled with; any other path counts as ``other`` (a label
per path a client makes up would grow Prometheus' series without bound)."""


class LimitsAndMetrics:
    """413 for bodies over ``max_body_bytes`` (before reading them when the size is declared),
    and the request count and latency of every response, by endpoint and status."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.limit = state.settings.max_body_bytes
        self.metrics = state.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"] if scope["path"] in METRIC_PATHS else "other"
        limit = self.limit
        status = 500
        received = 0

        async def send_seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body over {limit} bytes")
            return message

        try:
            declared = dict(scope["headers"]).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                response = JSONResponse(
                    {
                        "detail": f"request body of {int(declared)} bytes is over the limit "
                        f"of {limit} bytes"
                    },
                    status_code=413,
                )
                await response(scope, receive, send_seen)
            else:
                await self.app(scope, receive_limited, send_seen)
        finally:
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)
