"""Backups: ``flask --app lb backup PATH``, a consistent copy of the SQLite database made while the server
serves and writes.

SQLite's online backup API copies the database as one read transaction: in
WAL mode the writers go on meanwhile, and the copy is the database as it was
when the copy began, with every commit up to then. It is written beside PATH
first and renamed into place, owner-only like the database (it holds the
password hash and the sealed tokens, which open only with the deployment's
encryption key: keep that with it). A PostgreSQL database is backed up with
``pg_dump``, which does the same there.
"""
import os
import sqlite3
from contextlib import closing

import click
from flask import current_app

from lb import config, database


def backup(source, target):
    """Copy the SQLite database ``source`` to the new file ``target`` (mode 0600), consistently."""
    partial = f"{target}.partial-{os.getpid()}"
    config.private_file(partial)
    try:
        with closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)) as src, \
                closing(sqlite3.connect(partial)) as dst:
            src.backup(dst)  # all pages in one step: one read transaction, the writers never wait
        os.replace(partial, target)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise


def init_app(app):
    @app.cli.command("backup")
    @click.argument("path")
    def backup_command(path):
        """Write a consistent copy of the SQLite database to PATH, while the server runs."""
        source = database.sqlite_path(current_app.config)
        if source is None:
            raise click.ClickException("The database is PostgreSQL: back it up with pg_dump "
                                       "(for example pg_dump --format=custom --file=codex-lb.dump <database>)")
        if os.path.exists(path):
            raise click.ClickException(f"{path} exists already: name a new file")
        try:
            backup(source, path)
        except (OSError, sqlite3.Error) as exc:
            raise click.ClickException(f"{path}: the copy failed: {exc}") from None
        click.echo(f"backed up to {path} ({os.path.getsize(path)} bytes); the accounts' tokens in it open "
                   "only with this deployment's encryption key: keep LB_ENCRYPTION_KEY or the data directory's "
                   "encryption_key with it")
