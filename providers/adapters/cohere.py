"""Cohere's v2 API, translated to and from OpenAI's chat and embeddings formats.

Chat (`/v2/chat`) takes OpenAI-like messages and tools; only parameter names (`p`, `stop_sequences`),
finish reasons, usage and the answer's content blocks differ. Embeddings (`/v2/embed`) take `texts` and
answer `embeddings.float`. Streams are translated event by event as they arrive.
"""

from collections.abc import Iterator

from .. import errors
from ..account import Account
from ..upstream import UpstreamResponse
from . import translate
from .base import Adapter, EventStream, Target, UpstreamCall, accept_headers

FINISH_REASONS = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls"}
RENAMED = {"top_p": "p", "seed": "seed", "temperature": "temperature", "frequency_penalty": "frequency_penalty",
           "presence_penalty": "presence_penalty"}
TOOL_CHOICES = {"required": "REQUIRED", "none": "NONE"}
EMBED_INPUT_TYPE = "search_document"


class CohereAdapter(Adapter):
    """Cohere with an API key (Bearer), at its public address or a connection's base_url."""

    async def build_call(self, account: Account, target: Target, body: dict) -> UpstreamCall:
        stream = bool(body.get("stream"))
        headers = self.auth_headers(account.secrets)
        headers.update(accept_headers(stream))
        if target.task == "embeddings":
            url = f"{account.base_url()}/v2/embed"
            return UpstreamCall("POST", url, headers, embed_request(target.model, body))
        return UpstreamCall("POST", f"{account.base_url()}/v2/chat", headers, chat_request(target.model, body),
                            stream=stream)

    async def build_check_call(self, account: Account) -> UpstreamCall:
        headers = {**self.auth_headers(account.secrets), "Accept": "application/json"}
        return UpstreamCall("GET", f"{account.base_url()}/v1/models", headers, params={"page_size": "1"})

    @staticmethod
    def auth_headers(secrets: dict[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {secrets['api_key']}"}

    def parse_response(self, target: Target, document: object) -> dict:
        document = super().parse_response(target, document)
        if target.task == "embeddings":
            vectors = (document.get("embeddings") or {}).get("float") or []
            billed = ((document.get("meta") or {}).get("billed_units") or {}).get("input_tokens")
            return translate.embeddings(model=target.model, vectors=vectors, usage_=translate.usage(billed, 0))
        message = document.get("message") or {}
        tool_calls = message.get("tool_calls") or None
        content = message.get("content")
        thinking = "".join(item.get("thinking") or "" for item in content if isinstance(item, dict)
                           and item.get("type") == "thinking") if isinstance(content, list) else ""
        return translate.chat_completion(
            model=target.model,
            content=translate.text_of(content),  # tool_plan is Cohere's narration of its calls, not the answer
            finish_reason=finish_reason(document.get("finish_reason"), bool(tool_calls)),
            usage_=usage_of(document.get("usage")),
            id_=document.get("id"),
            tool_calls=tool_calls,
            reasoning_content=thinking,
        )

    def relay_stream(
        self, account: Account, target: Target, response: UpstreamResponse, *, include_usage: bool = False
    ) -> EventStream:
        chunks = StreamTranslation(account, target.model, include_usage=include_usage).chunks(response)
        return EventStream(
            response, translate.relay_translated(response, chunks, provider=account.label, name=account.name), account
        )


# --- Requests -------------------------------------------------------------------------------------------


def chat_request(model: str, body: dict) -> dict:
    """An OpenAI chat body as a Cohere v2 chat body."""
    translate.refuse_options_not_carried(body, carried=(*RENAMED, "tools", "tool_choice"), provider="Cohere")
    request: dict = {"model": model, "messages": [cohere_message(m) for m in body["messages"] if isinstance(m, dict)]}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        request["max_tokens"] = max_tokens
    for openai_name, cohere_name in RENAMED.items():
        if body.get(openai_name) is not None:
            request[cohere_name] = body[openai_name]
    stop = body.get("stop")
    if stop:
        request["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    choice = body.get("tool_choice")
    if choice is not None and choice != "auto" and (not isinstance(choice, str) or choice not in TOOL_CHOICES):
        # Cohere has no way to name the tool to call: only REQUIRED (some tool) or NONE.
        raise errors.GatewayError(
            400, errors.INVALID_REQUEST, "unsupported_parameter",
            "'tool_choice' naming a function cannot be carried to Cohere: use \"auto\", \"required\" or \"none\".",
        )
    if body.get("tools"):
        request["tools"] = body["tools"]  # Cohere v2 takes OpenAI's function tools as they are
        if choice in TOOL_CHOICES:
            request["tool_choice"] = TOOL_CHOICES[choice]
    if body.get("stream"):
        request["stream"] = True
    return request


def cohere_message(message: dict) -> dict:
    """One OpenAI message in Cohere v2's form: roles system/user/assistant/tool, text (and user image) parts."""
    role = "system" if message.get("role") == "developer" else message.get("role", "user")
    converted: dict = {"role": role}
    content = message.get("content")
    if isinstance(content, list):
        kinds = ("text", "image_url") if role == "user" else ("text",)
        content = [part for part in content if isinstance(part, dict) and part.get("type") in kinds]
    if content:
        converted["content"] = content
    elif role != "assistant":
        converted["content"] = ""
    if role == "assistant" and message.get("tool_calls"):
        converted["tool_calls"] = message["tool_calls"]
    if role == "tool":
        converted["tool_call_id"] = message.get("tool_call_id", "")
    return converted


def embed_request(model: str, body: dict) -> dict:
    request = {"model": model, "texts": translate.embedding_inputs(body["input"]),
               "input_type": EMBED_INPUT_TYPE, "embedding_types": ["float"]}
    if body.get("dimensions"):
        request["output_dimension"] = body["dimensions"]
    return request


# --- Answers --------------------------------------------------------------------------------------------


def finish_reason(reason: object, tool_calls: bool = False) -> str:
    """Cohere's finish reason as OpenAI's; an answer without one finished as OpenAI's would (ERROR and TIMEOUT
    with the text so far are `stop`, as peers map them)."""
    if reason is None or reason == "":
        return "tool_calls" if tool_calls else "stop"
    return FINISH_REASONS.get(str(reason), "stop")


def usage_of(usage: object) -> dict | None:
    """Token counts from `usage.tokens`, else `usage.billed_units`."""
    if not isinstance(usage, dict):
        return None
    counts = usage.get("tokens") or usage.get("billed_units") or {}
    return translate.usage(counts.get("input_tokens"), counts.get("output_tokens"))


class StreamTranslation(translate.ChunkWriter):
    """Cohere v2's stream events as OpenAI chunks, one translation per stream."""

    def __init__(self, account: Account, model: str, *, include_usage: bool = False):
        super().__init__(model, include_usage=include_usage)
        self.account = account
        self.tool_index = -1

    def translate(self, kind: str, document: dict) -> Iterator[bytes]:
        message = (document.get("delta") or {}).get("message") or {}
        if kind == "message-start":
            self.id = document.get("id") or self.id
            yield self.chunk({"role": "assistant", "content": ""})
        elif kind == "content-delta":
            content = message.get("content") or {}
            if content.get("text"):
                yield self.chunk({"content": content["text"]})
            elif content.get("thinking"):
                yield self.chunk({"reasoning_content": content["thinking"]})
        elif kind == "tool-call-start":
            self.tool_index = document["index"] if isinstance(document.get("index"), int) else self.tool_index + 1
            call = message.get("tool_calls") or {}
            function = call.get("function") or {}
            yield self.chunk({"tool_calls": [{"index": self.tool_index, "id": call.get("id", ""), "type": "function",
                                              "function": {"name": function.get("name", ""),
                                                           "arguments": function.get("arguments", "")}}]})
        elif kind == "tool-call-delta":
            arguments = ((message.get("tool_calls") or {}).get("function") or {}).get("arguments")
            if arguments:
                index = document["index"] if isinstance(document.get("index"), int) else max(self.tool_index, 0)
                yield self.chunk({"tool_calls": [{"index": index,
                                                  "function": {"arguments": arguments}}]})
        elif kind == "message-end":
            delta = document.get("delta") or {}
            if delta.get("error"):
                yield translate.error_event(str(delta["error"]), provider=self.account.label,
                                            secrets=self.account.values_to_redact())
                return
            yield from self.finish(finish_reason(delta.get("finish_reason"), self.tool_index >= 0),
                                   usage_of(delta.get("usage")))
