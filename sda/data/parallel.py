"""Decoding files on every core: a process pool that hands results back in the order of the work, one at a time.

    workers = decode_workers(len(tasks), DecodeOptions().workers)   # one per core, at most one per task
    for result in in_order(decode_one, tasks, workers, stop):       # decode_one(tasks[0]), decode_one(tasks[1]), ...
        ...

Processes, not threads: resampling and libsndfile hold the GIL for part of their work, and a file's decode is
seconds of CPU. The pool is started by forkserver (spawn where there is none), never fork: a forked copy of a process
running torch's thread pools (or Gradio's server threads) can deadlock. Each worker runs torch on one thread (the
pool is the parallelism), and sda.data.dataset is imported once in the fork server, so workers start without
importing torch again.

Results come back in the order of `tasks`, whichever worker finishes first, so a pooled pass is the one-process pass
bit for bit. At most IN_FLIGHT_PER_WORKER x workers tasks are submitted at a time: what has been decoded but not yet
taken stays bounded (a few files' chunks), however many files there are. Setting `stop` cancels what has not started
and raises LoadingStopped within POLL_SECONDS; a worker busy with a file finishes it on its own, unwaited.
"""

import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from sda.config import MAX_DECODE_WORKERS
from sda.errors import DataError

IN_FLIGHT_PER_WORKER = 2  # one decoding, one queued, so that no worker waits for the parent between files
POLL_SECONDS = 0.1  # how often a wait for a result looks at the stop flag

Task = TypeVar("Task")
Result = TypeVar("Result")


class LoadingStopped(Exception):
    """The stop flag was set while the audio was read: the pass stopped between files, keeping nothing. Not bad
    input."""


def available_cores() -> int:
    """The cores this process may run on (its affinity, as taskset or a container sets it), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no sched_getaffinity on macOS and Windows
        return os.cpu_count() or 1


def decode_workers(n_tasks: int, requested: int | None = None) -> int:
    """How many processes decode n_tasks files: requested (DecodeOptions.workers), else one per available core; never
    more than the files, nor MAX_DECODE_WORKERS. 1 means in this process, without a pool."""
    wanted = requested if requested is not None else available_cores()
    return max(1, min(wanted, n_tasks, MAX_DECODE_WORKERS))


def in_order(work: Callable[[Task], Result], tasks: Sequence[Task], workers: int,
             stop: threading.Event | None = None) -> Iterator[Result]:
    """work(task) for each task, in the order of tasks: in this process when workers is 1, else in a pool of that
    many. work must be a module-level function (it is sent to the workers by name) and its tasks and results
    picklable; an exception it raises is raised here, at its task."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            _check_stop(stop)
            yield work(task)
        return
    pool = ProcessPoolExecutor(workers, mp_context=_context(), initializer=_one_thread)
    finished = False
    try:
        window: deque[Future] = deque()
        upcoming = iter(tasks)
        for task in upcoming:  # fill the window, then take the oldest and submit the next as each is taken
            window.append(pool.submit(work, task))
            if len(window) >= IN_FLIGHT_PER_WORKER * workers:
                break
        while window:
            yield _result(window.popleft(), stop)
            for task in upcoming:
                window.append(pool.submit(work, task))
                break
        finished = True
    finally:
        # Stopped, or a task failed: what has not started is cancelled and nobody waits for what has.
        pool.shutdown(wait=finished, cancel_futures=not finished)


def _result(future: Future, stop: threading.Event | None):
    while True:
        _check_stop(stop)
        done, _ = wait([future], timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
        if done:
            try:
                return future.result()
            except BrokenProcessPool:
                raise DataError("A decoding process ended unexpectedly (out of memory, or a file crashed the audio "
                                "decoder). Run again with one process (sda train --decode-workers 1) to see which "
                                "file it is, and move it out of the folder.") from None


def _check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise LoadingStopped("stopped while reading the audio")


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # The fork server imports torch and sda's decoding once; each worker is a fork of it, ready at once. It has
        # started no threads when it forks, which is what makes this safe where forking the parent is not.
        context.set_forkserver_preload(["sda.data.dataset"])
        return context
    return multiprocessing.get_context("spawn")


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)
