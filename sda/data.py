"""From a folder of audio files to cached log-mel training chunks, with a report of what was used and why.

`preflight(folder)` decodes every candidate file and returns a `Preflight` report (usable files, what was
skipped or rejected and why, chunk counts, the automatic codebook size, the memory the cache will take)
without keeping any audio. `load_dataset(folder, config)` does the same pass while turning each usable
file into fixed-length mono chunks and their log-mels, split by file into training and validation.
Both go through `_decode`, so what the report promises is what training gets. Problems a user can fix
raise a `DataError` subclass whose message says what was found and what to do.

    report = preflight("~/samples/drums")           # print(report.format())
    data = load_dataset("~/samples/drums", VQVAEConfig())
    data.train_mels                                  # [N_train, n_mels, chunk_frames]
    data.config.codebook_size                        # the concrete config, resolved for this collection
"""

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch
import torch.nn.functional as F

from sda.audio import AUDIO_EXTENSIONS, LogMel, is_audio_file, read_audio, resample, to_mono
from sda.config import MIN_FILES, AudioConfig, VQVAEConfig, auto_codebook_size

SILENCE_PEAK = 1e-4  # about -80 dBFS: below this a file holds nothing to learn from
SILENT = "silent (peak below -80 dBFS)"
EMPTY = "empty (no samples)"
LISTED_FILES = 20  # the report lists every usable file up to this many, then summarises


class DataError(ValueError):
    """The folder cannot be trained on as it is; the message says what was found and what to do."""


class FolderNotFoundError(DataError):
    pass


class NoAudioError(DataError):
    pass


class TooFewFilesError(DataError):
    pass


class OnlySilenceError(DataError):
    pass


@dataclass(frozen=True)
class UsableFile:
    path: str  # relative to the folder, with / separators
    seconds: float
    sample_rate: int  # native
    channels: int
    chunks: int  # chunks used for training
    available_chunks: int  # chunks the file holds; more than `chunks` when capped at max_chunks_per_file

    @property
    def capped(self) -> bool:
        return self.available_chunks > self.chunks


@dataclass(frozen=True)
class Rejection:
    path: str
    reason: str


@dataclass(frozen=True)
class Preflight:
    """What a folder holds and how sda will use it. Everything derived is computed from these fields."""

    folder: Path
    audio: AudioConfig
    files: tuple[UsableFile, ...]
    skipped: tuple[Rejection, ...]  # not audio files
    rejected: tuple[Rejection, ...]  # audio files that cannot be used, and why
    train_indices: tuple[int, ...]  # into files
    val_indices: tuple[int, ...]

    @property
    def sample_rates(self) -> Counter:
        return Counter(f.sample_rate for f in self.files)

    @property
    def channels(self) -> Counter:
        return Counter(f.channels for f in self.files)

    @property
    def total_seconds(self) -> float:
        return sum(f.seconds for f in self.files)

    @property
    def n_chunks(self) -> int:
        return sum(f.chunks for f in self.files)

    @property
    def val_chunks(self) -> int:
        return sum(self.files[i].chunks for i in self.val_indices)

    @property
    def codebook_size(self) -> int:
        return auto_codebook_size(len(self.files))

    @property
    def memory_bytes(self) -> int:
        """The in-memory cache: float32 log-mels of every chunk, plus waveforms of the validation chunks."""
        mel = self.audio.n_mels * self.audio.chunk_frames
        return 4 * (self.n_chunks * mel + self.val_chunks * self.audio.chunk_samples)

    def format(self) -> str:
        a, n = self.audio, len(self.files)
        train_chunks = self.n_chunks - self.val_chunks
        lines = [
            f"{self.folder}",
            f"  {n} usable audio files, {_duration(self.total_seconds)} in all",
            f"  sample rates: {_counts(self.sample_rates, lambda sr: f'{sr} Hz')}",
            f"  channels: {_counts(self.channels, _channels)}",
            f"  -> {self.n_chunks} chunks of {a.chunk_seconds:.2f} s, mono at {a.sample_rate} Hz: {train_chunks} for "
            f"training ({_plural(len(self.train_indices), 'file')}), {self.val_chunks} for validation "
            f"({_plural(len(self.val_indices), 'file')})",
            f"  codebook size: {self.codebook_size} (auto for {n} files)",
            f"  memory for the cached chunks: {_size(self.memory_bytes)}",
        ]
        if n <= LISTED_FILES:
            width = max(len(f.path) for f in self.files)
            lines += [f"    {f.path:<{width}}  {_duration(f.seconds):>9}  {f.sample_rate:>6} Hz  "
                      f"{_channels(f.channels):<8}  {_plural(f.chunks, 'chunk')}" for f in self.files]
        else:
            by_length = sorted(self.files, key=lambda f: f.seconds)
            lines.append(f"  shortest {by_length[0].path} ({_duration(by_length[0].seconds)}), "
                         f"longest {by_length[-1].path} ({_duration(by_length[-1].seconds)})")
        capped = [f for f in self.files if f.capped]
        if capped:
            lines.append(f"  capped at {a.max_chunks_per_file} evenly spaced chunks: "
                         + ", ".join(f"{f.path} ({f.available_chunks} available)" for f in capped))
        if self.skipped:
            if len(self.skipped) <= 10:
                names = ", ".join(s.path for s in self.skipped)
            else:
                names = _counts(Counter(Path(s.path).suffix.lower() or "no extension" for s in self.skipped))
            lines.append(f"  skipped {_plural(len(self.skipped), 'file')} that are not audio: {names}")
        if self.rejected:
            lines.append(f"  rejected {_plural(len(self.rejected), 'audio file')}:")
            lines += [f"    {r.path}: {r.reason}" for r in self.rejected]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """A JSON-able summary, saved with the model so that it says what it was trained on."""
        return {
            "folder": str(self.folder),
            "files": [{"path": f.path, "seconds": round(f.seconds, 3), "sample_rate": f.sample_rate,
                       "channels": f.channels, "chunks": f.chunks} for f in self.files],
            "validation_files": [self.files[i].path for i in self.val_indices],
            "skipped": len(self.skipped),
            "rejected": [{"path": r.path, "reason": r.reason} for r in self.rejected],
            "sample_rates": {str(k): v for k, v in sorted(self.sample_rates.items())},
            "channels": {str(k): v for k, v in sorted(self.channels.items())},
            "total_seconds": round(self.total_seconds, 3),
            "chunks": self.n_chunks,
            "codebook_size": self.codebook_size,
            "memory_bytes": self.memory_bytes,
        }


@dataclass(frozen=True)
class Dataset:
    """The training data, cached in memory, and the config resolved for it."""

    preflight: Preflight
    config: VQVAEConfig  # concrete: codebook_size and batch_size decided for this collection
    train_mels: torch.Tensor  # [N_train, n_mels, chunk_frames] float32
    val_mels: torch.Tensor  # [N_val, n_mels, chunk_frames] float32
    val_audio: torch.Tensor  # [N_val, chunk_samples] float32, the waveforms of val_mels, for previews

    @property
    def train_files(self) -> list[UsableFile]:
        return [self.preflight.files[i] for i in self.preflight.train_indices]

    @property
    def val_files(self) -> list[UsableFile]:
        return [self.preflight.files[i] for i in self.preflight.val_indices]


def preflight(folder: str | Path, audio: AudioConfig | None = None, *, seed: int = VQVAEConfig.seed,
              validation_fraction: float = VQVAEConfig.validation_fraction) -> Preflight:
    """Decode every candidate file under folder and report what training would use; keeps no audio.

    audio=None means AudioConfig(); seed and validation_fraction decide the split, as in VQVAEConfig.
    """
    audio = audio or AudioConfig()
    audio.validate()
    report, _ = _survey(folder, audio, seed, validation_fraction)
    return report


def load_dataset(folder: str | Path, config: VQVAEConfig) -> Dataset:
    """One decoding pass: the report, plus every usable file's chunks as cached log-mels.

    Waveforms are kept only for validation chunks. Which files validate is known only once every file
    has been decoded (the split depends on how many are usable), so rather than holding every waveform
    until then, the few validation files are read again at the end.
    """
    audio = config.validate().audio
    log_mel = LogMel(audio)
    with torch.no_grad():
        report, mels = _survey(folder, audio, config.seed, config.validation_fraction, keep=log_mel)
        val_audio = _validation_audio(report)
    train_mels = torch.cat([mels[i] for i in report.train_indices])
    return Dataset(
        preflight=report,
        config=config.resolve(n_files=len(report.files), n_train_chunks=train_mels.shape[0]),
        train_mels=train_mels,
        val_mels=torch.cat([mels[i] for i in report.val_indices]),
        val_audio=val_audio,
    )


def _validation_audio(report: Preflight) -> torch.Tensor:
    """[N_val, chunk_samples]: the validation files decoded again (see load_dataset)."""
    try:
        chunks = [_decode(report.folder, report.files[i].path, report.audio)[1] for i in report.val_indices]
    except _Unusable as why:
        raise DataError(f"A validation file changed while loading ({why}): run again.") from None
    if sum(len(c) for c in chunks) != report.val_chunks:
        raise DataError("A validation file changed length while loading: run again.")
    return torch.cat(chunks)


def split_files(n_files: int, seed: int, validation_fraction: float) -> tuple[list[int], list[int]]:
    """Split file indices 0..n_files-1 into (train, validation), both sorted and non-empty.

    By file, not by chunk: chunks of one recording are too alike to tell whether the model generalises.
    """
    if n_files < 2 or not 0 < validation_fraction < 1:
        raise ValueError(f"cannot split {n_files} files with validation_fraction={validation_fraction}")
    n_val = min(max(1, round(n_files * validation_fraction)), n_files - 1)
    order = torch.randperm(n_files, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[n_val:]), sorted(order[:n_val])


class _Unusable(Exception):
    """Why one file cannot be used; recorded in the report, fatal only if too few files remain."""


def _survey(folder: str | Path, audio: AudioConfig, seed: int, validation_fraction: float,
            keep: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[Preflight, list[torch.Tensor]]:
    """The pass shared by preflight and load_dataset: (Preflight, [keep(chunks) per usable file])."""
    folder = _check_folder(folder)
    candidates, skipped = _scan(folder)
    if not candidates:
        what = f"skipped {_plural(len(skipped), 'other file')}" if skipped else "the folder is empty"
        raise NoAudioError(f"No audio files in {folder} (looked for {' '.join(AUDIO_EXTENSIONS)} in it and its "
                           f"subfolders; {what}). Add audio files, or choose the folder that holds them.")
    files, rejected, kept = [], [], []
    for name in candidates:
        try:
            info, chunks = _decode(folder, name, audio)
        except _Unusable as why:
            rejected.append(Rejection(name, str(why)))
            continue
        files.append(info)
        if keep is not None:
            kept.append(keep(chunks))
    _check_enough(folder, files, rejected)
    train, val = split_files(len(files), seed, validation_fraction)
    report = Preflight(folder, audio, tuple(files), tuple(skipped), tuple(rejected), tuple(train), tuple(val))
    return report, kept


def _check_folder(folder) -> Path:
    path = Path(folder).expanduser()
    if not path.exists():
        raise FolderNotFoundError(f"{path} does not exist: check the path to your audio folder.")
    if not path.is_dir():
        raise FolderNotFoundError(f"{path} is a file, not a folder: give the folder that holds your audio files "
                                  f"(this one is in {path.parent}).")
    return path


def _scan(folder: Path) -> tuple[list[str], list[Rejection]]:
    """Audio files under folder (relative paths) and the other files skipped; hidden ones are ignored."""
    audio, skipped = [], []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # os.walk descends only into what is left
        for name in names:
            if name.startswith("."):
                continue
            path = (Path(root) / name).relative_to(folder).as_posix()
            if is_audio_file(name):
                audio.append(path)
            else:
                skipped.append(Rejection(path, f"not an audio file ({Path(name).suffix or 'no extension'})"))
    return sorted(audio), sorted(skipped, key=lambda s: s.path)


def _decode(folder: Path, name: str, audio: AudioConfig) -> tuple[UsableFile, torch.Tensor]:
    """Decode one file into its training chunks [n, chunk_samples] (mono, at audio.sample_rate)."""
    try:
        wave, sample_rate = read_audio(folder / name)
    except sf.LibsndfileError as exc:
        raise _Unusable(f"could not decode: {exc.error_string.rstrip('.')}") from None
    except (RuntimeError, OSError, ValueError) as exc:  # other decoder failures, unreadable files
        raise _Unusable(f"could not decode: {str(exc)[:80]}") from None
    channels, samples = wave.shape
    if samples == 0:
        raise _Unusable(EMPTY)
    if not torch.isfinite(wave).all():
        raise _Unusable("contains NaN or infinite samples")
    if wave.abs().max() < SILENCE_PEAK:
        raise _Unusable(SILENT)
    chunks, available = _chunk(resample(to_mono(wave), sample_rate, audio.sample_rate), audio)
    return UsableFile(name, samples / sample_rate, sample_rate, channels, len(chunks), available), chunks


def _chunk(mono: torch.Tensor, audio: AudioConfig) -> tuple[torch.Tensor, int]:
    """[S] -> (chunks [n, chunk_samples], chunks the file holds before the max_chunks_per_file cap).

    Short files become one zero-padded chunk (one-shots are the common case); a trailing remainder is
    kept, padded, when it is at least a quarter of a chunk, as less would be mostly padding.
    """
    size, cap = audio.chunk_samples, audio.max_chunks_per_file
    full, rest = divmod(mono.shape[0], size)
    n = max(1, full + (4 * rest >= size))
    chunks = F.pad(mono, (0, max(0, n * size - mono.shape[0])))[: n * size].reshape(n, size)
    if n > cap:  # the middle chunk of each of cap equal stretches of the file
        chunks = chunks[[(2 * i + 1) * n // (2 * cap) for i in range(cap)]]
    return chunks, n


def _check_enough(folder: Path, files: list[UsableFile], rejected: list[Rejection]) -> None:
    silent = [r for r in rejected if r.reason == SILENT]
    if not files and silent:
        raise OnlySilenceError(
            f"No usable audio in {folder}: {_plural(len(silent), 'file')} decoded but "
            f"{'is' if len(silent) == 1 else 'are'} silent, and none has sound above -80 dBFS. "
            f"Rejected: {_list(rejected)}. Check that the files are not blank exports, or choose another folder.")
    if len(files) < MIN_FILES:
        found = f"{_plural(len(files), 'usable audio file')} in {folder}, sda needs at least {MIN_FILES}"
        why = f" Rejected: {_list(rejected)}." if rejected else ""
        raise TooFewFilesError(f"{found}.{why} Add more audio files to the folder (short one-shots are fine).")


def _list(rejections: list[Rejection], limit: int = 10) -> str:
    shown = ", ".join(f"{r.path} ({r.reason})" for r in rejections[:limit])
    return shown + (f", and {len(rejections) - limit} more" if len(rejections) > limit else "")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _channels(n: int) -> str:
    return {1: "mono", 2: "stereo"}.get(n, f"{n} channels")


def _counts(counter: Counter, label=str) -> str:
    """'44100 Hz (30), 48000 Hz (5)': most common first."""
    return ", ".join(f"{label(key)} ({n})" for key, n in counter.most_common())


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _size(n_bytes: int) -> str:
    value, unit = float(n_bytes), "B"
    for larger in ("kB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{n_bytes} B" if unit == "B" else f"{value:.1f} {unit}"
