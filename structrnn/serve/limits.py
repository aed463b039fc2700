"""The request-body limit: an ASGI middleware that answers 413 with a JSON error before the
application reads more than ``max_body`` bytes (by the declared Content-Length, and by the bytes
that actually arrive, for a chunked body that declares none)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["BodyLimit", "json_error"]

Scope = dict[str, Any]
DRAIN = 8  # a streamed body over the limit is read (and dropped) up to 8 times the limit


async def json_error(send, status: int, message: str) -> None:
    """Send a whole ``{"error": message}`` response with ``status``."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Reads a request's body (at most ``max_body`` bytes) before the application does, and
    answers 413 when there is more; the application then reads the buffered body.

    Args:
        app: the ASGI application.
        max_body: the most bytes a request body may have.
    """

    def __init__(self, app, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    def _too_large(self, size: str) -> str:
        return (f"request body too large: {size} bytes, this server takes at most "
                f"{self.max_body} (--max-body)")

    async def _drain(self, receive, more: bool) -> int:
        """Read and drop the rest of a body that is too large, up to :data:`DRAIN` times the
        limit, so that the answer reaches the client before the connection closes (closing on
        unread bytes resets it, and the client may lose the answer); returns the bytes read."""
        dropped = 0
        while more and dropped <= DRAIN * self.max_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            dropped += len(message.get("body", b""))
            more = message.get("more_body", False)
        return dropped

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await json_error(send, 400, f"Content-Length: expected a number of bytes, got "
                                            f"{declared.decode(errors='replace')!r}")
                return
            if int(declared) > self.max_body:
                await json_error(send, 413, self._too_large(declared.decode()))
                return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                size = len(body) + await self._drain(receive, more)
                await json_error(send, 413, self._too_large(f"{size} or more"))
                return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: a disconnect, when it comes

        await self.app(scope, replay, send)
