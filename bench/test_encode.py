"""Encode throughput: seconds of audio encoded per second by sda.model.codec.encode, the default model, on CPU.

    .venv/bin/python -m pytest bench/test_encode.py --benchmark-only -q -p no:cacheprovider

The default config (3 levels of 128 codes, dim 64, 80 mels, hidden 128 channels; random weights, codebooks marked
initialised: the cost does not depend on what the weights hold) encodes 10 s of generated sounds, as `sda encode`
gives each file to it: mono at the model's 22050 Hz (no resampling), and stereo at 48 kHz (mixed down and
resampled first). Also `sda encode` whole on a generated folder of 24 files (decoding, the rules, the codes file).
Each row prints its throughput in seconds of audio per second (extra_info "audio_s_per_s").
"""

import contextlib
import io

import pytest
import torch

import sda.codes
from sda.cli.main import main
from sda.config import VQVAEConfig
from sda.data.audio import read_audio, resample, to_mono
from sda.data.synth import write_collection
from sda.format import modelfile
from sda.model import codec
from sda.model.vqvae import ConvVQVAE

SECONDS = 10
CONFIG = VQVAEConfig(codebook_size=128, epochs=1).validate()
GROUP = f"encode: {SECONDS} s of audio, default model (3 x 128 codes), CPU, {torch.get_num_threads()} threads"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = ConvVQVAE(CONFIG).eval()
    for codebook in m.quantizer.codebooks:
        codebook.initialized.fill_(True)
    return m


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return write_collection(tmp_path_factory.mktemp("synth"), 24)


@pytest.fixture(scope="module")
def mono(collection):
    """[SECONDS x 22050]: the generated sounds laid end to end, at the model's rate."""
    rate = CONFIG.audio.sample_rate
    wave = torch.cat([resample(to_mono(w), sr, rate) for w, sr in map(read_audio, collection)])
    assert len(wave) >= SECONDS * rate
    return wave[:SECONDS * rate]


def _throughput(benchmark, seconds: float) -> None:
    benchmark.extra_info["audio_s_per_s"] = round(seconds / benchmark.stats.stats.median, 1)
    print(f"\n{benchmark.name}: {benchmark.extra_info['audio_s_per_s']} s of audio per second")


def test_encode_mono_at_the_models_rate(benchmark, model, mono):
    benchmark.group, benchmark.extra_info["baseline"] = GROUP, True
    codes = benchmark(codec.encode, model, mono, CONFIG.audio.sample_rate)
    assert codes.shape == (3, -(-len(mono) // 1024))
    _throughput(benchmark, SECONDS)


def test_encode_stereo_at_48_khz(benchmark, model, mono):
    benchmark.group = GROUP
    stereo = resample(torch.stack([mono, mono.flip(0)]), CONFIG.audio.sample_rate, 48000)
    codes = benchmark(codec.encode, model, stereo, 48000)
    assert codes.shape[0] == 3
    _throughput(benchmark, SECONDS)


def test_sda_encode_a_folder(benchmark, model, collection, tmp_path):
    benchmark.group = "sda encode: a generated folder of 24 files, default model, CPU"
    path = tmp_path / "m.sda"
    modelfile.save_model(path, model, {"model_name": "bench", "created": "now", "config": CONFIG.to_dict()})
    folder, out = collection[0].parent, tmp_path / "codes.sda"

    def encode():
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["encode", str(path), str(folder), "--out", str(out), "--force"]) == 0

    benchmark.pedantic(encode, rounds=3, iterations=1)
    seconds = sum(e.seconds for e in sda.codes.load(out).index)
    _throughput(benchmark, seconds)
