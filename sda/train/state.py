"""Where a training run stands, and what it has recorded (sda.train.history): the one place that writes it
into a model and its checkpoint, and reads it back to resume.

    state = RunState.start(processes)                                   # a new run, at epoch 1, step 0
    state, notes = RunState.restore(checkpoint, model, optimizer, steps_per_epoch, processes, path)
    state.advance(losses, ok); state.next_epoch()                       # as training goes
    state.save(files, model, optimizer, config, preflight, health, usage)   # the model file, then the checkpoint

A model's metadata gets the "history" and "weights" records, a checkpoint's the "position" too, key for key
as SDA_FORMAT.md has them; restore() reads what any sda wrote.
"""

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sda.config import VQVAEConfig
from sda.data.dataset import Preflight
from sda.errors import SdaFormatError
from sda.format import modelfile
from sda.format.modelfile import TrainingState
from sda.model.health import LevelHealth
from sda.model.vqvae import ConvVQVAE
from sda.text import plural
from sda.train.history import History
from sda.train.runfiles import RunFiles


@dataclass(frozen=True)
class Losses:
    """The losses of one step, as the Step events report them: the total, the reconstruction and the commitment
    (summed over levels)."""

    loss: float
    reconstruction: float
    commitment: float

    def finite(self) -> bool:
        return all(math.isfinite(t) for t in (self.loss, self.reconstruction, self.commitment))


@dataclass
class Sums:
    """An epoch's running sums of the Losses over its steps (skipped steps not counted); saved mid-epoch so
    a resumed epoch's means come out as if it had never stopped."""

    loss: float = 0.0
    reconstruction: float = 0.0
    commitment: float = 0.0
    steps: int = 0

    def add(self, losses: Losses, steps: int = 1) -> None:
        self.loss += losses.loss
        self.reconstruction += losses.reconstruction
        self.commitment += losses.commitment
        self.steps += steps

    def means(self) -> dict[str, float]:
        """{"loss", "reconstruction", "commitment"}: the history's and the Epoch event's form."""
        n = max(1, self.steps)
        return {"loss": self.loss / n, "reconstruction": self.reconstruction / n, "commitment": self.commitment / n}

    def to_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "reconstruction": self.reconstruction, "commitment": self.commitment,
                "steps": self.steps}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Sums":
        return cls(data["loss"], data["reconstruction"], data["commitment"], data["steps"])


@dataclass
class RunState:
    """Where training stands (the next step is step + 1, the epoch_step + 1-th of epoch), the epoch's sums and the
    history: everything a checkpoint keeps of a run besides its tensors."""

    processes: int
    epoch: int = 1  # 1-based; epochs + 1 once the last one has ended
    epoch_step: int = 0  # steps of this epoch done
    step: int = 0  # steps of the run done, all epochs
    sums: Sums = field(default_factory=Sums)
    history: History = field(default_factory=History)
    elapsed_before: float = 0.0  # seconds trained by the runs this one continues
    started: float = field(default_factory=time.monotonic)  # this session's start (time.monotonic)
    bad_steps: int = 0  # non-finite steps in a row; not saved, a resumed run counts afresh

    @classmethod
    def start(cls, processes: int, started: float | None = None) -> "RunState":
        state = cls(processes=processes, history=History(processes=processes))
        if started is not None:
            state.started = started
        return state

    def elapsed(self) -> float:
        """Seconds of training of the whole run, this session and the ones it continues."""
        return self.elapsed_before + time.monotonic() - self.started

    def advance(self, losses: Losses, ok: bool) -> None:
        """One step done: counted in the epoch's sums if it updated the model (ok), else as one more bad step."""
        self.epoch_step, self.step = self.epoch_step + 1, self.step + 1
        if ok:
            self.sums.add(losses)
            self.bad_steps = 0
        else:
            self.bad_steps += 1

    def next_epoch(self) -> None:
        self.epoch, self.epoch_step, self.sums = self.epoch + 1, 0, Sums()

    def weights(self) -> dict[str, Any]:
        """The "weights" record: which point of training a saved file's weights are from."""
        return {"step": self.step, "epoch": self.epoch if self.epoch_step else self.epoch - 1,
                "mid_epoch": self.epoch_step > 0}

    def position(self) -> dict[str, Any]:
        """The checkpoint's "position" record, which restore() reads back."""
        return {"epoch": self.epoch, "epoch_step": self.epoch_step, "step": self.step, "sums": self.sums.to_dict(),
                "processes": self.processes, "elapsed_s": self.elapsed()}

    def save(self, files: RunFiles, model: ConvVQVAE, optimizer: torch.optim.Optimizer, config: VQVAEConfig,
             preflight: Preflight, health: list[LevelHealth], usage: torch.Tensor | None = None) -> None:
        """The model first (what the user came for), then the checkpoint; each write atomic, so one that fails
        leaves the file before it whole. health and usage [levels, K]: the last health window's figures and
        counts. Raises what the write raised (OSError, SdaError)."""
        metadata = modelfile.model_metadata(files.name, config, preflight, self.history.to_dict(), health,
                                            files.run_id)
        metadata["weights"] = self.weights()
        modelfile.save_model(files.model, model, metadata, usage)
        modelfile.save_checkpoint(files.checkpoint, model, optimizer, {**metadata, "position": self.position()})

    @classmethod
    def restore(cls, checkpoint: TrainingState, model: ConvVQVAE, optimizer: torch.optim.Optimizer,
                steps_per_epoch: int, processes: int, path: Path | None,
                started: float | None = None) -> tuple["RunState", list[str]]:
        """The state a checkpoint (read from path) saved, with its weights, optimizer and RNG state put back, and
        the notes for the user that resuming with this many processes calls for."""
        model.load_state_dict(checkpoint.model)
        try:
            optimizer.load_state_dict(checkpoint.optimizer)
        except (ValueError, KeyError, TypeError) as exc:
            raise SdaFormatError(f"{path} holds an optimizer state AdamW cannot take ({exc}): the file is "
                                 "damaged or was not written by sda") from None
        torch.set_rng_state(checkpoint.rng)
        position = checkpoint.metadata["position"]
        if position["epoch_step"] >= steps_per_epoch:
            raise SdaFormatError(f"{path} is at step {position['epoch_step']} of an epoch of "
                                 f"{plural(steps_per_epoch, 'step')}: the file is damaged, or the data changed")
        state = cls.start(processes, started)
        state.epoch, state.epoch_step, state.step = position["epoch"], position["epoch_step"], position["step"]
        state.sums, state.elapsed_before = Sums.from_dict(position["sums"]), position["elapsed_s"]
        try:
            state.history = History.from_dict(checkpoint.metadata["history"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SdaFormatError(f"{path} is damaged or was not written by sda: its history has a bad entry "
                                 f"({exc})") from None
        state.history.processes = processes
        saved_processes = position.get("processes", 1)
        if saved_processes == processes or state.epoch_step == 0:
            return state, []
        # The epoch's shuffle is split by the number of processes: the position inside it means nothing to
        # another number, so the epoch starts over.
        state.epoch_step, state.sums = 0, Sums()
        return state, [f"the checkpoint was saved by a run of {plural(saved_processes, 'process')} and this run "
                       f"has {processes}: epoch {state.epoch} starts again from its beginning"]
