"""A fake Google OAuth token service: the JWT-bearer grant of service account keys, verified for real.

`POST /token` with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and an `assertion` JWT: the
signature must verify with the public key of a service account the fake knows (`accept`), `iss` must be
its client_email and `aud` the token URL. It answers `{"access_token", "expires_in", "token_type"}` and
remembers what it issued, so a fake provider can check the Bearer tokens it receives (`valid`).
"""

import base64
import json
import threading
import time
import uuid
from collections import deque
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .server import FakeServer, RecordedRequest, Reply, ServedFake

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def make_service_account(token_uri: str, *, email: str = "gateway@my-project-123.iam.gserviceaccount.com",
                         private_key_id: str = "0123456789abcdef0123456789abcdef01234567") -> dict:
    """A service account key file's JSON with a freshly generated RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "my-project-123",
        "private_key_id": private_key_id,
        "private_key": pem,
        "client_email": email,
        "client_id": "123456789012345678901",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeGoogleToken(ServedFake):
    """Issues access tokens to the service accounts it accepts; counts them."""

    def __init__(self, *, expires_in: int = 3599):
        self.expires_in = expires_in
        self.public_keys: dict[str, list] = {}  # client_email -> accepted public keys
        self.issued: dict[str, float] = {}  # access token -> expiry (monotonic)
        self.scripted: deque = deque()
        self.lock = threading.Lock()
        self.server = FakeServer(self.handle)

    @property
    def token_uri(self) -> str:
        return f"{self.server.url}/token"

    @property
    def issued_count(self) -> int:
        return len(self.issued)

    def accept(self, service_account: dict) -> None:
        """Trust the key of this service account (as Google does once the key is created)."""
        private_key = serialization.load_pem_private_key(service_account["private_key"].encode(), password=None)
        self.public_keys.setdefault(service_account["client_email"], []).append(private_key.public_key())

    def revoke_all(self) -> None:
        """Every key deleted: no assertion verifies any more."""
        self.public_keys.clear()

    def valid(self, token: str) -> bool:
        with self.lock:
            expiry = self.issued.get(token)
        return expiry is not None and expiry > time.monotonic()

    def fail(self, status: int, body: dict, times: int = 1) -> None:
        for _ in range(times):
            self.scripted.append((status, body))

    # --- Serving --------------------------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or request.path != "/token":
            return Reply.json({"error": "not_found"}, 404)
        if self.scripted:
            status, body = self.scripted.popleft()
            return Reply.json(body, status)
        if request.headers.get("content-type") != "application/x-www-form-urlencoded":
            return Reply.json({"error": "invalid_request", "error_description": "Form encoding expected."}, 400)
        form = {name: values[0] for name, values in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != JWT_BEARER:
            return Reply.json({"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}, 400)
        problem = self.verify(form.get("assertion", ""))
        if problem:
            return Reply.json({"error": "invalid_grant", "error_description": problem}, 400)
        token = f"ya29.fake-{uuid.uuid4().hex}"
        with self.lock:
            self.issued[token] = time.monotonic() + self.expires_in
        return Reply.json({"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"})

    def verify(self, assertion: str) -> str:
        """Why the assertion is refused, or "" when it is a valid grant for a known service account."""
        try:
            header_b64, payload_b64, signature_b64 = assertion.split(".")
            header = json.loads(b64url_decode(header_b64))
            claims = json.loads(b64url_decode(payload_b64))
            signature = b64url_decode(signature_b64)
        except ValueError:
            return "Malformed JWT."
        if header.get("alg") != "RS256":
            return "Unsupported JWT algorithm."
        keys = self.public_keys.get(claims.get("iss"), [])
        signed = f"{header_b64}.{payload_b64}".encode()
        for key in keys:
            try:
                key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
                break
            except InvalidSignature:
                continue
        else:
            return "Invalid JWT Signature."
        if claims.get("aud") != self.token_uri:
            return "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe."
        if not (claims.get("iat", 0) - 60 <= time.time() < claims.get("exp", 0)):
            return "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe."
        if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
            return "Invalid OAuth scope or ID token audience provided."
        return ""
