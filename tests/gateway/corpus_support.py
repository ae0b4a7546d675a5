"""Running the provider fixture corpus (tests/fixtures/providers) through the gateway, one module per provider.

Each case's OpenAI request goes to `POST /gateway/v1/chat/completions` for an endpoint named `chat` whose
connection points at a CorpusFake answering with the case's provider answer. The provider request the
gateway sent must hold what the case expects, and the answer must be what the official `openai` SDK parses
(`ChatCompletion`, each chunk a `ChatCompletionChunk`) with the case's values.
"""

import re

from tests.fakes.corpus import CorpusFake
from tests.fixtures.providers.corpus import (
    Case, assemble_stream, check_completion, check_error, check_stream, upstream_mismatches,
)

# Where each provider's chat request must go (the model is the endpoint's, `m-1`).
CHAT_PATHS = {
    "openai": re.compile(r"/v1/chat/completions"),
    "anthropic": re.compile(r"/v1/messages"),
    "gemini": re.compile(r"/v1beta/models/m-1:(?P<method>generateContent|streamGenerateContent)"),
    "vertex_ai": re.compile(r"/v1/projects/my-project-123/locations/us-central1/publishers/google/models/m-1:"
                            r"(?P<method>generateContent|streamGenerateContent)"),
    "bedrock": re.compile(r"/model/m-1/(?P<method>converse|converse-stream)"),
    "cohere": re.compile(r"/v2/chat"),
}
STREAM_METHODS = {"streamGenerateContent", "converse-stream"}


def connection_for(provider: str, fake: CorpusFake, make_connection, request) -> object:
    if provider == "openai":
        return make_connection("corpus", config={"base_url": f"{fake.url}/v1"})
    if provider == "vertex_ai":
        service_account = request.getfixturevalue("service_account")
        return make_connection("corpus", provider="vertex_ai", auth_method="service_account",
                               secrets={"service_account_json": service_account},
                               config={"project_id": "my-project-123", "base_url": fake.url})
    if provider == "bedrock":
        return make_connection("corpus", provider="bedrock", config={"region": "us-east-1", "base_url": fake.url})
    return make_connection("corpus", provider=provider, config={"base_url": fake.url})


def run_case(provider: str, case: Case, request) -> None:
    """Send the case through the gateway and assert everything the case says (readable problems on failure).

    Optional expectations fail too: a field the gateway emits must be right even where it may be left out."""
    fake = request.getfixturevalue("corpus_fake")
    gateway = request.getfixturevalue("gateway")
    connection = connection_for(provider, fake, request.getfixturevalue("make_connection"), request)
    request.getfixturevalue("make_endpoint")("chat", connection, model="m-1")
    fake.answer_with(case)

    response = gateway.post("/gateway/v1/chat/completions", case.request)

    problems: list[str] = []
    if case.refused:
        assert not fake.requests, "the gateway called the provider for a request it must refuse"
    else:
        assert len(fake.requests) >= 1, response.content[:500]
        sent = fake.requests[-1]
        path = CHAT_PATHS[provider].fullmatch(sent.path)
        assert path, sent.path
        if "method" in path.groupdict():
            assert (path["method"] in STREAM_METHODS) == case.stream, sent.path
        problems += upstream_mismatches(case, sent.json())
    if case.expects_error:
        problems += check_error(case, response.status_code, response.content)
    elif case.stream:
        assert response.status_code == 200, response.content[:500]
        assert response.headers["content-type"].startswith("text/event-stream")
        problems += check_stream(case, assemble_stream(response.content))
    else:
        assert response.status_code == 200, response.content[:500]
        problems += check_completion(case, response.content)
    assert not problems, f"{case.id}: " + "\n".join(problems) + f"\n-- answer: {response.content[:3000]!r}"
