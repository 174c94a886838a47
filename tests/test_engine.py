"""sda.train.engine: the event stream, saving, stopping, exact resume, the NaN guard and the warnings."""

import dataclasses
import math
import threading

import pytest
import torch

from sda.config import VQVAEConfig
from sda.data.synth import write_collection
from sda.format import container, modelfile
from sda.train import engine, events
from sda.train.engine import RunOptions
from tests.helpers import SMALL, run


def of(kind, seen):
    return [e for e in seen if isinstance(e, kind)]


def test_a_run_yields_its_events_and_saves_a_loadable_model(folder, tmp_path):
    seen = run(SMALL, RunOptions(folder, tmp_path, "m", health_every=2, preview_every=1))
    started, done = seen[0], seen[-1]
    assert isinstance(started, events.Started) and isinstance(done, events.Done)
    assert started.config.codebook_size == 64 and started.device == "cpu" and started.precision == "fp32"
    steps = of(events.Step, seen)
    assert len(steps) == 3 * started.steps_per_epoch and [s.step for s in steps] == list(range(1, len(steps) + 1))
    assert steps[-1].eta_s == 0 and all(not s.skipped for s in steps)
    epochs = of(events.Epoch, seen)
    assert [e.epoch for e in epochs] == [1, 2, 3]
    health = of(events.Health, seen)
    assert {h.step for h in health} >= {started.steps_per_epoch * e for e in (1, 2, 3)}
    assert all(len(h.levels) == 3 and h.levels[0].assignments > 0 for h in health)
    previews = of(events.Preview, seen)
    assert [p.epoch for p in previews] == [1, 2, 3]
    for original, reconstruction in previews[-1].clips:
        assert original.exists() and reconstruction.exists()
    val_files = {started.preflight.files[i].path for i in started.preflight.val_indices}
    assert len(previews[-1].sources) == len(previews[-1].clips) and set(previews[-1].sources) <= val_files

    summary = done.summary
    assert summary.model_path == tmp_path / "m.sda" and summary.model_bytes == summary.model_path.stat().st_size
    assert not summary.stopped and summary.epochs_done == 3 and summary.steps == len(steps)
    model, metadata = modelfile.load_model(summary.model_path)
    assert not model.training and model.quantizer.initialized
    assert metadata["model_name"] == "m" and len(metadata["history"]["epochs"]) == 3
    assert metadata["config"] == started.config.to_dict()
    assert [f["path"] for f in metadata["dataset"]["files"]] == [f.path for f in started.preflight.files]
    assert len(metadata["health"]) == 3
    assert container.read_metadata(summary.checkpoint_path)["position"]["epoch"] == 4  # past the end


def final_weights(path):
    model, _ = modelfile.load_model(path)
    return model.state_dict()


def test_warm_up_trains_an_autoencoder_then_starts_the_quantizer_with_k_means(folder, tmp_path):
    seen = run(dataclasses.replace(SMALL, warmup_steps=3), RunOptions(folder, tmp_path, "w", health_every=1))
    assert seen[0].config.warmup_steps == 3
    steps, health = of(events.Step, seen), of(events.Health, seen)
    assert [s.commitment == 0 for s in steps[:4]] == [True, True, True, False]  # no quantizer, no commitment
    assert [h.warming_up for h in health[:4]] == [True, True, True, False]
    assert all(level.assignments == 0 for h in health[:3] for level in h.levels)  # nothing counted yet...
    assert all(level.assignments > 0 for h in health[3:] for level in h.levels)  # ...then every step counted
    assert health[3].window_steps == 1  # the window restarts with the quantizer: warm-up steps are not judged
    model, metadata = modelfile.load_model(seen[-1].summary.model_path)
    assert model.quantizer.initialized and metadata["config"]["warmup_steps"] == 3
    assert [e["warmup"] for e in metadata["history"]["epochs"]][0] is True  # warm-up windows stay in the history


def test_the_automatic_warm_up_is_a_tenth_of_the_run_and_at_most_100_steps(folder, tmp_path):
    seen = run(dataclasses.replace(SMALL, epochs=4), RunOptions(folder, tmp_path, "a"))
    started = seen[0]
    assert started.config.warmup_steps == int(0.1 * 4 * started.steps_per_epoch)
    assert VQVAEConfig(epochs=5).with_warmup(5000).warmup_steps == 100
    assert VQVAEConfig(warmup_steps=7).with_warmup(5000).warmup_steps == 7


@pytest.mark.parametrize("stop_at", ["in warm-up", "at its end", "next epoch"])
def test_stop_then_resume_gives_the_weights_of_an_uninterrupted_run(folder, tmp_path, stop_at):
    config = dataclasses.replace(SMALL, warmup_steps=3)
    whole = run(config, RunOptions(folder, tmp_path, "whole"))
    steps_per_epoch = whole[0].steps_per_epoch
    # Inside warm-up; on its last step, so that k-means runs first thing after the resume; inside the
    # second epoch, so the position within an epoch matters.
    stop_at = {"in warm-up": 2, "at its end": 3, "next epoch": steps_per_epoch + 1}[stop_at]
    stopped = run(config, RunOptions(folder, tmp_path, "split"), stop_after=stop_at)
    summary = stopped[-1].summary
    assert summary.stopped and summary.steps == stop_at
    assert of(events.Checkpoint, stopped)[-1].reason == "stop"
    modelfile.load_model(summary.model_path)  # the model so far is loadable

    resumed = run(VQVAEConfig(), RunOptions(folder, tmp_path, resume=summary.checkpoint_path))
    epoch, epoch_step = divmod(stop_at, steps_per_epoch)
    assert resumed[0].resumed_at == (epoch + 1, stop_at) and resumed[0].config == whole[0].config
    assert resumed[-1].summary.resumed and resumed[-1].summary.steps == whole[-1].summary.steps
    expected, got = final_weights(whole[-1].summary.model_path), final_weights(tmp_path / "split.sda")
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_a_stop_before_the_first_step_saves_nothing_and_frees_the_name(folder, tmp_path):
    stop = threading.Event()
    stop.set()
    seen = run(SMALL, RunOptions(folder, tmp_path, "early"), stop=stop)
    assert isinstance(seen[-1], events.Cancelled) and "nothing was saved" in seen[-1].message
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no 0-step model under the name, no lock left
    assert isinstance(run(SMALL, RunOptions(folder, tmp_path, "early"))[-1], events.Done)


def test_an_existing_model_is_not_overwritten(folder, tmp_path):
    (tmp_path / "taken.sda").write_bytes(b"precious")
    seen = run(SMALL, RunOptions(folder, tmp_path, "taken"))
    assert isinstance(seen[-1], events.Error) and "already exists" in seen[-1].message
    assert "--resume" in seen[-1].message  # the CLI's way on; the page's message names none (tests/test_ui.py)
    assert (tmp_path / "taken.sda").read_bytes() == b"precious"


def test_resume_refuses_different_data(folder, tmp_path):
    stopped = run(SMALL, RunOptions(folder, tmp_path, "m"), stop_after=1)
    other = write_collection(tmp_path / "other", n_files=7, seed=2)[0].parent
    seen = run(SMALL, RunOptions(other, tmp_path, resume=stopped[-1].summary.checkpoint_path))
    assert isinstance(seen[-1], events.Error) and "not the data this checkpoint was trained on" in seen[-1].message


def test_data_errors_end_in_one_error_event(tmp_path):
    seen = run(SMALL, RunOptions(tmp_path / "missing", tmp_path))
    assert len(seen) == 1 and isinstance(seen[0], events.Error) and "does not exist" in seen[0].message


def test_non_finite_steps_are_skipped_then_training_stops_with_an_error(folder, tmp_path, monkeypatch):
    forward = engine.ConvVQVAE.forward
    good = {}

    def poisoned(self, mel, quantize=True):
        """From the third step on the loss is NaN. Each poisoned step starts from the codebooks the
        last good step left: the EMA update inside the skipped forward passes was undone."""
        poisoned.calls += 1
        state = {k: v.clone() for k, v in self.quantizer.state_dict().items()}
        if poisoned.calls == 3:
            good.update(state)
        elif poisoned.calls > 3:
            assert all(torch.equal(good[k], state[k]) for k in good)
        out = forward(self, mel, quantize)
        return out._replace(loss=out.loss * float("nan")) if poisoned.calls >= 3 else out

    poisoned.calls = 0
    monkeypatch.setattr(engine.ConvVQVAE, "forward", poisoned)
    # No warm-up: its k-means would change the codebooks between the poisoned steps.
    seen = run(dataclasses.replace(SMALL, epochs=20, warmup_steps=0), RunOptions(folder, tmp_path, "nan"))
    skipped = [s for s in of(events.Step, seen) if s.skipped]
    alerts = [a for a in of(events.Alert, seen) if "not finite" in a.message]
    assert len(skipped) == len(alerts) == engine.MAX_BAD_STEPS
    assert isinstance(seen[-1], events.Error) and "diverged" in seen[-1].message and "--lr" in seen[-1].message


def test_a_step_that_leaves_a_non_finite_code_is_skipped_and_its_codebooks_put_back(folder, tmp_path, monkeypatch):
    # In training the kernel no longer checks the codes on every call; the step's verdict does, once.
    from sda.model.codebook import EMACodebook
    update, calls = EMACodebook.ema_update, []

    def poisoning(self, counts, sums):
        update(self, counts, sums)
        calls.append(1)
        if len(calls) == 4:  # the second step's first level (3 levels a step)
            self.embed[0, 0] = float("inf")

    monkeypatch.setattr(EMACodebook, "ema_update", poisoning)
    seen = run(dataclasses.replace(SMALL, epochs=1, warmup_steps=0), RunOptions(folder, tmp_path, "inf"))
    steps = of(events.Step, seen)
    assert [s.skipped for s in steps[:3]] == [False, True, False] and math.isfinite(steps[1].loss)
    assert any("step 2: the loss, its gradients or a code were not finite" in a.message for a in of(events.Alert, seen))
    model, _ = modelfile.load_model(seen[-1].summary.model_path)
    assert bool(model.quantizer.all_finite())


def test_low_utilization_warns_once_per_level_and_ends_weak(folder, tmp_path):
    huge = dataclasses.replace(SMALL, codebook_size=4096, dead_code_threshold=0.0, epochs=2, warmup_steps=2)
    seen = run(huge, RunOptions(folder, tmp_path, "big", health_every=1))
    health = of(events.Health, seen)
    assert [(h.warming_up, h.judged) for h in health[:3]] == [(True, False), (True, False), (False, True)]
    alerts = [a for a in of(events.Alert, seen) if a.level is not None]
    assert sorted(a.level for a in alerts) == [0, 1, 2]  # each level once, though every update is low
    assert all(a.warning.step > 2 for a in alerts)  # never during warm-up
    assert "under 30%" in alerts[0].message
    summary = seen[-1].summary
    assert summary.warnings == [] and [w.level for w in summary.health_warnings] == [0, 1, 2]
    assert all(w.still_weak for w in summary.health_warnings)
    saved = container.read_metadata(summary.model_path)["history"]["health_warnings"]
    assert [w["level"] for w in saved] == [0, 1, 2] and saved[0]["latest_utilization"] < 0.3


def test_bf16_autocast_trains_with_float32_distances(folder, tmp_path, monkeypatch):
    """The CUDA default, exercised with CPU autocast: the encoder runs in bfloat16, the quantizer
    turns autocast off and computes in float32."""
    from sda.model.quantizer import ResidualVQ

    seen = {"latents": set(), "autocast_inside": set(), "quantized": set()}
    forward, quantize = ResidualVQ.forward, ResidualVQ._quantize

    def spy_forward(self, z):
        seen["latents"].add(z.dtype)
        return forward(self, z)

    def spy_quantize(self, z):
        seen["autocast_inside"].add(torch.is_autocast_enabled("cpu"))
        out = quantize(self, z)
        seen["quantized"].add(out.quantized.dtype)
        return out

    monkeypatch.setattr(ResidualVQ, "forward", spy_forward)
    monkeypatch.setattr(ResidualVQ, "_quantize", spy_quantize)
    run_events = run(dataclasses.replace(SMALL, epochs=1), RunOptions(folder, tmp_path, "b", precision="bf16"))
    assert run_events[0].precision == "bf16" and isinstance(run_events[-1], events.Done)
    assert torch.bfloat16 in seen["latents"]  # training steps ran under autocast
    assert seen["autocast_inside"] == {False} and seen["quantized"] == {torch.float32}


@pytest.mark.parametrize("name", ["../escape", "a/b", "back\\slash", ".hidden", "-flag", " ", "x" * 101, "c:drive"])
def test_a_model_name_that_is_not_a_plain_file_name_is_refused(folder, tmp_path, name):
    seen = run(SMALL, RunOptions(folder, tmp_path / "models", name))
    assert len(seen) == 1 and isinstance(seen[0], events.Error) and seen[0].bad_input
    assert "cannot be used" in seen[0].message and not (tmp_path / "models").exists()


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """sda.data.synth's 24-file collection: on it, k-means at step 0 (sda before sda.train.warmup) collapses."""
    folder = tmp_path_factory.mktemp("kit")
    write_collection(folder, n_files=24, seed=0)
    return folder


def judged_utilization(config, folder, out, steps):
    """The lowest utilization of any level in every judged health window of the first steps of a default run."""
    seen = run(config, RunOptions(folder, out, "k", preview_every=100_000), stop_after=steps)
    judged = [min(level.utilization for level in h.levels) for h in of(events.Health, seen) if h.judged]
    return judged, of(events.Alert, seen)


def test_the_default_schedule_keeps_every_level_healthy_where_k_means_at_step_0_collapses(kit, tmp_path):
    # Every default but the model's width, seeded: the first 120 steps of a 400-step run.
    config = VQVAEConfig(hidden_channels=32, seed=0)
    before, before_alerts = judged_utilization(dataclasses.replace(config, warmup_steps=0), kit, tmp_path / "a", 120)
    after, after_alerts = judged_utilization(config, kit, tmp_path / "b", 120)
    assert min(before) < 0.30 and before_alerts  # the collapse this schedule exists to prevent...
    assert len(after) >= 6 and min(after) >= 0.50 and not after_alerts  # ...is gone from the first judged window
