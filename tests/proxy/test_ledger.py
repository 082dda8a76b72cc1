"""lb.proxy.ledger: request ids, one transaction for what a request did, sticky pins kept hashed and pruned."""
import uuid

from helpers.data import NOW_MS, pool_account, row
from lb import tables
from lb.proxy import ledger as ledgers


def test_request_ids_are_uuid7_ordered_by_their_millisecond():
    ids = [uuid.UUID(ledgers.request_id(NOW_MS + i)) for i in range(50)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert [i.int >> 80 for i in ids] == [NOW_MS + i for i in range(50)]


def test_the_log_row_and_what_the_request_did_are_written_in_one_transaction(app, clock):
    account = pool_account(app, clock, "a")
    ledger = ledgers.Ledger(NOW_MS, "gpt-5.3-codex")
    ledger.serving(account)
    ledger.change(account, {"status": "rate_limited", "resets_at": NOW_MS + 60_000})
    ledger.pin("conversation", account)
    ledger.outcome("rate_limit", "usage_limit_reached")
    proxy = app.extensions["lb_proxy"]
    with app.app_context():
        ledgers.finish(ledger, proxy)
        with tables.db.connection_context():
            [log] = tables.RequestLog.select()
            [pin] = tables.StickyPin.select()
    assert (log.account_id, log.status, log.error_code) == (account, "rate_limit", "usage_limit_reached")
    assert (row(app, account).status, row(app, account).updated_at) == ("rate_limited", NOW_MS)
    assert (pin.account_id, pin.seen_at) == (account, NOW_MS)
    assert (ledger.changes, ledger.pin_to) == ({}, None)  # written once, not again by a later write


def test_a_write_before_the_end_writes_only_status_changes_and_no_log(app, clock):
    account = pool_account(app, clock, "a")
    ledger = ledgers.Ledger(NOW_MS, "gpt-5.3-codex")
    ledger.pin("conversation", account)
    with app.app_context(), tables.db.connection_context():
        ledgers.write(ledger, NOW_MS)  # nothing other requests need to see yet: no transaction at all
        assert tables.StickyPin.select().count() == 0 and ledger.pin_to is not None
        ledger.change(account, {"status": "deactivated", "status_reason": "upstream_unauthorized"})
        ledgers.write(ledger, NOW_MS + 5)
        assert tables.RequestLog.select().count() == 0 and tables.StickyPin.select().count() == 1
    assert (row(app, account).status, row(app, account).status_reason) == ("deactivated", "upstream_unauthorized")


def test_pins_are_kept_hashed_and_lapsed_ones_pruned(app, clock):
    account = pool_account(app, clock, "a")
    pins = ledgers.Pins()
    with app.app_context(), tables.db.connection_context():
        first = ledgers.Ledger(NOW_MS, "gpt-5.3-codex")
        first.pin("conversation-secret", account)
        first.change(account, {"last_used_at": NOW_MS})
        ledgers.write(first, NOW_MS)
        [pin] = tables.StickyPin.select()
        assert pin.key == ledgers.pin_key("conversation-secret") and "secret" not in pin.key
        assert ledgers.pinned("conversation-secret", NOW_MS) == account
        later = NOW_MS + 2 * 3600_000
        assert ledgers.pinned("conversation-secret", later) is None  # an idle hour has passed
        second = ledgers.Ledger(later, "gpt-5.3-codex")
        second.pin("another", account)
        ledgers.write(second, later, ended=True)
        pins.prune(later)
        assert [p.key for p in tables.StickyPin.select()] == [ledgers.pin_key("another")]
        third = ledgers.Ledger(later, "gpt-5.3-codex")
        third.pin("a third", account)
        ledgers.write(third, later + 3 * 3600_000, ended=True)
        pins.prune(later + 30_000)  # within the minute: no prune
        assert tables.StickyPin.select().count() == 2
