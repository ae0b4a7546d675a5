"""Every openai case of the provider fixture corpus, through the gateway against a fake openai (corpus_support.py)."""

import pytest

from tests.fixtures.providers.corpus import cases

from .corpus_support import run_case

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("case", cases("openai"), ids=lambda case: case.name)
def test_the_gateway_answers_the_case_as_openai_would(case, request):
    run_case("openai", case, request)
