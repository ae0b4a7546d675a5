"""Anthropic's Messages API, translated to and from OpenAI's chat format (chat only: Anthropic has no embeddings).

Requests: system and developer messages become `system`, tools and tool results become Anthropic's blocks,
`stop` becomes `stop_sequences`, and `max_tokens` (required by Anthropic) defaults to DEFAULT_MAX_TOKENS.
Answers: text blocks joined into `content`, tool_use blocks into `tool_calls`, stop reasons and usage mapped.
Streams are translated event by event as they arrive.
"""

import json
from collections.abc import Iterator

from ..account import Account
from ..errors import GatewayError
from ..upstream import UpstreamResponse
from . import translate
from .base import Adapter, EventStream, Target, UpstreamCall, accept_headers, sse_bytes

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "pause_turn": "stop", "refusal": "content_filter", "model_context_window_exceeded": "length"}
PASSED_AS_IS = ("temperature", "top_p", "top_k")
CARRIED_OPTIONS = ("tools", "tool_choice", "parallel_tool_calls")  # of translate.ANSWER_OPTIONS; the others are refused
# The Messages API's own routes, forwarded as they are (the caller's Anthropic SDK, our token for the key).
NATIVE_PATHS = {"anthropic.messages": "/v1/messages", "anthropic.count_tokens": "/v1/messages/count_tokens"}
NATIVE_HEADERS = ("anthropic-version", "anthropic-beta")
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error"}


class AnthropicAdapter(Adapter):
    """Anthropic with an API key (`x-api-key`), at its public address or a connection's base_url."""

    async def build_call(self, account: Account, target: Target, body: dict) -> UpstreamCall:
        stream = bool(body.get("stream"))
        headers = self.auth_headers(account.secrets)
        headers.update(accept_headers(stream))
        url = f"{account.base_url()}/v1/messages"
        return UpstreamCall("POST", url, headers, messages_request(target.model, body), stream=stream)

    async def build_check_call(self, account: Account) -> UpstreamCall:
        headers = {**self.auth_headers(account.secrets), "Accept": "application/json"}
        return UpstreamCall("GET", f"{account.base_url()}/v1/models", headers, params={"limit": "1"})

    @staticmethod
    def auth_headers(secrets: dict[str, str]) -> dict[str, str]:
        return {"x-api-key": secrets["api_key"], "anthropic-version": API_VERSION}

    native_apis = tuple(NATIVE_PATHS)

    async def build_forward_call(self, account: Account, target: Target, api: str, body: dict,
                                 headers: dict[str, str]) -> UpstreamCall:
        stream = body.get("stream") is True
        passed = {name: value for name, value in headers.items() if name in NATIVE_HEADERS}
        call_headers = {**self.auth_headers(account.secrets), **passed, **accept_headers(stream)}
        return UpstreamCall("POST", f"{account.base_url()}{NATIVE_PATHS[api]}", call_headers, body, stream=stream)

    def native_failure_event(self, failure: GatewayError) -> bytes:
        return b"event: error\n" + sse_bytes(error_document(failure))

    def parse_response(self, target: Target, document: object) -> dict:
        document = super().parse_response(target, document)
        blocks = [block for block in document.get("content") or [] if isinstance(block, dict)]
        tool_calls = [
            openai_tool_call(block)
            for block in blocks
            if block.get("type") == "tool_use"
        ]
        return translate.chat_completion(
            model=document.get("model") or target.model,
            content="".join(block.get("text", "") for block in blocks if block.get("type") == "text"),
            finish_reason=finish_reason(document.get("stop_reason")),
            usage_=usage_of(document.get("usage")),
            id_=document.get("id"),
            tool_calls=tool_calls,
            reasoning_content="".join(block.get("thinking", "") for block in blocks if block.get("type") == "thinking"),
        )

    def relay_stream(
        self, account: Account, target: Target, response: UpstreamResponse, *, include_usage: bool = False
    ) -> EventStream:
        chunks = StreamTranslation(account, include_usage=include_usage).chunks(response)
        return EventStream(
            response, translate.relay_translated(response, chunks, provider=account.label, name=account.name), account
        )


def error_document(error: GatewayError) -> dict:
    """A gateway error in Anthropic's shape, so that the Anthropic SDK reads it as Anthropic's own."""
    return {"type": "error", "error": {"type": ERROR_TYPES.get(error.status, "api_error"), "message": error.message}}


# --- Requests -------------------------------------------------------------------------------------------


def messages_request(model: str, body: dict) -> dict:
    """An OpenAI chat body as an Anthropic Messages body."""
    translate.refuse_options_not_carried(body, carried=CARRIED_OPTIONS, provider="Anthropic")
    system, conversation = translate.split_system(body["messages"])
    request: dict = {
        "model": model,
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS,
        "messages": anthropic_messages(conversation),
    }
    if system:
        request["system"] = system
    for name in PASSED_AS_IS:
        if body.get(name) is not None:
            request[name] = body[name]
    stop = body.get("stop")
    if stop:
        request["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("stream"):
        request["stream"] = True
    if body.get("tools"):
        request["tools"] = [anthropic_tool(tool) for tool in body["tools"] if isinstance(tool, dict)]
        choice = anthropic_tool_choice(body.get("tool_choice"))
        if body.get("parallel_tool_calls") is False and (choice or {}).get("type") != "none":
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if choice:
            request["tool_choice"] = choice
    if isinstance(body.get("user"), str):
        request["metadata"] = {"user_id": body["user"]}
    return request


def anthropic_messages(messages: list[dict]) -> list[dict]:
    """OpenAI user/assistant/tool messages as Anthropic turns; consecutive turns of one role are merged."""
    turns: list[dict] = []
    for message in messages:
        role = "assistant" if message.get("role") == "assistant" else "user"
        blocks = content_blocks(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = as_blocks(turns[-1]["content"]) + as_blocks(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def content_blocks(message: dict) -> str | list[dict]:
    """One OpenAI message's content in Anthropic's form: a string when it is plain text, else blocks."""
    if message.get("role") == "tool":
        return [{"type": "tool_result", "tool_use_id": message.get("tool_call_id", ""),
                 "content": translate.text_of(message.get("content"))}]
    content = message.get("content")
    blocks: list[dict] = []
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text":
                blocks.append({"type": "text", "text": part.get("text", "")})
            elif part.get("type") == "image_url":
                image = image_block(part.get("image_url"))
                if image:
                    blocks.append(image)
    elif isinstance(content, str) and content:
        blocks.append({"type": "text", "text": content})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": call.get("id", ""), "name": function.get("name", ""),
                       "input": tool_input(function.get("arguments"))})
    if len(blocks) == 1 and blocks[0]["type"] == "text":
        return blocks[0]["text"]
    return blocks


def as_blocks(content: str | list[dict]) -> list[dict]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def image_block(image_url: object) -> dict | None:
    """An OpenAI image part (a data URL or an https URL) as an Anthropic image block."""
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str):
        return None
    if url.startswith("data:") and ";base64," in url:
        media_type, _, data = url[5:].partition(";base64,")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def tool_input(arguments: object) -> dict:
    """OpenAI's tool-call arguments (a JSON string) as Anthropic's `input` object."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def anthropic_tool(tool: dict) -> dict:
    function = tool.get("function") or {}
    spec = {"name": function.get("name", ""),
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
    if function.get("description"):
        spec["description"] = function["description"]
    return spec


def anthropic_tool_choice(choice: object) -> dict | None:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"type": "tool", "name": choice["function"].get("name", "")}
    return None


# --- Answers --------------------------------------------------------------------------------------------


def finish_reason(stop_reason: object) -> str | None:
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(str(stop_reason), "stop")


def usage_of(usage: object, output_tokens: int | None = None) -> dict | None:
    """Anthropic usage as OpenAI's; cached input counts as prompt tokens, as OpenAI counts it."""
    if not isinstance(usage, dict):
        return None
    prompt = sum(int(usage.get(name) or 0) for name in
                 ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    return translate.usage(prompt, usage.get("output_tokens") if output_tokens is None else output_tokens,
                           cached_tokens=usage.get("cache_read_input_tokens"))


def openai_tool_call(block: dict) -> dict:
    return {"id": block.get("id", ""), "type": "function",
            "function": {"name": block.get("name", ""), "arguments": json.dumps(block.get("input") or {})}}


class StreamTranslation(translate.ChunkWriter):
    """Anthropic's stream events as OpenAI chunks, one translation per stream."""

    def __init__(self, account: Account, *, include_usage: bool = False):
        super().__init__(include_usage=include_usage)
        self.account = account
        self.input_usage: dict = {}
        self.tool_indexes: dict[int, int] = {}  # Anthropic block index -> OpenAI tool call index
        self.without_arguments: set[int] = set()  # tool calls whose arguments have not arrived yet

    def translate(self, kind: str, document: dict) -> Iterator[bytes]:
        if kind == "message_start":
            message = document.get("message") or {}
            self.id = message.get("id") or self.id
            self.model = message.get("model") or ""
            self.input_usage = message.get("usage") or {}
            yield self.chunk({"role": "assistant", "content": ""})
        elif kind == "content_block_start":
            block = document.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self.tool_indexes.setdefault(document.get("index", 0), len(self.tool_indexes))
                self.without_arguments.add(index)
                yield self.chunk({"tool_calls": [{"index": index, "id": block.get("id", ""), "type": "function",
                                                  "function": {"name": block.get("name", ""), "arguments": ""}}]})
        elif kind == "content_block_delta":
            delta = document.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                yield self.chunk({"content": delta["text"]})
            elif delta.get("type") == "thinking_delta" and delta.get("thinking"):
                yield self.chunk({"reasoning_content": delta["thinking"]})
            elif delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                index = self.tool_indexes.get(document.get("index", 0), 0)
                self.without_arguments.discard(index)
                yield self.chunk({"tool_calls": [{"index": index,
                                                  "function": {"arguments": delta["partial_json"]}}]})
        elif kind == "content_block_stop":
            index = self.tool_indexes.get(document.get("index", 0))
            if index in self.without_arguments:  # a tool without parameters: OpenAI's arguments are still JSON
                self.without_arguments.discard(index)
                yield self.chunk({"tool_calls": [{"index": index, "function": {"arguments": "{}"}}]})
        elif kind == "message_delta":
            delta = document.get("delta") or {}
            output = (document.get("usage") or {}).get("output_tokens")
            yield from self.finish(finish_reason(delta.get("stop_reason")) or "stop",
                                   usage_of({**self.input_usage, **(document.get("usage") or {})}, output))
        elif kind == "error":
            error = document.get("error") or {}
            message = error.get("message") if isinstance(error, dict) else None
            yield translate.error_event(str(message or error), provider=self.account.label,
                                        secrets=self.account.values_to_redact())
