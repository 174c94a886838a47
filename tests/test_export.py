"""sda export (issue 17, item 6): the programs load and run where neither sda nor torchaudio can be imported, and
give sda's codes exactly and its log-mel within 1e-5; the command's bad output paths and a warm-up model exit 2."""

import contextlib
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from sda.cli import main as cli
from sda.format import container
from sda.format.export import INFO_FILE, _replace, check_output, read_info
from sda.format.modelfile import load_model
from sda.model import codec
from sda.train.engine import RunOptions
from tests.helpers import SMALL, run

# Lengths at the model's rate: 1 sample, shorter than an FFT window (1024), exactly one position, odd ones.
LENGTHS = (1, 300, 1024, 5001, 16384 + 333)

# Run with `python -c` in a folder away from the repository, with PYTHONPATH cleared: a finder first in
# sys.meta_path refuses sda and torchaudio, so the programs must run on torch alone.
CHILD = textwrap.dedent("""
    import sys

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("sda", "torchaudio"):
                raise ImportError(f"{name} is not importable here")

    sys.meta_path.insert(0, Refuse())
    for name in ("sda", "torchaudio"):
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{name} could be imported")

    import torch

    folder, inputs, outputs = sys.argv[1:]
    encode, decode_mel, decode = (torch.export.load(f"{folder}/{key}.pt2").module()
                                  for key in ("encode", "decode_mel", "decode"))
    given = torch.load(inputs, weights_only=True)
    codes = [encode(wave) for wave in given["waves"]]
    mels = [decode_mel(grid[:levels]) for grid in codes for levels in range(1, len(grid) + 1)]
    torch.save({"codes": codes, "mels": mels, "wave": decode(codes[0]),
                "modules": sorted(name for name in sys.modules if name.partition(".")[0] in ("sda", "torchaudio"))},
               outputs)
""")


@pytest.fixture(scope="module")
def model_file(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    run(dataclasses.replace(SMALL, epochs=1), RunOptions(folder, out, "kit", health_every=2))
    return out / "kit.sda"


@pytest.fixture(scope="module")
def exported(model_file, tmp_path_factory):
    """model_file exported by the command (in this process: a second torch start costs seconds): (its folder,
    what the command printed)."""
    folder = tmp_path_factory.mktemp("export") / "kit.export"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["export", str(model_file), "--out", str(folder)]) == 0
    return folder, printed.getvalue()


def test_the_export_runs_on_torch_alone_and_gives_sdas_codes_and_log_mel(model_file, exported, tmp_path):
    folder, _ = exported
    model, _ = load_model(model_file)
    generator = torch.Generator().manual_seed(17)
    waves = [0.3 * torch.randn(n, generator=generator) for n in LENGTHS]
    torch.save({"waves": waves}, tmp_path / "inputs.pt")
    away = tmp_path / "away"
    away.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONSTARTUP")}
    child = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(tmp_path / "inputs.pt"),
                            str(tmp_path / "outputs.pt")], cwd=away, env=env, capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 0, child.stderr
    got = torch.load(tmp_path / "outputs.pt", weights_only=True)
    assert got["modules"] == []

    unit = model.config.audio.hop_length * model.config.downsample
    mels = iter(got["mels"])
    for wave, codes in zip(waves, got["codes"], strict=True):
        expected = codec.encode_mono(model, wave)
        assert codes.dtype == torch.int64 and codes.shape == (3, -(-max(len(wave), 1024) // unit))
        assert torch.equal(codes, expected), f"{len(wave)} samples: codes differ"
        for levels in range(1, 4):
            mel, sdas = next(mels), codec.decode_mel(model, expected[:levels])
            assert mel.shape == sdas.shape
            assert (mel - sdas).abs().max() <= 1e-5, f"{len(wave)} samples, {levels} levels"
    # Griffin-Lim's 32 iterations of STFT and inverse amplify float rounding a little; the sound is the same.
    wave = got["wave"]
    assert wave.shape == (got["codes"][0].shape[1] * unit,)
    assert torch.allclose(wave, codec.decode(model, got["codes"][0]), atol=1e-4)


def test_the_export_says_what_it_is(model_file, exported):
    folder, printed = exported
    info = read_info(folder)
    assert {key: info[key] for key in ("model_name", "sample_rate", "hop_length", "downsample", "levels",
                                       "codebook_size", "samples_per_position")} == {
        "model_name": "kit", "sample_rate": 22050, "hop_length": 256, "downsample": 4, "levels": 3,
        "codebook_size": 64, "samples_per_position": 1024}
    assert sorted(info["programs"]) == ["decode", "decode_mel", "encode"]
    extra = {INFO_FILE: ""}
    torch.export.load(folder / "encode.pt2", extra_files=extra)  # a program alone carries the description too
    assert json.loads(extra[INFO_FILE]) == info
    assert f"wrote {folder} in " in printed and "torch.export.load(" in printed
    assert sorted(p.name for p in folder.parent.iterdir()) == ["kit.export"]  # no staging folder left


def test_export_refuses_bad_output_paths_before_any_work(model_file, exported, tmp_path, capsys):
    folder, _ = exported
    a_file = tmp_path / "file.pt2"
    a_file.write_bytes(b"mine")
    other = tmp_path / "photos"
    other.mkdir()
    (other / "keep.jpg").write_bytes(b"mine")
    cases = [
        (["--out", a_file], "is a file: an export is a folder"),
        (["--out", a_file, "--force"], "is a file: an export is a folder"),
        (["--out", tmp_path / "missing" / "kit.export"], "does not exist: create it first"),
        (["--out", folder], "exists: give another output path, or --force"),
        (["--out", other, "--force"], "is a folder but not an sda export"),
    ]
    for flags, message in cases:
        assert cli.main(["export", str(model_file), *map(str, flags)]) == 2, flags
        err = capsys.readouterr().err
        assert err.startswith("sda: error: ") and message in err and "Traceback" not in err, (flags, err)
    assert a_file.read_bytes() == b"mine" and (other / "keep.jpg").read_bytes() == b"mine"
    assert not (tmp_path / "missing").exists()


def test_export_refuses_a_model_saved_in_its_warm_up(model_file, tmp_path, capsys):
    tensors, metadata = container.read(model_file)
    for name in tensors:
        if name.endswith(".initialized"):
            tensors[name] = torch.tensor(False)
    metadata["weights"] = {"step": 3}
    early = tmp_path / "early.sda"
    container.write(early, tensors, metadata, kind="model")
    assert cli.main(["export", str(early), "--out", str(tmp_path / "early.export")]) == 2
    err = capsys.readouterr().err
    assert "saved during warm-up (step 3 of" in err and "--resume" in err and "Traceback" not in err
    assert not (tmp_path / "early.export").exists()


def test_force_replaces_an_earlier_export_whole(exported, tmp_path):
    """--force passes the checks for an earlier export only; the new folder, staged beside it, is renamed into its
    place and the old one removed: nothing of the old one stays in it, nothing is left beside it."""
    folder, _ = exported
    earlier = tmp_path / "kit.export"
    earlier.mkdir()
    (earlier / INFO_FILE).write_text("{}")
    (earlier / "stale.pt2").write_bytes(b"old")
    check_output(earlier, force=True)
    staging = tmp_path / ".kit.export.staged"
    shutil.copytree(folder, staging)
    _replace(staging, earlier)
    assert sorted(p.name for p in earlier.iterdir()) == sorted(p.name for p in folder.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kit.export"]
