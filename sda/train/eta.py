"""How long a run has left: the one estimate every frontend shows (the engine puts it in Step.eta_s).

    eta = Eta()
    eta.update(now=time.monotonic(), steps_left=120)   # after each step: seconds left, or None while estimating

The first steps of a session pay one-off costs (allocating memory, autotuning and compiling kernels, filling
caches): timing the run from its start made the first ETA of a 3-minute run read 57 minutes. So the clock
starts after SKIP_STEPS steps, and there is no estimate until MIN_TIMED_STEPS more are timed. The rate is the
mean time per step since then, validation, previews and checkpoints included, since they take the run's time too.
"""

SKIP_STEPS = 2
MIN_TIMED_STEPS = 3


class Eta:
    def __init__(self) -> None:
        self._steps = 0  # steps of this session seen
        self._clock_start: float | None = None  # when the clock started: the end of step SKIP_STEPS

    def update(self, now: float, steps_left: int) -> float | None:
        """One more step done at time now (seconds, monotonic): seconds left, None while estimating; 0 at the end."""
        self._steps += 1
        if steps_left <= 0:
            return 0.0
        if self._steps == SKIP_STEPS:
            self._clock_start = now
        timed = self._steps - SKIP_STEPS
        if self._clock_start is None or timed < MIN_TIMED_STEPS:
            return None
        return (now - self._clock_start) / timed * steps_left
