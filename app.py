"""Run Codex-LB: ``python app.py`` for development, ``python app.py --waitress`` in production."""
import argparse
import sys

from lb import create_app
from lb.config import ConfigError


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
    if serve is None and args.waitress:
        from waitress import serve
    if serve is not None:
        # Waitress's own body limit stays far above the app's, so an oversized
        # body gets the app's JSON 413, not waitress's plain-text one.
        limit = max(1 << 30, 2 * app.config["MAX_BODY_BYTES"])
        serve(app, host=host, port=port, threads=app.config["THREADS"], max_request_body_size=limit,
              ident="codex-lb")
    else:
        app.run(host=host, port=port, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
