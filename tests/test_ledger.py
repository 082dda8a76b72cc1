"""A proxied request's bookkeeping: request ids, account writes that respect a pause, sticky pins."""
import uuid

from helpers import NOW_MS, pool_account, row
from lb import ledger as ledgers, tables
from lb import store


def test_request_ids_are_uuid7_ordered_by_their_millisecond():
    ids = [uuid.UUID(ledgers.request_id(NOW_MS + i)) for i in range(50)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert [i.int >> 80 for i in ids] == [NOW_MS + i for i in range(50)]


def test_a_status_change_never_touches_a_paused_account(app, clock):
    paused = pool_account(app, clock, "a", status="paused")
    with app.app_context(), tables.db.connection_context():
        ledgers._apply(paused, {"status": "rate_limited", "resets_at": NOW_MS + 1}, NOW_MS + 5)
    assert (row(app, paused).status, row(app, paused).resets_at) == ("paused", None)
    active = pool_account(app, clock, "b")
    with app.app_context(), tables.db.connection_context():
        ledgers._apply(active, {"status": "rate_limited", "resets_at": NOW_MS + 1}, NOW_MS + 5)
    assert (row(app, active).status, row(app, active).updated_at) == ("rate_limited", NOW_MS + 5)


def test_pins_are_kept_hashed_and_lapsed_ones_pruned(app, clock):
    account = pool_account(app, clock, "a")
    now = [NOW_MS]
    ledgers._pruned_at[0] = 0
    with app.app_context():
        first = ledgers.Ledger(lambda: now[0], "gpt-5.3-codex")
        first.pin("conversation-secret", account)
        first.flush()
        with tables.db.connection_context():
            [pin] = tables.StickyPin.select()
            assert pin.key == ledgers.pin_key("conversation-secret") and "secret" not in pin.key
            assert first.pinned("conversation-secret") == account
            now[0] += 2 * 3600_000
            assert first.pinned("conversation-secret") is None  # an idle hour has passed
        later = ledgers.Ledger(lambda: now[0], "gpt-5.3-codex")
        later.pin("another", account)
        later.flush()
        with tables.db.connection_context():
            assert [p.key for p in tables.StickyPin.select()] == [ledgers.pin_key("another")]
