"""The sda command line end to end, through the installed entry point, on generated audio."""

import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import soundfile as sf

from sda.data.synth import write_collection
from sda.train.engine import RunOptions
from tests import helpers
from tests.helpers import SMALL, sda

GOLDEN = pathlib.Path(__file__).parent / "data" / "golden.sda"  # a valid container that is not a model
FAST = ["--epochs", "2", "--codebook-dim", "16", "--batch-size", "8", "--seed", "3"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_collection(tmp_path_factory.mktemp("kit"), n_files=6, seed=4)[0].parent


def test_train_info_reconstruct(folder, tmp_path):
    run = sda("train", folder, *FAST, "--out", tmp_path, "--model-name", "kit", "--health-every", "1")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "6 usable audio files" in out and "codebook size: 64 (auto for 6 files)" in out  # the preflight
    assert "health over" in out and "level 3  util" in out  # per-level lines at each update
    assert "epoch 2/2: train loss" in out
    assert "Training finished: 2 of 2 epochs" in out and f"model: {tmp_path / 'kit.sda'}" in out
    assert "kernel backend torch" in out and "device cpu (fp32)" in out

    info = sda("info", tmp_path / "kit.sda")
    assert info.returncode == 0, info.stderr
    assert "sda model 'kit'" in info.stdout and "3 RVQ levels x 64 codes x dim 16" in info.stdout
    assert "level 1  util" in info.stdout and "loss curve" in info.stdout and "6 files" in info.stdout
    assert "  utilization (0-100%) over " in info.stdout and "codes carry half the assignments" in info.stdout
    assert "bitrate: 21.5 codes/s a level; 388 bit/s nominal" in info.stdout and " bits " in info.stdout

    source = sorted(folder.iterdir())[0]
    recon = sda("reconstruct", tmp_path / "kit.sda", source, tmp_path / "out.wav", "--codes")
    assert recon.returncode == 0, recon.stderr
    assert "code grid: 3 levels x" in recon.stdout and "21.5 positions a second" in recon.stdout
    assert "quality: log-mel L1 " in recon.stdout and " SI-SDR " in recon.stdout
    assert "level: gain " in recon.stdout and "to match the input's loudness (RMS)" in recon.stdout
    written, expected = sf.info(str(tmp_path / "out.wav")), sf.info(str(source))
    assert (written.samplerate, written.frames, written.channels) == (expected.samplerate, expected.frames, 1)
    grid = recon.stdout.split("  position  time s   L1   L2   L3\n")[1].splitlines()
    positions = int(recon.stdout.split(" levels x ")[1].split()[0])
    assert len([line for line in grid if line.split()[0].isdigit()]) == positions  # one line per position
    assert grid[0].split()[:2] == ["0", "0.00"] and len(grid[0].split()) == 2 + 3  # position, time, 3 codes

    rated = sda("reconstruct", tmp_path / "kit.sda", source, tmp_path / "out16.flac", "--sample-rate", "16000",
                "--levels", "1")
    assert rated.returncode == 0, rated.stderr
    assert "decoded from the first 1 level of 3" in rated.stdout and "(16000 Hz, mono)" in rated.stdout
    assert sf.info(str(tmp_path / "out16.flac")).samplerate == 16000


@pytest.mark.parametrize("args, message", [
    (["train", "{folder}", "--rvq-levels", "5"], "invalid choice: 5"),
    (["train", "{folder}", "--commitment-weight", "0"], "it must be a number above 0"),
    (["train", "{folder}", "--epochs", "zero"], "'zero' is not a whole number"),
    (["train", "{folder}", "--lr", "2"], "--lr: 2 is out of range"),
    (["train", "{tmp}/nowhere"], "does not exist"),
    (["train"], "give the folder of audio to train on"),
    (["train", "{folder}", "--device", "cuda:7"], "--device cuda:7"),
    (["info", "{tmp}/missing.sda"], "missing.sda"),
    (["info", "{folder}/00_kick.wav"], "not an sda file"),
    (["info", str(GOLDEN)], "is an .sda file but not an sda model or checkpoint: its metadata has no 'config'"),
    (["reconstruct", "{tmp}/missing.sda", "{folder}/00_kick.wav", "{tmp}/o.wav"], "missing.sda"),
    (["reconstruct", "{tmp}/m.sda", "{folder}/00_kick.wav", "{tmp}/o.wav", "--levels", "0"], "0 is too small"),
    (["reconstruct", "{tmp}/m.sda", "{folder}/00_kick.wav", "{tmp}/o.wav", "--sample-rate", "9e9"],
     "'9e9' is not a whole number"),
    (["train", "{folder}", "--model-name", "../up"], "model name '../up' cannot be used"),
    (["ui", "--port", "70000"], "70000 is too large: it must be at most 65535"),
])
def test_bad_input_exits_non_zero_with_one_message(folder, tmp_path, args, message):
    run = sda(*[a.format(folder=folder, tmp=tmp_path) for a in args])
    assert run.returncode == 2, run.stdout + run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stderr


def test_ctrl_c_saves_a_loadable_model_and_checkpoint_then_resume_finishes(folder, tmp_path):
    cmd = [sys.executable, "-m", "sda", "train", str(folder), "--epochs", "40", "--codebook-dim", "16",
           "--batch-size", "8", "--out", str(tmp_path), "--model-name", "cut", "--health-every", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    for line in proc.stdout:  # wait until training is under way
        if "health over" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "stopping after this step" in stderr and "Training stopped early" in stdout
    assert "Traceback" not in stderr

    checkpoint = tmp_path / "cut.checkpoint.sda"
    info = sda("info", tmp_path / "cut.sda")
    assert info.returncode == 0 and "sda model 'cut'" in info.stdout
    info = sda("info", checkpoint)
    assert info.returncode == 0 and "sda checkpoint 'cut'" in info.stdout
    resumed = sda("train", folder, "--resume", checkpoint, "--out", tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {checkpoint} at epoch" in resumed.stdout and "(resumed from a checkpoint)" in resumed.stdout
    assert "Training finished: 40 of 40 epochs" in resumed.stdout


def test_help_lists_the_commands():
    run = sda("--help")
    for command in ("train", "info", "reconstruct", "ui", "env"):
        assert command in run.stdout
    assert pathlib.Path(sys.executable).exists()


@pytest.mark.parametrize("value", ["fast", "triton"])  # unknown; and triton, which cannot run on CPU tensors
def test_a_bad_sda_kernels_is_a_settings_error_before_any_audio_is_read(tmp_path, monkeypatch, value):
    write_collection(tmp_path / "kit", n_files=4, seed=0)
    monkeypatch.setenv("SDA_KERNELS", value)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    for run in (sda("train", tmp_path / "kit", "--out", tmp_path / "out"), sda("env")):
        assert run.returncode == 2, run.stderr
        assert run.stderr.startswith("sda: error: SDA_KERNELS=") and "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing claimed or decoded


def test_a_reader_that_goes_away_ends_sda_quietly():
    """`sda env | head -1`: the pipe closes before sda writes; no traceback, no 'Broken pipe' error line."""
    proc = subprocess.Popen([sys.executable, "-m", "sda", "env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the interpreter has even imported sda: every write meets a closed pipe
    stderr = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode == 1 and stderr == "", stderr


def _serve(port, models):
    """`sda ui` in a subprocess, returned once it says where it listens."""
    proc = subprocess.Popen([sys.executable, "-m", "sda", "ui", "--port", str(port), "--models", str(models)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    first = proc.stdout.readline()
    assert first.startswith(f"sda ui: open http://127.0.0.1:{port}"), (first, proc.stderr.read() if proc.poll() else "")
    return proc


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_ui_serves_on_localhost_and_ctrl_c_stops_training_with_the_model_saved(folder, tmp_path, stop_signal):
    import urllib.request

    from gradio_client import Client

    from sda.format import modelfile
    from tests.helpers import free_port

    port = free_port()
    proc = _serve(port, tmp_path / "models")
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).read().decode()
        assert "sda: train discrete audio models" in page
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        client.predict(str(folder), 2, 0.25, 500, "served", 5, 16, 1e-3, 0, api_name="/start")
        deadline = time.monotonic() + 120
        while " · step " not in str(client.predict(api_name="/poll")[1]) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        proc.send_signal(stop_signal)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "stopping the training run; saving the model and a checkpoint" in stderr and "Traceback" not in stderr
    model, metadata = modelfile.load_model(tmp_path / "models" / "served.sda")
    assert model.config.rvq_levels == 2 and metadata["model_name"] == "served"
    modelfile.load_checkpoint(tmp_path / "models" / "served.checkpoint.sda")


def test_ui_on_a_port_in_use_says_so(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = sda("ui", "--port", port, "--models", tmp_path, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"sda: error: cannot serve on 127.0.0.1:{port}: the port is in use; choose another port with --port" \
        in run.stderr


def test_sigterm_stops_training_like_ctrl_c(folder, tmp_path):
    cmd = [sys.executable, "-m", "sda", "train", str(folder), "--epochs", "400", "--codebook-dim", "16",
           "--batch-size", "8", "--out", str(tmp_path), "--model-name", "termed", "--health-every", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:  # wait until training is under way
        if "health over" in line:
            break
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "stopping after this step" in stderr and "Training stopped early" in stdout
    modelfile_info = sda("info", tmp_path / "termed.sda")
    assert modelfile_info.returncode == 0 and "sda model 'termed'" in modelfile_info.stdout


def test_reconstruct_refuses_a_model_saved_in_its_warm_up_and_says_what_to_do(folder, tmp_path):
    import dataclasses

    from sda.train.engine import RunOptions
    from tests.helpers import SMALL, run

    run(dataclasses.replace(SMALL, warmup_steps=5), RunOptions(folder, tmp_path, "early"), stop_after=2)
    recon = sda("reconstruct", tmp_path / "early.sda", sorted(folder.iterdir())[0], tmp_path / "o.wav")
    assert recon.returncode == 2 and "Traceback" not in recon.stderr
    assert "saved during warm-up (step 2 of 5)" in recon.stderr and "--resume" in recon.stderr
    assert not (tmp_path / "o.wav").exists()
    info = sda("info", tmp_path / "early.sda")
    assert "codebook health: none yet, training stopped in the warm-up (step 2 of 5)" in info.stdout


# ---- Issue 15, items 3 and 4: flags from the config, errors by their class ---------------------------------------


def test_a_learning_rate_of_1_is_refused_once_with_the_configs_range(folder):
    from sda.config import RANGES, VQVAEConfig
    from sda.errors import ConfigError

    run = sda("train", folder, "--lr", "1")
    allowed = RANGES["learning_rate"].describe()  # "a number above 0 and below 1"
    assert run.returncode == 2 and "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert errors == [f"sda train: error: argument --lr: 1 is out of range: it must be {allowed}"]
    with pytest.raises(ConfigError, match=f"expected {allowed}$"):  # the config says the same range
        VQVAEConfig(learning_rate=1.0).validate()


def train_actions():
    from sda.cli.main import build_parser

    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    return parser, [a for a in train._actions if a.option_strings and a.dest not in ("help", "demo")]


def test_every_setting_of_the_config_is_a_flag_whose_default_is_the_dataclasses():
    import dataclasses

    from sda.cli.main import RUN_FLAGS
    from sda.config import AudioConfig, RunOptions, VQVAEConfig

    parser, actions = train_actions()
    args = parser.parse_args(["train", "kit"])
    flags = {a.dest for a in actions}
    fields = [f for cls in (VQVAEConfig, AudioConfig) for f in dataclasses.fields(cls) if f.name != "audio"]
    fields += [f for f in dataclasses.fields(RunOptions) if f.name in RUN_FLAGS]
    for f in fields:
        assert f.name in flags, f"no flag for {f.name}"
        assert getattr(args, f.name) == f.default, f.name
    assert (args.device, args.precision, args.out) == (RunOptions.device, RunOptions.precision, RunOptions.out_dir)


def test_train_help_shows_every_default():
    from sda.config import RANGES

    _, actions = train_actions()
    for action in actions:
        assert "default" in action.help, f"{action.option_strings[0]}: {action.help}"
        if action.dest in RANGES:
            assert action.help.startswith(RANGES[action.dest].help.replace("%", "%%")), action.dest
    text = sda("train", "--help").stdout
    assert "(default: 0.001)" in text and "(default: 3)" in text and "(default: 180)" in text


def test_every_option_of_every_command_says_what_it_does_and_its_default():
    import argparse

    from sda.cli.main import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    for command, parser in commands.items():
        for action in parser._actions:
            where = f"sda {command} {action.option_strings or action.metavar}"
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{where} has no help"
            # a switch is off by default; a required option has none
            if action.option_strings and not isinstance(action, argparse._StoreTrueAction) and not action.required:
                meaning = action.help.split("(default")[0].split("default:")[0].strip(" ;(")
                assert "default" in action.help and len(meaning) > 10, f"{where}: {action.help}"


@pytest.mark.parametrize("bug", [ValueError("a bug's ValueError"), KeyError("key"), ZeroDivisionError("zero")])
def test_an_unexpected_error_exits_1_with_its_traceback(monkeypatch, capsys, bug):
    from sda.cli import main as cli

    def broken(args):
        raise bug

    monkeypatch.setattr(cli, "cmd_info", broken)
    assert cli.main(["info", "model.sda"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and f"{type(bug).__name__}: " in err
    assert f"sda: unexpected error ({type(bug).__name__})" in err


@pytest.mark.parametrize("error, status", [("ConfigError", 2), ("DataError", 2), ("SdaCorruptError", 2),
                                           ("OutputError", 2), ("SaveError", 1), ("TrainingError", 1),
                                           ("PeerFailure", 1)])
def test_each_class_of_the_error_table_has_its_exit_status_and_one_line(monkeypatch, capsys, error, status):
    from sda import errors
    from sda.cli import main as cli

    def failing(args):
        raise getattr(errors, error)("what happened, and what to do")

    monkeypatch.setattr(cli, "cmd_info", failing)
    assert cli.main(["info", "model.sda"]) == status
    assert capsys.readouterr().err == "sda: error: what happened, and what to do\n"


@pytest.mark.parametrize("error, status", [(FileNotFoundError(2, "No such file or directory", "kit.sda"), 2),
                                           (PermissionError(13, "Permission denied", "kit.sda"), 2),
                                           (OSError(28, "No space left on device", "out.wav"), 1)])
def test_an_os_error_is_bad_input_only_for_a_path_given(monkeypatch, capsys, error, status):
    from sda.cli import main as cli

    def failing(args):
        raise error

    monkeypatch.setattr(cli, "cmd_info", failing)
    assert cli.main(["info", "model.sda"]) == status
    err = capsys.readouterr().err
    assert err.startswith("sda: error: ") and error.filename in err and "Traceback" not in err


@pytest.fixture(scope="module")
def models(folder, tmp_path_factory):
    """Two small models of different settings: models/a.sda (3 levels) and models/b.sda (2 levels of 16 codes)."""
    out = tmp_path_factory.mktemp("models")
    helpers.run(dataclasses.replace(SMALL, epochs=2), RunOptions(folder, out, "a", health_every=1))
    two_levels = dataclasses.replace(SMALL, epochs=2, rvq_levels=2, codebook_size=16)
    helpers.run(two_levels, RunOptions(folder, out, "b", health_every=1))
    return out / "a.sda", out / "b.sda"


def test_info_of_two_models_shows_them_side_by_side(models):
    info = sda("info", *models)
    assert info.returncode == 0, info.stderr
    lines = info.stdout.splitlines()
    assert lines[0].split() == ["a.sda", "b.sda"] and "* levels x codes" in info.stdout
    assert info.stdout.count("  utilization (0-100%) over ") == 2 and "settings that differ (*):" in info.stdout


def test_info_shows_the_files_it_can_and_names_each_it_cannot(models, tmp_path):
    missing = tmp_path / "missing.sda"
    info = sda("info", models[0], missing, GOLDEN, models[1])
    assert info.returncode == 2, info.stdout + info.stderr
    assert info.stdout.splitlines()[0].split() == ["a.sda", "b.sda"]  # the good ones, side by side
    errors = info.stderr.splitlines()
    assert len(errors) == 2 and "missing.sda" in errors[0] and "golden.sda is an .sda file but not" in errors[1]
    assert "Traceback" not in info.stderr
    alone = sda("info", missing, models[1])  # one left: described as on its own
    assert alone.returncode == 2 and alone.stdout.startswith(f"{models[1]}: sda model 'b'")


def info_in(models, **env):
    """`sda info` of both models with env's variables set and the locale's others unset."""
    base = {k: v for k, v in os.environ.items() if k not in ("LANG", "LC_ALL", "LC_CTYPE", "PYTHONIOENCODING")}
    return subprocess.run([sys.executable, "-m", "sda", "info", *models], capture_output=True,
                          env={**base, **env}, timeout=120)


@pytest.mark.parametrize("env, count", [({"LANG": "C"}, 2), ({"LC_ALL": "C"}, 1), ({"PYTHONIOENCODING": "ascii"}, 2),
                                        ({}, 1)])
def test_info_without_utf8_draws_its_sparklines_in_ascii(models, env, count):
    info = info_in(models[:count], **env)  # one model alone, or side by side
    assert info.returncode == 0 and b"Error" not in info.stderr, info.stderr
    text = info.stdout.decode("ascii")  # every byte ASCII: no block character, no ellipsis
    assert text.count("(. warm-up)") == count and "\\u" not in text


@pytest.mark.parametrize("env", [{"LANG": "C.UTF-8"}, {"LANG": "C", "PYTHONIOENCODING": "utf-8"}])
def test_info_on_utf8_draws_block_sparklines(models, env):
    info = info_in(models[:1], **env)
    assert info.returncode == 0, info.stderr
    assert "(· warm-up)" in info.stdout.decode("utf-8") and any(c in info.stdout.decode() for c in "▁▂▃▄▅▆▇█")


def test_reconstruct_refuses_a_file_longer_than_the_codec_takes_before_decoding_it(folder, tmp_path):
    from sda.config import MAX_CODEC_SECONDS

    trained = sda("train", folder, *FAST, "--epochs", "1", "--out", tmp_path, "--model-name", "m")
    assert trained.returncode == 0, trained.stderr
    long = tmp_path / "long.wav"
    sf.write(long, [0.0] * int(1000 * (MAX_CODEC_SECONDS + 1)), 1000)  # 1 kHz keeps the file small
    recon = sda("reconstruct", tmp_path / "m.sda", long, tmp_path / "o.wav")
    assert recon.returncode == 2 and "Traceback" not in recon.stderr
    assert "sda takes audio files of at most 600 s (10 minutes) whole; cut it into shorter files" in recon.stderr
    recon = sda("reconstruct", tmp_path / "m.sda", folder / "00_kick.wav", tmp_path / "o.wav", "--levels", "4")
    assert recon.returncode == 2 and "has 3 levels: give 1 to 3" in recon.stderr
