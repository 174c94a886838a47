"""sda.model.health: exact figures on hand-made counts, windows, and the low-utilization warning."""

import math

import pytest
import torch

from sda import report
from sda.model.health import (
    LOW_UTILIZATION,
    RECOVERED_UTILIZATION,
    HealthWarning,
    HealthWindow,
    LowUtilizationMonitor,
    judged,
    level_health,
    percent,
)


def test_uniform_usage_gives_perplexity_k():
    h = level_health(torch.full((64,), 5))
    assert h.utilization == 1.0 and h.used == 64 and h.dead == 0 and h.assignments == 320
    assert h.perplexity == pytest.approx(64.0)


def test_one_hot_usage_gives_perplexity_one():
    counts = torch.zeros(64, dtype=torch.int64)
    counts[17] = 1000
    h = level_health(counts, level=2, replaced=3)
    assert h.perplexity == pytest.approx(1.0)
    assert h.utilization == 1 / 64 and h.dead == 63 and h.level == 2 and h.replaced == 3


def test_hand_made_counts():
    h = level_health(torch.tensor([2, 2, 0, 0]))
    assert (h.utilization, h.dead, h.perplexity) == (0.5, 2, pytest.approx(2.0))
    h = level_health(torch.tensor([3, 1]))
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert h.perplexity == pytest.approx(math.exp(entropy))


def test_nothing_counted():
    h = level_health(torch.zeros(8, dtype=torch.int64))
    assert (h.utilization, h.perplexity, h.dead, h.assignments) == (0.0, 0.0, 8, 0)


def test_window_sums_its_steps_until_reset():
    window = HealthWindow(levels=2, codebook_size=4, steps=10)
    window.add(torch.tensor([[1, 0, 0, 0], [0, 0, 0, 2]]), torch.tensor([1, 0]))
    window.add(torch.tensor([[0, 1, 0, 0], [0, 0, 0, 2]]), torch.tensor([2, 0]))
    first, second = window.snapshot()
    assert (first.used, first.replaced, first.perplexity) == (2, 3, pytest.approx(2.0))
    assert (second.used, second.assignments, second.perplexity) == (1, 4, pytest.approx(1.0))
    assert len(window) == 2
    window.reset()
    assert all(h.assignments == 0 and h.replaced == 0 for h in window.snapshot())
    assert len(window) == 0


def test_sliding_window_forgets_old_steps():
    window = HealthWindow(levels=1, codebook_size=4, steps=2)
    for code in range(4):
        counts = torch.zeros(1, 4, dtype=torch.int64)
        counts[0, code] = 1
        window.add(counts, torch.tensor([code]))
    (h,) = window.snapshot()
    assert (h.used, h.assignments, h.replaced) == (2, 2, 2 + 3)  # only the last two steps
    assert len(window) == 2


def test_window_rejects_wrong_shapes():
    window = HealthWindow(levels=2, codebook_size=4, steps=10)
    with pytest.raises(ValueError, match=r"expected counts \(2, 4\)"):
        window.add(torch.zeros(3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="at least 1"):
        HealthWindow(levels=2, codebook_size=4, steps=0)


def snapshot(*used, k=10):
    """A snapshot with levels using `used[i]` of k codes each."""
    return [level_health(torch.tensor([1] * u + [0] * (k - u)), level) for level, u in enumerate(used)]


def test_low_utilization_warns_once_per_level_until_it_clearly_recovers():
    monitor = LowUtilizationMonitor()
    assert (LOW_UTILIZATION, RECOVERED_UTILIZATION) == (0.30, 0.40)
    assert monitor.check(snapshot(5, 3), 1, 10) == ([], [])  # 30% is not under 30%
    new, resolved = monitor.check(snapshot(5, 2), 1, 20)
    assert [w.level for w in new] == [1] and resolved == []
    assert new[0].message() == "RVQ level 2 uses 20.0% of its 10 codes (under 30%) at step 20: 8 dead, perplexity 2.0"
    assert monitor.check(snapshot(5, 1), 1, 30) == ([], [])  # still low: no repeat
    new, _ = monitor.check(snapshot(2, 1), 2, 40)
    assert [w.level for w in new] == [0]  # another level, its own warning
    # Hysteresis: back over 30% but not to 40% is not a recovery, and a fall under 30% again is no new warning.
    assert monitor.check(snapshot(2, 3), 2, 50) == ([], [])
    assert monitor.check(snapshot(2, 2), 2, 60) == ([], [])
    new, resolved = monitor.check(snapshot(2, 4), 3, 70)  # level 2 reaches 40%: recovered, re-armed
    assert new == [] and [(w.level, w.recovered_step, w.recovered_utilization) for w in resolved] == [(1, 70, 0.4)]
    new, _ = monitor.check(snapshot(2, 2), 3, 80)
    assert [(w.level, w.step) for w in new] == [(1, 80)]
    assert [(w.level, w.step, w.recovered) for w in monitor.records] == [(1, 20, True), (0, 40, False), (1, 80, False)]


def test_a_warning_records_its_outcome():
    monitor = LowUtilizationMonitor()
    (dip,), _ = monitor.check(snapshot(2), 1, 12)
    monitor.check(snapshot(9), 2, 48)
    (weak,), _ = monitor.check(snapshot(1), 3, 90)
    monitor.check(snapshot(2), 4, 400)
    dip, weak = monitor.records
    assert dip.recovered and not dip.still_weak and dip.recovered_utilization == 0.9
    assert dip.outcome() == "recovered at step 48 (90.0% now)"  # its latest figure until it warned again
    assert not weak.recovered and weak.still_weak
    assert weak.outcome() == "still under 30% (20.0% in the latest window)"
    # Back over the line but short of a clear recovery: not presented as a problem, not as recovered either.
    monitor.check(snapshot(3), 4, 410)
    assert not monitor.records[1].still_weak and "not yet over 40%" in monitor.records[1].outcome()
    # The records survive a resume: a monitor built from them knows level 1 is still warned.
    resumed = LowUtilizationMonitor([HealthWarning.from_dict(w.to_dict()) for w in monitor.records])
    assert resumed.check(snapshot(1), 5, 420) == ([], [])
    # A recovered level's record follows it while it stays healthy: its outcome reads as of now.
    healthy = LowUtilizationMonitor()
    healthy.check(snapshot(2), 1, 10)
    healthy.check(snapshot(5), 1, 20)
    healthy.check(snapshot(9), 2, 30)
    assert healthy.records[0].outcome() == "recovered at step 20 (90.0% now)"


def test_printed_figures_never_cross_the_line_they_did_not_cross():
    assert percent(0.297) == "29.7%" and percent(0.2999) == "29.9%" and percent(0.3) == "30.0%"
    assert percent(0.99999) == "99.9%" and percent(1.0) == "100.0%" and percent(0.0) == "0.0%"
    h = level_health(torch.tensor([1] * 2999 + [0] * 7001))  # 29.99% used
    assert report.is_weak(h) and "29.9%" in report.level_line(h) and "under 30%" in report.level_line(h)


def test_a_window_is_judged_only_once_it_covers_a_health_interval():
    assert not judged(window_steps=1, health_every=10, window_size=19)
    assert judged(window_steps=10, health_every=10, window_size=19)
    assert judged(window_steps=4, health_every=10, window_size=4)  # an epoch of 4 steps: 4 will do


def test_a_level_with_no_assignments_is_not_judged():
    monitor = LowUtilizationMonitor()
    assert monitor.check([level_health(torch.zeros(10, dtype=torch.int64))], 1, 1) == ([], [])
