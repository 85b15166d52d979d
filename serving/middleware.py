"""Around every request: bearer-token auth of /v1/, a request id, one JSON access-log line (plain ASGI, so
that a streamed body is timed to its last chunk)."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
import uuid

access_log = logging.getLogger("serving.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # an incoming X-Request-ID is echoed only if it fits
PROTECTED = "/v1/"


class RequestMiddleware:
    def __init__(self, app, tokens: tuple[str, ...]):
        self.app, self.tokens = app, tokens

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-request-id", "")
        request_id = request_id if REQUEST_ID.match(request_id) else uuid.uuid4().hex
        started, status = time.perf_counter(), [500]

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            if scope["path"].startswith(PROTECTED) and not self.authorized(headers.get("authorization", "")):
                await unauthorized(send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            _log(scope, status[0], started, request_id)

    def authorized(self, header: str) -> bool:
        """Any configured token, as `Authorization: Bearer TOKEN`; no token configured: everyone (loopback)."""
        if not self.tokens:
            return True
        scheme, _, token = header.partition(" ")
        given = token.strip().encode()
        return scheme.lower() == "bearer" and any(secrets.compare_digest(given, t.encode()) for t in self.tokens)


async def unauthorized(send) -> None:
    body = json.dumps({"error": "missing or wrong bearer token (Authorization: Bearer TOKEN)",
                       "field": "Authorization"}).encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body})


def _log(scope, status: int, started: float, request_id: str) -> None:
    rows = scope.get("state", {}).get("rows")
    access_log.info(json.dumps({"method": scope["method"], "path": scope["path"], "status": status, "rows": rows,
                                "ms": round((time.perf_counter() - started) * 1000, 1),
                                "request_id": request_id}))
