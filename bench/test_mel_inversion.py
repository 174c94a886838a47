"""Mel-to-audio inversion benchmark: 5 s of generated audio back from log-mel at the default AudioConfig.

    .venv/bin/python -m pytest bench/test_mel_inversion.py --benchmark-only -q -p no:cacheprovider

sda's MelInverter at its defaults (sda.data.audio.INVERSION_ITERS iterations of fast Griffin-Lim that also
re-estimates the magnitude; target: under 2 s on a 2-core CPU) against torchaudio's InverseMelScale followed
by torchaudio's GriffinLim at 32 iterations (MelInverter's pipeline before 2026-12-04, bench/phase_estimates.py).
Both include building the inverter, as a one-off `sda reconstruct` would.
"""

import pytest
import torch
import torchaudio.transforms as AT

from sda.config import AudioConfig
from sda.data.audio import LogMel, MelInverter, read_audio, resample, to_mono
from sda.data.synth import write_collection

AUDIO = AudioConfig()
SECONDS = 5
GROUP = f"mel inversion: {SECONDS} s at {AUDIO.sample_rate} Hz, n_fft={AUDIO.n_fft}"


@pytest.fixture(scope="module")
def log_mel(tmp_path_factory):
    """[1, n_mels, T]: generated sounds (drums, plucks, a chord, a texture) laid end to end, 5 s in all."""
    folder = tmp_path_factory.mktemp("synth")
    waves = [resample(to_mono(w), sr, AUDIO.sample_rate) for w, sr in map(read_audio, write_collection(folder, 6))]
    wave = torch.cat(waves)[: SECONDS * AUDIO.sample_rate]
    assert wave.shape[0] == SECONDS * AUDIO.sample_rate
    with torch.no_grad():
        return LogMel(AUDIO)(wave[None])


def torchaudio_inverter(log_mel):
    """MelInverter's pipeline with torchaudio's InverseMelScale in place of the pseudo-inverse."""
    frames = log_mel.shape[-1]
    to_linear = AT.InverseMelScale(n_stft=AUDIO.n_fft // 2 + 1, n_mels=AUDIO.n_mels, sample_rate=AUDIO.sample_rate)
    griffin_lim = AT.GriffinLim(n_fft=AUDIO.n_fft, hop_length=AUDIO.hop_length, power=1.0, n_iter=32,
                                rand_init=False, length=frames * AUDIO.hop_length)
    magnitude = to_linear(log_mel.exp())
    return griffin_lim(torch.cat([magnitude, magnitude[..., -1:]], dim=-1))


def plausible(wave, log_mel, length):
    assert wave.shape[-1] == length
    error = (LogMel(AUDIO)(wave) - log_mel).abs()
    assert error.median() < 0.3, f"median log-mel error {error.median():.2f}"


def test_sda_mel_inverter(benchmark, log_mel):
    benchmark.group, benchmark.extra_info["baseline"] = GROUP, True
    with torch.no_grad():
        plausible(MelInverter(AUDIO)(log_mel), log_mel, log_mel.shape[-1] * AUDIO.hop_length)
        benchmark(lambda: MelInverter(AUDIO)(log_mel))


def test_torchaudio_inverse_mel_scale(benchmark, log_mel):
    benchmark.group = GROUP
    with torch.no_grad():
        plausible(torchaudio_inverter(log_mel), log_mel, log_mel.shape[-1] * AUDIO.hop_length)
        benchmark(torchaudio_inverter, log_mel)

