"""Text from files, folders and users made safe to show: the one place every frontend goes through.

    printable("kick\x1b]52;c;...\x07.wav")   # 'kick\\x1b]52;c;...\\x07.wav': no escape sequence reaches a terminal
    printable(os.fsdecode(b"bad_\xff.wav"))  # 'bad_\\xff.wav': an undecodable byte, shown as the byte it was

A terminal runs what it is sent (colour, cursor moves, title and clipboard writes: OSC 52), and a file name
or a metadata string can hold any of it; Unicode bidi controls can make a name read backwards. Python
decodes file names that are not valid UTF-8 with surrogateescape: such a name opens the file, but cannot
be encoded to UTF-8, so it cannot go into metadata or a web page as it is.

Also the one way sda writes a duration or a size, for every frontend and message:

    duration(0.74), duration(38.5), duration(65), duration(3725)   # '0.74 s', '38.50 s', '1 min 05 s', '1 h 02 min'
    size(512), size(1500), size(12_345_678)                        # '512 B', '1.5 kB', '12.3 MB'

And the one sparkline, with a plain-ASCII form for a terminal that cannot show block characters:

    sparkline([0.1, 0.5, None, 1.0], low=0, high=1)                # '▂▅·█': None (or NaN) is a gap
    sparkline([0.1, 0.5, None, 1.0], low=0, high=1, unicode=False) # '-+.@'
"""

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

# Bidirectional overrides and isolates: they reorder what follows them on screen ("gpj.exe" tricks).
_BIDI = {*range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the undecodable byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cs") or ord(char) in _BIDI


def printable(text: str) -> str:
    """text with every control character, lone surrogate and bidi control written as a visible escape
    (\\xNN or \\uNNNN); tab and newline too, so one value stays on one line. The result is valid Unicode
    that a terminal shows as it is, and that JSON metadata can hold."""
    text = str(text)
    if not any(_unsafe(c) for c in text):
        return text
    return "".join(_escape(c) if _unsafe(c) else c for c in text)


def printable_lines(text: str) -> str:
    """printable() of each line: a multi-line text for a terminal, its own line breaks kept."""
    return "\n".join(printable(line) for line in str(text).split("\n"))


def plural(n: int, noun: str) -> str:
    """'1 step', '3 steps', '2 processes': English plurals by -s (-es after an s), for the nouns sda counts."""
    return f"{n} {noun if n == 1 else noun + ('es' if noun.endswith('s') else 's')}"


def are(n: int) -> str:
    """The verb that agrees with a count: '1 file that is', '2 files that are'."""
    return "is" if n == 1 else "are"


def duration(seconds: float) -> str:
    """'0.74 s' (a sample's length needs the hundredths), '1 min 05 s', '1 h 02 min'."""
    if round(seconds, 2) < 60:
        return f"{seconds:.2f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def size(n_bytes: int) -> str:
    """'512 B', '1.5 kB', '12.3 MB', '4.0 GB': decimal units, one decimal from kB up."""
    value, unit = float(n_bytes), "B"
    for larger in ("kB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{n_bytes} B" if unit == "B" else f"{value:.1f} {unit}"


@dataclass(frozen=True)
class Sparks:
    """The characters of a sparkline: its ramp, lowest first, and the mark of a point without a figure."""

    ramp: str
    gap: str


UNICODE_SPARKS = Sparks("▁▂▃▄▅▆▇█", "·")
ASCII_SPARKS = Sparks("_-~=+*#@", ".")  # densest last, none of them the gap's "."


def sparks(unicode: bool) -> Sparks:
    return UNICODE_SPARKS if unicode else ASCII_SPARKS


def sparkline(values: Sequence[float | None], *, low: float | None = None, high: float | None = None,
              width: int = 40, unicode: bool = True) -> str:
    """One character per value, its height from low to high (default: the values' own range; a constant series
    sits mid-height); None, NaN and infinities are gaps. Past `width` values, each character stands for a run of
    neighbours and shows their lowest figure, so a dip stays visible however long the series; a run that is all
    gaps is a gap. '' for no values."""
    chars = sparks(unicode)
    points = [_lowest(run) for run in _runs(list(values), width)]
    figures = [p for p in points if p is not None]
    low = min(figures, default=0.0) if low is None else low
    high = max(figures, default=0.0) if high is None else high
    top = len(chars.ramp) - 1

    def height(value: float) -> int:
        if high <= low:
            return top // 2
        return min(top, max(0, round((value - low) / (high - low) * top)))

    return "".join(chars.gap if p is None else chars.ramp[height(p)] for p in points)


def _runs(values: list, width: int) -> list[list]:
    """values split into at most `width` runs of neighbours, as even in length as can be."""
    count = min(len(values), max(1, width))
    return [values[i * len(values) // count:(i + 1) * len(values) // count] for i in range(count)]


def _lowest(run: list) -> float | None:
    figures = [float(v) for v in run if v is not None and math.isfinite(v)]
    return min(figures) if figures else None
