"""The LLM clients' face: /backend-api/codex/* for the Codex CLI, /v1/* for the OpenAI SDK.

Each view checks the request (key, model, key limits), hands it to the pool
(lb.pool) and answers: the stream relayed as it arrives, one JSON answer, or
the upstream's own error. The request's database connection is released
before the upstream is called (lb.pool), and the stream writes its log on a
connection of its own when it ends (lb.ledger). Errors on these paths come in
the OpenAI envelope (lb.errors).
"""
import json

from flask import Blueprint, Response, current_app, g, jsonify, request

from lb import keys, metrics, pool, relay, responses, store
from lb.auth import key_required
from lb.balancer import Choice
from lb.clock import iso, now_ms
from lb.errors import ApiError, body, openai_error, takes_large_json
from lb.ledger import Ledger
from lb.upstream import PARSED, Upstream, usage_of

bp = Blueprint("proxy", __name__)

# Client headers that never go upstream: credentials, what the proxy sets itself, hop-by-hop, forwarding.
NEVER_UPSTREAM = frozenset((
    "authorization", "cookie", "host", "content-length", "content-type", "content-encoding", "accept",
    "accept-encoding", "chatgpt-account-id", "forwarded", "x-real-ip", "true-client-ip", "expect",
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade"))
NEVER_PREFIXES = ("x-forwarded-", "cf-")
SSE = "text/event-stream"


def upstream_headers(headers, accept):
    """The client's headers that pass upstream (case kept), with the ``Accept`` the proxy reads."""
    named = {token.strip().lower() for token in headers.get("Connection", "").split(",")}
    kept = {name: value for name, value in headers.items()
            if name.lower() not in NEVER_UPSTREAM and name.lower() not in named
            and not name.lower().startswith(NEVER_PREFIXES)}
    kept["Accept"] = accept
    return kept


def admit(data, key, now):
    """The request's model, once the key may use it and has not reached a limit (400, 403, 429)."""
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "invalid_request_error", "model is required: a model id of the catalog")
    allowed = {mid for mid, _, _ in store.enabled_models()}
    if key is not None and key.allowed_models is not None:
        allowed &= set(json.loads(key.allowed_models))
    if model not in allowed:
        raise ApiError(403, "model_not_allowed", f"The model {model[:128]!r} is not allowed for this API key")
    if key is not None:
        for limit in keys.limits_used(key, now, current_app.config["BILLING_CYCLE_DAY"]):
            if limit["used"] >= limit["max"]:
                raise ApiError(429, "rate_limit_exceeded",
                               f"API key limit reached: {limit['metric']} {limit['max']} per {limit['window']} "
                               f"(used {limit['used']}); it resets at {limit['resetsAt']}")
    return model


def _begin(data):
    """Admit the request; its Ledger, and its prompt_cache_key if sticky sessions are on."""
    clock = current_app.config["CLOCK"]
    model = admit(data, g.api_key, now_ms())
    sticky = store.sticky_sessions()
    cache_key = data.get("prompt_cache_key")
    sticky_key = cache_key.strip() if sticky and isinstance(cache_key, str) and cache_key.strip() else None
    return Ledger(lambda: int(clock() * 1000), model, g.api_key, metrics.current(), g.get("started")), sticky_key


def _send(ledger, path, payload, stream, cache_key, parse=PARSED):
    call = pool.Call(path, payload, upstream_headers(request.headers, SSE if stream else "application/json"),
                     stream, cache_key, parse)
    return pool.send(call, ledger, current_app.extensions["lb_upstream"])


def _dumps(data):
    try:
        return json.dumps(data, allow_nan=False, separators=(",", ":")).encode()
    except ValueError:  # an integer too long for the JSON reader became infinity
        raise ApiError(400, "invalid_request_error", "The body holds a number too large to pass on") from None


# -- answers ---------------------------------------------------------------------------------

def refusal(choice, ledger):
    """No account could take the request: 429 usage_limit_reached for an exhausted pool, else 503 no_accounts."""
    if choice.refusal == "usage_limit_reached":
        ledger.outcome("rate_limit", "usage_limit_reached")
        ledger.finish()
        resets = choice.resets_at // 1000 if choice.resets_at is not None else None
        message = choice.message + (f"; the first resets at {iso(choice.resets_at)}" if resets else "")
        # The type is the code too: what the Codex CLI reads to report a usage limit and its reset.
        answer = jsonify(openai_error(429, "usage_limit_reached", message, kind="usage_limit_reached",
                                      resets_at=resets))
        answer.status_code = 429
        if resets is not None:
            answer.headers["Retry-After"] = str(max(1, resets - ledger.now() // 1000))
        return answer
    ledger.outcome("error", "no_accounts")
    ledger.finish()
    answer = jsonify(openai_error(503, "no_accounts", choice.message))
    answer.status_code = 503
    if choice.retry_after_s is not None:
        answer.headers["Retry-After"] = str(choice.retry_after_s)
    return answer


def passed_on(failed, ledger):
    """The upstream's own answer, as it sent it."""
    ledger.outcome(failed.log_status, failed.error_code)
    ledger.finish()
    return Response(failed.body, failed.status, headers=failed.headers)


def unserved(result, ledger):
    """The answer when no account served the request (the refusal, or the upstream's own); None if one did."""
    if isinstance(result, Choice):
        return refusal(result, ledger)
    if isinstance(result, pool.Failed):
        return passed_on(result, ledger)
    return None


def streamed(result, ledger):
    if not isinstance(result, pool.Served):
        return unserved(result, ledger)
    headers = {"content-type": SSE, **result.headers, "Cache-Control": "no-cache"}
    return Response(relay.relay(result, ledger, result.headers), 200, headers=headers, direct_passthrough=True)


# -- routes ----------------------------------------------------------------------------------

@bp.post("/backend-api/codex/responses")
@takes_large_json
@key_required
def codex_responses():
    """The Codex CLI's own request: passed on as sent (with stream true)."""
    data = body()
    ledger, cache_key = _begin(data)
    payload = request.get_data() if data.get("stream") is True else _dumps({**data, "stream": True})
    return streamed(_send(ledger, "codex/responses", payload, True, cache_key), ledger)


@bp.post("/v1/responses")
@takes_large_json
@key_required
def v1_responses():
    """The OpenAI Responses API: SSE with ``stream: true``, else one JSON response object."""
    data = body()
    ledger, cache_key = _begin(data)
    try:
        payload = _dumps(responses.for_upstream(data))
    except responses.Refused as refused:
        raise ApiError(400, "invalid_request_error", str(refused)) from None
    if data.get("stream") is True:
        return streamed(_send(ledger, "codex/responses", payload, True, cache_key), ledger)
    result = _send(ledger, "codex/responses", payload, True, cache_key, responses.PARSED)
    if isinstance(result, pool.Failed) and result.status == 200:  # a failed stream: no events for a JSON client
        ledger.outcome(result.log_status, result.error_code)
        ledger.finish()
        raise ApiError(502, "upstream_error", f"The upstream failed the response ({result.error_code})")
    if not isinstance(result, pool.Served):
        return unserved(result, ledger)
    terminal, items = relay.collect(result, ledger, result.headers, responses.ITEM_DONE)
    ledger.finish()
    if terminal is None or terminal.type == "response.failed":
        raise ApiError(502, "upstream_error", f"The upstream failed the response ({ledger.error_code})")
    headers = {name: value for name, value in result.headers.items() if name != "content-type"}
    answer = jsonify(responses.assemble(terminal, items))
    answer.headers.update(headers)
    return answer


@bp.post("/backend-api/codex/responses/compact")
@bp.post("/v1/responses/compact")
@takes_large_json
@key_required
def compact():
    """The Codex CLI's remote compaction: one JSON answer, passed on."""
    data = body()
    ledger, cache_key = _begin(data)
    result = _send(ledger, "codex/responses/compact", request.get_data(), False, cache_key)
    if not isinstance(result, pool.Served):
        return unserved(result, ledger)
    try:
        answer = json.loads(result.body)
    except (ValueError, RecursionError):
        answer = None
    if isinstance(answer, dict):
        ledger.outcome("ok", usage=usage_of(answer))
    ledger.finish()
    return Response(result.body, 200, headers={"content-type": "application/json", **result.headers})


@bp.get("/v1/models")
@bp.get("/backend-api/codex/models")
@key_required
def models():
    """The enabled catalog models this key may use, in the OpenAI list shape."""
    catalog = store.enabled_models()
    key = g.api_key
    allowed = set(json.loads(key.allowed_models)) if key is not None and key.allowed_models is not None else None
    return jsonify(object="list", data=[
        {"id": mid, "object": "model", "created": (added_at or 0) // 1000, "owned_by": "codex-lb"}
        for mid, _, added_at in catalog if allowed is None or mid in allowed])


def init_app(app):
    config = app.config
    app.extensions["lb_upstream"] = Upstream(config["UPSTREAM_URL"], config["UPSTREAM_CONNECT_TIMEOUT"],
                                             config["UPSTREAM_READ_TIMEOUT"], maxsize=config["THREADS"])
    app.register_blueprint(bp)
