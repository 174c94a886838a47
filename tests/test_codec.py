"""sda.model.codec and sda.model.quality: any audio in, codes [L, T'] and a level-matched, unclipped wave out."""

import math

import pytest
import torch

from sda.config import OUTPUT_PEAK
from sda.data.audio import LogMel
from sda.model import codec
from sda.model.quality import si_sdr, stft_distance
from sda.model.vqvae import ConvVQVAE
from tests.helpers import SMALL

RATE = SMALL.audio.sample_rate


@pytest.fixture(scope="module")
def model():
    """A small model with initialised codebooks (random weights: the codec's plumbing does not need training)."""
    torch.manual_seed(0)
    config = SMALL.resolve(seconds=20.0, n_train_chunks=20)
    model = ConvVQVAE(config)
    mels = LogMel(config.audio)(torch.randn(64, config.audio.chunk_samples) * 0.1)  # more vectors than codes
    model.set_normalization(mels)
    model.initialize(mels)
    return model.eval()


def tone(seconds: float, rate: int, hz: float = 440.0, channels: int = 1) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return (0.5 * torch.sin(2 * math.pi * hz * t)).repeat(channels, 1)


def test_codes_are_a_grid_of_levels_by_positions(model):
    codes = codec.encode(model, tone(1.0, RATE), RATE)
    unit = SMALL.audio.hop_length * model.config.downsample
    assert codes.dtype == torch.int64 and codes.shape == (model.config.rvq_levels, -(-RATE // unit))
    assert codes.min() >= 0 and codes.max() < model.config.codebook_size


def test_rate_and_channels_are_taken_as_given(model):
    """A stereo 44.1 kHz file and its mono 22.05 kHz version encode alike (the model hears mono at its rate)."""
    stereo = tone(1.0, 44100, channels=2)
    mono = codec.prepare(stereo, 44100, model.config)
    assert torch.equal(codec.encode(model, stereo, 44100), codec.encode(model, mono, RATE))


def test_decode_gives_the_length_and_rate_asked(model):
    codes = codec.encode(model, tone(0.5, RATE), RATE)
    assert codec.decode(model, codes, samples=1000).shape == (1000,)
    full = codec.decode(model, codes)
    assert codec.decode(model, codes, rate=2 * RATE).shape == (2 * len(full),)


def test_fewer_levels_decode_to_what_those_levels_give(model):
    """The first l rows of a grid decode through the first l codebooks; l = L is the whole grid."""
    codes = codec.encode(model, tone(0.5, RATE), RATE)
    whole = codec.decode_mel(model, codes)
    assert torch.equal(codec.decode_mel(model, codes[:model.config.rvq_levels]), whole)
    one = codec.decode_mel(model, codes[:1])
    assert one.shape == whole.shape and not torch.equal(one, whole)
    with pytest.raises(ValueError, match="1 to 3 levels"):
        codec.decode_mel(model, torch.zeros(4, 5, dtype=torch.long))


def test_reconstruct_follows_the_input_rate_and_length(model):
    for rate, samples in [(44100, 44100), (8000, 1234), (RATE, 1)]:
        r = codec.reconstruct(model, torch.randn(2, samples) * 0.1, rate)
        assert r.rate == rate and r.wave.shape == (samples,)
    assert codec.reconstruct(model, tone(0.3, 44100), 44100, out_rate=16000).wave.shape == (4800,)


@pytest.mark.parametrize("name, wave", [
    ("full-scale square", torch.sign(torch.sin(torch.arange(RATE) / 3.0))[None]),
    ("click", torch.nn.functional.pad(torch.ones(1, 1), (5000, 5000))),
    ("silence", torch.zeros(1, RATE)),
    ("one sample", torch.ones(1, 1)),
    ("beyond full scale (float file)", 4 * tone(0.5, RATE)),
])
def test_hostile_inputs_never_clip_and_never_crash(model, name, wave):
    for rate in (RATE, 48000):
        r = codec.reconstruct(model, wave, rate)
        assert r.wave.shape == (wave.shape[-1],), name
        assert torch.isfinite(r.wave).all() and r.wave.abs().max() <= OUTPUT_PEAK + 1e-6, name
        assert r.limited_db <= 0 and math.isfinite(r.gain_db)


def test_loudness_is_matched_then_limited():
    quiet = 0.01 * torch.sin(torch.arange(1000.0))
    out, gain_db, limited_db = codec.match_loudness(quiet, 10 * quiet)
    assert gain_db == pytest.approx(20.0, abs=1e-3) and limited_db == 0
    assert torch.allclose(out, 10 * quiet, atol=1e-6)
    out, gain_db, limited_db = codec.match_loudness(quiet, torch.ones(1000))  # RMS 1 would need peaks of 1.41
    assert out.abs().max() == pytest.approx(OUTPUT_PEAK) and limited_db < -3
    assert codec.match_loudness(torch.zeros(10), quiet)[1:] == (0.0, 0.0)  # silence stays silence


def test_quality_figures_on_known_signals():
    t = torch.arange(22050) / 22050
    a = torch.sin(2 * math.pi * 440 * t)
    assert stft_distance(a, a) == pytest.approx(0, abs=1e-5) and si_sdr(a, 3 * a) > 100  # scale does not count
    noise = torch.randn(22050, generator=torch.Generator().manual_seed(0))
    assert si_sdr(a, a + 0.1 * noise) == pytest.approx(10 * math.log10(0.5 / 0.01), abs=0.5)  # powers 0.5 and 0.01
    assert 0 < stft_distance(a, a + 0.01 * noise) < stft_distance(a, a + 0.1 * noise)
    assert math.isnan(si_sdr(torch.zeros(100), a[:100])) and math.isnan(stft_distance(torch.zeros(100), a[:100]))


def test_a_reconstruction_reports_its_quality(model):
    r = codec.reconstruct(model, tone(1.0, RATE), RATE)
    assert r.quality.log_mel_l1 > 0 and r.quality.stft_distance > 0 and math.isfinite(r.quality.si_sdr_db)
    assert r.mel.shape == (model.config.audio.n_mels, r.codes.shape[1] * model.config.downsample)
