"""The one training loop. It yields events (sda.train.events); the CLI and the Gradio tab only consume them.

    stop = threading.Event()                      # set it to stop: model and checkpoint are saved
    for event in train(VQVAEConfig(), RunOptions(data_dir="~/kit"), stop): ...

Per step: a batch of cached log-mels, forward (bf16 autocast on CUDA; the quantizer's distances stay
float32), backward, gradient clipping, AdamW. A non-finite loss or gradient skips the update and
restores the codebooks (their EMA update happens inside forward); MAX_BAD_STEPS in a row end the
run with an Error. Codebook health comes from the kernel counts of every step. Each epoch ends with
validation; previews and checkpoints come at their intervals; the end, or the stop flag, saves the
model and a resumable checkpoint. Resuming restores weights, codebooks, optimizer, RNG and the
position inside the epoch (sda.train.state.RunState), so a seeded CPU run resumed gives the same weights as
one never stopped.

The loop in parts, each on one screen: _setup (new, or from the checkpoint), _epoch_steps and _step (one
optimizer step: _update), _end_of_epoch (validation, previews, the interval save), then the save at the end.

Under torchrun (sda.train.distributed) every process runs this loop on its share of each epoch, DDP
averaging the gradients. The losses, the stop flag and so the skip decision are agreed every step,
so all processes take the same path; only process 0 writes files and yields events. If another
process dies or stops answering, process 0 saves the model as of the last whole step and the run
ends in an Error that says how to resume.
"""

import dataclasses
import errno
import hashlib
import math
import socket
import threading
import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DistributedSampler, TensorDataset

from sda.config import PAGE, DecodeOptions, RunOptions, VQVAEConfig, check_setting
from sda.data.audio import MelInverter, write_audio
from sda.data.dataset import Dataset, OnProgress, load_dataset
from sda.data.parallel import LoadingStopped, available_cores
from sda.errors import (
    EXPECTED,
    ConfigError,
    DataError,
    PeerFailure,
    SaveError,
    SdaError,
    SdaFormatError,
    TrainingError,
    kind_of,
)
from sda.format import modelfile
from sda.format.modelfile import TrainingState
from sda.model.bitrate import bitrate
from sda.model.health import HealthWindow, LevelHealth, LowUtilizationMonitor, judged, level_health
from sda.model.vqvae import ConvVQVAE, VQVAEOutput
from sda.text import plural, printable
from sda.train import distributed, events, metrics, runfiles, warmup
from sda.train.devices import kernel_backend, pick_device, pick_precision
from sda.train.eta import Eta
from sda.train.events import (
    Alert,
    Checkpoint,
    Done,
    Epoch,
    Error,
    Event,
    Health,
    Preview,
    Recovered,
    Started,
    Step,
    Summary,
)
from sda.train.history import EpochRecord, WindowRecord
from sda.train.runfiles import RunFiles, check_model_name
from sda.train.state import Losses, RunState, Sums

MAX_BAD_STEPS = 5  # consecutive non-finite steps before giving up
HEADER_ALLOWANCE = 1 << 20  # bytes of metadata (history) a saved file may carry, for the space check
PREVIEW_CLIPS = 3
KMEANS_VECTORS_PER_CODE = 32  # k-means sees up to this many encoder vectors per code
# A save that fails at the end of a run (disk full, folder made read-only) is tried again this often, this many
# times, so that freeing space saves the run; the message says what is on disk meanwhile.
SAVE_RETRY_S, SAVE_RETRIES = 10.0, 30


def train(config: VQVAEConfig, options: RunOptions, stop: threading.Event | None = None,
          on_progress: OnProgress | None = None) -> Iterator[Event]:
    """Train, yielding events; every classified problem (sda.errors) ends in one Error event, of its kind, instead
    of Done. An unexpected exception (a bug) propagates, traceback and all. on_progress hears how far reading the
    audio is, file by file, while the data loads before the first event (in process 0 only).

    Under torchrun every process calls this (sda.train.distributed). Only process 0 yields events other than
    Error and writes files; an Error that every process meets is yielded quiet by the others. Process 0 feeds
    every event to the run's logs (sda.train.metrics); one that cannot be written adds an Alert, once.
    """
    if not distributed.first_process():
        yield from _classified(config, options, stop)
        return
    # The one place events leave the engine, so every event of either frontend's run, or torchrun's, is logged.
    yield from metrics.RunLogs.for_options(options).follow(_classified(config, options, stop, on_progress))


def _classified(config: VQVAEConfig, options: RunOptions, stop: threading.Event | None,
                on_progress: OnProgress | None = None) -> Iterator[Event]:
    """train's events, unlogged: every classified problem as an Error event."""
    first, joined = distributed.first_process(), False
    try:
        device = pick_device(options.device)
        kernel_backend(device, config.codebook_dim)  # a bad SDA_KERNELS is refused now, not at the first step
        with distributed.joined(device, options.timeout_s) as device:
            joined = True  # from here on errors are agreed, so process 0 speaks for all
            for event in _train(config, options, device, stop or threading.Event(), on_progress):
                if first:
                    yield event
    except PeerFailure as exc:
        yield Error(str(exc), exc.kind)  # each process's own view of what broke: all say it
    except EXPECTED as exc:
        kind = kind_of(exc)
        assert kind is not None  # EXPECTED holds only classified errors
        yield Error(str(exc), kind, quiet=joined and not first)


def _train(config: VQVAEConfig, options: RunOptions, device: torch.device, stop: threading.Event,
           on_progress: OnProgress | None = None) -> Iterator[Event]:
    start_time = time.monotonic()
    precision = pick_precision(options.precision, device)
    try:
        checkpoint, files, data = _prepare(config, options, distributed.rank() == 0, stop, on_progress)
    except LoadingStopped:
        yield _cancelled(options.model_name, resuming=options.resume is not None)
        return
    try:  # the name stays this run's until it ends, however it ends
        yield from _run(_setup(checkpoint, files, data, options, device, precision, start_time), stop)
    finally:
        files.release()


@dataclass
class _Run:
    """What a run trains with, set up once (_setup); its RunState is what changes as it goes."""

    cfg: VQVAEConfig  # the run's: resolved, its warm-up decided
    epochs: int  # cfg.epochs
    options: RunOptions
    files: RunFiles
    data: Dataset
    device: torch.device
    precision: str  # "fp32" or "bf16"
    model: ConvVQVAE
    optimizer: torch.optim.Optimizer
    forward: nn.Module  # the model, or DDP around it
    sampler: DistributedSampler
    steps_per_epoch: int
    state: RunState
    notes: list[str]  # for the user, from resuming
    resumed: bool
    checkpoint_every: int  # epochs
    preview_every: int  # epochs
    eta: Eta = field(default_factory=Eta)  # this session's steps, timed
    backend: str = field(init=False)  # the kernels': "torch" or "triton"
    first_step: int = field(init=False)  # where this session began
    total_steps: int = field(init=False)
    window_steps: int = field(init=False)  # how many steps the health window covers
    window: HealthWindow = field(init=False)
    monitor: LowUtilizationMonitor = field(init=False)
    autocast: torch.autocast = field(init=False)
    train_mels: torch.Tensor = field(init=False)  # [N, M, T] on the device, moved there once
    val_mels: torch.Tensor = field(init=False)  # [V, M, T] on the device, moved there once
    kmeans_sample: torch.Tensor = field(init=False)  # [n, M, T] on the device: _kmeans_sample
    inverter: MelInverter = field(init=False)

    def __post_init__(self) -> None:
        cfg, state = self.cfg, self.state
        self.backend = kernel_backend(self.device, cfg.codebook_dim)
        self.first_step = state.step
        self.total_steps = state.step + self.steps_per_epoch * (self.epochs - state.epoch + 1) - state.epoch_step
        self.window_steps = max(self.steps_per_epoch, self.options.health_every)
        self.window = HealthWindow(cfg.rvq_levels, _decided(cfg.codebook_size), steps=self.window_steps,
                                   device=self.device)
        self.monitor = LowUtilizationMonitor(list(state.history.health_warnings))
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        self.train_mels = self.data.train_mels.to(self.device)
        self.val_mels = self.data.val_mels.to(self.device)
        self.kmeans_sample = _kmeans_sample(self.data.train_mels, cfg).to(self.device)
        self.inverter = MelInverter(cfg.audio)

    @property
    def main(self) -> bool:
        return distributed.rank() == 0


def _setup(checkpoint: TrainingState | None, files: RunFiles, data: Dataset, options: RunOptions,
           device: torch.device, precision: str, start_time: float) -> _Run:
    """The model, its optimizer and the RunState: new, or as the checkpoint left them."""
    processes = distributed.world_size()
    # Each process takes every processes-th chunk of the epoch's shuffle: the per-process batch is
    # cfg.batch_size, the global one processes times that. One process: a plain seeded shuffle.
    sampler: DistributedSampler = DistributedSampler(TensorDataset(data.train_mels), num_replicas=processes,
                                                     rank=distributed.rank(), seed=data.config.seed * 100_003)
    steps_per_epoch = math.ceil(sampler.num_samples / data.config.batch_size)
    epochs = _decided(data.config.epochs)
    cfg = data.config.with_warmup(steps_per_epoch * epochs)  # a resumed run keeps its own
    every = max(1, epochs // 10)
    torch.manual_seed(cfg.seed)
    model = ConvVQVAE(cfg, sync=distributed).to(device)  # the codebooks stay identical across processes
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    notes: list[str] = []
    if checkpoint is None:
        model.set_normalization(data.train_mels)
        state = RunState.start(processes, start_time)
    else:
        state, notes = RunState.restore(checkpoint, model, optimizer, steps_per_epoch, processes, options.resume,
                                        start_time)
    preview_every = options.preview_every or every
    if distributed.rank() == 0:
        runfiles.check_space(files.out_dir, _bytes_needed(model, epochs, cfg, preview_every), options.frontend)
    return _Run(cfg=cfg, epochs=epochs, options=options, files=files, data=data, device=device, precision=precision,
                model=model, optimizer=optimizer, forward=distributed.data_parallel(model, device), sampler=sampler,
                steps_per_epoch=steps_per_epoch, state=state, notes=notes, resumed=checkpoint is not None,
                checkpoint_every=options.checkpoint_every or every, preview_every=preview_every)


def _run(run: _Run, stop: threading.Event) -> Iterator[Event]:
    """Epoch after epoch, from where the state stands, to the last one or the stop flag; then the save."""
    state, files = run.state, run.files
    yield Started(config=run.cfg, preflight=run.data.preflight, device=str(run.device), precision=run.precision,
                  backend=run.backend, model_path=files.model, checkpoint_path=files.checkpoint,
                  steps_per_epoch=run.steps_per_epoch, resumed_at=(state.epoch, state.step) if run.resumed else None,
                  processes=state.processes, model_name=files.name, run_id=files.run_id or "",
                  metrics_path=files.metrics)
    for note in run.notes:
        yield _warn(state, f"epoch {state.epoch}: {note}", note)
    stopped = False
    try:
        while state.epoch <= run.epochs and not stopped:
            stopped = yield from _epoch_steps(run, stop)
            if not stopped:
                yield from _end_of_epoch(run)
    except PeerFailure as failure:
        raise _saved_after(run, failure) from None
    if not run.main:
        return
    if stopped and state.step == run.first_step and not run.resumed:
        # Stopped before the first step: nothing trained, nothing to keep; the name is free.
        yield _cancelled(files.name, resuming=False)
        return
    yield from _save_at_end(run, "stop" if stopped else "end")
    yield Done(_summary(run, stopped))


def _epoch_steps(run: _Run, stop: threading.Event) -> Generator[Event, None, bool]:
    """The steps left of the state's epoch; True if the stop flag (on any process) ended them early."""
    state = run.state
    run.sampler.set_epoch(state.epoch)
    order = torch.tensor(list(run.sampler), device=run.device)  # once per epoch; the steps index on the device
    run.model.train()
    while state.epoch_step < run.steps_per_epoch:
        if distributed.any_process(stop.is_set()):
            return True
        yield from _step(run, order)
    return False


def _step(run: _Run, order: torch.Tensor) -> Iterator[Event]:
    """One optimizer step (or a skipped one) on the next batch of the epoch's order [N] of chunk indices."""
    cfg, model, state = run.cfg, run.model, run.state
    step = state.step + 1
    if warmup.kmeans_due(cfg, step) and not model.quantizer.initialized:
        # k-means (process 0's, broadcast) on the encoder as it is now: the end of warm-up
        step_vectors = cfg.batch_size * state.processes * (cfg.audio.chunk_frames // cfg.downsample)
        scale = warmup.kmeans_count_scale(cfg, run.kmeans_sample.shape[0] * run.kmeans_sample.shape[2]
                                          // cfg.downsample, step_vectors)
        model.initialize(run.kmeans_sample, scale)
        run.window.reset()  # judge the quantizer on its own steps only
    for group in run.optimizer.param_groups:
        group["lr"] = warmup.learning_rate(cfg, step)
    rows = order[state.epoch_step * cfg.batch_size:(state.epoch_step + 1) * cfg.batch_size]
    losses, ok = _update(run, run.train_mels[rows], warmup.quantizing(cfg, step))
    state.advance(losses, ok)
    session = time.monotonic() - state.started
    yield Step(epoch=state.epoch, step=state.step, epoch_step=state.epoch_step, steps_per_epoch=run.steps_per_epoch,
               total_steps=run.total_steps, loss=losses.loss, reconstruction=losses.reconstruction,
               commitment=losses.commitment, skipped=not ok, elapsed_s=state.elapsed_before + session,
               eta_s=run.eta.update(time.monotonic(), run.total_steps - state.step))
    if not ok:
        message = f"step {state.step}: the loss, its gradients or a code were not finite; the update was skipped"
        yield _warn(state, f"epoch {state.epoch}, {message}", message)
        if state.bad_steps >= MAX_BAD_STEPS:
            how = ("Lower the learning rate (under More settings) and start again" if run.options.frontend == PAGE
                   else "Lower the learning rate (--lr) and start again, or resume from the last checkpoint")
            raise TrainingError(f"training diverged: {MAX_BAD_STEPS} steps in a row had a non-finite "
                                f"loss or gradients (epoch {state.epoch}). {how}.")
    if state.step % run.options.health_every == 0 or state.epoch_step == run.steps_per_epoch:
        yield from _health_events(run)


def _update(run: _Run, batch: torch.Tensor, quantize: bool) -> tuple[Losses, bool]:
    """Forward, backward and the AdamW update on batch [B, M, T]: (the losses, averaged over processes; whether
    the update was made). A non-finite loss, gradient or code skips it and puts back the codebooks, whose EMA
    update happens inside forward; so does a lost process, mid-step, before PeerFailure goes on up.

    The step's one host synchronisation is the read of its verdict: the losses, the gradient norm and whether
    every code is finite come back together, because the update must not be applied before they are known
    (bench/RESULTS.md lists what else synchronises, and when)."""
    model, processes = run.model, run.state.processes
    codebooks = {k: v.clone() for k, v in model.quantizer.state_dict().items()}
    try:
        with run.autocast, distributed.collective("running the model"):  # DDP may rebuild its buckets
            out = run.forward(batch, quantize=quantize)
        # The mean over processes, so a non-finite loss anywhere makes every process skip.
        terms = distributed.all_reduce_(_loss_terms(out), "averaging the losses") / processes
        run.optimizer.zero_grad(set_to_none=True)
        with distributed.collective("averaging the gradients"):
            out.loss.backward()  # a non-finite loss gives non-finite gradients: the same verdict below
        # Gradients are averaged over processes and codebooks are identical, so every process reads the same.
        norm = nn.utils.clip_grad_norm_(model.parameters(), run.cfg.grad_clip)
        verdict = torch.cat([terms, norm.reshape(1).float(), model.quantizer.all_finite().reshape(1).float()])
        *terms_read, norm_read, codes_finite = verdict.tolist()
    except PeerFailure:
        model.quantizer.load_state_dict(codebooks)  # back to the codebooks the weights go with
        raise
    losses = Losses(*terms_read)
    ok = losses.finite() and math.isfinite(norm_read) and codes_finite == 1.0
    if ok:
        run.optimizer.step()
        run.window.add(out.counts, out.replaced)
    else:
        model.quantizer.load_state_dict(codebooks)  # undo this step's EMA update too
    return losses, ok


def _end_of_epoch(run: _Run) -> Iterator[Event]:
    """Validation and the epoch's record; the previews and the interval checkpoint when they are due."""
    cfg, state, files = run.cfg, run.state, run.files
    validation, val_health = _validate(run.model, run.val_mels, run.autocast, cfg,
                                       quantize=bool(run.model.quantizer.initialized))
    record = EpochRecord(epoch=state.epoch, train=state.sums.means(), validation=validation,
                         warmup=state.step - state.epoch_step < _decided(cfg.warmup_steps),
                         health=run.window.snapshot(), validation_health=val_health)
    state.history.epochs.append(record)
    yield Epoch(epoch=state.epoch, epochs=run.epochs, train=record.train, validation=validation)
    if run.main and (state.epoch % run.preview_every == 0 or state.epoch == run.epochs):
        try:
            yield _preview(run.model, run.data, run.inverter, state.epoch, files.previews, run.device)
        except OSError as exc:  # previews are a view of training, never a reason to stop it
            yield _warn(state, f"epoch {state.epoch}: could not write the previews in {files.previews}: "
                               f"{_reason(exc)}")
    state.next_epoch()
    ended = state.epoch - 1
    if run.main and ended % run.checkpoint_every == 0 and state.epoch <= run.epochs:
        try:
            yield _save(run, "interval")
        except SaveError as exc:  # go on: the next save, or the one at the end, may succeed
            yield _warn(state, f"{exc}. Training goes on; the next save is at epoch {ended + run.checkpoint_every}")


def _warn(state: RunState, record: str, message: str | None = None) -> Alert:
    """The Alert of a warning, kept in the history as record (with where it happened, if message leaves it out)."""
    state.history.warnings.append(record)
    return Alert(message or record)


def _save(run: _Run, reason: str) -> Checkpoint:
    """The model, then the checkpoint (RunState.save). Raises SaveError saying what is on disk."""
    state = run.state
    try:
        state.save(run.files, run.model, run.optimizer, run.cfg, run.data.preflight, run.window.snapshot(),
                   run.window.counts)
    except (OSError, SdaError) as exc:
        raise SaveError(f"could not save step {state.step} in {run.files.out_dir}: {_reason(exc)}. On disk: "
                         f"{run.files.on_disk()}") from exc
    return Checkpoint(path=run.files.checkpoint, epoch=state.epoch, step=state.step, reason=reason)


def _save_at_end(run: _Run, reason: str) -> Iterator[Event]:
    """_save(reason), tried again while it fails (the disk may be freed); then SaveError, keeping the
    message of what survived."""
    for attempt in range(SAVE_RETRIES + 1):
        try:
            yield _save(run, reason)
            return
        except SaveError as exc:
            failure = exc
        if attempt < SAVE_RETRIES:
            yield Alert(f"{failure}. Trying again in {SAVE_RETRY_S:g} s ({SAVE_RETRIES - attempt} more tries): "
                        "free some space there (or make it writable), or stop for good (Ctrl-C again)")
            try:
                time.sleep(SAVE_RETRY_S)
            except KeyboardInterrupt:
                break
    raise SaveError(f"{failure}{_continue_hint(run.files, run.options)}") from None


def _saved_after(run: _Run, failure: PeerFailure) -> PeerFailure:
    """Another process is lost: process 0 saves the model as of the last whole step. The PeerFailure to raise,
    saying what is on disk and how to go on."""
    files, options = run.files, run.options
    if not run.main:
        return PeerFailure(f"{failure}. Only process 0 saves the model")
    try:
        _save(run, "failure")
    except SaveError as exc:
        return PeerFailure(f"{failure}. {exc}{_continue_hint(files, options)}")
    return PeerFailure(f"{failure}. The model as of step {run.state.step} is saved in {files.model}; "
                                   f"continue with{_resume_flags(files, options)}")


def _summary(run: _Run, stopped: bool) -> Summary:
    state, files, last = run.state, run.files, run.state.history.last()
    return Summary(
        model_name=files.name, model_path=files.model, model_bytes=files.model.stat().st_size,
        checkpoint_path=files.checkpoint, device=str(run.device), precision=run.precision,
        backend=run.backend, epochs_done=len(state.history.epochs), epochs=run.epochs,
        steps=state.step, elapsed_s=state.elapsed(), stopped=stopped,
        resumed=run.resumed, train_loss=last.train["loss"] if last else None,
        val_loss=last.validation["loss"] if last else None,
        val_reconstruction=last.validation["reconstruction"] if last else None,
        health=run.window.snapshot(), warnings=list(state.history.warnings), processes=state.processes,
        health_warnings=list(run.monitor.records), warmup_steps=_decided(run.cfg.warmup_steps),
        val_chunks=len(run.data.val_mels), val_files=len(run.data.preflight.val_indices),
        bitrate=bitrate(run.cfg, run.window.snapshot()), usage=run.window.usage(),
        metrics_path=run.files.metrics if run.main else None,
    )


def _decided(setting: int | None) -> int:
    """A setting the config leaves to the run (None: auto), as the run has decided it."""
    if setting is None:
        raise ValueError("the config is not resolved: VQVAEConfig.resolve and with_warmup decide its auto settings")
    return setting


def _prepare(config: VQVAEConfig, options: RunOptions, main: bool, stop: threading.Event,
             on_progress: OnProgress | None = None):
    """(checkpoint state or None, the run's files, dataset). Process 0 claims the name first, which also checks
    that the output folder is writable, before any audio is decoded. Every process loads the checkpoint and the
    data itself; they start only together, and only on the same data."""
    problem, fingerprint, files = None, None, None
    try:
        try:
            for setting in ("health_every", "checkpoint_every", "preview_every", "timeout_s"):
                check_setting(setting, getattr(options, setting))
            if options.tensorboard is not None:
                metrics.check_tensorboard()
            state = modelfile.load_checkpoint(options.resume) if options.resume is not None else None
            config = state.config if state else config  # the checkpoint's settings, so the run continues as it began
            name, run_id = _identity(state, options)
            out_dir = Path(options.out_dir).expanduser()  # outputs go to --out, never where a file says
            if main:  # only process 0 writes files
                files = runfiles.claim(out_dir, name, run_id, resuming=state is not None, frontend=options.frontend)
                files.run_id = files.run_id or uuid.uuid4().hex  # a checkpoint from before run identities: one now
            else:
                files = RunFiles(out_dir, name or "", run_id)
            # Alone, the run may stop while it reads the audio; a distributed run's processes stop only together,
            # at a step, so theirs read on.
            data = load_dataset(Path(options.data_dir).expanduser(), config,
                                stop if distributed.world_size() == 1 else None, decode=_decoding(options),
                                on_progress=on_progress if main else None)
            if state is not None:
                _check_same_data(state.metadata["dataset"], data.preflight)
            if distributed.world_size() > 1:
                fingerprint = _fingerprint(data)
        except EXPECTED as exc:  # every process's problem is agreed on (_agree), so each ends the same way
            problem = exc
        _agree(problem, fingerprint)
    except BaseException:
        if files is not None:
            files.release()
        raise
    return state, files, data


def _decoding(options: RunOptions) -> DecodeOptions:
    """options.decode, with the default pool shared out among the processes of a distributed run: each decodes
    the folder itself, and one pool per core each would put processes x cores decoders on the machine."""
    decode, processes = options.decode, distributed.world_size()
    if decode.workers is None and processes > 1:
        decode = dataclasses.replace(decode, workers=max(1, available_cores() // processes))
    return decode


def _cancelled(name: str | None, resuming: bool) -> events.Cancelled:
    """The end of a run stopped before its first step."""
    if resuming:
        return events.Cancelled("stopped before the first training step: nothing was changed; the model and its "
                                "checkpoint are as they were, and --resume goes on from them")
    named = f"the name {name!r} is free" if name else "no model name was taken"
    return events.Cancelled(f"stopped before the first training step: nothing was saved, and {named}")


def _identity(state, options: RunOptions) -> tuple[str | None, str | None]:
    """(model name, run id) of this run: new (a name, or None for a generated one), or the checkpoint's, whose
    name is checked by the rule of --model-name (it becomes a path)."""
    if state is None:
        return options.model_name, uuid.uuid4().hex
    name = state.metadata.get("model_name")
    try:
        check_model_name(name)
    except ConfigError:
        raise SdaFormatError(f"{options.resume} names its model {name!r}, which is not a plain model name: the file "
                             "is damaged or was not written by sda") from None
    return name, state.metadata.get("run_id")  # None: written before run identities


def _agree(problem: Exception | None, fingerprint: str | None) -> None:
    """Raise on every process if any could not set up, or if their data differ; nothing with one process."""
    reports = distributed.gather((None if problem is None else str(problem), fingerprint, socket.gethostname()))
    failures = [(rank, message, host) for rank, (message, _, host) in enumerate(reports) if message is not None]
    if problem is not None and len(failures) == len(reports) and len({m for _, m, _ in failures}) == 1:
        raise problem  # the same problem everywhere (one process, or the same flags): say it once, plainly
    if failures:
        rank, message, host = failures[0]
        raise DataError(f"process {rank} of {len(reports)} (on {host}) could not start: {message}")
    if len({f for _, f, _ in reports}) > 1:
        hosts = ", ".join(f"process {rank} on {host}" for rank, (_, _, host) in enumerate(reports))
        raise DataError(f"the processes of this run did not load the same data ({hosts}): every machine needs the "
                        "same files at the same path, and the same sda version")


def _fingerprint(data: Dataset) -> str:
    """A digest of the cached log-mels: equal on two processes only if they will train on the same chunks."""
    digest = hashlib.sha256()
    for mels in (data.train_mels, data.val_mels):
        digest.update(mels.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _loss_terms(out: VQVAEOutput) -> torch.Tensor:
    """[3] float32, detached: the Losses of one forward pass (loss, reconstruction, commitment summed over levels)."""
    return torch.stack([out.loss, out.reconstruction_loss, out.commitment.sum()]).detach().float()


def _health_events(run: _Run) -> Iterator[Event]:
    """The Health event; then, if the window is judged (sda.model.health.judged), new warnings and recoveries."""
    state, window, monitor = run.state, run.window, run.monitor
    warming_up = state.step <= _decided(run.cfg.warmup_steps) or not run.model.quantizer.initialized
    ready = not warming_up and judged(len(window), run.options.health_every, run.window_steps)
    snapshot = window.snapshot()
    new, resolved = monitor.check(snapshot, state.epoch, state.step) if ready else ([], [])
    state.history.health_warnings = list(monitor.records)
    state.history.add_window(WindowRecord.of(state.step, state.epoch, warming_up, ready, snapshot))
    yield Health(epoch=state.epoch, step=state.step, levels=snapshot, window_steps=len(window),
                 warming_up=warming_up, judged=ready, warnings=tuple(monitor.records),
                 usage=window.usage(), bitrate=bitrate(run.cfg, snapshot))
    for warning in new:
        yield Alert(warning.message(), level=warning.level, warning=warning)
    for warning in resolved:
        yield Recovered(warning)


def _kmeans_sample(train_mels: torch.Tensor, cfg: VQVAEConfig) -> torch.Tensor:
    """Training chunks [n, M, T] for k-means: enough for KMEANS_VECTORS_PER_CODE vectors per code."""
    positions = cfg.audio.chunk_frames // cfg.downsample
    n = min(len(train_mels), math.ceil(KMEANS_VECTORS_PER_CODE * _decided(cfg.codebook_size) / positions))
    return train_mels[torch.randperm(len(train_mels), generator=torch.Generator().manual_seed(cfg.seed))[:n]]


@torch.no_grad()
def _validate(model: ConvVQVAE, val_mels: torch.Tensor, autocast: torch.autocast, cfg: VQVAEConfig,
              quantize: bool = True) -> tuple[dict[str, float], list[LevelHealth]]:
    """Losses (means over chunks) and health on the validation set; leaves the model in training mode.
    Several processes: each takes every processes-th chunk and the sums are added up."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=val_mels.device)  # the Losses summed over chunks; chunks
    counts = torch.zeros(cfg.rvq_levels, _decided(cfg.codebook_size), dtype=torch.int64, device=val_mels.device)
    for batch in val_mels[distributed.rank()::distributed.world_size()].split(cfg.batch_size):
        with autocast:
            out = model(batch, quantize=quantize)
        totals[:3] += _loss_terms(out) * len(batch)
        totals[3] += len(batch)
        counts += out.counts
    distributed.all_reduce_(totals, "adding up validation")
    distributed.all_reduce_(counts, "adding up validation")
    model.train()
    loss, reconstruction, commitment, chunks = totals.tolist()
    means = Sums(loss, reconstruction, commitment, steps=int(chunks)).means()
    return means, [level_health(c, level) for level, c in enumerate(counts)]


@torch.no_grad()
def _preview(model: ConvVQVAE, data: Dataset, inverter: MelInverter, epoch: int, folder: Path,
             device: torch.device) -> Preview:
    """Write the first PREVIEW_CLIPS validation chunks (once) and their reconstructions (each time)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.eval()
    mels = data.val_mels[:PREVIEW_CLIPS].to(device)
    # During warm-up the codebooks are not initialised yet: the preview is the plain autoencoder's.
    reconstructions = inverter(model(mels, quantize=bool(model.quantizer.initialized)).reconstruction.float().cpu())
    model.train()
    rate, clips = data.config.audio.sample_rate, []
    for i, (original, reconstruction) in enumerate(zip(data.val_audio[:PREVIEW_CLIPS], reconstructions, strict=True)):
        original_path = folder / f"clip{i + 1}-original.wav"
        if not original_path.exists():
            write_audio(original_path, original, rate)
        reconstruction_path = folder / f"clip{i + 1}-epoch{epoch:03d}.wav"
        write_audio(reconstruction_path, reconstruction, rate)
        clips.append((original_path, reconstruction_path))
    return Preview(epoch=epoch, clips=clips, sources=tuple(data.preflight.val_chunk_files[:len(clips)]))


def _check_same_data(saved: dict, preflight) -> None:
    """Resuming needs the data the run began with, or the same weights could not come out."""
    then, now = [f["path"] for f in saved["files"]], [f.path for f in preflight.files]
    if then != now:
        added, removed = sorted(set(now) - set(then)), sorted(set(then) - set(now))
        raise DataError(f"{preflight.folder} is not the data this checkpoint was trained on "
                        f"({plural(len(then), 'file')} then, {len(now)} now; added: {', '.join(added[:5]) or 'none'}; "
                        "removed: "
                        f"{', '.join(removed[:5]) or 'none'}). Resume with the same folder, or start a new run.")


def _reason(exc: Exception) -> str:
    """Why a write failed, in words (the errno's, not Python's repr)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "the disk is full (or a size limit was reached)"
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "the folder cannot be written (read-only or permission denied)"
    return printable(str(exc))


def _resume_flags(files: RunFiles, options: RunOptions) -> str:
    """The flags that continue this run: outputs go to --out, so a folder other than the default is repeated."""
    flags = f" --resume {files.checkpoint}"
    return flags if Path(options.out_dir) == RunOptions.out_dir else f"{flags} --out {files.out_dir}"


def _continue_hint(files: RunFiles, options: RunOptions) -> str:
    if not files.checkpoint.exists() or options.frontend == PAGE:  # the page cannot resume a run
        return ""
    return f"; to go on from the checkpoint once there is room: sda train DATA_DIR{_resume_flags(files, options)}"


def _bytes_needed(model: ConvVQVAE, epochs: int, cfg: VQVAEConfig, preview_every: int) -> int:
    """About what this run's saves need on disk at their peak: the model and a checkpoint (weights + AdamW's two
    moments + RNG), each twice while a new one is written beside the old, plus the preview wavs (16-bit)."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    saves = 2 * (weights + weights + 2 * params + HEADER_ALLOWANCE)
    previews = PREVIEW_CLIPS * (1 + epochs // preview_every + 1) * cfg.audio.chunk_samples * 2
    return saves + previews
