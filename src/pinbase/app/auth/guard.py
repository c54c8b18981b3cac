"""Guarding `/oauth2/token` against guessing: failed attempts are throttled per client, per user
and per address, password hashing is bounded, and failures are logged, without secrets and at a
bounded rate. `pinbase.app.auth.oauth` asks the guard around every credential it checks.

Decisions:

- What counts. A wrong client secret or an unknown client id counts against that client id and
  the address; a wrong password or an unknown e-mail against the user (the e-mail within the
  client's organization) and the address; an unknown, expired, reused or revoked refresh token
  against the address. A request refused before any credential is checked (a missing or
  malformed parameter) counts nowhere. Unknown client ids and e-mails are counted exactly like
  known ones, so the throttling tells nothing about which exist.
- A key out of failures refuses every request that would check a credential under it, the right
  credential included: 429 `slow_down` (the token endpoint's "slow down" of RFC 8628) with
  Retry-After. Anything else would let guessing go on. So a guesser can lock one user (or one
  client) out until its budget comes back; the budgets are per key and steadily regained, and
  one address runs out before it has locked out many users. A login is never refused for the
  failures of other users, other clients or other addresses.
- The address is the socket's peer (pinbase reads no proxy headers); an IPv6 address counts by
  its /64, which one host commonly holds whole.
- The state is kept in the process, not in the store's shared token buckets. A check must come
  before the work while only failures are charged: the guard spends a failure before a password
  hash and refunds it when the password was right, so concurrent guesses count exactly and an
  abandoned one stays counted. `Store.take_token` can only take, and checking a shared bucket
  before taking from it lets concurrent guesses through between the two; in the process the
  check and the spend are one step of the event loop, and a flood of guesses costs no database
  write. The price: P processes sharing one database give a guesser at most P times the budget.
- Password hashes (argon2: `password_hash_memory` and a CPU while one runs) run at most
  `password_hash_slots` at once, by default one per CPU the process may use. At most
  `password_hash_queue` requests wait for a slot; any more are answered 503
  `temporarily_unavailable` at once, with Retry-After. A slot is freed when its hash finishes,
  even if the request was abandoned meanwhile. Client secrets and tokens are SHA-256 digests:
  they need no slot.
- Each failure is logged at WARNING with its reason, the client, the user and the address, never
  a secret. A client id or e-mail that names no stored client or user is logged as a short
  SHA-256 prefix: it is the caller's text, perhaps a secret typed in the wrong field. Known ones
  are logged in clear, so operators see who is attacked. At most `auth_failure_logs` lines per
  minute; the next line logged counts those that were not.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from pinbase.config import Settings
from pinbase.domain.ratelimit import FailureBuckets, TokenBuckets

T = TypeVar("T")
log = logging.getLogger("pinbase.app.auth")

BUSY_RETRY_S = 1.0
"""Retry-After of a request refused because every hash slot and queue place was taken."""


class Throttled(Exception):
    """Too many failures under one of the request's keys; retry after `wait` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"throttled for {wait:.1f} s")
        self.wait = wait


class Busy(Exception):
    """Every password-hash slot is taken and the queue in front of them is full."""


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        return os.cpu_count() or 1


def address_key(host: str | None) -> str:
    """The key an address's failures count under: the IPv4 address, or the IPv6 /64."""
    if not host:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def shown(text: str, known: bool) -> str:
    """How a client id or e-mail appears in the log: in clear if it is stored, else hashed."""
    if known:
        return text
    return "unknown:" + hashlib.sha256(text.encode()).hexdigest()[:12]


class HashingGate:
    """At most `slots` password hashes at once, at most `queue` requests waiting for one."""

    def __init__(self, slots: int, queue: int) -> None:
        self.slots = slots
        self.queue = queue
        self._semaphore = asyncio.Semaphore(slots)
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    async def run(self, admit: Callable[[], None], work: Callable[[], T]) -> T:
        """Wait for a slot (or raise `Busy` at once), call `admit()` (which may refuse by
        raising), then run `work()` in a thread. The slot is held until `work` returns, even if
        the caller is cancelled meanwhile."""
        if self._semaphore.locked() and self._waiting >= self.queue:
            raise Busy
        self._waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._waiting -= 1
        try:
            admit()
            future = asyncio.get_running_loop().run_in_executor(None, work)
        except BaseException:
            self._semaphore.release()
            raise
        future.add_done_callback(self._finished)
        return await asyncio.shield(future)

    def _finished(self, future: asyncio.Future[Any]) -> None:
        self._semaphore.release()
        if not future.cancelled():
            future.exception()  # retrieved: an abandoned hash's error is not reported twice


class FailureLog:
    """WARNING lines about failed token requests, at most `per_minute` of them (0: none)."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self._budget = TokenBuckets(per_minute / 60.0, per_minute) if per_minute > 0 else None
        self._clock = clock
        self._unlogged = 0

    def failure(self, reason: str, client: str, user: str | None, address: str) -> None:
        if self._budget is None or self._budget.take("log", now=self._clock()) > 0:
            self._unlogged += 1
            return
        unlogged, self._unlogged = self._unlogged, 0
        log.warning(
            "token request failed: %s; client=%s user=%s address=%s%s",
            reason,
            client,
            user or "-",
            address,
            f" ({unlogged} more failures since the last line were not logged)" if unlogged else "",
        )


Charge = tuple[FailureBuckets | None, Hashable]
"""One key's failure budget: its buckets (None: that kind of key has no limit) and the key."""


class LoginGuard:
    """The failure budgets, the hashing gate and the failure log of one server process.

    A limit of 0 failures means no limit for that kind of key; a window of 0 means spent
    failures are never regained (until the process restarts).
    """

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
        cpus: Callable[[], int] = cpu_count,
    ) -> None:
        window = settings.auth_failure_window

        def buckets(burst: int) -> FailureBuckets | None:
            if burst <= 0:
                return None
            return FailureBuckets(burst, burst / window if window > 0 else 0.0)

        self.clients = buckets(settings.auth_client_failures)
        self.users = buckets(settings.auth_user_failures)
        self.addresses = buckets(settings.auth_address_failures)
        self.hashing = HashingGate(
            settings.password_hash_slots or cpus(), max(0, settings.password_hash_queue)
        )
        self.log = FailureLog(settings.auth_failure_logs, clock)
        self._clock = clock

    def _check(self, *charges: Charge) -> None:
        now = self._clock()
        wait = max((b.wait(key, now) for b, key in charges if b is not None), default=0.0)
        if wait > 0:
            raise Throttled(wait)

    def _spend(self, *charges: Charge) -> None:
        now = self._clock()
        for buckets, key in charges:
            if buckets is not None:
                buckets.spend(key, now)

    def _refund(self, *charges: Charge) -> None:
        now = self._clock()
        for buckets, key in charges:
            if buckets is not None:
                buckets.refund(key, now)

    def check_client(self, address: str, client_id: str) -> None:
        """Raise `Throttled` if this client's or this address's failures are spent."""
        self._check((self.addresses, address), (self.clients, client_id))

    def client_failed(self, address: str, client_id: str, known: bool) -> None:
        self._spend((self.addresses, address), (self.clients, client_id))
        reason = "wrong client secret" if known else "unknown client"
        self.log.failure(reason, shown(client_id, known), None, address)

    async def hash(self, work: Callable[[], str]) -> str:
        """A new password hash, `work()`, computed in a hashing slot (`Busy` when none is to be
        had)."""
        return await self.hashing.run(lambda: None, work)

    def check_address(self, address: str) -> None:
        """Raise `Throttled` if this address's failures are spent."""
        self._check((self.addresses, address))

    def invitation_failed(self, address: str) -> None:
        """An unknown, used or expired invitation token was presented from `address`."""
        self._spend((self.addresses, address))
        self.log.failure("unknown invitation", "-", None, address)

    def refresh_failed(self, address: str, client_id: str, reason: str) -> None:
        self._spend((self.addresses, address))
        self.log.failure(reason, client_id, None, address)

    async def verify_password(
        self,
        address: str,
        client_id: str,
        org_id: int,
        email: str,
        known: bool,
        verify: Callable[[], bool],
    ) -> bool:
        """`verify()` (a password hash, run in a thread) if neither the user's nor the address's
        failures are spent; raises `Throttled`, or `Busy` when no hash slot is to be had."""
        charges: tuple[Charge, Charge] = ((self.addresses, address), (self.users, (org_id, email)))
        self._check(*charges)  # before queueing: a throttled guess takes no place in the queue

        def admit() -> None:  # holding a slot: failures of others may have come meanwhile
            self._check(*charges)
            self._spend(*charges)

        valid = await self.hashing.run(admit, verify)
        if valid:
            self._refund(*charges)
        else:
            user = shown(email, known)
            self.log.failure(
                "wrong password" if known else "unknown user", client_id, user, address
            )
        return valid
