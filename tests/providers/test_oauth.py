"""The access token cache: reuse until shortly before expiry, one fetch per key, rotation drops old tokens."""

import asyncio

import pytest

from providers.oauth import TokenCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting_fetch(values: list[str], expires_in: float = 3600):
    async def fetch() -> tuple[str, float]:
        values.append(f"token-{len(values)}")
        return values[-1], expires_in

    return fetch


def get(cache: TokenCache, key, fetch) -> str:
    return asyncio.run(cache.get(key, fetch))


def test_a_token_is_reused_until_the_refresh_margin_before_it_expires():
    clock, fetched = Clock(), []
    cache = TokenCache(refresh_margin=60, clock=clock)
    fetch = counting_fetch(fetched, expires_in=3600)

    assert get(cache, ("c", 1), fetch) == "token-0"
    clock.now += 3539
    assert get(cache, ("c", 1), fetch) == "token-0"
    clock.now += 1  # 60 s left: no longer handed out
    assert get(cache, ("c", 1), fetch) == "token-1"
    assert fetched == ["token-0", "token-1"]


def test_a_new_key_for_the_same_connection_drops_the_old_token():
    cache, fetched = TokenCache(), []
    get(cache, (7, "secrets-v1"), counting_fetch(fetched))
    get(cache, (8, "secrets-v1"), counting_fetch(fetched))

    get(cache, (7, "secrets-v2"), counting_fetch(fetched))

    assert len(cache) == 2  # connection 7's first token is gone, connection 8's stays


def test_a_failed_fetch_caches_nothing_and_the_next_caller_tries_again():
    cache, fetched = TokenCache(), []

    async def failing() -> tuple[str, float]:
        raise RuntimeError("identity provider down")

    with pytest.raises(RuntimeError):
        get(cache, ("c", 1), failing)
    assert get(cache, ("c", 1), counting_fetch(fetched)) == "token-0"


def test_forget_makes_the_next_call_fetch():
    cache, fetched = TokenCache(), []
    get(cache, ("c", 1), counting_fetch(fetched))
    cache.forget(("c", 1))

    assert get(cache, ("c", 1), counting_fetch(fetched)) == "token-1"


def test_concurrent_callers_of_one_key_share_one_fetch_and_other_keys_are_not_held_up():
    cache = TokenCache()
    calls: list[str] = []

    async def scenario():
        release = asyncio.Event()

        async def slow() -> tuple[str, float]:
            calls.append("slow")
            await release.wait()
            return "shared", 3600

        waiting = [asyncio.ensure_future(cache.get(("a", 1), slow)) for _ in range(10)]
        await asyncio.sleep(0)
        # Answered while ("a", 1) is still being fetched: were it held up, this would wait for the release.
        other = await cache.get(("b", 1), lambda: asyncio.sleep(0, ("other", 3600)))
        release.set()
        return other, await asyncio.gather(*waiting)

    other, results = asyncio.run(scenario())

    assert other == "other"
    assert calls == ["slow"] and results == ["shared"] * 10


def test_a_caller_that_gives_up_does_not_cancel_the_fetch_for_the_others():
    cache = TokenCache()

    async def scenario():
        release = asyncio.Event()

        async def slow() -> tuple[str, float]:
            await release.wait()
            return "shared", 3600

        impatient = asyncio.ensure_future(cache.get(("a", 1), slow))
        patient = asyncio.ensure_future(cache.get(("a", 1), slow))
        await asyncio.sleep(0)
        impatient.cancel()
        release.set()
        return await patient

    assert asyncio.run(scenario()) == "shared"


def test_token_key_starts_with_the_connection_and_when_its_secrets_changed(make_connection):
    connection = make_connection()

    assert connection.account().cache_key("tenant") == (connection.pk, connection.secrets_updated_at, "tenant")


def test_a_cached_token_never_shows_its_value():
    cache = TokenCache()
    get(cache, ("c", 1), lambda: asyncio.sleep(0, ("sk-planted-SECRET-token-value-0123456789", 3600)))

    assert "SECRET" not in repr(cache._tokens)
