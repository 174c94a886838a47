"""Codebook health: how much of each RVQ level is in use, computed from the kernels' counts.

Per level, over a window of the last N training steps:
    utilization = codes used at least once / K                (shown as %)
    perplexity  = exp(entropy of the usage distribution)      (K at most; 1 means collapse)
    dead codes  = K - codes used;  replaced = codes re-seeded by dead-code replacement
Per-batch figures depend on the batch size and mislead on small data, hence the window. The counts
come from sda.kernels.assign, which already counted every assignment: health costs no extra pass.

    window = HealthWindow(levels=3, codebook_size=64, steps=100)    # the last 100 steps
    window.add(counts, replaced)     # counts [L, K] int64, replaced [L] per training step
    snapshot = window.snapshot()     # list of LevelHealth, one per level
    new, resolved = monitor.check(snapshot, epoch, step)            # LowUtilizationMonitor: HealthWarning records

The rules of a warning, all here: a level is judged only once its quantizer is on (after warm-up,
sda.train.warmup) and its window holds a whole health interval (judged); it warns when under
LOW_UTILIZATION, and warns again only after it has come back above RECOVERED_UTILIZATION
(hysteresis), so a level hovering at the line warns once. Every warning keeps its outcome: recovered
at a step, or still weak at the end. Figures print rounded toward zero (percent), so 29.97% reads
29.9%, never "30% (under 30%)".
"""

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace

import torch

LOW_UTILIZATION = 0.30  # a level under this fraction of codes in use gets a warning
RECOVERED_UTILIZATION = 0.40  # ...and warns again only after it has come back to this (hysteresis)


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
    """Sums per-step counts [L, K] over the last `steps` steps (fewer since the start or a reset()).

    The sums live on device (the training's), so adding a step never waits for the device; only
    snapshot() copies them to the host, once per health report.
    """

    def __init__(self, levels: int, codebook_size: int, steps: int, device: torch.device | str = "cpu"):
        if steps < 1:
            raise ValueError(f"HealthWindow steps must be at least 1, got {steps}")
        self.steps = steps
        self.counts = torch.zeros(levels, codebook_size, dtype=torch.int64, device=device)
        self.replaced = torch.zeros(levels, dtype=torch.int64, device=device)
        self._history: deque[tuple[torch.Tensor, torch.Tensor]] = deque()  # (counts, replaced) per step

    def add(self, counts: torch.Tensor, replaced: torch.Tensor | None = None) -> None:
        """Count one step: counts [L, K], replaced [L] (codes re-seeded in that step), on the window's device."""
        replaced = torch.zeros_like(self.replaced) if replaced is None else replaced
        if counts.device != self.counts.device or replaced.device != self.counts.device:
            raise ValueError(f"HealthWindow.add: the window is on {self.counts.device}, got counts on {counts.device} "
                             f"and replaced on {replaced.device}")
        counts, replaced = counts.detach().to(torch.int64), replaced.detach().to(torch.int64)
        if counts.shape != self.counts.shape or replaced.shape != self.replaced.shape:
            raise ValueError(f"HealthWindow.add: expected counts {tuple(self.counts.shape)} and replaced "
                             f"{tuple(self.replaced.shape)}, got {tuple(counts.shape)} and {tuple(replaced.shape)}")
        self.counts += counts
        self.replaced += replaced
        self._history.append((counts, replaced))
        if len(self._history) > self.steps:
            old_counts, old_replaced = self._history.popleft()
            self.counts -= old_counts
            self.replaced -= old_replaced

    def reset(self) -> None:
        """Forget every step (the engine's, when the quantizer comes on after warm-up)."""
        self.counts.zero_()
        self.replaced.zero_()
        self._history.clear()

    def __len__(self) -> int:
        """How many steps the window covers now."""
        return len(self._history)

    def usage(self) -> torch.Tensor:
        """The window's counts [L, K] int64, copied to the host."""
        return self.counts.to("cpu", copy=True)

    def snapshot(self) -> list[LevelHealth]:
        pairs = zip(self.counts.cpu(), self.replaced.cpu(), strict=True)  # one copy each, to the host
        return [level_health(counts, level, int(replaced)) for level, (counts, replaced) in enumerate(pairs)]


def codes_carrying(counts: torch.Tensor, share: float = 0.5) -> int:
    """How few codes of a level carry `share` of its assignments: counts [K]; 0 when nothing was counted.
    With K codes in even use that is about share x K; a handful means the level is used as a much smaller one."""
    counts = counts.detach().to("cpu", torch.float64)
    total = counts.sum().item()
    if total <= 0:
        return 0
    cumulative = counts.sort(descending=True).values.cumsum(0)
    return int((cumulative < share * total - 1e-9).sum().item()) + 1


def percent(fraction: float) -> str:
    """'29.9%': rounded toward zero at one decimal, so a figure never reads as past a line it did not cross."""
    return f"{math.floor(1000 * fraction + 1e-9) / 10:.1f}%"


def judged(window_steps: int, health_every: int, window_size: int) -> bool:
    """Whether a window since the quantizer came on covers enough steps to judge: a whole health
    interval (or the whole window, when that is shorter). One step's counts say little about K codes."""
    return window_steps >= min(health_every, window_size)


@dataclass(frozen=True)
class HealthWarning:
    """A level that fell under LOW_UTILIZATION, and what became of it."""

    level: int  # 0-based
    epoch: int
    step: int
    codebook_size: int
    utilization: float  # when it warned
    dead: int
    perplexity: float
    recovered_step: int | None = None  # the first window at or above RECOVERED_UTILIZATION since
    recovered_utilization: float | None = None
    latest_utilization: float | None = None  # the level's latest figure, until its next warning (or the end)

    @property
    def recovered(self) -> bool:
        return self.recovered_step is not None

    @property
    def still_weak(self) -> bool:
        """Unrecovered, and under the line in its latest window: a real problem, not a dip."""
        return not self.recovered and (self.latest_utilization if self.latest_utilization is not None
                                       else self.utilization) < LOW_UTILIZATION

    def message(self) -> str:
        """What happened, without advice (that depends on the frontend: sda.report.advice)."""
        return (f"RVQ level {self.level + 1} uses {percent(self.utilization)} of its {self.codebook_size} codes "
                f"(under {LOW_UTILIZATION:.0%}) at step {self.step}: {self.dead} dead, perplexity "
                f"{self.perplexity:.1f}")

    def outcome(self) -> str:
        figures = (self.latest_utilization, self.recovered_utilization, self.utilization)
        latest = next(u for u in figures if u is not None)
        if self.recovered:
            return f"recovered at step {self.recovered_step} ({percent(latest)} now)"
        if latest < LOW_UTILIZATION:
            return f"still under {LOW_UTILIZATION:.0%} ({percent(latest)} in the latest window)"
        return f"back to {percent(latest)}, not yet over {RECOVERED_UTILIZATION:.0%}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "HealthWarning":
        return cls(**data)


class LowUtilizationMonitor:
    """Warns once when a level falls under LOW_UTILIZATION; re-armed only once the level has clearly
    recovered (at or above RECOVERED_UTILIZATION), so a level hovering at the line warns once.

    Feed it only judged snapshots (see `judged`): after warm-up, once the quantizer is initialised.
    `records` holds every warning with its outcome so far; pass a run's saved records to resume it.
    """

    def __init__(self, records: Iterable[HealthWarning] = (), threshold: float = LOW_UTILIZATION,
                 recovered: float = RECOVERED_UTILIZATION):
        self.threshold, self.recovered = threshold, recovered
        self.records = list(records)

    def _latest(self, level: int) -> int | None:
        """Index in records of the level's latest warning, if any."""
        for i in range(len(self.records) - 1, -1, -1):
            if self.records[i].level == level:
                return i
        return None

    def check(self, snapshot: list[LevelHealth], epoch: int, step: int) -> tuple[list[HealthWarning],
                                                                               list[HealthWarning]]:
        """(new warnings, warnings this snapshot resolved); open warnings follow the latest figure."""
        new, resolved = [], []
        for h in snapshot:
            if h.assignments == 0:
                continue
            i = self._latest(h.level)
            if i is not None and not self.records[i].recovered:
                self.records[i] = replace(self.records[i], latest_utilization=h.utilization)
                if h.utilization >= self.recovered:
                    self.records[i] = replace(self.records[i], recovered_step=step, recovered_utilization=h.utilization)
                    resolved.append(self.records[i])
            elif h.utilization < self.threshold:
                record = HealthWarning(h.level, epoch, step, h.codebook_size, h.utilization, h.dead, h.perplexity)
                self.records.append(record)
                new.append(record)
            elif i is not None:  # recovered and healthy: "recovered at step 48 (97.0% now)" stays true
                self.records[i] = replace(self.records[i], latest_utilization=h.utilization)
        return new, resolved
