"""The compiled statements' converters give the very values the ORM's converters give."""

import pytest
from django.db import connection
from django.db.models import JSONField

from core.rows import fast_converter
from endpoints.models import Endpoint

STORED = [
    '["timeout", "server_error"]', "[]", "{}", '{"a": 1, "b": [true, false, null, "x"]}', '{"a": 1, "a": 2}',
    "1.5", "[0.1, 1e400, -0.0]", '{"n": 1.0}', "12345678901234567890123456789", "-9223372036854775809",
    "9223372036854775807", "-0", "NaN", "[Infinity]", '"\\ud800"', '"\\u2028 \\u0000 é"', '"text"', "null", "true",
    "not json", "", "[1,]", ' ["spaced"] ', '{"deep": [[[[{"x": [1, "2"]}]]]]}',
]


@pytest.mark.parametrize("stored", STORED)
@pytest.mark.parametrize("field", [JSONField(), Endpoint._meta.get_field("fallback_on")], ids=["json", "subclass"])
def test_a_json_column_reads_as_the_field_reads_it(field, stored):
    expected = field.from_db_value(stored, None, connection)
    converted = fast_converter(field.from_db_value, connection)(stored, None, connection)
    assert repr(converted) == repr(expected)
    assert type(converted) is type(expected)


def test_a_json_field_with_its_own_decoder_keeps_its_converter():
    import json

    class Decoder(json.JSONDecoder):
        pass

    field = JSONField(decoder=Decoder)
    assert fast_converter(field.from_db_value, connection) == field.from_db_value
