"""The routes: /backend-api/codex/* for the Codex CLI, /v1/* for the OpenAI SDK.

Each view checks the request (key, model, key limits), hands it to
lb.proxy.failover and answers: the stream relayed as it arrives, one JSON
answer, or the upstream's own error. Errors the proxy raises are ApiErrors,
answered in the OpenAI envelope by this blueprint's handler.
"""
import json
import re
import time

from typing import NamedTuple, Optional

from flask import Blueprint, Response, current_app, g, jsonify, request

from lb import caps, keys, store
from lb.auth import key_required
from lb.clock import iso
from lb.errors import ApiError, body, openai_error, takes_large_json
from lb.proxy import chat, failover, relay, responses
from lb.proxy.balancer import Choice
from lb.proxy.ledger import Ledger, derived_key, finish
from lb.proxy.upstream import FAILED, OUTPUT_ITEM_DONE, PARSED, usage_of

bp = Blueprint("proxy", __name__)

# Client headers that never go upstream: credentials, what the proxy sets itself, hop-by-hop, forwarding.
NEVER_UPSTREAM = frozenset((
    "authorization", "cookie", "host", "content-length", "content-type", "content-encoding", "accept",
    "accept-encoding", "chatgpt-account-id", "forwarded", "x-real-ip", "true-client-ip", "expect",
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade"))
NEVER_PREFIXES = ("x-forwarded-", "cf-")
SSE = "text/event-stream"
RESPONSES, COMPACT = "codex/responses", "codex/responses/compact"  # the upstream's paths
# A model alias: a catalog id and a reasoning effort (gpt-5.3-codex-high).
ALIAS = re.compile(r"(.+)-(minimal|low|medium|high|xhigh)")


@bp.errorhandler(ApiError)
def openai_answer(exc):
    """The proxy's errors in the OpenAI envelope, which its clients (the openai package, the Codex CLI) read."""
    answer = jsonify(openai_error(exc.status, exc.code, exc.message, exc.kind, **exc.extra))
    answer.status_code = exc.status
    answer.headers.update(exc.headers)
    return answer


@bp.before_request
def take_place():
    """Every proxied request takes a place of the server's capacity first (503 server_busy when full)."""
    _proxy().capacity.take()
    g.proxy_place = True


@bp.teardown_request
def give_place_back(exc):
    """A request's place goes back when it ends, unless a stream took it along (lb.proxy.relay gives it back);
    so does its key slot, when an error cut the request short of its ledger's finish."""
    ledger = g.pop("ledger", None)
    if ledger is not None and ledger.slot_id is not None and not ledger.finished:
        _proxy().leases.free(ledger.slot_id)
    if g.pop("proxy_place", False):
        _proxy().capacity.give_back()


def upstream_headers(headers, accept):
    """The client's headers that pass upstream (case kept), with the ``Accept`` the proxy reads."""
    named = {token.strip().lower() for token in headers.get("Connection", "").split(",")}
    kept = {name: value for name, value in headers.items()
            if name.lower() not in NEVER_UPSTREAM and name.lower() not in named
            and not name.lower().startswith(NEVER_PREFIXES)}
    kept["Accept"] = accept
    return kept


def resolve(model, catalog):
    """(catalog id, reasoning effort or None) of a requested model: a catalog id, or an alias of one
    (``<id>-<effort>``); an unknown model is itself, with no effort."""
    alias = ALIAS.fullmatch(model)
    if model not in catalog and alias and alias[1] in catalog:
        return alias[1], alias[2]
    return model, None


def admit(data, key, now):
    """The request's model (the catalog id) and an alias's reasoning effort, once the key may use the model
    and has not reached a limit (400, 403, 429)."""
    requested = data.get("model")
    if not isinstance(requested, str) or not requested:
        raise ApiError(400, "invalid_request_error", "model is required: a model id of the catalog")
    catalog = {entry.id for entry in store.enabled_models()}
    model, effort = resolve(requested, catalog)
    if model not in catalog or not keys.allows(key, model):
        raise ApiError(403, "model_not_allowed", f"The model {requested[:128]!r} is not allowed for this API key")
    if key is not None:
        for limit in keys.limits_used(key, now, current_app.config["BILLING_CYCLE_DAY"]):
            if limit["used"] >= limit["max"]:
                current_app.extensions["lb_alerts"].limit_refused(key, limit, now)  # the webhook hears of it
                raise ApiError(429, "rate_limit_exceeded",
                               f"API key limit reached: {limit['metric']} {limit['max']} per {limit['window']} "
                               f"(used {limit['used']}); it resets at {limit['resetsAt']}")
    return model, effort


def _proxy():
    return current_app.extensions["lb_proxy"]


class Admitted(NamedTuple):
    data: dict  # the body, its model the catalog id
    ledger: Ledger
    cache_key: Optional[str]  # the prompt_cache_key, if sticky sessions are on
    effort: Optional[str]  # a model alias's reasoning effort
    sticky: bool  # sticky sessions are on


def _begin():
    """Admit the request: an Admitted."""
    data, now = body(), _proxy().clock()
    model, effort = admit(data, g.api_key, now)
    if model != data["model"]:
        data = {**data, "model": model}
    cache_key, sticky = data.get("prompt_cache_key"), store.sticky_sessions()
    given = isinstance(cache_key, str) and cache_key.strip() and sticky
    return Admitted(data, Ledger(now, model, g.api_key), cache_key.strip() if given else None, effort, sticky)


def _send(ledger, path, payload, stream, cache_key, parse=PARSED):
    """Admit the request under its key's caps (the last check before the upstream), then send it."""
    proxy = _proxy()
    if g.api_key is not None:
        g.ledger = ledger
        ledger.slot_id = caps.admit(g.api_key, proxy.clock())
        if ledger.slot_id is not None:
            proxy.leases.hold(ledger.slot_id)
    call = failover.Call(path, payload, upstream_headers(request.headers, SSE if stream else "application/json"),
                         stream, cache_key, parse)
    return failover.send(call, ledger, proxy)


def _stream(ledger, payload, cache_key, shape=relay.PassThrough, parse=PARSED):
    """A Responses request sent for its stream, which goes to the client as it arrives, in ``shape``."""
    return streamed(_send(ledger, RESPONSES, payload, True, cache_key, parse), ledger, shape)


def _answer(ledger, payload, cache_key, shape, envelope=False):
    """A Responses request sent for its stream, collected into one JSON answer: ``shape`` of the response
    object (responses.assemble). ``envelope``: a failure's answer in the OpenAI envelope (see pass_on)."""
    result = _send(ledger, RESPONSES, payload, True, cache_key, responses.PARSED)
    if isinstance(result, failover.Failed) and result.status == 200:  # a failed stream: no events for JSON
        _end(ledger, result.log_status, result.error_code)
        raise ApiError(502, "upstream_error", f"The upstream failed the response ({result.error_code})")
    if not isinstance(result, failover.Served):
        return unserved(result, ledger, envelope)
    terminal, items = relay.collect(result, ledger, _proxy(), OUTPUT_ITEM_DONE)
    finish(ledger, _proxy())
    if terminal is None or terminal.type == FAILED:
        raise ApiError(502, "upstream_error", f"The upstream failed the response ({ledger.error_code})")
    answer = jsonify(shape(responses.assemble(terminal, items)))
    answer.headers.update({name: value for name, value in result.headers.items() if name != "content-type"})
    return answer


def _translated(admitted, make, *args):
    """The upstream body ``make`` builds of the request, as bytes (what it refuses is a 400), and the request's
    cache key: the client's prompt_cache_key, else one derived from that body (sticky sessions on), which
    only pins the conversation and is never sent upstream."""
    try:
        shaped = make(*args)
    except responses.Refused as refused:
        raise ApiError(400, "invalid_request_error", str(refused)) from None
    derived = admitted.sticky and admitted.cache_key is None
    return _dumps(shaped), derived_key(admitted.ledger.api_key_id, shaped) if derived else admitted.cache_key


def _dumps(data):
    try:
        return json.dumps(data, allow_nan=False, separators=(",", ":")).encode()
    except ValueError:  # an integer too long for the JSON reader became infinity
        raise ApiError(400, "invalid_request_error", "The body holds a number too large to pass on") from None


# -- answers ---------------------------------------------------------------------------------

def _end(ledger, status, code):
    """Log a request that ends here, with no stream to relay."""
    ledger.outcome(status, code)
    finish(ledger, _proxy())


def refuse(choice, ledger):
    """No account could take the request: 429 usage_limit_reached for an exhausted pool, else 503 no_accounts."""
    if choice.refusal == "usage_limit_reached":
        _end(ledger, "rate_limit", "usage_limit_reached")
        resets = choice.resets_at // 1000 if choice.resets_at is not None else None
        message = choice.message + (f"; the first resets at {iso(choice.resets_at)}" if resets else "")
        headers = {"Retry-After": str(max(1, resets - _proxy().clock() // 1000))} if resets is not None else {}
        # The type is the code too: what the Codex CLI reads to report a usage limit and its reset.
        raise ApiError(429, "usage_limit_reached", message, headers, kind="usage_limit_reached",
                       extra={"resets_at": resets})
    _end(ledger, "error", "no_accounts")
    headers = {"Retry-After": str(choice.retry_after_s)} if choice.retry_after_s is not None else {}
    raise ApiError(503, "no_accounts", choice.message, headers)


def pass_on(failed, ledger, envelope=False):
    """The last failed attempt's answer: the upstream's own, as it sent it (``envelope``: its status and error
    in the OpenAI envelope, all a Chat Completions client reads; a failed stream is 502), or the proxy's."""
    _end(ledger, failed.log_status, failed.error_code)
    if failed.error is not None:
        raise failed.error
    if not envelope:
        return Response(failed.body, failed.status, headers=failed.headers)
    error = failover.error_object(failed.body) if failed.status != 200 else {}
    code, message = error.get("code") or error.get("type"), error.get("message")
    headers = {name: value for name, value in failed.headers.items() if name != "content-type"}
    raise ApiError(failed.status if failed.status != 200 else 502,
                   code if isinstance(code, str) else failed.error_code,
                   message if isinstance(message, str) else f"The upstream failed ({failed.error_code})", headers)


def unserved(result, ledger, envelope=False):
    """The answer when no account served the request (the refusal, or the last failure)."""
    return refuse(result, ledger) if isinstance(result, Choice) else pass_on(result, ledger, envelope)


def streamed(result, ledger, shape=relay.PassThrough):
    if not isinstance(result, failover.Served):
        return unserved(result, ledger, envelope=shape is not relay.PassThrough)
    headers = {"content-type": SSE, **result.headers, "Cache-Control": "no-cache"}
    events = relay.relay(result, ledger, _proxy(), g.get("started", time.perf_counter()), shape)
    g.proxy_place, g.ledger = False, None  # the stream gives its place back and finishes its ledger
    return Response(events, 200, headers=headers, direct_passthrough=True)


# -- routes ----------------------------------------------------------------------------------

@bp.post("/backend-api/codex/responses")
@takes_large_json
@key_required
def codex_responses():
    """The Codex CLI's own request: passed on as sent (with stream true; a model alias made its model)."""
    data, ledger, cache_key, effort, _ = _begin()
    as_sent = data.get("stream") is True and data is body()
    payload = request.get_data() if as_sent else _dumps(responses.with_effort({**data, "stream": True}, effort))
    return _stream(ledger, payload, cache_key)


@bp.post("/v1/responses")
@takes_large_json
@key_required
def v1_responses():
    """The OpenAI Responses API: SSE with ``stream: true``, else one JSON response object."""
    admitted = _begin()
    data, ledger, effort = admitted.data, admitted.ledger, admitted.effort
    payload, cache_key = _translated(admitted, responses.for_upstream, responses.with_effort(data, effort))
    if data.get("stream") is True:
        return _stream(ledger, payload, cache_key)
    return _answer(ledger, payload, cache_key, lambda response: response)


@bp.post("/v1/chat/completions")
@takes_large_json
@key_required
def chat_completions():
    """The OpenAI Chat Completions API, translated to a Responses request and back (lb.proxy.chat)."""
    admitted = _begin()
    data, ledger = admitted.data, admitted.ledger
    payload, cache_key = _translated(admitted, chat.for_upstream, data, admitted.effort)
    created = ledger.requested_at // 1000
    if data.get("stream") is True:
        options = data.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        return _stream(ledger, payload, cache_key, chat.Chunks(ledger.model, created, include_usage), chat.PARSED)
    return _answer(ledger, payload, cache_key, lambda response: chat.completion(response, ledger.model, created),
                   envelope=True)


@bp.post("/backend-api/codex/responses/compact")
@bp.post("/v1/responses/compact")
@takes_large_json
@key_required
def compact():
    """The Codex CLI's remote compaction: one JSON answer, passed on."""
    data, ledger, cache_key, effort, _ = _begin()
    payload = request.get_data() if data is body() else _dumps(responses.with_effort(data, effort))
    result = _send(ledger, COMPACT, payload, False, cache_key)
    if not isinstance(result, failover.Served):
        return unserved(result, ledger)
    try:
        answer = json.loads(result.body)
    except (ValueError, RecursionError):
        answer = None
    if isinstance(answer, dict):
        ledger.outcome("ok", usage=usage_of(answer))
    finish(ledger, _proxy())
    return Response(result.body, 200, headers={"content-type": "application/json", **result.headers})


@bp.get("/v1/models")
@bp.get("/backend-api/codex/models")
@key_required
def models():
    """The enabled catalog models this key may use, in the OpenAI list shape."""
    return jsonify(object="list", data=[
        {"id": entry.id, "object": "model", "created": (entry.added_at or 0) // 1000, "owned_by": "codex-lb"}
        for entry in store.enabled_models() if keys.allows(g.api_key, entry.id)])
