import os

import pytest

from sda.text import ASCII_SPARKS, UNICODE_SPARKS, duration, printable, size, sparkline


def test_plain_text_is_unchanged():
    assert printable("kick 01 – Été.wav") == "kick 01 – Été.wav"


def test_terminal_escape_sequences_are_made_visible():
    osc52 = "kick\x1b]52;c;cm0gLXJmIH4=\x07.wav"
    assert printable(osc52) == "kick\\x1b]52;c;cm0gLXJmIH4=\\x07.wav"
    assert printable("a\tb\nc\x9bd\x7f") == "a\\x09b\\x0ac\\x9bd\\x7f"


def test_undecodable_bytes_show_as_the_byte_and_become_valid_unicode():
    name = os.fsdecode(b"bad_\xff\xfe.wav")
    shown = printable(name)
    assert shown == "bad_\\xff\\xfe.wav"
    shown.encode("utf-8")  # storable in JSON metadata


def test_bidi_overrides_are_escaped():
    assert printable("song\u202egpj.wav") == "song\\u202egpj.wav"


@pytest.mark.parametrize("seconds, text", [(0.74, "0.74 s"), (38.5, "38.50 s"), (59.999, "1 min 00 s"),
                                           (65, "1 min 05 s"), (3725, "1 h 02 min")])
def test_one_way_to_write_a_duration(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize("n_bytes, text", [(0, "0 B"), (999, "999 B"), (1500, "1.5 kB"), (12_345_678, "12.3 MB"),
                                           (4 * 10**9, "4.0 GB")])
def test_one_way_to_write_a_size(n_bytes, text):
    assert size(n_bytes) == text


def test_counts_agree_with_their_number():
    from sda.text import are, plural

    assert plural(1, "step") == "1 step" and plural(0, "step") == "0 steps" and plural(400, "epoch") == "400 epochs"
    assert plural(1, "process") == "1 process" and plural(2, "process") == "2 processes"
    assert f"{plural(1, 'file')} that {are(1)}" == "1 file that is" and are(2) == "are"


# The sparkline: block characters, or ASCII for a terminal that cannot show them.

def test_a_sparkline_has_one_character_per_value_from_low_to_high():
    assert sparkline([0.0, 0.5, 1.0], low=0, high=1) == "▁▅█"
    assert sparkline([0.0, 0.5, 1.0], low=0, high=1, unicode=False) == "_+@"
    assert sparkline([2, 4, 6]) == "▁▅█"  # without low and high: the values' own range
    assert sparkline([5, -3, 99], low=0, high=1) == "█▁█"  # outside the range: clipped to its ends


def test_a_sparkline_shows_gaps_for_values_without_a_figure():
    values = [None, float("nan"), 0.5, float("inf"), 1.0]
    assert sparkline(values, low=0, high=1) == f"{UNICODE_SPARKS.gap * 2}▅{UNICODE_SPARKS.gap}█"
    assert sparkline(values, low=0, high=1, unicode=False) == "..+.@"
    assert sparkline([None, None]) == "··"


def test_a_constant_series_sits_mid_height_and_an_empty_one_is_empty():
    assert sparkline([0.3] * 4) == "▄▄▄▄" and sparkline([7]) == "▄"
    assert sparkline([1.0] * 3, low=0, high=1) == "███"  # with a scale, its place on it
    assert sparkline([]) == "" and sparkline([], unicode=False) == ""


def test_a_long_series_is_resampled_to_the_width_keeping_each_columns_lowest():
    values = [1.0] * 100
    values[37] = 0.0  # one dip among a hundred values
    line = sparkline(values, low=0, high=1, width=10)
    assert line == "███▁██████"
    assert len(sparkline(list(range(1000)), width=40)) == 40 and len(sparkline(list(range(7)), width=40)) == 7
    assert sparkline([None] * 5 + [1.0] * 5, low=0, high=1, width=5) == "··███"  # a run all gaps stays a gap


def test_the_ascii_sparkline_encodes_to_ascii():
    text = sparkline([None, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0], low=0, high=1, unicode=False)
    assert text.encode("ascii") and len(set(ASCII_SPARKS.ramp)) == len(UNICODE_SPARKS.ramp)
    assert ASCII_SPARKS.gap not in ASCII_SPARKS.ramp and UNICODE_SPARKS.gap not in UNICODE_SPARKS.ramp
