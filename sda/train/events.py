"""The typed events the training engine yields; the CLI and the Gradio tab only ever read these. Those of
more than one field that could be mixed up are built by keyword only.

    for event in train(config, options, stop):
        match event:
            case Started(): ...   # once: preflight report, resolved config, device, where files go
            case Step(): ...      # every optimizer step (or skipped step)
            case Health(): ...    # every options.health_every steps and at each epoch end
            case Alert(): ...     # a warning: low utilization (once per level until it recovers), skipped steps
            case Recovered(): ... # a level that warned is healthy again
            case Epoch(): ...     # train and validation losses
            case Preview(): ...   # original and reconstruction audio files written
            case Checkpoint(): ...
            case Done(): ...      # always last on success or stop: the summary
            case Error(): ...     # instead of Done: what went wrong (its kind: sda.errors), in one message
            case Cancelled(): ... # instead of Done: stopped before the first step, so nothing was saved
"""

from dataclasses import dataclass, field
from pathlib import Path

import torch

from sda.config import VQVAEConfig
from sda.data.dataset import Preflight
from sda.errors import USER_KINDS
from sda.model.bitrate import Bitrate
from sda.model.health import HealthWarning, LevelHealth


@dataclass(frozen=True, kw_only=True)
class Started:
    config: VQVAEConfig  # resolved for this dataset
    preflight: Preflight
    device: str
    precision: str  # "fp32" or "bf16"
    backend: str  # kernel backend: "torch" or "triton"
    model_path: Path
    checkpoint_path: Path
    steps_per_epoch: int
    resumed_at: tuple[int, int] | None  # (epoch, step) when resuming, 1-based epoch
    processes: int = 1  # torch.distributed: each takes batch_size chunks per step
    model_name: str = ""
    run_id: str = ""  # the same in every session of a resumed run
    metrics_path: Path | None = None  # the JSON Lines log (sda.train.metrics); None: none is written


@dataclass(frozen=True, kw_only=True)
class Step:
    epoch: int  # 1-based
    step: int  # global, 1-based
    epoch_step: int  # 1-based within the epoch
    steps_per_epoch: int
    total_steps: int
    loss: float
    reconstruction: float
    commitment: float
    skipped: bool  # non-finite loss or gradients: no update was made
    elapsed_s: float
    eta_s: float | None  # None while too few steps are timed (sda.train.eta)


@dataclass(frozen=True, kw_only=True)
class Health:
    epoch: int
    step: int
    levels: list[LevelHealth]
    window_steps: int  # how many training steps the figures cover
    warming_up: bool = False  # sda.train.warmup: the quantizer is not on yet (or its warm-up is not over)
    judged: bool = True  # the figures are judged against the 30% line (see sda.model.health.judged)
    warnings: tuple[HealthWarning, ...] = ()  # every low-utilization warning so far, each with its outcome
    usage: torch.Tensor | None = None  # [levels, K] int64: each code's assignments in the window
    bitrate: Bitrate | None = None  # of the window's usage (sda.model.bitrate)


@dataclass(frozen=True)
class Alert:
    """A warning for the user (not an exception: training goes on)."""

    message: str
    level: int | None = None  # 0-based RVQ level it concerns, if any
    warning: HealthWarning | None = None  # for a low-utilization warning: its record


@dataclass(frozen=True)
class Recovered:
    """A level that warned has come back over RECOVERED_UTILIZATION (sda.model.health)."""

    warning: HealthWarning  # with recovered_step set


@dataclass(frozen=True, kw_only=True)
class Epoch:
    epoch: int
    epochs: int
    train: dict  # loss, reconstruction, commitment: means over the epoch's steps
    validation: dict  # loss, reconstruction, commitment on the validation set


@dataclass(frozen=True, kw_only=True)
class Preview:
    epoch: int
    clips: list[tuple[Path, Path]]  # (original, reconstruction) wav files
    sources: tuple[str, ...] = ()  # the audio file of each clip, its printable path in the data folder


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    path: Path
    epoch: int
    step: int
    reason: str  # "interval", "stop" or "end"


@dataclass(frozen=True, kw_only=True)
class Summary:
    model_name: str
    model_path: Path
    model_bytes: int
    checkpoint_path: Path
    device: str
    precision: str
    backend: str
    epochs_done: int
    epochs: int
    steps: int
    elapsed_s: float
    stopped: bool  # by the stop flag (Stop button, Ctrl-C) before the last epoch
    resumed: bool
    train_loss: float | None
    val_loss: float | None
    val_reconstruction: float | None
    health: list[LevelHealth]  # the last training health window
    warnings: list[str] = field(default_factory=list)  # other than codebook health: skipped steps, resume notes
    processes: int = 1
    health_warnings: list[HealthWarning] = field(default_factory=list)  # each with its outcome
    warmup_steps: int = 0
    val_chunks: int = 0  # what validation measured on
    val_files: int = 0
    bitrate: Bitrate | None = None  # of the last training health window
    usage: torch.Tensor | None = None  # [levels, K] int64: its per-code counts
    metrics_path: Path | None = None  # the run's JSON Lines log (sda.train.metrics)


@dataclass(frozen=True)
class Done:
    summary: Summary


@dataclass(frozen=True)
class Error:
    message: str
    kind: str  # sda.errors.KINDS: "settings", "data", ... "save", "process"; the frontends map it, nothing else
    quiet: bool = False  # a process other than the first of a distributed run, which reports the same error

    @property
    def bad_input(self) -> bool:
        """The data, settings or files given (the user can fix them); False: training itself failed."""
        return self.kind in USER_KINDS


@dataclass(frozen=True)
class Cancelled:
    """The run was stopped before its first step (in preflight or k-means): nothing was written, the name is free."""

    message: str


Event = Started | Step | Health | Alert | Recovered | Epoch | Preview | Checkpoint | Done | Error | Cancelled
