"""sda.train.eta: the one ETA, as the CLI and the page show it."""

from sda.report import eta_text
from sda.train.eta import MIN_TIMED_STEPS, SKIP_STEPS, Eta


def test_the_first_steps_warm_up_costs_do_not_make_the_eta():
    # A first step that compiles for a minute, then one second a step, 180 steps in all: the old estimate
    # (time since the start / steps done) said about three hours after step 1.
    eta, now, shown = Eta(), 0.0, []
    for step in range(1, 181):
        now += 60.0 if step == 1 else 1.0
        shown.append(eta.update(now, 180 - step))
    assert shown[:SKIP_STEPS + MIN_TIMED_STEPS - 1] == [None] * (SKIP_STEPS + MIN_TIMED_STEPS - 1)
    first = SKIP_STEPS + MIN_TIMED_STEPS  # the first step with an estimate
    assert shown[first - 1] == 180 - first  # one second for each step left
    assert shown[-1] == 0.0


def test_a_run_too_short_to_time_ends_at_zero():
    eta = Eta()
    assert [eta.update(t, left) for t, left in ((1.0, 2), (2.0, 1), (3.0, 0))] == [None, None, 0.0]


def test_both_frontends_say_it_the_same_way():
    assert eta_text(None) == "ETA estimating" and eta_text(65) == "ETA 1 min 05 s"
