"""The shared command grammar: options typed on a phone, dashes in the prompt."""

from __future__ import annotations

import pytest

from adapters.commands import ParsedCommand, parse_command_text
from bot.errors import RequestRejected


@pytest.mark.parametrize(
    "typed",
    [
        "a fox --ar 9:16",
        "a fox \u2010\u2010ar 9:16",  # hyphens
        "a fox \u2011\u2011ar 9:16",  # non-breaking hyphens
        "a fox \u2012\u2012ar 9:16",  # figure dashes
        "a fox \u2013ar 9:16",  # an en dash for "--"
        "a fox \u2014ar 9:16",  # an em dash for "--" (iOS smart punctuation)
        "a fox \u2013\u2013ar 9:16",
        "a fox \u2015\u2015ar 9:16",  # horizontal bars
        "a fox \u2212\u2212ar 9:16",  # minus signs
        "a fox \ufe58\ufe58ar 9:16",  # small em dashes
        "a fox \ufe63\ufe63ar 9:16",  # small hyphen-minus
        "a fox \uff0d\uff0dar 9:16",  # fullwidth hyphen-minus
        "a fox \uff0d\uff0d\uff41\uff52 9:16",  # fullwidth letters too
        "a fox \u2014ar=9:16",
        "a fox \u2014AR 9:16",
    ],
)
def test_a_phones_dashes_still_make_an_option(typed: str) -> None:
    assert parse_command_text(typed) == ParsedCommand(prompt="a fox", aspect_ratio="9:16")


def test_every_option_takes_a_phones_dashes() -> None:
    parsed = parse_command_text("a fox \u2014model veo \u2010\u2010quality 4k \uff0dq 2k")
    assert parsed == ParsedCommand(prompt="a fox", model="veo", quality="2k")
    assert parse_command_text("a fox \u2010m veo").model == "veo"


@pytest.mark.parametrize(
    "prompt",
    [
        "a fox \u2014 in the snow",
        "a well\u2010known fox, \u2212 20 degrees",
        "the years 1990\u20132000",
        "a fox \u2014wild and free\u2014 at dawn",
        "a sign that says \uff0d\uff0dopen",
    ],
)
def test_dashes_inside_the_prompt_stay_as_typed(prompt: str) -> None:
    assert parse_command_text(f"{prompt} --ar 1:1") == ParsedCommand(
        prompt=prompt, aspect_ratio="1:1"
    )


def test_an_unknown_option_is_named_without_control_characters() -> None:
    with pytest.raises(RequestRejected) as info:
        parse_command_text("a fox --se\u202eed 3")
    assert info.value.message == (
        "I don't know the option --seed. Options are: --model NAME, --ar 16:9, --quality 4k."
    )
