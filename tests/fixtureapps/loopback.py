"""What the fake servers share: an http.server on a free loopback port, served by a daemon thread."""
import threading


class Loopback:
    """``serve`` an http.server in a daemon thread; ``shutdown`` stops it, closes its socket and joins."""

    _httpd = None
    _thread = None

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def serve(self, httpd, name):
        """Serve ``httpd`` (bound to 127.0.0.1, port 0) from a thread named ``name``; self."""
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=name,
                                        daemon=True)
        self._thread.start()
        return self

    def shutdown(self):
        self._httpd.shutdown()
        self._httpd.server_close()  # closes the socket, joins the handler threads
        self._thread.join(timeout=10)
