"""Builds the optional C++ extension sda._sdafile; everything else is in pyproject.toml.

The extension is optional by design: when it cannot be built (no compiler, no pybind11), pip
still installs sda and the package falls back to pure Python with a warning. `make test`
checks that it did build wherever a C++ compiler exists.
"""

import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that reports a failed extension build instead of failing the install."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure means: use the fallback
            self._report(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._report(exc)

    @staticmethod
    def _report(exc):
        print(
            f"WARNING: the C++ extension sda._sdafile was not built ({exc}); "
            "sda will use its pure-Python fallback",
            file=sys.stderr,
        )


def extensions():
    try:
        from pybind11.setup_helpers import Pybind11Extension
    except ImportError:
        print("WARNING: pybind11 is not installed; skipping the C++ extension", file=sys.stderr)
        return []
    return [Pybind11Extension("sda._sdafile", ["csrc/sdafile.cpp"], cxx_std=17, extra_compile_args=["-O3"])]


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
