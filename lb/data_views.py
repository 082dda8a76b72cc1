"""Blueprints for accounts, request logs and usage."""
from flask import Blueprint, current_app, jsonify, request

from lb import accounts, ingest, logs, usage
from lb.api import body, get_choice, now_ms, takes_json
from lb.auth import ingest_required, login_required
from lb.stats import billing_period

accounts_bp = Blueprint("accounts", __name__, url_prefix="/api/accounts")
logs_bp = Blueprint("request_logs", __name__, url_prefix="/api/request-logs")
usage_bp = Blueprint("usage", __name__, url_prefix="/api/usage")


@accounts_bp.get("")
@login_required
def list_accounts():
    return jsonify(accounts=accounts.all_accounts())


@accounts_bp.post("")
@takes_json
@login_required
def create_account():
    return jsonify(accounts.as_json(accounts.create(body()))), 201


@accounts_bp.get("/<account_id>")
@login_required
def get_account(account_id):
    return jsonify(accounts.as_json(accounts.find(account_id)))


@accounts_bp.patch("/<account_id>")
@takes_json
@login_required
def patch_account(account_id):
    return jsonify(accounts.as_json(accounts.update(account_id, body())))


@accounts_bp.delete("/<account_id>")
@login_required
def delete_account(account_id):
    accounts.delete(account_id)
    return "", 204


@logs_bp.post("")
@takes_json
@ingest_required
def ingest_logs():
    accepted, duplicates = ingest.ingest(body(), now_ms())
    return jsonify(accepted=accepted, duplicates=duplicates), 201


@logs_bp.get("")
@login_required
def list_logs():
    rows, cursor = logs.page(request.args)
    return jsonify(requests=rows, nextCursor=cursor)


@usage_bp.get("")
@login_required
def usage_breakdown():
    start, end = billing_period(now_ms(), current_app.config["BILLING_CYCLE_DAY"])
    since = logs.query_time("since")
    until = logs.query_time("until")
    group_by = get_choice(request.args, "groupBy", usage.GROUPS, default="day")
    return jsonify(usage.breakdown(start if since is None else since, end if until is None else until, group_by))


def init_app(app):
    for blueprint in (accounts_bp, logs_bp, usage_bp):
        app.register_blueprint(blueprint)
