"""The optional C++ extension sda._sdafile, as `extension`, or None (sda.format.container then does the
byte work in pure Python). SDA_PURE_PYTHON=1 forces None (tests use it to run both)."""

import importlib
import os
import warnings
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("SDA_PURE_PYTHON") == "1":
        return None
    try:
        return importlib.import_module("sda._sdafile")
    except ImportError as exc:
        warnings.warn(
            f"sda: the C++ extension sda._sdafile is not available ({exc}); using the slower "
            "pure-Python fallback. Reinstall with a C++ compiler present (pip install -e .) to build it.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


extension = _load()
