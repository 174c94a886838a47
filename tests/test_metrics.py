"""The run's logs (sda.train.metrics): NAME.metrics.jsonl, field by field, on real runs; appending on resume;
a log that cannot be written; TensorBoard's files read back by TensorBoard's own reader; --tensorboard without
the package; the page's TensorBoard folder."""

import builtins
import dataclasses
import json
import math
import re
import sys
import threading
from pathlib import Path

import pytest
from helpers import SMALL, run, sda

from sda.cli import main as cli
from sda.config import RunOptions
from sda.errors import ConfigError
from sda.train import events, metrics
from sda.train.engine import train

NUMBER = (float, int)
OPTIONAL_NUMBER = (float, int, type(None))
COMMON = {"type": (str,), "time": (float,), "step": (int,)}
# Every field of every record, and the JSON types it may have: what the module docstring's table promises.
SCHEMA = {
    "start": {"model_name": (str,), "run_id": (str,), "sda_version": (str,), "config": (dict,),
              "resumed_at": (dict, type(None)), "device": (str,), "precision": (str,), "backend": (str,),
              "processes": (int,), "steps_per_epoch": (int,)},
    "health": {"epoch": (int,), "window_steps": (int,), "warming_up": (bool,), "judged": (bool,),
               "frame_rate": NUMBER, "nominal_bps": NUMBER, "effective_bps": NUMBER, "effective_share": NUMBER,
               "levels": (list,)},
    "epoch": {"epoch": (int,), "epochs": (int,), "train": (dict,), "validation": (dict,)},
    "end": {"outcome": (str,), "error": (dict, type(None)), "epochs_done": (int,), "epochs": (int,),
            "elapsed_s": NUMBER, "model_path": (str,), "model_bytes": (int,), "train_loss": OPTIONAL_NUMBER,
            "val_loss": OPTIONAL_NUMBER, "val_reconstruction": OPTIONAL_NUMBER, "nominal_bps": NUMBER,
            "effective_bps": NUMBER, "effective_share": NUMBER, "health_warnings": (int,), "still_weak": (int,)},
}
LEVEL = {"level": (int,), "codebook_size": (int,), "utilization": NUMBER, "perplexity": NUMBER, "used": (int,),
         "dead": (int,), "replaced": (int,), "assignments": (int,), "entropy_bits": NUMBER, "bps": NUMBER}
LOSSES = {"loss", "reconstruction", "commitment"}
TINY = dataclasses.replace(SMALL, epochs=2)


def records(path: Path) -> list[dict]:
    """The log's records, read strictly: NaN or Infinity (not JSON) fail here."""
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}, which is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_fields(record: dict, fields: dict) -> None:
    assert set(record) == set(fields), f"{record.get('type')}: {sorted(set(record) ^ set(fields))}"
    for name, types in fields.items():
        value = record[name]
        # JSON has no int/bool distinction Python would keep: a bool is never a number here, nor a number a bool
        ok = type(value) in types and (type(value) is not bool or bool in types)
        assert ok, f"{record['type']}.{name} = {value!r}, expected {types}"


@pytest.fixture(scope="module")
def logged(folder, tmp_path_factory):
    """A two-epoch run with TensorBoard: (its events, its models folder, its TensorBoard folder)."""
    out = tmp_path_factory.mktemp("models")
    seen = run(TINY, RunOptions(folder, out, "kit", health_every=2, tensorboard=out / "board"))
    assert isinstance(seen[-1], events.Done), seen[-1]
    return seen, out, out / "board"


def test_every_record_has_its_fields_and_types(logged):
    seen, out, _ = logged
    log = records(out / "kit.metrics.jsonl")
    assert [r["type"] for r in log][0] == "start" and log[-1]["type"] == "end"
    for record in log:
        assert_fields(record, {**COMMON, **SCHEMA[record["type"]]})
        for level in record.get("levels", []):
            assert_fields(level, LEVEL)
        for losses in (record.get("train"), record.get("validation")):
            assert losses is None or set(losses) == LOSSES
    started = next(e for e in seen if isinstance(e, events.Started))
    start, end = log[0], log[-1]
    assert (start["model_name"], start["run_id"], start["resumed_at"]) == ("kit", started.run_id, None)
    assert start["config"] == started.config.to_dict() and start["step"] == 0
    assert (end["outcome"], end["error"], end["epochs_done"]) == ("done", None, 2)


def test_one_record_per_health_window_and_epoch_as_the_events_had_them(logged):
    seen, out, _ = logged
    log = records(out / "kit.metrics.jsonl")
    healths = [e for e in seen if isinstance(e, events.Health)]
    windows = [r for r in log if r["type"] == "health"]
    assert [(r["step"], r["epoch"], r["judged"]) for r in windows] == [(h.step, h.epoch, h.judged) for h in healths]
    for record, health in zip(windows, healths, strict=True):
        assert record["effective_bps"] == pytest.approx(health.bitrate.effective_bps)
        assert [lv["utilization"] for lv in record["levels"]] == [h.utilization for h in health.levels]
        assert sum(lv["bps"] for lv in record["levels"]) == pytest.approx(record["effective_bps"])
    epochs = [r for r in log if r["type"] == "epoch"]
    assert [(r["epoch"], r["train"]) for r in epochs] == [(e.epoch, e.train) for e in seen
                                                          if isinstance(e, events.Epoch)]
    last_step = max(e.step for e in seen if isinstance(e, events.Step))
    assert epochs[-1]["step"] == log[-1]["step"] == last_step  # an epoch is logged at its last step


def test_every_field_is_documented_in_the_module_and_the_readme():
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Metrics log", 1)[1].split("\n## ", 1)[0]
    for name in {*COMMON, *LEVEL, *(f for fields in SCHEMA.values() for f in fields)}:
        assert re.search(rf"\b{name}\b", metrics.__doc__), name
        assert re.search(rf"\b{name}\b", section), name


def test_non_finite_figures_are_written_as_null(tmp_path):
    log = metrics.MetricsLog()
    log.write(events.Started(config=SMALL, preflight=None, device="cpu", precision="fp32", backend="torch",
                             model_path=tmp_path / "m.sda", checkpoint_path=tmp_path / "m.checkpoint.sda",
                             steps_per_epoch=1, resumed_at=None, model_name="m", metrics_path=tmp_path / "m.jsonl"))
    nan = {"loss": math.nan, "reconstruction": math.inf, "commitment": 0.5}
    log.write(events.Epoch(epoch=1, epochs=1, train=nan, validation=nan))
    log.close()
    assert records(tmp_path / "m.jsonl")[-1]["train"] == {"loss": None, "reconstruction": None, "commitment": 0.5}


def test_a_resumed_run_appends_to_its_log(folder, tmp_path):
    options = RunOptions(folder, tmp_path, "kit", health_every=2)
    first = run(TINY, options, stop_after=3)
    assert isinstance(first[-1], events.Done) and first[-1].summary.stopped
    path = tmp_path / "kit.metrics.jsonl"
    before = path.read_text(encoding="utf-8")
    assert records(path)[-1]["outcome"] == "stopped"
    second = run(TINY, dataclasses.replace(options, resume=tmp_path / "kit.checkpoint.sda"))
    assert isinstance(second[-1], events.Done)
    after = path.read_text(encoding="utf-8")
    assert after.startswith(before)  # nothing written before is changed
    log = records(path)
    starts = [r for r in log if r["type"] == "start"]
    assert len(starts) == 2 and starts[0]["run_id"] == starts[1]["run_id"]
    assert starts[1]["resumed_at"] == {"epoch": 1, "step": 3} and starts[1]["step"] == 3
    assert [r["outcome"] for r in log if r["type"] == "end"] == ["stopped", "done"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux), a disk that is always full")
def test_a_log_that_cannot_be_written_warns_once_and_the_run_saves_its_model(folder, tmp_path, monkeypatch):
    def full_disk(path, *args, **kwargs):  # the log's file is /dev/full: every flush fails with ENOSPC
        return builtins.open("/dev/full", *args, **kwargs)

    monkeypatch.setattr(metrics, "open", full_disk, raising=False)
    seen = run(TINY, RunOptions(folder, tmp_path, "kit", health_every=2))
    alerts = [e.message for e in seen if isinstance(e, events.Alert) and "metrics log" in e.message]
    assert len(alerts) == 1 and "No space left on device" in alerts[0], alerts
    assert isinstance(seen[-1], events.Done) and not seen[-1].summary.stopped
    assert (tmp_path / "kit.sda").stat().st_size == seen[-1].summary.model_bytes


def test_a_run_cancelled_before_its_first_step_leaves_no_log(folder, tmp_path):
    stop = threading.Event()
    seen = []
    for event in train(TINY, RunOptions(folder, tmp_path, "kit"), stop):
        seen.append(event)
        if isinstance(event, events.Started):
            stop.set()
    assert isinstance(seen[-1], events.Cancelled), seen[-1]
    assert not (tmp_path / "kit.metrics.jsonl").exists()


def test_a_new_run_does_not_take_over_another_runs_log(folder, tmp_path):
    (tmp_path / "kit.metrics.jsonl").write_text("{}\n")
    seen = run(TINY, RunOptions(folder, tmp_path, "kit"))
    assert isinstance(seen[-1], events.Error) and seen[-1].kind == "output"
    assert "kit.metrics.jsonl" in seen[-1].message
    assert (tmp_path / "kit.metrics.jsonl").read_text() == "{}\n"


# TensorBoard

def accumulator(path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(path), size_guidance={"scalars": 0, "histograms": 0})
    board.Reload()
    return board


def test_tensorboard_has_the_scalars_and_usage_histograms_at_their_steps(logged):
    seen, out, board_dir = logged
    board = accumulator(board_dir / "kit")
    steps = [e.step for e in seen if isinstance(e, events.Step) and not e.skipped]
    healths = [e for e in seen if isinstance(e, events.Health)]
    epochs = [e for e in seen if isinstance(e, events.Epoch)]
    levels = TINY.rvq_levels
    tags = set(board.Tags()["scalars"])
    assert {"train/loss", "train/reconstruction", "train/commitment", "bitrate/effective_bps",
            "bitrate/effective_share"} <= tags
    assert {f"epoch/{part}_{name}" for part in ("train", "validation") for name in LOSSES} <= tags
    for level in range(1, levels + 1):
        assert {f"level{level}/utilization", f"level{level}/perplexity", f"level{level}/effective_bps"} <= tags
        assert [s.step for s in board.Scalars(f"level{level}/utilization")] == [h.step for h in healths]
    assert [s.step for s in board.Scalars("train/loss")] == steps
    validation = board.Scalars("epoch/validation_loss")
    assert [v.value for v in validation] == pytest.approx([e.validation["loss"] for e in epochs], rel=1e-6)
    assert set(board.Tags()["histograms"]) == {f"level{level}/usage" for level in range(1, levels + 1)}
    counted = [h for h in healths if h.usage.sum() > 0]
    histograms = board.Histograms("level1/usage")
    assert [h.step for h in histograms] == [h.step for h in counted]
    for shown, health in zip(histograms, counted, strict=True):
        usage = health.usage[0].tolist()
        assert shown.histogram_value.num == health.levels[0].assignments == sum(usage)
        assert list(shown.histogram_value.bucket) == usage  # one bucket a code, in code order


def test_tensorboard_without_its_package_is_a_settings_error_before_any_audio_is_read(tmp_path, monkeypatch,
                                                                                        capsys):
    for module in ("tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, module, None)  # import of either raises ImportError
    missing = tmp_path / "no-such-folder"  # were audio read first, this would be the error
    status = cli.main(["train", str(missing), "--tensorboard", str(tmp_path / "board"), "--out",
                       str(tmp_path / "models"), "--model-name", "kit"])
    assert status == 2
    assert metrics.TENSORBOARD_MISSING in capsys.readouterr().err
    assert not (tmp_path / "models").exists() and not (tmp_path / "board").exists()


def test_sda_train_tensorboard_writes_both_logs(folder, tmp_path):
    result = sda("train", folder, "--epochs", "1", "--batch-size", "8", "--hidden-channels", "16", "--codebook-dim",
                 "8", "--out", tmp_path / "models", "--model-name", "kit", "--tensorboard", tmp_path / "board")
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "board" / "kit").glob("events.out.tfevents.*"))
    log = records(tmp_path / "models" / "kit.metrics.jsonl")
    assert (log[0]["type"], log[-1]["type"], log[-1]["outcome"]) == ("start", "end", "done")
    logged = tmp_path / "models" / "kit.metrics.jsonl"  # where to find it: said at the start and in the report
    assert result.stdout.count(f"metrics log: {logged}") == 2


def test_train_help_names_tensorboard():
    result = sda("train", "--help")
    assert result.returncode == 0 and "--tensorboard DIR" in result.stdout and "sda[tensorboard]" in result.stdout


# The page: a TensorBoard folder is one name, under the models folder.

def test_the_pages_tensorboard_folder_is_a_name_under_the_models_folder(tmp_path):
    from sda.ui.app import tensorboard_folder

    assert tensorboard_folder("", tmp_path) is None and tensorboard_folder(None, tmp_path) is None
    assert tensorboard_folder(" runs ", tmp_path) == tmp_path / "tensorboard" / "runs"
    for hostile in ("../up", "/etc", "a/b", "..", ".hidden", "a\\b", "c:d", "x\x1b[2J", "\0"):
        with pytest.raises(ConfigError):
            tensorboard_folder(hostile, tmp_path)


def test_the_pages_tensorboard_folder_reaches_the_run(folder, tmp_path):
    from helpers import START, WAIT, Page, free_port, shown_markdown

    from sda.ui.app import serve

    app = serve(tmp_path, port=free_port(), base_config=dataclasses.replace(SMALL, epochs=1), quiet=True)
    try:
        page = Page(app)
        settings = [str(folder), 2, 0.25, 1, "kit", 2, 8, 1e-3, 0]
        shown = page.call("/start", *settings, None, "../up", names=START)
        assert "TensorBoard folder" in shown_markdown(shown["notice"]) and app.slot.job is None
        page.call("/start", *settings, shown["key"], "runs", names=START)
        assert app.slot.job.wait(WAIT) and app.slot.job.view().error is None
        assert list((tmp_path / "tensorboard" / "runs" / "kit").glob("events.out.tfevents.*"))
        assert (tmp_path / "kit.metrics.jsonl").exists()
    finally:
        app.close()


def test_only_the_first_process_of_a_distributed_run_writes_the_logs(folder, tmp_path):
    result = sda("train", folder, "--nproc", "2", "--epochs", "1", "--codebook-dim", "8", "--batch-size", "4",
                 "--health-every", "1", "--out", tmp_path, "--model-name", "two", "--tensorboard", tmp_path / "board")
    assert result.returncode == 0, result.stderr
    log = records(tmp_path / "two.metrics.jsonl")
    assert [r["type"] for r in log].count("start") == 1 and log[0]["processes"] == 2
    steps = [r["step"] for r in log if r["type"] == "health"]
    assert steps == sorted(set(steps))  # each window once, not once a process
    assert len(list((tmp_path / "board" / "two").iterdir())) == 1  # one event file
