"""Attacks through model and checkpoint files (issue 14, items 13, 14 and 15): each test crafts a file from a real
tiny model, valid as an .sda container, and checks that every entry point refuses it as damaged (an SdaError, exit
2 in the CLI, no traceback), within a 6 GB address space, and that nothing a file holds reaches a terminal raw."""

import os
import shutil
import subprocess
import sys

import pytest
import soundfile as sf
import torch

from attacks.harness import refused, sda_limited
from sda.config import AudioConfig, VQVAEConfig
from sda.format import container, modelfile
from sda.model.vqvae import ConvVQVAE
from sda.train import events
from sda.train.engine import RunOptions, train

TINY = VQVAEConfig(hidden_channels=16, codebook_dim=8, batch_size=8, epochs=2, kmeans_iters=2, warmup_steps=1)


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    """(model path, checkpoint path) of a finished tiny run."""
    out = tmp_path_factory.mktemp("trained")
    seen = list(train(TINY, RunOptions(folder, out, "m")))
    assert isinstance(seen[-1], events.Done)
    return out / "m.sda", out / "m.checkpoint.sda"


def craft(source, target, tensors=None, **metadata_changes):
    """target: source's tensors (or tensors(original) if given) and metadata with changes; a path "a.b" sets a
    nested key, and the value DELETE removes it."""
    original, metadata = container.read(source)
    for dotted, value in metadata_changes.items():
        node, *path = [metadata, *dotted.split("__")]
        for key in path[:-1]:
            node = node[key]
        if value is DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    kind = container.read_header(source)["kind"]
    container.write(target, tensors(original) if tensors else original, metadata, kind=kind)
    return target


DELETE = object()


def changed(name, value):
    def edit(tensors):
        return {**tensors, name: value(tensors[name]) if callable(value) else value}
    return edit


def without(name):
    return lambda tensors: {k: v for k, v in tensors.items() if k != name}


MODEL_ATTACKS = {
    "a 120 GB model asked for": dict(config__hidden_channels=100_000),
    "the largest allowed model, with tiny tensors": dict(config__hidden_channels=1024, config__codebook_dim=1024,
                                                          config__codebook_size=8192, config__rvq_levels=4),
    "a float for an integer": dict(config__rvq_levels=3.0),
    "a string for a number": dict(config__commitment_weight="0.25"),
    "no config": dict(config=DELETE),
    "a config that is a list": dict(config=[1, 2]),
    "an unknown setting": dict(config__evil=1),
    "a wrong-shaped tensor": dict(tensors=changed("decoder.10.bias", torch.zeros(3))),
    "a wrong dtype": dict(tensors=changed("decoder.10.bias", lambda t: t.double())),
    "a missing tensor": dict(tensors=without("decoder.10.bias")),
    "an extra tensor": dict(tensors=lambda t: {**t, "evil": torch.zeros(2)}),
    "NaN weights": dict(tensors=changed("decoder.10.bias", lambda t: torch.full_like(t, float("nan")))),
}


@pytest.mark.parametrize("attack", MODEL_ATTACKS)
def test_a_crafted_model_is_refused_as_damaged_by_load_model(trained, tmp_path, attack):
    path = craft(trained[0], tmp_path / "crafted.sda", **MODEL_ATTACKS[attack])
    with pytest.raises(container.SdaError, match="crafted.sda"):
        modelfile.load_model(path)


@pytest.mark.parametrize("attack", ["a 120 GB model asked for", "the largest allowed model, with tiny tensors",
                                    "a float for an integer", "a wrong-shaped tensor"])
def test_sda_reconstruct_refuses_a_crafted_model_in_bounded_memory(trained, folder, tmp_path, attack):
    path = craft(trained[0], tmp_path / "crafted.sda", **MODEL_ATTACKS[attack])
    result = sda_limited("reconstruct", path, sorted(folder.glob("*.wav"))[0], tmp_path / "o.wav", timeout=60)
    refused(result, "crafted.sda")
    assert not (tmp_path / "o.wav").exists()


@pytest.mark.parametrize("junk", [{"health": "x"}, {"history": 5}, {"dataset": None}, {"config": 3},
                                  {"history__epochs": [{"epoch": "one"}]}])
def test_sda_info_refuses_metadata_sda_did_not_write(trained, tmp_path, junk):
    path = craft(trained[0], tmp_path / "junk.sda", **junk)
    refused(sda_limited("info", path, timeout=60), "junk.sda", "not an sda model")


def test_sda_info_shows_no_control_character_from_a_file(trained, tmp_path):
    hostile = "kit\x1b]52;c;aGk=\x07\x1b[2J\u202egpj.exe"
    path = craft(trained[0], tmp_path / "hostile.sda", model_name=hostile, created=hostile,
                 dataset__folder=hostile, history__warnings=[hostile])
    result = sda_limited("info", path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert not any(c in result.stdout for c in "\x1b\x07\u202e"), result.stdout
    assert "kit\\x1b]52;c;aGk=\\x07\\x1b[2J\\u202egpj.exe" in result.stdout  # shown, as visible escapes


CHECKPOINT_ATTACKS = {
    "position.epoch = -3": dict(position__epoch=-3),
    "no position.epoch": dict(position__epoch=DELETE),
    "a float position.step": dict(position__step=2.5),
    "no optimizer_param_groups": dict(optimizer_param_groups=DELETE),
    "optimizer groups over other parameters": dict(optimizer_param_groups=[{"params": [0, 1]}]),
    "no dataset": dict(dataset=DELETE),
    "no history": dict(history=DELETE),
    "junk health warnings": dict(history__health_warnings=[{"level": "x"}]),
    "an RNG state of the wrong size": dict(tensors=changed(modelfile.RNG_TENSOR, torch.zeros(7, dtype=torch.uint8))),
    "a wrong-shaped optimizer moment": dict(tensors=changed("optimizer.0.exp_avg", torch.zeros(2))),
    "an optimizer tensor of no parameter": dict(tensors=lambda t: {**t, "optimizer.999.exp_avg": torch.zeros(1)}),
    "an unparsable optimizer name": dict(tensors=lambda t: {**t, "optimizer.x": torch.zeros(1)}),
}


@pytest.mark.parametrize("attack", CHECKPOINT_ATTACKS)
def test_a_crafted_checkpoint_is_refused_as_damaged_by_load_checkpoint(trained, tmp_path, attack):
    path = craft(trained[1], tmp_path / "crafted.checkpoint.sda", **CHECKPOINT_ATTACKS[attack])
    with pytest.raises(container.SdaError, match="crafted.checkpoint.sda"):
        modelfile.load_checkpoint(path)


RESUME_ATTACKS = {**CHECKPOINT_ATTACKS, "position.epoch_step past the epoch": dict(position__epoch_step=10**6)}


@pytest.mark.parametrize("attack", ["position.epoch = -3", "no optimizer_param_groups",
                                    "position.epoch_step past the epoch"])
def test_sda_train_resume_refuses_a_crafted_checkpoint(trained, folder, tmp_path, attack):
    path = craft(trained[1], tmp_path / "crafted.checkpoint.sda", **RESUME_ATTACKS[attack])
    result = sda_limited("train", folder, "--resume", path, "--out", tmp_path / "out", timeout=120)
    refused(result, "crafted.checkpoint.sda")
    assert not list((tmp_path / "out").glob("*.sda")) if (tmp_path / "out").exists() else True


# ---- Item 15: sda reconstruct's own paths ---------------------------------------------------------------------


@pytest.fixture
def kick(folder, tmp_path):
    path = tmp_path / "kick.wav"
    shutil.copy(sorted(folder.glob("*.wav"))[0], path)
    return path


@pytest.mark.parametrize("name", ["kick.wav", "kick.oga", "kick.mp3"])  # .mp3: a format sda cannot even write
def test_reconstruct_never_overwrites_its_input(trained, kick, name):
    kick = kick.rename(kick.with_name(name))
    before = kick.read_bytes()
    refused(sda_limited("reconstruct", trained[0], kick, kick, "--force", timeout=60), "is the input file")
    assert kick.read_bytes() == before


def test_reconstruct_shows_control_characters_in_paths_escaped(trained, kick, tmp_path):
    source = kick.rename(kick.with_name("k\x1b]52;c;aGk=\x07\x1b[2J.wav"))
    result = subprocess.run([sys.executable, "-m", "sda", "reconstruct", trained[0], source, tmp_path / "o.wav"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout
    assert "k\\x1b]52;c;aGk=\\x07\\x1b[2J.wav: " in result.stdout


@pytest.mark.parametrize("output, words", [
    ("{tmp}", ["is a folder"]),
    ("{tmp}/out.xyz", ["extension is not one of"]),
    ("{tmp}/missing/out.wav", ["does not exist", "create it"]),
    ("{tmp}/existing.wav", ["exists", "--force"]),
])
def test_reconstruct_refuses_outputs_it_cannot_or_should_not_write(trained, kick, tmp_path, output, words):
    (tmp_path / "existing.wav").write_bytes(b"keep me")
    refused(sda_limited("reconstruct", trained[0], kick, output.format(tmp=tmp_path), timeout=60), *words)
    assert (tmp_path / "existing.wav").read_bytes() == b"keep me"


def test_reconstruct_refuses_an_empty_input_and_a_fifo_without_blocking(trained, tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, torch.zeros(0).numpy(), 22050)
    refused(sda_limited("reconstruct", trained[0], empty, tmp_path / "o.wav", timeout=60), "0 samples")
    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    refused(sda_limited("reconstruct", trained[0], fifo, tmp_path / "o.wav", timeout=60), "not a regular file")
    assert not (tmp_path / "o.wav").exists()


@pytest.mark.parametrize("name, format", [("out.flac", "FLAC"), ("out.ogg", "OGG")])
def test_reconstruct_with_force_replaces_an_output_atomically(trained, kick, tmp_path, name, format):
    out = tmp_path / name
    out.write_bytes(b"old")
    result = subprocess.run([sys.executable, "-m", "sda", "reconstruct", trained[0], kick, out, "--force"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sf.info(out).format == format and not list(tmp_path.glob(f".{name}.*.tmp"))


@pytest.mark.parametrize("config", [
    VQVAEConfig(codebook_size=64, epochs=1),
    VQVAEConfig(codebook_size=2, epochs=1, rvq_levels=4, downsample=1, hidden_channels=8, codebook_dim=1,
                audio=AudioConfig(n_mels=8)),
    VQVAEConfig(codebook_size=512, epochs=1, rvq_levels=2, downsample=8, hidden_channels=96, codebook_dim=13,
                audio=AudioConfig(n_mels=17)),
    VQVAEConfig(codebook_size=11, epochs=1, rvq_levels=3, downsample=2, hidden_channels=19, codebook_dim=11,
                audio=AudioConfig(n_mels=13)),  # every size one of the stand-in's own primes, crossed
])
def test_the_tensors_a_config_implies_are_those_of_the_real_model(config):
    """load_model and load_checkpoint check tensors against a stand-in model (sda.format.modelfile._layout): it must
    agree with the real model, whatever sizes the real one has, sizes equal to the stand-in's included."""
    real = ConvVQVAE(config)
    tensors, params = modelfile._layout(config)
    assert tensors == {name: (tuple(t.shape), t.dtype) for name, t in real.state_dict().items()}
    assert params == tuple(tuple(p.shape) for p in real.parameters())
