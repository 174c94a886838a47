"""The optional C++ extension sda._sdafile, or the pure-Python stand-in for each of its functions.

BACKEND is "cpp" or "python". SDA_PURE_PYTHON=1 forces the fallback (tests use it to run both).
"""

import os
import warnings
import zlib

_ext = None
if os.environ.get("SDA_PURE_PYTHON") != "1":
    try:
        from sda import _sdafile as _ext
    except ImportError as exc:
        warnings.warn(
            f"sda: the C++ extension sda._sdafile is not available ({exc}); using the slower "
            "pure-Python fallback. Reinstall with a C++ compiler present (pip install -e .) to build it.",
            RuntimeWarning,
            stacklevel=2,
        )

BACKEND = "cpp" if _ext is not None else "python"


def crc32(data, value: int = 0) -> int:
    """CRC-32 (zlib polynomial) of a bytes-like object, continuing from value."""
    if _ext is not None:
        return _ext.crc32(data, value)
    return zlib.crc32(data, value)
