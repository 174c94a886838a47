"""Training as a background job, for frontends that poll (the Gradio tab) instead of iterating events.

    slot = JobSlot()                                  # one per process: one training run at a time
    job = slot.start(config, RunOptions(data_dir=...), owner=key)  # JobBusyError while another run is going
    view = job.view()                                 # any thread, any time: a consistent snapshot
    slot.stop_for(key)                                # a client: only the one that started it (NotYourJobError)
    job.stop()                                        # the server itself (Ctrl-C): model and checkpoint are saved

The job runs sda.train.engine.train in a thread and folds each event into its state, under a lock; a view
is a frozen copy of that state plus a version number that changes with every event, so a poller can
skip redrawing when nothing happened. There is no training logic here: only bookkeeping of events.
"""

import itertools
import secrets
import threading
import traceback
from dataclasses import dataclass, field
from datetime import datetime

from sda.config import RunOptions, VQVAEConfig
from sda.data.dataset import DecodeProgress
from sda.train.engine import train
from sda.train.events import Alert, Cancelled, Done, Epoch, Error, Health, Preview, Started, Step, Summary
from sda.train.history import History, WindowRecord

RUNNING, STOPPING, DONE, STOPPED, FAILED = "running", "stopping", "done", "stopped", "failed"
_job_ids = itertools.count(1)


class JobBusyError(RuntimeError):
    """A training job is already running in this process."""


class NotYourJobError(RuntimeError):
    """A client asked to stop a job that another client started."""


@dataclass(frozen=True)
class CurvePoint:
    """Mean losses up to `step`: train over the steps since the previous point, validation per epoch."""

    step: int
    split: str  # "train" or "validation"
    reconstruction: float
    commitment: float


@dataclass(frozen=True)
class JobView:
    """A job's state at one moment. `version` changes whenever anything else does."""

    job_id: int
    version: int
    status: str  # RUNNING (loading data or training), STOPPING, DONE, STOPPED or FAILED
    began: datetime
    model_name: str | None  # what was asked for; `started.model_path` has the final name
    started: Started | None = None  # None while the data is still loading
    reading: DecodeProgress | None = None  # while it loads: how far reading the audio is
    step: Step | None = None  # the latest step
    health: Health | None = None  # the latest health window
    curve: tuple[CurvePoint, ...] = ()
    alerts: tuple[Alert, ...] = ()
    preview: Preview | None = None  # the latest previews
    summary: Summary | None = None  # when DONE or STOPPED
    error: str | None = None  # when FAILED
    bad_input: bool = False  # FAILED because of the data or settings, not training itself
    windows: tuple[WindowRecord, ...] = ()  # every health window so far, thinned as a model file's (History)

    @property
    def active(self) -> bool:
        return self.status in (RUNNING, STOPPING)


class TrainingJob:
    def __init__(self, config: VQVAEConfig, options: RunOptions, owner: str | None = None):
        """owner: the key of the client that starts it (sda.ui.app keeps one per browser); None: no client
        may stop it, only the server (job.stop())."""
        self.id = next(_job_ids)
        self._config, self._options, self.owner = config, options, owner
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state = {"status": RUNNING, "began": datetime.now(), "model_name": options.model_name,
                       "curve": [], "alerts": []}
        self._version = 0
        self._train_sums = {"reconstruction": 0.0, "commitment": 0.0, "steps": 0}  # since the last curve point
        self._windows = History()  # only its windows: History.add_window's thinning bounds a long run's memory
        self._thread = threading.Thread(target=self._run, name=f"sda-training-{self.id}", daemon=True)
        self._thread.start()

    def view(self) -> JobView:
        with self._lock:
            s = self._state
            return JobView(job_id=self.id, version=self._version,
                           **{**s, "curve": tuple(s["curve"]), "alerts": tuple(s["alerts"])},
                           windows=tuple(self._windows.windows))

    def stop(self) -> None:
        """Ask the engine to stop after the current step; it then saves the model and a checkpoint."""
        self._stop.set()
        self._update(status=STOPPING, only_if=RUNNING)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run has ended (saved); False if still running after timeout seconds."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            for event in train(self._config, self._options, self._stop, on_progress=self._reading):
                self._fold(event)
        except Exception as exc:  # the engine yields every classified problem (sda.errors) as Error: this is a bug
            traceback.print_exc()  # to the server's log, which is where the page says to look
            self._update(status=FAILED, error=f"training crashed ({type(exc).__name__}: {exc}); the traceback is in "
                                              "the server's log (the standard error of sda ui)")

    def _reading(self, progress: DecodeProgress) -> None:
        self._update(reading=progress)

    def _fold(self, event) -> None:
        with self._lock:
            s = self._state
            if isinstance(event, Started):
                s["started"] = event
            elif isinstance(event, Step):
                s["step"] = event
                if not event.skipped:
                    sums = self._train_sums
                    sums["reconstruction"] += event.reconstruction
                    sums["commitment"] += event.commitment
                    sums["steps"] += 1
            elif isinstance(event, Health):
                s["health"] = event
                self._windows.add_window(WindowRecord.of(event.step, event.epoch, event.warming_up, event.judged,
                                                         event.levels))
                sums = self._train_sums
                if sums["steps"]:
                    s["curve"].append(CurvePoint(event.step, "train", sums["reconstruction"] / sums["steps"],
                                                 sums["commitment"] / sums["steps"]))
                    self._train_sums = {"reconstruction": 0.0, "commitment": 0.0, "steps": 0}
            elif isinstance(event, Epoch):
                last_step = s["step"].step if s.get("step") else 0
                v = event.validation
                s["curve"].append(CurvePoint(last_step, "validation", v["reconstruction"], v["commitment"]))
            elif isinstance(event, Alert):
                s["alerts"].append(event)
            elif isinstance(event, Preview):
                s["preview"] = event
            elif isinstance(event, Done):
                s["summary"] = event.summary
                s["status"] = STOPPED if event.summary.stopped else DONE
            elif isinstance(event, Cancelled):  # stopped before its first step: nothing saved
                s["error"], s["status"] = event.message, STOPPED
            elif isinstance(event, Error):
                s["error"], s["bad_input"], s["status"] = event.message, event.bad_input, FAILED
            self._version += 1

    def _update(self, only_if: str | None = None, **changes) -> None:
        with self._lock:
            if only_if is None or self._state["status"] == only_if:
                self._state.update(changes)
                self._version += 1


@dataclass
class JobSlot:
    """The process's single training slot: the latest job, running or finished."""

    job: TrainingJob | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, config: VQVAEConfig, options: RunOptions, owner: str | None = None) -> TrainingJob:
        with self._lock:
            running = self.job.view() if self.job is not None else None
            if running is not None and running.active:
                name = running.started.model_path.stem if running.started else running.model_name or "unnamed"
                raise JobBusyError(f"a training job is already running (model {name!r}, started "
                                   f"{running.began:%H:%M:%S}): wait for it to finish, or press Stop first")
            self.job = TrainingJob(config, options, owner)
            return self.job

    def stop(self) -> TrainingJob | None:
        """The server's own stop (Ctrl-C, SIGTERM, tests): whoever started the job."""
        if self.job is not None:
            self.job.stop()
        return self.job

    def stop_for(self, client: str | None) -> TrainingJob | None:
        """A client's Stop: only the client whose key started the running job may stop it."""
        job = self.job
        if job is not None and job.view().active:
            if job.owner is None or not isinstance(client, str) or not secrets.compare_digest(
                    job.owner.encode(), client.encode("utf-8", "surrogatepass")):
                raise NotYourJobError("this run was started from another browser or client, and only that one "
                                      "can stop it (the server's operator can stop it with Ctrl-C on sda ui)")
            job.stop()
        return job
