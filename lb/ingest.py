"""Request-log ingest: validate a whole batch, then store it in one transaction."""
from peewee import chunked

from lb import summary
from lb.api import ApiError, get_choice, get_int, get_str, invalid, parse_time
from lb.store import LOG_STATUSES, Account, RequestLog, cost_micros, db, portable, price_table

MAX_BATCH = 1000
MAX_TOKENS = 10**12
FUTURE_MS = 5 * 60 * 1000  # how far ahead of the clock a log may be stamped
INSERT_CHUNK = 500  # rows per INSERT: 5,500 parameters, well under SQLite's limit

COLUMNS = (
    RequestLog.request_id, RequestLog.requested_at, RequestLog.account_id, RequestLog.model,
    RequestLog.input_tokens, RequestLog.output_tokens, RequestLog.cached_input_tokens,
    RequestLog.status, RequestLog.error_code, RequestLog.latency_ms, RequestLog.cost,
)


# Hand-written: peewee's multi-row INSERT spends more time building SQL than SQLite storing it.
COLUMN_NAMES = ", ".join(c.column_name for c in COLUMNS)


def validate_item(item, index, now):
    """Return a row (cost still 0) for one item, or raise a 422 naming ``requests[i].field``."""
    if not isinstance(item, dict):
        raise invalid(f"requests[{index}]", "must be an object")
    try:
        return _row(item, now)
    except ApiError as exc:
        # The field checks name the field; the item's place is added only on failure.
        exc.message = f"requests[{index}].{exc.message}"
        raise


def _row(item, now):
    request_id = get_str(item, "requestId", required=False, min_len=1, max_len=200)
    requested_at = now
    if item.get("requestedAt") is not None:
        requested_at = parse_time(item["requestedAt"], "requestedAt")
        if requested_at > now + FUTURE_MS:
            raise invalid("requestedAt", "must not be more than 5 minutes in the future")
    account_id = get_str(item, "accountId", required=False, max_len=40)
    model = get_str(item, "model", min_len=1, max_len=128)
    input_tokens = get_int(item, "inputTokens", default=0, high=MAX_TOKENS)
    output_tokens = get_int(item, "outputTokens", default=0, high=MAX_TOKENS)
    cached_tokens = get_int(item, "cachedInputTokens", default=0, high=MAX_TOKENS)
    if cached_tokens > input_tokens:
        raise invalid("cachedInputTokens", "must not exceed inputTokens")
    status = get_choice(item, "status", LOG_STATUSES, default="ok")
    error_code = get_str(item, "errorCode", required=False, max_len=200)
    latency = get_int(item, "latencyMs", high=10**9)
    return [request_id, requested_at, account_id, model, input_tokens, output_tokens, cached_tokens,
            status, error_code, latency, 0]


def validate_batch(data, now):
    """Check the whole ``{"requests": [...]}`` body before anything is stored."""
    items = data.get("requests")
    if not isinstance(items, list):
        raise invalid("requests", "must be a list")
    if len(items) > MAX_BATCH:
        raise invalid("requests", f"must hold at most {MAX_BATCH} items")
    return [validate_item(item, i, now) for i, item in enumerate(items)]


def _check_accounts(rows):
    wanted = {row[2] for row in rows if row[2] is not None}
    if not wanted:
        return
    known = {a.id for a in Account.select(Account.id).where(Account.id.in_(list(wanted)))}
    for index, row in enumerate(rows):
        if row[2] is not None and row[2] not in known:
            raise invalid(f"requests[{index}].accountId", "names no account")


def _insert_sql(count):
    """INSERT of ``count`` rows that skips known requestIds and returns the rows it stored."""
    values = ", ".join(["(" + ", ".join("?" * len(COLUMNS)) + ")"] * count)
    return portable(f"INSERT INTO request_log ({COLUMN_NAMES}) VALUES {values} "
                    f"ON CONFLICT (request_id) DO NOTHING RETURNING {COLUMN_NAMES}")


def store_batch(rows):
    """Store validated rows all-or-nothing; return (accepted, duplicates).

    A ``requestId`` already stored, or seen earlier in the batch, is skipped:
    the unique index decides, so concurrent batches cannot both store one.
    """
    prices = price_table()
    for row in rows:
        row[10] = cost_micros(prices.get(row[3]), row[4], row[6], row[5])
    stored = []
    with db.atomic():
        _check_accounts(rows)
        for part in chunked(rows, INSERT_CHUNK):
            params = [value for row in part for value in row]
            stored += db.execute_sql(_insert_sql(len(part)), params).fetchall()
        summary.add_rows(stored)  # same transaction: summaries never drift from the logs
    return len(stored), len(rows) - len(stored)


def ingest(data, now):
    """Validate and store a request body; raise ApiError on a bad batch."""
    rows = validate_batch(data, now)
    return store_batch(rows) if rows else (0, 0)
