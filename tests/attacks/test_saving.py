"""Attacks on saving and resuming (issue 14, items 9, 10, 12 and 16): a name taken twice, a checkpoint that names
a path or another run's model, a read-only or full output folder, a writer killed mid-save, Ctrl-C before the
first step. Each builds its hostile situation and asserts that nothing is lost and nothing is written elsewhere."""

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from sda.config import VQVAEConfig
from sda.format import container, modelfile
from sda.train import engine, events, runfiles
from sda.train.engine import RunOptions, train

SMALL = VQVAEConfig(hidden_channels=16, codebook_dim=8, batch_size=8, epochs=3, kmeans_iters=2, warmup_steps=1)


def run(options, config=SMALL, on_event=None):
    """Every event of a training run; on_event(event) is called as each arrives."""
    seen = []
    for event in train(config, options):
        seen.append(event)
        if on_event is not None:
            on_event(event)
    return seen


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def rewrite_metadata(path: Path, **changes) -> None:
    """path rewritten with its metadata changed: a crafted file, valid in every other way."""
    tensors, metadata = container.read(path)
    container.write(path, tensors, {**metadata, **changes}, kind=container.read_header(path)["kind"])


def sda(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sda", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, **kwargs)


def wait_for(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@contextlib.contextmanager
def small_disk(path: Path, size: str, read_only: bool = False):
    """A real tmpfs of the given size mounted at path (root only: CI runs as root)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small filesystem needs root")
    path.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# ---- Item 9: two runs, one name ---------------------------------------------------------------------------------


def test_a_second_run_of_a_name_in_training_is_refused_at_its_start_and_the_first_keeps_its_model(folder, tmp_path):
    out = tmp_path / "models"
    first = sda("train", folder, "--model-name", "kit", "--out", out, "--epochs", "4")
    wait_for(lambda: (out / ".kit.lock").exists() or first.poll() is not None)
    second = sda("train", folder, "--model-name", "kit", "--out", out, "--epochs", "2")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2 and "another sda run is training 'kit'" in err and "Traceback" not in err
    out_first, err_first = first.communicate(timeout=300)
    assert first.returncode == 0, err_first
    _, metadata = modelfile.load_model(out / "kit.sda")
    assert metadata["config"]["epochs"] == 4  # the first run's model, not overwritten by the second
    previews = [f"kit-previews/{p.name}" for p in sorted((out / "kit-previews").iterdir())]
    assert files_in(out) == ["kit-previews", *previews, "kit.checkpoint.sda", "kit.metrics.jsonl", "kit.sda"]  # no lock


def test_a_killed_run_does_not_keep_its_name(folder, tmp_path):
    out = tmp_path / "models"
    victim = sda("train", folder, "--model-name", "kit", "--out", out, "--epochs", "50")
    wait_for(lambda: (out / ".kit.lock").exists())
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert not (out / "kit.sda").exists()  # killed before anything of it was saved: the name is free again
    seen = run(RunOptions(folder, out, "kit"))
    assert isinstance(seen[-1], events.Done)


def test_generated_names_are_unique_within_one_second(tmp_path):
    claims = [runfiles.claim(tmp_path, None, f"run{i}") for i in range(3)]
    try:
        names = [c.name for c in claims]
        assert len(set(names)) == 3 and names[1] == f"{names[0]}-2" and names[2] == f"{names[0]}-3"
        assert len({c.previews for c in claims}) == 3  # and so each its own previews folder
    finally:
        for c in claims:
            c.release()


def test_a_previews_folder_left_by_another_run_keeps_the_name_taken(folder, tmp_path):
    (tmp_path / "kit-previews").mkdir()
    (tmp_path / "kit-previews" / "clip1-original.wav").write_bytes(b"another run's")
    seen = run(RunOptions(folder, tmp_path, "kit"))
    assert isinstance(seen[-1], events.Error) and "already exists" in seen[-1].message
    assert files_in(tmp_path) == ["kit-previews", "kit-previews/clip1-original.wav"]


# ---- Item 10: what a checkpoint says is not trusted -------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(folder, tmp_path_factory):
    """A checkpoint of run "m", stopped after its first epoch (so a resume has epochs to go)."""
    out = tmp_path_factory.mktemp("ckpt")
    seen = run(RunOptions(folder, out, "m", checkpoint_every=1))
    assert isinstance(seen[-1], events.Done)
    return out / "m.checkpoint.sda"


@pytest.mark.parametrize("stored", ["../escaped", "/tmp/sda-absolute-name", "a/b", "", ".hidden", None, 7,
                                    "kit\x1b]52;c;aGk=\x07"])
def test_a_checkpoint_naming_a_path_is_refused_and_nothing_is_written_anywhere(folder, checkpoint, tmp_path, stored):
    crafted = tmp_path / "crafted.checkpoint.sda"
    shutil.copy(checkpoint, crafted)
    rewrite_metadata(crafted, model_name=stored)
    out = tmp_path / "out"
    seen = run(RunOptions(folder, out, resume=crafted))
    assert len(seen) == 1 and isinstance(seen[0], events.Error) and seen[0].bad_input
    assert "is not a plain model name" in seen[0].message
    assert files_in(tmp_path) == ["crafted.checkpoint.sda"]
    assert not Path("/tmp/sda-absolute-name.sda").exists()


def test_a_resumed_run_writes_only_into_out(folder, checkpoint, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copy = shutil.copy(checkpoint, elsewhere / "m.checkpoint.sda")
    seen = run(RunOptions(folder, tmp_path / "out", resume=Path(copy)))
    assert isinstance(seen[-1], events.Done)
    assert files_in(elsewhere) == ["m.checkpoint.sda"]
    assert {"m.sda", "m.checkpoint.sda"} <= set(files_in(tmp_path / "out"))


def test_a_renamed_checkpoint_does_not_overwrite_an_unrelated_model_of_its_name(folder, checkpoint, tmp_path):
    unrelated = run(RunOptions(folder, tmp_path, "m"))  # another run, also named m, in the folder resumed into
    assert isinstance(unrelated[-1], events.Done)
    before = (tmp_path / "m.sda").read_bytes(), (tmp_path / "m.checkpoint.sda").read_bytes()
    renamed = shutil.copy(checkpoint, tmp_path / "renamed.checkpoint.sda")
    seen = run(RunOptions(folder, tmp_path, resume=Path(renamed)))
    assert isinstance(seen[-1], events.Error) and "belongs to another training run" in seen[-1].message
    assert ((tmp_path / "m.sda").read_bytes(), (tmp_path / "m.checkpoint.sda").read_bytes()) == before


def test_a_run_identity_is_stored_in_model_and_checkpoint_and_kept_across_a_resume(folder, checkpoint, tmp_path):
    run_id = container.read_metadata(checkpoint)["run_id"]
    assert len(run_id) == 32 and container.read_metadata(checkpoint.with_name("m.sda"))["run_id"] == run_id
    seen = run(RunOptions(folder, tmp_path, resume=checkpoint))
    assert isinstance(seen[-1], events.Done)
    assert container.read_metadata(tmp_path / "m.sda")["run_id"] == run_id


# ---- Item 12: a folder that cannot be written, a disk that fills, a writer killed mid-save ----------------------


def test_a_read_only_output_folder_is_refused_before_any_audio_is_decoded(folder, tmp_path, monkeypatch):
    def not_now(*args, **kwargs):
        raise AssertionError("the data was decoded before the output folder was checked")

    monkeypatch.setattr(engine, "load_dataset", not_now)
    with small_disk(tmp_path / "ro", "1m", read_only=True) as out:
        seen = run(RunOptions(folder, out, "kit"))
    assert len(seen) == 1 and isinstance(seen[0], events.Error) and seen[0].bad_input
    assert "cannot write to the output folder" in seen[0].message and "read-only" in seen[0].message


def test_an_output_folder_without_room_for_the_run_is_refused_before_training(folder, tmp_path):
    with small_disk(tmp_path / "tiny", "64k") as out:
        seen = run(RunOptions(folder, out, "kit"))
        assert isinstance(seen[-1], events.Error) and seen[-1].bad_input
        assert not any(isinstance(e, events.Step) for e in seen)
        assert "free and this run needs about" in seen[-1].message
        assert files_in(out) == []


def fill(folder: Path) -> Path:
    """A file that takes every free byte of folder's filesystem."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(bytes(1 << 16))
    return filler


def test_a_disk_that_fills_mid_run_keeps_training_and_saves_once_space_is_freed(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "SAVE_RETRY_S", 0.01)
    with small_disk(tmp_path / "disk", "8m") as out:
        state = {}

        def on_event(event):
            if isinstance(event, events.Step) and event.step == 2 and "filler" not in state:
                state["filler"] = fill(out)
            if isinstance(event, events.Alert) and "Trying again" in event.message and "freed" not in state:
                state["freed"] = True
                state["filler"].unlink()

        seen = run(RunOptions(folder, out, "kit", checkpoint_every=1), on_event=on_event)
        alerts = [e.message for e in seen if isinstance(e, events.Alert)]
        assert any("could not save step" in a and "the disk is full" in a and "Training goes on" in a for a in alerts)
        assert isinstance(seen[-1], events.Done), seen[-1]
        model, metadata = modelfile.load_model(out / "kit.sda")
        assert metadata["weights"]["step"] == seen[-1].summary.steps
        modelfile.load_checkpoint(out / "kit.checkpoint.sda")


def test_a_save_that_keeps_failing_says_what_survived_and_how_to_go_on(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "SAVE_RETRY_S", 0.01)
    monkeypatch.setattr(engine, "SAVE_RETRIES", 2)
    with small_disk(tmp_path / "disk", "8m") as out:
        def on_event(event):
            if isinstance(event, events.Checkpoint) and not (out / "filler").exists():
                fill(out)  # after the first checkpoint: it survives, every later save fails

        seen = run(RunOptions(folder, out, "kit", checkpoint_every=1), on_event=on_event)
        assert isinstance(seen[-1], events.Error) and not seen[-1].bad_input
        message = seen[-1].message
        assert "the disk is full" in message and f"the checkpoint {out / 'kit.checkpoint.sda'} (step" in message
        assert f"--resume {out / 'kit.checkpoint.sda'} --out {out}" in message
        assert sum("Trying again" in e.message for e in seen if isinstance(e, events.Alert)) == 2
        modelfile.load_checkpoint(out / "kit.checkpoint.sda")  # intact, as the message says
        assert not container.temporaries(out / "kit.sda") and not container.temporaries(out / "kit.checkpoint.sda")


def test_temporary_files_of_a_killed_writer_are_removed_and_no_others(folder, tmp_path):
    stale = [tmp_path / ".kit.sda.0123456789ab.tmp", tmp_path / ".kit.checkpoint.sda.ba9876543210.tmp"]
    others = [tmp_path / ".other.sda.0123456789ab.tmp", tmp_path / ".kit.sda.notours.tmp"]
    for path in stale + others:
        path.write_bytes(b"half a file")
    seen = run(RunOptions(folder, tmp_path, "kit"))
    assert isinstance(seen[-1], events.Done)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in others)


def test_a_writer_killed_mid_save_leaves_the_previous_file_and_its_temporary_is_cleaned_next_time(folder, tmp_path):
    # A real kill: a child process writes a large file, and is killed once its temporary file appears.
    target = tmp_path / "kit.sda"
    container.write(target, {"w": torch.ones(3)}, {"run_id": "a-run"}, kind="model")
    previous = target.read_bytes()
    code = ("import torch, sys; from sda.format import container; "
            "container.write(sys.argv[1], {'w': torch.zeros(1 << 29, dtype=torch.uint8)}, {}, kind='model')")
    writer = subprocess.Popen([sys.executable, "-c", code, str(target)])
    wait_for(lambda: container.temporaries(target) or writer.poll() is not None)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert target.read_bytes() == previous and container.temporaries(target)
    claim = runfiles.claim(tmp_path, "kit", "a-run", resuming=True)  # what a resumed run of kit does first
    claim.release()
    assert not container.temporaries(target) and target.read_bytes() == previous


# ---- Item 16: a stop before the first step ---------------------------------------------------------------------


def test_a_stop_while_the_audio_is_read_ends_at_the_next_file_saves_nothing_and_frees_the_name(
        folder, tmp_path, monkeypatch):
    from sda.data import dataset

    stop, decoded, real_decode = threading.Event(), [], dataset._decode

    def decode(*args, **kwargs):  # the stop arrives while the second file is decoded
        decoded.append(args[1])
        if len(decoded) == 2:
            stop.set()
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(dataset, "_decode", decode)
    out = tmp_path / "models"
    seen = list(train(SMALL, RunOptions(folder, out, "kit"), stop))
    assert len(decoded) == 2 < len(list(folder.iterdir()))  # not one file more
    assert [type(e) for e in seen] == [events.Cancelled]
    assert "nothing was saved" in seen[0].message and "'kit' is free" in seen[0].message
    assert files_in(out) == []  # not even the name's lock
    monkeypatch.setattr(dataset, "_decode", real_decode)
    assert isinstance(run(RunOptions(folder, out, "kit"))[-1], events.Done)  # the name is free


def test_ctrl_c_during_preflight_stops_there_saves_nothing_and_frees_the_name(tmp_path):
    from sda.data.synth import write_collection

    data = write_collection(tmp_path / "data", n_files=60, seed=3)[0].parent
    out = tmp_path / "models"
    proc = sda("train", data, "--model-name", "kit", "--out", out)
    wait_for(lambda: (out / ".kit.lock").exists())  # claimed: the audio is being read now
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "stopping before training begins; nothing will be saved" in stderr, stderr
    assert "nothing was saved, and the name 'kit' is free" in stderr and "Traceback" not in stderr
    assert "epoch" not in stdout.lower()  # it stopped before training began
    assert files_in(out) == []


# ---- Issue 15, item 3: a save that fails is a failed save, not bad input ---------------------------------------


def test_a_save_refused_by_a_file_size_limit_exits_1_naming_the_folder_and_what_survived(folder, tmp_path):
    """RLIMIT_FSIZE makes every write past 64 KiB fail with EFBIG (SIGXFSZ ignored), as a full disk would: the lock
    and the claim fit, the model does not. The retries of the final save are cut short in the child itself."""
    limit = 64 << 10

    def cap():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "models"
    code = ("import sys; from sda.train import engine; engine.SAVE_RETRY_S, engine.SAVE_RETRIES = 0.01, 1; "
            "from sda.cli.main import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run(
        [sys.executable, "-c", code, "train", str(folder), "--model-name", "kit", "--out", str(out), "--epochs", "1",
         "--hidden-channels", "16", "--codebook-dim", "8", "--batch-size", "8", "--kmeans-iters", "2",
         "--warmup-steps", "1"],
        capture_output=True, text=True, timeout=300, preexec_fn=cap, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 1, result.stdout + result.stderr  # a failed save: the input was fine
    error = result.stderr.splitlines()[-1]
    assert error.startswith("sda: error: could not save step") and f"in {out}:" in error, result.stderr
    assert "a size limit was reached" in error and "On disk: no model and no checkpoint" in error
    assert "Traceback" not in result.stderr
    assert not (out / "kit.sda").exists() and not container.temporaries(out / "kit.sda")
