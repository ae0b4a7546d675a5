"""Login throttling: 10 failures for a username from one address within 15 minutes → 429 for 15 minutes."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.utils import timezone

pytestmark = pytest.mark.django_db

PASSWORD = "alice-password-123"
ADDRESS = "203.0.113.7"
OTHER_ADDRESS = "203.0.113.8"
LOCKED_OUT = "Too many failed logins for this username from your address. Try again in 15 minutes."
WRONG_PASSWORD = "correct username and password"  # site: "a correct …", admin: "the correct …"


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password=PASSWORD)


def log_in(username: str, password: str, address: str = ADDRESS, path: str = "/accounts/login/", **headers):
    """One login try from `address` with a fresh browser (no session, no cookies)."""
    return Client(REMOTE_ADDR=address).post(path, {"username": username, "password": password}, **headers)


def fail(times: int, username: str = "alice", address: str = ADDRESS, path: str = "/accounts/login/", **headers):
    for _ in range(times):
        response = log_in(username, "wrong-password", address, path, **headers)
        assert response.status_code == 200 and WRONG_PASSWORD in response.text


def signed_in(response) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.wsgi_request.session


def test_the_eleventh_try_gets_429_even_with_the_right_password(alice):
    fail(10)  # the tenth failure still gets the ordinary "wrong password" page

    response = log_in("alice", PASSWORD)

    assert response.status_code == 429
    assert LOCKED_OUT in response.text and WRONG_PASSWORD not in response.text
    assert 'name="username"' in response.text and "Log in" in response.text  # the login page, with the reason
    assert PASSWORD not in response.text
    assert "_auth_user_id" not in response.wsgi_request.session
    assert log_in("alice", "wrong-password").status_code == 429
    # Counted in the database (shared by every server process), never in process memory.
    assert AccessAttempt.objects.get(username="alice", ip_address=ADDRESS).failures_since_start == 10


def test_another_username_or_another_address_is_not_blocked(alice, django_user_model):
    django_user_model.objects.create_user("bob", password=PASSWORD)
    fail(10)

    assert signed_in(log_in("bob", PASSWORD))
    assert signed_in(log_in("alice", PASSWORD, address=OTHER_ADDRESS))
    assert log_in("alice", PASSWORD).status_code == 429


def test_logins_work_again_after_15_minutes(alice):
    fail(10)
    assert log_in("alice", PASSWORD).status_code == 429

    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=14))
    assert log_in("alice", PASSWORD).status_code == 429  # refused tries do not extend the lockout…
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=15, seconds=5))

    assert signed_in(log_in("alice", PASSWORD))  # …which ends 15 minutes after the tenth failure


def test_failures_older_than_15_minutes_do_not_count(alice):
    fail(9)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    fail(2)

    assert signed_in(log_in("alice", PASSWORD))


def test_a_successful_login_starts_the_count_again(alice):
    fail(9)
    assert signed_in(log_in("alice", PASSWORD))
    fail(9)

    assert signed_in(log_in("alice", PASSWORD))


def test_the_admin_login_is_throttled_too_and_shares_the_count(alice):
    fail(5, path="/admin/login/")
    fail(5)

    response = log_in("alice", PASSWORD, path="/admin/login/")

    assert response.status_code == 429
    assert LOCKED_OUT in response.text and "Django administration" in response.text
    assert log_in("alice", PASSWORD).status_code == 429


def test_without_a_proxy_x_forwarded_for_is_ignored(alice):
    """A client cannot escape the count by sending a different X-Forwarded-For on every try."""
    for number in range(10):
        response = log_in("alice", "wrong", HTTP_X_FORWARDED_FOR=f"198.51.100.{number}")
        assert response.status_code == 200

    assert log_in("alice", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.99").status_code == 429


@pytest.fixture
def behind_proxy(settings):
    """BEHIND_PROXY=true (tests/config/test_settings.py checks that the variable sets it)."""
    settings.BEHIND_PROXY = True


def test_behind_a_proxy_the_address_the_proxy_saw_is_counted(alice, behind_proxy):
    proxy = "10.0.0.2"
    fail(10, address=proxy, HTTP_X_FORWARDED_FOR=ADDRESS)

    # Another client behind the same proxy is not blocked.
    assert signed_in(log_in("alice", PASSWORD, proxy, HTTP_X_FORWARDED_FOR=OTHER_ADDRESS))
    # The blocked client stays blocked, also when it puts a forged address in front of the proxy's entry.
    forged = f"198.51.100.9, {ADDRESS}"
    assert log_in("alice", PASSWORD, proxy, HTTP_X_FORWARDED_FOR=forged).status_code == 429
    assert log_in("alice", PASSWORD, proxy, HTTP_X_FORWARDED_FOR=ADDRESS).status_code == 429


@pytest.mark.parametrize("real", ["10.0.5.7", "127.0.0.2", "2001:db8::7"])
def test_behind_a_proxy_a_forged_public_address_never_replaces_the_one_the_proxy_appended(alice, behind_proxy, real):
    """A client on a private network (or anywhere) writing public addresses in front gets no fresh count."""
    for number in range(10):
        fail(1, address="10.0.0.2", HTTP_X_FORWARDED_FOR=f"8.8.{number}.8, {real}")

    assert log_in("alice", PASSWORD, "10.0.0.2", HTTP_X_FORWARDED_FOR=f"9.9.9.9, {real}").status_code == 429
    assert AccessAttempt.objects.get().ip_address == real


def test_served_as_the_server_serves_it_the_try_that_reaches_the_limit_is_answered_then_429(alice):
    from tests.asgi_client import AsgiClient

    answers = [AsgiClient(REMOTE_ADDR=ADDRESS).submit("/accounts/login/", {"username": "alice",
                                                                           "password": "wrong-password"})
               for _ in range(11)]

    assert [answer.status_code for answer in answers] == [200] * 10 + [429]
    assert all(WRONG_PASSWORD in answer.text for answer in answers[:10]) and LOCKED_OUT in answers[10].text
