"""Google Gemini (the Generative Language API): OpenAI's chat and embeddings shapes translated both ways.

Chat goes to `models/<model>:generateContent` (`:streamGenerateContent?alt=sse` for streams), embeddings to
`:batchEmbedContents`, all with the key in the `x-goog-api-key` header and never in the URL. The request
and answer translation is shared with Vertex AI (gateway/adapters/vertex_ai.py), which serves the same
Gemini models under another address and credential.
"""

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import NamedTuple
from urllib.parse import quote

from .. import errors
from ..account import Account
from ..errors import GatewayError
from ..upstream import TRANSPORT_ERRORS, UpstreamResponse
from . import translate
from .base import Adapter, EventStream, Target, UpstreamCall, accept_headers

logger = logging.getLogger("gateway")

API_VERSION = "v1beta"
ROLES = {"user": "user", "assistant": "model", "tool": "user"}
# Candidate finish reasons that withheld or cut the answer for its content: OpenAI's content_filter, and the
# text (a recitation's partial text included) is not given, as peers do. Every other reason is `stop` (the
# failed tool-call ones too: MALFORMED_FUNCTION_CALL, UNEXPECTED_TOOL_CALL, ...), but MAX_TOKENS.
FILTERED = frozenset({
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "LANGUAGE", "OTHER", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "IMAGE_OTHER", "NO_IMAGE",
})
# A tool call's thought signature (Gemini 3 refuses the next turn without it) travels in its OpenAI id.
SIGNATURE_SEPARATOR = "__thought__"
TOOL_CHOICES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
# OpenAI sampling options with a direct Gemini `generationConfig` counterpart.
GENERATION_OPTIONS = {
    "temperature": "temperature",
    "top_p": "topP",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}
# Of translate.ANSWER_OPTIONS, what this translation carries (JSON mode and schemas as Gemini's JSON response
# type, tools as function declarations); the others are refused.
CARRIED_OPTIONS = (*GENERATION_OPTIONS, "response_format", "tools", "tool_choice")


def unsupported(message: str) -> GatewayError:
    return GatewayError(400, errors.INVALID_REQUEST, "unsupported_parameter", message)


# --- OpenAI → Gemini ----------------------------------------------------------------------------------


def model_path(model: str) -> str:
    """`models/<model>` with the name escaped, so an endpoint's model cannot change the route."""
    return "models/" + quote(model.removeprefix("models/"), safe="")


def parts_of(content: object) -> list[dict]:
    """An OpenAI message `content` as Gemini parts: text, and images given inline as data: URLs."""
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        return []
    parts = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            parts.append({"text": part["text"]})
        elif part.get("type") == "image_url":
            parts.append(inline_image(part.get("image_url")))
        else:
            raise unsupported(f"Message parts of type '{part.get('type')}' cannot be sent to Gemini.")
    return parts


def inline_image(image: object) -> dict:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url:
        raise unsupported("Images can be sent to Gemini only inline, as data:<type>;base64,<data> URLs.")
    header, data = url[5:].split(";base64,", 1)
    return {"inlineData": {"mimeType": header or "application/octet-stream", "data": data}}


def gemini_contents(messages: list) -> list[dict]:
    """The conversation as Gemini `contents`; consecutive messages of one role become one turn (so the results
    of one turn's tool calls go back together, as Gemini wants them)."""
    contents: list[dict] = []
    called: dict[str, str] = {}  # tool call id -> function name, from the assistant's earlier tool calls
    for message in messages:
        role = ROLES.get(message.get("role"))
        if role is None:
            raise unsupported(
                f"Messages with role '{message.get('role')}' cannot be sent to Gemini; use system, user, assistant "
                "or tool."
            )
        if message.get("function_call"):
            raise unsupported("'function_call' in messages cannot be sent to Gemini: use 'tool_calls'.")
        if message.get("role") == "tool":
            parts = [function_response(message, called)]
        else:
            parts = parts_of(message.get("content"))
        if message.get("role") == "assistant":
            parts += function_calls(message.get("tool_calls"), called)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    if not contents:
        raise GatewayError(400, errors.INVALID_REQUEST, "invalid_body", "The messages hold no user or assistant text.")
    return contents


def function_calls(tool_calls: object, called: dict[str, str]) -> list[dict]:
    """An assistant message's OpenAI tool calls as Gemini functionCall parts (remembering id -> name)."""
    if tool_calls is None:
        return []
    if not isinstance(tool_calls, list):
        raise GatewayError(400, errors.INVALID_REQUEST, "invalid_body", "'tool_calls' must be a list.")
    parts = []
    for call in tool_calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise GatewayError(400, errors.INVALID_REQUEST, "invalid_body",
                               "Each tool call needs a 'function' with a 'name'.")
        arguments = function.get("arguments") or "{}"
        try:
            args = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError:
            raise GatewayError(400, errors.INVALID_REQUEST, "invalid_body",
                               "A tool call's 'arguments' must be a JSON object.") from None
        if not isinstance(args, dict):
            raise GatewayError(400, errors.INVALID_REQUEST, "invalid_body",
                               "A tool call's 'arguments' must be a JSON object.")
        call_id = call.get("id") if isinstance(call.get("id"), str) else ""
        called[call_id] = function["name"]
        part: dict = {"functionCall": {"name": function["name"], "args": args}}
        _, _, signature = call_id.partition(SIGNATURE_SEPARATOR)
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def function_response(message: dict, called: dict[str, str]) -> dict:
    """A tool message as a functionResponse part: Gemini names the function, which OpenAI gives only in the
    assistant's call with that id. A JSON object result goes as it is, anything else as `{"content": text}`."""
    call_id = message.get("tool_call_id")
    name = called.get(call_id) if isinstance(call_id, str) else None
    if name is None:
        raise GatewayError(
            400, errors.INVALID_REQUEST, "invalid_body",
            "A tool message must answer a tool call of an earlier assistant message (its 'tool_call_id'): Gemini "
            "needs the function's name.",
        )
    text = translate.text_of(message.get("content"))
    try:
        result = json.loads(text)
    except ValueError:
        result = None
    return {"functionResponse": {"name": name, "response": result if isinstance(result, dict) else {"content": text}}}


def gemini_tools(body: dict) -> list[dict]:
    """OpenAI function tools as one Gemini `functionDeclarations` tool; the schema goes as given (JSON Schema)."""
    tools = body.get("tools")
    if not tools:
        return []
    declarations = []
    for tool in tools if isinstance(tools, list) else [None]:
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise unsupported("'tools' other than functions (with a 'name') cannot be carried to Gemini.")
        declaration: dict = {"name": function["name"]}
        if isinstance(function.get("description"), str):
            declaration["description"] = function["description"]
        if isinstance(function.get("parameters"), dict):
            declaration["parametersJsonSchema"] = function["parameters"]
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}]


def tool_config(choice: object) -> dict | None:
    """OpenAI's tool_choice as Gemini's functionCallingConfig (a named function: ANY with only that one)."""
    if choice is None:
        return None
    if isinstance(choice, str) and choice in TOOL_CHOICES:
        return {"functionCallingConfig": {"mode": TOOL_CHOICES[choice]}}
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [function["name"]]}}
    raise unsupported("This 'tool_choice' cannot be carried to Gemini: use auto, required, none or a function.")


def generation_config(body: dict) -> dict:
    """OpenAI's sampling and length options as Gemini's `generationConfig`."""
    config = {target: body[name] for name, target in GENERATION_OPTIONS.items() if body.get(name) is not None}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else stop
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise GatewayError(400, errors.INVALID_REQUEST, "invalid_body",
                               "'response_format' of type json_schema needs 'json_schema.schema', an object.")
        config["responseJsonSchema"] = schema
    return config


def chat_request(body: dict) -> dict:
    """An OpenAI chat body as a Gemini `generateContent` request."""
    translate.refuse_options_not_carried(body, carried=CARRIED_OPTIONS, provider="Gemini")
    system, messages = translate.split_system(body["messages"])
    request: dict = {"contents": gemini_contents(messages)}
    if system:
        request["systemInstruction"] = {"parts": [{"text": system}]}
    tools = gemini_tools(body)
    if tools:
        request["tools"] = tools
        config = tool_config(body.get("tool_choice"))
        if config:
            request["toolConfig"] = config
    config = generation_config(body)
    if config:
        request["generationConfig"] = config
    return request


def embed_request(model: str, body: dict) -> dict:
    """An OpenAI embeddings body as one `batchEmbedContents` request (a string is a list of one)."""
    inputs = translate.embedding_inputs(body["input"])
    if not inputs:
        raise GatewayError(400, errors.INVALID_REQUEST, "invalid_body", "Gemini embeds text: give 'input' as strings.")
    item: dict = {"model": "models/" + model.removeprefix("models/")}
    if body.get("dimensions"):
        item["outputDimensionality"] = body["dimensions"]
    return {"requests": [{**item, "content": {"parts": [{"text": text}]}} for text in inputs]}


# --- Gemini → OpenAI ----------------------------------------------------------------------------------


def invalid(message: str) -> GatewayError:
    return GatewayError(502, errors.UPSTREAM, "upstream_invalid_response", message)


def finish_reason(reason: object, tool_calls: bool) -> str:
    """A candidate's finishReason as OpenAI's; an answer with tool calls finished to call them."""
    if reason in FILTERED:
        return "content_filter"
    if reason == "MAX_TOKENS":
        return "length"
    return "tool_calls" if tool_calls else "stop"


def tool_call_id(call: dict, signature: object) -> str:
    """Gemini's id for the call when it gives one (else a new one), with its thought signature, if any."""
    base = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else f"call_{uuid.uuid4().hex[:24]}"
    return f"{base}{SIGNATURE_SEPARATOR}{signature}" if isinstance(signature, str) and signature else base


class Candidate(NamedTuple):
    """What the first candidate of one answer (or one stream event) holds, in OpenAI's terms."""

    text: str
    reasoning: str
    tool_calls: list[dict]
    reason: str | None  # Gemini's finishReason ("BLOCKED" for a prompt refused before any candidate)


def read_candidate(document: dict) -> Candidate:
    candidates = document.get("candidates") or []
    if not candidates:
        blocked = (document.get("promptFeedback") or {}).get("blockReason")
        return Candidate("", "", [], "SAFETY" if blocked else None)
    candidate = candidates[0] if isinstance(candidates[0], dict) else {}
    parts = [part for part in (candidate.get("content") or {}).get("parts") or [] if isinstance(part, dict)]
    text = reasoning = ""
    tool_calls = []
    for part in parts:
        if isinstance(part.get("text"), str):
            if part.get("thought"):
                reasoning += part["text"]
            else:
                text += part["text"]
        elif isinstance(part.get("functionCall"), dict):
            call = part["functionCall"]
            tool_calls.append({"id": tool_call_id(call, part.get("thoughtSignature")), "type": "function",
                               "function": {"name": str(call.get("name") or ""),
                                            "arguments": json.dumps(call.get("args") or {})}})
    reason = candidate.get("finishReason")
    return Candidate(text, reasoning, tool_calls, reason if isinstance(reason, str) else None)


def usage_of(metadata: object) -> dict | None:
    """Gemini's usageMetadata as OpenAI usage; thinking tokens count as completion tokens, as OpenAI counts them,
    and cached tokens are part of the prompt's."""
    if not isinstance(metadata, dict):
        return None
    thoughts = metadata.get("thoughtsTokenCount") or 0
    completion = (metadata.get("candidatesTokenCount") or 0) + thoughts
    return translate.usage(metadata.get("promptTokenCount"), completion,
                           total_tokens=metadata.get("totalTokenCount"),
                           cached_tokens=metadata.get("cachedContentTokenCount"), reasoning_tokens=thoughts)


def chat_response(model: str, document: object) -> dict:
    if not isinstance(document, dict):
        raise invalid("Gemini's answer is not a JSON object.")
    candidate = read_candidate(document)
    reason = finish_reason(candidate.reason, bool(candidate.tool_calls))
    withheld = reason == "content_filter"
    response_id = document.get("responseId")
    return translate.chat_completion(
        model=document.get("modelVersion") or model,
        content=None if withheld else candidate.text,
        finish_reason=reason,
        usage_=usage_of(document.get("usageMetadata")),
        id_=f"chatcmpl-{response_id}" if isinstance(response_id, str) and response_id else None,
        tool_calls=None if withheld else candidate.tool_calls,
        reasoning_content=None if withheld else candidate.reasoning,
    )


def embeddings_response(model: str, document: object) -> dict:
    """`{"embeddings": [{"values": [...]}, ...]}` as an OpenAI embeddings list."""
    items = document.get("embeddings") if isinstance(document, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise invalid("Gemini's embeddings answer has no 'embeddings' list.")
    return translate.embeddings(model=model, vectors=[item.get("values") or [] for item in items])


async def translate_stream(
    response: UpstreamResponse, *, model: str, provider: str, name: str, include_usage: bool = False
) -> AsyncIterator[bytes]:
    """Gemini's server-sent events as OpenAI chunks, each written as its event arrives, then [DONE].

    Each event holds whole parts: a function call arrives complete, as one tool-call delta with its index."""
    writer = translate.ChunkWriter(model, include_usage=include_usage)
    started, reason, tool_calls = False, None, 0
    try:
        async for _, data in translate.read_events(response):
            try:
                document = json.loads(data)
            except ValueError:
                continue
            if isinstance(document, dict) and isinstance(document.get("error"), dict):
                code = document["error"].get("code")
                status = code if isinstance(code, int) and 400 <= code < 600 else 500
                failure = errors.from_upstream_response(
                    status, {}, data.encode(), secrets=(), provider=provider
                )
                logger.warning("Connection %s: the stream ended with a provider error.", name)
                yield translate.sse(failure.body())
                break
            if not isinstance(document, dict):
                continue
            writer.model = document.get("modelVersion") or writer.model
            candidate = read_candidate(document)
            reason = candidate.reason or reason
            writer.usage = usage_of(document.get("usageMetadata")) or writer.usage
            if not started:
                started = True
                yield writer.chunk({"role": "assistant", "content": candidate.text})
            elif candidate.text:
                yield writer.chunk({"content": candidate.text})
            if candidate.reasoning:
                yield writer.chunk({"reasoning_content": candidate.reasoning})
            for call in candidate.tool_calls:
                yield writer.chunk({"tool_calls": [{"index": tool_calls, **call}]})
                tool_calls += 1
        else:
            if not started:
                yield writer.chunk({"role": "assistant", "content": ""})
            for chunk in writer.finish(finish_reason(reason, tool_calls > 0)):
                yield chunk
    except TRANSPORT_ERRORS as error:
        failure = errors.from_transport_error(error, provider=provider)
        logger.warning("Connection %s: the stream broke off: %s", name, failure.code)
        yield translate.sse(failure.body())
    finally:
        response.close()
    yield translate.DONE


# --- The adapter --------------------------------------------------------------------------------------


class GeminiAdapter(Adapter):
    """Google Gemini with an API key (`x-goog-api-key`)."""

    async def build_call(self, account: Account, target: Target, body: dict) -> UpstreamCall:
        base = f"{account.base_url()}/{API_VERSION}/{model_path(target.model)}"
        return translated_call(base, target, body, {"x-goog-api-key": account.secrets["api_key"]})

    async def build_check_call(self, account: Account) -> UpstreamCall:
        headers = {"x-goog-api-key": account.secrets["api_key"], "Accept": "application/json"}
        return UpstreamCall("GET", f"{account.base_url()}/{API_VERSION}/models", headers, params={"pageSize": "1"})

    def parse_response(self, target: Target, document: object) -> dict:
        if target.task == "embeddings":
            return embeddings_response(target.model, document)
        return chat_response(target.model, document)

    def relay_stream(
        self, account: Account, target: Target, response: UpstreamResponse, *, include_usage: bool = False
    ) -> EventStream:
        events = translate_stream(response, model="", provider=account.label, name=account.name,
                                  include_usage=include_usage)
        return EventStream(response, events, account)


def translated_call(model_url: str, target: Target, body: dict, headers: dict[str, str]) -> UpstreamCall:
    """The Gemini-format request for an OpenAI body, at `<model_url>:<method>` (Gemini API and Vertex AI)."""
    if target.task == "embeddings":
        return UpstreamCall("POST", f"{model_url}:batchEmbedContents", {**headers, **accept_headers(False)},
                            embed_request(target.model, body))
    payload = chat_request(body)
    if body.get("stream"):
        headers = {**headers, **accept_headers(True)}
        return UpstreamCall("POST", f"{model_url}:streamGenerateContent", headers, payload, {"alt": "sse"}, True)
    return UpstreamCall("POST", f"{model_url}:generateContent", {**headers, **accept_headers(False)}, payload)
