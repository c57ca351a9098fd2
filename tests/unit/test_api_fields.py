"""The regular expressions the API states its bounds with, and its strict fields: what the schema
accepts the API accepts, and the other way round."""
import random
import re

import pytest
from rest_framework import serializers

from marketplace.api import AmountField, StrictCharField, StrictTextField, decimal_at_most_pattern


@pytest.mark.parametrize("maximum", [1, 9, 10, 99, 100, 101, 250, 1000, 2**16 - 1, 10**18, 2**88 - 1, 2**256 - 1])
def test_the_pattern_matches_exactly_one_to_the_maximum(maximum):
    pattern = re.compile(decimal_at_most_pattern(maximum))
    rng = random.Random(maximum)
    probes = {0, 1, 2, 9, 10, 11, maximum - 1, maximum, maximum + 1, maximum * 10, 10 ** len(str(maximum))}
    probes |= {rng.randrange(0, maximum * 3 + 2) for _ in range(2000)}
    for value in probes:
        if value >= 0:
            assert bool(pattern.fullmatch(str(value))) == (1 <= value <= maximum), value
    for text in ("", "01", "00", "-1", "+1", "1.0", "1e3", " 1", "1 ", "١"):  # the last is an Arabic-Indic 1
        assert not pattern.fullmatch(text), text


def test_the_pattern_is_valid_json_schema_syntax():
    """Only ^, $, (?:...), [a-b], {m,n} and alternation: the same in ECMAScript and Python."""
    pattern = decimal_at_most_pattern(2**88 - 1)
    assert re.fullmatch(r"\^\(\?:[0-9\[\]\-{},|]+\)\$", pattern)


def amount(value):
    field = AmountField(maximum=lambda: 1000)
    return field.run_validation(value)


def test_an_amount_is_a_string_of_digits_within_the_bound():
    assert amount("1000") == 1000 and amount("7") == 7
    for refused in ("0", "1001", "1.0", "1e3", "abc", 5, 5.0, True, ["5"]):
        with pytest.raises(serializers.ValidationError, match="whole digits, from 1 to 1000"):
            amount(refused)
    with pytest.raises(serializers.ValidationError, match="may not be null"):
        amount(None)


@pytest.mark.parametrize("value, ok", [
    ("Ada", True), ("  Ada  ", True), ("", False), ("   ", False), ("A\tB", False), ("A\nB", False),
    ("A\x00", False), ("\x7f", False), (12, False), (True, False), ("Ünïcode ✓", True), ("a" * 41, False),
])
def test_a_line_field_takes_one_line_of_text_as_sent(value, ok):
    field = StrictCharField(max_length=40)
    if ok:
        assert field.run_validation(value) == value  # not trimmed: the schema's maxLength counts every character
    else:
        with pytest.raises(serializers.ValidationError):
            field.run_validation(value)


@pytest.mark.parametrize("value, ok", [("# Title\n\nText\twith tabs", True), ("", True), ("a\x00b", False), (3, False)])
def test_a_text_field_takes_lines_but_no_nul(value, ok):
    field = StrictTextField(allow_blank=True)
    if ok:
        assert field.run_validation(value) == value
    else:
        with pytest.raises(serializers.ValidationError):
            field.run_validation(value)
