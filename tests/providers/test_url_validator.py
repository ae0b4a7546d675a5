"""What the URL validator lets through, the provider client can call: aiohttp's URL parser (yarl) parses it,
reads the port as written, and the host is not private once read as it reads it."""

import itertools

import hypothesis
import pytest
import yarl
from hypothesis import strategies as st
from django.core.exceptions import ValidationError

from providers.addresses import is_allowed_private_host, is_loopback_host, is_private_host
from providers.validators import url_validator

HOSTS = [
    "llm.example.com", "LLM.Example.COM", "llm.example.com.", "bücher.example", "xn--bcher-kva.example",
    "ｌｌｍ.example.com", "llm。example。com", "llm.exa\u00admple.com", "llm_gpu.example", "-llm.example",
    "a..b", "xn--.example", "exa<mple.com", "exa%41mple.com", "exa\\mple.com", "a" * 64 + ".example",
    "127.0.0.1", "127.0.0.2", "0177.0.0.1", "0x7f.1", "2130706433", "①②⑦.0.0.1", "１２７.0.0.1", "01.1.1.1",
    "8.8.8.8", "0x08.0x08.0x08.0x08", "999.1.1.1", "1.2.3.4.5", "localhost", "ｌｏｃａｌｈｏｓｔ", "LOCALHOST.",
    "metadata.google.internal", "169.254.169.254", "[::1]", "[::ffff:127.0.0.1]", "[::ffff:8.8.8.8]",
    "[64:ff9b::a9fe:a9fe]", "[64:ff9b::808:808]", "[::7f00:1]", "[2002:a9fe:a9fe::1]", "[fe80::1%25eth0]",
    "[2606:4700::6810:84e5]", "[v1.x]", "[::1", "user:pw@llm.example.com",
]
PORTS = ["", ":8000", ":0", ":65536", ":+80", ":٨٠", ":"]
URLS = [f"{scheme}://{host}{port}/v1" for scheme, host, port in itertools.product(("http", "https"), HOSTS, PORTS)]


def accepted(validate, url: str) -> bool:
    try:
        validate(url)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("allow_local", [False, True], ids=["remote", "local"])
def test_every_accepted_url_is_one_the_client_calls(allow_local, settings):
    settings.ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]
    validate = url_validator(allow_local=allow_local)
    passed = [url for url in URLS if accepted(validate, url)]
    assert "https://llm.example.com:8000/v1" in passed and "https://[2606:4700::6810:84e5]/v1" in passed
    for url in passed:
        client = yarl.URL(url)
        assert client.port == (8000 if ":8000/" in url else 443 if url.startswith("https") else 80), url
        host = client.host
        assert not is_private_host(host) or is_allowed_private_host(host) or (allow_local and is_loopback_host(host))


URL_ALPHABET = "hHtTpPsS:/[]@%.-_0123456789abcdefxXn ①２。．\u00a0\u00ad\u200b\\<>?#é"


@hypothesis.settings(max_examples=400, derandomize=True, deadline=None)
@hypothesis.given(tail=st.text(alphabet=URL_ALPHABET, max_size=40), scheme=st.sampled_from(["http://", "https://", ""]))
def test_any_text_is_refused_or_accepted_never_an_error(tail, scheme):
    url = scheme + tail
    for validate in (url_validator(), url_validator(allow_local=True)):
        if accepted(validate, url):
            yarl.URL(url).host  # noqa: B018 - the client parses what was accepted
