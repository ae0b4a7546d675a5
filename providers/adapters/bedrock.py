"""Amazon Bedrock: chat through the Converse API, embeddings through InvokeModel (Titan and Cohere models).

Authentication: `access_key` connections sign every request with AWS Signature Version 4 (botocore's
signer, service `bedrock`, the connection's region; a session token is sent as `X-Amz-Security-Token`);
`api_key` connections send a Bedrock API key as `Authorization: Bearer`. The JSON body is serialized
here and sent as exactly the bytes that were signed.

Addresses: the runtime API is the connection's base_url or `https://bedrock-runtime.{region}.amazonaws.com`.
The Test action lists foundation models (`GET /foundation-models`, filtered to embedding models to keep the
answer small), signed the same way, on the control plane: `https://bedrock.{region}.amazonaws.com`, or,
with a base_url, that address with a `bedrock-runtime` host label turned into `bedrock` (VPC endpoints)
and otherwise as given (a proxy serving both). It needs `bedrock:ListFoundationModels` (in AWS's
Bedrock read-only and limited-access policies) and costs nothing.

Streams come in AWS's binary event-stream encoding, decoded with botocore's EventStreamBuffer as bytes
arrive, and go out as OpenAI chunks ending with `data: [DONE]`.
"""

import base64
import binascii
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from urllib.parse import quote, urlsplit, urlunsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from .. import errors
from ..account import Account
from ..errors import GatewayError
from ..upstream import TRANSPORT_ERRORS, UpstreamResponse
from . import anthropic, translate
from .base import Adapter, EventStream, Target, UpstreamCall, sse_bytes, validate_body

logger = logging.getLogger("gateway")

SERVICE = "bedrock"  # the SigV4 service name of both the runtime and the control plane
EVENT_STREAM = "application/vnd.amazon.eventstream"
COHERE_BATCH = 96  # texts per Cohere embed request, Bedrock's limit
# Claude on Bedrock (InvokeModel) takes Anthropic's Messages body with this version instead of model and stream.
ANTHROPIC_VERSION = "bedrock-2023-05-31"
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
    "tool_use": "tool_calls",
    "model_context_window_exceeded": "length",
}


class HideSigningDetails(logging.Filter):
    """botocore logs each canonical request (with the session token) at DEBUG: never let those through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("CanonicalRequest", "StringToSign", "Signature"))


logging.getLogger("botocore.auth").addFilter(HideSigningDetails())


def bad_request(message: str) -> GatewayError:
    return GatewayError(400, errors.INVALID_REQUEST, "invalid_body", message)


class BedrockAdapter(Adapter):
    """Amazon Bedrock with access keys (SigV4) or a Bedrock API key."""

    stream_types = (EVENT_STREAM,)

    async def invoke(self, account: Account, target: Target, body: object) -> dict | EventStream:
        """Chat through the shared pipeline; embeddings may take one call per text."""
        if target.task == "embeddings":
            return await self.embed(account, target, validate_body(target.task, body))
        return await super().invoke(account, target, body)

    async def build_call(self, account: Account, target: Target, body: dict) -> UpstreamCall:
        stream = bool(body.get("stream"))
        url = f"{account.base_url()}/model/{quote(target.model, safe='')}/"
        url += "converse-stream" if stream else "converse"
        return signed_call(account, "POST", url, converse_request(body), stream=stream)

    async def build_check_call(self, account: Account) -> UpstreamCall:
        url = f"{control_base(account)}/foundation-models?byOutputModality=EMBEDDING"
        return signed_call(account, "GET", url, None)

    def relay_stream(
        self, account: Account, target: Target, response: UpstreamResponse, *, include_usage: bool = False
    ) -> EventStream:
        """Converse streams come in AWS's event-stream encoding: translated as they arrive."""
        stream = ConverseStream(target.model, provider=account.label, name=account.name, include_usage=include_usage)
        return EventStream(response, stream.relay(response), account)

    # Anthropic's Messages API for Claude models (InvokeModel): the answer is Anthropic's own, and a stream's
    # events, which Bedrock wraps in its event-stream encoding, go out as Anthropic's server-sent events.
    native_apis = ("anthropic.messages",)
    native_failure_event = anthropic.AnthropicAdapter.native_failure_event

    async def build_forward_call(self, account: Account, target: Target, api: str, body: dict,
                                 headers: dict[str, str]) -> UpstreamCall:
        if "anthropic." not in target.model:
            raise GatewayError(400, errors.INVALID_REQUEST, "wrong_provider",
                               "Amazon Bedrock endpoints serve Anthropic's API only for Claude models (anthropic.*).")
        stream = body.get("stream") is True
        payload = {"anthropic_version": ANTHROPIC_VERSION,
                   **{name: value for name, value in body.items() if name not in ("model", "stream")}}
        betas = [beta.strip() for beta in headers.get("anthropic-beta", "").split(",") if beta.strip()]
        if betas:
            payload["anthropic_beta"] = betas
        url = f"{account.base_url()}/model/{quote(target.model, safe='')}/"
        url += "invoke-with-response-stream" if stream else "invoke"
        return signed_call(account, "POST", url, payload, stream=stream)

    def relay_native(self, account: Account, response: UpstreamResponse) -> EventStream:
        if response.media_type != EVENT_STREAM:
            response.close()
            raise errors.not_a_stream(account.label, response.media_type)
        return EventStream(response, native_events(response, provider=account.label, name=account.name), account)

    def parse_response(self, target: Target, document: object) -> dict:
        message = document.get("output", {}).get("message") if isinstance(document, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            raise errors.invalid_response("Amazon Bedrock")
        blocks = [block for block in message["content"] if isinstance(block, dict)]
        reasoning = [((block["reasoningContent"].get("reasoningText") or {}).get("text") or "")
                     for block in blocks if isinstance(block.get("reasoningContent"), dict)]
        return translate.chat_completion(
            model=target.model,
            content="".join(block["text"] for block in blocks if isinstance(block.get("text"), str)),
            finish_reason=STOP_REASONS.get(document.get("stopReason"), "stop"),
            usage_=usage_of(document.get("usage")),
            tool_calls=[tool_call(block["toolUse"]) for block in blocks if isinstance(block.get("toolUse"), dict)],
            reasoning_content="".join(text for text in reasoning if isinstance(text, str)),
        )

    async def embed(self, account: Account, target: Target, body: dict) -> dict:
        """Titan takes one text per request, Cohere a batch; either way one OpenAI embeddings list."""
        self.supports(account)
        inputs = translate.embedding_inputs(body["input"])
        if not inputs:
            raise bad_request("Amazon Bedrock embeddings take text: 'input' must be a string or a list of strings.")
        model = target.model
        url = f"{account.base_url()}/model/{quote(model, safe='')}/invoke"
        vectors: list[list[float]] = []
        tokens = 0
        if "amazon.titan-embed" in model:
            for text in inputs:
                payload: dict = {"inputText": text}
                if isinstance(body.get("dimensions"), int) and "v1" not in model:
                    payload["dimensions"] = body["dimensions"]
                document = await self.call_json(account, url, payload)
                vectors.append(document.get("embedding"))
                tokens += int(document.get("inputTextTokenCount") or 0)
        elif "cohere.embed" in model:
            for start in range(0, len(inputs), COHERE_BATCH):
                payload = {"texts": inputs[start:start + COHERE_BATCH], "input_type": "search_document"}
                embeddings = (await self.call_json(account, url, payload)).get("embeddings")
                vectors.extend(embeddings.get("float", []) if isinstance(embeddings, dict) else embeddings or [])
        else:
            raise bad_request(
                f"The gateway calls Bedrock embeddings models of Amazon Titan (amazon.titan-embed-*) and Cohere "
                f"(cohere.embed-*), not '{model}'."
            )
        if len(vectors) != len(inputs) or not all(isinstance(vector, list) for vector in vectors):
            raise errors.invalid_response("Amazon Bedrock")
        return translate.embeddings(model=model, vectors=vectors, usage_=translate.usage(tokens, 0))

    async def call_json(self, account: Account, url: str, payload: dict) -> dict:
        response = await self.send(account, signed_call(account, "POST", url, payload))
        try:
            document = response.json()
        except ValueError:
            raise errors.invalid_response("Amazon Bedrock") from None
        if not isinstance(document, dict):
            raise errors.invalid_response("Amazon Bedrock")
        return document


# --- Addresses and signing ------------------------------------------------------------------------------


def control_base(account: Account) -> str:
    """Where ListFoundationModels lives for this account (see the module's docstring)."""
    if not account.config.get("base_url"):
        return f"https://bedrock.{account.config_value('region')}.amazonaws.com"
    parts = urlsplit(account.base_url())
    labels = ["bedrock" if label == "bedrock-runtime" else label for label in parts.netloc.split(".")]
    return urlunsplit(parts._replace(netloc=".".join(labels)))


def signed_call(account: Account, method: str, url: str, payload: dict | None, *, stream: bool = False) -> UpstreamCall:
    """A request whose body bytes are fixed here, then signed (SigV4) or given the API key."""
    content = json.dumps(payload, separators=(",", ":")).encode() if payload is not None else None
    headers = {"Accept": EVENT_STREAM if stream else "application/json"}
    if content is not None:
        headers["Content-Type"] = "application/json"
    if account.method.id == "api_key":
        headers["Authorization"] = f"Bearer {account.secrets['api_key']}"
    else:
        headers = sigv4_headers(method, url, headers, content, account.secrets, account.config_value("region"))
    if stream:
        headers["Accept-Encoding"] = "identity"  # events are decoded as they arrive (not signed: may change)
    return UpstreamCall(method, url, headers, stream=stream, content=content)


def sigv4_headers(
    method: str, url: str, headers: dict[str, str], content: bytes | None, secrets: Mapping[str, str], region: str
) -> dict[str, str]:
    """`headers` plus X-Amz-Date, X-Amz-Security-Token (with a session token) and Authorization, by botocore."""
    credentials = Credentials(
        secrets["aws_access_key_id"], secrets["aws_secret_access_key"], secrets.get("aws_session_token") or None
    )
    request = AWSRequest(method=method, url=url, data=content or b"", headers=headers)
    SigV4Auth(credentials, SERVICE, region).add_auth(request)
    return dict(request.headers.items())


# --- OpenAI to Converse ---------------------------------------------------------------------------------


def converse_request(body: dict) -> dict:
    """An OpenAI chat body as a Converse request (system apart, alternating roles, inferenceConfig, tools)."""
    translate.refuse_options_not_carried(body, carried=("tools", "tool_choice"), provider="Amazon Bedrock")
    if body.get("tools") and body.get("tool_choice") == "none":
        # Converse's toolChoice is auto, any or one tool: the model could still call one of the tools sent.
        raise GatewayError(400, errors.INVALID_REQUEST, "unsupported_parameter",
                           "'tool_choice' \"none\" cannot be carried to Amazon Bedrock: leave the tools out instead.")
    system, rest = translate.split_system(body["messages"])
    request: dict = {"messages": converse_messages(rest)}
    if system:
        request["system"] = [{"text": system}]
    config = inference_config(body)
    if config:
        request["inferenceConfig"] = config
    tools = tool_config(body)
    if tools:
        request["toolConfig"] = tools
    return request


def converse_messages(messages: list[dict]) -> list[dict]:
    """Converse wants user and assistant turns alternating, starting with the user: consecutive ones merge."""
    turns: list[dict] = []
    for message in messages:
        role = message.get("role")
        if role in ("user", "tool"):
            speaker = "user"
        elif role == "assistant":
            speaker = "assistant"
        else:
            raise bad_request(f"Unknown message role '{role}' for Amazon Bedrock.")
        blocks = content_blocks(role, message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == speaker:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": speaker, "content": blocks})
    if not turns or turns[0]["role"] != "user":
        raise bad_request("Amazon Bedrock needs the conversation (after system messages) to start with a user message.")
    return turns


def content_blocks(role: str, message: dict) -> list[dict]:
    text = translate.text_of(message.get("content"))
    if role == "tool":
        return [{"toolResult": {"toolUseId": str(message.get("tool_call_id") or ""),
                                "content": [{"text": text or " "}]}}]
    blocks: list[dict] = [{"text": text}] if text.strip() else []
    calls = message.get("tool_calls") if role == "assistant" else None
    for call in calls if isinstance(calls, list) else []:
        if not isinstance(call, dict):
            raise bad_request("Each of an assistant message's 'tool_calls' must be an object.")
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            raise bad_request("A tool call's 'arguments' must be a JSON object.") from None
        blocks.append({"toolUse": {"toolUseId": str(call.get("id") or ""), "name": str(function.get("name") or ""),
                                   "input": arguments if isinstance(arguments, dict) else {}}})
    return blocks


def inference_config(body: dict) -> dict:
    config: dict = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(max_tokens, int):
        config["maxTokens"] = max_tokens
    if isinstance(body.get("temperature"), (int, float)):
        config["temperature"] = body["temperature"]
    if isinstance(body.get("top_p"), (int, float)):
        config["topP"] = body["top_p"]
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, list) and stop:
        config["stopSequences"] = [item for item in stop if isinstance(item, str)]
    return config


def tool_config(body: dict) -> dict:
    """OpenAI function tools as Converse toolSpecs; tool_choice auto/required/a named function."""
    tools = [
        {"toolSpec": {
            "name": tool["function"].get("name", ""),
            **({"description": tool["function"]["description"]} if tool["function"].get("description") else {}),
            "inputSchema": {"json": tool["function"].get("parameters") or {"type": "object", "properties": {}}},
        }}
        for tool in body.get("tools") or []
        if isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("function"), dict)
    ]
    if not tools:
        return {}
    config: dict = {"tools": tools}
    choice = body.get("tool_choice")
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        config["toolChoice"] = {"tool": {"name": choice["function"].get("name", "")}}
    return config


def usage_of(usage: object) -> dict:
    """Converse's usage as OpenAI's: cache reads and writes are prompt tokens, the total is Bedrock's."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = sum(int(usage.get(name) or 0) for name in ("inputTokens", "cacheReadInputTokens", "cacheWriteInputTokens"))
    return translate.usage(prompt, usage.get("outputTokens"), total_tokens=usage.get("totalTokens"),
                           cached_tokens=usage.get("cacheReadInputTokens"))


def tool_call(tool_use: dict) -> dict:
    return {"id": tool_use.get("toolUseId", ""), "type": "function",
            "function": {"name": tool_use.get("name", ""), "arguments": json.dumps(tool_use.get("input", {}))}}


# --- Converse stream to OpenAI chunks -------------------------------------------------------------------


class ConverseStream:
    """Translates one converse-stream answer's events into OpenAI chunks, in order, as they arrive."""

    def __init__(self, model: str, *, provider: str, name: str, include_usage: bool = False):
        self.model = model
        self.provider = provider
        self.name = name
        self.include_usage = include_usage
        self.id = translate.completion_id()
        self.created = int(time.time())
        # messageStop and metadata come in either order: the finish chunk waits for the end of the stream.
        self.finish_reason: str | None = None
        self.usage: dict | None = None
        self.tool_indexes: dict[int, int] = {}  # Converse content block index -> OpenAI tool call index
        self.without_arguments: set[int] = set()  # tool calls whose arguments have not arrived yet

    async def relay(self, response: UpstreamResponse) -> AsyncIterator[bytes]:
        buffer = EventStreamBuffer()
        failed = True
        try:
            async for data in response.iter_bytes():
                buffer.add_data(data)
                for message in buffer:
                    for chunk in self.translate(message):
                        yield chunk
            failed = False
        except GatewayError as failure:  # an exception event from Bedrock
            logger.warning("Connection %s: the stream ended with %s", self.name, failure.code)
            yield translate.sse(failure.body())
        except ParserError as error:
            logger.warning("Connection %s: unreadable event stream (%s)", self.name, type(error).__name__)
            yield translate.sse(GatewayError(
                502, errors.UPSTREAM, "upstream_invalid_response", f"{self.provider} sent an unreadable event stream."
            ).body())
        except TRANSPORT_ERRORS as error:
            failure = errors.from_transport_error(error, provider=self.provider)
            logger.warning("Connection %s: the stream broke off: %s", self.name, failure.code)
            yield translate.sse(failure.body())
        finally:
            response.close()
        if not failed and (self.finish_reason is not None or self.usage is not None):
            yield self.chunk({}, finish_reason=self.finish_reason or "stop")
            if self.include_usage:
                yield translate.usage_chunk(id_=self.id, model=self.model, created=self.created,
                                            usage_=self.usage or translate.usage(0, 0))
        yield translate.DONE

    def translate(self, message: EventStreamMessage) -> Iterator[bytes]:
        headers = message.headers
        if headers.get(":message-type") == "exception":
            raise stream_exception(headers.get(":exception-type", ""), message.payload, self.provider)
        if headers.get(":message-type") == "error":
            raise GatewayError(502, errors.UPSTREAM, "upstream_error",
                               f"{self.provider} ended the stream with {headers.get(':error-code', 'an error')}.")
        event = headers.get(":event-type")
        try:
            payload = json.loads(message.payload or b"{}")
        except ValueError:
            raise ParserError("payload is not JSON") from None
        if event == "messageStart":
            yield self.chunk({"role": "assistant", "content": ""})
        elif event == "contentBlockStart":
            tool_use = (payload.get("start") or {}).get("toolUse")
            if isinstance(tool_use, dict):
                index = self.tool_indexes.setdefault(payload.get("contentBlockIndex", 0), len(self.tool_indexes))
                self.without_arguments.add(index)
                yield self.chunk({"tool_calls": [{"index": index, "id": tool_use.get("toolUseId", ""),
                                                  "type": "function",
                                                  "function": {"name": tool_use.get("name", ""), "arguments": ""}}]})
        elif event == "contentBlockDelta":
            delta = payload.get("delta") or {}
            if isinstance(delta.get("text"), str):
                yield self.chunk({"content": delta["text"]})
            elif isinstance(delta.get("toolUse"), dict):
                index = self.tool_indexes.get(payload.get("contentBlockIndex", 0), 0)
                arguments = delta["toolUse"].get("input", "")
                if arguments:
                    self.without_arguments.discard(index)
                    yield self.chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})
            elif isinstance(delta.get("reasoningContent"), dict) and delta["reasoningContent"].get("text"):
                yield self.chunk({"reasoning_content": delta["reasoningContent"]["text"]})
        elif event == "contentBlockStop":
            index = self.tool_indexes.get(payload.get("contentBlockIndex", 0))
            if index in self.without_arguments:  # a tool without parameters: OpenAI's arguments are still JSON
                self.without_arguments.discard(index)
                yield self.chunk({"tool_calls": [{"index": index, "function": {"arguments": "{}"}}]})
        elif event == "messageStop":
            self.finish_reason = STOP_REASONS.get(payload.get("stopReason"), "stop")
        elif event == "metadata":
            self.usage = usage_of(payload.get("usage"))

    def chunk(self, delta: dict, *, finish_reason: str | None = None, usage_: dict | None = None) -> bytes:
        return translate.chunk(id_=self.id, model=self.model, created=self.created, delta=delta,
                               finish_reason=finish_reason, usage_=usage_)


async def native_events(response: UpstreamResponse, *, provider: str, name: str) -> AsyncIterator[bytes]:
    """InvokeModel's response stream (each `chunk` event holding one Anthropic event, base64'd) as Anthropic's
    server-sent events; an exception ends it with Anthropic's error event."""
    buffer = EventStreamBuffer()
    try:
        async for data in response.iter_bytes():
            buffer.add_data(data)
            for message in buffer:
                headers = message.headers
                if headers.get(":message-type") == "exception":
                    raise stream_exception(headers.get(":exception-type", ""), message.payload, provider)
                if headers.get(":message-type") == "error":
                    raise GatewayError(502, errors.UPSTREAM, "upstream_error",
                                       f"{provider} ended the stream with {headers.get(':error-code', 'an error')}.")
                if headers.get(":event-type") != "chunk":
                    continue
                event = json.loads(base64.b64decode(json.loads(message.payload)["bytes"]))
                yield f"event: {event.get('type', 'message')}\n".encode() + sse_bytes(event)
    except GatewayError as failure:
        logger.warning("Connection %s: the stream ended with %s", name, failure.code)
        yield anthropic.AnthropicAdapter.native_failure_event(None, failure)
    except (ParserError, ValueError, KeyError, TypeError, binascii.Error) as error:
        logger.warning("Connection %s: unreadable event stream (%s)", name, type(error).__name__)
        yield anthropic.AnthropicAdapter.native_failure_event(None, GatewayError(
            502, errors.UPSTREAM, "upstream_invalid_response", f"{provider} sent an unreadable event stream."))
    except TRANSPORT_ERRORS as error:
        failure = errors.from_transport_error(error, provider=provider)
        logger.warning("Connection %s: the stream broke off: %s", name, failure.code)
        yield anthropic.AnthropicAdapter.native_failure_event(None, failure)
    finally:
        response.close()


def stream_exception(kind: str, payload: bytes, provider: str) -> GatewayError:
    """An exception event inside a stream, mapped as the same error would be before it."""
    message, _ = errors.provider_error_parts(payload or b"")
    message = errors.safe_message(message, ())
    status = {"throttlingException": 429, "validationException": 400, "modelTimeoutException": 408}.get(kind, 500)
    name = kind[:1].upper() + kind[1:]
    return errors.map_status(status, {}, message, name, provider=provider)
