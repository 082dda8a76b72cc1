"""lb.backup: ``flask --app lb backup PATH`` copies the SQLite database while the real server serves and
writes; a server started on the copy sees the same accounts, keys and totals, and a copy made mid-write is
consistent with itself. On PostgreSQL the command says to use pg_dump."""
import os
import shutil
import subprocess
import sys
import threading

import pytest

from helpers.data import INGEST, PASSWORD, POSTGRES_URL, ROOT, auth_json
from helpers.http import AUTH
from helpers.servers import app_server, call, call_with_cookie


def run_backup(data_dir, path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LB_")}
    env["LB_DATA_DIR"] = str(data_dir)
    if POSTGRES_URL:
        env["LB_DATABASE_URL"] = POSTGRES_URL
    return subprocess.run([sys.executable, "-m", "flask", "--app", "lb", "backup", str(path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def signed_in(port):
    status, _, cookie = call_with_cookie(port, "POST", AUTH + "/password/login", {"password": PASSWORD})
    assert status == 200, status
    return cookie


def state(port, cookie):
    """What a copy must keep: the accounts, the keys, and the usage totals."""
    accounts = call(port, "GET", "/api/accounts", headers=cookie)[1]["accounts"]
    keys = call(port, "GET", "/api/api-keys", headers=cookie)[1]["apiKeys"]
    totals = call(port, "GET", "/api/usage?groupBy=model", headers=cookie)[1]["totals"]
    return [a["id"] for a in accounts], [k["id"] for k in keys], totals


def batch(start, count=50):
    return {"requests": [{"requestId": f"r-{start + i}", "model": "gpt-5.3-codex", "inputTokens": 100,
                          "cachedInputTokens": 10, "outputTokens": 5} for i in range(count)]}


@pytest.mark.sqlite_only
def test_a_copy_made_while_the_server_writes_is_consistent_and_serves_the_same(tmp_path):
    data = tmp_path / "data"
    server = app_server(data).start()
    writing, written = threading.Event(), []
    try:
        assert call(server.port, "POST", AUTH + "/password/setup", {"password": PASSWORD})[0] == 200
        cookie = signed_in(server.port)
        assert call(server.port, "POST", "/api/accounts/import", auth_json(), headers=cookie)[0] == 201
        assert call(server.port, "POST", "/api/api-keys", {"name": "laptop"}, headers=cookie)[0] == 201

        def writer():
            while not writing.is_set():
                status, _ = call(server.port, "POST", "/api/request-logs", batch(len(written) * 50),
                                 headers={"Authorization": f"Bearer {INGEST}"})
                assert status == 201
                written.append(1)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            mid = run_backup(data, tmp_path / "mid.db")
        finally:
            writing.set()
            thread.join(timeout=60)
        assert mid.returncode == 0, mid.stderr
        assert written, "the writer never wrote"
        final = run_backup(data, tmp_path / "final.db")
        assert final.returncode == 0 and "backed up to" in final.stdout, final.stderr
        assert oct(os.stat(tmp_path / "final.db").st_mode & 0o777) == "0o600"
        original = state(server.port, cookie)
    finally:
        server.stop()
    for name, check in (("final.db", lambda copy: copy == original), ("mid.db", None)):
        restored = tmp_path / f"restored-{name}"
        restored.mkdir(mode=0o700)
        shutil.copy(tmp_path / name, restored / "lb.db")
        shutil.copy(data / "encryption_key", restored / "encryption_key")
        copy_server = app_server(restored).start()
        try:
            copy = state(copy_server.port, signed_in(copy_server.port))
        finally:
            copy_server.stop()
        if check:
            assert check(copy), (copy, original)
        else:  # mid-write: whole batches only, and the totals agree with the request count
            requests = copy[2]["requests"]
            assert copy[:2] == original[:2] and requests % 50 == 0
            assert copy[2]["inputTokens"] == 100 * requests and copy[2]["cachedInputTokens"] == 10 * requests


def test_the_command_refuses_an_existing_file_and_names_pg_dump_on_postgresql(tmp_path, make_app):
    make_app()  # the test's database, schema made
    taken = tmp_path / "taken.db"
    taken.write_text("keep me")
    result = run_backup(tmp_path / "data", taken)
    assert result.returncode == 1 and taken.read_text() == "keep me"
    if POSTGRES_URL:
        assert result.stderr.strip().splitlines()[-1].startswith("Error: The database is PostgreSQL: back it up "
                                                                   "with pg_dump")
    else:
        assert result.stderr.strip().splitlines()[-1] == f"Error: {taken} exists already: name a new file"
