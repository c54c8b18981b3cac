"""The webhook delivery worker: claims due outbox rows, makes each request, settles each row.

Every server process runs one (`pinbase.server.running_services`). A round claims the rows that
are due (`Store.claim_deliveries`: exclusive across processes, with a lease that lets a row of a
process that died be claimed again), renders each delivery from the webhook's current definition
(`pinbase.domain.webhooks.render`), takes a token of the webhook's rate (shared by every process
on PostgreSQL; a row over the rate is postponed without counting an attempt), and sends it. A
2xx answer settles the row as delivered; anything else (another status, a redirect, which is
never followed, no connection, a timeout) is logged and the row made due again after the
backoff, until the attempts run out and it is logged as failed. Each attempt and its row's
new state are written in one transaction.

Outbound requests go to operator-configured URLs: the whole request is bounded by the timeout,
at most `MAX_RESPONSE` bytes of the answer are read, proxies from the environment are ignored,
and the log names the webhook and host, never the URL's path or query, credentials or body.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import orjson

from pinbase.app.mail_delivery import SmtpServer, parse_smtp_url, send_mail
from pinbase.config import Settings
from pinbase.domain.clock import now_ms
from pinbase.domain.webhooks import Backoff, Request, render
from pinbase.store.base import Store
from pinbase.store.errors import StoreError
from pinbase.store.records import MAIL_OUTBOX, DeliveryRow, OutboxRow, WebhookRow

log = logging.getLogger("pinbase.webhooks")

MAX_RESPONSE = 16 * 1024
"""Bytes of an answer read at most (Blynk: 16 KB); the rest is not read."""
BATCH = 32
"""Outbox rows claimed per round."""
LOG_SWEEP_S = 3600.0


@dataclass(frozen=True, slots=True)
class Policy:
    """How deliveries are made (from the `webhook_*` settings)."""

    poll: float
    timeout: float
    backoff: Backoff
    per_minute: int

    @property
    def lease_ms(self) -> int:
        """How long a claimed row is left to its claimer: beyond one round's requests (one
        webhook's rows go one after another, and at most its rate's burst are sent a round)."""
        return int((min(BATCH, self.per_minute) * self.timeout + 5) * 1000)


async def send(
    client: httpx.AsyncClient, hook: WebhookRow, request: Request, timeout: float
) -> tuple[int, str]:
    """Make one request: (HTTP status or 0, what happened in a few words, without secrets)."""
    auth = (hook.username, hook.password or "") if hook.username else None
    try:
        async with asyncio.timeout(timeout):
            async with client.stream(
                request.method,
                request.url,
                headers=request.headers,
                content=request.body,
                auth=auth,
                timeout=timeout,
            ) as response:
                received = 0
                async for chunk in response.aiter_raw():
                    received += len(chunk)
                    if received >= MAX_RESPONSE:
                        break
                status = response.status_code
                if response.is_redirect:
                    return status, f"HTTP {status}: redirect not followed"
                return status, f"HTTP {status}"
    except TimeoutError:
        return 0, f"no answer within {timeout:g} s"
    except httpx.HTTPError as exc:
        return 0, f"request failed ({type(exc).__name__})"


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


class Deliveries:
    """The worker of one process: `round()` makes the due deliveries once; `run()` forever."""

    def __init__(
        self,
        store: Store,
        policy: Policy,
        client: httpx.AsyncClient,
        clock: Callable[[], int] = now_ms,
        smtp: SmtpServer | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.client = client
        self.clock = clock
        self.smtp = smtp
        """Where e-mail notifications (outbox rows of `MAIL_OUTBOX`) go; None: not configured."""

    async def round(self) -> int:
        """Claim the due rows and deliver them; how many were claimed."""
        now = self.clock()
        rows = await self.store.claim_deliveries(now, now + self.policy.lease_ms, BATCH)
        if not rows:
            return 0
        hooks = {hook.id: hook for hook in await self.store.webhooks()}
        by_hook: dict[int, list[OutboxRow]] = {}
        for row in rows:
            by_hook.setdefault(row.webhook_id, []).append(row)
        # one webhook's deliveries one after another, in outbox order; webhooks side by side
        await asyncio.gather(
            *(
                self._deliver_all(hooks.get(hook_id), hook_rows)
                for hook_id, hook_rows in by_hook.items()
            )
        )
        return len(rows)

    async def _deliver_all(self, hook: WebhookRow | None, rows: list[OutboxRow]) -> None:
        for row in rows:
            await self._deliver(hook, row)

    async def _mail(self, row: OutboxRow) -> None:
        """Send an e-mail notification; retried like a webhook delivery, logged under id 0."""
        attempt = row.attempts + 1
        if self.smtp is None:
            outcome, detail = "retry", "no SMTP server configured in this process"
        else:
            outcome, detail = await send_mail(self.smtp, row.context, self.policy.timeout)
        now = self.clock()
        status = 250 if outcome == "sent" else 0
        if outcome == "sent":
            entry = DeliveryRow(0, MAIL_OUTBOX, row.id, attempt, now, status, "delivered", detail)
            await self.store.settle_delivery(row.id, entry)
            return
        delay = self.policy.backoff.delay(attempt) if outcome == "retry" else None
        result = "failed" if delay is None else "retrying"
        host = self.smtp.host if self.smtp is not None else "?"
        log.warning("mail notification via %s: attempt %d %s (%s)", host, attempt, result, detail)
        entry = DeliveryRow(0, MAIL_OUTBOX, row.id, attempt, now, status, result, detail)
        retry_at = None if delay is None else now + math.ceil(delay * 1000)
        await self.store.settle_delivery(row.id, entry, retry_at)

    async def _deliver(self, hook: WebhookRow | None, row: OutboxRow) -> None:
        attempt = row.attempts + 1
        if row.webhook_id == MAIL_OUTBOX:
            await self._mail(row)
            return
        if hook is None:  # deleted meanwhile
            entry = DeliveryRow(
                0, row.webhook_id, row.id, attempt, self.clock(), 0, "failed", "webhook deleted"
            )
            await self.store.settle_delivery(row.id, entry)
            return
        rate = self.policy.per_minute
        wait = await self.store.take_token(f"webhook:{hook.id}", rate / 60.0, float(rate))
        if wait > 0:
            await self.store.postpone_delivery(
                row.id, self.clock() + math.ceil(wait * 1000), row.attempts
            )
            return
        try:
            context = {str(k): str(v) for k, v in orjson.loads(row.context).items()}
            request = render(
                hook.method, hook.url, hook.content_type, hook.body, hook.secret, context
            )
        except (orjson.JSONDecodeError, AttributeError, KeyError) as exc:
            entry = DeliveryRow(
                0,
                hook.id,
                row.id,
                attempt,
                self.clock(),
                0,
                "failed",
                f"unrenderable ({type(exc).__name__})",
            )
            await self.store.settle_delivery(row.id, entry)
            return
        status, detail = await send(self.client, hook, request, self.policy.timeout)
        now = self.clock()
        if 200 <= status < 300:
            await self.store.settle_delivery(
                row.id, DeliveryRow(0, hook.id, row.id, attempt, now, status, "delivered", detail)
            )
            return
        delay = self.policy.backoff.delay(attempt)
        outcome = "failed" if delay is None else "retrying"
        log.warning(
            "webhook %d to %s: attempt %d %s (%s)",
            hook.id,
            _host(request.url),
            attempt,
            outcome,
            detail,
        )
        entry = DeliveryRow(0, hook.id, row.id, attempt, now, status, outcome, detail)
        retry_at = None if delay is None else now + math.ceil(delay * 1000)
        await self.store.settle_delivery(row.id, entry, retry_at)

    async def run(self, log_days: int = 0) -> None:
        """Rounds forever: at once again after a full batch, else after `poll` seconds; the
        delivery log is trimmed to `log_days` (0: kept) once an hour."""
        swept = -math.inf
        while True:
            claimed = 0
            try:
                claimed = await self.round()
                if log_days > 0 and asyncio.get_running_loop().time() - swept >= LOG_SWEEP_S:
                    await self.store.drop_deliveries_before(self.clock() - log_days * 86_400_000)
                    swept = asyncio.get_running_loop().time()
            except StoreError as exc:
                log.warning("webhook deliveries paused: %s", exc)
            if claimed < BATCH:
                await asyncio.sleep(self.policy.poll)


def policy_of(settings: Settings) -> Policy:
    backoff = Backoff(
        settings.webhook_retry_first, settings.webhook_retry_longest, settings.webhook_attempts
    )
    return Policy(settings.webhook_poll, settings.webhook_timeout, backoff, settings.webhook_rate)


def smtp_of(settings: Settings) -> SmtpServer | None:
    """The SMTP server of `--smtp-url` (ValueError when malformed), None when unset."""
    if settings.smtp_url is None:
        return None
    return parse_smtp_url(settings.smtp_url, settings.smtp_from, settings.smtp_ca)


async def run_deliveries(
    store: Store, policy: Policy, log_days: int, smtp: SmtpServer | None = None
) -> None:
    """The worker of a server process, with its own HTTP client (redirects not followed,
    environment proxies ignored), sending e-mail notifications through `smtp`."""
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        await Deliveries(store, policy, client, smtp=smtp).run(log_days)
