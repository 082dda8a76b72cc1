"""The real Codex CLI (npm's @openai/codex, pinned in scripts/codex-cli.sh) doing ``codex exec`` through the proxy.

The CLI is installed once per version into a cache outside the clone; the
Makefile passes its path in CODEX_CLI, and without it the script is run here.
It talks to the real server, which talks to the fake upstream: nothing leaves
this machine (the config below turns off the CLI's update check, plugins and
telemetry, and its retries, so a failure is quick).
"""
import json
import os
import subprocess
import time

import pytest

from fixtureapps.upstream import Fail, Stream
from helpers.data import ROOT, logs, pool_account, row
from lb import tables

CONFIG = """\
model = "gpt-5.3-codex"
model_provider = "codexlb"
check_for_update_on_startup = false
[analytics]
enabled = false
[feedback]
enabled = false
[otel]
exporter = "none"
metrics_exporter = "none"
trace_exporter = "none"
[history]
persistence = "none"
[features]
plugins = false
remote_plugin = false
apps = false
shell_snapshot = false
unbounded_connection_retries = false
[model_providers.codexlb]
name = "OpenAI"
base_url = "http://127.0.0.1:{port}/backend-api/codex"
wire_api = "responses"
env_key = "CODEX_LB_API_KEY"
request_max_retries = 0
stream_max_retries = 0
"""


@pytest.fixture(scope="session")
def codex():
    """The path of the codex executable: from the Makefile, else installed (or found in the cache) now."""
    path = os.environ.get("CODEX_CLI")
    if not path:
        path = subprocess.run([os.path.join(ROOT, "scripts", "codex-cli.sh")], capture_output=True, text=True,
                              check=True, timeout=900).stdout.strip()
    assert os.access(path, os.X_OK), path
    return path


def codex_exec(codex, tmp_path, port, key, prompt="say hi"):
    """Run ``codex exec --json`` in an empty directory: (exit code, its JSONL events, stderr)."""
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    (home / "config.toml").write_text(CONFIG.format(port=port))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "CODEX_HOME": str(home),
           "CODEX_LB_API_KEY": key, "NO_PROXY": "127.0.0.1,localhost"}
    done = subprocess.run([codex, "exec", "--skip-git-repo-check", "--strict-config", "--ephemeral", "--json", prompt],
                          cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, events, done.stderr


def test_codex_exec_answers_through_the_proxy(codex, tmp_path, proxied, upstream):
    server, key, app = proxied
    upstream.default = Stream(text="hi from the pool", usage=(900, 100, 12))
    code, events, stderr = codex_exec(codex, tmp_path, server.port, key)
    assert code == 0, stderr
    messages = [e["item"]["text"] for e in events if e["type"] == "item.completed"
                and e["item"]["type"] == "agent_message"]
    assert messages == ["hi from the pool"]
    [usage] = [e["usage"] for e in events if e["type"] == "turn.completed"]
    assert (usage["input_tokens"], usage["cached_input_tokens"], usage["output_tokens"]) == (900, 100, 12)
    [sent] = upstream.requests
    assert sent.headers["originator"] == "codex_exec" and sent.headers["session-id"]
    assert key not in json.dumps(sent.headers) and sent.headers["chatgpt-account-id"] == "ws-a"
    assert sent.body["stream"] is True and sent.body["prompt_cache_key"]
    [log] = logs(app)
    assert (log.status, log.model, log.input_tokens, log.output_tokens) == ("ok", "gpt-5.3-codex", 900, 12)


def test_codex_exec_is_served_by_the_next_account_when_one_is_exhausted(codex, tmp_path, proxied, upstream):
    server, key, app = proxied
    second = pool_account(app, time.time, "b", secondary_used_percent=50.0)
    upstream.plan("ws-a", Fail(429, {"error": {"type": "usage_limit_reached", "message": "The usage limit has been "
                                               "reached", "plan_type": "plus", "resets_at": int(time.time()) + 3600}}))
    code, events, stderr = codex_exec(codex, tmp_path, server.port, key)
    assert code == 0, stderr
    assert upstream.accounts() == ["ws-a", "ws-b"]
    assert [(log.account_id, log.status) for log in logs(app)] == [(second, "ok")]
    assert row(app, second).last_used_at is not None


def test_codex_exec_reports_the_usage_limit_of_an_exhausted_pool(codex, tmp_path, proxied, upstream):
    server, key, app = proxied
    with app.app_context(), tables.db.connection_context():
        tables.Account.update(status="rate_limited", resets_at=int(time.time() * 1000) + 3600_000).execute()
    code, events, stderr = codex_exec(codex, tmp_path, server.port, key)
    assert code == 1
    failures = [e for e in events if e["type"] in ("error", "turn.failed")]
    assert failures and "usage limit" in json.dumps(failures)
    assert upstream.count() == 0
    assert [(log.status, log.error_code) for log in logs(app)] == [("rate_limit", "usage_limit_reached")]
