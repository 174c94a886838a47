"""Training on several processes: the process group torchrun sets up, and the few collectives sda needs.

torchrun (or `sda train --nproc N`, sda.cli.launch) starts N copies of `sda train` with RANK, WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set. Each copy joins the group (gloo on CPU,
nccl on CUDA, one GPU per process), loads the whole collection and trains on its share of each epoch
(DistributedSampler), while DistributedDataParallel averages the gradients. What DDP does not cover is
kept identical by these helpers:

- the codebooks (sda.model.codebook): EMA counts and sums are summed over the processes before every
  update; k-means and dead-code replacement are computed by process 0 and broadcast;
- the decisions of the loop (sda.train.engine): stop, skip a non-finite step, start only on the same data.

Outside a distributed run (no torchrun, or one process) every helper is the identity, so the
single-process path pays nothing. Any collective that fails, because another process died or did not
answer within the timeout, raises PeerFailure.
"""

import inspect
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from sda.errors import ConfigError, PeerFailure


def launched() -> bool:
    """True in a process that torchrun started as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def first_process() -> bool:
    """False only in the processes of a torchrun run other than process 0; readable before joining."""
    return not launched() or os.environ.get("RANK") == "0"


def rank() -> int:
    """This process's rank in the joined group; 0 outside one."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def describe() -> str:
    """'process 1 of 2 on host' for messages."""
    return f"process {rank()} of {world_size()} on {socket.gethostname()}"


@contextmanager
def joined(device: torch.device, timeout_s: float) -> Iterator[torch.device]:
    """Join the group torchrun started (if it did) and leave it at the end; yields this process's device.

    device: the one asked for; under torchrun, CUDA becomes cuda:LOCAL_RANK, one GPU per process.
    timeout_s: how long any collective waits for the other processes before it raises PeerFailure.
    """
    if not launched():
        yield device
        return
    device = device_for(device, int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                                device_id=device if device.type == "cuda" else None)
    except (RuntimeError, ValueError) as exc:
        raise PeerFailure(f"could not join the distributed run at {os.environ.get('MASTER_ADDR')}:"
                          f"{os.environ.get('MASTER_PORT')} as process {os.environ.get('RANK')} of "
                          f"{os.environ.get('WORLD_SIZE')}: {_reason(exc)}") from None
    try:
        yield device
    finally:
        dist.destroy_process_group()


def device_for(device: torch.device, local_rank: int, per_machine: int) -> torch.device:
    """The device of process local_rank of the per_machine processes on this machine: on CUDA, a GPU each."""
    if device.type == "mps":
        raise ConfigError("training on several processes needs CUDA or the CPU: use --device cpu, or one process")
    if device.type != "cuda":
        return device
    if device.index is not None:
        raise ConfigError(f"--device {device}: with several processes each takes the GPU numbered by its "
                          "LOCAL_RANK; give --device cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES")
    if per_machine > torch.cuda.device_count():
        raise ConfigError(f"{per_machine} processes on this machine, but it has {torch.cuda.device_count()} GPU(s): "
                          "start at most one process per GPU, or train on the CPU with --device cpu")
    return torch.device("cuda", local_rank)


@contextmanager
def collective(what: str) -> Iterator[None]:
    """Turn the failure of a collective (here, or inside DDP) into a PeerFailure that says what failed."""
    try:
        yield
    except RuntimeError as exc:
        if world_size() == 1 or isinstance(exc, PeerFailure) or not _lost_contact(exc):
            raise  # a bug, not a peer: keep its traceback
        raise PeerFailure(f"{describe()} lost contact with the others while {what}: one of them died, or did not "
                          f"answer within --dist-timeout ({_reason(exc)})") from None


def all_reduce_(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """Sum tensor over all processes, in place; returns it. what: '...ing ...' for a failure's message."""
    if world_size() > 1:
        with collective(what):
            dist.all_reduce(tensor)
    return tensor


def broadcast_(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """Overwrite tensor with process 0's, in place; returns it."""
    if world_size() > 1:
        with collective(what):
            dist.broadcast(tensor, src=0)
    return tensor


def any_process(flag: bool) -> bool:
    """True when flag is true in at least one process (all of them get the same answer)."""
    if world_size() == 1:
        return flag
    t = torch.tensor([int(flag)], device=_device())
    return bool(all_reduce_(t, "checking for a stop request").item())


def gather(obj) -> list:
    """obj from every process, in rank order (small picklable values, between sda's own processes only)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    with collective("comparing how each process set up"):
        dist.all_gather_object(out, obj)
    return out


def data_parallel(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """model wrapped in DistributedDataParallel when there are several processes, else model itself.

    DDP's per-forward buffer broadcast is off: the only buffers that change are the codebooks, which
    sda.model.codebook keeps identical itself, so copying them from process 0 every step would only cost time.
    """
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    # torch 2.14 renamed the switch; older versions know only broadcast_buffers.
    takes_new_name = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    no_buffer_sync: dict[str, Any] = {"forward_sync_buffers" if takes_new_name else "broadcast_buffers": False}
    with collective("sharing process 0's weights"):  # DDP's constructor broadcasts them
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       **no_buffer_sync)


def _device() -> torch.device:
    """Where small tensors for a collective must live: nccl takes CUDA tensors only."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _lost_contact(exc: RuntimeError) -> bool:
    """Whether a collective's error means the others are gone. gloo raises plain RuntimeErrors, so its
    messages are recognised by the words its transport uses."""
    words = ("gloo", "nccl", "connection", "timed out", "timeout", "peer")
    return isinstance(exc, dist.DistError) or any(word in str(exc).lower() for word in words)


def _reason(exc: BaseException) -> str:
    """The backend's message, first sentence, without gloo's '[source.cc:123] ' prefix."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return re.sub(r"^\[[^\]]*\]\s*", "", text).split(". ")[0]
