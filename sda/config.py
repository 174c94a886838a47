"""Training configuration, and the one place where settings are derived from the dataset.

    cfg = VQVAEConfig(rvq_levels=4)            # codebook_size=None means "auto"
    cfg.validate()                             # ConfigError (a ValueError) naming the bad setting
    cfg = cfg.resolve(n_files=37, n_train_chunks=120)   # concrete: codebook size, batch size, epochs
    VQVAEConfig.from_dict(cfg.to_dict()) == cfg         # round trip through JSON metadata
"""

import dataclasses
from dataclasses import dataclass, field

RVQ_LEVELS = (2, 3, 4)
# Codebook-size tiers by number of usable files (DESIGN.md): a small collection cannot keep many
# codes busy, and idle codes are what the health display would then report as dead.
CODEBOOK_TIERS = ((20, 64), (100, 128))  # (files below, size); 100 files or more get the last size
LARGEST_CODEBOOK = 256
MIN_FILES = 5
# Auto epochs: at least this many passes, and enough of them for MIN_STEPS optimizer steps, so that
# five drum hits (one batch per epoch) train as long as a folder of stems does.
MIN_EPOCHS, MIN_STEPS, MAX_AUTO_EPOCHS = 30, 400, 1000
# Auto warm-up (sda.warmup): this share of the run's steps, and never more than MAX_WARMUP_STEPS.
WARMUP_FRACTION, MAX_WARMUP_STEPS = 0.1, 100
# Reading a folder (sda.data): the scan stops past these bounds, which no folder of samples comes near,
# rather than walk a whole disk; and sda decodes files at sample rates in FILE_SAMPLE_RATES only.
MAX_SCAN_ENTRIES, MAX_SCAN_DEPTH, MAX_SCAN_SECONDS = 50_000, 32, 30.0
FILE_SAMPLE_RATES = (1000, 768_000)  # Hz, both included


class ConfigError(ValueError):
    """A setting is out of range or unknown; the message names it and the allowed values."""


def auto_warmup_steps(total_steps: int) -> int:
    """Warm-up steps for a run of total_steps optimizer steps: 10% of them, at most 100."""
    return min(MAX_WARMUP_STEPS, int(WARMUP_FRACTION * total_steps))


def auto_codebook_size(n_files: int) -> int:
    """Codes per level for a collection of n_files usable files: 64, 128 or 256."""
    for below, size in CODEBOOK_TIERS:
        if n_files < below:
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
        _check(self.sample_rate >= 8000, "sample_rate", self.sample_rate, "at least 8000 Hz")
        _check(self.n_fft >= 64 and self.n_fft & (self.n_fft - 1) == 0, "n_fft", self.n_fft,
               "a power of two, at least 64")
        _check(0 < self.hop_length <= self.n_fft, "hop_length", self.hop_length, f"between 1 and n_fft={self.n_fft}")
        _check(8 <= self.n_mels <= self.n_fft // 2 + 1, "n_mels", self.n_mels,
               f"between 8 and n_fft/2+1={self.n_fft // 2 + 1}")
        _check(self.chunk_frames >= 8, "chunk_frames", self.chunk_frames, "at least 8")
        _check(self.max_chunks_per_file >= 1, "max_chunks_per_file", self.max_chunks_per_file, "at least 1")


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
    # Early training (sda.warmup): None = auto_warmup_steps of the run; 0 = quantize from the first step.
    warmup_steps: int | None = None
    epochs: int | None = None  # None: auto, enough passes for MIN_STEPS steps on this dataset
    batch_size: int = 16
    learning_rate: float = 1e-3
    grad_clip: float = 1.0
    validation_fraction: float = 0.1
    seed: int = 0

    def validate(self) -> "VQVAEConfig":
        self.audio.validate()
        _check(self.rvq_levels in RVQ_LEVELS, "rvq_levels", self.rvq_levels, "2, 3 or 4")
        _check(self.codebook_size is None or 2 <= self.codebook_size <= 65536, "codebook_size",
               self.codebook_size, "auto, or between 2 and 65536")
        _check(1 <= self.codebook_dim <= 1024, "codebook_dim", self.codebook_dim, "between 1 and 1024")
        _check(self.hidden_channels >= 8, "hidden_channels", self.hidden_channels, "at least 8")
        _check(self.downsample in (1, 2, 4, 8), "downsample", self.downsample, "1, 2, 4 or 8")
        _check(self.audio.chunk_frames % self.downsample == 0, "chunk_frames", self.audio.chunk_frames,
               f"a multiple of downsample={self.downsample}")
        _check(0 < self.commitment_weight <= 10, "commitment_weight", self.commitment_weight, "in (0, 10]")
        _check(0 < self.ema_decay < 1, "ema_decay", self.ema_decay, "strictly between 0 and 1")
        _check(self.dead_code_threshold >= 0, "dead_code_threshold", self.dead_code_threshold, "0 (off) or more")
        _check(self.kmeans_iters >= 0, "kmeans_iters", self.kmeans_iters, "0 (no k-means) or more")
        _check(self.warmup_steps is None or self.warmup_steps >= 0, "warmup_steps", self.warmup_steps,
               "auto, or 0 (none) or more")
        _check(self.epochs is None or self.epochs >= 1, "epochs", self.epochs, "auto, or at least 1")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "at least 1")
        _check(0 < self.learning_rate < 1, "learning_rate", self.learning_rate, "in (0, 1)")
        _check(self.grad_clip > 0, "grad_clip", self.grad_clip, "positive")
        _check(0 < self.validation_fraction < 1, "validation_fraction", self.validation_fraction, "in (0, 1)")
        _check(self.seed >= 0, "seed", self.seed, "0 or more")
        return self

    def resolve(self, n_files: int, n_train_chunks: int) -> "VQVAEConfig":
        """The concrete config for a dataset: every setting that depends on its size, decided here."""
        size = self.codebook_size if self.codebook_size is not None else auto_codebook_size(n_files)
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
        # Files written before sda.warmup existed trained without one; resuming them must not add it.
        data.setdefault("warmup_steps", 0)
        _reject_unknown(AudioConfig, audio)
        _reject_unknown(cls, data)
        return cls(audio=AudioConfig(**audio), **data).validate()


def _check(ok: bool, name: str, value, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is out of range: expected {allowed}")


def _reject_unknown(cls, data: dict) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} setting(s): {', '.join(unknown)}")
