"""Errors of the job API in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``, 4xx for the caller's
mistakes (the official ``openai`` SDK turns them into ``BadRequestError``, ``NotFoundError``, ``RateLimitError`` …).

Every message is passed through ``scrub_paths``: no absolute server path and no raw exception text leaves the API.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.serve.errors import scrub_paths

log = logging.getLogger(__name__)

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
          409: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error"}


class APIError(Exception):
    """A caller-facing error: HTTP status, one-line message naming the field (``param``), machine code."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 retry_after_s: int | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.retry_after_s = status, message, param, retry_after_s
        self.code = code or {400: "invalid_request", 401: "invalid_api_key", 404: "not_found", 409: "conflict",
                             413: "request_too_large", 429: "quota_exceeded"}.get(status, "error")


def bad_request(param: str, message: str) -> APIError:
    return APIError(400, f"{param}: {message}", param=param)


def not_found(param: str, message: str) -> APIError:
    return APIError(404, message, param=param, code="not_found")


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": scrub_paths(message), "type": _TYPES.get(status, "server_error"), "param": param,
                      "code": code}}


def error_response(err: APIError) -> JSONResponse:
    headers = {"Retry-After": str(err.retry_after_s)} if err.retry_after_s else None
    if err.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(error_body(err.status, err.message, err.param, err.code), status_code=err.status,
                        headers=headers)


def field_of(loc: tuple | list) -> str:
    """``('body', 'method', 'supervised', 'hyperparameters', 'n_epochs')`` → ``method.supervised.hyperparameters.n_epochs``."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    """OpenAI-shaped handlers for our errors, request validation (400 naming the field), 404/405, and the rest."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError):
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        param = field_of(first.get("loc", ()))
        msg = first.get("msg", "invalid value")
        if first.get("type") == "extra_forbidden":
            msg = "unknown field"
        elif first.get("type") == "json_invalid":
            param, msg = "body", "request body is not valid JSON"
        return error_response(APIError(400, f"{param}: {msg}", param=param, code="invalid_request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return error_response(APIError(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):  # a bug: logged here, never echoed to the caller
        log.exception("job API: unexpected error")
        return JSONResponse(error_body(500, "internal error (logged on the server)", code="internal_error"),
                            status_code=500)
