"""Refresh-token rotation with reuse detection (OAuth 2.0 Security BCP, refresh token rotation).

A refresh token is good for one redemption: redeeming it consumes it and stores its successors
(a new access and refresh token of the same family) in one store transaction. A refresh token
presented after it was consumed, by a thief or by the legitimate client after a thief, revokes
its whole family: every token issued from the same grant, through all its refreshes.

The policy lives here; the store offers primitives (`refresh_token`, `consume_refresh`,
`revoke_family`, `drop_tokens_expired_before`) that keep it atomic across processes. Decisions:

- An unknown token, one of another client and an expired one all fail alike ("unknown") and
  change nothing: presenting a token to the wrong client neither consumes nor revokes it.
- A consumed token counts as reused and revokes the family. A token whose family is already
  revoked (by an earlier reuse, or with its user's or client's tokens) is refused and changes
  nothing more: presenting it again and again costs no write.
- Of two concurrent redemptions of one token, the store lets exactly one consume it; the other
  then finds it consumed and counts as a reuse, so the family (with the successors just issued
  to the first) is revoked. A client never legitimately presents one refresh token twice.
- After each rotation, tokens that expired more than `EXPIRED_KEPT_MS` ago are forgotten.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence

from pinbase.app.auth.access_tokens import AccessTokens
from pinbase.domain.clock import DAY_MS
from pinbase.store.base import Store
from pinbase.store.records import TokenRow

EXPIRED_KEPT_MS = DAY_MS


class RefreshOutcome(enum.Enum):
    ROTATED = "rotated"
    UNKNOWN = "unknown"  # no such refresh token, another client's, or expired
    REUSED = "reused"  # presented after it was consumed: its whole family is now revoked
    REVOKED = "revoked"  # its family was revoked before


async def rotate(
    store: Store,
    access_tokens: AccessTokens,
    token_hash: str,
    client_id: str,
    now: int,
    successors: Callable[[TokenRow], Sequence[TokenRow]],
) -> RefreshOutcome:
    """Redeem the refresh token with this hash for `successors(token)`, or refuse it."""
    state = await store.refresh_token(token_hash)
    if state is None or state.token.client_id != client_id:
        return RefreshOutcome.UNKNOWN
    token = state.token
    if not (state.used or state.revoked) and token.expires_at > now:
        if await store.consume_refresh(token, now, successors(token)):
            await store.drop_tokens_expired_before(now - EXPIRED_KEPT_MS)
            return RefreshOutcome.ROTATED
        # another redemption consumed it first (or its family was revoked meanwhile)
        state = await store.refresh_token(token_hash) or state
    if state.revoked:
        return RefreshOutcome.REUSED if state.used else RefreshOutcome.REVOKED
    if state.used:
        await store.revoke_family(token.family)
        access_tokens.forget(token.family)
        return RefreshOutcome.REUSED
    return RefreshOutcome.UNKNOWN
