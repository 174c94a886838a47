"""sda.health: exact figures on hand-made counts, windows, and the low-utilization warning."""

import math

import pytest
import torch

from sda.health import LOW_UTILIZATION, HealthWindow, LowUtilizationMonitor, level_health


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


def test_window_until_reset_sums_every_step():
    window = HealthWindow(levels=2, codebook_size=4)
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
    window = HealthWindow(levels=2, codebook_size=4)
    with pytest.raises(ValueError, match=r"expected counts \(2, 4\)"):
        window.add(torch.zeros(3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="at least 1"):
        HealthWindow(levels=2, codebook_size=4, steps=0)


def snapshot(*used, k=10):
    """A snapshot with levels using `used[i]` of k codes each."""
    return [level_health(torch.tensor([1] * u + [0] * (k - u)), level) for level, u in enumerate(used)]


def test_low_utilization_warns_once_per_level_until_it_recovers():
    monitor = LowUtilizationMonitor()
    assert LOW_UTILIZATION == 0.30
    assert monitor.check(snapshot(5, 3)) == []  # 30% is not under 30%
    warnings = monitor.check(snapshot(5, 2))
    assert [w.level for w in warnings] == [1]
    assert "RVQ level 2 uses 20% of its 10 codes" in warnings[0].message
    assert monitor.check(snapshot(5, 1)) == []  # still low: no repeat
    assert [w.level for w in monitor.check(snapshot(2, 1))] == [0]  # another level, its own warning
    assert monitor.check(snapshot(2, 9)) == []  # level 2 recovers: re-armed
    assert [w.level for w in monitor.check(snapshot(2, 2))] == [1]


def test_a_level_with_no_assignments_is_not_judged():
    monitor = LowUtilizationMonitor()
    assert monitor.check([level_health(torch.zeros(10, dtype=torch.int64))]) == []
