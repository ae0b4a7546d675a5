"""Vertex AI cases of the provider fixture corpus, through the gateway against a fake Vertex AI (corpus_support.py).

Vertex AI serves Gemini's format with the Gemini translation (test_corpus_gemini.py runs every case); here a
case of each kind proves the same translation is wired to Vertex's address and service-account credentials:
tools both ways, a streamed tool call, the usage chunk, a withheld answer and a provider error. (Each Vertex
call also signs a token request, which makes these the slowest corpus cases.)
"""

import pytest

from tests.fixtures.providers.corpus import case

from .corpus_support import run_case

pytestmark = pytest.mark.django_db

CASES = ("tool_call_single", "tool_call_thought_signature", "tool_result_second_turn", "stream_tool_calls",
         "stream_text_include_usage", "finish_safety", "prompt_blocked", "response_format_json_schema",
         "error_invalid_argument", "stream_error")


@pytest.mark.parametrize("name", CASES)
def test_the_gateway_answers_the_case_as_openai_would(name, request):
    run_case("vertex_ai", case("vertex_ai", name), request)
