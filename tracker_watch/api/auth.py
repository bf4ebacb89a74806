"""Bearer tokens: created once, shown once, stored as SHA-256; looked up on every request, on the primary
(TokenCheck), so a revocation takes effect at the next request — also for reads served by a replica.
Per-token rate limiting with a token bucket, and a second bucket per client address that only failed
authentications drain."""

from __future__ import annotations

import hashlib
import ipaddress
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from tracker_watch import log
from tracker_watch.api.errors import Problem
from tracker_watch.ledger.db import is_outage

_log = log.get("tracker_watch.api")
PREFIX = "tw_"
MAX_TOKEN = 200  # ours are 46 characters; a longer one is not worth hashing
_CHALLENGE = 'Bearer realm="tracker-watch"'


@dataclass(frozen=True)
class Principal:
    token_id: int
    name: str
    role: str
    holder_id: int | None
    holder: str | None
    isp: str | None

    @property
    def actor(self) -> str:
        return f"token:{self.token_id}:{self.name}"


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive (RFC 9110 11.1)."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "send the API token as 'Authorization: Bearer <token>'", {"WWW-Authenticate": _CHALLENGE})
    return token.strip()


async def authenticate(pool: Any, header: str | None) -> Principal:
    token = bearer_token(header)
    row = None
    if len(token) <= MAX_TOKEN and token.isascii():
        row = await pool.fetchrow(
            "SELECT t.id, t.name, t.role, t.holder_id, h.name AS holder, t.isp FROM api_tokens t "
            "LEFT JOIN rights_holders h ON h.id = t.holder_id WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
            token_hash(token))
    if row is None:
        raise Problem(401, "the token is unknown or has been revoked",
                      {"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'})
    return Principal(row["id"], row["name"], row["role"], row["holder_id"], row["holder"], row["isp"])


class TokenCheck:
    """Where tokens are looked up: on the primary, never on a replica that may not have replayed a revocation
    yet. Only when the primary is away (an outage, not a wrong token) may a read-only request's token be
    checked on the replica (`database.read_dsn`): then a token revoked within the replica's replay delay
    before the outage still works for reads until the replica replays the revocation or the primary is back.
    After an outage the replica is used for `retry_s` without asking the primary, so an unreachable primary
    (connect timeouts, not refusals) delays one request in that period, not every one."""

    def __init__(self, primary: Any, replica: Any, retry_s: float = 5.0) -> None:
        self.primary, self.replica, self.retry_s = primary, replica, retry_s
        self._primary_away_until = 0.0

    async def check(self, header: str | None, replica_ok: bool) -> Principal:
        fallback = replica_ok and self.replica is not self.primary
        if fallback and time.monotonic() < self._primary_away_until:
            return await authenticate(self.replica, header)
        try:
            return await authenticate(self.primary, header)
        except Exception as exc:
            if not fallback or not is_outage(exc):
                raise
            self._primary_away_until = time.monotonic() + self.retry_s
            _log.warning("token_check_on_replica", error=(str(exc) or type(exc).__name__)[:300])
            return await authenticate(self.replica, header)


async def create_token(conn: Any, role: str, name: str, actor: str) -> tuple[int, str]:
    """Create a token (and its rights holder or ISP if new); returns (id, the token — shown this once)."""
    holder_id = isp = None
    if role == "rightsholder":
        holder_id = await conn.fetchval(
            "INSERT INTO rights_holders (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name "
            "RETURNING id", name)
    elif role == "isp":
        await conn.execute("INSERT INTO isps (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", name)
        isp = name
    token = new_token()
    token_id = await conn.fetchval(
        "INSERT INTO api_tokens (name, role, token_hash, holder_id, isp, created_by) VALUES ($1, $2, $3, $4, $5, $6) "
        "RETURNING id", name, role, token_hash(token), holder_id, isp, actor)
    await conn.execute("INSERT INTO audit_log (actor, action, object, detail) VALUES ($1, 'token.create', $2, "
                       "jsonb_build_object('role', $3::text, 'name', $4::text))",
                       actor, f"token:{token_id}", role, name)
    return int(token_id), token


class RateLimiter:
    """A token bucket per API token: `rate` requests per second, bursts up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[int, tuple[float, float]] = {}  # token id → (tokens, last refill)

    def take(self, key: int) -> None:
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            retry = math.ceil((1 - tokens) / self.rate)
            self._buckets[key] = (tokens, now)
            raise Problem(429, f"rate limit of {self.rate:g} requests per second (burst {self.burst}) exceeded",
                          {"Retry-After": str(retry)})
        self._buckets[key] = (tokens - 1, now)


def client_key(remote: str | None) -> str:
    """Whom failed authentications are counted against: the address, or its /64 for IPv6 (one subscriber's
    usual allocation, so cycling through it gains nothing)."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return remote or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class FailureLimiter:
    """Failed authentications per client: `burst` of them, then `rate` per second; while a client's bucket is
    empty every authentication it attempts is answered 429 without looking at the token. Full buckets are
    forgotten, so the table holds only clients that failed recently."""

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client → (failures still allowed, last refill)

    def _level(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - last) * self.rate)

    def check(self, key: str) -> None:
        if key not in self._buckets:
            return
        now = time.monotonic()
        tokens = self._level(key, now)
        if tokens < 1:
            retry = math.ceil((1 - tokens) / self.rate)
            raise Problem(429, "too many failed authentications from this address; try again later",
                          {"Retry-After": str(retry)})

    def failed(self, key: str) -> None:
        now = time.monotonic()
        if len(self._buckets) >= self.max_clients:
            self._forget_full(now)
        self._buckets[key] = (self._level(key, now) - 1, now)

    def _forget_full(self, now: float) -> None:
        for key in [k for k in self._buckets if self._level(k, now) >= self.burst]:
            del self._buckets[key]
        if len(self._buckets) >= self.max_clients:  # all recently failing: forget the oldest half
            for key in sorted(self._buckets, key=lambda k: self._buckets[k][1])[: self.max_clients // 2]:
                del self._buckets[key]
