"""The per-process cache of short-lived access tokens that adapters obtain with an account's credentials.

Providers that authenticate with OAuth (Azure OpenAI with Entra ID, Databricks service principals, Google
service accounts) exchange the stored secret for an access token that lives about an hour. Fetching one on
every call would add a round trip and hit the identity provider's rate limits, so each process keeps them:

    token = TOKENS.get(account.cache_key(tenant_id, client_id), lambda: fetch(...))

`fetch` returns `(access_token, expires_in_seconds)`. The token is reused until `REFRESH_MARGIN` seconds
before it expires. Keys start with the account's id and secrets version (`Account.cache_key`), so a rotated
secret gets a new key and is used by the very next call (the old key's token is dropped then); add any
config that identifies the principal (tenant, client id, token URL) so that editing it also fetches anew.

Thread-safe: when many threads ask for the same missing key at once, one of them fetches and the others
wait for its token (one lock per key, so other accounts are never held up). A fetch that raises leaves
nothing cached and the exception goes to its caller; the next caller tries again.
"""

import os
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

REFRESH_MARGIN = 60.0  # seconds before expiry at which a token is no longer handed out (half a shorter life)
MAX_ENTRIES = 10_000  # a bound for processes that see very many accounts; cleared wholesale when reached


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
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, fetch: Callable[[], tuple[str, float]]) -> str:
        """A fresh enough cached token for `key`, or the one `fetch()` returns (then cached)."""
        token = self._fresh(key)
        if token is not None:
            return token
        with self._key_lock(key):
            token = self._fresh(key)  # another thread may have fetched it while this one waited
            if token is not None:
                return token
            value, expires_in = fetch()
            self._store(key, value, float(expires_in))
            return value

    def forget(self, key: Hashable) -> None:
        """Drop a token the provider no longer accepts, so that the next call fetches a new one."""
        with self._lock:
            self._tokens.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._key_locks.clear()

    def __len__(self) -> int:
        return len(self._tokens)

    def _fresh(self, key: Hashable) -> str | None:
        token = self._tokens.get(key)
        if token is not None and self.clock() < token.refresh_at:
            return token.value
        return None

    def _key_lock(self, key: Hashable) -> threading.Lock:
        with self._lock:
            lock = self._key_locks.get(key)
            if lock is None:
                lock = self._key_locks[key] = threading.Lock()
            return lock

    def _store(self, key: Hashable, value: str, expires_in: float) -> None:
        with self._lock:
            if len(self._tokens) >= MAX_ENTRIES:
                self._tokens.clear()
                self._key_locks = {key: self._key_locks[key]} if key in self._key_locks else {}
            if isinstance(key, tuple) and key:
                # Tokens for the same account under other keys (its previous secret) are of no more use.
                for stale in [k for k in self._tokens if isinstance(k, tuple) and k[:1] == key[:1] and k != key]:
                    del self._tokens[stale]
                    self._key_locks.pop(stale, None)
            margin = min(self.refresh_margin, expires_in / 2)  # a short-lived token is still used for a while
            self._tokens[key] = CachedToken(value, self.clock() + expires_in - margin)


# The process's cache, shared by every adapter (keys start with the account id, so they never collide); a
# forked worker starts empty rather than with locks another process's threads may hold.
TOKENS = TokenCache()
os.register_at_fork(after_in_child=TOKENS.clear)
