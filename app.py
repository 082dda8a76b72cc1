"""Run Codex-LB: python app.py for development, python app.py --waitress in production."""
import argparse
import json
import logging
import resource
import sys

from lb import announce_bootstrap_token, create_app
from lb.config import ConfigError

log = logging.getLogger("lb")


def main(argv=None, serve=None):
    """Start the server; return the process exit code."""
    parser = argparse.ArgumentParser(prog="codex-lb", description=__doc__)
    parser.add_argument("--waitress", action="store_true", help="serve with waitress (production)")
    args = parser.parse_args(argv)
    try:
        app = create_app()
    except ConfigError as exc:
        print(f"codex-lb: {exc}", file=sys.stderr)
        return 2
    host, port = app.config["HOST"], app.config["PORT"]
    announce_bootstrap_token(app)
    if serve is None and args.waitress:
        serve = serve_waitress
    try:
        if serve is not None:
            log.info("open files limit: %d", raise_open_files_limit())
            # waitress refuses a body over its limit before reading it: a declared
            # Content-Length at once, a chunked body as it arrives. One byte over
            # the app's own limit, so what the app accepts gets through.
            serve(app, host=host, port=port, threads=app.config["THREADS"],
                  max_request_body_size=max(app.config["MAX_BODY_BYTES"], app.config["PROXY_MAX_BODY_BYTES"]) + 1,
                  connection_limit=app.config["CONNECTION_LIMIT"], channel_timeout=app.config["CHANNEL_TIMEOUT"],
                  ident="codex-lb")
        else:
            # The access log already writes one line per request; werkzeug's own
            # line would repeat it, with the query string and colour codes.
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            log.info("development server on http://%s:%s (use --waitress in production)", host, port)
            app.run(host=host, port=port, threaded=True)
    except OSError as exc:  # a host that does not resolve, a port in use
        print(f"codex-lb: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def raise_open_files_limit():
    """Raise this process's open-files limit to its hard limit (a stream holds two sockets: its client's and
    the upstream's); the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        try:
            with open("/proc/sys/fs/nr_open", encoding="ascii") as f:  # what "unlimited" allows on Linux
                hard = int(f.read())
        except (OSError, ValueError):
            return soft
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def serve_waitress(app, **options):
    """``waitress.serve``, but the errors waitress answers itself come in the JSON envelope too."""
    from waitress.channel import HTTPChannel
    from waitress.server import create_server
    from waitress.task import ErrorTask

    from lb.errors import error_json, is_proxy_path

    class JsonErrorTask(ErrorTask):
        def execute(self):
            error, path = self.request.error, getattr(self.request, "path", None) or "/"
            code = {400: "bad_request", 413: "payload_too_large"}.get(error.code, "http_error")
            limit = app.config["PROXY_MAX_BODY_BYTES" if is_proxy_path(path) else "MAX_BODY_BYTES"]
            message = f"Request body is larger than {limit} bytes" if error.code == 413 else error.reason
            body = json.dumps(error_json(path, error.code, code, message), separators=(",", ":")).encode()
            self.status = f"{error.code} {error.reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class JsonErrorChannel(HTTPChannel):
        error_task_class = JsonErrorTask

    listeners = {}  # waitress registers every listening socket's server here
    try:
        # poll(), not select(): select() cannot watch a descriptor above 1023, and waitress's main loop
        # would die of it with every stream it carries.
        server = create_server(app, map=listeners, asyncore_use_poll=True, **options)
    except OSError:
        for listener in list(listeners.values()):  # what it opened before the bind failed
            listener.close()
        raise
    for listener in listeners.values():
        listener.channel_class = JsonErrorChannel
    server.print_listen("Serving on http://{}:{}")
    server.run()


if __name__ == "__main__":
    sys.exit(main())
