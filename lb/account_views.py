"""The dashboard's JSON API for /api/accounts: the accounts behind the balancer and their credentials."""
from flask import Blueprint, jsonify

from lb import accounts, credentials
from lb.auth import login_required
from lb.clock import now_ms
from lb.errors import body, takes_json

bp = Blueprint("accounts", __name__, url_prefix="/api/accounts")


@bp.get("")
@login_required
def list_accounts():
    return jsonify(accounts=accounts.all_accounts())


@bp.post("")
@takes_json
@login_required
def create_account():
    return jsonify(accounts.as_json(accounts.create(body(), now_ms()))), 201


@bp.post("/import")
@takes_json
@login_required
def import_account():
    account, created = credentials.import_auth_json(body(), now_ms())
    return jsonify(accounts.as_json(account)), 201 if created else 200


@bp.get("/<account_id>")
@login_required
def get_account(account_id):
    return jsonify(accounts.as_json(accounts.find(account_id)))


@bp.patch("/<account_id>")
@takes_json
@login_required
def patch_account(account_id):
    return jsonify(accounts.as_json(accounts.update(account_id, body(), now_ms())))


@bp.delete("/<account_id>")
@login_required
def delete_account(account_id):
    accounts.delete(account_id)
    return "", 204
