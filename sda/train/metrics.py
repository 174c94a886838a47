"""The run's figures for other tools: a JSON Lines log beside the model, and TensorBoard files if asked for.

    logs = RunLogs.for_options(options)        # the JSON Lines log always; TensorBoard with options.tensorboard
    for event in logs.follow(events):          # the engine's events (sda.train.engine.train), each written
        ...                                    # first; plus, once per log that fails, the Alert saying so

Both logs open on Started, which names the files, and follow the run from there: a resumed run appends to the
log it had (never truncating it) and TensorBoard continues at its step. A new run stopped before its first
step (Cancelled) removes the log it began, so that its name stays free. A log that cannot be written (full disk,
a directory in the way) warns once and writes no more: the model is what matters, so the run goes on. Only the
first process of a distributed run is fed events (the engine's choice), so only it writes.

The JSON Lines log, <out_dir>/<name>.metrics.jsonl: one JSON object a line, flushed after each, so a crash keeps
what was written (a disk that filled mid-line may leave the last line cut: a reader skips a line that does not
parse). Non-finite numbers are written as null. Fields by record (every record has type, time, step):

    field                 records   meaning
    type                  all       "start", "health", "epoch" or "end"
    time                  all       unix seconds when it was written
    step                  all       global optimizer step (1-based) it was written at; 0 before the first step
    model_name            start     the model's name (NAME of NAME.sda)
    run_id                start     the run's identity: the same in every session of a resumed run
    sda_version           start     sda.__version__ of the writer
    config                start     the resolved VQVAEConfig (to_dict: every setting, auto ones decided)
    resumed_at            start     {"epoch", "step"} where a resumed session went on, or null for a new run;
                                    records of an earlier session past that step were not kept in the model
    device, precision,    start     where it trains: "cpu", "cuda:0"...; "fp32" or "bf16"; "torch" or "triton"
    backend
    processes             start     processes of the run (torch.distributed), each with a batch_size batch
    steps_per_epoch       start     optimizer steps in an epoch
    epoch                 health,   1-based epoch
                          epoch
    window_steps          health    training steps the window's figures cover
    warming_up            health    the quantizer is not on yet: its figures mean nothing
    judged                health    the window is long enough to be judged against the 30% line
    frame_rate            health    code positions per second of audio, per level
    nominal_bps           health    bit/s if every code were equally likely (levels x log2 K x frame rate)
    effective_bps         health    bit/s an entropy coder could reach on the window's usage
    effective_share       health    effective_bps / nominal_bps, in [0, 1]
    levels                health    one object per RVQ level, in order:
      level                           0-based level
      codebook_size                   K, codes of the level
      utilization                     share of its codes used in the window, in [0, 1]
      perplexity                      2 ** entropy_bits; 0 when nothing was counted
      used, dead                      codes used, codes unused in the window
      replaced                        codes re-seeded in the window (dead-code replacement)
      assignments                     vectors counted in the window
      entropy_bits                    usage entropy, in bits a code position
      bps                             the level's effective bit/s (frame_rate x entropy_bits)
    epochs                epoch     epochs of the run
    train                 epoch     {"loss", "reconstruction", "commitment"}: means over the epoch's steps
    validation            epoch     the same three on the validation set
    outcome               end       "done" (every epoch), "stopped" (the stop flag) or "error"
    error                 end       {"kind", "message"} for outcome "error" (kinds: sda.errors), else null
    epochs_done           end       epochs of the run's history (null after an error, as are the next ones)
    elapsed_s             end       training seconds over every session of the run
    model_path            end       where the model was saved
    model_bytes           end       its size
    train_loss, val_loss, end       the last epoch's training loss, validation loss and reconstruction
    val_reconstruction
    nominal_bps,          end       the bitrate of the last health window, as in a health record
    effective_bps,
    effective_share
    health_warnings       end       low-utilization warnings of the run
    still_weak            end       of those, the ones still under the line at the end

TensorBoard (`sda train --tensorboard DIR`, the optional package: pip install 'sda[tensorboard]') writes
DIR/<name>/, so that runs side by side in DIR compare in one board: scalars train/loss, train/reconstruction,
train/commitment per step; epoch/{train,validation}_{loss,reconstruction,commitment} per epoch; per health
window level<N>/utilization, level<N>/perplexity, level<N>/effective_bps and bitrate/effective_bps,
bitrate/effective_share; and the histogram level<N>/usage: the window's code indices, each counted as often as it
was assigned. Its x axis is the global step.
"""

import contextlib
import json
import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

import sda
from sda.config import RunOptions
from sda.errors import ConfigError
from sda.model.bitrate import Bitrate, entropy_bits
from sda.model.health import LevelHealth
from sda.text import printable
from sda.train.events import Alert, Cancelled, Checkpoint, Done, Epoch, Error, Event, Health, Started, Step, Summary

TENSORBOARD_MISSING = "--tensorboard needs the tensorboard package: pip install 'sda[tensorboard]'"


def check_tensorboard() -> None:
    """ConfigError unless TensorBoard files can be written: at setup, before any audio is read."""
    try:
        import tensorboard  # noqa: F401  (torch's writer needs it, and says so less plainly)
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError(TENSORBOARD_MISSING) from None


class _Log(Protocol):
    def write(self, event: Event) -> None: ...
    def close(self) -> None: ...


class RunLogs:
    """The logs a run writes, fed every event; a log that fails once warns once and is dropped."""

    def __init__(self, logs: Iterable[tuple[str, _Log]]):
        self._logs = dict(logs)  # what each is, in words, for its warning -> the log

    @classmethod
    def for_options(cls, options: RunOptions) -> "RunLogs":
        """The JSON Lines log; TensorBoard too when options.tensorboard (RunOptions) names a folder."""
        logs: list[tuple[str, _Log]] = [("the metrics log", MetricsLog())]
        if options.tensorboard is not None:
            logs.append(("the TensorBoard log", TensorBoardLog(Path(options.tensorboard).expanduser())))
        return cls(logs)

    def follow(self, events: Iterable[Event]) -> Iterator[Event]:
        """events, each written to the logs before it goes on; a log's warning comes right after the event that
        failed it, or before it when that is the run's last (Done, Error, Cancelled), which stays last."""
        try:
            for event in events:
                alerts = self.write(event)
                if isinstance(event, Done | Error | Cancelled):
                    yield from alerts
                    yield event
                else:
                    yield event
                    yield from alerts
        finally:
            self.close()

    def write(self, event: Event) -> list[Alert]:
        alerts = []
        for what, log in list(self._logs.items()):
            try:
                log.write(event)
            except Exception as exc:  # whatever a log meets (a full disk, TensorBoard's own errors), training goes on
                del self._logs[what]
                _close_quietly(log)
                alerts.append(Alert(f"could not write {what} ({_reason(exc)}): it stops here; training goes "
                                    "on, and the model is saved as usual"))
        return alerts

    def close(self) -> None:
        for log in self._logs.values():
            _close_quietly(log)
        self._logs.clear()


class MetricsLog:
    """<out_dir>/<name>.metrics.jsonl (Started.metrics_path), one record a health window, an epoch, the start and
    the end (the table in the module docstring)."""

    def __init__(self) -> None:
        self._file: IO[str] | None = None
        self._path: Path | None = None
        self._created = False  # this session made the file (a new run), rather than appending to a resumed one's
        self._step = 0

    def write(self, event: Event) -> None:
        if isinstance(event, Started):
            self._open(event)
        if self._file is None:
            return  # nothing to write before Started (a refused run writes nothing), or after the end
        match event:
            case Step() | Health() | Checkpoint():
                self._step = event.step
        match event:
            case Started():
                self._record("start", **start_fields(event))
            case Health():
                self._record("health", **health_fields(event))
            case Epoch():
                self._record("epoch", epoch=event.epoch, epochs=event.epochs, train=event.train,
                             validation=event.validation)
            case Done():
                self._record("end", **end_fields(event.summary))
                self.close()
            case Error():
                self._record("end", **end_fields(None, event))
                self.close()
            case Cancelled():
                self._forget()

    def _open(self, started: Started) -> None:
        if started.metrics_path is None:
            return
        self._path = started.metrics_path
        self._created = not self._path.exists()
        self._file = open(self._path, "a", encoding="utf-8")  # noqa: SIM115  (open for the run, closed at its end)
        self._step = started.resumed_at[1] if started.resumed_at else 0

    def _record(self, kind: str, **fields: Any) -> None:
        assert self._file is not None
        record = {"type": kind, "time": time.time(), "step": self._step, **fields}
        self._file.write(json.dumps(_json_safe(record), allow_nan=False) + "\n")
        self._file.flush()

    def _forget(self) -> None:
        """A new run cancelled before its first step saves nothing (sda.train.engine), and leaves no log either:
        its name stays free. (A resumed one is never cancelled once Started: it saves where it stands.)"""
        self.close()
        if self._created and self._path is not None:
            self._path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def start_fields(started: Started) -> dict[str, Any]:
    resumed = started.resumed_at
    return {"model_name": started.model_name, "run_id": started.run_id, "sda_version": sda.__version__,
            "config": started.config.to_dict(),
            "resumed_at": {"epoch": resumed[0], "step": resumed[1]} if resumed else None,
            "device": started.device, "precision": started.precision, "backend": started.backend,
            "processes": started.processes, "steps_per_epoch": started.steps_per_epoch}


def health_fields(health: Health) -> dict[str, Any]:
    return {"epoch": health.epoch, "window_steps": health.window_steps, "warming_up": health.warming_up,
            "judged": health.judged, **bitrate_fields(health.bitrate),
            "levels": [level_fields(h, health.bitrate) for h in health.levels]}


def bitrate_fields(rate: Bitrate | None) -> dict[str, Any]:
    keys = ("frame_rate", "nominal_bps", "effective_bps", "effective_share")
    if rate is None:
        return dict.fromkeys(keys)
    return dict(zip(keys, (rate.frame_rate, rate.nominal_bps, rate.effective_bps, rate.share), strict=True))


def level_fields(h: LevelHealth, rate: Bitrate | None) -> dict[str, Any]:
    return {**h.to_dict(), "entropy_bits": entropy_bits(h),
            "bps": rate.level_bps(h.level) if rate is not None and h.level < rate.levels else None}


def end_fields(summary: Summary | None, error: Error | None = None) -> dict[str, Any]:
    """The end record's fields: of the Summary (Done), or of the Error with the figures null."""
    if summary is None:
        assert error is not None
        keys = ("epochs_done", "epochs", "elapsed_s", "model_path", "model_bytes", "train_loss", "val_loss",
                "val_reconstruction", "nominal_bps", "effective_bps", "effective_share", "health_warnings",
                "still_weak")
        return {"outcome": "error", "error": {"kind": error.kind, "message": error.message}, **dict.fromkeys(keys)}
    rate = bitrate_fields(summary.bitrate)
    del rate["frame_rate"]
    return {"outcome": "stopped" if summary.stopped else "done", "error": None,
            "epochs_done": summary.epochs_done, "epochs": summary.epochs, "elapsed_s": summary.elapsed_s,
            "model_path": str(summary.model_path), "model_bytes": summary.model_bytes,
            "train_loss": summary.train_loss, "val_loss": summary.val_loss,
            "val_reconstruction": summary.val_reconstruction, **rate,
            "health_warnings": len(summary.health_warnings),
            "still_weak": sum(w.still_weak for w in summary.health_warnings)}


class TensorBoardLog:
    """TensorBoard event files in root/<model name>/ (the module docstring lists what is written)."""

    def __init__(self, root: Path):
        self._root = root
        self._writer: Any = None  # torch's SummaryWriter, imported only when asked for (an optional package)
        self._step = 0

    def write(self, event: Event) -> None:
        if isinstance(event, Started):
            from torch.utils.tensorboard import SummaryWriter

            self._step = started_step = event.resumed_at[1] if event.resumed_at else 0
            # Steps past the checkpoint, from a session that went on after it, are superseded by this one's.
            self._writer = SummaryWriter(str(self._root / event.model_name), purge_step=started_step + 1
                                         if event.resumed_at else None)
        writer = self._writer
        if writer is None:
            return
        match event:
            case Step(skipped=False):
                self._step = event.step
                for name in ("loss", "reconstruction", "commitment"):
                    writer.add_scalar(f"train/{name}", getattr(event, name), event.step)
            case Health():
                self._step = event.step
                self._health(event)
            case Epoch():
                for part, losses in (("train", event.train), ("validation", event.validation)):
                    for name, value in losses.items():
                        writer.add_scalar(f"epoch/{part}_{name}", value, self._step)
            case Done() | Error() | Cancelled():
                self.close()

    def _health(self, health: Health) -> None:
        writer, step, rate = self._writer, health.step, health.bitrate
        for h in health.levels:
            tag = f"level{h.level + 1}"
            writer.add_scalar(f"{tag}/utilization", h.utilization, step)
            writer.add_scalar(f"{tag}/perplexity", h.perplexity, step)
            if rate is not None:
                writer.add_scalar(f"{tag}/effective_bps", rate.level_bps(h.level), step)
        if rate is not None:
            writer.add_scalar("bitrate/effective_bps", rate.effective_bps, step)
            writer.add_scalar("bitrate/effective_share", rate.share, step)
        if health.usage is not None:
            for level, counts in enumerate(health.usage.tolist()):
                usage_histogram(writer, f"level{level + 1}/usage", counts, step)

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()


def usage_histogram(writer: Any, tag: str, counts: list[int], step: int) -> None:
    """The code indices of a level, each weighted by its count: one bucket a code, (i - 0.5, i + 0.5]. Nothing
    for a window that counted nothing (warm-up): TensorBoard cannot draw an empty histogram."""
    total = sum(counts)
    if total == 0:
        return
    used = [i for i, c in enumerate(counts) if c]
    writer.add_histogram_raw(tag, min=used[0], max=used[-1], num=total,
                             sum=sum(i * c for i, c in enumerate(counts)),
                             sum_squares=sum(i * i * c for i, c in enumerate(counts)),
                             bucket_limits=[i + 0.5 for i in range(len(counts))], bucket_counts=counts,
                             global_step=step)


def _json_safe(value: Any) -> Any:
    """value with every non-finite float as None, so that the line is JSON (which has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _close_quietly(log: _Log) -> None:
    with contextlib.suppress(Exception):  # a log that failed may fail again on close; it is dropped anyway
        log.close()


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return printable(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
    return printable(f"{type(exc).__name__}: {exc}")
