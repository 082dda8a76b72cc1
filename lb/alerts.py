"""Alerts by webhook: events written to an outbox in the transaction of the change that caused them, and
sent by a background sender, once across instances."""

EVENTS = ("account.rate_limited", "account.deactivated", "account.recovered", "pool.exhausted",
          "pool.recovered", "api_key.limit_reached")
