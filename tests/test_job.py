"""sda.ui.job: a training run in a background thread, folded into views any thread can read."""

import dataclasses
import threading
import time

import pytest

from sda.format import modelfile
from sda.train.engine import RunOptions
from sda.train.events import Done, Step
from sda.ui import job as jobs
from sda.ui.job import DONE, FAILED, RUNNING, STOPPED, STOPPING, JobBusyError, JobSlot, TrainingJob
from tests.helpers import SMALL

WAIT = 120  # seconds: generous, CI machines are shared
ONE_STEP = Step(epoch=1, step=1, epoch_step=1, steps_per_epoch=1, total_steps=1, loss=1.0, reconstruction=1.0,
                commitment=0.0, skipped=False, elapsed_s=0.0, eta_s=0.0)


def wait_until(predicate, job, timeout=WAIT):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        view = job.view()
        if predicate(view):
            return view
        time.sleep(0.02)
    raise AssertionError(f"timed out; last view: status {view.status}, step {view.step}")


def test_a_finished_job_holds_the_whole_run(folder, tmp_path):
    job = TrainingJob(SMALL, RunOptions(folder, tmp_path, "m", health_every=2))
    assert job.wait(WAIT)
    view = job.view()
    assert view.status == DONE and not view.active and view.error is None
    assert view.started.model_path == tmp_path / "m.sda" and view.summary.model_path == tmp_path / "m.sda"
    assert view.step.step == view.summary.steps == view.step.total_steps
    assert len(view.health.levels) == SMALL.rvq_levels
    # Train points at each health update, a validation point per epoch, each at the step it was measured.
    train = [p for p in view.curve if p.split == "train"]
    validation = [p for p in view.curve if p.split == "validation"]
    assert len(validation) == SMALL.epochs and validation[-1].step == view.summary.steps
    assert len(train) >= view.summary.steps // 2 and [p.step for p in train] == sorted({p.step for p in train})
    assert all(p.reconstruction > 0 and p.commitment >= 0 for p in view.curve)
    assert view.preview is not None and all(o.exists() and r.exists() for o, r in view.preview.clips)
    modelfile.load_model(view.summary.model_path)


def test_train_points_are_the_means_of_the_steps_since_the_last_point(tmp_path, monkeypatch):
    def fake_train(config, options, stop, on_progress=None):
        from sda.train.events import Health
        for step, (recon, commit) in enumerate([(1.0, 0.1), (3.0, 0.3), (5.0, 0.5)], start=1):
            yield Step(epoch=1, step=step, epoch_step=step, steps_per_epoch=3, total_steps=3, loss=recon + commit,
                       reconstruction=recon, commitment=commit, skipped=False, elapsed_s=0.0, eta_s=0.0)
            if step in (2, 3):
                yield Health(epoch=1, step=step, levels=[], window_steps=step)

    monkeypatch.setattr(jobs, "train", fake_train)
    job = TrainingJob(SMALL, RunOptions(tmp_path))
    job.wait(WAIT)
    assert [(p.step, p.reconstruction, p.commitment) for p in job.view().curve] == [(2, 2.0, 0.2), (3, 5.0, 0.5)]


def test_the_version_changes_with_every_event_and_only_then(tmp_path, monkeypatch):
    release = threading.Event()

    def fake_train(config, options, stop, on_progress=None):
        yield ONE_STEP
        release.wait(WAIT)

    monkeypatch.setattr(jobs, "train", fake_train)
    job = TrainingJob(SMALL, RunOptions(tmp_path))
    first = wait_until(lambda v: v.step is not None, job)
    assert job.view().version == first.version  # nothing happened in between
    job.stop()
    assert job.view().status == STOPPING and job.view().version == first.version + 1
    release.set()
    job.wait(WAIT)


def test_one_job_at_a_time_and_stop_saves_a_loadable_model(folder, tmp_path):
    slot = JobSlot()
    job = slot.start(dataclasses.replace(SMALL, epochs=500), RunOptions(folder, tmp_path, "long"))
    wait_until(lambda v: v.step is not None, job)
    with pytest.raises(JobBusyError, match="already running.*'long'.*press Stop"):
        slot.start(SMALL, RunOptions(folder, tmp_path, "second"))
    assert slot.stop() is job and job.view().status in (STOPPING, STOPPED)
    assert job.wait(WAIT)
    view = job.view()
    assert view.status == STOPPED and view.summary.stopped and view.summary.epochs_done < 500
    modelfile.load_model(tmp_path / "long.sda")
    modelfile.load_checkpoint(tmp_path / "long.checkpoint.sda")
    assert not (tmp_path / "second.sda").exists()
    again = slot.start(SMALL, RunOptions(folder, tmp_path, "second"))  # the slot is free once the run ended
    assert again.wait(WAIT) and again.view().status == DONE


def test_bad_input_ends_the_job_with_the_engines_message(tmp_path):
    job = TrainingJob(SMALL, RunOptions(tmp_path / "nowhere", tmp_path))
    assert job.wait(WAIT)
    view = job.view()
    assert view.status == FAILED and view.bad_input and "does not exist" in view.error and view.summary is None


def test_a_crash_in_training_is_reported_instead_of_running_forever(tmp_path, monkeypatch, capsys):
    def broken_train(config, options, stop, on_progress=None):
        yield ONE_STEP
        raise RuntimeError("CUDA error: an illegal memory access")

    monkeypatch.setattr(jobs, "train", broken_train)
    job = TrainingJob(SMALL, RunOptions(tmp_path))
    assert job.wait(WAIT)
    view = job.view()
    assert view.status == FAILED and not view.bad_input and not view.active
    assert "training crashed (RuntimeError: CUDA error: an illegal memory access)" in view.error
    assert "Traceback" in capsys.readouterr().err  # the server log keeps the details


def test_a_programming_value_error_is_a_crash_not_bad_input_and_says_where_its_traceback_is(tmp_path, monkeypatch,
                                                                                           capsys):
    def broken_train(config, options, stop, on_progress=None):
        raise ValueError("not enough values to unpack (expected 3, got 2)")
        yield

    monkeypatch.setattr(jobs, "train", broken_train)
    job = TrainingJob(SMALL, RunOptions(tmp_path))
    assert job.wait(WAIT)
    view = job.view()
    assert view.status == FAILED and not view.bad_input
    assert "training crashed (ValueError: not enough values" in view.error and "the server's log" in view.error
    assert "Traceback" in capsys.readouterr().err


def test_stop_after_the_end_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "train", lambda config, options, stop, on_progress=None: iter([Done(_summary(tmp_path))]))
    job = TrainingJob(SMALL, RunOptions(tmp_path))
    job.wait(WAIT)
    before = job.view()
    job.stop()
    assert job.view() == before and before.status == DONE


def _summary(tmp_path):
    from sda.train.events import Summary
    return Summary(model_name="m", model_path=tmp_path / "m.sda", model_bytes=1,
                   checkpoint_path=tmp_path / "m.checkpoint.sda", device="cpu", precision="fp32", backend="torch",
                   epochs_done=1, epochs=1, steps=1, elapsed_s=0.1, stopped=False, resumed=False, train_loss=1.0,
                   val_loss=1.0, val_reconstruction=1.0, health=[])


def test_views_are_snapshots(folder, tmp_path):
    job = TrainingJob(SMALL, RunOptions(folder, tmp_path, "m"))
    early = wait_until(lambda v: len(v.curve) > 0, job)
    curve = early.curve
    job.wait(WAIT)
    assert early.curve is curve and len(job.view().curve) > len(curve)  # a later event does not touch an old view
    assert early.status == RUNNING


def test_the_view_keeps_every_health_window_thinned_as_a_model_files(tmp_path, monkeypatch):
    from sda.model.health import LevelHealth
    from sda.train.events import Health
    from sda.train.history import MAX_WINDOWS

    def fake_train(config, options, stop, on_progress=None):
        for step in range(1, MAX_WINDOWS + 2):
            level = LevelHealth(0, 8, 4, 0.5, float(step), 4, 0, 10)
            yield Health(epoch=1, step=step, levels=[level], window_steps=1, warming_up=step < 3)

    monkeypatch.setattr(jobs, "train", fake_train)
    job = TrainingJob(SMALL, RunOptions(tmp_path))
    job.wait(WAIT)
    windows = job.view().windows
    assert len(windows) <= MAX_WINDOWS  # bounded: History.add_window's thinning
    assert windows[0].step == 1 and windows[0].warming_up and windows[-1].step == MAX_WINDOWS + 1
    assert windows[-1].perplexity == (float(MAX_WINDOWS + 1),) and windows[-1].utilization == (0.5,)
