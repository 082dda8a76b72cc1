"""The dashboard's JSON API for /api/api-keys: the keys clients use on the proxy."""
from flask import Blueprint, current_app, jsonify

from lb import keys
from lb.auth import login_required
from lb.clock import now_ms
from lb.errors import body, takes_json

bp = Blueprint("api_keys", __name__, url_prefix="/api/api-keys")


def answer(row, key=None):
    """The key object (with ``key`` itself only when it was just made)."""
    payload = keys.as_json(row, now_ms(), current_app.config["BILLING_CYCLE_DAY"])
    return payload if key is None else {**payload, "key": key}


@bp.get("")
@login_required
def list_keys():
    return jsonify(apiKeys=keys.all_keys(now_ms(), current_app.config["BILLING_CYCLE_DAY"]))


@bp.post("")
@takes_json
@login_required
def create_key():
    return jsonify(answer(*keys.create(body(), now_ms()))), 201


@bp.get("/<key_id>")
@login_required
def get_key(key_id):
    return jsonify(answer(keys.find(key_id)))


@bp.patch("/<key_id>")
@takes_json
@login_required
def patch_key(key_id):
    return jsonify(answer(keys.update(key_id, body(), now_ms())))


@bp.post("/<key_id>/regenerate")
@login_required
def regenerate_key(key_id):
    return jsonify(answer(*keys.regenerate(key_id)))


@bp.delete("/<key_id>")
@login_required
def delete_key(key_id):
    keys.delete(key_id)
    return "", 204
