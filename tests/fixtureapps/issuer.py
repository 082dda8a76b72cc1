"""A fake ChatGPT sign-in (auth.openai.com): the OAuth issuer behind "Sign in with ChatGPT".

Point the service's LB_OAUTH_ISSUER at ``issuer.url``. It checks what the Codex CLI's own sign-in sends:

- ``GET /oauth/authorize`` (PKCE S256) checks every parameter, then answers 302 to
  ``<redirect_uri>?code=..&state=..``, or ``?error=access_denied..`` when ``deny``. ``sign_in(url)``
  plays the browser: it gets the URL without following the redirect and gives the Location.
- ``POST /oauth/token`` (a form) exchanges a code for tokens of ``user`` as it was when the code was
  issued; redirect_uri, client_id and sha256(code_verifier) must match the code's. A code is spent by
  its first exchange, refused or not.
- ``POST /api/accounts/deviceauth/usercode`` gives a user code; ``approve``/``reject`` play the user;
  ``POST /api/accounts/deviceauth/token`` answers 403 until then, then a code and the verifier the
  issuer made, for /oauth/token with redirect_uri ``<url>/deviceauth/callback``.

Each malformed request is refused (400) and also described in ``problems``.
"""
import base64
import hashlib
import http.client
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from fixtureapps.loopback import Loopback
from helpers.data import AUTH_CLAIMS, id_token, jwt

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
REDIRECT_URI = "http://localhost:1455/auth/callback"
DEVICE_CALLBACK = "/deviceauth/callback"  # after the issuer's url
SCOPE = "openid profile email offline_access"
VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636
CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of 32 bytes, no padding
DEVICE_PAGE = b"<!doctype html><title>Device code</title><form><input name=user_code><button>Continue</button></form>"


def challenge_of(verifier):
    """The S256 code_challenge of a code_verifier."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def pkce():
    """A fresh (code_verifier, code_challenge) pair."""
    verifier = secrets.token_urlsafe(48)  # 64 characters
    return verifier, challenge_of(verifier)


@dataclass
class Identity:
    email: str = "alice@example.com"
    account_id: str = "ws_1"
    plan: str = "plus"


@dataclass
class Grant:  # what an authorization code was issued with
    challenge: str
    redirect_uri: str
    client_id: str
    identity: Identity
    used: bool = False


@dataclass
class Device:
    id: str
    user_code: str
    client_id: str
    state: str = "pending"  # then "approved" or "denied"
    code: str = None
    verifier: str = None


def _json(raw):
    """A JSON object's fields, or none."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {}


class Issuer(Loopback):
    def __init__(self, client_id=CLIENT_ID, clock=time.time):
        self.client_id = client_id
        self.clock = clock  # epoch seconds, for the access token's exp
        self.user = Identity()  # who signs in (or approves a device) next
        self.deny = False  # the browser sign-in ends in error=access_denied
        self.exchange_answer = None  # (status, body): /oauth/token answers this, unchecked
        self.device_enabled = True
        self.device_interval = "1"  # a string, as the real one sends it
        self.device_expires_in = 900  # seconds
        self.poll_delay = 0.0  # seconds each device-token poll takes
        self.problems = []  # why each malformed request was refused
        self.token_requests = []  # each /oauth/token form, as a dict
        self.polls = {}  # device_auth_id -> time.monotonic() of each poll
        self.max_concurrent_polls = 0
        self._in_flight = 0
        self._codes = {}
        self._devices = {}
        self._lock = threading.Lock()

    @property
    def url(self):
        return self.base_url

    # -- what a test does -----------------------------------------------------------------------

    def sign_in(self, authorization_url):
        """GET the authorize URL as the browser would, without following the redirect: the Location."""
        split = urlsplit(authorization_url)
        if f"{split.scheme}://{split.netloc}" != self.url:
            raise AssertionError(f"the sign-in goes to {authorization_url}, not to the issuer at {self.url}")
        conn = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
        try:
            conn.request("GET", f"{split.path}?{split.query}")
            response = conn.getresponse()
            body = response.read().decode("utf-8", "replace")
        finally:
            conn.close()
        if response.status != 302:
            raise AssertionError(f"authorize answered {response.status}: {body}")
        return response.getheader("Location")

    def approve(self, user_code):
        """The user enters ``user_code`` and signs in as ``self.user``."""
        verifier, challenge = pkce()
        code = "ac_" + secrets.token_urlsafe(24)
        with self._lock:
            device = self._pending(user_code)
            device.state, device.code, device.verifier = "approved", code, verifier
            self._codes[code] = Grant(challenge, self.url + DEVICE_CALLBACK, device.client_id, replace(self.user))

    def reject(self, user_code):
        with self._lock:
            self._pending(user_code).state = "denied"

    def _pending(self, user_code):
        device = next((d for d in self._devices.values() if d.user_code == user_code), None)
        if device is None or device.state != "pending":
            raise AssertionError(f"no pending device authorization has the user code {user_code!r}")
        return device

    # -- the endpoints --------------------------------------------------------------------------

    def _refuse(self, where, error, description, status=400):
        with self._lock:
            self.problems.append(f"{where}: {description}")
        return status, {"error": error, "error_description": description}

    def _authorize(self, query):
        params = {key: values[-1] for key, values in query.items()}
        expected = {"response_type": "code", "client_id": self.client_id, "redirect_uri": REDIRECT_URI,
                    "scope": SCOPE, "code_challenge_method": "S256", "id_token_add_organizations": "true",
                    "codex_cli_simplified_flow": "true", "originator": "codex_cli_rs"}
        wrong = [key for key, value in expected.items() if params.get(key) != value]
        wrong += [key for key in ("code_challenge", "state") if not params.get(key)]
        if "code_challenge" not in wrong and not CHALLENGE.fullmatch(params["code_challenge"]):
            wrong.append("code_challenge")
        wrong += [key for key, values in query.items() if len(values) > 1 and key not in wrong]
        if wrong:
            return self._refuse("authorize", "invalid_request", ", ".join(f"{k}={params.get(k)!r}" for k in wrong))
        if self.deny:
            answer = {"error": "access_denied", "error_description": "The user denied the sign-in.",
                      "state": params["state"]}
        else:
            code = "ac_" + secrets.token_urlsafe(24)
            with self._lock:
                self._codes[code] = Grant(params["code_challenge"], REDIRECT_URI, self.client_id, replace(self.user))
            answer = {"code": code, "state": params["state"]}
        return 302, b"", {"Location": f"{REDIRECT_URI}?{urlencode(answer)}"}

    def _token(self, raw, content_type):
        form = {key: values[-1] for key, values in parse_qs(raw.decode("utf-8", "replace"),
                                                            keep_blank_values=True).items()}
        with self._lock:
            self.token_requests.append(dict(form))
            scripted = self.exchange_answer
        if scripted is not None:
            return scripted
        if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            return self._refuse("token", "invalid_request", f"the body is {content_type!r}, not a form")
        if form.get("grant_type") != "authorization_code":
            return self._refuse("token", "unsupported_grant_type", f"grant_type={form.get('grant_type')!r}")
        missing = [key for key in ("code", "redirect_uri", "client_id", "code_verifier") if not form.get(key)]
        if missing:
            return self._refuse("token", "invalid_grant", "missing " + ", ".join(missing))
        with self._lock:
            grant = self._codes.get(form["code"])
            spent = grant is not None and grant.used
            if grant is not None:
                grant.used = True
        wrong = self._wrong_exchange(form, grant, spent)
        if wrong:
            return self._refuse("token", "invalid_grant", wrong)
        return 200, self._tokens(grant.identity)

    @staticmethod
    def _wrong_exchange(form, grant, spent):
        """What is wrong with exchanging ``form`` for the code's ``grant``, if anything."""
        verifier = form["code_verifier"]
        if grant is None:
            return "unknown code"
        if spent:
            return "code already used"
        if form["redirect_uri"] != grant.redirect_uri:
            return f"redirect_uri={form['redirect_uri']!r}, issued for {grant.redirect_uri!r}"
        if form["client_id"] != grant.client_id:
            return f"client_id={form['client_id']!r}"
        if not VERIFIER.fullmatch(verifier):
            return "code_verifier is not 43 to 128 of [A-Za-z0-9._~-]"
        if challenge_of(verifier) != grant.challenge:
            return "code_verifier does not match the code_challenge"
        return None

    def _tokens(self, who):
        now = int(self.clock())
        auth = {"chatgpt_account_id": who.account_id, "chatgpt_plan_type": who.plan}
        return {"id_token": id_token(email=who.email, plan=who.plan, workspace=who.account_id),
                "access_token": jwt({"exp": now + 3600, "iat": now, "jti": secrets.token_hex(12), AUTH_CLAIMS: auth}),
                "refresh_token": "rt_" + secrets.token_urlsafe(32)}

    def _usercode(self, raw, content_type):
        client_id = _json(raw).get("client_id")
        if client_id != self.client_id:
            return self._refuse("usercode", "invalid_request", f"client_id={client_id!r}")
        letters = "".join(secrets.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(4))
        device = Device("dev_" + secrets.token_urlsafe(16), f"{letters}-{secrets.randbelow(10000):04d}", client_id)
        with self._lock:
            self._devices[device.id] = device
        return 200, {"device_auth_id": device.id, "user_code": device.user_code,
                     "interval": self.device_interval, "expires_in": self.device_expires_in}

    def _device_token(self, raw, content_type):
        body = _json(raw)
        device_id = str(body.get("device_auth_id"))
        with self._lock:
            self.polls.setdefault(device_id, []).append(time.monotonic())
            self._in_flight += 1
            self.max_concurrent_polls = max(self.max_concurrent_polls, self._in_flight)
        try:
            if self.poll_delay:
                time.sleep(self.poll_delay)
            with self._lock:
                device = self._devices.get(device_id)
            if device is None or device.user_code != body.get("user_code"):
                return self._refuse("device token", "invalid_request", f"no device {device_id!r} with that user_code")
            if device.state == "pending":
                return 403, {"error": "authorization_pending"}
            if device.state == "denied":
                return 400, {"error": "access_denied"}
            return 200, {"authorization_code": device.code, "code_challenge": challenge_of(device.verifier),
                         "code_verifier": device.verifier}
        finally:
            with self._lock:
                self._in_flight -= 1

    # -- the server -----------------------------------------------------------------------------

    def start(self):
        issuer = self
        posts = {"/oauth/token": self._token, "/api/accounts/deviceauth/usercode": self._usercode,
                 "/api/accounts/deviceauth/token": self._device_token}
        devices = (self._usercode, self._device_token)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                split = urlsplit(self.path)
                if split.path == "/oauth/authorize":
                    self.answer(*issuer._authorize(parse_qs(split.query, keep_blank_values=True)))
                elif split.path == "/codex/device":
                    self.answer(200, DEVICE_PAGE, {"Content-Type": "text/html; charset=utf-8"})
                else:
                    self.answer(404, {"error": "not_found"})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                route = posts.get(urlsplit(self.path).path)
                if route is None or (route in devices and not issuer.device_enabled):  # no device code
                    self.answer(404, {"error": "not_found"})
                else:
                    self.answer(*route(raw, self.headers.get("Content-Type", "")))

            def answer(self, status, body, headers=None):
                headers = {"Content-Type": "application/json", **(headers or {})}
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(data))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass  # quiet: the test reads problems and token_requests instead

        return self.serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler), "fake-issuer")

    def stop(self):
        self.shutdown()
