"""The records of a training run's history, as a model's metadata keeps them under "history" (SDA_FORMAT.md).

    history = History.from_dict(metadata["history"])   # what the engine resumes, `sda info` and the page read
    metadata["history"] = history.to_dict()            # what the engine writes (sda.train.state.RunState.save)

to_dict writes the dicts sda has always written, key for key; from_dict reads them, also from files written
before a key existed: each missing key gets the value those files meant. Light on purpose (no model code), so
`sda info` stays quick.
"""

from dataclasses import dataclass, field
from typing import Any

from sda.model.health import HealthWarning, LevelHealth


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


@dataclass
class History:
    """What a run has recorded: its epochs, its warnings for the user, its low-utilization warnings."""

    epochs: list[EpochRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # other than codebook health: skipped steps, resume notes
    processes: int = 1  # of the run (the last one, if resumed): each took batch_size chunks a step
    health_warnings: list[HealthWarning] = field(default_factory=list)  # each with its outcome so far

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": [e.to_dict() for e in self.epochs], "warnings": list(self.warnings),
                "processes": self.processes, "health_warnings": [w.to_dict() for w in self.health_warnings]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "History":
        # "processes" and "health_warnings" came later than the rest: files before them ran on one
        # process and raised no such warning.
        return cls(epochs=[EpochRecord.from_dict(e) for e in data["epochs"]], warnings=list(data["warnings"]),
                   processes=data.get("processes", 1),
                   health_warnings=[HealthWarning.from_dict(w) for w in data.get("health_warnings", [])])

    def last(self) -> EpochRecord | None:
        return self.epochs[-1] if self.epochs else None
