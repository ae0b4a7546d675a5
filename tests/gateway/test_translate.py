import json

import httpx

from gateway.adapters import translate


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
    body = b"event: message_start\ndata: {\"a\": 1}\n\n: comment\ndata: line1\ndata: line2\n\n"
    response = httpx.Response(200, content=body)
    assert list(translate.read_events(response)) == [("message_start", '{"a": 1}'), ("", "line1\nline2")]


def test_embeddings_keep_the_input_order():
    document = translate.embeddings(model="m", vectors=[[0.1], [0.2]])
    assert [item["index"] for item in document["data"]] == [0, 1]
    assert translate.embedding_inputs("x") == ["x"] and translate.embedding_inputs(["a", "b"]) == ["a", "b"]
