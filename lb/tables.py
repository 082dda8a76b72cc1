"""The database tables (Peewee models), their constants, and the unbound database they live in.

Times are stored as integer milliseconds since the epoch (UTC) and money as
integer micro-dollars, so sums are exact and comparisons are cheap on both
SQLite and PostgreSQL.
"""
from peewee import (BigAutoField, BigIntegerField, BooleanField, CharField, CompositeKey, DatabaseProxy,
                    DecimalField, DoubleField, IntegerField, Model, TextField)

db = DatabaseProxy()  # bound by lb.database.init_app


ACCOUNT_STATUSES = ("active", "paused", "rate_limited", "quota_exceeded", "deactivated")
LOG_STATUSES = ("ok", "error", "rate_limit", "quota", "cancelled")
FAILED_STATUSES = ("error", "rate_limit", "quota")

# (id, name, USD per million tokens: input, cached input, output)
SEED_CATALOG = (
    ("gpt-5.3-codex", "GPT-5.3 Codex", "1.75", "0.175", "14"),
    ("gpt-5.3-codex-spark", "GPT-5.3 Codex Spark", "1.75", "0.175", "14"),
    ("gpt-5.2", "GPT-5.2", "1.75", "0.175", "14"),
    ("gpt-5.1-codex", "GPT-5.1 Codex", "1.25", "0.125", "10"),
    ("gpt-5.1-codex-mini", "GPT-5.1 Codex Mini", "0.25", "0.025", "2"),
    ("gpt-5-codex", "GPT-5 Codex", "1.25", "0.125", "10"),
    ("gpt-4o-mini", "GPT-4o Mini", "0.15", "0.075", "0.6"),
    ("o3-pro", "o3 Pro", "20", "20", "80"),
)


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False


class Account(BaseModel):
    id = CharField(primary_key=True, max_length=40)
    email = CharField(max_length=254)
    email_key = CharField(max_length=254)  # lower-cased
    # The ChatGPT workspace; "" for a manual account. (email_key, chatgpt_account_id) is the identity.
    chatgpt_account_id = CharField(max_length=128, default="")
    plan_type = CharField(max_length=64, null=True)
    status = CharField(max_length=16)
    status_reason = TextField(null=True)
    created_at = BigIntegerField()
    updated_at = BigIntegerField()
    # Credentials, sealed (lb.crypto); null for a manual account.
    access_token = TextField(null=True)
    refresh_token = TextField(null=True)
    id_token = TextField(null=True)
    last_refresh_at = BigIntegerField(null=True)
    refresh_lease_until = BigIntegerField(null=True)  # one refresh at a time, across instances
    resets_at = BigIntegerField(null=True)  # when a rate_limited or quota_exceeded account is expected back
    # Usage as last seen from the upstream's x-codex-* headers.
    primary_used_percent = DoubleField(null=True)
    primary_resets_at = BigIntegerField(null=True)
    secondary_used_percent = DoubleField(null=True)
    secondary_resets_at = BigIntegerField(null=True)
    last_used_at = BigIntegerField(null=True)
    cooldown_until = BigIntegerField(null=True)  # a momentary upstream 429: skipped until then, status unchanged
    usage_checked_at = BigIntegerField(null=True)  # the last answer that carried usage: a poll or a proxied one

    class Meta:
        indexes = ((("email_key", "chatgpt_account_id"), True),)


class RequestLog(BaseModel):
    id = BigAutoField()
    request_id = CharField(max_length=200, null=True, unique=True)
    requested_at = BigIntegerField()
    # No foreign keys: a log keeps the id of an account or key that was deleted.
    account_id = CharField(max_length=40, null=True)
    api_key_id = CharField(max_length=40, null=True)
    model = CharField(max_length=128)
    input_tokens = BigIntegerField(default=0)
    output_tokens = BigIntegerField(default=0)
    cached_input_tokens = BigIntegerField(default=0)
    status = CharField(max_length=16)
    error_code = CharField(max_length=200, null=True)
    latency_ms = BigIntegerField(null=True)
    cost = BigIntegerField(default=0)  # micro-USD

    class Meta:
        indexes = (
            # Keyset pages walk (requested_at, id); status rides along so the
            # overview counts a partial hour from the index alone.
            (("requested_at", "id", "status"), False),
            (("account_id", "requested_at", "id"), False),
            (("model", "requested_at", "id"), False),
            (("api_key_id", "requested_at", "id"), False),
        )


class HourlyUsage(BaseModel):
    """Per-hour sums of the request logs, kept in step by every ingest."""

    hour = BigIntegerField(primary_key=True)  # requested_at // 3,600,000
    requests = BigIntegerField(default=0)
    failures = BigIntegerField(default=0)
    cancelled = BigIntegerField(default=0)
    input_tokens = BigIntegerField(default=0)
    output_tokens = BigIntegerField(default=0)
    cached_input_tokens = BigIntegerField(default=0)
    cost = BigIntegerField(default=0)


class HourlyGroupUsage(HourlyUsage):
    """The same sums per hour, account, model and API key: usage breakdowns and key limits."""

    hour = BigIntegerField()
    account_id = CharField(max_length=40)  # "" for logs without an account
    model = CharField(max_length=128)
    api_key_id = CharField(max_length=40)  # "" for logs without a key

    class Meta:
        primary_key = CompositeKey("hour", "account_id", "model", "api_key_id")
        indexes = ((("api_key_id", "hour"), False),)


class StickyPin(BaseModel):
    """A prompt_cache_key seen lately, and the account that served it (sticky sessions)."""

    key = CharField(primary_key=True, max_length=64)  # SHA-256 of the client's prompt_cache_key
    account_id = CharField(max_length=40)
    seen_at = BigIntegerField()


class ApiKey(BaseModel):
    """A client's key to the proxy; only its SHA-256 is kept."""

    id = CharField(primary_key=True, max_length=40)
    name = CharField(max_length=128)
    key_hash = CharField(max_length=64, unique=True)
    key_prefix = CharField(max_length=15)
    allowed_models = TextField(null=True)  # a JSON list of catalog ids; null: every enabled model
    limits = TextField(default="[]")  # a JSON list of {metric, window, max}
    expires_at = BigIntegerField(null=True)
    enabled = BooleanField(default=True)
    created_at = BigIntegerField()
    last_used_at = BigIntegerField(null=True)
    # Caps (lb.caps), null: none.
    requests_per_minute = BigIntegerField(null=True)
    tokens_per_minute = BigIntegerField(null=True)
    concurrent_requests = BigIntegerField(null=True)


class Lease(BaseModel):
    """Who runs a background job now (lb.jobs): one runner across threads, processes and instances."""

    name = CharField(primary_key=True, max_length=64)
    holder = CharField(max_length=200)
    expires_at = BigIntegerField()


class KeySlot(BaseModel):
    """A request of a key with a concurrentRequests cap, in flight: a lease its process renews (lb.caps)."""

    id = BigAutoField()
    api_key_id = CharField(max_length=40)
    expires_at = BigIntegerField()  # a slot not renewed by then is free: its process is gone

    class Meta:
        indexes = ((("api_key_id", "expires_at"), False),)


class KeyUse(BaseModel):
    """What a key with per-minute caps used, and when: a request as it is admitted, its tokens as it ends."""

    id = BigAutoField()
    api_key_id = CharField(max_length=40)
    at = BigIntegerField()
    requests = IntegerField(default=0)
    tokens = BigIntegerField(default=0)

    class Meta:
        indexes = ((("api_key_id", "at"), False),)


class CatalogModel(BaseModel):
    id = CharField(primary_key=True, max_length=128)
    name = CharField(max_length=200)
    position = IntegerField()
    enabled = BooleanField(default=True)
    # USD per million tokens.
    input_price = DecimalField(max_digits=14, decimal_places=6)
    cached_input_price = DecimalField(max_digits=14, decimal_places=6)
    output_price = DecimalField(max_digits=14, decimal_places=6)
    added_at = BigIntegerField(null=True)  # when the model entered the catalog (epoch ms): /v1/models' "created"


class DashboardSettings(BaseModel):
    """The single row (id 1) holding the dashboard's credentials."""

    id = IntegerField(primary_key=True)
    password_hash = CharField(max_length=512, null=True)
    totp_secret = TextField(null=True)  # sealed (lb.crypto)
    totp_last_step = BigIntegerField(default=0)
    # The service's settings (GET/PATCH /api/settings).
    api_key_required = BooleanField(default=False)
    sticky_sessions = BooleanField(default=True)
    # Alerts (lb.alerts): where to POST them, and which events (a JSON list; null: all).
    webhook_url = TextField(null=True)
    webhook_events = TextField(null=True)
    # The pool refused with usage_limit_reached since then (epoch ms); null while it serves (lb.alerts).
    pool_exhausted_at = BigIntegerField(null=True)
    # Retention (lb.retention): raw request logs older than this many days are pruned; null keeps them.
    request_log_retention_days = IntegerField(null=True)
    # Raw logs before this (epoch ms, a whole hour) are gone; the rollups of those hours stay.
    logs_pruned_before = BigIntegerField(null=True)
    # The last prune: when it ended, and how many logs it removed.
    last_prune_at = BigIntegerField(null=True)
    last_prune_removed = BigIntegerField(null=True)


class OAuthFlow(BaseModel):
    """A sign-in with ChatGPT (lb.oauth), pending or ended. Its secrets (the PKCE verifier, the state, the
    device ids) are one sealed JSON object, deleted once the flow ends."""

    id = CharField(primary_key=True, max_length=40)
    method = CharField(max_length=16)  # browser, device
    status = CharField(max_length=16)  # pending, completed, failed, expired
    target_account_id = CharField(max_length=40, null=True)  # the account a re-authentication renews
    account_id = CharField(max_length=40, null=True)  # the account it made or renewed
    created = BooleanField(null=True)
    error_code = CharField(max_length=64, null=True)
    error_message = TextField(null=True)
    secrets = TextField(null=True)  # sealed (lb.crypto)
    interval_seconds = IntegerField(null=True)  # a device flow's polling interval
    created_at = BigIntegerField()
    expires_at = BigIntegerField()
    # Who completes it (a callback's exchange, a device flow's poller) and until when: one at a time,
    # across threads, processes and instances; and when a device flow is next asked of the issuer.
    holder = CharField(max_length=200, null=True)
    lease_until = BigIntegerField(null=True)
    next_poll_at = BigIntegerField(null=True)


class DashboardSession(BaseModel):
    token_hash = CharField(primary_key=True, max_length=64)
    created_at = BigIntegerField()
    expires_at = BigIntegerField()
    password_verified = BooleanField(default=False)
    totp_verified = BooleanField(default=False)


class AuthFailure(BaseModel):
    id = BigAutoField()
    client = CharField(max_length=64)
    at = BigIntegerField()

    class Meta:
        indexes = ((("client", "at"), False),)


class TotpSetup(BaseModel):
    token_hash = CharField(primary_key=True, max_length=64)
    session_hash = CharField(max_length=64)
    secret = TextField()  # sealed (lb.crypto)
    expires_at = BigIntegerField()


class AuditEntry(BaseModel):
    """Who changed what (lb.audit): written in the transaction of the change, never pruned."""

    id = BigAutoField()
    at = BigIntegerField()
    action = CharField(max_length=64)
    target_type = CharField(max_length=16, null=True)  # account, api_key, settings
    target_id = CharField(max_length=40, null=True)
    ip = CharField(max_length=64, null=True)
    detail = TextField(default="{}")  # a JSON object; never a secret


class Alert(BaseModel):
    """An event for the webhook (lb.alerts), written in the transaction of the change that caused it and
    sent by a background sender: an outbox row, claimed by one sender at a time across instances."""

    id = BigAutoField()
    event = CharField(max_length=64)
    # Unique while the row lives: the same event (an account's limit in a ten-minute span, a key's limit in
    # a window) is written once, whichever instance sees it first.
    dedupe = CharField(max_length=200, null=True, unique=True)
    payload = TextField()  # the JSON body, secrets never in it
    created_at = BigIntegerField()
    status = CharField(max_length=16, default="pending")  # pending, delivered, failed
    attempts = IntegerField(default=0)
    next_attempt_at = BigIntegerField()
    holder = CharField(max_length=200, null=True)  # the sender trying it now, until lease_until
    lease_until = BigIntegerField(null=True)
    sent_at = BigIntegerField(null=True)
    last_error = TextField(null=True)

    class Meta:
        indexes = ((("status", "next_attempt_at"), False),)


MODELS = (Account, RequestLog, HourlyUsage, HourlyGroupUsage, ApiKey, KeySlot, KeyUse, Lease, StickyPin,
          CatalogModel, DashboardSettings, DashboardSession, AuthFailure, TotpSetup, OAuthFlow,
          AuditEntry, Alert)
