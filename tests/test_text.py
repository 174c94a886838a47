import os

from sda.text import printable


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
