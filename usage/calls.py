"""What is noted about a gateway call while it is served: plain values, never content, keys or tokens."""

import contextvars
import time
from dataclasses import dataclass


@dataclass(slots=True)
class Call:
    """What is noted about one gateway call while it is served (plain values: ids, names, counts, times)."""

    at: float  # time.time() at arrival
    started: float  # time.perf_counter() at arrival
    endpoint: str = ""  # the endpoint's name, for the metrics' labels (never a name the caller made up)
    endpoint_id: int | None = None
    connection_id: int | None = None
    token_id: int | None = None
    user_id: int | None = None
    provider: str = ""
    model: str = ""
    status: int = 0
    error: str = ""
    attempts: int = 0  # provider requests sent, retries included (none when refused before the provider)
    stream: bool = False
    latency_ms: int = 0
    ttfb_ms: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    observed: bool = False  # counted in the metrics already (a batch the database refused is written later)

    @property
    def failed(self) -> bool:
        """An error answer, or a stream that ended with an error event (not a client that left)."""
        return self.status >= 400 or (self.error != "" and self.error != CLIENT_GONE)

    def note_tokens(self, usage: object) -> None:
        """Token counts from a `usage` object (absent or malformed counts stay unknown): OpenAI's chat shape, or
        the input/output shape of Anthropic's Messages API and OpenAI's Responses API (cache reads and writes
        are input too)."""
        if not isinstance(usage, dict):
            return
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if prompt is None and isinstance(usage.get("input_tokens"), int):
            prompt = usage["input_tokens"] + sum(
                count for name in ("cache_creation_input_tokens", "cache_read_input_tokens")
                if isinstance(count := usage.get(name), int))
            completion = usage.get("output_tokens")
        if isinstance(prompt, int) and prompt >= 0:
            self.prompt_tokens = prompt
        if isinstance(completion, int) and completion >= 0:
            self.completion_tokens = completion
        elif self.prompt_tokens is not None and isinstance(usage.get("total_tokens"), int):
            self.completion_tokens = max(usage["total_tokens"] - self.prompt_tokens, 0)


CLIENT_GONE = "client_gone"
# The call being served by this task (the gateway sets it on arrival; its steps fill it in).
CURRENT: contextvars.ContextVar[Call | None] = contextvars.ContextVar("usage_call", default=None)


def begin(recorded: bool = True) -> Call | None:
    """A new call noted in this task's context (or, not `recorded`, none: nothing noted on an older one)."""
    call = Call(at=time.time(), started=time.perf_counter()) if recorded else None
    CURRENT.set(call)
    return call


def current() -> Call | None:
    return CURRENT.get()
