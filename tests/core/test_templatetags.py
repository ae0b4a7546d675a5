"""`name_url`: the list page's cheap stand-in for `{% url %}` must give exactly what `reverse()` gives."""

import pytest
from django.template import Context, Template
from django.urls import reverse, set_script_prefix

from core.templatetags.settings_ui import name_url

ROUTES = ["connections:edit", "connections:delete", "connections:history", "connections:test", "endpoints:edit"]
NAMES = ["openai-prod", "a_b-9", "Ünïcode name", "odd ?#%&=+;:@~!$'()*,", "space here", "x" * 64]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("name", NAMES)
def test_it_builds_the_same_url_as_reverse(route, name):
    assert name_url(route, name) == reverse(route, args=[name])


def test_it_follows_the_script_prefix():
    try:
        set_script_prefix("/behind/proxy/")
        assert name_url("connections:edit", "prod") == reverse("connections:edit", args=["prod"])
        assert name_url("connections:edit", "prod").startswith("/behind/proxy/")
    finally:
        set_script_prefix("/")


def test_the_tag_escapes_like_the_url_tag():
    template = Template("{% load settings_ui %}{% name_url 'connections:edit' name %}|{% url 'connections:edit' name %}")
    mine, django_s = template.render(Context({"name": "a'b&c"})).split("|")
    assert mine == django_s
