import json
import math
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import torch

from sda.config import AudioConfig, VQVAEConfig, auto_codebook_size
from sda.data import synth
from sda.data.audio import LogMel, read_audio, resample, to_mono
from sda.data.dataset import (
    FolderNotFoundError,
    NoAudioError,
    OnlySilenceError,
    TooFewFilesError,
    _decode,
    _share_validation,
    load_dataset,
    preflight,
    split_files,
)
from sda.errors import DataError

AUDIO = AudioConfig()
C = AUDIO.chunk_samples  # 16384 samples at 22050 Hz


def write_tone(path, samples, sr=AUDIO.sample_rate, channels=1, amplitude=0.5, subtype="FLOAT"):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(samples) / sr
    wave = amplitude * np.sin(2 * np.pi * 330 * t)
    sf.write(path, np.repeat(wave[:, None], channels, axis=1), sr, subtype=subtype)
    return path


@pytest.fixture
def mixed(tmp_path):
    """8 generated sounds, one more in a nested folder, non-audio, broken, empty, silent and hidden files."""
    folder = tmp_path / "kit"
    usable = synth.write_collection(folder, n_files=8, seed=3, formats=("wav", "flac", "ogg"))
    usable.append(write_tone(folder / "nested" / "deeper" / "tone.aiff", 3000, sr=44100, channels=2,
                             subtype="PCM_16"))
    for name in ("notes.txt", "cover.jpg", "README"):
        (folder / name).write_text("not audio")
    (folder / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    write_tone(folder / "empty.wav", 0)
    write_tone(folder / "silent.flac", 22050, amplitude=0, subtype="PCM_16")
    write_tone(folder / ".hidden.wav", 22050)
    write_tone(folder / ".trash" / "old.wav", 22050)
    (folder / ".DS_Store").write_bytes(b"\0\1")
    return folder, usable


def test_preflight_reports_what_it_found(mixed):
    folder, usable = mixed
    report = preflight(folder)
    infos = {p.relative_to(folder).as_posix(): sf.info(str(p)) for p in usable}
    assert [f.path for f in report.files] == sorted(infos)
    assert "nested/deeper/tone.aiff" in infos
    for f in report.files:
        info = infos[f.path]
        assert (f.sample_rate, f.channels) == (info.samplerate, info.channels)
        assert f.seconds == pytest.approx(info.frames / info.samplerate)
        resampled = math.ceil(info.frames * AUDIO.sample_rate / info.samplerate)
        full, rest = divmod(resampled, C)
        assert f.chunks == max(1, full + (rest >= C / 4))
    assert report.sample_rates == Counter(i.samplerate for i in infos.values())
    assert report.channels == Counter(i.channels for i in infos.values())
    assert len(report.sample_rates) == 4 and set(report.channels) == {1, 2}
    assert report.total_seconds == pytest.approx(sum(i.frames / i.samplerate for i in infos.values()))
    assert report.n_chunks == sum(f.chunks for f in report.files) > len(report.files)  # some give several
    assert report.codebook_size == 64
    assert {(s.path, s.reason) for s in report.skipped} == {
        ("notes.txt", "not an audio file (.txt)"), ("cover.jpg", "not an audio file (.jpg)"),
        ("README", "not an audio file (no extension)")}
    reasons = {r.path: r.reason for r in report.rejected}
    assert reasons == {"corrupt.wav": "could not decode: Format not recognised", "empty.wav": "empty (no samples)",
                       "silent.flac": "silent (peak below -80 dBFS)"}


def test_preflight_text_and_dict(mixed):
    folder, _ = mixed
    report = preflight(folder)
    text = report.format()
    for expected in ("9 usable audio files", "nested/deeper/tone.aiff", "stereo", "44100 Hz",
                     "codebook size: 64", "notes.txt", "corrupt.wav: could not decode", "silent.flac: silent"):
        assert expected in text
    summary = json.loads(json.dumps(report.to_dict()))
    assert len(summary["files"]) == 9 and summary["skipped"] == 3 and len(summary["rejected"]) == 3
    assert summary["chunks"] == report.n_chunks and summary["memory_bytes"] == report.memory_bytes
    assert summary["sample_rates"] == {str(k): v for k, v in report.sample_rates.items()}
    assert set(summary["validation_files"]) == {report.files[i].path for i in report.val_indices}


def test_large_collections_are_summarised(tmp_path):
    synth.write_collection(tmp_path, n_files=24, formats=("wav", "flac"))
    for i in range(12):
        (tmp_path / f"take{i}.txt").write_text("")
    text = preflight(tmp_path).format()
    assert "24 usable audio files" in text and "shortest 08_hat" in text and "longest" in text
    assert "00_kick.wav" not in text  # one line per file only for small collections
    assert "12 files that are not audio: .txt (12)" in text


def test_chunking_pads_short_files_keeps_long_remainders_and_caps(tmp_path):
    lengths = {"short.wav": 1000, "three.wav": 3 * C, "quarter.wav": 3 * C + C // 4,
               "less.wav": 3 * C + C // 4 - 1, "long.wav": 10 * C + 5}
    for name, n in lengths.items():
        write_tone(tmp_path / name, n)
    report = preflight(tmp_path, AudioConfig(max_chunks_per_file=4))
    chunks = {f.path: (f.chunks, f.available_chunks, f.capped) for f in report.files}
    assert chunks == {"short.wav": (1, 1, False), "three.wav": (3, 3, False), "quarter.wav": (4, 4, False),
                      "less.wav": (3, 3, False), "long.wav": (4, 10, True)}
    assert "capped at 4 evenly spaced chunks: long.wav (10 available)" in report.format()


def test_chunk_contents(tmp_path):
    audio = AudioConfig(chunk_frames=8, hop_length=4, n_fft=64, n_mels=8, max_chunks_per_file=3)  # 32 samples
    ramp = np.arange(1.0, 20 * 32 + 1, dtype=np.float32)  # 20 chunks, each starting at a known value
    sf.write(tmp_path / "ramp.wav", ramp, audio.sample_rate, subtype="FLOAT")  # FLOAT keeps values above 1
    info, chunks = _decode(tmp_path, "ramp.wav", audio)
    assert (info.chunks, info.available_chunks) == (3, 20) and chunks.shape == (3, 32)
    assert chunks[:, 0].tolist() == [3 * 32 + 1, 10 * 32 + 1, 16 * 32 + 1]  # middles of three equal stretches
    assert torch.equal(chunks[1], torch.from_numpy(ramp[320:352]))
    sf.write(tmp_path / "short.wav", np.ones(5, dtype=np.float32), audio.sample_rate, subtype="FLOAT")
    info, short = _decode(tmp_path, "short.wav", audio)
    assert info.available_chunks == 1 and short.shape == (1, 32)
    assert short[0, :5].eq(1).all() and short[0, 5:].eq(0).all()  # zero-padded, not stretched


def whole_file_chunks(path, audio):
    """The oracle: decode all of the file, resample it, then take the chunks (what sda did before it read
    only the chunks it uses)."""
    wave, rate = read_audio(path)
    mono = resample(to_mono(wave), rate, audio.sample_rate)
    size, cap = audio.chunk_samples, audio.max_chunks_per_file
    full, rest = divmod(len(mono), size)
    n = max(1, full + (4 * rest >= size))
    chunks = torch.nn.functional.pad(mono, (0, n * size - len(mono)))[: n * size].reshape(n, size)
    return chunks[[(2 * i + 1) * n // (2 * cap) for i in range(cap)]] if n > cap else chunks


@pytest.mark.parametrize("rate, channels, seconds, subtype", [
    (22050, 1, 9.0, "PCM_16"), (44100, 2, 9.3, "PCM_16"), (48000, 2, 8.1, "PCM_24"), (16000, 1, 7.7, "FLOAT"),
    (96000, 3, 6.0, "PCM_16"), (11025, 1, 0.2, "PCM_16"), (32000, 2, 8.0, "VORBIS"), (44100, 2, 9.0, "MPEG_LAYER_III")])
def test_reading_only_the_chunks_gives_those_of_a_whole_file_decode(tmp_path, rate, channels, seconds, subtype):
    audio = AudioConfig(max_chunks_per_file=5)  # the 6-9 s files hold 8-12 chunks: capped, read in pieces
    rng = np.random.default_rng(rate)
    t = np.arange(int(seconds * rate)) / rate
    wave = np.stack([0.3 * np.sin(2 * np.pi * (300 + 50 * c) * t) + 0.02 * rng.standard_normal(len(t))
                     for c in range(channels)], axis=1)
    # Lossy decoders need a run-up after a seek (audio.SEEK_PREROLL): without it the Vorbis case differs.
    path = tmp_path / {"VORBIS": "x.ogg", "MPEG_LAYER_III": "x.mp3"}.get(subtype, "x.wav")
    sf.write(path, wave, rate, subtype=subtype)
    info, chunks = _decode(tmp_path, path.name, audio)
    expected = whole_file_chunks(path, audio)
    assert chunks.shape == expected.shape and info.chunks == len(expected)
    assert torch.allclose(chunks, expected, atol=1e-6)


@pytest.mark.parametrize("train, val, kept", [
    ([1, 1, 1, 1], [256], {4: 2}),  # a 12-minute file among one-shots: half the training chunks
    ([3, 2, 4, 3], [6], {}),  # half the training chunks: untouched
    ([1] * 8, [1, 30, 2], {9: 3}),  # twice its share, 6 for the three: the short ones keep theirs
    ([1, 1], [1, 1], {}),
    ([1], [3, 3], {1: 2, 2: 2}),  # twice an average training file each
])
def test_validation_is_kept_to_its_share(train, val, kept):
    files = [data_file(n) for n in train + val]
    indices = list(range(len(train))), list(range(len(train), len(files)))
    assert _share_validation(files, *indices) == kept


def data_file(chunks):
    from sda.data.dataset import UsableFile

    return UsableFile("f.wav", "f.wav", 1.0, 22050, 1, chunks, chunks)


def test_a_long_validation_file_gives_a_fraction_of_the_training_chunks(tmp_path):
    """The file-level split stands; the long validation file is sampled evenly, in the report and in the data."""
    audio = AudioConfig(max_chunks_per_file=64)
    _, (val,) = split_files(6, seed=0, validation_fraction=0.1)
    for i in range(6):  # f0..f5 sort in that order: f{val} is the one validation draws
        write_tone(tmp_path / f"f{i}.wav", 40 * C if i == val else 3000)
    data = load_dataset(tmp_path, VQVAEConfig(audio=audio, validation_fraction=0.1, seed=0))
    report = data.preflight
    (long_file,) = [report.files[i] for i in report.val_indices]
    assert long_file.path == f"f{val}.wav" and long_file.available_chunks == 40
    assert long_file.chunks == report.val_chunks == 3  # half the 5 training chunks, rounded up
    assert data.val_mels.shape[0] == data.val_audio.shape[0] == 3 and data.train_mels.shape[0] == 5
    assert torch.allclose(LogMel(audio)(data.val_audio), data.val_mels, atol=1e-4)
    _, whole = _decode(tmp_path, long_file.source, audio)
    assert torch.equal(data.val_audio, whole[[6, 20, 33]])  # spread over the file: the middles of its thirds
    assert f"f{val}.wav (3 of 40)" in report.format()


def test_missing_folder_and_file_instead_of_folder(tmp_path):
    with pytest.raises(FolderNotFoundError, match="does not exist"):
        preflight(tmp_path / "nope")
    write_tone(tmp_path / "a.wav", 100)
    with pytest.raises(FolderNotFoundError, match="is a file, not a folder"):
        preflight(tmp_path / "a.wav")


def test_no_audio(tmp_path):
    with pytest.raises(NoAudioError, match="the folder is empty"):
        preflight(tmp_path)
    (tmp_path / "a.txt").write_text("")
    (tmp_path / "b.jpg").write_text("")
    with pytest.raises(NoAudioError, match="skipped 2 other files"):
        preflight(tmp_path)


def test_too_few_usable_files_says_why(tmp_path):
    for i in range(3):
        write_tone(tmp_path / f"ok{i}.wav", 5000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF garbage")
    write_tone(tmp_path / "silent.wav", 5000, amplitude=1e-5)
    nan = np.full(100, np.nan, dtype=np.float32)
    sf.write(tmp_path / "nan.wav", nan, AUDIO.sample_rate, subtype="FLOAT")
    with pytest.raises(TooFewFilesError) as error:
        preflight(tmp_path)
    message = str(error.value)
    assert "3 usable audio files in" in message and "at least 5" in message
    assert "corrupt.wav (could not decode: " in message and "silent.wav (silent" in message
    assert "nan.wav (contains NaN" in message and "Add more audio files" in message


def test_only_silence(tmp_path):
    for i in range(6):
        write_tone(tmp_path / f"blank{i}.wav", 5000, amplitude=0, subtype="PCM_16")
    (tmp_path / "corrupt.flac").write_bytes(b"fLaC nonsense")
    with pytest.raises(OnlySilenceError, match="6 files decoded but are silent"):
        preflight(tmp_path)


def test_errors_are_value_errors_with_one_base():
    for error in (FolderNotFoundError, NoAudioError, TooFewFilesError, OnlySilenceError):
        assert issubclass(error, DataError) and issubclass(error, ValueError)


@pytest.mark.parametrize("n, fraction, n_val", [(5, 0.1, 1), (20, 0.1, 2), (100, 0.1, 10), (2, 0.9, 1), (7, 0.5, 4)])
def test_split_by_file(n, fraction, n_val):
    train, val = split_files(n, seed=0, validation_fraction=fraction)
    assert len(val) == n_val and sorted(train + val) == list(range(n))
    assert (train, val) == split_files(n, seed=0, validation_fraction=fraction)


def test_split_depends_on_the_seed():
    assert split_files(20, seed=0, validation_fraction=0.2) != split_files(20, seed=1, validation_fraction=0.2)
    with pytest.raises(ValueError):
        split_files(1, seed=0, validation_fraction=0.1)


def test_the_codebook_size_follows_the_seconds_of_audio_not_the_file_count(tmp_path):
    """120 clicks of 0.3 s (36 s) get the middle size, where a file count would have given the largest;
    six long sounds (3 min) the largest, where a file count would have given the smallest."""
    clicks, long = tmp_path / "clicks", tmp_path / "long"
    for i in range(120):
        write_tone(clicks / f"click{i:03d}.wav", int(0.3 * AUDIO.sample_rate))
    for i in range(6):
        write_tone(long / f"take{i}.flac", 30 * AUDIO.sample_rate, subtype="PCM_16")
    for folder, size in ((clicks, 128), (long, 256)):
        report = preflight(folder)
        assert report.codebook_size == auto_codebook_size(report.total_seconds) == size
        data = load_dataset(folder, VQVAEConfig(epochs=1))
        assert data.config.codebook_size == size


def test_load_dataset(mixed):
    folder, _ = mixed
    config = VQVAEConfig(validation_fraction=0.25, seed=5)
    data = load_dataset(folder, config)
    report = data.preflight
    assert report == preflight(folder, config.audio, seed=5, validation_fraction=0.25)
    train, val = split_files(9, seed=5, validation_fraction=0.25)
    assert (list(report.train_indices), list(report.val_indices)) == (train, val)
    n_train = sum(report.files[i].chunks for i in report.train_indices)
    n_val = sum(report.files[i].chunks for i in report.val_indices)
    assert data.train_mels.shape == (n_train, AUDIO.n_mels, AUDIO.chunk_frames)
    assert data.val_mels.shape == (n_val, AUDIO.n_mels, AUDIO.chunk_frames)
    assert data.val_audio.shape == (n_val, C)
    assert not data.train_mels.requires_grad and data.train_mels.dtype == torch.float32
    assert torch.allclose(LogMel(AUDIO)(data.val_audio), data.val_mels, atol=1e-4)
    assert data.config == config.resolve(seconds=report.total_seconds, n_train_chunks=n_train)
    held = data.train_mels.nbytes + data.val_mels.nbytes + data.val_audio.nbytes
    assert report.memory_bytes == held


def test_load_dataset_resolves_batch_size_and_keeps_an_override(tmp_path):
    for i in range(5):  # five one-shots: one chunk each, one file for validation
        write_tone(tmp_path / f"hit{i}.wav", 2000 + 100 * i)
    data = load_dataset(tmp_path, VQVAEConfig(batch_size=16, codebook_size=32))
    assert data.train_mels.shape[0] == 4 and data.val_mels.shape[0] == 1
    assert data.config.batch_size == 4 and data.config.codebook_size == 32


def test_one_of_anything_is_said_in_the_singular(tmp_path):
    synth.write_collection(tmp_path, n_files=5)
    (tmp_path / "notes.txt").write_text("")
    pf = preflight(tmp_path)
    text = pf.format()
    assert "skipped 1 file that is not audio: notes.txt" in text
    assert len(pf.val_indices) == 1 and "(1 file)" in text and "(1 files)" not in text
