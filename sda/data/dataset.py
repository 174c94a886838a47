"""From a folder of audio files to cached log-mel training chunks, with a report of what was used and why.

`preflight(folder)` decodes every candidate file and returns a `Preflight` report (usable files, what was
skipped or rejected and why, chunk counts, the automatic codebook size, the memory the cache will take)
without keeping any audio. `load_dataset(folder, config)` does the same pass while turning each usable
file into fixed-length mono chunks and their log-mels, split by file into training and validation.
Both go through `_decode`, so what the report promises is what training gets. Problems a user can fix
raise a `DataError` subclass whose message says what was found and what to do.

Whatever the folder holds, the pass is bounded: the scan stops past config.MAX_SCAN_ENTRIES entries,
MAX_SCAN_DEPTH levels or MAX_SCAN_SECONDS, and follows no link to a folder; only regular files are opened
(sda.data.audio); and a file is decoded only where its chunks lie, in bounded memory, whatever its length,
channel count or sample rate. Names and messages in the report go through sda.text.printable, so that any
of them can be shown and stored in metadata; files are opened by the names the file system gave.

    report = preflight("~/samples/drums")           # print(report.format())
    data = load_dataset("~/samples/drums", VQVAEConfig())
    data.train_mels                                  # [N_train, n_mels, chunk_frames]
    data.config.codebook_size                        # the concrete config, resolved for this collection

For the codec (sda encode), the same scan and rules, each file decoded whole instead of into chunks:

    candidates, skipped = gather([Path("kick.wav"), Path("~/samples/drums")])
    whole = read_whole(candidates[0], MAX_CODEC_SECONDS)   # AudioFileError(why) for a file training would reject
    whole.wave                                             # [S] float32 mono at whole.sample_rate
"""

import dataclasses
import functools
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from sda.config import (
    MAX_SCAN_DEPTH,
    MAX_SCAN_ENTRIES,
    MAX_SCAN_SECONDS,
    MIN_FILES,
    AudioConfig,
    DecodeOptions,
    VQVAEConfig,
    auto_codebook_size,
)
from sda.data.audio import AUDIO_EXTENSIONS, AudioSource, LogMel, is_audio_file
from sda.data.cache import DecodedCache, Entry, Key, entry_key, unchanged
from sda.data.parallel import check_stop, decode_workers, in_order
from sda.errors import AudioFileError, DataError
from sda.text import are, duration, plural, printable, size

SILENCE_PEAK = 1e-4  # about -80 dBFS: below this a file holds nothing to learn from
SILENT = "silent (peak below -80 dBFS)"
EMPTY = "empty (no samples)"
LISTED_FILES = 20  # the report lists every usable file up to this many, then summarises
NOT_AUDIO = "not an audio file"
# Validation may hold half as many chunks as training, or twice its files' share of them (an average training
# file's chunks per validation file) if that is more; a long file drawn for validation among short ones is
# sampled evenly down to that, so that validation stays a fraction of training (a 12-minute file gave 256
# chunks against 4). Folders of similar files never come near it.
VALIDATION_SHARE, VALIDATION_SLACK = Fraction(1, 2), 2


# A file changed less than this before it was looked at may change again with the same mtime (file systems keep it
# to a clock tick, up to 2 s on FAT): its decode is not cached, as git does not trust such a file's index entry.
RECENT_SECONDS = 2.0


class FolderNotFoundError(DataError):
    pass


class NoAudioError(DataError):
    pass


class TooFewFilesError(DataError):
    pass


class OnlySilenceError(DataError):
    pass


class ScanLimitError(DataError):
    """The folder is far larger than a folder of samples: the scan stopped at one of its bounds."""


@dataclass(frozen=True)
class UsableFile:
    path: str  # relative to the folder, with / separators, printable (sda.text): for reports and metadata
    source: str  # the same path as the file system spells it (it may hold undecodable bytes): for opening
    seconds: float
    sample_rate: int  # native
    channels: int
    chunks: int  # chunks used for training
    available_chunks: int  # chunks the file holds; more than `chunks` when capped at max_chunks_per_file, or
    # when a validation file is kept to validation's share (Preflight.validation_sampled)

    @property
    def capped(self) -> bool:
        return self.available_chunks > self.chunks


@dataclass(frozen=True)
class Rejection:
    path: str  # printable, as UsableFile.path
    reason: str  # printable


@dataclass(frozen=True)
class Preflight:
    """What a folder holds and how sda will use it. Everything derived is computed from these fields."""

    folder: Path
    audio: AudioConfig
    files: tuple[UsableFile, ...]
    skipped: tuple[Rejection, ...]  # not audio files, links to folders, folders that cannot be read
    rejected: tuple[Rejection, ...]  # audio files that cannot be used, and why
    train_indices: tuple[int, ...]  # into files
    val_indices: tuple[int, ...]
    # About the pass, not the data (so not compared, nor saved): why the decoded-audio cache was not written.
    notes: tuple[str, ...] = field(default=(), compare=False)

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
    def val_chunk_files(self) -> list[str]:
        """The file (its printable path in the folder) of each validation chunk, in the order of Dataset.val_mels."""
        return [self.files[i].path for i in self.val_indices for _ in range(self.files[i].chunks)]

    @property
    def validation_sampled(self) -> list[UsableFile]:
        """Validation files that give fewer chunks than they would in training (see _share_validation)."""
        return [f for f in (self.files[i] for i in self.val_indices)
                if f.chunks < min(f.available_chunks, self.audio.max_chunks_per_file)]

    @property
    def codebook_size(self) -> int:
        return auto_codebook_size(self.total_seconds)

    @property
    def memory_bytes(self) -> int:
        """The in-memory cache: float32 log-mels of every chunk, plus waveforms of the validation chunks."""
        mel = self.audio.n_mels * self.audio.chunk_frames
        return 4 * (self.n_chunks * mel + self.val_chunks * self.audio.chunk_samples)

    def format(self) -> str:
        a, n = self.audio, len(self.files)
        train_chunks = self.n_chunks - self.val_chunks
        lines = [
            printable(str(self.folder)),
            f"  {plural(n, 'usable audio file')}, {duration(self.total_seconds)} in all",
            f"  sample rates: {_counts(self.sample_rates, lambda sr: f'{sr} Hz')}",
            f"  channels: {_counts(self.channels, _channels)}",
            f"  -> {plural(self.n_chunks, 'chunk')} of {a.chunk_seconds:.2f} s, mono at {a.sample_rate} Hz: "
            f"{train_chunks} for training ({plural(len(self.train_indices), 'file')}), {self.val_chunks} for "
            "validation "
            f"({plural(len(self.val_indices), 'file')})",
            f"  codebook size: {self.codebook_size} (auto for {plural(n, 'file')})",
            f"  memory for the cached chunks: {size(self.memory_bytes)}",
        ]
        if n <= LISTED_FILES:
            width = max(len(f.path) for f in self.files)
            lines += [f"    {f.path:<{width}}  {duration(f.seconds):>9}  {f.sample_rate:>6} Hz  "
                      f"{_channels(f.channels):<8}  {plural(f.chunks, 'chunk')}" for f in self.files]
        else:
            by_length = sorted(self.files, key=lambda f: f.seconds)
            lines.append(f"  shortest {by_length[0].path} ({duration(by_length[0].seconds)}), "
                         f"longest {by_length[-1].path} ({duration(by_length[-1].seconds)})")
        sampled = self.validation_sampled
        capped = [f for f in self.files if f.available_chunks > a.max_chunks_per_file and f not in sampled]
        if capped:
            lines.append(f"  capped at {a.max_chunks_per_file} evenly spaced chunks: "
                         + ", ".join(f"{f.path} ({f.available_chunks} available)" for f in capped))
        if sampled:
            lines.append("  validation kept to its share of the chunks, evenly spaced: "
                         + ", ".join(f"{f.path} ({f.chunks} of {f.available_chunks})" for f in sampled))
        not_audio = [s for s in self.skipped if s.reason.startswith(NOT_AUDIO)]
        if not_audio:
            if len(not_audio) <= 10:
                names = ", ".join(s.path for s in not_audio)
            else:
                names = _counts(Counter(Path(s.path).suffix.lower() or "no extension" for s in not_audio))
            lines.append(f"  skipped {plural(len(not_audio), 'file')} that {are(len(not_audio))} not audio: {names}")
        others = [s for s in self.skipped if not s.reason.startswith(NOT_AUDIO)]
        if others:
            lines.append("  skipped: " + ", ".join(f"{s.path} ({s.reason})" for s in others))
        if self.rejected:
            lines.append(f"  rejected {plural(len(self.rejected), 'audio file')}:")
            lines += [f"    {r.path}: {r.reason}" for r in self.rejected]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """A JSON-able summary, saved with the model so that it says what it was trained on."""
        return {
            "folder": printable(str(self.folder)),
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


@dataclass(frozen=True)
class DecodeProgress:
    """How far a pass over a folder's files is, sent to the frontends' callback (OnProgress) after each file."""

    done: int  # files read so far, decoded or from the cache
    total: int
    cached: int  # of done, read from the cache (sda.data.cache)
    stage: str  # FILES (every audio file of the folder) or VALIDATION (load_dataset's validation files, again)


FILES, VALIDATION = "audio files", "validation files"
OnProgress = Callable[[DecodeProgress], None]


def preflight(folder: str | Path, audio: AudioConfig | None = None, *, seed: int = VQVAEConfig.seed,
              validation_fraction: float = VQVAEConfig.validation_fraction, decode: DecodeOptions | None = None,
              stop: threading.Event | None = None, on_progress: OnProgress | None = None) -> Preflight:
    """Decode every candidate file under folder and report what training would use; keeps no audio.

    audio=None means AudioConfig(); seed and validation_fraction decide the split, as in VQVAEConfig. decode (None:
    DecodeOptions()) says how: with the cache on, each file's log-mels are cached as it is decoded, so that
    load_dataset then decodes nothing.
    """
    audio = audio or AudioConfig()
    audio.validate()
    decode = (decode or DecodeOptions()).validate()
    report, _ = _survey(folder, audio, seed, validation_fraction, decode, keep_mels=False, stop=stop,
                        on_progress=on_progress)
    return report


def load_dataset(folder: str | Path, config: VQVAEConfig, stop: threading.Event | None = None, *,
                 decode: DecodeOptions | None = None, on_progress: OnProgress | None = None) -> Dataset:
    """One decoding pass: the report, plus every usable file's chunks as log-mels in memory. Setting stop ends it
    before the next file (LoadingStopped): a folder of long files takes a while, and Ctrl-C must not wait for it.

    Waveforms are kept only for validation chunks. Which files validate is known only once every file
    has been decoded (the split depends on how many are usable), so rather than holding every waveform
    until then, the few validation files are read again at the end (from the cache, after the first run).
    """
    audio = config.validate().audio
    decode = (decode or DecodeOptions()).validate()
    report, mels = _survey(folder, audio, config.seed, config.validation_fraction, decode, keep_mels=True, stop=stop,
                           on_progress=on_progress)
    val_audio = _validation_audio(report, decode, stop, on_progress)
    train_mels = torch.cat([mels[i] for i in report.train_indices])
    return Dataset(
        preflight=report,
        config=config.resolve(seconds=report.total_seconds, n_train_chunks=train_mels.shape[0]),
        train_mels=train_mels,
        val_mels=torch.cat([mels[i] for i in report.val_indices]),
        val_audio=val_audio,
    )


def _validation_audio(report: Preflight, decode: DecodeOptions, stop: threading.Event | None,
                      on_progress: OnProgress | None) -> torch.Tensor:
    """[N_val, chunk_samples]: the validation files decoded again (see load_dataset)."""
    tasks = [_Task(report.folder, file.source, report.audio, WAVES, share=file.chunks)
             for file in (report.files[i] for i in report.val_indices)]
    outcomes, _ = _read_files(tasks, decode, stop, on_progress, VALIDATION)
    why = next((o.reason for o in outcomes if o.info is None), None)
    if why is not None:
        raise DataError(f"A validation file changed while loading ({why}): run again.")
    chunks = [torch.from_numpy(o.chunks) for o in outcomes if o.chunks is not None]
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


def _survey(folder: str | Path, audio: AudioConfig, seed: int, validation_fraction: float, decode: DecodeOptions,
            keep_mels: bool, stop: threading.Event | None = None,
            on_progress: OnProgress | None = None) -> tuple[Preflight, list[torch.Tensor]]:
    """The pass shared by preflight and load_dataset: (Preflight, [log-mels [n, n_mels, chunk_frames] per usable
    file] if keep_mels, else [])."""
    folder = _check_folder(folder)
    candidates, skipped = _scan(folder)
    if not candidates:
        what = f"skipped {plural(len(skipped), 'other file')}" if skipped else "the folder is empty"
        raise NoAudioError(f"No audio files in {printable(str(folder))} (looked for {' '.join(AUDIO_EXTENSIONS)} in "
                           f"it and its subfolders; {what}). Add audio files, or choose the folder that holds them.")
    tasks = [_Task(folder, source, audio, MELS if keep_mels else INFO) for source in candidates]
    outcomes, notes = _read_files(tasks, decode, stop, on_progress, FILES)
    files, rejected, kept = [], [], []
    for source, outcome in zip(candidates, outcomes, strict=True):
        if outcome.info is None:
            rejected.append(Rejection(printable(source), outcome.reason))
            continue
        files.append(outcome.info)
        if keep_mels:
            kept.append(torch.from_numpy(outcome.chunks))
    _check_enough(folder, files, rejected)
    train, val = split_files(len(files), seed, validation_fraction)
    for i, share in _share_validation(files, train, val).items():
        files[i] = dataclasses.replace(files[i], chunks=share)
        if keep_mels:
            kept[i] = kept[i][_spread(len(kept[i]), share)]
    report = Preflight(folder, audio, tuple(files), tuple(skipped), tuple(rejected), tuple(train), tuple(val),
                       notes=tuple(notes))
    return report, kept


# One file's decode, the unit of work of the pool (sda.data.parallel) and of the cache (sda.data.cache). -------------

INFO, MELS, WAVES = "info", "mels", "waves"  # what a task keeps of a file's chunks


class _Task(NamedTuple):
    folder: Path
    source: str  # relative to folder, as the file system spells it
    audio: AudioConfig
    keep: str  # INFO: the UsableFile alone; MELS: the chunks' log-mels; WAVES: the chunks
    share: int | None = None  # WAVES for a validation file: its chunk count (_decode)


class _Outcome(NamedTuple):
    info: UsableFile | None  # None: the file cannot be used, for reason
    chunks: np.ndarray | None  # float32: MELS [n, n_mels, chunk_frames], WAVES [n, chunk_samples], INFO None
    reason: str = ""  # printable


def _decode_task(task: _Task) -> _Outcome:
    """Decode one file: what the pool's workers run (a module-level function, sent by name). Arrays go back as
    numpy, pickled whole, rather than as tensors, which torch would pass through shared memory one file each."""
    try:
        info, chunks = _decode(task.folder, task.source, task.audio, task.share)
    except _Unusable as why:
        return _Outcome(None, None, printable(str(why)))
    if task.keep == INFO:
        return _Outcome(info, None)
    if task.keep == MELS:
        with torch.no_grad():
            chunks = _log_mel(task.audio)(chunks)
    return _Outcome(info, chunks.numpy())


@functools.lru_cache(maxsize=4)
def _log_mel(audio: AudioConfig) -> LogMel:
    return LogMel(audio)


def _read_files(tasks: list[_Task], decode: DecodeOptions, stop: threading.Event | None,
                on_progress: OnProgress | None, stage: str) -> tuple[list[_Outcome], list[str]]:
    """Each task's outcome, in order, from the cache where it has the file unchanged, else decoded (by a pool when
    decode allows more than one worker) and cached; and the cache's notes (why it could not be written).

    Rejections are not cached: a file is rejected fast unless it is long and silent, and one fixed without a new
    mtime (a permission granted) must be seen at once. With the cache on, an INFO task decodes MELS to cache them
    (a preflight's files are then ready for load_dataset) and drops them.
    """
    cache = DecodedCache.open(decode)
    outcomes: list[_Outcome | None] = [None] * len(tasks)
    keys: list[Key | None] = [None] * len(tasks)
    done = cached = 0

    def tick(from_cache: bool) -> None:
        nonlocal done, cached
        done, cached = done + 1, cached + from_cache
        if on_progress is not None:
            on_progress(DecodeProgress(done, len(tasks), cached, stage))

    if cache is not None:
        recent = time.time() - RECENT_SECONDS
        for i, task in enumerate(tasks):
            check_stop(stop)
            key = entry_key(task.folder / task.source, task.audio, _stored(task))
            keys[i] = key if key is not None and key.identity[1] < recent * 1e9 else None
            outcomes[i] = _from_cache(cache.get(keys[i], payload=task.keep != INFO), task)
            if outcomes[i] is not None:
                tick(from_cache=True)
    todo = [i for i, outcome in enumerate(outcomes) if outcome is None]
    work = [tasks[i]._replace(keep=MELS) if cache is not None and tasks[i].keep == INFO else tasks[i] for i in todo]
    for i, outcome in zip(todo, in_order(_decode_task, work, decode_workers(len(work), decode.workers), stop),
                          strict=True):
        task, key = tasks[i], keys[i]
        if cache is not None and outcome.info is not None and key is not None \
                and unchanged(task.folder / task.source, key):
            cache.put(key, _meta(outcome.info), outcome.chunks)
        outcomes[i] = outcome._replace(chunks=None) if task.keep == INFO else outcome
        tick(from_cache=False)
    return outcomes, cache.notes if cache is not None else []


def _stored(task: _Task) -> str:
    """What the cache keeps for a task: a preflight reads the header of the entry load_dataset reads whole."""
    return f"{WAVES}/{task.share}" if task.keep == WAVES else MELS


def _meta(info: UsableFile) -> dict:
    """What an entry's header records of its file (not its path: the key has it, and it may not be UTF-8)."""
    return {"seconds": info.seconds, "sample_rate": info.sample_rate, "channels": info.channels,
            "chunks": info.chunks, "available_chunks": info.available_chunks}


def _from_cache(entry: Entry | None, task: _Task) -> _Outcome | None:
    """The outcome an entry holds for task, if its header's record is whole and its array has the shape task's
    settings give; else None (decoded again). The entry's digests have been checked (sda.data.cache)."""
    if entry is None:
        return None
    m, audio = entry.meta, task.audio
    whole = {"sample_rate", "channels", "chunks", "available_chunks"}
    if set(m) != whole | {"seconds"} or not all(type(m[k]) is int and m[k] >= 1 for k in whole) \
            or type(m["seconds"]) is not float or not math.isfinite(m["seconds"]) or m["seconds"] < 0:
        return None
    if not m["chunks"] <= m["available_chunks"] or m["chunks"] > audio.max_chunks_per_file:
        return None
    info = UsableFile(printable(task.source), task.source, m["seconds"], m["sample_rate"], m["channels"], m["chunks"],
                      m["available_chunks"])
    if entry.array is None:
        return _Outcome(info, None)
    frame = (audio.n_mels, audio.chunk_frames) if task.keep == MELS else (audio.chunk_samples,)
    if entry.array.shape != (m["chunks"], *frame):
        return None
    return _Outcome(info, entry.array)


def _share_validation(files: list[UsableFile], train: list[int], val: list[int]) -> dict[int, int]:
    """{validation file index: chunks it keeps} for the files sampled down to validation's share.

    Validation may hold VALIDATION_SHARE of the training chunks, or VALIDATION_SLACK x its files' share of them
    if that is more (so at least two chunks per file). Past that, every validation file keeps at most the same
    number of chunks, the largest that fits: short files are untouched and long ones give way.
    """
    train_chunks = sum(files[i].chunks for i in train)
    share = max(VALIDATION_SHARE, Fraction(VALIDATION_SLACK * len(val), len(train)))
    budget = math.ceil(share * train_chunks)
    sizes = {i: files[i].chunks for i in val}
    if sum(sizes.values()) <= budget:
        return {}
    most = max(k for k in range(1, max(sizes.values()) + 1) if sum(min(n, k) for n in sizes.values()) <= budget)
    return {i: most for i, n in sizes.items() if n > most}


def _check_folder(folder) -> Path:
    path = Path(folder).expanduser()
    shown = printable(str(path))
    if not path.exists():
        raise FolderNotFoundError(f"{shown} does not exist: check the path to your audio folder.")
    if not path.is_dir():
        raise FolderNotFoundError(f"{shown} is a file, not a folder: give the folder that holds your audio files "
                                  f"(this one is in {printable(str(path.parent))}).")
    return path


def _scan(folder: Path) -> tuple[list[str], list[Rejection]]:
    """Audio files under folder (relative paths as the file system spells them, sorted) and what was skipped.

    Hidden entries are ignored, and links to folders are not followed (no loop, nothing outside the folder).
    The walk stops with a ScanLimitError past MAX_SCAN_ENTRIES entries, MAX_SCAN_DEPTH levels of subfolders
    or MAX_SCAN_SECONDS: a whole disk given as the folder ends in a clear message, not a long walk.
    """
    audio, skipped = [], []
    deadline, seen = time.monotonic() + MAX_SCAN_SECONDS, 0
    pending = [("", 0)]  # (folder relative to the top, its depth)
    while pending:
        relative, depth = pending.pop()
        try:
            entries = os.scandir(folder / relative if relative else folder)
        except OSError as exc:
            if not relative:
                raise DataError(f"{printable(str(folder))} cannot be read ({printable(exc.strerror or str(exc))}): "
                                "check its permissions, or choose another folder.") from None
            skipped.append(Rejection(printable(relative), f"a folder that cannot be read: "
                                                          f"{printable(exc.strerror or str(exc)).lower()}"))
            continue
        with entries:
            for entry in entries:
                seen += 1
                _check_scan(folder, seen, depth, deadline)
                if entry.name.startswith("."):
                    continue
                path = f"{relative}/{entry.name}" if relative else entry.name
                if _is_folder(entry):
                    if depth == MAX_SCAN_DEPTH:
                        raise ScanLimitError(
                            f"Stopped looking in {printable(str(folder))}: {printable(path)} is more than "
                            f"{MAX_SCAN_DEPTH} folders deep, the most sda looks into. Choose the folder that holds "
                            "your audio files, or move them nearer to it.")
                    pending.append((path, depth + 1))
                elif entry.is_symlink() and _leads_to_folder(entry):
                    skipped.append(Rejection(printable(path), "a link to a folder (not followed)"))
                elif is_audio_file(entry.name):
                    audio.append(path)
                else:
                    suffix = printable(Path(entry.name).suffix) or "no extension"
                    skipped.append(Rejection(printable(path), f"{NOT_AUDIO} ({suffix})"))
    return sorted(audio), sorted(skipped, key=lambda s: s.path)


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:  # it cannot even be looked at: opening it says why (sda.data.audio)
        return False


def _leads_to_folder(link: os.DirEntry) -> bool:
    try:
        return link.is_dir()
    except OSError:  # a loop: opening it says so (sda.data.audio)
        return False


def _check_scan(folder: Path, seen: int, depth: int, deadline: float) -> None:
    if seen > MAX_SCAN_ENTRIES:
        raise ScanLimitError(f"Stopped looking in {printable(str(folder))} after {MAX_SCAN_ENTRIES} files and "
                             "folders, the most sda looks through: that is far more than a folder of samples holds. "
                             "Choose the folder that holds your audio files (a smaller folder).")
    if time.monotonic() > deadline:
        raise ScanLimitError(f"Stopped looking in {printable(str(folder))} after {MAX_SCAN_SECONDS:g} seconds "
                             f"({seen} files and folders seen), the longest sda looks: the folder is too large or "
                             "too slow to read. Choose a smaller folder, or copy it to a local disk.")


def _decode(folder: Path, source: str, audio: AudioConfig, share: int | None = None) -> tuple[UsableFile, torch.Tensor]:
    """One file's training chunks [n, chunk_samples] (mono, at audio.sample_rate), decoding only those.

    share: a validation file's chunk count (_share_validation), taken evenly from the chunks it gives otherwise.
    """
    try:
        with AudioSource(folder / source, audio.sample_rate) as file:
            if file.frames == 0:
                raise _Unusable(EMPTY)
            picks, available = _picks(file.length, audio, share)
            chunks = _read_chunks(file, picks, audio.chunk_samples)
    except AudioFileError as why:
        raise _Unusable(str(why)) from None
    _check_decoded(file)
    info = UsableFile(printable(source), source, file.frames / file.sample_rate, file.sample_rate, file.channels,
                      len(picks), available)
    return info, chunks


def _check_decoded(file: AudioSource) -> None:
    """Training's rules for a file decoded (as far as it was read): it has samples, all finite, and sound."""
    if file.frames == 0:
        raise _Unusable(EMPTY)
    if not file.finite:
        raise _Unusable("contains NaN or infinite samples")
    if file.peak < SILENCE_PEAK:
        raise _Unusable(SILENT)


# For the codec (sda encode): files and folders named by the user, each usable file decoded whole. --------------


@dataclass(frozen=True)
class Candidate:
    """A file to encode: opened as root / source (root: its input folder, or the folder of a file named alone)."""

    root: Path
    source: str  # relative to root, as the file system spells it
    path: str  # printable, with / separators: relative to its input folder, or the file's name


@dataclass(frozen=True)
class WholeFile:
    """One usable file decoded whole, mono at its own rate (as training decodes it, without the resampling)."""

    candidate: Candidate
    wave: torch.Tensor  # [S] float32, the mean of the channels, S = frames
    sample_rate: int  # native
    channels: int

    @property
    def seconds(self) -> float:
        return len(self.wave) / self.sample_rate


def gather(inputs: list[Path]) -> tuple[list[Candidate], list[Rejection]]:
    """The audio files of inputs (files, or folders scanned as training scans them), in the order given, each
    folder's sorted, and what was skipped. An input that does not exist is a DataError: nothing was done yet."""
    candidates, skipped = [], []
    for given in inputs:
        path = Path(given).expanduser()
        if path.is_dir():
            sources, passed = _scan(_check_folder(path))
            candidates += [Candidate(path, source, printable(source)) for source in sources]
            skipped += passed
        elif path.exists() or path.is_symlink():  # a broken link is named when it is opened
            shown = printable(path.name)
            if is_audio_file(path.name):
                candidates.append(Candidate(path.parent, path.name, shown))
            else:
                skipped.append(Rejection(shown, f"{NOT_AUDIO} ({printable(path.suffix) or 'no extension'})"))
        else:
            raise FolderNotFoundError(f"{printable(str(path))} does not exist: check the path of the file or folder "
                                      "to encode.")
    unique, seen = [], set()
    for candidate in candidates:  # a file named alone and again in its folder, or a folder given twice
        where = os.path.realpath(candidate.root / candidate.source)
        if where in seen:
            skipped.append(Rejection(candidate.path, "given twice: encoded once"))
        else:
            seen.add(where)
            unique.append(candidate)
    return unique, skipped


def read_whole(candidate: Candidate, max_seconds: float) -> WholeFile:
    """The file decoded whole, if training would use it and it lasts at most max_seconds (checked from its header,
    before decoding); else AudioFileError saying why, in the words of the preflight report."""
    try:
        with AudioSource(candidate.root / candidate.source, None) as file:
            if file.frames > max_seconds * file.sample_rate:
                raise _Unusable(f"{duration(file.frames / file.sample_rate)} long, over the "
                                f"{duration(max_seconds)} the codec takes in one piece")
            wave = file.read(0, file.length)
        _check_decoded(file)
    except (AudioFileError, _Unusable) as why:
        raise AudioFileError(printable(str(why))) from None
    return WholeFile(candidate, wave, file.sample_rate, file.channels)


def _picks(length: int, audio: AudioConfig, share: int | None = None) -> tuple[list[int], int]:
    """(indices of the chunks used, chunks the file holds) for a file of length samples at audio.sample_rate.

    Short files become one zero-padded chunk (one-shots are the common case); a trailing remainder is
    kept, padded, when it is at least a quarter of a chunk, as less would be mostly padding. Past
    max_chunks_per_file, the middle chunk of each of that many equal stretches of the file.
    """
    full, rest = divmod(length, audio.chunk_samples)
    n = max(1, full + (4 * rest >= audio.chunk_samples))
    picks = _spread(n, audio.max_chunks_per_file)
    if share is not None:
        picks = [picks[i] for i in _spread(len(picks), share)]
    return picks, n


def _spread(n: int, most: int) -> list[int]:
    """range(n), or when n > most the middle index of each of `most` equal stretches of it."""
    return list(range(n)) if n <= most else [(2 * i + 1) * n // (2 * most) for i in range(most)]


def _read_chunks(file: AudioSource, picks: list[int], size: int) -> torch.Tensor:
    """[len(picks), size]: the chunks at picks (ascending), each run of consecutive ones read at once."""
    runs, parts = [], []
    for k in picks:
        if runs and runs[-1][1] == k:
            runs[-1][1] = k + 1
        else:
            runs.append([k, k + 1])
    for first, stop in runs:
        parts.append(file.read(first * size, stop * size).reshape(stop - first, size))
    return torch.cat(parts)


def _check_enough(folder: Path, files: list[UsableFile], rejected: list[Rejection]) -> None:
    silent = [r for r in rejected if r.reason == SILENT]
    if not files and silent:
        raise OnlySilenceError(
            f"No usable audio in {printable(str(folder))}: {plural(len(silent), 'file')} decoded but "
            f"{are(len(silent))} silent, and none has sound above -80 dBFS. "
            f"Rejected: {_list(rejected)}. Check that the files are not blank exports, or choose another folder.")
    if len(files) < MIN_FILES:
        found = (f"{plural(len(files), 'usable audio file')} in {printable(str(folder))}, "
                 f"sda needs at least {MIN_FILES}")
        why = f" Rejected: {_list(rejected)}." if rejected else ""
        raise TooFewFilesError(f"{found}.{why} Add more audio files to the folder (short one-shots are fine).")


def _list(rejections: list[Rejection], limit: int = 10) -> str:
    shown = ", ".join(f"{r.path} ({r.reason})" for r in rejections[:limit])
    return shown + (f", and {len(rejections) - limit} more" if len(rejections) > limit else "")


def _channels(n: int) -> str:
    return {1: "mono", 2: "stereo"}.get(n, f"{n} channels")


def _counts(counter: Counter, label=str) -> str:
    """'44100 Hz (30), 48000 Hz (5)': most common first."""
    return ", ".join(f"{label(key)} ({n})" for key, n in counter.most_common())


