"""Training configuration, and the one place where settings are derived from the dataset.

    cfg = VQVAEConfig(rvq_levels=4)            # codebook_size=None means "auto"
    cfg.validate()                             # ConfigError (a ValueError) naming the bad setting
    cfg = cfg.resolve(seconds=95.0, n_train_chunks=120)   # concrete: codebook size, batch size, epochs
    VQVAEConfig.from_dict(cfg.to_dict()) == cfg         # round trip through JSON metadata
    RunOptions(data_dir=Path("kit"), health_every=5)    # how one run goes: files, device, reporting

Each numeric setting's range and help text are in RANGES, its default in its dataclass: `sda train`'s flags and the
page's controls are built from both (sda.cli.main, sda.ui.app), so neither restates them.
"""

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from sda.errors import ConfigError

RVQ_LEVELS = (2, 3, 4)
# Codebook-size tiers by seconds of usable audio (DESIGN.md): a small collection cannot keep many
# codes busy, and idle codes are what the health display would then report as dead. Seconds, not
# files, because codes hold sound: 171 keyboard clicks (56 s) kept 71-77% of 256 codes busy and
# 87-88% of 128 (bench/RESULTS.md, "codebook size by seconds"), where 120 sounds of 1.6 s on
# average (198 s) keep 94-98% of 256.
CODEBOOK_TIERS = ((30.0, 64), (150.0, 128))  # (seconds below, size); 150 s or more get the last size
LARGEST_CODEBOOK = 256
MIN_FILES = 5
# Auto epochs: at least this many passes, and enough of them for MIN_STEPS optimizer steps, so that
# five drum hits (one batch per epoch) train as long as a folder of stems does.
MIN_EPOCHS, MIN_STEPS, MAX_AUTO_EPOCHS = 30, 400, 1000
# Auto warm-up (sda.train.warmup): this share of the run's steps, and never more than MAX_WARMUP_STEPS.
WARMUP_FRACTION, MAX_WARMUP_STEPS = 0.1, 100
# Reading a folder (sda.data.dataset): the scan stops past these bounds, which no folder of samples comes near,
# rather than walk a whole disk; and sda decodes files at sample rates in FILE_SAMPLE_RATES only.
MAX_SCAN_ENTRIES, MAX_SCAN_DEPTH, MAX_SCAN_SECONDS = 50_000, 32, 30.0
FILE_SAMPLE_RATES = (1000, 768_000)  # Hz, both included
# The codec (encode, decode, reconstruct) takes a file whole: this long at most, so that one file cannot exhaust
# memory (10 minutes at 48 kHz is 29 M samples; the encoder and Griffin-Lim hold a few copies of it).
MAX_CODEC_SECONDS = 600.0
# ...and this many samples (frames x channels) at most: 10 minutes of 48 kHz stereo, 230 MB as float32. A file at a
# high rate or with many channels reaches it first, so that no file the page is given can exhaust its memory.
MAX_CODEC_SAMPLES = int(MAX_CODEC_SECONDS) * 48_000 * 2
# Decoding a folder (sda.data.parallel, sda.data.cache). Files are decoded by a pool of this many processes at most
# (the default is one per core this process may run on, and never more than the files); 1 decodes in this process.
MAX_DECODE_WORKERS = 256
# Decoded files are kept on disk, so that a second run on the same folder (or the page's Start after its check)
# decodes nothing that has not changed: under $SDA_CACHE_DIR if it is set, else $XDG_CACHE_HOME/sda/decoded, else
# ~/.cache/sda/decoded; at most CACHE_MAX_BYTES, the least recently used entries going first.
CACHE_DIR_ENV = "SDA_CACHE_DIR"
CACHE_MAX_BYTES = 2 * 2**30  # 2 GiB: the log-mels of about 2,000 files of 20 s on average
# Reconstructions are matched to their input's loudness, then limited to this peak so that no sample clips.
OUTPUT_PEAK = 0.98  # full scale is 1.0; -0.18 dBFS


@dataclass(frozen=True)
class Range:
    """The type, bounds and meaning of one setting, wherever it enters (flag, page field, file): `sda train`'s flags
    and the page's controls are built from these, with the dataclass defaults. Bounds are inclusive unless open;
    every setting that sizes memory or time has an upper one, so no value can exhaust either."""

    whole: bool  # an int (never a bool or a float); else a finite number
    low: float
    high: float
    low_open: bool = False  # low itself is not allowed
    high_open: bool = False
    help: str = ""  # what it does, for `sda train --help` and the page; an OPTIONAL setting says what None does
    label: str = ""  # its name in words, on the page ("" : the setting's name with spaces)
    typical: tuple[float, float] | None = None  # the span a page slider offers (None: low to high)

    def label_for(self, name: str) -> str:
        return self.label or name.replace("_", " ").capitalize()

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        low, high = (f"{v:g}" if not self.whole else f"{int(v)}" for v in (self.low, self.high))
        lower = f"above {low} and" if self.low_open else f"from {low}"
        upper = f"below {high}" if self.high_open else (f"at most {high}" if self.low_open else f"to {high}")
        return f"{kind} {lower} {upper}"

    def fits(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.whole else (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def check(self, name: str, value):
        if not self.fits(value):
            raise ConfigError(f"{name}={_short(value)} is out of range: expected {self.describe()}")
        return value


# The frontends, for messages and advice that name what the one in use offers: a flag, or a page control.
CLI, PAGE = "cli", "page"
MAX_EPOCHS = 100_000
SEED_RANGE = Range(True, 0, 2**32 - 1)  # what every generator seeded from it (torch, numpy) accepts
# Every numeric setting's type, range and meaning: VQVAEConfig's, AudioConfig's and RunOptions'. The defaults are
# the dataclasses' own.
RANGES = {
    "sample_rate": Range(True, 8000, 192_000, help="Hz: every file is resampled to this, in mono"),
    "n_fft": Range(True, 64, 16_384, help="FFT window of the log-mel, in samples (a power of two)"),
    "hop_length": Range(True, 1, 16_384, help="samples between log-mel frames"),
    "n_mels": Range(True, 8, 512, help="mel bands of the log-mel (at most n_fft/2 + 1)"),
    "chunk_frames": Range(True, 8, 4096, help="log-mel frames per training chunk (a multiple of --downsample)"),
    "max_chunks_per_file": Range(True, 1, 4096, help="chunks taken from one file; longer files are sampled evenly"),
    "rvq_levels": Range(True, 2, 4, help="codebook levels: fewer = faster, more = finer detail", label="RVQ levels"),
    "codebook_size": Range(True, 2, 8192, help="codes per level; auto: by seconds of audio (" + ", ".join(
        f"{size} under {below:g} s" for below, size in CODEBOOK_TIERS) + f", else {LARGEST_CODEBOOK})"),
    "codebook_dim": Range(True, 1, 1024, help="size of each code vector (the latent channels)"),
    "hidden_channels": Range(True, 8, 1024, help="channels of the encoder's and decoder's convolutions"),
    "downsample": Range(True, 1, 8, help="log-mel frames per code position: 1, 2, 4 or 8"),
    "commitment_weight": Range(False, 0, 10, low_open=True, typical=(0.05, 1.0),
                               help="how strongly the encoder is pulled toward its codes: higher keeps codes steady, "
                                    "lower lets reconstruction improve faster"),
    "ema_decay": Range(False, 0, 1, low_open=True, high_open=True, help="how slowly the codebooks follow the data "
                                                                        "(EMA decay per step)"),
    "dead_code_threshold": Range(False, 0, 1000, help="a code used less than this per step (EMA) is replaced"),
    "kmeans_iters": Range(True, 0, 1000, help="k-means iterations that initialise each codebook level"),
    "warmup_steps": Range(True, 0, 1_000_000, help=f"steps trained before the quantizer comes on; auto: "
                                                  f"{WARMUP_FRACTION:.0%} of the run, at most {MAX_WARMUP_STEPS}"),
    "epochs": Range(True, 1, MAX_EPOCHS, help=f"passes over the training chunks; auto: enough for {MIN_STEPS} "
                                             f"steps, at least {MIN_EPOCHS}"),
    "batch_size": Range(True, 1, 4096, help="chunks per step (per process, with several)"),
    "learning_rate": Range(False, 0, 1, low_open=True, high_open=True, help="AdamW's learning rate"),
    "grad_clip": Range(False, 0, 1e6, low_open=True, help="gradients are clipped to this norm"),
    "validation_fraction": Range(False, 0, 1, low_open=True, high_open=True,
                                 help="share of the files kept for validation (at least one file)"),
    "seed": dataclasses.replace(SEED_RANGE, help="seeds the split, the shuffle and the weights"),
    # run options (RunOptions)
    "health_every": Range(True, 1, 100_000, help="steps between codebook health updates",
                          label="Health update interval"),
    "checkpoint_every": Range(True, 1, MAX_EPOCHS, help="epochs between checkpoints; auto: about ten per run"),
    "preview_every": Range(True, 1, MAX_EPOCHS, help="epochs between audio previews; auto: about ten per run"),
    "timeout_s": Range(False, 0, 86_400, low_open=True,
                       help="several processes: seconds one waits for the others before the run fails"),
}
OPTIONAL = {"codebook_size", "warmup_steps", "epochs", "checkpoint_every", "preview_every"}  # None: automatic


def check_setting(name: str, value):
    """value if it is a valid value of setting name (RANGES; None where automatic), else ConfigError."""
    if value is None and name in OPTIONAL:
        return value
    return RANGES[name].check(name, value)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def auto_warmup_steps(total_steps: int) -> int:
    """Warm-up steps for a run of total_steps optimizer steps: 10% of them, at most 100."""
    return min(MAX_WARMUP_STEPS, int(WARMUP_FRACTION * total_steps))


def auto_codebook_size(seconds: float) -> int:
    """Codes per level for a collection of this many seconds of usable audio: 64, 128 or 256."""
    for below, size in CODEBOOK_TIERS:
        if seconds < below:
            return size
    return LARGEST_CODEBOOK


def smaller_codebook_size(used_codes: int, current: int) -> int | None:
    """A codebook size the codes in use would fill to at least half (a power of two), or None if it would
    not be smaller than current: what the advice for a weak level suggests."""
    size = max(2, 1 << max(1, 2 * used_codes).bit_length() - 1)  # the largest power of two <= 2 x used
    return size if size < current else None


@dataclass(frozen=True)
class AudioConfig:
    """How audio becomes the model's input: mono at sample_rate, log-mel frames, fixed chunks."""

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 80
    chunk_frames: int = 64  # mel frames per training chunk: 64 x 256 samples = 0.74 s at 22050 Hz
    max_chunks_per_file: int = 256  # long files are sampled evenly beyond this (about 3 minutes)

    @property
    def chunk_samples(self) -> int:
        return self.chunk_frames * self.hop_length

    @property
    def chunk_seconds(self) -> float:
        return self.chunk_samples / self.sample_rate

    def validate(self) -> None:
        _check_ranges(self)
        _check(self.n_fft & (self.n_fft - 1) == 0, "n_fft", self.n_fft, "a power of two, at least 64")
        _check(0 < self.hop_length <= self.n_fft, "hop_length", self.hop_length, f"between 1 and n_fft={self.n_fft}")
        _check(8 <= self.n_mels <= self.n_fft // 2 + 1, "n_mels", self.n_mels,
               f"between 8 and n_fft/2+1={self.n_fft // 2 + 1}")


@dataclass(frozen=True)
class VQVAEConfig:
    """Everything that defines a model and its training run. Saved whole in every .sda file."""

    audio: AudioConfig = field(default_factory=AudioConfig)
    rvq_levels: int = 3
    codebook_size: int | None = None  # None: auto from the number of usable files
    codebook_dim: int = 64
    hidden_channels: int = 128
    downsample: int = 4  # mel frames per code position (a power of two)
    commitment_weight: float = 0.25
    ema_decay: float = 0.95
    dead_code_threshold: float = 0.25  # EMA assignments per step under which a code is replaced
    kmeans_iters: int = 10
    # Early training (sda.train.warmup): None = auto_warmup_steps of the run; 0 = quantize from the first step.
    warmup_steps: int | None = None
    epochs: int | None = None  # None: auto, enough passes for MIN_STEPS steps on this dataset
    batch_size: int = 16
    learning_rate: float = 1e-3
    grad_clip: float = 1.0
    validation_fraction: float = 0.1
    seed: int = 0

    def validate(self) -> "VQVAEConfig":
        if not isinstance(self.audio, AudioConfig):
            raise ConfigError(f"audio must be an AudioConfig, not {type(self.audio).__name__}")
        self.audio.validate()
        _check_ranges(self)
        _check(self.downsample in (1, 2, 4, 8), "downsample", self.downsample, "1, 2, 4 or 8")
        _check(self.audio.chunk_frames % self.downsample == 0, "chunk_frames", self.audio.chunk_frames,
               f"a multiple of downsample={self.downsample}")
        return self

    def resolve(self, seconds: float, n_train_chunks: int) -> "VQVAEConfig":
        """The concrete config for a dataset of this many seconds of usable audio (every file, as the
        preflight counts it) and training chunks: every setting that depends on its size, decided here."""
        size = self.codebook_size if self.codebook_size is not None else auto_codebook_size(seconds)
        batch = max(1, min(self.batch_size, n_train_chunks))  # one small folder may hold fewer chunks
        steps_per_epoch = -(-n_train_chunks // batch)
        epochs = self.epochs or min(MAX_AUTO_EPOCHS, max(MIN_EPOCHS, -(-MIN_STEPS // steps_per_epoch)))
        return dataclasses.replace(self, codebook_size=size, batch_size=batch, epochs=epochs).validate()

    def with_warmup(self, total_steps: int) -> "VQVAEConfig":
        """The config with a concrete warm-up for a run of total_steps steps (set by the engine, which
        alone knows the step count of a run on several processes)."""
        if self.warmup_steps is not None:
            return self
        return dataclasses.replace(self, warmup_steps=auto_warmup_steps(total_steps))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "VQVAEConfig":
        """Rebuild from to_dict() output; unknown or missing-type keys raise ConfigError."""
        data = dict(data)
        audio = data.pop("audio", {})
        # Files written before sda.train.warmup existed trained without one; resuming them must not add it.
        data.setdefault("warmup_steps", 0)
        _reject_unknown(AudioConfig, audio)
        _reject_unknown(cls, data)
        return cls(audio=AudioConfig(**audio), **data).validate()


@dataclass(frozen=True)
class DecodeOptions:
    """How a folder is decoded (sda.data.dataset.preflight and load_dataset): by how many processes, and whether
    through the on-disk cache (sda.data.cache). Not saved in the model: it changes how fast, never what."""

    workers: int | None = None  # None: one per core, at most the files (sda.data.parallel.decode_workers)
    cache: bool = True
    cache_dir: Path | None = None  # None: default_cache_dir()
    cache_max_bytes: int = CACHE_MAX_BYTES

    def validate(self) -> "DecodeOptions":
        if self.workers is not None:
            _check(not isinstance(self.workers, bool) and isinstance(self.workers, int)
                   and 1 <= self.workers <= MAX_DECODE_WORKERS, "workers", self.workers,
                   f"a whole number from 1 to {MAX_DECODE_WORKERS}")
        _check(not isinstance(self.cache_max_bytes, bool) and isinstance(self.cache_max_bytes, int)
               and self.cache_max_bytes >= 0, "cache_max_bytes", self.cache_max_bytes, "a whole number of bytes")
        return self

    def directory(self) -> Path:
        """Where the cache lives: cache_dir, else $SDA_CACHE_DIR, else the user's cache folder (see CACHE_DIR_ENV)."""
        if self.cache_dir is not None:
            return Path(self.cache_dir).expanduser()
        return default_cache_dir()


def default_cache_dir() -> Path:
    """$SDA_CACHE_DIR, else $XDG_CACHE_HOME/sda/decoded, else ~/.cache/sda/decoded (relative XDG paths are ignored,
    as the XDG specification says)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "sda" / "decoded"


@dataclass(frozen=True)
class RunOptions:
    """How one run goes, apart from the model (sda.train.engine.train): where the data is and the files go, the
    device, and how often it reports and saves. Not saved in the model."""

    data_dir: Path
    out_dir: Path = Path("models")
    model_name: str | None = None  # None: a timestamp name
    device: str = "auto"  # auto: cuda, then mps, then cpu
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere
    health_every: int = 10  # steps between health events (and one at every epoch end)
    checkpoint_every: int | None = None  # epochs; None: about ten per run
    preview_every: int | None = None  # epochs; None: about ten per run
    resume: Path | None = None  # a checkpoint file
    timeout_s: float = 180.0  # several processes: how long one waits for the others before the run fails
    tensorboard: Path | None = None  # also write TensorBoard files in tensorboard/NAME/ (sda.train.metrics)
    frontend: str = CLI  # who reads the run's messages: CLI (they may name flags) or PAGE (the page's controls)
    decode: DecodeOptions = field(default_factory=DecodeOptions)  # how the folder is decoded: pool, cache


def _check_ranges(config) -> None:
    """Every field of config (a dataclass) that has a Range: type first, then bounds."""
    for f in dataclasses.fields(config):
        if f.name in RANGES:
            check_setting(f.name, getattr(config, f.name))


def _check(ok: bool, name: str, value, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is out of range: expected {allowed}")


def _reject_unknown(cls, data: dict) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} setting(s): {', '.join(unknown)}")
