"""Widget properties: known names and value formats (spec: operation 8)."""

from __future__ import annotations

import pytest

from pinbase.domain.errors import Invalid
from pinbase.domain.properties import MAX_PROPERTY_LENGTH, PROPERTY_NAMES, parse_property

TEXT = ["label", "onLabel", "offLabel", "suffix", "valueFormatting"]
COLOURS = ["color", "onColor", "offColor", "onBackColor", "offBackColor"]
BOOLEANS = ["isDisabled", "isHidden", "isOnPlay", "isMuted"]
NUMBERS = ["min", "max", "step"]
PERCENTS = ["opacity", "scale"]


def test_property_names_are_exactly_the_spec_list() -> None:
    spec = {
        *TEXT,
        *COLOURS,
        *BOOLEANS,
        *NUMBERS,
        "maximumFractionDigits",
        *PERCENTS,
        "rotation",
        "url",
        "labels",
        "urls",
    }
    assert set(PROPERTY_NAMES) == spec
    assert len(PROPERTY_NAMES) == len(spec)


VALID = [
    *[(name, value) for name in TEXT for value in ["Temperature", "", "°C", "#FF0000", "a b"]],
    *[(name, value) for name in COLOURS for value in ["#FF0000", "#00ff00", "#FF000080"]],
    ("color", "#aBcDeF"),
    ("color", "red"),
    ("onColor", "Red"),
    ("offBackColor", "transparent"),
    *[(name, value) for name in BOOLEANS for value in ["true", "false"]],
    *[(name, value) for name in NUMBERS for value in ["0", "-5", "2.5", "1e3", "-0.001"]],
    *[("maximumFractionDigits", str(n)) for n in range(11)],
    *[(name, value) for name in PERCENTS for value in ["0", "100", "50", "12.5"]],
    *[("rotation", value) for value in ["0", "360", "90", "180.5"]],
    ("url", "http://example.com"),
    ("url", "https://example.com/path?q=1#frag"),
    ("url", "HTTPS://EXAMPLE.COM"),
    ("labels", '["Off", "On"]'),
    ("labels", "[]"),
    ("labels", '["", "x"]'),
    ("urls", '["https://a.example/1.png", "http://b.example"]'),
    ("urls", "[]"),
]


@pytest.mark.parametrize(("name", "value"), VALID)
def test_well_formed_values_are_accepted(name: str, value: str) -> None:
    parse_property(name, value)


INVALID = [
    # colours
    *[(name, value) for name in COLOURS for value in ["#FFF", "FFF", "", "notacolour", "##FF0000"]],
    ("color", "#GG0000"),
    ("color", "#FF00000"),
    ("color", "#FF0000800"),
    ("color", " #FF0000"),
    ("color", "#FF0000\n"),
    ("color", "rgb(255,0,0)"),
    # booleans
    *[(name, value) for name in BOOLEANS for value in ["yes", "", "2", "01", " true", "t"]],
    # numbers
    *[(name, value) for name in NUMBERS for value in ["nan", "inf", "-inf", "abc", "", "1_0"]],
    # maximumFractionDigits
    ("maximumFractionDigits", "11"),
    ("maximumFractionDigits", "-1"),
    ("maximumFractionDigits", "1.0"),
    ("maximumFractionDigits", "2.5"),
    ("maximumFractionDigits", ""),
    ("maximumFractionDigits", "two"),
    ("maximumFractionDigits", "٣"),  # a non-ASCII digit
    # opacity / scale / rotation
    *[(name, value) for name in PERCENTS for value in ["-1", "100.01", "101", "nan", "abc"]],
    ("rotation", "-0.5"),
    ("rotation", "360.5"),
    ("rotation", "720"),
    ("rotation", "inf"),
    # url
    ("url", "ftp://example.com"),
    ("url", "javascript:alert(1)"),
    ("url", "file:///etc/passwd"),
    ("url", "example.com"),
    ("url", "//example.com"),
    ("url", "http://"),
    ("url", "https://exa mple.com"),
    ("url", "http://[::1"),
    ("url", ""),
    # labels / urls
    ("labels", '"Off"'),
    ("labels", '["Off", 1]'),
    ("labels", '[["Off"]]'),
    ("labels", '{"0": "Off"}'),
    ("labels", "Off,On"),
    ("labels", "[Off, On]"),
    ("labels", ""),
    ("labels", "null"),
    ("urls", '["ftp://example.com"]'),
    ("urls", '["https://ok.example", "not a url"]'),
    ("urls", '"https://example.com"'),
    ("urls", "[1]"),
]


@pytest.mark.parametrize(("name", "value"), INVALID)
def test_badly_formatted_values_are_rejected(name: str, value: str) -> None:
    with pytest.raises(Invalid) as err:
        parse_property(name, value)
    assert f"'{name}'" in str(err.value)


STORED_FORMS = [
    *[(name, "E4F6F7", "#E4F6F7") for name in COLOURS],
    ("color", "#e4f6f7", "#E4F6F7"),
    ("color", "e4f6f7", "#E4F6F7"),
    ("color", "#E4F6F7", "#E4F6F7"),
    ("color", "ff000080", "#FF000080"),
    ("onColor", "Red", "red"),
    *[(name, value, "true") for name in BOOLEANS for value in ["true", "1", "True", "TRUE"]],
    *[(name, value, "false") for name in BOOLEANS for value in ["false", "0", "False", "FALSE"]],
    ("label", "E4F6F7", "E4F6F7"),  # only colours gain a '#'
    ("label", "1", "1"),  # only booleans become true/false
    ("step", "1", "1"),
    ("labels", '["Off", "On"]', '["Off", "On"]'),
]


@pytest.mark.parametrize(("name", "value", "stored"), STORED_FORMS)
def test_each_accepted_form_is_stored_in_one_form(name: str, value: str, stored: str) -> None:
    assert parse_property(name, value) == stored


@pytest.mark.parametrize("name", ["colour", "Color", "COLOR", "", "value", "pin", "labels "])
def test_unknown_property_is_rejected(name: str) -> None:
    with pytest.raises(Invalid) as err:
        parse_property(name, "x")
    assert "Unknown widget property" in str(err.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("label", "x" * 200),
        ("suffix", "é" * 200),
        ("labels", '["' + "b" * 196 + '"]'),
    ],
)
def test_200_characters_is_the_limit_and_is_accepted(name: str, value: str) -> None:
    assert len(value) == MAX_PROPERTY_LENGTH == 200
    parse_property(name, value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("label", "x" * 201),
        ("suffix", "é" * 201),
        ("labels", '["' + "b" * 197 + '"]'),
        ("rotation", "0" * 200 + "1"),  # numerically fine, still too long
    ],
)
def test_201_characters_is_rejected(name: str, value: str) -> None:
    assert len(value) == 201
    with pytest.raises(Invalid) as err:
        parse_property(name, value)
    assert "200" in str(err.value)


@pytest.mark.parametrize("name", ["label", "valueFormatting", "url", "labels"])
def test_a_nul_character_is_rejected_in_any_property(name: str) -> None:
    """PostgreSQL text cannot hold U+0000, so no store is given one."""
    with pytest.raises(Invalid, match="NUL"):
        parse_property(name, "a\x00b")
