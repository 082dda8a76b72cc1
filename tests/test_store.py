"""lb.store: the init-db command and the stored catalog (seeded once, kept across restarts).

The SQL statements themselves are exercised by every endpoint's tests; /healthz's ping is in test_views.py.
"""
from helpers import set_catalog
from lb import store


def catalog_ids(app):
    with app.app_context(), store.db.connection_context():
        return [m.id for m in store.CatalogModel.select().order_by(store.CatalogModel.position)]


def test_init_db_is_idempotent_and_keeps_data(app, authed):
    runner = app.test_cli_runner()
    for _ in range(2):
        result = runner.invoke(args=["init-db"])
        assert result.exit_code == 0, result.output
        assert "schema ready" in result.output
    assert catalog_ids(app) == [m[0] for m in store.SEED_CATALOG]
    session = authed.get("/api/dashboard-auth/session")
    assert session.status_code == 200
    assert session.get_json()["isPasswordConfigured"] is True and session.get_json()["authenticated"] is True


def test_the_catalog_survives_a_restart_and_is_seeded_once(make_app):
    first = make_app()
    set_catalog(first, "o3-pro", name="Renamed", enabled=False)
    set_catalog(first, "gpt-4o-mini", name="GPT-4o Mini (custom)")
    second = make_app()
    assert catalog_ids(second) == [m[0] for m in store.SEED_CATALOG]  # no second copy
    response = second.test_client().get("/api/models")
    assert response.status_code == 200
    models = response.get_json()["models"]
    assert {"id": "gpt-4o-mini", "name": "GPT-4o Mini (custom)"} in models
    assert "o3-pro" not in [m["id"] for m in models]
    assert len(models) == len(store.SEED_CATALOG) - 1
