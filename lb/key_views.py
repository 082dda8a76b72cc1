"""The dashboard's JSON API for /api/api-keys: the keys clients use on the proxy."""
from flask import Blueprint

bp = Blueprint("api_keys", __name__, url_prefix="/api/api-keys")
