"""Errors as JSON: ApiError, the envelope, request-body checks in contract order, the access log."""
import json
import logging
import time

from flask import current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

access_log = logging.getLogger("lb.access")

BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """An error answered with the JSON envelope. ``kind`` and ``extra``: the OpenAI envelope's ``type``, when
    it is not the status's own, and its further fields (the proxy's)."""

    def __init__(self, status, code, message, headers=None, kind=None, extra=None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}
        self.kind, self.extra = kind, extra or {}


class Unavailable(Exception):
    """The database does not answer, or cannot take writes (answered 503 by lb.database's handler)."""

    def __init__(self, message="The database does not answer"):
        super().__init__(message)
        self.message = message


def invalid(field, problem):
    """A 422 whose message names the field."""
    return ApiError(422, "validation_error", f"{field} {problem}")


def takes_json(view):
    """Mark a view whose request must carry a JSON object body."""
    view.takes_json = True
    return view


def takes_large_json(view):
    """Like takes_json, up to PROXY_MAX_BODY_BYTES: a proxied request carries a whole conversation."""
    view.body_limit = "PROXY_MAX_BODY_BYTES"
    return takes_json(view)


def body():
    """The request's parsed JSON object (empty for a view without a body)."""
    return g.get("body") or {}


# The proxy's paths answer errors in the OpenAI envelope, which its clients (the openai package, the Codex CLI) read.
PROXY_PATHS = ("/v1/", "/backend-api/")
OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
                415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error"}
OPENAI_CODES = {"invalid_json": "invalid_request_error"}


def is_proxy_path(path):
    return path.startswith(PROXY_PATHS) or path in ("/v1", "/backend-api")


def openai_error(status, code, message, kind=None, **extra):
    """An error body in the OpenAI envelope: ``{"error": {"message", "type", "code", "param"}}``."""
    return {"error": {"message": message, "type": kind or OPENAI_TYPES.get(status, "server_error"),
                      "code": OPENAI_CODES.get(code, code), **extra, "param": None}}


def error_json(path, status, code, message):
    """The error body for ``path``: the OpenAI envelope on the proxy's paths, the dashboard's elsewhere."""
    if is_proxy_path(path):
        return openai_error(status, code, message)
    return {"error": {"code": code, "message": message}}


def envelope(status, code, message, headers=None):
    response = jsonify(error_json(request.path, status, code, message))
    response.status_code = status
    response.headers.update(headers or {})
    return response


def too_large(limit):
    return ApiError(413, "payload_too_large", f"Request body is larger than {limit} bytes")


def loads(text):
    """JSON as the API reads it: NaN and Infinity refused, integers of any length accepted (ValueError if bad)."""
    return json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _parse_int(text):
    """JSON integers; one too long for int() is still valid JSON: it reaches the field checks as infinity."""
    if len(text) > 100:
        return float("-inf") if text.startswith("-") else float("inf")
    return int(text)


def _read_body():
    """Checks in contract order: size (413), content type (415), JSON (400)."""
    g.started = time.perf_counter()
    if request.method not in BODY_METHODS or request.routing_exception is not None:
        return
    view = current_app.view_functions.get(request.endpoint)
    wants_body = getattr(view, "takes_json", False)
    length = request.content_length
    limit = current_app.config[getattr(view, "body_limit", "MAX_BODY_BYTES")]
    if length is not None and length > limit:
        raise too_large(limit)
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not wants_body and not length and not chunked:
        return
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        # The body must be read (the proxy reads its model): a compressed one is refused, not guessed at.
        raise ApiError(415, "unsupported_media_type", "Compressed request bodies are not supported")
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Request body must be application/json")
    # werkzeug quietly stops a chunked body at the limit; read one byte more to tell.
    request.max_content_length = limit + 1
    data = request.get_data(cache=True)
    if len(data) > limit:
        raise too_large(limit)
    if not wants_body and not data:
        return
    try:
        parsed = loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "Request body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise ApiError(400, "invalid_json", "Request body must be a JSON object")
    g.body = parsed


def _log_request(response):
    elapsed = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
    # The path only: query strings and bodies may carry secrets.
    access_log.info("%s %s %s %d %.1fms", request.remote_addr, request.method, request.path,
                    response.status_code, elapsed)
    return response


def _api_error(exc):
    return envelope(exc.status, exc.code, exc.message, exc.headers)


def _http_error(exc):
    if exc.code == 500:
        # Flask has logged the traceback already; the client learns nothing.
        return envelope(500, "internal_error", "Unexpected error")
    headers = {"Allow": ", ".join(exc.valid_methods)} if getattr(exc, "valid_methods", None) else {}
    message = "Not found" if exc.code == 404 else exc.name
    return envelope(exc.code or 500, HTTP_CODES.get(exc.code, "http_error"), message, headers)


def init_app(app):
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BODY_BYTES"]
    app.json.sort_keys = False
    app.json.compact = True
    app.url_map.merge_slashes = False  # merging would answer with a redirect
    app.url_map.strict_slashes = True
    app.before_request(_read_body)
    app.after_request(_log_request)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
