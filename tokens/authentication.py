"""`Authorization: Bearer <token>` for the API (and the gateway): listed first so 401s say `WWW-Authenticate: Bearer`.

`bearer_token()` is the one reading of the header, for the API here and for the gateway: a plain function of
the header's value, so it needs no request object. What it accepts (README.md, "Using it"): the scheme
`Bearer` in any case, then one or more spaces or tabs, then the token as RFC 6750 spells one (letters, digits,
`-._~+/`, then any `=`), and nothing else but spaces or tabs around the whole value. Anything else (another
separator, a second word, characters a token never has) carries no Bearer token.
"""

import re

from rest_framework import authentication, exceptions

from .models import ApiToken, Scope

KEYWORD = "Bearer"
BEARER = re.compile(r"[ \t]*bearer[ \t]+([A-Za-z0-9\-._~+/]+=*)[ \t]*", re.IGNORECASE | re.ASCII)


def bearer_token(header_value: str | None) -> str | None:
    """The token an Authorization header's value carries, or None when it carries no Bearer token."""
    match = BEARER.fullmatch(header_value) if header_value else None
    return match.group(1) if match else None


def names_bearer(header_value: str) -> bool:
    """Whether the header's first word is the Bearer scheme (so a malformed value is a failed Bearer attempt)."""
    words = header_value.split(maxsplit=1)
    return bool(words) and words[0].lower() == KEYWORD.lower()


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Authenticates an ApiToken; a request without a Bearer header falls through to the next class."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        plaintext = bearer_token(header)
        if plaintext is None:
            if names_bearer(header):
                raise exceptions.AuthenticationFailed("Invalid Authorization header: use 'Bearer <token>'.")
            return None
        token = ApiToken.find(plaintext)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or expired token.")
        if not token.allows(request.method):
            raise exceptions.PermissionDenied(
                "This token is for the gateway only." if token.scope == Scope.GATEWAY
                else "This token is read-only: it may only read through the API."
            )
        token.touch()
        return token.user, token

    def authenticate_header(self, request) -> str:
        return KEYWORD
