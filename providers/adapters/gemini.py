"""Google Gemini (the Generative Language API): OpenAI's chat and embeddings shapes translated both ways.

Chat goes to `models/<model>:generateContent` (`:streamGenerateContent?alt=sse` for streams), embeddings to
`:batchEmbedContents`, all with the key in the `x-goog-api-key` header and never in the URL. The request
and answer translation is shared with Vertex AI (gateway/adapters/vertex_ai.py), which serves the same
Gemini models under another address and credential.
"""

import json
import logging
import time
from collections.abc import AsyncIterator
from urllib.parse import quote

from .. import errors
from ..account import Account
from ..errors import GatewayError
from ..upstream import TRANSPORT_ERRORS, UpstreamResponse
from . import translate
from .base import Adapter, EventStream, Target, UpstreamCall, accept_headers

logger = logging.getLogger("gateway")

API_VERSION = "v1beta"
ROLES = {"user": "user", "assistant": "model"}
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
# OpenAI sampling options with a direct Gemini `generationConfig` counterpart.
GENERATION_OPTIONS = {
    "temperature": "temperature",
    "top_p": "topP",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}
# Of translate.ANSWER_OPTIONS, what this translation carries (JSON mode as Gemini's JSON response type); the
# others, tools among them, are refused.
CARRIED_OPTIONS = (*GENERATION_OPTIONS, "response_format")


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
    """The conversation as Gemini `contents`; consecutive messages of one role become one turn."""
    contents: list[dict] = []
    for message in messages:
        role = ROLES.get(message.get("role"))
        if role is None:
            raise unsupported(
                f"Messages with role '{message.get('role')}' cannot be sent to Gemini; use system, user or assistant."
            )
        if message.get("tool_calls") or message.get("function_call"):
            raise unsupported("Tool calls in messages cannot be sent to Gemini endpoints yet.")
        parts = parts_of(message.get("content"))
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    if not contents:
        raise GatewayError(400, errors.INVALID_REQUEST, "invalid_body", "The messages hold no user or assistant text.")
    return contents


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
    return config


def chat_request(body: dict) -> dict:
    """An OpenAI chat body as a Gemini `generateContent` request."""
    translate.refuse_options_not_carried(body, carried=CARRIED_OPTIONS, provider="Gemini")
    system, messages = translate.split_system(body["messages"])
    request: dict = {"contents": gemini_contents(messages)}
    if system:
        request["systemInstruction"] = {"parts": [{"text": system}]}
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


def candidate_text(document: dict) -> tuple[str, str | None]:
    """The first candidate's text parts joined (thoughts left out), and its OpenAI finish_reason."""
    candidates = document.get("candidates") or []
    if not candidates:
        blocked = (document.get("promptFeedback") or {}).get("blockReason")
        return "", "content_filter" if blocked else None
    candidate = candidates[0] if isinstance(candidates[0], dict) else {}
    parts = (candidate.get("content") or {}).get("parts") or []
    text = "".join(
        part["text"] for part in parts if isinstance(part, dict) and isinstance(part.get("text"), str)
        and not part.get("thought")
    )
    reason = candidate.get("finishReason")
    return text, (FINISH_REASONS.get(reason, "stop") if reason else None)


def usage_of(metadata: object) -> dict | None:
    """Gemini's usageMetadata as OpenAI usage; thinking tokens count as completion tokens, as OpenAI counts them."""
    if not isinstance(metadata, dict):
        return None
    prompt = metadata.get("promptTokenCount") or 0
    completion = (metadata.get("candidatesTokenCount") or 0) + (metadata.get("thoughtsTokenCount") or 0)
    usage = translate.usage(prompt, completion)
    if metadata.get("totalTokenCount"):
        usage["total_tokens"] = int(metadata["totalTokenCount"])
    return usage


def chat_response(model: str, document: object) -> dict:
    if not isinstance(document, dict):
        raise invalid("Gemini's answer is not a JSON object.")
    text, finish_reason = candidate_text(document)
    response_id = document.get("responseId")
    return translate.chat_completion(
        model=document.get("modelVersion") or model,
        content=text,
        finish_reason=finish_reason or "stop",
        usage_=usage_of(document.get("usageMetadata")),
        id_=f"chatcmpl-{response_id}" if isinstance(response_id, str) and response_id else None,
    )


def embeddings_response(model: str, document: object) -> dict:
    """`{"embeddings": [{"values": [...]}, ...]}` as an OpenAI embeddings list."""
    items = document.get("embeddings") if isinstance(document, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise invalid("Gemini's embeddings answer has no 'embeddings' list.")
    return translate.embeddings(model=model, vectors=[item.get("values") or [] for item in items])


async def translate_stream(
    response: UpstreamResponse, *, model: str, provider: str, name: str
) -> AsyncIterator[bytes]:
    """Gemini's server-sent events as OpenAI chunks, each written as its event arrives, then [DONE]."""
    id_, created = translate.completion_id(), int(time.time())
    started, finish_reason, usage = False, None, None
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
            model = document.get("modelVersion") or model
            text, reason = candidate_text(document)
            finish_reason = reason or finish_reason
            usage = usage_of(document.get("usageMetadata")) or usage
            if not started:
                started = True
                yield translate.chunk(id_=id_, model=model, created=created,
                                      delta={"role": "assistant", "content": text})
            elif text:
                yield translate.chunk(id_=id_, model=model, created=created, delta={"content": text})
        else:
            if not started:
                yield translate.chunk(id_=id_, model=model, created=created, delta={"role": "assistant", "content": ""})
            yield translate.chunk(id_=id_, model=model, created=created, delta={},
                                  finish_reason=finish_reason or "stop", usage_=usage)
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
        events = translate_stream(response, model="", provider=account.label, name=account.name)
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
