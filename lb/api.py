"""The JSON conventions of the API: error envelope, request bodies, field checks, timestamps."""
import json
import logging
import time
from datetime import datetime, timedelta, timezone

from flask import current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

access_log = logging.getLogger("lb.access")

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc) - EPOCH) // timedelta(milliseconds=1)
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """An error answered with the JSON envelope."""

    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def invalid(field, problem):
    """A 422 whose message names the field."""
    return ApiError(422, "validation_error", f"{field} {problem}")


def takes_json(view):
    """Mark a view whose request must carry a JSON object body."""
    view.takes_json = True
    return view


def body():
    """The request's parsed JSON object (empty for a view without a body)."""
    return g.get("body") or {}


def envelope(status, code, message, headers=None):
    response = jsonify(error={"code": code, "message": message})
    response.status_code = status
    response.headers.update(headers or {})
    return response


# -- field checks: each returns the value or raises a 422 naming the field ----

def get_str(obj, name, label=None, *, required=True, default=None, min_len=0, max_len=None):
    label = label or name
    value = obj.get(name)
    if value is None:
        if required:
            raise invalid(label, "is required")
        return default
    if not isinstance(value, str):
        raise invalid(label, "must be a string")
    if "\x00" in value:  # PostgreSQL cannot store it, and no name needs it
        raise invalid(label, "must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone \ud800 escape: valid JSON, but no character
            raise invalid(label, "must be valid Unicode text") from None
    if len(value) < min_len:
        raise invalid(label, f"must be at least {min_len} characters")
    if max_len is not None and len(value) > max_len:
        raise invalid(label, f"must be at most {max_len} characters")
    return value


def get_int(obj, name, label=None, *, default=None, low=0, high=None):
    label = label or name
    value = obj.get(name)
    if value is None:
        return default
    # bool is an int in Python; JSON true is not a number.
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(label, "must be an integer")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise invalid(label, f"must be {bound}")
    return value


def get_choice(obj, name, choices, label=None, *, default=None):
    label = label or name
    value = obj.get(name)
    if value is None:
        return default
    if value not in choices or not isinstance(value, str):
        raise invalid(label, "must be one of " + ", ".join(choices))
    return value


# -- timestamps: integer milliseconds inside, ISO-8601 with Z outside ---------

def iso(ms):
    """Format epoch milliseconds as ISO-8601 UTC with a trailing Z."""
    if ms is None:
        return None
    moment = EPOCH + timedelta(milliseconds=ms)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else text + "Z"


def parse_time(value, label):
    """Parse an ISO-8601 timestamp that names its zone (Z or an offset) into epoch ms."""
    if not isinstance(value, str) or len(value) > 40:
        raise invalid(label, "must be an ISO-8601 timestamp")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid(label, "must be an ISO-8601 timestamp") from None
    if moment.tzinfo is None:
        raise invalid(label, "must carry Z or a UTC offset")
    try:
        ms = (moment - EPOCH) // timedelta(milliseconds=1)
    except OverflowError:
        ms = -1
    if not 0 <= ms <= LATEST_MS:
        raise invalid(label, "must lie between 1970 and 9999 (UTC)")
    return ms


def now_ms():
    return int(current_app.config["CLOCK"]() * 1000)


# -- request plumbing ---------------------------------------------------------

def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def too_large(limit):
    return ApiError(413, "payload_too_large", f"Request body is larger than {limit} bytes")


def _read_body():
    """Checks in contract order: size (413), content type (415), JSON (400)."""
    g.started = time.perf_counter()
    if request.method not in BODY_METHODS or request.routing_exception is not None:
        return
    view = current_app.view_functions.get(request.endpoint)
    wants_body = getattr(view, "takes_json", False)
    length = request.content_length
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if length is not None and length > limit:
        raise too_large(limit)
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not wants_body and not length and not chunked:
        return
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
        parsed = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
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
