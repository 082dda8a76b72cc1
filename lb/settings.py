"""The service's settings (GET and PATCH /api/settings): what the admin switches, kept in the settings row."""
from lb import sessions, store
from lb.errors import invalid

# Each setting's JSON name and its column.
SETTINGS = {"apiKeyRequired": "api_key_required", "stickySessions": "sticky_sessions"}


def as_json():
    row = store.settings()
    return {name: getattr(row, column) for name, column in SETTINGS.items()}


def update(data):
    """Apply a PATCH body (each setting true or false; others ignored); the settings as they now are."""
    changes = {}
    for name, column in SETTINGS.items():
        if name in data:
            if not isinstance(data[name], bool):
                raise invalid(name, "must be true or false")
            changes[column] = data[name]
    if changes:
        sessions.save_settings(**changes)
    return as_json()
