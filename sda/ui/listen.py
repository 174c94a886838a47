"""Listening in the Models tab: one audio file through a model, at every depth of its RVQ, as files to play.

    store = TakeStore()                                      # the app's own temporary folder, pruned
    heard = listen(model, wave, rate, "kick.wav", store.new_folder())   # a Listening: wavs written, figures
    store.close()                                            # the folder and all in it removed

All the codec work is sda.model.codec.reconstruct, once per depth l = 1..L (its `levels`): what the first l
levels give, so the page can show how much each level adds. The wavs are written under the store's folder;
Gradio copies each one it serves into its own cache when the handler returns, so only the last few
reconstructions' folders are kept (KEPT), whatever the number of pages: disk use stays bounded.
"""

import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from sda.data.audio import write_audio
from sda.model import codec
from sda.model.quality import Quality
from sda.model.vqvae import ConvVQVAE
from sda.ui.spectrogram import Panel, spectrogram_html

KEPT = 4  # reconstruction folders kept at once, app-wide (each is replaced by later ones)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Take:
    """What the first `levels` levels give: the wav, and its quality figures against the input."""

    levels: int
    path: Path
    quality: Quality
    gain_db: float
    limited_db: float


@dataclass(frozen=True)
class Listening:
    """One file through one model: the input as decoded, a Take per depth (the last is all levels), the code grid
    size and the spectrograms of input and full reconstruction (an SVG, sda.ui.spectrogram)."""

    source: str  # the file's name as the user gave it (escaped where shown)
    seconds: float
    rate: int  # the input's, and so the reconstructions'
    channels: int
    positions: int  # T' of the code grid
    codebook_size: int
    original: Path
    takes: tuple[Take, ...]
    spectrogram: str

    @property
    def full(self) -> Take:
        return self.takes[-1]


class TakeStore:
    """The app's temporary folder of reconstructions: a fresh sub-folder for each, the oldest beyond KEPT removed."""

    def __init__(self, kept: int = KEPT):
        self.root = Path(tempfile.mkdtemp(prefix="sda-ui-listen-"))  # under the system's temp dir: Gradio serves it
        self.kept, self._lock = kept, threading.Lock()
        self._folders: list[Path] = []

    def new_folder(self) -> Path:
        with self._lock:
            folder = Path(tempfile.mkdtemp(dir=self.root))
            self._folders.append(folder)
            while len(self._folders) > self.kept:
                shutil.rmtree(self._folders.pop(0), ignore_errors=True)
            return folder

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def safe_stem(name: str) -> str:
    """A file name's stem reduced to letters, digits and . _ - (at most 60), for the wavs offered as downloads."""
    stem = _UNSAFE.sub("_", Path(name).stem).strip("._-")[:60]
    return stem or "audio"


def take_name(stem: str, levels: int, total: int) -> str:
    if levels == total:
        return f"{stem}.reconstruction.wav"
    return f"{stem}.first-{levels}-level{'s' if levels > 1 else ''}.wav"


def listen(model: ConvVQVAE, wave: torch.Tensor, rate: int, source: str, folder: Path,
           on_level: Callable[[int, int], None] | None = None) -> Listening:
    """wave [C, S] at rate through the model at every depth; wavs in folder (the original as decoded, as 16-bit).
    on_level(done, total): called before each depth and after the last, for a progress bar."""
    total, stem = model.config.rvq_levels, safe_stem(source)
    original = folder / f"{stem}.original.wav"
    write_audio(original, wave, rate)
    takes, full = [], None
    for levels in range(1, total + 1):
        if on_level:
            on_level(levels - 1, total)
        result = codec.reconstruct(model, wave, rate, levels=levels)
        path = folder / take_name(stem, levels, total)
        write_audio(path, result.wave, result.rate)
        takes.append(Take(levels, path, result.quality, result.gain_db, result.limited_db))
        full = result
    assert full is not None  # a model has 2 levels at least
    if on_level:
        on_level(total, total)
    panels = (Panel(f"original: {source}", full.input_mel),
              Panel(f"reconstruction, all {total} levels (the decoder's log-mel)", full.mel))
    seconds = wave.shape[-1] / rate
    return Listening(source, seconds, rate, wave.shape[0] if wave.dim() == 2 else 1, full.codes.shape[1],
                     int(model.config.codebook_size or 0), original, tuple(takes),
                     spectrogram_html(_trimmed(panels, model, wave, rate), model.config.audio, seconds))


def _trimmed(panels: tuple[Panel, ...], model: ConvVQVAE, wave: torch.Tensor, rate: int) -> tuple[Panel, ...]:
    """The panels cut to the input's own frames: the padding the model needs is silence nobody gave."""
    frames = max(1, -(-wave.shape[-1] * model.config.audio.sample_rate // rate) // model.config.audio.hop_length)
    return tuple(Panel(p.title, p.log_mel[:, :frames]) for p in panels)
