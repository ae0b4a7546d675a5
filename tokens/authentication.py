"""`Authorization: Bearer <token>` for the API (and the gateway): listed first so 401s say `WWW-Authenticate: Bearer`."""

import re

from rest_framework import authentication, exceptions

from .models import ApiToken

KEYWORD = "Bearer"


BEARER = re.compile(r"bearer[ \t]+([^ \t]+)", re.IGNORECASE)


def bearer_token(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (the scheme in any case, spaces or tabs before
    the token), or None. The one parser of the API and the gateway."""
    match = BEARER.fullmatch(header.strip(" \t"))
    return match[1] if match else None


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Authenticates an ApiToken; a request without a Bearer header falls through to the next class."""

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != KEYWORD.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: use 'Bearer <token>'.")
        try:
            plaintext = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid or expired token.") from None
        token = ApiToken.find(plaintext)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or expired token.")
        token.touch()
        return token.user, token

    def authenticate_header(self, request) -> str:
        return KEYWORD
