"""The records of a training run's history, as a model's metadata keeps them under "history" (SDA_FORMAT.md).

    history = History.from_dict(metadata["history"])   # what the engine resumes, `sda info` and the page read
    metadata["history"] = history.to_dict()            # what the engine writes (sda.train.state.RunState.save)

to_dict writes the dicts sda has always written, key for key; from_dict reads them, also from files written
before a key existed: each missing key gets the value those files meant. Light on purpose (no model code), so
`sda info` stays quick.
"""

import math
from dataclasses import dataclass, field
from typing import Any

from sda.model.health import HealthWarning, LevelHealth

MAX_WINDOWS = 1000  # health windows kept in a model's history; past it, every other one goes (see History.add_window)


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of the loss history: the means of its training steps, validation, and both healths."""

    epoch: int  # 1-based
    train: dict[str, float]  # loss, reconstruction, commitment: means over the epoch's steps
    validation: dict[str, float]  # the same three, means over the validation chunks
    warmup: bool = False  # the epoch had warm-up steps, so its health covers less than all of it
    health: list[LevelHealth] = field(default_factory=list)  # the training window at the epoch's end
    validation_health: list[LevelHealth] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "warmup": self.warmup, "train": self.train, "validation": self.validation,
                "health": [h.to_dict() for h in self.health],
                "validation_health": [h.to_dict() for h in self.validation_health]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EpochRecord":
        # Files from before warm-up existed have no "warmup": none of their epochs had one.
        return cls(epoch=data["epoch"], train=data["train"], validation=data["validation"],
                   warmup=data.get("warmup", False),
                   health=[LevelHealth(**h) for h in data.get("health", [])],
                   validation_health=[LevelHealth(**h) for h in data.get("validation_health", [])])


@dataclass(frozen=True)
class WindowRecord:
    """One health window of the run, as the Health event had it: the points of the health-history charts."""

    step: int  # the step the window ended at (1-based)
    epoch: int
    warming_up: bool  # the quantizer was not on yet: the figures mean nothing
    judged: bool  # measured against the 30% line (sda.model.health.judged)
    utilization: tuple[float, ...]  # per level, fractions in [0, 1]
    perplexity: tuple[float, ...]  # per level

    @classmethod
    def of(cls, step: int, epoch: int, warming_up: bool, judged: bool, levels: list[LevelHealth]) -> "WindowRecord":
        return cls(step, epoch, warming_up, judged, tuple(h.utilization for h in levels),
                   tuple(h.perplexity for h in levels))

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, "warming_up": self.warming_up, "judged": self.judged,
                "utilization": list(self.utilization), "perplexity": list(self.perplexity)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WindowRecord":
        """Raises ValueError on a record sda did not write: charts draw these figures, so they are checked."""
        step, epoch, warming_up, judged = data["step"], data["epoch"], data["warming_up"], data["judged"]
        utilization, perplexity = data["utilization"], data["perplexity"]
        if not (type(step) is int and type(epoch) is int and type(warming_up) is bool and type(judged) is bool
                and isinstance(utilization, list) and isinstance(perplexity, list)
                and len(utilization) == len(perplexity) <= 64
                and all(_finite(u) and 0 <= u <= 1 for u in utilization) and all(_finite(p) for p in perplexity)):
            raise ValueError(f"health window record {str(data)[:80]} is not one sda writes")
        return cls(step, epoch, warming_up, judged, tuple(utilization), tuple(perplexity))


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class History:
    """What a run has recorded: its epochs, its warnings for the user, its low-utilization warnings."""

    epochs: list[EpochRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # other than codebook health: skipped steps, resume notes
    processes: int = 1  # of the run (the last one, if resumed): each took batch_size chunks a step
    health_warnings: list[HealthWarning] = field(default_factory=list)  # each with its outcome so far
    windows: list[WindowRecord] = field(default_factory=list)  # every health window, thinned past MAX_WINDOWS

    def add_window(self, record: WindowRecord) -> None:
        """Keep a window; past MAX_WINDOWS, drop every other one of those kept (never the first or the newest), so
        a long run's history stays a few hundred kB and still spans the whole run, denser towards its end."""
        self.windows.append(record)
        if len(self.windows) > MAX_WINDOWS:
            self.windows = self.windows[:-1:2] + self.windows[-1:]

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": [e.to_dict() for e in self.epochs], "warnings": list(self.warnings),
                "processes": self.processes, "health_warnings": [w.to_dict() for w in self.health_warnings],
                "windows": [w.to_dict() for w in self.windows]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "History":
        # "processes", "health_warnings" and "windows" came later than the rest: files before them ran on one
        # process, raised no such warning and kept no window.
        return cls(epochs=[EpochRecord.from_dict(e) for e in data["epochs"]], warnings=list(data["warnings"]),
                   processes=data.get("processes", 1),
                   health_warnings=[HealthWarning.from_dict(w) for w in data.get("health_warnings", [])],
                   windows=[WindowRecord.from_dict(w) for w in data.get("windows", [])])

    def last(self) -> EpochRecord | None:
        return self.epochs[-1] if self.epochs else None
