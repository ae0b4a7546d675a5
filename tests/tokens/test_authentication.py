from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tokens.authentication import bearer_token
from tokens.models import ApiToken, hash_token
from tokens.services import token_revoke

pytestmark = pytest.mark.django_db

URL = "/api/v1/providers/"


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", password="pw-123456-long")


def call(header: str | None):
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    return client.get(URL)


def test_a_valid_token_authenticates_and_records_its_use(user):
    token, plaintext = ApiToken.issue(user=user)

    response = call(f"Bearer {plaintext}")

    assert response.status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_the_keyword_is_case_insensitive(user):
    _, plaintext = ApiToken.issue(user=user)

    assert call(f"bearer {plaintext}").status_code == 200


@pytest.mark.parametrize("header", [
    None, "Bearer", "Bearer llmc_wrong", "Bearer a b", "Bearer not-llmc", "Bearer \u00e9\u00e9\u00e9", "Bearer " + "x" * 5000,
])
def test_missing_or_bad_credentials_get_401_with_the_bearer_challenge(user, header):
    response = call(header)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


# Every form of an Authorization header, and the token it carries (None: no Bearer token). The one parser,
# tokens.authentication.bearer_token, reads it so for the API and for the gateway.
T = "llmc_Zx9-Qw_ErTy12345678.90~abc+def/ghi=="
BEARER_HEADER_FORMS = [
    (f"Bearer {T}", T),
    (f"bearer {T}", T),
    (f"BEARER {T}", T),
    (f"Bearer   {T}", T),  # several spaces
    (f"Bearer\t{T}", T),  # a tab
    (f"Bearer \t {T}", T),
    (f"  Bearer {T}  ", T),  # spaces or tabs around the value
    (f"\tBearer {T}\t", T),
    ("Bearer x", "x"),  # any token68: whether it is a token is for the lookup to say
    (f"Bearer{T}", None),  # no separator
    (f"Bearer\u00a0{T}", None),  # a no-break space
    (f"Bearer\x0b{T}", None),  # other whitespace: vertical tab, form feed, line breaks
    (f"Bearer\x0c{T}", None),
    (f"Bearer\n{T}", None),
    (f"Bearer\r\n {T}", None),
    (f"Bearer {T} extra", None),  # more than one token
    (f"Bearer {T}, Basic dXNlcg==", None),
    (f"Bearer \u00e9{T}", None),  # outside token68's characters
    (f"Bearer {T}\u00e9", None),
    ("Bearer ===", None),
    ("Bearer", None),
    ("Bearer ", None),
    (f"Basic {T}", None),  # another scheme
    (f"Token {T}", None),
    (f"Bearer: {T}", None),
    (T, None),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize("header, token", BEARER_HEADER_FORMS)
def test_bearer_token_reads_exactly_these_header_forms(header, token):
    assert bearer_token(header) == token


@pytest.mark.parametrize("header, token", [(h, t) for h, t in BEARER_HEADER_FORMS if h])
def test_the_api_accepts_exactly_the_forms_the_parser_reads(user, header, token):
    ApiToken.objects.create(user=user, prefix=T[:11], key_hash=hash_token(T))  # T is a valid token

    response = call(header)

    assert response.status_code == (200 if token == T else 401), header
    if response.status_code == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_an_expired_token_is_refused(user):
    token, plaintext = ApiToken.issue(user=user, expires_days=1)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    response = call(f"Bearer {plaintext}")

    assert response.status_code == 401
    assert plaintext not in response.content.decode()


def test_a_revoked_token_is_refused(user):
    token, plaintext = ApiToken.issue(user=user)
    assert call(f"Bearer {plaintext}").status_code == 200

    token_revoke(token=token, actor=user)

    assert call(f"Bearer {plaintext}").status_code == 401


def test_repeated_requests_do_not_write_last_used_each_time(user, django_assert_num_queries):
    _, plaintext = ApiToken.issue(user=user)
    call(f"Bearer {plaintext}")

    with django_assert_num_queries(1):  # the token joined with its user; no UPDATE within the minute
        assert call(f"Bearer {plaintext}").status_code == 200
