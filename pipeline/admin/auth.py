"""Dashboard sessions and CSRF tokens.

A session is a random id kept in Redis (so logout ends it everywhere) and sent as a signed cookie
(HttpOnly, SameSite=Strict, Path=/admin). Each session has its own CSRF token, which every
state-changing request must echo in a form field or the `X-CSRF-Token` header. The signing key is
random, made once per installation and shared by every gateway through Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import redis
from itsdangerous import BadSignature, TimestampSigner

from pipeline.ledger import keys

COOKIE = "pipeline_admin"
SESSION_SECONDS = 12 * 3600
LOGIN_ATTEMPTS = 10  # failed logins per client address within LOGIN_PAUSE_S
LOGIN_ATTEMPTS_ALL = 100  # failed logins from all addresses together within LOGIN_PAUSE_S
LOGIN_PAUSE_S = 300
LOGIN_SLOWDOWN_S = 1.0  # each login's wait while all addresses together are over their ceiling


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str
    # Who logged in, as far as a shared password can say: the session (a short hash of its id),
    # the client address and the time of the login. A review decision records it beside the
    # name the reviewer types.
    login: str = ""


class Sessions:
    """`password`: the admin password in effect. A session remembers a fingerprint of the password
    it was opened with, so changing the password ends every session opened with the old one."""

    def __init__(self, client: redis.Redis, password: str | None = None) -> None:
        self.r = client
        self.password = password or ""
        self._signer: TimestampSigner | None = None

    @property
    def signer(self) -> TimestampSigner:
        # Read on first use, so a gateway can start while Redis is away.
        if self._signer is None:
            self.r.set(keys.ADMIN_SIGNING_KEY, secrets.token_urlsafe(32), nx=True)
            self._signer = TimestampSigner(str(self.r.get(keys.ADMIN_SIGNING_KEY)), salt="admin-session")
        return self._signer

    def create(self, client: str = "?") -> tuple[Session, str]:
        """A new session and the cookie value that carries it; `client`: the address it logged
        in from."""
        session_id = secrets.token_urlsafe(24)
        login = _login_label(session_id, client, time.time())
        session = Session(session_id, secrets.token_urlsafe(24), login)
        record = f"{session.csrf} {self._fingerprint()} {login}"
        self.r.set(keys.admin_session(session.id), record, ex=SESSION_SECONDS)
        return session, self.signer.sign(session.id).decode()

    def get(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            session_id = self.signer.unsign(cookie, max_age=SESSION_SECONDS).decode()
        except BadSignature:
            return None
        record = self.r.get(keys.admin_session(session_id))
        if not record:
            return None
        csrf, _, rest = str(record).partition(" ")
        fingerprint, _, login = rest.partition(" ")  # sessions opened before logins were kept: ""
        if not hmac.compare_digest(fingerprint, self._fingerprint()):  # the password changed since
            self.r.delete(keys.admin_session(session_id))
            return None
        return Session(session_id, csrf, login or _login_label(session_id, "?", None))

    def _fingerprint(self) -> str:
        """Names the password without revealing it (keyed with the installation's signing key)."""
        return hmac.new(self.signer.secret_keys[-1], self.password.encode(), "sha256").hexdigest()[:32]

    def end(self, session: Session) -> None:
        self.r.delete(keys.admin_session(session.id))

    def login_throttle(self, client: str) -> tuple[bool, float]:
        """(refused, seconds to wait first). This address failed too often lately: refused. All
        addresses together failed too often (guesses spread over many addresses): everyone waits
        LOGIN_SLOWDOWN_S before the password is checked, but nobody is refused for it, so an
        attacker with many addresses slows the operator's login and never locks it."""
        mine, everyone = self.r.mget([keys.admin_login_tries(client), keys.admin_login_tries("*all*")])
        refused = int(mine or 0) >= LOGIN_ATTEMPTS
        return refused, LOGIN_SLOWDOWN_S if int(everyone or 0) >= LOGIN_ATTEMPTS_ALL else 0.0

    def login_failed(self, client: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        for counter in (keys.admin_login_tries(client), keys.admin_login_tries("*all*")):
            pipe.incr(counter)
            pipe.expire(counter, LOGIN_PAUSE_S)
        pipe.execute()


def _login_label(session_id: str, client: str, at: float | None) -> str:
    digest = hashlib.sha256(session_id.encode()).hexdigest()[:8]
    when = time.strftime(" at %Y-%m-%dT%H:%MZ", time.gmtime(at)) if at is not None else ""
    return f"dashboard session {digest} from {client}{when}"


def password_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def csrf_matches(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), session.csrf.encode())
