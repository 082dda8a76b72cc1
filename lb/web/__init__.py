"""The browser face: the dashboard's HTML shell (pages.py), its template and its static files."""
from lb.web.pages import init_app

__all__ = ["init_app"]
