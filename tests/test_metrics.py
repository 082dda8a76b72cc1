"""GET /metrics: off by default, a bearer token, and what the instruments say after proxied and posted requests."""
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fixtureapps.upstream import Fail, Stream
from helpers.data import pool_account
from helpers.http import AUTH_REQUIRED, BEARER, V1, ask, ingest
from lb import metrics
from lb.proxy import relay

pytestmark = pytest.mark.uses_upstream

TOKEN = "metrics-token-for-tests"
SCRAPER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app(make_app, upstream, token_server):
    """Each test's own app (its counts start at zero), metrics on, in front of the fake upstream."""
    return make_app(METRICS_TOKEN=TOKEN, OAUTH_TOKEN_URL=token_server.url, UPSTREAM_URL=upstream.url,
                    UPSTREAM_READ_TIMEOUT=2)


def scrape(client):
    """The samples of a 200 scrape: {(sample name, ((label, value), ...)): value}."""
    response = client.get("/metrics", headers=SCRAPER)
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def test_off_by_default_metrics_is_the_json_404(make_app):
    client = make_app().test_client()
    for headers in ({}, SCRAPER):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 404
        assert response.get_json() == {"error": {"code": "not_found", "message": "Not found"}}


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", BEARER["Authorization"]])
def test_a_scrape_needs_the_metrics_token(client, header):
    response = client.get("/metrics", headers={"Authorization": header} if header else {})
    assert response.status_code == 401 and response.get_json() == AUTH_REQUIRED


def test_the_right_token_gets_the_prometheus_text_format(client):
    response = client.get("/metrics", headers=SCRAPER)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response.headers["Cache-Control"] == "no-store"
    text = response.get_data(as_text=True)
    assert "# TYPE codexlb_http_requests_total counter" in text and "_created" not in text


def test_proxied_requests_show_in_every_instrument(app, client, clock, upstream):
    pool_account(app, clock, "a")
    pool_account(app, clock, "b", secondary_used_percent=10.0)  # tried after a
    pool_account(app, clock, "c", status="paused")
    upstream.plan("ws-a", Fail(500, {"error": {"message": "internal"}}),  # a failover to b
                  Stream(),
                  Fail(400, {"error": {"code": "context_length_exceeded", "message": "too long"}}),
                  Stream(end="failed", error={"code": "server_error", "message": "boom"}))
    assert ask(client).status_code == 200
    assert ask(client, {"stream": False}, path=V1).status_code == 200
    assert ask(client).status_code == 400
    assert ask(client).status_code == 200  # the failure comes after the first byte
    client.get("/healthz")
    client.get("/")
    client.get("/api/nothing")
    client.get("/nothing")

    samples = scrape(client)
    requests = "codexlb_http_requests_total"
    assert value(samples, requests, family="proxy", status="200") == 3
    assert value(samples, requests, family="proxy", status="400") == 1
    assert value(samples, requests, family="health", status="200") == 1
    assert value(samples, requests, family="page", status="200") == 1
    assert value(samples, requests, family="dashboard", status="404") == 1
    assert value(samples, requests, family="other", status="404") == 1
    assert value(samples, "codexlb_failovers_total") == 1
    errors = "codexlb_upstream_errors_total"
    assert {labels: n for (name, labels), n in samples.items() if name == errors} == {
        (("code", "upstream_error"),): 1, (("code", "context_length_exceeded"),): 1, (("code", "server_error"),): 1}
    assert value(samples, "codexlb_request_logs_total", status="ok") == 2
    assert value(samples, "codexlb_request_logs_total", status="error") == 2
    assert value(samples, "codexlb_ingest_rows_total") == 4
    assert value(samples, "codexlb_accounts", status="active") == 2
    assert value(samples, "codexlb_accounts", status="paused") == 1
    assert value(samples, "codexlb_accounts", status="deactivated") == 0
    assert value(samples, "codexlb_open_streams") == 0
    # Two streams were relayed (the JSON answer of /v1 is no stream to the client).
    for histogram in ("codexlb_proxy_first_byte_seconds", "codexlb_upstream_first_byte_seconds",
                      "codexlb_proxy_added_seconds"):
        assert value(samples, histogram + "_count") == 2
        assert value(samples, histogram + "_bucket", le="+Inf") == 2
    assert 0 < value(samples, "codexlb_upstream_first_byte_seconds_sum") \
        <= value(samples, "codexlb_proxy_first_byte_seconds_sum")


def test_a_stream_is_open_while_it_is_relayed_and_until_its_log_is_written(app, client, clock, upstream,
                                                                           monkeypatch):
    finish, open_at_finish = relay.finish, []

    def finishing(ledger, proxy):
        open_at_finish.append(proxy.metrics.open_streams._value.get())
        finish(ledger, proxy)

    monkeypatch.setattr(relay, "finish", finishing)
    pool_account(app, clock, "a")
    gate = threading.Event()
    upstream.default = Stream(gate=gate)
    response = client.post("/backend-api/codex/responses", json={"model": "gpt-5.3-codex", "stream": True,
                                                                 "input": "hi"}, buffered=False)
    chunks = iter(response.response)
    next(chunks)
    assert value(scrape(client), "codexlb_open_streams") == 1
    gate.set()
    for _ in chunks:
        pass
    response.close()
    assert value(scrape(client), "codexlb_open_streams") == 0
    assert open_at_finish == [1]  # so a scrape that reads 0 knows every stream so far is logged


def test_posted_request_logs_count_as_ingest_rows(client):
    assert value(scrape(client), "codexlb_ingest_rows_total") == 0
    items = [{"requestId": "r-1", "model": "gpt-5.3-codex"}, {"requestId": "r-2", "model": "gpt-5.3-codex",
                                                               "status": "quota"}]
    assert ingest(client, items, headers=BEARER) == {"accepted": 2, "duplicates": 0}
    assert ingest(client, items[:1], headers=BEARER) == {"accepted": 0, "duplicates": 1}
    samples = scrape(client)
    assert value(samples, "codexlb_ingest_rows_total") == 3  # offered, the duplicate included
    assert value(samples, "codexlb_request_logs_total", status="ok") == 1  # stored
    assert value(samples, "codexlb_request_logs_total", status="quota") == 1
    assert value(samples, "codexlb_http_requests_total", family="dashboard", status="201") == 2


def test_each_app_counts_on_its_own(app, make_app):
    app.test_client().get("/healthz")
    other = make_app(METRICS_TOKEN=TOKEN).test_client()
    assert value(scrape(other), "codexlb_http_requests_total", family="health", status="200") == 0


@pytest.mark.parametrize("path, family", [
    ("/api/dashboard/overview", "dashboard"), ("/api", "dashboard"), ("/v1/responses", "proxy"),
    ("/backend-api/codex/models", "proxy"), ("/", "page"), ("/accounts", "page"), ("/static/app.js", "page"),
    ("/healthz", "health"), ("/metrics", "metrics"), ("/accounts/", "other"), ("/apix", "other"),
])
def test_route_families(path, family):
    assert metrics.family(path) == family


def test_error_code_labels_stay_few_and_tidy():
    instruments = metrics.Metrics()
    for code in ("server_error", "Not A Code", "x" * 65, None, *(f"code_{i}" for i in range(100))):
        instruments.upstream_error(code)
    labels = {sample.labels["code"]: sample.value for family in instruments.upstream_errors.collect()
              for sample in family.samples if sample.name.endswith("_total")}
    assert len(labels) == metrics.MAX_CODES  # server_error, other, and the first 62 of the 100
    assert labels["server_error"] == 1 and labels["other"] == 3 + 100 - (metrics.MAX_CODES - 2)


def test_without_an_app_the_instruments_do_nothing():
    assert metrics.current() is metrics.OFF
    metrics.OFF.stored(1, [])
    metrics.OFF.open_streams.inc()
