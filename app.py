"""Run Codex-LB: python app.py for development, python app.py --waitress in production."""
import argparse
import json
import logging
import os
import resource
import signal
import socket
import sys
import threading
import time

from lb import announce_bootstrap_token, create_app, jobs
from lb.config import ConfigError

log = logging.getLogger("lb")


def main(argv=None, serve=None):
    """Start the server; return the process exit code."""
    parser = argparse.ArgumentParser(prog="codex-lb", description=__doc__)
    parser.add_argument("--waitress", action="store_true", help="serve with waitress (production)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="waitress processes serving one address (default LB_WORKERS, 1)")
    args = parser.parse_args(argv)
    overrides = {"WORKERS": args.workers} if args.workers is not None else None
    try:
        app = create_app(overrides)
    except ConfigError as exc:
        print(f"codex-lb: {exc}", file=sys.stderr)
        return 2
    host, port = app.config["HOST"], app.config["PORT"]
    announce_bootstrap_token(app)
    if serve is None and args.waitress:
        serve = serve_waitress if app.config["WORKERS"] == 1 else serve_workers
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
            jobs.start(app)
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
    """``waitress.serve``, but the errors waitress answers itself come in the JSON envelope too, and SIGTERM
    or Ctrl-C stops it gracefully: no new connection, the requests in flight given LB_SHUTDOWN_GRACE seconds."""
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
    stop_gracefully_on_signals(server, listeners, app.config["SHUTDOWN_GRACE"])
    jobs.start(app)
    server.run()


def stop_gracefully_on_signals(server, socket_map, grace):
    """On SIGTERM or SIGINT: close the listening socket, let the requests in flight end (``grace`` seconds at
    most), exit. ``server``: waitress's one listening server; ``socket_map``: every socket it serves."""
    from waitress import wasyncore

    stopping = []

    def stop(signum, frame):
        if stopping:  # Ctrl-C reaches every worker, and their parent passes SIGTERM on too
            return
        stopping.append(signum)
        server.accepting = False
        # Closed by waitress's own loop (its trigger runs the thunk there), not under its feet: a new
        # connection is then refused here and goes to a worker still serving.
        server.trigger.pull_trigger(lambda: wasyncore.dispatcher.close(server))
        threading.Thread(target=_end_when_idle, args=(server, socket_map, grace), daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _end_when_idle(server, socket_map, grace):
    """Wait until no request runs or waits and every answer has gone out (``grace`` seconds at most), then end
    waitress's loop: with every socket closed it returns, and so does the server."""
    from waitress import wasyncore

    dispatcher, deadline = server.task_dispatcher, time.monotonic() + grace

    def busy():
        unsent = any(getattr(channel, "total_outbufs_len", 0) for channel in list(socket_map.values()))
        return dispatcher.active_count or dispatcher.queue or unsent

    while time.monotonic() < deadline and busy():
        time.sleep(0.05)
    busy = dispatcher.active_count
    if busy:
        log.warning("stopping with %d requests still in flight after %s s", busy, grace)
    else:
        log.info("stopped: every request in flight has ended")
    server.trigger.pull_trigger(lambda: wasyncore.close_all(socket_map))


def serve_workers(app, host, port, **options):
    """LB_WORKERS processes serving one address: the socket is bound here once and each child runs waitress on
    it as a full instance of the app (sharing the database, as instances do). A child that dies is replaced;
    SIGTERM or Ctrl-C stops them all, each given LB_SHUTDOWN_GRACE seconds for its requests in flight."""
    from lb.tables import db

    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(address)
    listener.listen(1024)
    workers, grace = app.config["WORKERS"], app.config["SHUTDOWN_GRACE"]
    # The children fork from here: this process keeps no connection and no thread of its own running.
    db.close_all()
    if app.extensions["lb_checkpointer"] is not None:
        app.extensions["lb_checkpointer"].set()
    log.info("serving http://%s:%s with %d worker processes", host, listener.getsockname()[1], workers)
    children, stopping = {}, []

    def start_worker():
        pid = os.fork()
        if pid == 0:  # the child: a fresh app, the inherited socket
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                serve_waitress(create_app(), sockets=[listener], **options)
                code = 0
            except BaseException:  # noqa: BLE001 (a child never returns into the parent's code)
                log.exception("worker %d failed", os.getpid())
            finally:
                os._exit(code)
        children[pid] = time.monotonic()

    def stop(signum, frame):
        if not stopping:
            stopping.append(time.monotonic())
            listener.close()  # this copy too, so that the port refuses connections once the children close theirs
            for pid in children:
                _signal(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(workers):
        start_worker()
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            if stopping and time.monotonic() - stopping[0] > grace + 5:
                for child in children:
                    _signal(child, signal.SIGKILL)
            time.sleep(0.1)
            continue
        started = children.pop(pid, None)
        if started is not None and not stopping:
            log.warning("worker %d ended (%s); starting another", pid, _ending(status))
            if time.monotonic() - started < 1:
                time.sleep(1)  # one that dies at once would otherwise be restarted in a tight loop
            start_worker()
    listener.close()


def _signal(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _ending(status):
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


if __name__ == "__main__":
    sys.exit(main())
