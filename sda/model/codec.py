"""A trained ConvVQVAE as a codec: audio to a grid of codes and back.

    wave = prepare(wave, rate, model.config)    # [C, S] at any rate -> [S] mono at the model's rate
    codes = encode(model, wave)                 # [S] -> [1, T', L]: one code per level and time position
    out = decode(model, codes, len(wave))       # [1, T', L] -> [S] audio at the model's rate
    out, codes = reconstruct(model, wave)       # both at once

The model sees whole code positions only: the audio is padded with silence to a multiple of
hop_length x downsample samples (and at least one FFT window), and the decoded audio cut back to
the input's length. Log-mels are inverted by Griffin-Lim (sda.data.audio.MelInverter), deterministic.
Every function only reads the model (no codebook update) and keeps no gradients.
"""

import torch
import torch.nn.functional as F

from sda.config import VQVAEConfig
from sda.data.audio import LogMel, MelInverter, resample, to_mono
from sda.model.vqvae import ConvVQVAE


def prepare(wave: torch.Tensor, rate: int, config: VQVAEConfig) -> torch.Tensor:
    """wave [C, S] at rate -> mono [S'] at config.audio.sample_rate."""
    return resample(to_mono(wave), rate, config.audio.sample_rate)


def padded(wave: torch.Tensor, config: VQVAEConfig) -> torch.Tensor:
    """mono wave [S] -> [S'], S' >= max(S, n_fft) a multiple of hop_length x downsample (zeros at the end)."""
    audio = config.audio
    unit = audio.hop_length * config.downsample
    target = -(-max(len(wave), audio.n_fft) // unit) * unit
    return F.pad(wave, (0, target - len(wave)))


@torch.no_grad()
def encode(model: ConvVQVAE, wave: torch.Tensor) -> torch.Tensor:
    """mono wave [S] at the model's rate -> codes [1, T', L], T' = len(padded(wave)) / (hop_length x downsample)."""
    return model.encode(LogMel(model.config.audio)(padded(wave, model.config)[None]))


@torch.no_grad()
def decode(model: ConvVQVAE, codes: torch.Tensor, samples: int | None = None) -> torch.Tensor:
    """codes [1, T', L] -> wave [S] at the model's rate, S = samples (default all T' x hop_length x downsample)."""
    return MelInverter(model.config.audio)(model.decode(codes))[0, :samples]


def reconstruct(model: ConvVQVAE, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mono wave [S] at the model's rate -> (its reconstruction [S], the codes [1, T', L] it went through)."""
    codes = encode(model, wave)
    return decode(model, codes, len(wave)), codes
