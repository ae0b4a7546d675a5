import json
import threading

import pytest

from providers import upstream
from providers.adapters import translate
from providers.errors import GatewayError
from tests.fakes.server import FakeServer, Reply
from tests.provider_calls import run


def streamed(server: FakeServer) -> upstream.UpstreamResponse:
    return run(upstream.send("GET", f"{server.url}/stream", headers={}, stream=True, allow_loopback=True))


async def collect(iterator) -> list:
    return [item async for item in iterator]


def test_system_messages_are_split_from_the_conversation():
    system, rest = translate.split_system([
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use English."}]},
        {"role": "user", "content": "Hi"},
    ])
    assert system == "Be brief.\n\nUse English." and rest == [{"role": "user", "content": "Hi"}]


def test_a_chunk_is_an_openai_server_sent_event():
    event = translate.chunk(id_="c1", model="m", created=1, delta={"content": "Hi"})
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    assert json.loads(event[6:])["choices"][0]["delta"] == {"content": "Hi"}


def test_events_are_read_with_their_names_and_multiline_data():
    body = [b"event: message_start\ndata: {\"a\": 1}\n", b"\n: comment\ndata: li", b"ne1\r\ndata: line2\n\n"]
    with FakeServer(lambda request: Reply(chunks=body)) as server:
        events = run(collect(translate.read_events(streamed(server))))

    assert events == [("message_start", '{"a": 1}'), ("", "line1\nline2")]


def test_embeddings_keep_the_input_order():
    document = translate.embeddings(model="m", vectors=[[0.1], [0.2]])
    assert [item["index"] for item in document["data"]] == [0, 1]
    assert translate.embedding_inputs("x") == ["x"] and translate.embedding_inputs(["a", "b"]) == ["a", "b"]


def test_translated_chunks_end_with_done_and_a_broken_stream_with_an_error_event_first(settings):
    async def chunks(*items):
        for item in items:
            yield item

    with FakeServer(lambda request: Reply(chunks=[b"data: 1\n\n"])) as server:
        whole = streamed(server)
        assert b"".join(run(collect(translate.relay_translated(whole, chunks(b"a", b"b"), provider="P", name="c")))) == (
            b"ab" + translate.DONE)
        assert whole.is_closed

    settings.GATEWAY_TIMEOUT = 0.2
    stall = threading.Event()

    def one_event_then_a_stall():
        yield b"data: 1\n\n"
        stall.wait(5)

    with FakeServer(lambda request: Reply(chunks=one_event_then_a_stall())) as server:
        broken = streamed(server)

        async def translated():
            async for _, data in translate.read_events(broken):
                yield translate.sse({"n": int(data)})

        received = run(collect(translate.relay_translated(broken, translated(), provider="P", name="c")))
        stall.set()

    assert received[0] == translate.sse({"n": 1}) and received[-1] == translate.DONE
    assert json.loads(received[1][6:])["error"]["code"] == "upstream_timeout"
    assert broken.is_closed


def test_a_providers_error_mid_stream_is_a_redacted_openai_error_event():
    event = translate.error_event("Overloaded; key sk-live-0123456789abcdef", provider="P",
                                  secrets=["0123456789abcdef"])
    error = json.loads(event[6:])["error"]
    assert error["code"] == "upstream_error" and "0123456789abcdef" not in error["message"]
    assert error["message"].startswith("P reported an error during the stream: Overloaded")


@pytest.mark.parametrize("options", [
    {}, {"n": 1, "logprobs": False, "presence_penalty": 0.0, "frequency_penalty": 0, "tools": [], "tool_choice": "auto",
         "parallel_tool_calls": True, "response_format": {"type": "text"}, "seed": None, "user": "u-1"},
])
def test_options_left_at_what_asks_for_nothing_pass(options):
    translate.refuse_options_not_carried({"messages": [], **options}, carried=(), provider="Acme")


@pytest.mark.parametrize("name, value", [
    ("n", 2), ("n", True), ("logprobs", True), ("top_logprobs", 3), ("logit_bias", {"50256": -100}),
    ("presence_penalty", 0.5), ("seed", 7), ("response_format", {"type": "json_object"}), ("parallel_tool_calls", False),
    ("tools", [{"type": "function", "function": {"name": "f"}}]), ("reasoning_effort", "low"),
])
def test_an_option_the_translation_does_not_carry_is_a_400_naming_it(name, value):
    with pytest.raises(GatewayError) as raised:
        translate.refuse_options_not_carried({"messages": [], name: value}, carried=(), provider="Acme")

    assert (raised.value.status, raised.value.code) == (400, "unsupported_parameter")
    assert f"'{name}' cannot be carried to Acme" in raised.value.message


def test_a_carried_option_is_left_to_the_translation():
    translate.refuse_options_not_carried({"seed": 7, "tools": [{"type": "function"}]}, carried=("seed", "tools"),
                                         provider="Acme")
