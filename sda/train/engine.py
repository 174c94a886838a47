"""The one training loop. It yields events (sda.train.events); the CLI and the Gradio tab only consume them.

    stop = threading.Event()                      # set it to stop: model and checkpoint are saved
    for event in train(VQVAEConfig(), RunOptions(data_dir="~/kit"), stop): ...

Per step: a batch of cached log-mels, forward (bf16 autocast on CUDA; the quantizer's distances stay
float32), backward, gradient clipping, AdamW. A non-finite loss or gradient skips the update and
restores the codebooks (their EMA update happens inside forward); MAX_BAD_STEPS in a row end the
run with an Error. Codebook health comes from the kernel counts of every step. Each epoch ends with
validation; previews and checkpoints come at their intervals; the end, or the stop flag, saves the
model and a resumable checkpoint. Resuming restores weights, codebooks, optimizer, RNG and the
position inside the epoch, so a seeded CPU run resumed gives the same weights as one never stopped.

Under torchrun (sda.train.distributed) every process runs this loop on its share of each epoch, DDP
averaging the gradients. The losses, the stop flag and so the skip decision are agreed every step,
so all processes take the same path; only process 0 writes files and yields events. If another
process dies or stops answering, process 0 saves the model as of the last whole step and the run
ends in an Error that says how to resume.
"""

import errno
import hashlib
import math
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DistributedSampler

from sda.config import ConfigError, VQVAEConfig, check_setting
from sda.data.audio import MelInverter, write_audio
from sda.data.dataset import DataError, LoadingStopped, load_dataset
from sda.format import modelfile
from sda.format.container import SdaError, SdaFormatError
from sda.kernels import backend
from sda.model.health import HealthWarning, HealthWindow, LowUtilizationMonitor, judged, level_health
from sda.model.vqvae import ConvVQVAE
from sda.text import printable
from sda.train import distributed, events, runfiles, warmup
from sda.train.events import Alert, Checkpoint, Done, Epoch, Error, Health, Preview, Recovered, Started, Step, Summary
from sda.train.runfiles import OutputError, RunFiles, check_model_name

MAX_BAD_STEPS = 5  # consecutive non-finite steps before giving up
HEADER_ALLOWANCE = 1 << 20  # bytes of metadata (history) a saved file may carry, for the space check
PREVIEW_CLIPS = 3
KMEANS_VECTORS_PER_CODE = 32  # k-means sees up to this many encoder vectors per code


LOSS_TERMS = ("loss", "reconstruction", "commitment")  # what the epoch means and the Step events report
BAD_INPUT = (DataError, ConfigError, SdaError, OutputError, FileNotFoundError)  # the user can fix these
# A save that fails at the end of a run (disk full, folder made read-only) is tried again this often, this many
# times, so that freeing space saves the run; the message says what is on disk meanwhile.
SAVE_RETRY_S, SAVE_RETRIES = 10.0, 30


class TrainingError(RuntimeError):
    """Training cannot go on (diverged, or the model cannot be saved); the message says what to change."""


class SaveFailed(RuntimeError):
    """A save did not complete; the message says why and what is on disk now."""


@dataclass(frozen=True)
class RunOptions:
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


def train(config: VQVAEConfig, options: RunOptions, stop: threading.Event | None = None) -> Iterator:
    """Train, yielding events; problems the user can fix end in one Error event instead of Done.

    Under torchrun every process calls this (sda.train.distributed). Only process 0 yields events other than
    Error and writes files; an Error that every process meets is yielded quiet by the others.
    """
    first, joined = distributed.first_process(), False
    try:
        device = pick_device(options.device)
        with distributed.joined(device, options.timeout_s) as device:
            joined = True  # from here on errors are agreed, so process 0 speaks for all
            for event in _train(config, options, device, stop or threading.Event()):
                if first:
                    yield event
    except TrainingError as exc:
        yield Error(str(exc), bad_input=False, quiet=joined and not first)
    except BAD_INPUT as exc:
        yield Error(str(exc), bad_input=True, quiet=joined and not first)
    except distributed.PeerFailure as exc:
        yield Error(str(exc), bad_input=False)  # each process's own view of what broke: all say it


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ConfigError(f"--device {requested!r} is not a device: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {requested}: CUDA is not available here; use --device cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {requested}: MPS is not available here; use --device cpu or auto")
    return device


def pick_precision(requested: str, device: torch.device) -> str:
    if requested == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if requested not in ("fp32", "bf16"):
        raise ConfigError(f"--precision {requested!r}: use auto, fp32 or bf16")
    return requested


def _train(config: VQVAEConfig, options: RunOptions, device: torch.device, stop: threading.Event) -> Iterator:
    start_time = time.monotonic()
    precision = pick_precision(options.precision, device)
    try:
        state, files, data = _prepare(config, options, distributed.rank() == 0, stop)
    except LoadingStopped:
        yield _cancelled(options.model_name, resuming=options.resume is not None)
        return
    try:  # the name stays this run's until it ends, however it ends
        yield from _run(state, files, data, options, device, precision, stop, start_time)
    finally:
        files.release()


def _run(state, files: RunFiles, data, options: RunOptions, device: torch.device, precision: str,
         stop: threading.Event, start_time: float) -> Iterator:
    main, processes = distributed.rank() == 0, distributed.world_size()
    name, model_path, checkpoint_path = files.name, files.model, files.checkpoint

    # Each process takes every processes-th chunk of the epoch's shuffle: the per-process batch is
    # cfg.batch_size, the global one processes times that. One process: a plain seeded shuffle.
    sampler = DistributedSampler(data.train_mels, num_replicas=processes, rank=distributed.rank(),
                                 seed=data.config.seed * 100_003)
    steps_per_epoch = math.ceil(sampler.num_samples / data.config.batch_size)
    cfg = data.config.with_warmup(steps_per_epoch * data.config.epochs)  # a resumed run keeps its own
    every = max(1, cfg.epochs // 10)
    checkpoint_every, preview_every = options.checkpoint_every or every, options.preview_every or every

    torch.manual_seed(cfg.seed)
    model = ConvVQVAE(cfg, sync=distributed).to(device)  # the codebooks stay identical across processes
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    history = {"epochs": [], "warnings": [], "processes": processes}
    epoch, epoch_step, step, sums, elapsed_before = 1, 0, 0, _zero_sums(), 0.0
    alerts = []
    if state is None:
        model.set_normalization(data.train_mels)
    else:
        model.load_state_dict(state.model)
        try:
            optimizer.load_state_dict(state.optimizer)
        except (ValueError, KeyError, TypeError) as exc:
            raise SdaFormatError(f"{options.resume} holds an optimizer state AdamW cannot take ({exc}): the file is "
                                 "damaged or was not written by sda") from None
        torch.set_rng_state(state.rng)
        position = state.metadata["position"]
        if position["epoch_step"] >= steps_per_epoch:
            raise SdaFormatError(f"{options.resume} is at step {position['epoch_step']} of an epoch of "
                                 f"{steps_per_epoch} steps: the file is damaged, or the data changed")
        epoch, epoch_step, step, sums = position["epoch"], position["epoch_step"], position["step"], position["sums"]
        history, elapsed_before = {**state.metadata["history"], "processes": processes}, position["elapsed_s"]
        saved_processes = position.get("processes", 1)
        if saved_processes != processes and epoch_step > 0:
            # The epoch's shuffle is split by the number of processes: the position inside it means
            # nothing to another number, so the epoch starts over.
            alerts.append(f"the checkpoint was saved by a run of {saved_processes} process(es) and this run has "
                          f"{processes}: epoch {epoch} starts again from its beginning")
            epoch_step, sums = 0, _zero_sums()
    if main:
        runfiles.check_space(files.out_dir, _bytes_needed(model, cfg, preview_every))
    forward = distributed.data_parallel(model, device)
    train_mels = data.train_mels.to(device)
    kernel_backend = backend(torch.empty(0, cfg.codebook_dim, device=device))
    first_step = step
    total_steps = step + steps_per_epoch * (cfg.epochs - epoch + 1) - epoch_step

    yield Started(cfg, data.preflight, str(device), precision, kernel_backend, model_path, checkpoint_path,
                  steps_per_epoch, (epoch, step) if state else None, processes)
    for message in alerts:
        history["warnings"].append(f"epoch {epoch}: {message}")
        yield Alert(message)

    window = HealthWindow(cfg.rvq_levels, cfg.codebook_size, steps=max(steps_per_epoch, options.health_every))
    kmeans_sample = _kmeans_sample(data.train_mels, cfg).to(device)
    step_vectors = cfg.batch_size * processes * (cfg.audio.chunk_frames // cfg.downsample)
    monitor = LowUtilizationMonitor([HealthWarning.from_dict(w) for w in history.get("health_warnings", [])])
    inverter = MelInverter(cfg.audio)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    bad_steps, stopped, codebooks = 0, False, None

    def save(reason: str) -> Checkpoint:
        """Model first (what the user came for), then the checkpoint; each atomic, so a failed write leaves the
        file before it whole. Raises SaveFailed saying what is on disk."""
        metadata = modelfile.model_metadata(name, cfg, data.preflight, history, window.snapshot(), files.run_id)
        metadata["weights"] = {"step": step, "epoch": epoch if epoch_step else epoch - 1, "mid_epoch": epoch_step > 0}
        position = {"epoch": epoch, "epoch_step": epoch_step, "step": step, "sums": sums, "processes": processes,
                    "elapsed_s": elapsed_before + time.monotonic() - start_time}
        try:
            modelfile.save_model(model_path, model, metadata)
            modelfile.save_checkpoint(checkpoint_path, model, optimizer, {**metadata, "position": position})
        except (OSError, SdaError) as exc:
            raise SaveFailed(f"could not save step {step} in {files.out_dir}: {_reason(exc)}. On disk: "
                             f"{files.on_disk()}") from exc
        return Checkpoint(checkpoint_path, epoch, step, reason)

    def save_at_end(reason: str) -> Iterator:
        """save(reason), tried again while it fails (the disk may be freed); then TrainingError, keeping the
        message of what survived."""
        for attempt in range(SAVE_RETRIES + 1):
            try:
                yield save(reason)
                return
            except SaveFailed as exc:
                failure = exc
            if attempt < SAVE_RETRIES:
                yield Alert(f"{failure}. Trying again in {SAVE_RETRY_S:g} s ({SAVE_RETRIES - attempt} more tries): "
                            "free some space there (or make it writable), or stop for good (Ctrl-C again)")
                try:
                    time.sleep(SAVE_RETRY_S)
                except KeyboardInterrupt:
                    break
        raise TrainingError(f"{failure}{_continue_hint(files, options)}") from None

    try:
        while epoch <= cfg.epochs and not stopped:
            sampler.set_epoch(epoch)
            order = torch.tensor(list(sampler))
            model.train()
            while epoch_step < steps_per_epoch:
                if distributed.any_process(stop.is_set()):
                    stopped = True
                    break
                if not model.quantizer.initialized and warmup.kmeans_due(cfg, step + 1):
                    # k-means (process 0's, broadcast) on the encoder as it is now: the end of warm-up
                    scale = warmup.kmeans_count_scale(cfg, kmeans_sample.shape[0] * kmeans_sample.shape[2]
                                                      // cfg.downsample, step_vectors)
                    model.initialize(kmeans_sample, scale)
                    window.reset()  # judge the quantizer on its own steps only
                quantize = warmup.quantizing(cfg, step + 1)
                for group in optimizer.param_groups:
                    group["lr"] = warmup.learning_rate(cfg, step + 1)
                batch = train_mels[order[epoch_step * cfg.batch_size:(epoch_step + 1) * cfg.batch_size].to(device)]
                codebooks = {k: v.clone() for k, v in model.quantizer.state_dict().items()}
                with autocast, distributed.collective("running the model"):  # DDP may rebuild its buckets
                    out = forward(batch, quantize=quantize)
                # The mean over processes, so a non-finite loss anywhere makes every process skip.
                losses = distributed.all_reduce_(_loss_terms(out), "averaging the losses") / processes
                optimizer.zero_grad(set_to_none=True)
                terms = losses.tolist()
                ok = all(math.isfinite(t) for t in terms)
                if ok:
                    with distributed.collective("averaging the gradients"):
                        out.loss.backward()
                    ok = bool(torch.isfinite(nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)))
                epoch_step, step = epoch_step + 1, step + 1
                if ok:
                    optimizer.step()
                    bad_steps = 0
                    window.add(out.counts, out.replaced)
                    _accumulate(sums, terms)
                else:
                    model.quantizer.load_state_dict(codebooks)  # undo this step's EMA update too
                    bad_steps += 1
                codebooks = None
                session = time.monotonic() - start_time
                yield Step(epoch, step, epoch_step, steps_per_epoch, total_steps, *terms, not ok,
                           elapsed_before + session, session / (step - first_step) * (total_steps - step))
                if not ok:
                    message = f"step {step}: the loss or its gradients were not finite; the update was skipped"
                    history["warnings"].append(f"epoch {epoch}, {message}")
                    yield Alert(message)
                    if bad_steps >= MAX_BAD_STEPS:
                        raise TrainingError(f"training diverged: {MAX_BAD_STEPS} steps in a row had a non-finite "
                                            f"loss or gradients (epoch {epoch}). Lower the learning rate (--lr) and "
                                            "start again, or resume from the last checkpoint.")
                if step % options.health_every == 0 or epoch_step == steps_per_epoch:
                    warming_up = step <= cfg.warmup_steps or not model.quantizer.initialized
                    ready = not warming_up and judged(len(window), options.health_every, window.steps)
                    yield from _health_events(epoch, step, window, monitor, history, warming_up, ready)
            if stopped:
                break
            validation, val_health = _validate(model, data.val_mels.to(device), autocast, cfg,
                                               quantize=bool(model.quantizer.initialized))
            train_means = _means(sums)
            # "warmup": the epoch had warm-up steps, so its health covers less than the whole epoch
            history["epochs"].append({"epoch": epoch, "warmup": step - epoch_step < cfg.warmup_steps,
                                      "train": train_means, "validation": validation,
                                      "health": [h.to_dict() for h in window.snapshot()],
                                      "validation_health": [h.to_dict() for h in val_health]})
            yield Epoch(epoch, cfg.epochs, train_means, validation)
            if main and (epoch % preview_every == 0 or epoch == cfg.epochs):
                try:
                    yield _preview(model, data, inverter, epoch, files.previews, device)
                except OSError as exc:  # previews are a view of training, never a reason to stop it
                    message = f"epoch {epoch}: could not write the previews in {files.previews}: {_reason(exc)}"
                    history["warnings"].append(message)
                    yield Alert(message)
            epoch, epoch_step, sums = epoch + 1, 0, _zero_sums()
            if main and (epoch - 1) % checkpoint_every == 0 and epoch <= cfg.epochs:
                try:
                    yield save("interval")
                except SaveFailed as exc:  # go on: the next save, or the one at the end, may succeed
                    message = f"{exc}. Training goes on; the next save is at epoch {epoch - 1 + checkpoint_every}"
                    history["warnings"].append(message)
                    yield Alert(message)
    except distributed.PeerFailure as failure:
        if codebooks is not None:  # mid-step: back to the codebooks the weights go with
            model.quantizer.load_state_dict(codebooks)
        if not main:
            raise distributed.PeerFailure(f"{failure}. Only process 0 saves the model") from None
        try:
            save("failure")
        except SaveFailed as exc:
            raise distributed.PeerFailure(f"{failure}. {exc}{_continue_hint(files, options)}") from None
        raise distributed.PeerFailure(f"{failure}. The model as of step {step} is saved in {model_path}; continue "
                                      f"with{_resume_flags(files, options)}") from None
    if not main:
        return
    if stopped and step == first_step and state is None:
        # Stopped before the first step: nothing trained, nothing to keep; the name is free.
        yield _cancelled(name, resuming=False)
        return
    yield from save_at_end("stop" if stopped else "end")
    last = history["epochs"][-1] if history["epochs"] else None
    yield Done(Summary(
        model_name=name, model_path=model_path, model_bytes=model_path.stat().st_size,
        checkpoint_path=checkpoint_path, device=str(device), precision=precision,
        backend=kernel_backend, epochs_done=len(history["epochs"]), epochs=cfg.epochs,
        steps=step, elapsed_s=elapsed_before + time.monotonic() - start_time, stopped=stopped,
        resumed=state is not None, train_loss=last["train"]["loss"] if last else None,
        val_loss=last["validation"]["loss"] if last else None,
        val_reconstruction=last["validation"]["reconstruction"] if last else None,
        health=window.snapshot(), warnings=list(history["warnings"]), processes=processes,
        health_warnings=list(monitor.records), warmup_steps=cfg.warmup_steps,
        val_chunks=len(data.val_mels), val_files=len(data.preflight.val_indices),
    ))


def _prepare(config: VQVAEConfig, options: RunOptions, main: bool, stop: threading.Event):
    """(checkpoint state or None, the run's files, dataset). Process 0 claims the name first, which also checks
    that the output folder is writable, before any audio is decoded. Every process loads the checkpoint and the
    data itself; they start only together, and only on the same data."""
    problem, fingerprint, files = None, None, None
    try:
        try:
            for setting in ("health_every", "checkpoint_every", "preview_every", "timeout_s"):
                check_setting(setting, getattr(options, setting))
            state = modelfile.load_checkpoint(options.resume) if options.resume is not None else None
            config = state.config if state else config  # the checkpoint's settings, so the run continues as it began
            name, run_id = _identity(state, options)
            out_dir = Path(options.out_dir).expanduser()  # outputs go to --out, never where a file says
            if main:  # only process 0 writes files
                files = runfiles.claim(out_dir, name, run_id, resuming=state is not None)
                files.run_id = files.run_id or uuid.uuid4().hex  # a checkpoint from before run identities: one now
            else:
                files = RunFiles(out_dir, name or "", run_id)
            # Alone, the run may stop while it reads the audio; a distributed run's processes stop only together,
            # at a step, so theirs read on.
            data = load_dataset(Path(options.data_dir).expanduser(), config,
                                stop if distributed.world_size() == 1 else None)
            if state is not None:
                _check_same_data(state.metadata["dataset"], data.preflight)
            if distributed.world_size() > 1:
                fingerprint = _fingerprint(data)
        except BAD_INPUT as exc:
            problem = exc
        _agree(problem, fingerprint)
    except BaseException:
        if files is not None:
            files.release()
        raise
    return state, files, data


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


def _fingerprint(data) -> str:
    """A digest of the cached log-mels: equal on two processes only if they will train on the same chunks."""
    digest = hashlib.sha256()
    for mels in (data.train_mels, data.val_mels):
        digest.update(mels.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _loss_terms(out) -> torch.Tensor:
    """[3] float32, detached: the LOSS_TERMS of one forward pass (commitment summed over levels)."""
    return torch.stack([out.loss, out.reconstruction_loss, out.commitment.sum()]).detach().float()


def _zero_sums() -> dict:
    return {**dict.fromkeys(LOSS_TERMS, 0.0), "steps": 0}


def _accumulate(sums: dict, terms: list[float]) -> None:
    """Add one step's LOSS_TERMS to the epoch's sums."""
    for key, value in zip(LOSS_TERMS, terms, strict=True):
        sums[key] += value
    sums["steps"] += 1


def _means(sums: dict) -> dict:
    return {k: v / max(1, sums["steps"]) for k, v in sums.items() if k != "steps"}


def _health_events(epoch: int, step: int, window: HealthWindow, monitor: LowUtilizationMonitor, history: dict,
                   warming_up: bool, ready: bool):
    """The Health event; then, if the window is judged (sda.model.health.judged), new warnings and recoveries."""
    snapshot = window.snapshot()
    new, resolved = monitor.check(snapshot, epoch, step) if ready else ([], [])
    history["health_warnings"] = [w.to_dict() for w in monitor.records]
    yield Health(epoch, step, snapshot, len(window), warming_up=warming_up, judged=ready,
                 warnings=tuple(monitor.records))
    for warning in new:
        yield Alert(warning.message(), warning.level, warning)
    for warning in resolved:
        yield Recovered(warning)


def _kmeans_sample(train_mels: torch.Tensor, cfg: VQVAEConfig) -> torch.Tensor:
    """Training chunks [n, M, T] for k-means: enough for KMEANS_VECTORS_PER_CODE vectors per code."""
    positions = cfg.audio.chunk_frames // cfg.downsample
    n = min(len(train_mels), math.ceil(KMEANS_VECTORS_PER_CODE * cfg.codebook_size / positions))
    return train_mels[torch.randperm(len(train_mels), generator=torch.Generator().manual_seed(cfg.seed))[:n]]


@torch.no_grad()
def _validate(model: ConvVQVAE, val_mels: torch.Tensor, autocast, cfg: VQVAEConfig, quantize: bool = True):
    """Losses (means over chunks) and health on the validation set; leaves the model in training mode.
    Several processes: each takes every processes-th chunk and the sums are added up."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=val_mels.device)  # LOSS_TERMS summed over chunks; chunks
    counts = torch.zeros(cfg.rvq_levels, cfg.codebook_size, dtype=torch.int64, device=val_mels.device)
    for batch in val_mels[distributed.rank()::distributed.world_size()].split(cfg.batch_size):
        with autocast:
            out = model(batch, quantize=quantize)
        totals[:3] += _loss_terms(out) * len(batch)
        totals[3] += len(batch)
        counts += out.counts
    distributed.all_reduce_(totals, "adding up validation")
    distributed.all_reduce_(counts, "adding up validation")
    model.train()
    *terms, chunks = totals.tolist()
    means = _means({**dict(zip(LOSS_TERMS, terms, strict=True)), "steps": chunks})
    return means, [level_health(c, level) for level, c in enumerate(counts)]


@torch.no_grad()
def _preview(model: ConvVQVAE, data, inverter: MelInverter, epoch: int, folder: Path, device) -> Preview:
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
    return Preview(epoch, clips)


def _check_same_data(saved: dict, preflight) -> None:
    """Resuming needs the data the run began with, or the same weights could not come out."""
    then, now = [f["path"] for f in saved["files"]], [f.path for f in preflight.files]
    if then != now:
        added, removed = sorted(set(now) - set(then)), sorted(set(then) - set(now))
        raise DataError(f"{preflight.folder} is not the data this checkpoint was trained on ({len(then)} files then, "
                        f"{len(now)} now; added: {', '.join(added[:5]) or 'none'}; removed: "
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
    if not files.checkpoint.exists():
        return ""
    return f"; to go on from the checkpoint once there is room: sda train DATA_DIR{_resume_flags(files, options)}"


def _bytes_needed(model: ConvVQVAE, cfg: VQVAEConfig, preview_every: int) -> int:
    """About what this run's saves need on disk at their peak: the model and a checkpoint (weights + AdamW's two
    moments + RNG), each twice while a new one is written beside the old, plus the preview wavs (16-bit)."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    saves = 2 * (weights + weights + 2 * params + HEADER_ALLOWANCE)
    previews = PREVIEW_CLIPS * (1 + cfg.epochs // preview_every + 1) * cfg.audio.chunk_samples * 2
    return saves + previews
