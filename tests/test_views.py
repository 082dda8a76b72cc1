"""lb.views: the routes that are views alone, /healthz and GET /api/models.

/healthz answers 200 only while the database answers and could take a write: 503
service_unavailable, saying why, when the SQLite file is missing or was replaced
after start, and 200 again once the original is back. (A read-only file or data
dir needs a server that obeys file modes: test_database.py.)
Every other route is tested with the module that does its work (test_accounts.py,
test_ingest.py, test_overview.py, test_settings.py, ...); the guard in front of them in test_auth.py.
"""
import logging
import os
import sqlite3
from contextlib import closing

import pytest

from helpers.data import set_catalog
from helpers.http import LISTED_MODELS, MODELS, REMOTE, error
from lb import tables


# -- health --------------------------------------------------------------------------------

def test_healthz_answers_ok_without_auth(authed, app):
    response = app.test_client().get("/healthz", environ_base=REMOTE)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


@pytest.mark.sqlite_only
def test_healthz_is_unavailable_when_the_database_cannot_be_reached(app, client, tmp_path, caplog):
    assert tables.db.is_closed()  # every request and the factory give their connection back
    database = tables.db.obj
    if hasattr(database, "close_all"):
        database.close_all()  # a pool keeps idle connections open
    database.database = str(tmp_path / "missing-dir" / "lb.db")
    response = client.get("/healthz")
    assert error(response) == (503, "service_unavailable")
    assert "Traceback" not in response.get_data(as_text=True)
    assert any(r.exc_info for r in caplog.records if r.levelno >= logging.ERROR)


def database_file(tmp_path):
    return tmp_path / "data" / "lb.db"


def unavailable(message):
    return {"error": {"code": "service_unavailable", "message": message}}


MISSING = unavailable("The database file is missing")


@pytest.mark.sqlite_only
def test_healthz_is_unavailable_once_the_database_file_is_deleted(authed, tmp_path, caplog):
    assert authed.get("/healthz").get_json() == {"status": "ok"}
    os.remove(database_file(tmp_path))
    response = authed.get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == MISSING
    assert any(r.levelno == logging.WARNING and "The database file is missing" in r.getMessage()
               for r in caplog.records)


@pytest.mark.sqlite_only
def test_healthz_is_unavailable_while_the_database_file_is_renamed(authed, tmp_path):
    path = database_file(tmp_path)
    os.rename(path, tmp_path / "data" / "lb.db.moved")
    response = authed.get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == MISSING
    os.rename(tmp_path / "data" / "lb.db.moved", path)
    response = authed.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


@pytest.mark.sqlite_only
def test_healthz_is_unavailable_when_another_file_replaces_the_database(authed, tmp_path):
    path = database_file(tmp_path)
    os.rename(path, tmp_path / "lb.db.original")
    with closing(sqlite3.connect(path)) as other:  # a valid, but different, database at the same path
        other.execute("CREATE TABLE dashboard_settings (id INTEGER PRIMARY KEY)")
        other.commit()
    response = authed.get("/healthz")
    assert error(response) == (503, "service_unavailable")
    assert "replaced" in response.get_json()["error"]["message"]
    os.replace(tmp_path / "lb.db.original", path)
    response = authed.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


# -- models ------------------------------------------------------------------------------------

def test_models_lists_the_enabled_catalog_in_order(authed):
    response = authed.get(MODELS)
    assert response.status_code == 200
    # Written out in helpers.LISTED_MODELS: every seeded model, {id, name} only, in position order.
    assert response.get_json() == {"models": LISTED_MODELS}


def test_a_disabled_model_is_hidden(app, authed):
    set_catalog(app, "gpt-4o-mini", enabled=False)
    response = authed.get(MODELS)
    assert response.status_code == 200
    assert response.get_json() == {"models": [m for m in LISTED_MODELS if m["id"] != "gpt-4o-mini"]}


def test_models_follow_the_catalog_position(app, authed):
    set_catalog(app, "o3-pro", position=-1)
    response = authed.get(MODELS)
    assert response.status_code == 200
    assert response.get_json()["models"][0] == {"id": "o3-pro", "name": "o3 Pro"}
    assert len(response.get_json()["models"]) == len(LISTED_MODELS)
