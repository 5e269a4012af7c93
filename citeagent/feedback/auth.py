"""Annotator accounts and CSRF tokens.

Passwords are stored as bcrypt hashes of their SHA-256 digest: bcrypt reads at most 72 bytes, and
hashing first lets a long passphrase count in full instead of being silently cut.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import bcrypt
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from citeagent.feedback.db import User, transaction

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_PASSWORD = 8
# Compared against when the username does not exist, so that a wrong name takes as long as a wrong password.
_DUMMY_HASH = bcrypt.hashpw(b"not-a-password", bcrypt.gensalt(rounds=12)).decode()


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password: str, rounds: int = 12) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds=rounds)).decode()


def check_password(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(_prehash(password), hashed.encode())
    except ValueError:  # a malformed stored hash never matches
        return False


def create_user(engine: Engine, username: str, password: str, is_admin: bool = False, rounds: int = 12) -> User:
    if not USERNAME.match(username or ""):
        raise ValueError(f"Invalid username {username!r}: use 1-64 letters, digits, '_', '.' or '-'.")
    if len(password or "") < MIN_PASSWORD:
        raise ValueError(f"The password must be at least {MIN_PASSWORD} characters long.")
    try:
        with transaction(engine) as s:
            user = User(username=username, password_hash=hash_password(password, rounds), is_admin=is_admin)
            s.add(user)
            s.flush()
            return user
    except IntegrityError:
        raise ValueError(f"The username {username!r} is taken. Choose another, or use set-password to change "
                         "that annotator's password.") from None


def set_password(engine: Engine, username: str, password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise ValueError(f"The password must be at least {MIN_PASSWORD} characters long.")
    with transaction(engine) as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise ValueError(f"No annotator named {username!r}.")
        user.password_hash = hash_password(password)


def set_active(engine: Engine, username: str, active: bool) -> None:
    with transaction(engine) as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise ValueError(f"No annotator named {username!r}.")
        user.active = active


def authenticate(engine: Engine, username: str, password: str) -> User | None:
    with transaction(engine) as s:
        user = s.scalar(select(User).where(User.username == username))
    if user is None:
        check_password(password, _DUMMY_HASH)
        return None
    if not check_password(password, user.password_hash) or not user.active:
        return None
    return user


def session_fingerprint(secret: str, user: User) -> str:
    """Ties a login session to the password it was made with: changing the password (or
    deactivating the account) ends every session opened before."""
    msg = f"{user.id}:{user.password_hash}:{int(user.active)}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()[:32]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


@dataclass
class LoginLimits:
    max_failures: int = 5  # wrong passwords per username within window_seconds before a lockout
    per_address_factor: int = 4  # one client address may fail this many times more (several usernames)
    window_seconds: float = 300.0
    lockout_seconds: float = 300.0
    max_tracked: int = 10_000  # usernames and addresses remembered; the oldest are forgotten first


class LoginLimiter:
    """Counts failed logins per username and per client address; past the limit, further tries
    are refused without checking the password until the lockout ends. In memory: the app runs as
    one process, and a restart forgetting the counts only gives an attacker a fresh window."""

    def __init__(self, limits: LoginLimits | None = None, clock=time.monotonic):
        self.limits = limits or LoginLimits()
        self.clock = clock
        self._failures: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _keys(self, username: str, address: str) -> list[tuple[tuple[str, str], int]]:
        lim = self.limits
        return [(("user", username.lower()), lim.max_failures),
                (("addr", address), lim.max_failures * lim.per_address_factor)]

    def retry_after(self, username: str, address: str) -> float:
        """Seconds until this username may try again from this address; 0 when it may now."""
        now, lim = self.clock(), self.limits
        wait = 0.0
        with self._lock:
            for key, limit in self._keys(username, address):
                recent = [t for t in self._failures.get(key, []) if now - t < lim.window_seconds + lim.lockout_seconds]
                if len(recent) >= limit:
                    wait = max(wait, recent[-1] + lim.lockout_seconds - now)
        return max(wait, 0.0)

    def failed(self, username: str, address: str) -> None:
        now, lim = self.clock(), self.limits
        with self._lock:
            for key, limit in self._keys(username, address):
                times = [t for t in self._failures.pop(key, []) if now - t < lim.window_seconds]
                self._failures[key] = (times + [now])[-limit:]
            while len(self._failures) > lim.max_tracked:
                self._failures.popitem(last=False)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(("user", username.lower()), None)
