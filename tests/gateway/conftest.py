import pytest

from tests.asgi_client import AsgiClient


@pytest.fixture
def client():
    """Here the site is driven as the server serves it (config/asgi.py), where the gateway's routes live."""
    return AsgiClient()
