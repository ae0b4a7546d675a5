"""The access token cache: reuse until shortly before expiry, one fetch per key, rotation drops old tokens."""

import threading

import pytest

from providers.oauth import TokenCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting_fetch(values: list[str], expires_in: float = 3600):
    def fetch() -> tuple[str, float]:
        values.append(f"token-{len(values)}")
        return values[-1], expires_in

    return fetch


def test_a_token_is_reused_until_the_refresh_margin_before_it_expires():
    clock, fetched = Clock(), []
    cache = TokenCache(refresh_margin=60, clock=clock)
    fetch = counting_fetch(fetched, expires_in=3600)

    assert cache.get(("c", 1), fetch) == "token-0"
    clock.now += 3539
    assert cache.get(("c", 1), fetch) == "token-0"
    clock.now += 1  # 60 s left: no longer handed out
    assert cache.get(("c", 1), fetch) == "token-1"
    assert fetched == ["token-0", "token-1"]


def test_a_new_key_for_the_same_connection_drops_the_old_token():
    cache, fetched = TokenCache(), []
    cache.get((7, "secrets-v1"), counting_fetch(fetched))
    cache.get((8, "secrets-v1"), counting_fetch(fetched))

    cache.get((7, "secrets-v2"), counting_fetch(fetched))

    assert len(cache) == 2  # connection 7's first token is gone, connection 8's stays


def test_a_failed_fetch_caches_nothing_and_the_next_caller_tries_again():
    cache, fetched = TokenCache(), []

    def failing() -> tuple[str, float]:
        raise RuntimeError("identity provider down")

    with pytest.raises(RuntimeError):
        cache.get(("c", 1), failing)
    assert cache.get(("c", 1), counting_fetch(fetched)) == "token-0"


def test_forget_makes_the_next_call_fetch():
    cache, fetched = TokenCache(), []
    cache.get(("c", 1), counting_fetch(fetched))
    cache.forget(("c", 1))

    assert cache.get(("c", 1), counting_fetch(fetched)) == "token-1"


def test_concurrent_callers_of_one_key_share_one_fetch_and_other_keys_are_not_held_up():
    cache = TokenCache()
    slow_started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow() -> tuple[str, float]:
        calls.append("slow")
        slow_started.set()
        release.wait(5)
        return "shared", 3600

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(("a", 1), slow))) for _ in range(10)]
    for thread in threads:
        thread.start()
    assert slow_started.wait(5)

    # Answered while ("a", 1) is still being fetched: were it held up, this would wait for the release below.
    assert cache.get(("b", 1), lambda: ("other", 3600)) == "other"
    release.set()
    for thread in threads:
        thread.join(5)

    assert calls == ["slow"] and results == ["shared"] * 10


def test_token_key_starts_with_the_connection_and_when_its_secrets_changed(make_connection):
    connection = make_connection()

    assert connection.account().cache_key("tenant") == (connection.pk, connection.secrets_updated_at, "tenant")


def test_a_cached_token_never_shows_its_value():
    cache = TokenCache()
    cache.get(("c", 1), lambda: ("sk-planted-SECRET-token-value-0123456789", 3600))

    assert "SECRET" not in repr(cache._tokens)
