"""`sda train --nproc N`: torchrun's own launcher, run in this process, so one machine needs no torchrun line.

    launch(2, ["train", "kit/", "--nproc", "2"])   # == torchrun --standalone --nproc-per-node 2 -m sda train ...

The workers get the same arguments, --nproc included: under torchrun, --nproc is accepted only when
it equals the number of processes per machine (check_nproc), so a worker never launches again.
torchrun starts each worker in its own session and forwards Ctrl-C or SIGTERM to it once: the workers
stop, process 0 saves, and the launcher returns. When a worker dies, torchrun stops the others.
"""

import logging
import os
import signal
import sys

from sda.errors import EXIT_FAILED, EXIT_INTERRUPTED, ConfigError


def check_nproc(nproc: int) -> bool:
    """True when this process should launch nproc workers; raises when --nproc contradicts torchrun."""
    per_machine = os.environ.get("LOCAL_WORLD_SIZE")
    if per_machine is None:
        return nproc > 1
    if nproc not in (1, int(per_machine)):
        raise ConfigError(f"--nproc {nproc}: this process was started by torchrun with {per_machine} processes "
                          "per machine; leave out --nproc, or run sda train --nproc without torchrun")
    return False


def under_torchrun() -> bool:
    """True in a process that torchrun started (it sets LOCAL_WORLD_SIZE), whether by sda train --nproc or not."""
    return "LOCAL_WORLD_SIZE" in os.environ


def launch(nproc: int, argv: list[str], device: str) -> int:
    """Run `python -m sda ARGV` as nproc processes; the run's exit status: process 0's, else the first failure's.
    device: --device, checked here once rather than in every worker."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from sda.train import distributed
    from sda.train.devices import pick_device

    distributed.device_for(pick_device(device), 0, nproc)
    # torchrun gives each worker one CPU thread unless told; sharing the cores serves CPU training better.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # torchrun's log lines (rendezvous, teardown) are for torchrun's users; the workers print what
    # matters, and failures are summed up below. Its loggers set their own levels, so each is set here.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    args = torchrun.parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "sda"])
    args.training_script_args = list(argv)  # not parsed by torchrun: to it, --nproc would be an ambiguous flag
    try:
        torchrun.run(args)
    except SignalException:
        return EXIT_INTERRUPTED  # the workers got the signal too, stopped and saved
    except ChildFailedError as exc:
        failures = exc.failures  # rank -> ProcessFailure, for the processes that failed first
        for rank, failure in sorted(failures.items()):
            # A process killed by a signal could not say why itself. SIGTERM and SIGINT are torchrun's own
            # way of stopping the others (or the user's), so only the other signals are news.
            if failure.exitcode < 0 and -failure.exitcode not in (signal.SIGTERM, signal.SIGINT):
                name = signal.Signals(-failure.exitcode).name
                print(f"sda: process {rank} of {nproc} (pid {failure.pid}) was killed by {name}", file=sys.stderr)
        first = failures[0] if 0 in failures else failures[min(failures)]
        return first.exitcode if first.exitcode > 0 else EXIT_FAILED
    return 0
