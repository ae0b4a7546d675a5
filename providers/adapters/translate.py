"""Shared pieces for adapters whose provider does not speak OpenAI's format: build OpenAI-shaped answers,
read a provider's server-sent events, and write OpenAI chunks. Each adapter keeps only its own mapping."""

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator

from .. import errors
from ..upstream import TRANSPORT_ERRORS, UpstreamResponse

DONE = b"data: [DONE]\n\n"
logger = logging.getLogger("gateway")

# OpenAI chat options that change the answer, with the values that ask for nothing (as if not sent). A
# translation that does not carry one refuses a request asking for it, rather than answering as if it had
# not been asked: two answers instead of one, no log probabilities, no JSON mode (LiteLLM refuses too).
ANSWER_OPTIONS: dict[str, tuple] = {
    "n": (1,),
    "logprobs": (False,),
    "top_logprobs": (0,),
    "logit_bias": ({},),
    "presence_penalty": (0,),
    "frequency_penalty": (0,),
    "seed": (),
    "response_format": ({"type": "text"},),
    "tools": ([],),
    "tool_choice": ("auto", "none"),
    "functions": ([],),
    "function_call": ("auto", "none"),
    "parallel_tool_calls": (True,),
    "reasoning_effort": (),
    "modalities": (["text"],),
    "audio": (),
    "prediction": (),
    "web_search_options": (),
}


def same_value(value: object, neutral: object) -> bool:
    """Equal, with a boolean never equal to a number (`n: true` is not `n: 1`, `presence_penalty: 0.0` is 0)."""
    return isinstance(value, bool) == isinstance(neutral, bool) and value == neutral


def refuse_options_not_carried(body: dict, *, carried: Iterable[str], provider: str) -> None:
    """A 400 naming the first answer-changing option (ANSWER_OPTIONS) that the translation does not carry."""
    carried = frozenset(carried)
    for name, neutral in ANSWER_OPTIONS.items():
        value = body.get(name)
        if name in carried or value is None or any(same_value(value, each) for each in neutral):
            continue
        raise errors.GatewayError(
            400, errors.INVALID_REQUEST, "unsupported_parameter",
            f"'{name}' cannot be carried to {provider}: leave it out of the request (or at its default) "
            "to call this endpoint.",
        )


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def text_of(content: object) -> str:
    """An OpenAI message `content` as plain text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")
    return ""


def split_system(messages: list) -> tuple[str, list[dict]]:
    """System (and developer) messages joined into one instruction, and the conversation without them."""
    system = [text_of(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") in ("system", "developer")]
    rest = [m for m in messages if isinstance(m, dict) and m.get("role") not in ("system", "developer")]
    return "\n\n".join(part for part in system if part), rest


def usage(prompt_tokens: int | None, completion_tokens: int | None, *, total_tokens: int | None = None,
          cached_tokens: int | None = None, reasoning_tokens: int | None = None) -> dict:
    """OpenAI's usage; the total is the provider's when it gives one (it may count what the parts leave out),
    and cached prompt tokens and reasoning tokens go in the details OpenAI reports them in."""
    prompt, completion = int(prompt_tokens or 0), int(completion_tokens or 0)
    document = {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": int(total_tokens) if total_tokens else prompt + completion}
    if cached_tokens:
        document["prompt_tokens_details"] = {"cached_tokens": int(cached_tokens)}
    if reasoning_tokens:
        document["completion_tokens_details"] = {"reasoning_tokens": int(reasoning_tokens)}
    return document


def wants_usage(body: dict) -> bool:
    """Whether a streamed request asked for the usage chunk (`stream_options.include_usage`), as OpenAI reads it."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def chat_completion(*, model: str, content: str | None, finish_reason: str | None, usage_: dict | None,
                    id_: str | None = None, tool_calls: list | None = None,
                    reasoning_content: str | None = None) -> dict:
    """An OpenAI `chat.completion` with one choice; no text is `content: null`, as OpenAI gives it (tool calls
    only, a blocked answer). `reasoning_content` is the provider's thinking text, a field peers add."""
    message: dict = {"role": "assistant", "content": content or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning_content:
        message["reasoning_content"] = reasoning_content
    document = {
        "id": id_ or completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }
    if usage_ is not None:
        document["usage"] = usage_
    return document


def chunk(*, id_: str, model: str, created: int, delta: dict, finish_reason: str | None = None,
          usage_: dict | None = None) -> bytes:
    """One OpenAI `chat.completion.chunk` as a server-sent event."""
    document = {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    if usage_ is not None:
        document["usage"] = usage_
    return sse(document)


def usage_chunk(*, id_: str, model: str, created: int, usage_: dict) -> bytes:
    """The last chunk of a stream that asked for `stream_options.include_usage`: empty `choices`, the usage."""
    return sse({"id": id_, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [], "usage": usage_})


class ChunkWriter:
    """One stream's OpenAI chunks: a stable id, model and creation time, and JSON events dispatched by kind.

    Subclasses implement `translate(kind, document)` for their provider's event types and end with
    `finish()`: one chunk with the finish reason, then the usage chunk when the request asked for it.
    """

    def __init__(self, model: str = "", *, include_usage: bool = False):
        self.id = completion_id()
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage
        self.usage: dict | None = None  # the stream's usage, once the provider has said it

    def finish(self, finish_reason: str, usage_: dict | None = None) -> Iterator[bytes]:
        """The finish chunk, and the usage-only chunk after it when the request asked for one."""
        self.usage = usage_ or self.usage
        yield self.chunk({}, finish_reason)
        if self.include_usage:
            yield usage_chunk(id_=self.id, model=self.model, created=self.created,
                              usage_=self.usage or usage(0, 0))

    async def chunks(self, response: UpstreamResponse) -> AsyncIterator[bytes]:
        """Each JSON event (its `type`, else its SSE event name) translated; other lines are skipped."""
        async for event, data in read_events(response):
            try:
                document = json.loads(data)
            except ValueError:
                continue
            if isinstance(document, dict):
                for chunk in self.translate(document.get("type") or event, document):
                    yield chunk

    def translate(self, kind: str, document: dict) -> Iterator[bytes]:
        raise NotImplementedError

    def chunk(self, delta: dict, finish_reason: str | None = None, usage_: dict | None = None) -> bytes:
        return chunk(id_=self.id, model=self.model, created=self.created, delta=delta,
                     finish_reason=finish_reason, usage_=usage_)


def sse(document: dict) -> bytes:
    return b"data: " + json.dumps(document, separators=(",", ":")).encode() + b"\n\n"


def embeddings(*, model: str, vectors: list[list[float]], usage_: dict | None = None) -> dict:
    """An OpenAI embeddings `list`, one item per input in order."""
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vector} for i, vector in enumerate(vectors)],
        "model": model,
        "usage": usage_ or usage(0, 0),
    }


def embedding_inputs(value: object) -> list[str]:
    """OpenAI's `input` (a string or a list of strings) as a list."""
    return [value] if isinstance(value, str) else [item for item in value if isinstance(item, str)]


async def read_events(response: UpstreamResponse) -> AsyncIterator[tuple[str, str]]:
    """A provider's server-sent events as (event name, data) pairs, read as they arrive."""
    event, data = "", []
    async for line in response.iter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        yield event, "\n".join(data)


async def relay_translated(
    response: UpstreamResponse, chunks: AsyncIterator[bytes], *, provider: str, name: str
) -> AsyncIterator[bytes]:
    """An adapter's translated chunks as they are produced; a broken stream ends with an OpenAI error event;
    then `data: [DONE]`. The provider's response is closed however the iteration ends."""
    try:
        async for chunk in chunks:
            yield chunk
    except TRANSPORT_ERRORS as error:
        failure = errors.from_transport_error(error, provider=provider)
        logger.warning("Connection %s: the stream broke off: %s", name, failure.code)
        yield sse(failure.body())
    finally:
        response.close()
    yield DONE


def error_event(message: str, *, provider: str, secrets: Iterable[str] = ()) -> bytes:
    """An OpenAI error event for an error the provider reported in the middle of a stream, redacted."""
    text = errors.safe_message(message, secrets) or "no details given"
    failure = errors.GatewayError(
        502, errors.UPSTREAM, "upstream_error", f"{provider} reported an error during the stream: {text}"
    )
    return sse(failure.body())
