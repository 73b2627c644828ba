"""Errors the API returns, each with its HTTP status, in the OpenAI error shape.

``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`` — what the official ``openai`` client parses
into ``NotFoundError``, ``AuthenticationError``, ``BadRequestError``, ... A user mistake is never a bare 500.
"""

from __future__ import annotations

import re

# An absolute POSIX path ('/home/x/…') or file:// URI inside a message; the 'https://host/...' part of a URL is kept.
_ABS_PATH = re.compile(r"file://[^\s'\",;)]*|(?<![\w.:/])/(?:[^\s'\"/]+/)*[^\s'\",;)]*")


def scrub_paths(message: str) -> str:
    """``message`` with every absolute server path replaced by ``<path>`` (error bodies never reveal the layout)."""
    return _ABS_PATH.sub("<path>", message)


class ServeError(Exception):
    """An API error with its HTTP status; raised anywhere in the serve path, rendered by the ingress."""

    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code:
            self.code = code

    def body(self) -> dict:
        return {"error": {"message": scrub_paths(self.message), "type": self.type, "param": self.param, "code": self.code}}

    def __reduce__(self):  # survive Ray's pickling across the engine -> ingress boundary
        return (_rebuild, (type(self), self.message, self.param, self.code))


def _rebuild(cls, message, param, code):
    return cls(message, param=param, code=code)


class BadRequest(ServeError):
    status, type, code = 400, "invalid_request_error", "bad_request"


class Unauthorized(ServeError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class NotFound(ServeError):
    status, type, code = 404, "invalid_request_error", "model_not_found"


class Conflict(ServeError):
    """The adapter exists but cannot run on this base (lineage base_sha differs)."""

    status, type, code = 409, "invalid_request_error", "adapter_base_mismatch"


class PayloadTooLarge(ServeError):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class Unprocessable(ServeError):
    status, type, code = 422, "invalid_request_error", "invalid_body"


class TooManyRequests(ServeError):
    """A bounded queue is full or a tenant is at its concurrency cap or over its rate; ``retry_after_s`` becomes the
    Retry-After header, ``retry_after_ms`` (when set) the ``retry-after-ms`` header that the openai client prefers."""

    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"
    retry_after_s = 1
    retry_after_ms: int | None = None


class RequestTimeout(ServeError):
    """The request ran past ``request_timeout_s``; its generation was cancelled."""

    status, type, code = 504, "server_error", "timeout"


class EngineUnavailable(ServeError):
    status, type, code = 503, "server_error", "engine_unavailable"
