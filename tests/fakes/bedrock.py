"""A fake Amazon Bedrock: Converse, ConverseStream (real event-stream encoding), InvokeModel embeddings for
Titan and Cohere, ListFoundationModels, and Bedrock's error shapes.

Authentication is checked as AWS does: a SigV4 `Authorization` header is verified by recomputing the
signature with botocore from the known test credentials, the X-Amz-Date (within 5 minutes) and the
headers the request says it signed; a session token must match. `Authorization: Bearer <key>` is
accepted for the Bedrock API keys in `api_keys`. Errors are `{"message"}` with an `x-amzn-ErrorType` header.
"""

import base64
import datetime
import hmac
import itertools
import json
import re
import struct
import threading
import zlib
from collections import deque
from collections.abc import Iterator
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .server import FakeServer, RecordedRequest, Reply, ServedFake

ACCESS_KEY_ID = "AKIAFAKEBEDROCK12345"
REGION = "us-east-1"
MODEL_PATH = re.compile(r"/model/(?P<model>[^/]+)/(?P<action>converse|converse-stream|invoke|invoke-with-response-stream)")
CONTENT = ["Hel", "lo", " from", " the", " fake"]
SIGNATURE_MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your "
                      "AWS Secret Access Key and signing method. Consult the service documentation for details.")
INVALID_TOKEN = "The security token included in the request is invalid."


def aws_error(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply.json({"message": message}, status, {
        "x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        "x-amzn-RequestId": "11111111-2222-3333-4444-555555555555", **(headers or {}),
    })


def event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One message of AWS's event-stream encoding: prelude, its CRC, string headers, payload, message CRC."""
    encoded = b"".join(
        struct.pack(">B", len(name)) + name.encode() + b"\x07" + struct.pack(">H", len(value.encode())) + value.encode()
        for name, value in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(event_type: str, document: dict) -> bytes:
    return event_message({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                         json.dumps(document).encode())


def exception_event(exception_type: str, message: str) -> bytes:
    return event_message({":exception-type": exception_type, ":content-type": "application/json",
                          ":message-type": "exception"}, json.dumps({"message": message}).encode())


class FakeBedrock(ServedFake):
    """One fake Bedrock region; the credentials it accepts can be changed by tests (rotation, revocation)."""

    def __init__(self, *, secret_access_key: str, access_key_id: str = ACCESS_KEY_ID, session_token: str | None = None,
                 api_keys: set[str] | tuple[str, ...] = (), region: str = REGION):
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token
        self.api_keys = set(api_keys)
        self.region = region
        self.scripted: deque[Reply] = deque()
        self.stream_gate: threading.Event | None = None  # when set, a stream waits for it after its first delta
        self.stream_exception: tuple[str, str] | None = None  # sent after the first delta instead of the rest
        self.reply_content: list[dict] = [{"text": "".join(CONTENT)}]
        self.stop_reason = "end_turn"
        self.server = FakeServer(self.handle)

    def fail(self, status: int, error_type: str, message: str, *, headers: dict[str, str] | None = None,
             times: int = 1) -> None:
        """Answer the next `times` authenticated requests with an error in Bedrock's shape."""
        for _ in range(times):
            self.scripted.append(aws_error(status, error_type, message, headers))

    # --- Serving --------------------------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Reply:
        refused = self.authenticate(request)
        if refused is not None:
            return refused
        if self.scripted:
            return self.scripted.popleft()
        if request.method == "GET" and request.path == "/foundation-models":
            return Reply.json({"modelSummaries": [
                {"modelId": "amazon.titan-embed-text-v2:0", "providerName": "Amazon",
                 "outputModalities": ["EMBEDDING"]},
                {"modelId": "cohere.embed-english-v3", "providerName": "Cohere", "outputModalities": ["EMBEDDING"]},
            ]})
        match = MODEL_PATH.fullmatch(request.path)
        if request.method != "POST" or match is None:
            return aws_error(404, "UnknownOperationException", "")
        model, action = unquote(match["model"]), match["action"]
        try:
            body = request.json()
        except ValueError:
            return aws_error(400, "SerializationException", "The request body is not valid JSON.")
        if model.startswith("anthropic.") and action.startswith("invoke"):
            return self.claude(model, action, body)
        if action == "invoke":
            return self.embeddings(model, body)
        problem = converse_problem(body)
        if problem:
            return aws_error(400, "ValidationException", problem)
        if action == "converse-stream":
            return Reply(200, {"Content-Type": "application/vnd.amazon.eventstream"}, chunks=self.stream_events())
        return Reply.json({
            "output": {"message": {"role": "assistant", "content": self.reply_content}},
            "stopReason": self.stop_reason,
            "usage": {"inputTokens": 12, "outputTokens": 5, "totalTokens": 17},
            "metrics": {"latencyMs": 42},
        })

    def claude(self, model: str, action: str, body: dict) -> Reply:
        """InvokeModel for Claude: Anthropic's Messages body with Bedrock's anthropic_version, no model."""
        if body.get("anthropic_version") != "bedrock-2023-05-31" or "model" in body or "stream" in body:
            return aws_error(400, "ValidationException", "Malformed input request: extraneous key or version")
        if action == "invoke-with-response-stream":
            message = {"id": "msg_bdrk_01", "type": "message", "role": "assistant", "model": model, "content": [],
                       "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 1}}
            events = [{"type": "message_start", "message": message},
                      {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                      *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
                        for piece in CONTENT),
                      {"type": "content_block_stop", "index": 0},
                      {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                       "usage": {"output_tokens": 5}},
                      {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 12}}]
            return Reply(200, {"Content-Type": "application/vnd.amazon.eventstream"}, chunks=(
                event("chunk", {"bytes": base64.b64encode(json.dumps(document).encode()).decode()})
                for document in events))
        return Reply.json({"id": "msg_bdrk_01", "type": "message", "role": "assistant", "model": model,
                           "content": [{"type": "text", "text": "".join(CONTENT)}], "stop_reason": "end_turn",
                           "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 5}})

    def authenticate(self, request: RecordedRequest) -> Reply | None:
        authorization = request.headers.get("authorization", "")
        if authorization.startswith("Bearer "):
            if authorization[7:] in self.api_keys:
                return None
            return aws_error(403, "UnrecognizedClientException", INVALID_TOKEN)
        if authorization.startswith("AWS4-HMAC-SHA256 "):
            return self.verify_signature(request, authorization[17:])
        return aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")

    def verify_signature(self, request: RecordedRequest, authorization: str) -> Reply | None:
        try:
            fields = dict(part.strip().split("=", 1) for part in authorization.split(","))
            access_key_id, date, region, service, terminator = fields["Credential"].split("/")
            signed = fields["SignedHeaders"].split(";")
            amz_date = request.headers["x-amz-date"]
            when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
        except (KeyError, ValueError):
            return aws_error(403, "IncompleteSignatureException", "Authorization header requires 'Credential', "
                                                                  "'Signature' and 'SignedHeaders' parameters.")
        if access_key_id != self.access_key_id:
            return aws_error(403, "UnrecognizedClientException", INVALID_TOKEN)
        if (date, region, service, terminator) != (amz_date[:8], self.region, "bedrock", "aws4_request"):
            return aws_error(403, "InvalidSignatureException", "Credential should be scoped to a valid region.")
        if abs((datetime.datetime.now(datetime.UTC) - when).total_seconds()) > 300:
            return aws_error(403, "InvalidSignatureException", "Signature expired.")
        if not {"host", "x-amz-date"} <= set(signed) or any(name not in request.headers for name in signed):
            return aws_error(403, "InvalidSignatureException", SIGNATURE_MISMATCH)
        if self.session_token is not None and (
            request.headers.get("x-amz-security-token") != self.session_token or "x-amz-security-token" not in signed
        ):
            return aws_error(403, "UnrecognizedClientException", INVALID_TOKEN)
        # Recompute what the client should have signed, from what arrived.
        aws_request = AWSRequest(method=request.method, url=f"http://{request.headers['host']}{request.target}",
                                 data=request.body, headers={name: request.headers[name] for name in signed})
        aws_request.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(self.access_key_id, self.secret_access_key, self.session_token),
                           "bedrock", self.region)
        expected = signer.signature(signer.string_to_sign(aws_request, signer.canonical_request(aws_request)),
                                    aws_request)
        if not hmac.compare_digest(expected, fields.get("Signature", "")):
            return aws_error(403, "InvalidSignatureException", SIGNATURE_MISMATCH)
        return None

    def embeddings(self, model: str, body: dict) -> Reply:
        if "amazon.titan-embed" in model:
            if set(body) - {"inputText", "dimensions", "normalize"} or not isinstance(body.get("inputText"), str):
                return aws_error(400, "ValidationException", "Malformed input request, please reformat your input.")
            return Reply.json({"embedding": [0.5, -0.25, float(len(body["inputText"]))],
                               "inputTextTokenCount": len(body["inputText"].split())})
        if "cohere.embed" in model:
            texts = body.get("texts")
            if not isinstance(texts, list) or body.get("input_type") not in ("search_document", "search_query"):
                return aws_error(400, "ValidationException", "Malformed input request: required key [input_type].")
            return Reply.json({"id": "emb-1", "response_type": "embeddings_floats", "texts": texts,
                               "embeddings": [[0.1, 0.2, float(i)] for i in range(len(texts))]})
        return aws_error(400, "ValidationException", "The provided model doesn't support embeddings.")

    def stream_events(self) -> Iterator[bytes]:
        yield event("messageStart", {"role": "assistant", "p": "abcd"})
        for position, piece in enumerate(CONTENT):
            yield event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}, "p": "abcdefgh"})
            if position == 0 and self.stream_gate is not None:
                self.stream_gate.wait(10)
            if position == 0 and self.stream_exception is not None:
                yield exception_event(*self.stream_exception)
                return
        yield event("contentBlockStop", {"contentBlockIndex": 0, "p": "ab"})
        yield event("messageStop", {"stopReason": self.stop_reason, "p": "abc"})
        yield event("metadata", {"usage": {"inputTokens": 12, "outputTokens": 5, "totalTokens": 17},
                                 "metrics": {"latencyMs": 40}, "p": "abcdef"})


def converse_problem(body: dict) -> str:
    """What Converse's validation would refuse in a request body, or ""."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "The messages field is required."
    if set(body) - {"messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields"}:
        return f"Unknown fields: {sorted(set(body) - {'messages', 'system', 'inferenceConfig', 'toolConfig'})}."
    if messages[0].get("role") != "user":
        return "A conversation must start with a user message. Try again with a conversation that starts with a " \
               "user message."
    for before, after in itertools.pairwise(messages):
        if before.get("role") == after.get("role"):
            return "A conversation must alternate between user and assistant roles. Make sure the conversation " \
                   "alternates between user and assistant roles and try again."
    for message in messages:
        for block in message.get("content") or [None]:
            if not isinstance(block, dict) or ("text" in block and not str(block["text"]).strip()):
                return "The text field in the ContentBlock object is blank. Add text to the text field, and try again."
    return ""
