"""Host synchronisations in one training step, counted on CPU.

On a GPU, every read of a device value by the host (.item(), .tolist(), bool(t), float(t), a
boolean-mask index, which must ask how many rows it selects, a copy to the host) stops the host
until the device has caught up. There is no device here, so the test records every such call
made from sda's own code (sda/, kernels/) while a real run trains, and attributes it to the
step in progress. Calls inside torch are left out: the ones a step makes there (AdamW reading
its step counter, kept on the host) synchronise nothing. bench/RESULTS.md lists what is left.
"""

import dataclasses
import sys
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import torch

import sda
from sda.kernels import dispatch
from sda.train import engine, events
from sda.train.engine import RunOptions
from tests.helpers import SMALL

OURS = (str(Path(sda.__file__).parent), str(Path(dispatch.__file__).parent))
READS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "numpy", "cpu", "nonzero")


def _caller() -> str | None:
    """'file.py:function' of the sda frame that made the call, None when torch or a test made it."""
    frame = sys._getframe(2)
    path = frame.f_code.co_filename
    if not path.startswith(OURS):
        return None
    return f"{Path(path).name}:{frame.f_code.co_name}"


def _is_mask(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


def _to_host(args, kwargs) -> bool:
    targets = (*args, kwargs.get("device"))
    return any(str(t) == "cpu" for t in targets if isinstance(t, (str, torch.device)))


# Which Tensor methods read the device, and when: always, when they copy to the host, when indexed by a mask.
WATCHED = {**{name: lambda args, kwargs: True for name in READS}, "to": _to_host,
           "__getitem__": lambda args, kwargs: _is_mask(args[0]), "__setitem__": lambda args, kwargs: _is_mask(args[0])}


@contextmanager
def recorded(log: list[str]):
    """Append 'file.py:function (what)' to log for each host read made from sda's code."""
    saved = {name: getattr(torch.Tensor, name) for name in WATCHED}

    def watching(name):
        original, reads = saved[name], WATCHED[name]

        def wrapper(self, *args, **kwargs):
            if reads(args, kwargs):
                where = _caller()
                if where is not None:
                    log.append(f"{where} ({name})")
            return original(self, *args, **kwargs)
        return wrapper

    try:
        for name in WATCHED:
            setattr(torch.Tensor, name, watching(name))
        yield
    finally:
        for name, original in saved.items():
            setattr(torch.Tensor, name, original)


def reads_per_step(config, options) -> dict[int, list[str]]:
    """step -> the host reads sda made from the end of the step before to the end of this one
    (the Step event), and the health events that follow it are counted with the next step."""
    log: list[str] = []
    per_step: dict[int, list[str]] = {}
    with recorded(log):
        for event in engine.train(config, options, threading.Event()):
            if isinstance(event, events.Step):
                per_step[event.step] = log[:]
                log.clear()
    return per_step


def test_a_quantized_training_step_synchronises_once_to_read_its_verdict(folder, tmp_path):
    # 6 files at batch 2: a few steps per epoch, health every 4 steps, the quantizer on from step 3.
    config = dataclasses.replace(SMALL, batch_size=2, epochs=2, warmup_steps=2)
    options = RunOptions(folder, tmp_path, "s", health_every=4, preview_every=100)
    per_step = reads_per_step(config, options)
    steps_per_epoch = max(per_step) // config.epochs
    health_steps = {s for s in per_step if s % 4 == 0 or s % steps_per_epoch == 0}
    plain = [s for s in per_step if s > 3 and s - 1 not in health_steps and s - 1 != steps_per_epoch]
    assert steps_per_epoch >= 6 and len(plain) >= 3, (steps_per_epoch, plain)
    for step in plain:
        assert per_step[step] == ["engine.py:_update (tolist)"], (step, per_step[step])


def test_the_health_window_is_read_only_when_health_is_reported(folder, tmp_path):
    config = dataclasses.replace(SMALL, batch_size=2, epochs=1, warmup_steps=2)
    options = RunOptions(folder, tmp_path, "h", health_every=4, preview_every=100)
    per_step = reads_per_step(config, options)
    after_health = per_step[5]  # step 4's health events are counted with step 5
    counted = Counter(read.split(" ")[0] for read in after_health)
    assert counted["engine.py:_update"] == 1
    # The rest is the health report: one copy of the window to the host, then figures on host tensors.
    assert "health.py:snapshot" in counted and "health.py:usage" in counted
    assert set(counted) <= {"engine.py:_update", "health.py:snapshot", "health.py:usage", "health.py:level_health",
                            "health.py:<listcomp>"}, counted
