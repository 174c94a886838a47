"""Codes files for a downstream model (a language model over the codes), as NumPy arrays.

    import sda.codes
    codes = sda.codes.load("drums-codes.sda")     # written by `sda encode MODEL INPUT... --out drums-codes.sda`
    codes.codes[i]                                # [levels, T'_i] int64, codes in [0, codes.codec.codebook_size)
    codes.index[i]                                # the file it came from: path, seconds, sample_rate, channels, frames
    codes.model                                   # name, created, weights_sha256: the only model that decodes them
    codes.codec                                   # levels, codebook_size, sample_rate, frame_rate (positions a second)

Every check of sda.format.codesfile.load is made (shapes, dtypes, the index against the grids, code ranges, sizes):
a damaged or crafted file raises sda.errors.SdaError naming the file and what is wrong.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sda.format.codesfile import CodecInfo, Entry, ModelIdentity
from sda.format.codesfile import load as _load

__all__ = ["CodecInfo", "Codes", "Entry", "ModelIdentity", "load"]


@dataclass(frozen=True)
class Codes:
    """A codes file: codes[i] is the grid [levels, index[i].frames] (int64) of the file index[i] describes."""

    codes: tuple[np.ndarray, ...]
    index: tuple[Entry, ...]
    model: ModelIdentity
    codec: CodecInfo

    def __len__(self) -> int:
        return len(self.codes)


def load(path: str | Path) -> Codes:
    """The codes file at path, checked whole (SdaError if it is damaged or not a codes file)."""
    loaded = _load(Path(path))
    return Codes(tuple(grid.numpy() for grid in loaded.grids), loaded.entries, loaded.model, loaded.codec)
