import os

import pytest

from sda.text import duration, printable, size


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
