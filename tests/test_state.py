"""sda.train.state and sda.train.history: the records read and write the metadata sda has always written, and a
saved position comes back as it was."""

import pytest
import torch

from sda.data.dataset import preflight
from sda.format import modelfile
from sda.format.container import SdaFormatError
from sda.model.health import HealthWarning, level_health
from sda.model.vqvae import ConvVQVAE
from sda.train.history import MAX_WINDOWS, EpochRecord, History, WindowRecord
from sda.train.runfiles import RunFiles
from sda.train.state import Losses, RunState, Sums
from tests.helpers import SMALL

CONFIG = SMALL.resolve(seconds=12.0, n_train_chunks=10).with_warmup(12)
HEALTH = [level_health(torch.tensor([3, 0, 1, 0]), level=0, replaced=1).to_dict(),
          level_health(torch.tensor([1, 1, 1, 1]), level=1).to_dict()]
WARNING = HealthWarning(level=0, epoch=2, step=9, codebook_size=4, utilization=0.25, dead=3, perplexity=1.2,
                        latest_utilization=0.5)


def history_as_written() -> dict:
    """A "history" as the engine before sda.train.history wrote it, dict by dict."""
    epoch = {"epoch": 1, "warmup": True, "train": {"loss": 1.5, "reconstruction": 1.25, "commitment": 0.25},
             "validation": {"loss": 1.75, "reconstruction": 1.5, "commitment": 0.25}, "health": HEALTH,
             "validation_health": HEALTH[::-1]}
    return {"epochs": [epoch, {**epoch, "epoch": 2, "warmup": False}],
            "warnings": ["epoch 2, step 7: the loss or its gradients were not finite; the update was skipped"],
            "processes": 2, "health_warnings": [WARNING.to_dict()],
            "windows": [{"step": 10, "epoch": 1, "warming_up": True, "judged": False, "utilization": [0.0, 0.0],
                         "perplexity": [0.0, 0.0]},
                        {"step": 20, "epoch": 2, "warming_up": False, "judged": True, "utilization": [0.5, 1.0],
                         "perplexity": [1.9, 4.0]}]}


def test_the_history_reads_and_writes_the_dicts_sda_writes_key_for_key():
    written = history_as_written()
    history = History.from_dict(written)
    assert [e.epoch for e in history.epochs] == [1, 2] and [e.warmup for e in history.epochs] == [True, False]
    assert history.epochs[0].validation["reconstruction"] == 1.5 and history.epochs[1].health[0].replaced == 1
    assert history.processes == 2 and history.health_warnings == [WARNING] and history.last() is history.epochs[1]
    assert history.windows[1] == WindowRecord(20, 2, False, True, (0.5, 1.0), (1.9, 4.0))
    again = history.to_dict()
    assert again == written
    assert list(again) == list(written) and list(again["epochs"][0]) == list(written["epochs"][0])


def test_a_history_from_before_warm_up_processes_and_health_warnings_reads_with_what_it_meant():
    old = {"epochs": [{"epoch": 1, "train": {"loss": 1.0}, "validation": {"loss": 2.0, "reconstruction": 1.5}}],
           "warnings": []}
    history = History.from_dict(old)
    assert history.processes == 1 and history.health_warnings == [] and history.last() == EpochRecord(
        epoch=1, train={"loss": 1.0}, validation={"loss": 2.0, "reconstruction": 1.5})
    assert not history.epochs[0].warmup and history.epochs[0].health == [] and history.windows == []
    assert History().last() is None


def test_a_long_runs_health_windows_are_thinned_to_span_the_whole_run():
    history = History()
    for step in range(10, 10 * (3 * MAX_WINDOWS) + 1, 10):
        history.add_window(WindowRecord.of(step, 1, False, True, [level_health(torch.tensor([1, 0]))]))
    steps = [w.step for w in history.windows]
    assert MAX_WINDOWS // 2 <= len(steps) <= MAX_WINDOWS and steps == sorted(steps)
    assert steps[0] == 10 and steps[-1] == 30 * MAX_WINDOWS  # the first and the newest stay


WINDOW = {"step": 10, "epoch": 1, "warming_up": False, "judged": True, "utilization": [0.5], "perplexity": [2.0]}


@pytest.mark.parametrize("change", [{"step": "10"}, {"judged": 1}, {"utilization": [1.5]}, {"utilization": [None]},
                                    {"perplexity": [2.0, 3.0]}, {"utilization": "0.5"}, {"perplexity": [True]},
                                    {"utilization": [0.1] * 65, "perplexity": [1.0] * 65}])
def test_a_health_window_sda_did_not_write_is_refused(change):
    with pytest.raises(ValueError, match="not one sda writes"):
        History.from_dict({"epochs": [], "warnings": [], "windows": [{**WINDOW, **change}]})


@pytest.mark.parametrize("junk", [5, {"epochs": [{"epoch": "one"}], "warnings": []}, {"warnings": []},
                                  {"epochs": [], "warnings": [], "health_warnings": [{"level": 0}]}])
def test_a_history_sda_did_not_write_is_refused_as_the_readers_expect(junk):
    with pytest.raises((KeyError, TypeError, ValueError, AttributeError)):  # what sda info and the page catch
        History.from_dict(junk)


def test_the_epoch_sums_add_steps_and_give_means():
    sums = Sums()
    assert sums.means() == {"loss": 0.0, "reconstruction": 0.0, "commitment": 0.0}  # no step yet: no division
    sums.add(Losses(3.0, 2.0, 1.0))
    sums.add(Losses(1.0, 1.0, 0.0))
    assert sums.to_dict() == {"loss": 4.0, "reconstruction": 3.0, "commitment": 1.0, "steps": 2}
    assert sums.means() == {"loss": 2.0, "reconstruction": 1.5, "commitment": 0.5}
    assert Sums.from_dict(sums.to_dict()) == sums
    assert Losses(1.0, 1.0, 0.0).finite() and not Losses(1.0, float("nan"), 0.0).finite()


def test_steps_and_epochs_move_the_position_and_the_weights_record():
    state = RunState.start(processes=1)
    state.advance(Losses(1.0, 1.0, 0.0), ok=True)
    state.advance(Losses(float("inf"), 1.0, 0.0), ok=False)  # a skipped step counts as a step, not in the sums
    assert (state.epoch, state.epoch_step, state.step, state.sums.steps, state.bad_steps) == (1, 2, 2, 1, 1)
    assert state.weights() == {"step": 2, "epoch": 1, "mid_epoch": True}
    state.next_epoch()
    assert (state.epoch, state.epoch_step, state.step, state.sums) == (2, 0, 2, Sums())
    assert state.weights() == {"step": 2, "epoch": 1, "mid_epoch": False}
    position = state.position()
    assert list(position) == ["epoch", "epoch_step", "step", "sums", "processes", "elapsed_s"]
    assert position["sums"] == {"loss": 0.0, "reconstruction": 0.0, "commitment": 0.0, "steps": 0}


def model_and_optimizer():
    torch.manual_seed(0)
    model = ConvVQVAE(CONFIG)
    return model, torch.optim.AdamW(model.parameters(), lr=CONFIG.learning_rate)


def test_a_saved_checkpoint_restores_the_position_sums_history_weights_and_rng(folder, tmp_path):
    model, optimizer = model_and_optimizer()
    model(torch.randn(2, CONFIG.audio.n_mels, CONFIG.audio.chunk_frames), quantize=False).loss.backward()
    optimizer.step()
    state = RunState.start(processes=1)
    state.history = History.from_dict({**history_as_written(), "processes": 1})
    for _ in range(3):
        state.advance(Losses(1.0, 0.75, 0.25), ok=True)
    state.elapsed_before = 100.0
    files = RunFiles(tmp_path, "m", "run-1")
    state.save(files, model, optimizer, CONFIG, preflight(folder, CONFIG.audio), [level_health(torch.ones(4))])
    rng = torch.get_rng_state()
    torch.manual_seed(1)  # the restore must put back the saved RNG state, not keep this one

    checkpoint = modelfile.load_checkpoint(files.checkpoint)
    assert checkpoint.metadata["weights"] == {"step": 3, "epoch": 1, "mid_epoch": True}
    restored_model, restored_optimizer = model_and_optimizer()
    restored, notes = RunState.restore(checkpoint, restored_model, restored_optimizer, steps_per_epoch=5,
                                       processes=1, path=files.checkpoint)
    assert notes == [] and torch.equal(torch.get_rng_state(), rng)
    assert (restored.epoch, restored.epoch_step, restored.step) == (1, 3, 3) and restored.sums == state.sums
    assert restored.history == state.history and restored.elapsed_before >= 100.0
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), restored_model.state_dict().values(),
                                                  strict=True))
    assert restored_optimizer.state_dict()["state"][0]["exp_avg"].equal(optimizer.state_dict()["state"][0]["exp_avg"])
    _, metadata = modelfile.load_model(files.model)
    assert metadata["history"] == state.history.to_dict() and "position" not in metadata


def checkpoint_at(position: dict) -> modelfile.TrainingState:
    model, optimizer = model_and_optimizer()
    state = RunState.start(processes=1)
    metadata = {"position": {**state.position(), **position}, "history": state.history.to_dict()}
    return modelfile.TrainingState(CONFIG, model.state_dict(), optimizer.state_dict(), torch.get_rng_state(),
                                   metadata)


def test_a_mid_epoch_position_saved_by_another_number_of_processes_starts_its_epoch_again():
    sums = {"loss": 2.0, "reconstruction": 1.5, "commitment": 0.5, "steps": 2}
    checkpoint = checkpoint_at({"epoch": 2, "epoch_step": 2, "step": 7, "sums": sums, "processes": 2})
    restored, notes = RunState.restore(checkpoint, *model_and_optimizer(), steps_per_epoch=5, processes=1, path=None)
    assert (restored.epoch, restored.epoch_step, restored.step, restored.sums) == (2, 0, 7, Sums())
    assert restored.history.processes == 1 and len(notes) == 1 and "epoch 2 starts again" in notes[0]
    # At an epoch's start the position means the same to any number of processes; files from before
    # "processes" was saved ran on one.
    checkpoint = checkpoint_at({"epoch": 3, "epoch_step": 0, "step": 10, "processes": 2})
    assert RunState.restore(checkpoint, *model_and_optimizer(), steps_per_epoch=5, processes=1, path=None)[1] == []
    legacy = checkpoint_at({"epoch": 2, "epoch_step": 1, "step": 6, "sums": sums})
    del legacy.metadata["position"]["processes"]
    restored, notes = RunState.restore(legacy, *model_and_optimizer(), steps_per_epoch=5, processes=1, path=None)
    assert notes == [] and (restored.epoch_step, restored.sums) == (1, Sums(2.0, 1.5, 0.5, 2))


def test_a_position_past_the_end_of_the_epoch_is_refused_as_damage():
    checkpoint = checkpoint_at({"epoch": 1, "epoch_step": 5, "step": 5})
    with pytest.raises(SdaFormatError, match="step 5 of an epoch of 5 steps"):
        RunState.restore(checkpoint, *model_and_optimizer(), steps_per_epoch=5, processes=1, path=None)
