"""A fake Microsoft Entra ID token endpoint: the OAuth 2.0 client credentials grant, as Azure OpenAI uses it.

`POST /<tenant>/oauth2/v2.0/token` with a form of grant_type, client_id, client_secret and scope. It checks
each field, the tenant in the path and the secret, and answers `{"access_token", "expires_in",
"token_type": "Bearer"}`, or Entra ID's error shape (`error`, `error_description` with an AADSTS code).
Tokens it issued are valid until `revoke()`; a fake Azure OpenAI asks `accepts(token)`.
"""

import secrets as random
import threading
from urllib.parse import parse_qs

from .server import FakeServer, RecordedRequest, Reply, ServedFake

SCOPE = "https://cognitiveservices.azure.com/.default"
TRACE = " Trace ID: 0b1c2d3e-0000-4000-8000-000000000000 Correlation ID: 1f2e3d4c-0000-4000-8000-000000000000"


def entra_error(status: int, error: str, description: str) -> Reply:
    return Reply.json({
        "error": error,
        "error_description": description + TRACE + " Timestamp: 2025-01-01 00:00:00Z",
        "error_codes": [int(description[6:].split(":")[0])] if description.startswith("AADSTS") else [],
        "trace_id": "0b1c2d3e-0000-4000-8000-000000000000",
        "correlation_id": "1f2e3d4c-0000-4000-8000-000000000000",
        "error_uri": "https://login.microsoftonline.com/error?code=7000215",
    }, status)


class FakeEntraID(ServedFake):
    """Issues tokens to one app registration (tenant, client id) for the client secrets in `secrets`; its `url` is
    what AZURE_AUTHORITY_HOST is set to."""

    def __init__(self, tenant_id: str, client_id: str, secrets: set[str] | tuple[str, ...], *,
                 expires_in: int = 3599, delay: float = 0.0):
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.secrets = set(secrets)
        self.expires_in = expires_in
        self.delay = delay  # seconds each token takes, to let concurrent callers pile up
        self.issued: list[str] = []
        self.scripted: list[Reply] = []  # answers for the next requests, before any check
        self.lock = threading.Lock()
        self.server = FakeServer(self.handle)

    @property
    def tokens_issued(self) -> int:
        return len(self.issued)

    def accepts(self, token: str | None) -> bool:
        with self.lock:
            return token is not None and token in self.issued

    def revoke(self) -> None:
        """Every token issued so far stops working (an app whose role assignment was removed)."""
        with self.lock:
            self.issued = [f"revoked-{i}" for i in range(len(self.issued))]

    def handle(self, request: RecordedRequest) -> Reply:
        if self.scripted:
            return self.scripted.pop(0)
        parts = request.path.strip("/").split("/")
        if request.method != "POST" or parts[1:] != ["oauth2", "v2.0", "token"]:
            return Reply.json({"error": "invalid_request", "error_description": "Unknown path."}, 404)
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return entra_error(400, "invalid_request", "AADSTS900144: The request body must contain the "
                                                       "following parameter: 'grant_type'.")
        form = {name: values[0] for name, values in parse_qs(request.body.decode()).items()}
        if parts[0] != self.tenant_id:
            return entra_error(400, "invalid_request", f"AADSTS90002: Tenant '{parts[0]}' not found. Check to "
                                                       "make sure you have the correct tenant ID.")
        if form.get("grant_type") != "client_credentials":
            return entra_error(400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported "
                                                              "grant type.")
        if form.get("scope") != SCOPE:
            return entra_error(400, "invalid_scope", f"AADSTS1002012: The provided value for scope "
                                                     f"{form.get('scope')} is not valid.")
        if form.get("client_id") != self.client_id:
            return entra_error(400, "unauthorized_client", f"AADSTS700016: Application with identifier "
                                                           f"'{form.get('client_id')}' was not found in the "
                                                           f"directory '{self.tenant_id}'.")
        if form.get("client_secret") not in self.secrets:
            return entra_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure "
                                                      "the secret being sent in the request is the client secret "
                                                      "value, not the client secret ID, for a secret added to app "
                                                      f"'{self.client_id}'.")
        token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + random.token_urlsafe(24) + "." + random.token_urlsafe(32)
        with self.lock:
            self.issued.append(token)
        reply = Reply.json({"token_type": "Bearer", "expires_in": self.expires_in,
                            "ext_expires_in": self.expires_in, "access_token": token})
        reply.delay = self.delay
        return reply
