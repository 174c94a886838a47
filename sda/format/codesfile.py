"""Codes files: a collection encoded by one model, as a v2 .sda container of kind "codes" (README: Codes files).

    identity = ModelIdentity.of(model, metadata)     # name, creation time, SHA-256 of the weights (weights_hash)
    save(path, CodeSet(identity, CodecInfo.of(model.config), entries, grids))   # atomic, as model files are
    codes = load(path)                               # every field checked; codes.grids[i]: [L, T'_i] int64

One grid per encoded file, rows = levels, columns = time positions (sda.model.codec.encode), stored as int16
(int32 when the codebook size exceeds 32767, which no sda model has today: its largest is 8192). The index
(metadata "entries") says, per grid, which file it came from and how long it was, so that `sda decode` can give
each file back at its own rate and length; the model's identity says which model alone can decode them.
Every problem with a file is an SdaError: SdaCorruptError (damage) and SdaVersionError from the container,
SdaFormatError for everything this module checks, each naming the file and what is wrong.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn

import torch

import sda
from sda.config import FILE_SAMPLE_RATES, MAX_CODEC_SECONDS, RANGES, VQVAEConfig
from sda.errors import SdaError, SdaFormatError
from sda.format import container
from sda.format.modelfile import weights_hash
from sda.model import codec
from sda.model.bitrate import frame_rate
from sda.model.vqvae import ConvVQVAE
from sda.text import printable

KIND = "codes"
FORMAT_VERSION = 1  # metadata "codes_format": a reader refuses any other
INT16_CODES = 32767  # codebook sizes up to this are stored as int16 (codes 0..32766), larger ones as int32
MAX_ENTRIES = 100_000  # the index's length: more than sda's folder scan (50 000 entries) can give
MAX_TEXT = 4096  # characters of a model name or a time
MAX_PATH = 65536  # characters of an entry's path (32 folders of 255 bytes, printable, fit)
MAX_CHANNELS = 1 << 16
MAX_SAMPLES_PER_POSITION = 1 << 16
SECONDS_SLACK = 1e-3  # an entry's seconds may differ from samples / sample_rate by this much (rounding)
_METADATA_KEYS = {"codes_format", "created", "sda_version", "model", "codec", "entries"}
_MODEL_KEYS = {"name", "created", "weights_sha256"}
_CODEC_KEYS = {"levels", "codebook_size", "sample_rate", "samples_per_position", "frame_rate"}
_ENTRY_KEYS = {"path", "seconds", "sample_rate", "channels", "samples", "frames", "rms"}
MAX_RMS = 1e9  # float files may hold samples past full scale; anything finite is kept, within reason


@dataclass(frozen=True)
class ModelIdentity:
    """Which model made the codes: only a model of the same weights decodes them."""

    name: str
    created: str  # ISO 8601, as the model file says
    weights_sha256: str  # 64 hex digits: sda.format.modelfile.weights_hash of its tensors

    @classmethod
    def of(cls, model: torch.nn.Module, metadata: dict) -> "ModelIdentity":
        """The identity of a model loaded by modelfile.load_model, with the metadata it gave."""
        name, created = metadata.get("model_name"), metadata.get("created")
        return cls(printable(name)[:MAX_TEXT] if isinstance(name, str) and name else "?",
                   printable(created)[:MAX_TEXT] if isinstance(created, str) and created else "?",
                   weights_hash(model.state_dict()))

    def describe(self) -> str:
        return f"model {self.name!r} (created {self.created}, weights {self.weights_sha256[:12]})"


@dataclass(frozen=True)
class CodecInfo:
    """What a downstream user of the codes needs of the model's config."""

    levels: int  # rows of every grid
    codebook_size: int  # codes are in [0, codebook_size)
    sample_rate: int  # Hz: the rate the model hears (mono)
    samples_per_position: int  # hop_length x downsample, at sample_rate
    frame_rate: float  # positions per second: sample_rate / samples_per_position

    @classmethod
    def of(cls, config: VQVAEConfig) -> "CodecInfo":
        assert config.codebook_size is not None  # a trained model's config is resolved
        return cls(config.rvq_levels, config.codebook_size, config.audio.sample_rate,
                   config.audio.hop_length * config.downsample, frame_rate(config))

    @property
    def dtype(self) -> torch.dtype:
        """The stored dtype of the grids."""
        return torch.int16 if self.codebook_size <= INT16_CODES else torch.int32


@dataclass(frozen=True)
class Entry:
    """One encoded file of the index."""

    path: str  # relative to its input folder with / separators, or the file's name; printable (sda.text)
    seconds: float  # samples / sample_rate
    sample_rate: int  # Hz, the source's
    channels: int  # the source's (the codes are of its mono mix)
    samples: int  # the source's length in samples per channel, at sample_rate
    frames: int  # code positions T' of its grid
    rms: float  # of its mono mix at the codec's rate (what the model heard): decoding restores this level

    def samples_at(self, rate: int) -> int:
        """The source's length at another rate, rounded up: what a decode at that rate is cut to."""
        return -(-self.samples * rate // self.sample_rate)


@dataclass(frozen=True)
class CodeSet:
    """A codes file's content: grids[i] [levels, entries[i].frames] int64 is the code grid of entries[i]."""

    model: ModelIdentity
    codec: CodecInfo
    entries: tuple[Entry, ...]
    grids: tuple[torch.Tensor, ...]
    created: str = ""  # when the file was written (save sets it)
    sda_version: str = ""


@dataclass(frozen=True)
class Decoded:
    """One entry decoded (decode_entry)."""

    wave: torch.Tensor  # [entry.samples_at(rate)] float32 mono, |sample| <= config.OUTPUT_PEAK
    rate: int  # Hz
    gain_db: float  # applied to bring it to the source's RMS (entry.rms)
    limited_db: float  # further attenuation so that no sample exceeds OUTPUT_PEAK: 0, or negative


def decode_entry(model: ConvVQVAE, entry: Entry, grid: torch.Tensor, rate: int | None = None) -> Decoded:
    """grid [L, entry.frames] -> the entry's audio at rate (default: its source's) and length, through
    sda.model.codec.decode, at the source's level (its RMS, as sda reconstruct matches its input's), never clipped."""
    rate = rate or entry.sample_rate
    wave = codec.decode(model, grid, entry.samples_at(model.config.audio.sample_rate), rate)[:entry.samples_at(rate)]
    out, gain_db, limited_db = codec.match_rms(wave, entry.rms)
    return Decoded(out, rate, gain_db, limited_db)


def tensor_name(index: int) -> str:
    return f"codes.{index:06d}"


def save(path: Path, codes: CodeSet) -> None:
    """Write codes atomically (container.write): the old file stays unless the new one is complete. Grids that do not
    fit the codec (shape, values) raise SdaError: such a file would be refused on loading."""
    info = codes.codec
    if len(codes.entries) != len(codes.grids) or len(codes.entries) > MAX_ENTRIES:
        raise SdaError(f"{len(codes.entries)} entries for {len(codes.grids)} grids: they must pair up, "
                       f"{MAX_ENTRIES} at most")
    tensors = {}
    for i, (entry, grid) in enumerate(zip(codes.entries, codes.grids, strict=True)):
        if tuple(grid.shape) != (info.levels, entry.frames) or grid.is_floating_point() or (
                grid.numel() and not 0 <= int(grid.min()) <= int(grid.max()) < info.codebook_size):
            raise SdaError(f"the grid of {entry.path} is not {info.levels} x {entry.frames} codes in "
                           f"[0, {info.codebook_size})")
        tensors[tensor_name(i)] = grid.to(info.dtype)
    metadata = {
        "codes_format": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sda_version": sda.__version__,
        "model": vars(codes.model),
        "codec": vars(info),
        "entries": [vars(entry) for entry in codes.entries],
    }
    container.write(path, tensors, metadata, kind=KIND)


def load(path: Path) -> CodeSet:
    """The codes file at path, every field checked (README: Codes files, what a reader must refuse): SdaError."""
    path = Path(path)
    tensors, metadata = container.read(path, kind=KIND)  # another kind is refused before any tensor is read
    reader = _Reader(path)
    reader.keys(metadata, _METADATA_KEYS, "its metadata")
    if not _is_int(metadata["codes_format"]) or metadata["codes_format"] != FORMAT_VERSION:
        reader.fail(f"codes_format is {_short(metadata['codes_format'])}; this sda reads version {FORMAT_VERSION} "
                    "(a newer sda wrote it: upgrade sda)")
    created, version = reader.text(metadata["created"], "created"), reader.text(metadata["sda_version"], "sda_version")
    model, info = reader.model(metadata["model"]), reader.codec(metadata["codec"])
    listed = metadata["entries"]
    if not isinstance(listed, list) or len(listed) > MAX_ENTRIES:
        reader.fail(f"entries is not a list of at most {MAX_ENTRIES}")
    entries = tuple(reader.entry(item, i, info) for i, item in enumerate(listed))
    names = {tensor_name(i) for i in range(len(entries))}
    if set(tensors) != names:
        extra, missing = sorted(set(tensors) - names), sorted(names - set(tensors))
        reader.fail(f"its tensors do not match its {len(entries)} entries (missing: {', '.join(missing[:3]) or 'none'}"
                    f"; unexpected: {', '.join(_short(n) for n in extra[:3]) or 'none'})")
    grids = tuple(reader.grid(tensors[tensor_name(i)], tensor_name(i), entry, info) for i, entry in enumerate(entries))
    return CodeSet(model, info, entries, grids, created, version)


class _Reader:
    """The checks of load, each failing with SdaFormatError naming the file and the field."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, what: str) -> NoReturn:
        raise SdaFormatError(f"{self.path} is not a codes file sda can read: {what}; it is damaged or was not "
                             "written by sda encode")

    def keys(self, obj, expected: set, where: str) -> None:
        if not isinstance(obj, dict):
            self.fail(f"{where} is not an object")
        if obj.keys() != expected:
            missing, extra = sorted(expected - obj.keys()), sorted(obj.keys() - expected)
            self.fail(f"{where} lacks {', '.join(missing) or 'nothing'} and has unknown "
                      f"{', '.join(_short(k) for k in extra[:3]) or 'nothing'}")

    def text(self, value, where: str, most: int = MAX_TEXT) -> str:
        if not isinstance(value, str) or not 1 <= len(value) <= most:
            self.fail(f"{where} is {_short(value)}, not a text of 1 to {most} characters")
        return value

    def whole(self, value, where: str, low: int, high: int) -> int:
        if not _is_int(value) or not low <= value <= high:
            self.fail(f"{where} is {_short(value)}, not a whole number from {low} to {high}")
        return value

    def number(self, value, where: str, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            self.fail(f"{where} is {_short(value)}, not a number from {low:g} to {high:g}")
        return float(value)

    def model(self, obj) -> ModelIdentity:
        self.keys(obj, _MODEL_KEYS, "model")
        digest = obj["weights_sha256"]
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            self.fail(f"model.weights_sha256 is {_short(digest)}, not 64 lowercase hex digits")
        return ModelIdentity(self.text(obj["name"], "model.name"), self.text(obj["created"], "model.created"), digest)

    def codec(self, obj) -> CodecInfo:
        self.keys(obj, _CODEC_KEYS, "codec")
        levels, size = (RANGES[name] for name in ("rvq_levels", "codebook_size"))
        info = CodecInfo(self.whole(obj["levels"], "codec.levels", int(levels.low), int(levels.high)),
                          self.whole(obj["codebook_size"], "codec.codebook_size", int(size.low), int(size.high)),
                          self.whole(obj["sample_rate"], "codec.sample_rate", *FILE_SAMPLE_RATES),
                          self.whole(obj["samples_per_position"], "codec.samples_per_position", 1,
                                     MAX_SAMPLES_PER_POSITION),
                          self.number(obj["frame_rate"], "codec.frame_rate", 0, math.inf))
        if not math.isclose(info.frame_rate, info.sample_rate / info.samples_per_position, rel_tol=1e-9):
            self.fail(f"codec.frame_rate {info.frame_rate} is not sample_rate / samples_per_position")
        return info

    def entry(self, obj, i: int, info: CodecInfo) -> Entry:
        where = f"entries[{i}]"
        self.keys(obj, _ENTRY_KEYS, where)
        rate = self.whole(obj["sample_rate"], f"{where}.sample_rate", *FILE_SAMPLE_RATES)
        samples = self.whole(obj["samples"], f"{where}.samples", 1, math.ceil(MAX_CODEC_SECONDS * rate))
        # Sizes are bounded so that decoding a crafted file costs no more than decoding the longest real one.
        most = math.ceil((MAX_CODEC_SECONDS + 1) * info.frame_rate)
        entry = Entry(self.text(obj["path"], f"{where}.path", MAX_PATH),
                      self.number(obj["seconds"], f"{where}.seconds", 0, MAX_CODEC_SECONDS + 1),
                      rate, self.whole(obj["channels"], f"{where}.channels", 1, MAX_CHANNELS), samples,
                      self.whole(obj["frames"], f"{where}.frames", 1, most),
                      self.number(obj["rms"], f"{where}.rms", 0, MAX_RMS))
        if abs(entry.seconds - samples / rate) > SECONDS_SLACK:
            self.fail(f"{where}.seconds is {entry.seconds}, but its {samples} samples at {rate} Hz last "
                      f"{samples / rate:.6f} s")
        if entry.frames * info.samples_per_position < entry.samples_at(info.sample_rate) - info.samples_per_position:
            self.fail(f"{where} has {entry.frames} positions, too few for its {entry.seconds:.3f} s")
        return entry

    def grid(self, tensor: torch.Tensor, name: str, entry: Entry, info: CodecInfo) -> torch.Tensor:
        want = [info.levels, entry.frames]
        if tensor.dtype != info.dtype or list(tensor.shape) != want:
            self.fail(f"tensor {name!r} is {str(tensor.dtype).removeprefix('torch.')} {list(tensor.shape)}, "
                      f"its entry needs {str(info.dtype).removeprefix('torch.')} {want}")
        low, high = int(tensor.min()), int(tensor.max())
        if low < 0 or high >= info.codebook_size:
            self.fail(f"tensor {name!r} holds code {low if low < 0 else high}, outside [0, {info.codebook_size})")
        return tensor.long()


# Decoded files are named from the index, which a crafted file controls: each name is made a relative path of plain
# components (no "..", no root, no hidden names, no control characters, none too long for a file system) under the
# output folder, and unique there. sda decode also refuses to write through a link that leads out of that folder.
MAX_NAME_BYTES = 150  # a component's UTF-8 bytes: leaves room under NAME_MAX (255) for "-N" and a writer's temp name
MAX_DEPTH = 16  # folders kept of an entry's path (sda's scan looks 32 deep; more are joined into the name)


def output_names(entries: tuple[Entry, ...], suffix: str = ".wav") -> list[str]:
    """A safe, unique relative path ('/' separators) for each entry's decoded file, its extension replaced by
    suffix: 'drums/kick.ogg' -> 'drums/kick.wav', '../../etc/passwd' -> 'etc/passwd.wav', '' -> 'entry-000000.wav'."""
    names: list[str] = []
    files: set[str] = set()
    folders: set[str] = set()
    for i, entry in enumerate(entries):
        parts = [_component(p) for p in entry.path.replace("\\", "/").split("/") if p.strip() not in ("", ".", "..")]
        last = parts.pop() if parts else ""
        stem = last.rsplit(".", 1)[0] if "." in last.lstrip("_.") else last  # the extension goes, not a dot name's
        stem = stem if stem.strip("_") else f"entry-{i:06d}"
        if len(parts) >= MAX_DEPTH:
            parts = [*parts[:MAX_DEPTH - 1], _component("_".join(parts[MAX_DEPTH - 1:]))]
        prefixes = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
        if any(prefix in files for prefix in prefixes):  # a folder where a file was named: keep it flat instead
            parts, prefixes = [], []
        folder = "".join(f"{p}/" for p in parts)
        name, n = f"{folder}{stem}{suffix}", 1
        while name in files or name in folders:
            n += 1
            name = f"{folder}{stem}-{n}{suffix}"
        names.append(name)
        files.add(name)
        folders.update(prefixes)
    return names


def _component(text: str) -> str:
    """One path component, safe to create: printable, no separator or NUL, not hidden, at most MAX_NAME_BYTES."""
    text = printable(text).replace("\\", "_").replace("/", "_").strip()
    if text.startswith("."):
        text = "_" + text
    return text.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
