"""The per-process cache of short-lived access tokens that adapters obtain with an account's credentials.

Providers that authenticate with OAuth (Azure OpenAI with Entra ID, Databricks service principals, Google
service accounts) exchange the stored secret for an access token that lives about an hour. Fetching one on
every call would add a round trip and hit the identity provider's rate limits, so each process keeps them:

    token = await TOKENS.get(account.cache_key(tenant_id, client_id), lambda: fetch(...))

`fetch()` is a coroutine returning `(access_token, expires_in_seconds)`. The token is reused until `REFRESH_MARGIN` seconds
before it expires. Keys start with the account's id and secrets version (`Account.cache_key`), so a rotated
secret gets a new key and is used by the very next call (the old key's token is dropped then); add any
config that identifies the principal (tenant, client id, token URL) so that editing it also fetches anew.

When many calls ask for the same missing key at once, one fetch runs and they all wait for its token (one
fetch per key, so other accounts are never held up); the fetch runs as a task of its own, so a caller that
gives up (its client went away) does not cancel it for the others. A fetch that raises leaves nothing cached
and every waiter gets the exception; the next caller tries again. The cache is shared by the event loops of
a process (the server's, and those of synchronous callers), behind a lock.
"""

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

REFRESH_MARGIN = 60.0  # seconds before expiry at which a token is no longer handed out (half a shorter life)
MAX_ENTRIES = 10_000  # a bound for processes that see very many accounts; cleared wholesale when reached

Fetch = Callable[[], Awaitable[tuple[str, float]]]


@dataclass(frozen=True)
class CachedToken:
    value: str
    refresh_at: float  # time.monotonic() seconds: no longer handed out from then on

    def __repr__(self) -> str:
        return f"<CachedToken refresh_at={self.refresh_at:.0f}>"  # never the token itself


class TokenCache:
    """Access tokens by key until shortly before they expire; one fetch per key at a time."""

    def __init__(self, *, refresh_margin: float = REFRESH_MARGIN, clock: Callable[[], float] = time.monotonic):
        self.refresh_margin = refresh_margin
        self.clock = clock
        self._tokens: dict[Hashable, CachedToken] = {}
        self._fetches: dict[Hashable, asyncio.Task] = {}
        self._lock = threading.Lock()

    async def get(self, key: Hashable, fetch: Fetch) -> str:
        """A fresh enough cached token for `key`, or the one `fetch()` returns (then cached)."""
        token = self._fresh(key)
        if token is not None:
            return token
        loop = asyncio.get_running_loop()
        with self._lock:
            task = self._fetches.get(key)
            if task is None or task.get_loop() is not loop or task.done():
                task = self._fetches[key] = loop.create_task(self._fetch_and_store(key, fetch))
                task.add_done_callback(self._forget_fetch)
        return await asyncio.shield(task)

    async def _fetch_and_store(self, key: Hashable, fetch: Fetch) -> str:
        token = self._fresh(key)  # a fetch that finished a moment ago
        if token is not None:
            return token
        value, expires_in = await fetch()
        self._store(key, value, float(expires_in))
        return value

    def _forget_fetch(self, task: asyncio.Task) -> None:
        with self._lock:
            for key in [key for key, each in self._fetches.items() if each is task]:
                del self._fetches[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so a failure nobody waited for is not reported as lost

    def forget(self, key: Hashable) -> None:
        """Drop a token the provider no longer accepts, so that the next call fetches a new one."""
        with self._lock:
            self._tokens.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._fetches.clear()

    def __len__(self) -> int:
        return len(self._tokens)

    def _fresh(self, key: Hashable) -> str | None:
        token = self._tokens.get(key)
        if token is not None and self.clock() < token.refresh_at:
            return token.value
        return None

    def _store(self, key: Hashable, value: str, expires_in: float) -> None:
        with self._lock:
            if len(self._tokens) >= MAX_ENTRIES:
                self._tokens.clear()
            if isinstance(key, tuple) and key:
                # Tokens for the same account under other keys (its previous secret) are of no more use.
                for stale in [k for k in self._tokens if isinstance(k, tuple) and k[:1] == key[:1] and k != key]:
                    del self._tokens[stale]
            margin = min(self.refresh_margin, expires_in / 2)  # a short-lived token is still used for a while
            self._tokens[key] = CachedToken(value, self.clock() + expires_in - margin)


# The process's cache, shared by every adapter (keys start with the account id, so they never collide); a
# forked worker starts empty rather than with tasks and a lock of another process's.
TOKENS = TokenCache()
os.register_at_fork(after_in_child=TOKENS.clear)
