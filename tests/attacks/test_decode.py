"""Hostile folders for the preflight and the decoder (issue 14, items 3, 5, 6, 7, 8, 14 and 16).

Each test builds its folder in tmp_path. What must happen: the preflight ends, under a 6 GB address space
and a timeout (attacks.harness), with every hostile file trained on or rejected with a reason that says
what it is; a folder too large to be a folder of samples is refused with the bound it hit; and every text
it stores or prints is valid, printable Unicode.
"""

import json
import os
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from attacks.harness import limited, refused
from sda.data import synth

RATE = 22050
OUTSIDE = "outside what sda reads (1000 to 768000 Hz)"


def tone(path, samples=4000, rate=RATE, amplitude=0.5):
    t = np.arange(samples) / rate
    with open(path, "wb") as f:  # soundfile cannot encode a name that is not valid UTF-8; open() can
        sf.write(f, (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, format="WAV",
                 subtype="PCM_16")
    return path


def usable_kit(folder, n=5):
    """n ordinary files, so that a preflight of folder succeeds whatever the hostile files do."""
    synth.write_collection(folder, n_files=n, seed=2, formats=("wav",))
    return folder


def preflight_in_subprocess(folder, timeout=60, memory_gb=6):
    """preflight(folder) under the limits: (completed process, the report's to_dict or None).

    stdout: the report's text, then its to_dict as JSON on the last line; stderr is left to the decoders.
    """
    code = textwrap.dedent(f"""
        import json
        from sda.data.dataset import preflight
        report = preflight({str(folder)!r})
        print(report.format())
        print(json.dumps(report.to_dict()))
    """)
    result = limited([sys.executable, "-c", code], memory_gb=memory_gb, timeout=timeout)
    report = json.loads(result.stdout.splitlines()[-1]) if result.returncode == 0 else None
    return result, report


def reasons(report) -> dict:
    return {r["path"]: r["reason"] for r in report["rejected"]}


# Item 3: the scan is bounded -------------------------------------------------------------------------------

def test_the_whole_file_system_as_the_folder_is_refused_at_the_scan_bound(tmp_path):
    """`../../..` from anywhere is /: the scan stops at a bound and says which folder to choose instead.

    Which bound / meets first depends on the machine (a deep tree left in /tmp meets the depth bound before
    50000 entries), so either refusal is right; what matters is that the walk ends, in words, within the limit.
    """
    up = "/".join([".."] * (len(tmp_path.parts) + 2))
    result = limited([sys.executable, "-m", "sda", "train", up, "--out", tmp_path / "out"], timeout=120,
                     cwd=tmp_path)
    refused(result, "stopped looking in", "choose")
    output = result.stdout + result.stderr
    assert ("after 50000 files and folders" in output or "folders deep, the most sda looks into" in output
            or "seconds" in output), output


def test_a_deep_tree_is_refused_at_the_depth_bound(tmp_path):
    from sda.data.dataset import ScanLimitError, preflight

    usable_kit(tmp_path)
    deep = tmp_path.joinpath(*["d"] * 33)
    deep.mkdir(parents=True)
    tone(deep / "deep.wav")
    with pytest.raises(ScanLimitError, match="is more than 32 folders deep, the most sda looks into"):
        preflight(tmp_path)


def test_the_scan_stops_at_its_entry_and_time_bounds(tmp_path, monkeypatch):
    from sda.data import dataset

    usable_kit(tmp_path)
    for i in range(10):
        (tmp_path / f"notes{i}.txt").write_text("")
    monkeypatch.setattr(dataset, "MAX_SCAN_ENTRIES", 12)
    with pytest.raises(dataset.ScanLimitError, match="after 12 files and folders, the most sda looks through"):
        dataset.preflight(tmp_path)
    monkeypatch.setattr(dataset, "MAX_SCAN_ENTRIES", 100)
    monkeypatch.setattr(dataset, "MAX_SCAN_SECONDS", 0)
    with pytest.raises(dataset.ScanLimitError, match="after 0 seconds .* Choose a smaller folder"):
        dataset.preflight(tmp_path)


def test_links_to_folders_are_not_followed(tmp_path):
    from sda.data.dataset import preflight

    usable_kit(tmp_path)
    os.symlink(".", tmp_path / "loop")  # a walk that followed it would never end
    os.symlink("/", tmp_path / "everything")
    report = preflight(tmp_path)
    assert len(report.files) == 5 and not report.rejected
    assert "skipped: everything (a link to a folder (not followed)), loop (a link to a folder (not followed))" \
        in report.format()


# Item 5: a FIFO, or any file that is not a regular file, named like audio -----------------------------------

def test_a_fifo_named_wav_is_rejected_without_blocking(tmp_path):
    usable_kit(tmp_path)
    os.mkfifo(tmp_path / "pipe.wav")  # opening it for reading waits for a writer, forever
    result, report = preflight_in_subprocess(tmp_path, timeout=30)
    assert result.returncode == 0, result.stderr
    assert reasons(report) == {"pipe.wav": "not a regular file (a named pipe)"}
    assert len(report["files"]) == 5


def test_a_link_to_a_device_is_rejected(tmp_path):
    usable_kit(tmp_path)
    os.symlink("/dev/zero", tmp_path / "zero.wav")  # endless
    result, report = preflight_in_subprocess(tmp_path, timeout=30)
    assert result.returncode == 0, result.stderr
    assert reasons(report) == {"zero.wav": "not a regular file (a character device)"}


def test_a_file_swapped_for_a_fifo_after_the_check_is_refused_on_the_open_descriptor(tmp_path, monkeypatch):
    """The first look (stat) saw a regular file; the second (fstat, after the non-blocking open) sees the FIFO."""
    from sda.data.audio import AudioSource
    from sda.errors import AudioFileError

    fifo, regular = tmp_path / "pipe.wav", tone(tmp_path / "kick.wav")
    os.mkfifo(fifo)
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda path, *a, **k: real_stat(regular if str(path) == str(fifo) else path,
                                                                     *a, **k))
    with pytest.raises(AudioFileError, match=r"not a regular file \(a named pipe\)"):
        AudioSource(fifo, RATE)


# Item 6: sample rates that torchaudio's resampler turns into a huge kernel, and rates out of range -------------

def wav_with_rate(path, rate):
    """A 10 ms tone in a 16-bit WAV whose header says rate (any 32-bit value, crafted as soundfile takes only
    what fits in an int)."""
    tone(path, samples=220)
    header = bytearray(path.read_bytes())
    assert header[:4] == b"RIFF" and header[12:16] == b"fmt "
    header[24:28] = rate.to_bytes(4, "little")  # sample rate
    header[28:32] = (rate * 2 % (1 << 32)).to_bytes(4, "little")  # byte rate: mono 16-bit
    path.write_bytes(bytes(header))
    return path


def test_odd_and_out_of_range_sample_rates_end_quickly_in_bounded_memory(tmp_path):
    usable_kit(tmp_path)
    for rate in (22051, 44101, 7, 2147483647, 4294967295):
        wav_with_rate(tmp_path / f"rate_{rate}.wav", rate)
    result, report = preflight_in_subprocess(tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    used = {f["path"]: f["sample_rate"] for f in report["files"]}
    assert used["rate_22051.wav"] == 22051 and used["rate_44101.wav"] == 44101
    assert reasons(report) == {
        "rate_7.wav": f"sample rate 7 Hz is {OUTSIDE}",
        "rate_2147483647.wav": f"sample rate 2147483647 Hz is {OUTSIDE}",
        "rate_4294967295.wav": "could not decode: Internal error : SF_INFO struct incomplete",  # libsndfile's
    }


def test_loading_a_folder_with_an_odd_rate_keeps_the_run(tmp_path):
    """The resampler ran outside the decoder's error handling: a traceback under the memory limit."""
    usable_kit(tmp_path)
    wav_with_rate(tmp_path / "odd.wav", 22051)
    code = textwrap.dedent(f"""
        from sda.config import AudioConfig, VQVAEConfig
        from sda.data.dataset import load_dataset
        data = load_dataset({str(tmp_path)!r}, VQVAEConfig(audio=AudioConfig(n_mels=32, chunk_frames=16)))
        print(sorted(f.path for f in data.preflight.files))
    """)
    result = limited([sys.executable, "-c", code], memory_gb=6, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "odd.wav" in result.stdout


# Item 7: files far longer, or far wider, than what training uses ---------------------------------------------

def sparse_wav(path, frames, channels=1, rate=RATE):
    """A 16-bit WAV header claiming frames, extended to its full size without using disk (sparse).

    Returns the offset of the sample data."""
    block = 2 * channels
    data_bytes = block * frames
    header = (b"RIFF" + (36 + data_bytes).to_bytes(4, "little") + b"WAVE" + b"fmt " + (16).to_bytes(4, "little")
              + (1).to_bytes(2, "little") + channels.to_bytes(2, "little") + rate.to_bytes(4, "little")
              + (block * rate).to_bytes(4, "little") + block.to_bytes(2, "little") + (16).to_bytes(2, "little")
              + b"data" + data_bytes.to_bytes(4, "little"))
    path.write_bytes(header)
    os.truncate(path, len(header) + data_bytes)
    return len(header)


def sound_at(path, offset, samples):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write((0.5 * 32767 * np.sin(np.arange(samples) * 0.1)).astype("<i2").tobytes())


def test_a_4_gb_wav_is_read_in_bounded_memory(tmp_path):
    """Whole-file decoding died with `Unable to allocate 8.00 GiB`: only the 256 chunks used are read."""
    usable_kit(tmp_path)
    frames = (0xFFFFFF00 - 36) // 2  # the most a RIFF size field holds: 27 hours at 22050 Hz, mono
    offset = sparse_wav(tmp_path / "stem.wav", frames)
    size, n = 64 * 256, -(-frames // (64 * 256))
    used = (2 * 100 + 1) * n // (2 * 256)  # the middle chunk of the 101st of 256 equal stretches
    sound_at(tmp_path / "stem.wav", offset + 2 * used * size, size)  # the rest is silence
    result, report = preflight_in_subprocess(tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    stem = next(f for f in report["files"] if f["path"] == "stem.wav")
    assert stem["chunks"] == 256 and stem["seconds"] == pytest.approx(frames / RATE, abs=0.01)
    assert f"capped at 256 evenly spaced chunks: stem.wav ({n} available)" in result.stdout


def test_a_wav_with_hundreds_of_channels_is_read_in_bounded_memory(tmp_path):
    """A minute of 256 channels: 2.9 GB as float32, and a transposed copy of it, before the mono mix."""
    usable_kit(tmp_path)
    channels, frames = 256, 60 * RATE
    offset = sparse_wav(tmp_path / "wide.wav", frames, channels=channels)
    sound_at(tmp_path / "wide.wav", offset, channels * 1000)  # the first 1000 frames, every channel
    result, report = preflight_in_subprocess(tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    wide = next(f for f in report["files"] if f["path"] == "wide.wav")
    assert wide["channels"] == channels and wide["chunks"] == 81  # 60 s: 80.75 chunks of 0.74 s, the last padded


# Item 8: file names that are not valid UTF-8 ---------------------------------------------------------------

def test_names_that_are_not_utf8_are_stored_printable_and_the_run_saves(tmp_path):
    from sda.config import AudioConfig, VQVAEConfig
    from sda.data.dataset import preflight
    from sda.format import container
    from sda.train.engine import RunOptions, train
    from sda.train.events import Done

    kit = tmp_path / os.fsdecode(b"kit_\xff")
    kit.mkdir()
    for i in range(5):  # every usable file has such a name, so validation (read twice) has one too
        tone(kit / os.fsdecode(b"bad_\xff\xfe%d.wav" % i), samples=8000 + 500 * i)
    (kit / os.fsdecode(b"broken_\xff.wav")).write_bytes(b"RIFF not really")
    (kit / os.fsdecode(b"notes_\xfe.txt")).write_text("")
    report = preflight(kit)
    summary = report.to_dict()
    json.dumps(summary, ensure_ascii=False).encode("utf-8")  # raised UnicodeEncodeError before
    container.write(tmp_path / "check.sda", {}, {"dataset": summary})  # the metadata check every save makes
    assert summary["folder"].endswith("kit_\\xff")
    assert [f["path"] for f in summary["files"]] == [f"bad_\\xff\\xfe{i}.wav" for i in range(5)]
    assert reasons(summary) == {"broken_\\xff.wav": "could not decode: Format not recognised"}
    assert "notes_\\xfe.txt" in report.format() and "bad_\\xff\\xfe0.wav" in report.format()

    config = VQVAEConfig(hidden_channels=16, codebook_dim=8, epochs=1, kmeans_iters=2,
                         audio=AudioConfig(n_mels=32, chunk_frames=16))
    seen = list(train(config, RunOptions(kit, tmp_path / "out", "m")))
    assert isinstance(seen[-1], Done), seen[-1]
    saved = container.read_metadata(tmp_path / "out" / "m.sda")
    assert [f["path"] for f in saved["dataset"]["files"]] == [f"bad_\\xff\\xfe{i}.wav" for i in range(5)]


# Item 14: control characters in names ----------------------------------------------------------------------

def test_control_characters_in_names_are_shown_escaped(tmp_path):
    from sda.data.dataset import preflight

    folder = tmp_path / "kit\x1b[2J"
    usable_kit(folder)
    tone(folder / "clip\x1b]52;c;aGk=\x07.wav")  # OSC 52: a terminal would write 'hi' to the clipboard
    (folder / "fdp\u202egnp.wav").write_bytes(b"RIFF broken")  # shown as fdp.png, read right to left
    (folder / "x\x1b[31m.txt").write_text("")
    text = preflight(folder).format()
    assert not any(c in text for c in "\x1b\x07\u202e"), text
    for shown in ("kit\\x1b[2J", "clip\\x1b]52;c;aGk=\\x07.wav", "fdp\\u202egnp.wav: could not decode",
                  "x\\x1b[31m.txt"):
        assert shown in text


# Item 16: unreadable, dangling and looping files; libmpg123's notes ------------------------------------------

def test_broken_links_link_loops_and_unreadable_files_say_what_they_are(tmp_path):
    from sda.data.dataset import preflight

    usable_kit(tmp_path)
    os.symlink("nowhere.wav", tmp_path / "gone.wav")
    os.symlink("b.wav", tmp_path / "a.wav")
    os.symlink("a.wav", tmp_path / "b.wav")
    os.symlink("self.wav", tmp_path / "self.wav")
    expected = {"gone.wav": "a broken link (what it points to does not exist)",
                **{name: "a link loop (the link leads back to itself)" for name in ("a.wav", "b.wav", "self.wav")}}
    locked = tone(tmp_path / "locked.wav")
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root reads it anyway: no permission to deny
        locked.unlink()
    else:
        expected["locked.wav"] = "cannot be read: permission denied"
    assert {r.path: r.reason for r in preflight(tmp_path).rejected} == expected


def test_libmpg123_notes_do_not_reach_stderr(tmp_path):
    usable_kit(tmp_path)
    t = np.arange(2 * RATE) / RATE
    sf.write(tmp_path / "scratched.mp3", 0.5 * np.sin(2 * np.pi * 440 * t), RATE, format="MP3",
             subtype="MPEG_LAYER_III")
    damaged = bytearray((tmp_path / "scratched.mp3").read_bytes())
    middle = len(damaged) // 2
    damaged[middle:middle + 300] = np.random.default_rng(0).bytes(300)  # libmpg123: "Note: Trying to resync..."
    (tmp_path / "scratched.mp3").write_bytes(bytes(damaged))
    result, report = preflight_in_subprocess(tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "scratched.mp3" in [f["path"] for f in report["files"]]
    assert result.stderr == ""
