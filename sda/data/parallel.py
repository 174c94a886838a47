"""Decoding files on every core: a process pool that hands results back in the order of the work, one at a time.

    workers = decode_workers(len(tasks), DecodeOptions().workers)   # one per core, at most one per task
    for result in in_order(decode_one, tasks, workers, stop):       # decode_one(tasks[0]), decode_one(tasks[1]), ...
        ...

Processes, not threads: resampling and libsndfile hold the GIL for part of their work, and a file's decode is
seconds of CPU. The pool is started by forkserver (spawn where there is none), never fork: a forked copy of a process
running torch's thread pools (or Gradio's server threads) can deadlock. Each worker runs torch on one thread (the
pool is the parallelism), and sda.data.dataset is imported once in the fork server, so workers start without
importing torch again.

The pool's processes take seconds to start (the fork server imports torch, once per process): longer than a folder of
a few dozen sounds takes to decode. So this process decodes alone for ALONE_SECONDS (such a folder is done by then,
and never starts a pool), then starts the pool in a thread and goes on decoding until a worker answers; the rest of
the files go to the pool. A command that will read a folder (sda train, sda ui) calls start_early before it imports
torch itself, so that the fork server's import runs beside its own rather than beside the first files' decoding.
(Starting a pass's pool at once when the server already runs was tried, and measured no faster: the workers of a
ready server answer within the first files anyway.)

Results come back in the order of `tasks`, whichever worker finishes first, so a pooled pass is the one-process pass
bit for bit. At most IN_FLIGHT_PER_WORKER x workers tasks are submitted at a time: what has been decoded but not yet
taken stays bounded (that many files' chunks, each at most AudioConfig.max_chunks_per_file), however many files there
are. The window is that deep because results are taken in order: behind one long file, a worker with a short queue
runs dry (2 per worker left the workers idle a quarter of the time on a sample-pack-like folder; 8, under 5%).
Setting `stop` cancels what has not started and raises LoadingStopped within POLL_SECONDS; a worker busy with a file
finishes it on its own, unwaited.
"""

import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from sda.config import MAX_DECODE_WORKERS
from sda.errors import DataError

IN_FLIGHT_PER_WORKER = 8  # see the module docstring
POLL_SECONDS = 0.1  # how often a wait for a result looks at the stop flag
ALONE_SECONDS = 0.5  # this process decodes alone this long before it starts a pool: a folder done by then needs none
BEGIN_HERE = True  # decode in this process until the pool is ready (tests turn it off to send every file to the pool)
STARTED_WITHIN_SECONDS = 60.0  # how long an unused pool's close waits for its processes to start

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


def start_early(requested: int | None = None) -> None:
    """Start the pool's fork server now, in the background (this returns at once), for a pass that may come: its
    import of torch (about 2 s) then overlaps this process's own. Nothing where a pass would not pool: one worker
    requested (DecodeOptions.workers) or one core, or no forkserver on this system. A server no pass uses idles
    until this process exits, and exits with it."""
    if decode_workers(MAX_DECODE_WORKERS, requested) <= 1 or _context().get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    forkserver.ensure_running()


def in_order(work: Callable[[Task], Result], tasks: Sequence[Task], workers: int,
             stop: threading.Event | None = None) -> Iterator[Result]:
    """work(task) for each task, in the order of tasks: in this process when workers is 1, else in a pool of that
    many. work must be a module-level function (it is sent to the workers by name) and its tasks and results
    picklable; an exception it raises is raised here, at its task."""
    if workers <= 1 or len(tasks) <= 1:
        yield from _here(work, tasks, stop)
        return
    began, start, taken = time.monotonic(), None, 0
    pooled = finished = False
    try:
        while taken < len(tasks):
            if start is None and (not BEGIN_HERE or time.monotonic() - began >= ALONE_SECONDS):
                start = _PoolStart(workers)
            if start is not None and (start.ready.is_set() or not BEGIN_HERE):
                start.ready.wait()
                break
            check_stop(stop)
            yield work(tasks[taken])
            taken += 1
        if start is None or taken == len(tasks):
            return
        pool, pooled = start.pool, True
        window: deque[Future] = deque()
        upcoming = iter(tasks[taken:])
        for task in upcoming:  # fill the window, then take the oldest and submit the next as each is taken
            window.append(_submit(pool, work, task))
            if len(window) >= IN_FLIGHT_PER_WORKER * workers:
                break
        while window:
            yield _result(window.popleft(), stop)
            for task in upcoming:
                window.append(_submit(pool, work, task))
                break
        finished = True
    finally:
        # Stopped, or a task failed: what has not started is cancelled and nobody waits for what has.
        if start is not None and pooled:
            start.pool.shutdown(wait=finished, cancel_futures=not finished)
        elif start is not None:  # done, or stopped, before the pool was ready
            start.close_when_started()


class _PoolStart:
    """A process pool whose processes are started by a thread, so that starting it blocks nobody. ready is set once a
    worker has run something (or starting failed: the first submit then raises it)."""

    def __init__(self, workers: int) -> None:
        self.pool = ProcessPoolExecutor(workers, mp_context=_context(), initializer=_one_thread)
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._start, name="sda-decode-pool-start", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            self.pool.submit(_started).result()
        except BaseException:  # noqa: BLE001 - raised again, where it can be reported, by the first real submit
            pass
        finally:
            self.ready.set()

    def close_when_started(self) -> None:
        """Shut the pool down once its processes have started, in a thread that the interpreter waits for at exit:
        a process forked from the fork server after its parent has gone cannot open the pool's queues."""
        threading.Thread(target=self._close, name="sda-decode-pool-close").start()

    def _close(self) -> None:
        self.ready.wait(STARTED_WITHIN_SECONDS)
        self.pool.shutdown(wait=False, cancel_futures=True)


def _started() -> None:
    """What a pool's first worker runs to say it has started."""


def _here(work: Callable[[Task], Result], tasks: Sequence[Task], stop: threading.Event | None) -> Iterator[Result]:
    for task in tasks:
        check_stop(stop)
        yield work(task)


def _submit(pool: ProcessPoolExecutor, work: Callable[[Task], Result], task: Task) -> Future:
    try:
        return pool.submit(work, task)
    except BrokenProcessPool:
        raise _broken() from None


def _result(future: Future, stop: threading.Event | None):
    while True:
        check_stop(stop)
        done, _ = wait([future], timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
        if done:
            try:
                return future.result()
            except BrokenProcessPool:
                raise _broken() from None


def _broken() -> DataError:
    return DataError("A decoding process ended unexpectedly (out of memory, or a file crashed the audio decoder). "
                     "Run again with one process (sda train --decode-workers 1) to see which file it is, and move "
                     "it out of the folder.")


def check_stop(stop: threading.Event | None) -> None:
    """Raise LoadingStopped if stop is set: the one test of the stop flag, between files, here and in the pool."""
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
