import pytest

from tests.asgi_client import AsgiClient
from tests.fakes.corpus import CorpusFake


@pytest.fixture
def client():
    """Here the site is driven as the server serves it (config/asgi.py), where the gateway's routes live."""
    return AsgiClient()


@pytest.fixture
def corpus_fake():
    """A fake provider answering with one case of the provider fixture corpus (corpus_support.py)."""
    with CorpusFake() as fake:
        yield fake
