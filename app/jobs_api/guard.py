"""The API's front door as a plain ASGI middleware: authenticate from the headers, then bound the body on the stream.

Order matters and is the point: a caller without a valid key gets its 401 before one body byte is read, and a body
is counted chunk by chunk as it arrives (``Content-Length`` is a hint, never trusted), so a chunked 200 MB body costs
the server at most one limit's worth of memory. JSON routes get ``max_body_kb`` (read here, then replayed to the
app); ``POST /v1/files`` gets ``max_upload_mb`` and is streamed through (multipart spools to disk).
"""

from __future__ import annotations

from typing import Awaitable, Callable

from app.jobs_api.errors import APIError, error_body
from app.serve.auth import KeyRing
from app.serve.errors import Unauthorized

UPLOAD_PATHS = ("/v1/files",)


class BodyTooLarge(APIError):
    def __init__(self, limit: int):
        super().__init__(413, f"request body exceeds the limit of {limit} bytes", param="body",
                         code="request_too_large")


async def _send_error(send, err: APIError) -> None:
    import json

    body = json.dumps(error_body(err.status, err.message, err.param, err.code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    if err.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """``Guard(app, keys, json_limit, upload_limit)``: 401 before the body, 413 as soon as the count passes the limit.

    The tenant is put in ``scope['state']['tenant']`` for the routes (they never authenticate again)."""

    def __init__(self, app, keys: KeyRing, json_limit: int, upload_limit: int):
        self.app, self.keys = app, keys
        self.json_limit, self.upload_limit = json_limit, upload_limit

    async def __call__(self, scope, receive: Callable[[], Awaitable[dict]], send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            tenant = self.keys.authenticate(headers.get("authorization"))
        except Unauthorized as exc:
            return await _send_error(send, APIError(401, str(exc), code="invalid_api_key"))
        scope.setdefault("state", {})["tenant"] = tenant
        upload = scope["method"] == "POST" and scope["path"].rstrip("/") in UPLOAD_PATHS
        limit = self.upload_limit if upload else self.json_limit
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return await _send_error(send, BodyTooLarge(limit))
        if upload:
            return await self._streamed(scope, receive, send, limit)
        body, more = bytearray(), True
        while more:  # small JSON bodies: read (bounded) here, hand the app a replay
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            more = message.get("more_body", False)
            if len(body) > limit:
                return await _send_error(send, BodyTooLarge(limit))
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _streamed(self, scope, receive, send, limit: int) -> None:
        seen, started = 0, False

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracking_send)
        except BodyTooLarge as err:
            if not started:
                await _send_error(send, err)
