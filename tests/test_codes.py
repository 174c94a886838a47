"""Codes files, sda.codes.load, sda encode and sda decode (issue 17, items 2 and 3): the round trip on a generated
folder, each code and each decoded sample against sda.model.codec, codes of another model, and the commands'
refusals through the real entry point."""

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import sda.codes
from sda.cli.main import main
from sda.config import MAX_CODEC_SECONDS
from sda.data.audio import read_audio
from sda.errors import SdaError
from sda.format import codesfile, container, modelfile
from sda.model import codec
from tests import helpers
from tests.helpers import coding_model

PCM16 = 1.5 / 32768  # a wav sample against the float it was written from


@pytest.fixture(scope="module")
def kit(folder, tmp_path_factory):
    """conftest's 6 generated files, one in a subfolder, plus what encode must skip or reject: a text file, a silent
    and an empty wav."""
    root = tmp_path_factory.mktemp("codes-kit")
    shutil.copytree(folder, root / "kit")
    (root / "kit" / "more").mkdir()
    (root / "kit" / "04_chord.flac").rename(root / "kit" / "more" / "04_chord.flac")
    (root / "kit" / "notes.txt").write_text("not audio")
    sf.write(root / "kit" / "silent.wav", np.zeros(4000), 22050)
    sf.write(root / "kit" / "empty.wav", np.zeros(0), 22050)
    return root / "kit"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two models of the same settings and different weights: a.sda and b.sda."""
    out = tmp_path_factory.mktemp("models")
    return coding_model(out / "a.sda", "a", seed=1), coding_model(out / "b.sda", "b", seed=2)


@pytest.fixture(scope="module")
def encoded(kit, models, tmp_path_factory):
    """(codes path, what sda encode printed)."""
    out = tmp_path_factory.mktemp("encoded") / "kit-codes.sda"
    status, printed = _main("encode", models[0], kit, "--out", out)
    assert status == 0, printed
    return out, printed


def _subset(source: Path, target: Path, picks: list[int]) -> Path:
    loaded = codesfile.load(source)
    codesfile.save(target, dataclasses.replace(loaded, entries=tuple(loaded.entries[i] for i in picks),
                                               grids=tuple(loaded.grids[i] for i in picks)))
    return target


@pytest.fixture(scope="module")
def short(encoded, tmp_path_factory):
    """The codes of the two shortest files (a hat and a snare, 0.5 s in all): Griffin-Lim makes decoding slow."""
    return _subset(encoded[0], tmp_path_factory.mktemp("short") / "short.sda", [2, 1])


@pytest.fixture(scope="module")
def one_of_each_rate(encoded, tmp_path_factory):
    """The codes of the kick, snare, hat and pluck: 16, 22.05, 44.1 and 48 kHz, 2.4 s in all."""
    return _subset(encoded[0], tmp_path_factory.mktemp("rates") / "rates.sda", [0, 1, 2, 3])


def _main(*args, capsys=None):
    """main() in this process (a subprocess costs seconds of imports): (status, stdout + stderr)."""
    import contextlib
    import io
    import sys

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in args])
    sys.stdout.flush()
    return status, out.getvalue() + err.getvalue()


def test_every_stored_code_is_codec_encode_of_its_file(encoded, kit, models):
    model, metadata = modelfile.load_model(models[0])
    codes = sda.codes.load(encoded[0])
    paths = [e.path for e in codes.index]
    assert paths == ["00_kick.wav", "01_snare.flac", "02_hat.ogg", "03_pluck.wav", "05_texture.ogg",
                     "more/04_chord.flac"]
    for entry, grid in zip(codes.index, codes.codes, strict=True):
        wave, rate = read_audio(kit / entry.path)
        want = codec.encode(model, wave, rate)
        assert isinstance(grid, np.ndarray) and grid.dtype == np.int64 and grid.shape == tuple(want.shape)
        assert np.array_equal(grid, want.numpy()), entry.path
        assert (entry.sample_rate, entry.channels, entry.samples, entry.frames) == (rate, wave.shape[0],
                                                                                     wave.shape[1], grid.shape[1])
        assert entry.seconds == pytest.approx(wave.shape[1] / rate)
    assert codes.model == codesfile.ModelIdentity("a", metadata["created"], modelfile.weights_hash(model.state_dict()))
    config = model.config
    assert codes.codec == codesfile.CodecInfo(config.rvq_levels, config.codebook_size, config.audio.sample_rate,
                                              config.audio.hop_length * config.downsample,
                                              config.audio.sample_rate / (config.audio.hop_length * config.downsample))
    stored = container.read(encoded[0])[0]
    assert {t.dtype for t in stored.values()} == {torch.int16}  # codebook sizes up to 32767 are stored as int16


def test_encode_says_what_it_encoded_skipped_and_wrote(encoded):
    path, printed = encoded
    assert "encoded 6 files (" in printed and "with model 'a' (created 2026-12-02T00:00:00+00:00, weights " in printed
    assert "skipped 1 file: notes.txt (not an audio file (.txt))" in printed
    assert "could not encode 2 files:" in printed
    assert "silent.wav: silent (peak below -80 dBFS)" in printed and "empty.wav: empty (no samples)" in printed
    positions = sum(e.frames for e in sda.codes.load(path).index)
    assert f"{positions} code positions x 3 levels, 16 codes per level" in printed
    assert f"wrote {path} (" in printed


def test_decode_gives_each_file_at_its_rate_length_and_level_through_codec_decode(one_of_each_rate, models, kit,
                                                                                 tmp_path):
    model, _ = modelfile.load_model(models[0])
    status, printed = _main("decode", models[0], one_of_each_rate, "--out", tmp_path / "out")
    assert status == 0, printed
    loaded = codesfile.load(one_of_each_rate)
    for entry, grid in zip(loaded.entries, loaded.grids, strict=True):
        wave, rate = sf.read(tmp_path / "out" / Path(entry.path).with_suffix(".wav"), dtype="float32")
        raw = codec.decode(model, grid, entry.samples_at(model.config.audio.sample_rate), entry.sample_rate)
        want, _, _ = codec.match_rms(raw[:entry.samples], entry.rms)
        assert rate == entry.sample_rate and wave.shape == (entry.samples,), entry.path
        assert np.abs(wave - want.numpy()).max() <= PCM16, entry.path
        assert np.abs(wave).max() <= 0.98 + PCM16
    # At the model's own rate, a decoded file is what sda reconstruct gives of its source.
    same_rate = next(e for e in loaded.entries if e.sample_rate == model.config.audio.sample_rate and e.channels == 1)
    source, rate = read_audio(kit / same_rate.path)
    decoded, _ = sf.read(tmp_path / "out" / Path(same_rate.path).with_suffix(".wav"), dtype="float32")
    assert np.abs(decoded - codec.reconstruct(model, source, rate).wave.numpy()).max() <= PCM16
    assert "decoded 4 files" in printed
    assert "mono at 16000 Hz, 22050 Hz, 44100 Hz, 48000 Hz (the sources' rates)" in printed


def test_decode_at_a_chosen_rate(short, models, tmp_path):
    status, printed = _main("decode", models[0], short, "--out", tmp_path, "--sample-rate", "8000")
    assert status == 0, printed
    entry = codesfile.load(short).entries[0]
    info = sf.info(tmp_path / Path(entry.path).with_suffix(".wav"))
    assert info.samplerate == 8000 and info.frames == entry.samples_at(8000)


def test_codes_of_another_model_are_refused_naming_it_and_decoded_with_force(short, models, tmp_path):
    result = helpers.sda("decode", models[1], short, "--out", tmp_path / "out")  # the real entry point, once
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "holds codes of another model: model 'a' (created 2026-12-02T00:00:00+00:00" in result.stderr
    assert "--force" in result.stderr and not (tmp_path / "out").exists()
    status, printed = _main("decode", models[1], short, "--out", tmp_path / "out", "--force")
    assert status == 0 and "warning: decoding codes of model 'a'" in printed
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["01_snare.wav", "02_hat.wav"]


def test_codes_of_a_model_of_other_sizes_are_refused_even_with_force(short, tmp_path):
    from tests.helpers import CODING

    other = coding_model(tmp_path / "c.sda", "c", config=dataclasses.replace(CODING, rvq_levels=2))
    status, printed = _main("decode", other, short, "--out", tmp_path / "out", "--force")
    assert status == 2 and "cannot decode even with --force" in printed and "3 levels of 16 codes" in printed


def test_decode_never_replaces_a_file_without_force(short, models, tmp_path):
    (tmp_path / "02_hat.wav").write_bytes(b"keep me")
    status, printed = _main("decode", models[0], short, "--out", tmp_path)
    assert status == 2 and "1 file to write exists already" in printed and "--force" in printed
    assert (tmp_path / "02_hat.wav").read_bytes() == b"keep me" and not (tmp_path / "01_snare.wav").exists()
    assert _main("decode", models[0], short, "--out", tmp_path, "--force")[0] == 0
    assert sf.info(tmp_path / "02_hat.wav").frames > 0


def _codes_named(source: Path, target: Path, paths: list[str]) -> Path:
    """source's codes under other paths, as a crafted file could have them (its entries taken in turn)."""
    loaded = codesfile.load(source)
    n = len(loaded.entries)
    entries = tuple(dataclasses.replace(loaded.entries[i % n], path=p) for i, p in enumerate(paths))
    grids = tuple(loaded.grids[i % n] for i in range(len(paths)))
    codesfile.save(target, codesfile.CodeSet(loaded.model, loaded.codec, entries, grids))
    return target


HOSTILE = ["../../escaped.wav", "/tmp/absolute.wav", "a/../../../up.wav", "..\\..\\win.wav", "k\x1b]52;c;aGk=\x07.wav",
           ".bashrc"]


def test_hostile_names_in_a_codes_file_stay_inside_the_output_folder(short, models, tmp_path):
    crafted = _codes_named(short, tmp_path / "crafted.sda", HOSTILE)
    out = tmp_path / "deep" / "out"
    out.parent.mkdir()
    status, printed = _main("decode", models[0], crafted, "--out", out)
    assert status == 0, printed
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(codesfile.output_names(codesfile.load(crafted).entries))
    assert written == sorted(["escaped.wav", "tmp/absolute.wav", "a/up.wav", "win.wav", "k_x1b]52;c;aGk=_x07.wav",
                              "_.bashrc.wav"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.sda", "deep"]
    assert "\x1b" not in printed and "renamed 6 files" in printed


def test_decode_does_not_write_through_a_link_out_of_its_folder(short, models, tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "out").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "out" / "link")
    for name in ["link/x.wav", "link/sub/x.wav"]:
        crafted = _codes_named(short, tmp_path / "crafted.sda", [name])
        status, printed = _main("decode", models[0], crafted, "--out", tmp_path / "out")
        assert status == 2 and "out/link is a link: sda decode writes only into real folders" in printed
        assert not list((tmp_path / "outside").iterdir())


def test_output_names_are_safe_and_unique():
    entries = tuple(codesfile.Entry(p, 0.1, 1000, 1, 100, 1, 0.1) for p in
                    ["kick.ogg", "kick.wav", "", "..", "x.wav", "x.wav/y.ogg", "d/" * 40 + "f.wav", "b" * 400])
    names = codesfile.output_names(entries)
    assert names[:6] == ["kick.wav", "kick-2.wav", "entry-000002.wav", "entry-000003.wav", "x.wav", "y.wav"]
    assert len(set(names)) == len(names)
    assert names[6].count("/") == codesfile.MAX_DEPTH
    assert len(names[7].encode()) <= codesfile.MAX_NAME_BYTES + len(".wav")


def test_weights_hash_is_the_same_from_the_file_and_the_model_and_differs_between_models(models):
    a, _ = modelfile.load_model(models[0])
    tensors, _ = container.read(models[0])
    assert modelfile.weights_hash(tensors) == modelfile.weights_hash(a.state_dict())  # health.usage is no weight
    assert modelfile.weights_hash(modelfile.load_model(models[1])[0].state_dict()) != modelfile.weights_hash(tensors)
    changed = dict(tensors)
    changed["decoder.10.bias"] = changed["decoder.10.bias"] + 1e-7
    assert modelfile.weights_hash(changed) != modelfile.weights_hash(tensors)


@pytest.mark.parametrize("out, words", [
    ("{tmp}", ["is a folder", "codes.sda"]),
    ("{tmp}/codes.npz", ["extension is not one of .sda"]),
    ("{tmp}/missing/codes.sda", ["does not exist", "create it"]),
    ("{tmp}/existing.sda", ["exists", "--force"]),
])
def test_encode_refuses_outputs_it_cannot_or_should_not_write(models, kit, tmp_path, out, words):
    (tmp_path / "existing.sda").write_bytes(b"keep me")
    status, printed = _main("encode", models[0], kit, "--out", out.format(tmp=tmp_path))
    assert status == 2 and all(w in printed for w in words), printed
    assert (tmp_path / "existing.sda").read_bytes() == b"keep me"


def test_encode_never_writes_over_its_model(models, kit, tmp_path):
    model = tmp_path / "m.sda"
    shutil.copy(models[0], model)
    before = model.read_bytes()
    status, printed = _main("encode", model, kit, "--out", model, "--force")
    assert status == 2 and "is the input file" in printed and model.read_bytes() == before


def test_encode_refuses_a_missing_input_a_warm_up_model_and_nothing_to_encode(models, kit, tmp_path):
    status, printed = _main("encode", models[0], kit, tmp_path / "nope", "--out", tmp_path / "c.sda")
    assert status == 2 and "nope does not exist" in printed
    early = coding_model(tmp_path / "early.sda", "early", initialized=False)
    status, printed = _main("encode", early, kit, "--out", tmp_path / "c.sda")
    assert status == 2 and "saved during warm-up (step 2 of" in printed and "then encode" in printed
    status, printed = _main("encode", models[0], kit / "silent.wav", kit / "notes.txt", "--out", tmp_path / "c.sda")
    assert status == 2 and "nothing to encode" in printed and "silent" in printed and "notes.txt" in printed
    assert not (tmp_path / "c.sda").exists()


def test_a_file_given_twice_is_encoded_once(models, kit, tmp_path):
    hat = kit / "02_hat.ogg"
    status, printed = _main("encode", models[0], hat, kit, hat, "--out", tmp_path / "c.sda")
    assert status == 0 and "02_hat.ogg (given twice: encoded once)" in printed
    assert [e.path for e in sda.codes.load(tmp_path / "c.sda").index][:2] == ["02_hat.ogg", "00_kick.wav"]
    assert len(sda.codes.load(tmp_path / "c.sda")) == 6


def test_files_longer_than_the_codec_takes_are_skipped(models, kit, tmp_path, monkeypatch):
    monkeypatch.setattr("sda.cli.codes.MAX_CODEC_SECONDS", 2.0)
    status, printed = _main("encode", models[0], kit, "--out", tmp_path / "c.sda")
    assert status == 0, printed
    assert "05_texture.ogg: 3.45 s long, over the 2.00 s the codec takes in one piece" in printed
    assert [e.path for e in sda.codes.load(tmp_path / "c.sda").index] == ["00_kick.wav", "01_snare.flac",
                                                                          "02_hat.ogg", "03_pluck.wav"]
    assert MAX_CODEC_SECONDS == 600.0


def test_load_refuses_a_model_file_and_a_model_loader_refuses_codes(encoded, models):
    with pytest.raises(SdaError, match="is an sda model, not a codes file"):
        sda.codes.load(models[0])
    with pytest.raises(SdaError, match="is an sda codes file, not a model"):
        modelfile.load_model(encoded[0])


def test_sda_info_names_a_codes_file_and_what_to_do_with_it(encoded):
    status, printed = _main("info", encoded[0])
    assert status == 2 and "is an sda codes file (sda encode), not a model" in printed and "sda.codes.load" in printed
