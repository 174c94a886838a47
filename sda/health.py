"""Codebook health: how much of each RVQ level is in use, computed from the kernels' counts.

Per level, over a window of steps (an epoch, or the last N steps):
    utilization = codes used at least once / K                (shown as %)
    perplexity  = exp(entropy of the usage distribution)      (K at most; 1 means collapse)
    dead codes  = K - codes used;  replaced = codes re-seeded by dead-code replacement
Per-batch figures depend on the batch size and mislead on small data, hence the window. The counts
come from sda.kernels.assign, which already counted every assignment: health costs no extra pass.

    window = HealthWindow(levels=3, codebook_size=64, steps=None)   # None: until reset (an epoch)
    window.add(counts, replaced)     # counts [L, K] int64, replaced [L] per training step
    snapshot = window.snapshot()     # list of LevelHealth, one per level
    for level, message in monitor.check(snapshot): ...              # LowUtilizationMonitor
"""

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch

LOW_UTILIZATION = 0.30  # a level under this fraction of codes in use gets a warning


@dataclass(frozen=True)
class LevelHealth:
    level: int  # 0-based
    codebook_size: int
    used: int
    utilization: float  # fraction in [0, 1]
    perplexity: float  # in [1, K]; 0.0 when nothing was counted
    dead: int
    replaced: int
    assignments: int  # vectors counted in the window

    def to_dict(self) -> dict:
        return asdict(self)


def level_health(counts: torch.Tensor, level: int = 0, replaced: int = 0) -> LevelHealth:
    """Health of one level from its usage counts [K] (any integer or float dtype)."""
    counts = counts.detach().to("cpu", torch.float64)
    total = counts.sum().item()
    used = int((counts > 0).sum().item())
    if total > 0:
        p = counts[counts > 0] / total
        perplexity = math.exp(-(p * p.log()).sum().item())
    else:
        perplexity = 0.0
    k = counts.numel()
    return LevelHealth(level, k, used, used / k, perplexity, k - used, int(replaced), int(total))


class HealthWindow:
    """Sums per-step counts [L, K] over a window: all steps since reset(), or the last `steps`."""

    def __init__(self, levels: int, codebook_size: int, steps: int | None = None):
        if steps is not None and steps < 1:
            raise ValueError(f"HealthWindow steps must be None or at least 1, got {steps}")
        self.steps = steps
        self.counts = torch.zeros(levels, codebook_size, dtype=torch.int64)
        self.replaced = torch.zeros(levels, dtype=torch.int64)
        self._history = deque()  # (counts, replaced) per step, only for a sliding window
        self._steps = 0  # steps since reset

    def add(self, counts: torch.Tensor, replaced: torch.Tensor | None = None) -> None:
        """Count one step: counts [L, K], replaced [L] (codes re-seeded in that step)."""
        counts = counts.detach().to("cpu", torch.int64)
        replaced = torch.zeros_like(self.replaced) if replaced is None else replaced.detach().to("cpu", torch.int64)
        if counts.shape != self.counts.shape or replaced.shape != self.replaced.shape:
            raise ValueError(f"HealthWindow.add: expected counts {tuple(self.counts.shape)} and replaced "
                             f"{tuple(self.replaced.shape)}, got {tuple(counts.shape)} and {tuple(replaced.shape)}")
        self.counts += counts
        self.replaced += replaced
        self._steps += 1
        if self.steps is not None:
            self._history.append((counts, replaced))
            if len(self._history) > self.steps:
                old_counts, old_replaced = self._history.popleft()
                self.counts -= old_counts
                self.replaced -= old_replaced

    def reset(self) -> None:
        self.counts.zero_()
        self.replaced.zero_()
        self._history.clear()
        self._steps = 0

    def __len__(self) -> int:
        """How many steps the window covers now."""
        return self._steps if self.steps is None else min(self._steps, self.steps)

    def snapshot(self) -> list[LevelHealth]:
        pairs = zip(self.counts, self.replaced, strict=True)
        return [level_health(counts, level, int(replaced)) for level, (counts, replaced) in enumerate(pairs)]


class HealthWarning(NamedTuple):
    level: int  # 0-based
    message: str


class LowUtilizationMonitor:
    """Warns once per level when it falls under LOW_UTILIZATION; re-armed when the level recovers.

    Feed it snapshots only after the quantizer is initialised: before k-means the usage is meaningless.
    """

    def __init__(self, threshold: float = LOW_UTILIZATION):
        self.threshold = threshold
        self._warned: set[int] = set()

    def check(self, snapshot: list[LevelHealth]) -> list[HealthWarning]:
        """The warnings this snapshot raises (empty when none is new)."""
        warnings = []
        for h in snapshot:
            if h.assignments == 0:
                continue
            if h.utilization >= self.threshold:
                self._warned.discard(h.level)
            elif h.level not in self._warned:
                self._warned.add(h.level)
                message = (f"RVQ level {h.level + 1} uses {h.utilization:.0%} of its {h.codebook_size} codes "
                           f"(under {self.threshold:.0%}): {h.dead} dead, perplexity {h.perplexity:.1f}. "
                           "A smaller codebook, fewer RVQ levels or more data usually helps.")
                warnings.append(HealthWarning(h.level, message))
        return warnings
