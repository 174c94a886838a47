"""A trained ConvVQVAE as a codec: audio of any length, rate and channel count to a grid of codes, and back.

    codes = encode(model, wave, rate)           # wave [C, S] (or [S]) at any rate -> codes [L, T'] int64
    mel = decode_mel(model, codes)              # [l, T'], the first l <= L levels -> log-mel [n_mels, T' x downsample]
    out = decode(model, codes, samples, rate)   # [l, T'] -> wave [samples] at rate (default: the model's rate)
    r = reconstruct(model, wave, rate)          # a Reconstruction: at the input's rate, loudness matched, never clipped
    out, gain_db, limited_db = match_rms(out, rms(mono))   # a decoded wave as loud as its source (sda decode)

Rows of a code grid are levels, columns time positions, one every hop_length x downsample samples at the
model's rate (sda.model.bitrate.frame_rate per second). The model sees whole positions only: mono audio at
its rate is padded with silence to a multiple of that (and at least one FFT window) and the decoded audio cut
back. Log-mels are inverted by Griffin-Lim (sda.data.audio.MelInverter), deterministically. Every function
only reads the model (no codebook update) and keeps no gradients; every frontend (sda encode, decode,
reconstruct, the page) goes through these.
"""

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F

from sda.config import OUTPUT_PEAK, VQVAEConfig
from sda.data.audio import LogMel, MelInverter, resample, to_mono
from sda.model.quality import Quality, quality
from sda.model.vqvae import ConvVQVAE


@dataclass(frozen=True)
class Reconstruction:
    """What reconstruct gives: the audio out, the codes it went through, and what was done to its level."""

    wave: torch.Tensor  # [S] float32 at rate, |sample| <= OUTPUT_PEAK
    rate: int  # Hz
    codes: torch.Tensor  # [L, T'] int64
    input_mel: torch.Tensor  # [n_mels, T] the log-mel the encoder saw (input_mel)
    mel: torch.Tensor  # [n_mels, T] the decoder's log-mel, T = T' x downsample
    gain_db: float  # applied to match the input's RMS (0 when the input or the output is silent)
    limited_db: float  # further attenuation so that no sample exceeds OUTPUT_PEAK: 0, or negative
    quality: Quality  # input vs. output at the model's rate


def prepare(wave: torch.Tensor, rate: int, config: VQVAEConfig) -> torch.Tensor:
    """wave [C, S] or [S] at rate -> mono [S'] at config.audio.sample_rate."""
    return resample(to_mono(wave if wave.dim() == 2 else wave[None]), rate, config.audio.sample_rate)


def padded(wave: torch.Tensor, config: VQVAEConfig) -> torch.Tensor:
    """mono wave [S] -> [S'], S' >= max(S, n_fft) a multiple of hop_length x downsample (zeros at the end)."""
    audio = config.audio
    unit = audio.hop_length * config.downsample
    # shape[-1] and sym_max (the builtin max on plain ints) keep the length symbolic when sda.model.export
    # traces this: len() and max() would fix the exported encoder to the example's length.
    samples = wave.shape[-1]
    target = cast(int, -(-torch.sym_max(samples, audio.n_fft) // unit) * unit)  # an int, or a SymInt when traced
    return F.pad(wave, (0, target - samples))


@torch.no_grad()
def input_mel(model: ConvVQVAE, mono: torch.Tensor) -> torch.Tensor:
    """mono wave [S] at the model's rate -> the log-mel [n_mels, T] the encoder sees (of the padded wave)."""
    return LogMel(model.config.audio)(padded(mono, model.config)[None])[0]


@torch.no_grad()
def encode_mono(model: ConvVQVAE, mono: torch.Tensor) -> torch.Tensor:
    """mono wave [S] at the model's rate -> codes [L, T'], T' = len(padded(mono)) / (hop_length x downsample)."""
    return model.encode(input_mel(model, mono)[None])[0].T


def encode(model: ConvVQVAE, wave: torch.Tensor, rate: int) -> torch.Tensor:
    """wave [C, S] or [S] at rate -> codes [L, T'] int64."""
    return encode_mono(model, prepare(wave, rate, model.config))


@torch.no_grad()
def decode_mel(model: ConvVQVAE, codes: torch.Tensor) -> torch.Tensor:
    """codes [l, T'] of the first l <= L levels -> the decoder's log-mel [n_mels, T' x downsample]."""
    levels = model.config.rvq_levels
    if codes.dim() != 2 or not 1 <= codes.shape[0] <= levels:
        raise ValueError(f"codes must be [levels, positions] with 1 to {levels} levels, not {tuple(codes.shape)}")
    return model.decode(codes.T[None].long())[0]


@torch.no_grad()
def decode(model: ConvVQVAE, codes: torch.Tensor, samples: int | None = None, rate: int | None = None) -> torch.Tensor:
    """codes [l, T'] -> wave [S] at rate (default the model's), S covering `samples` at the model's rate
    (default all T' x hop_length x downsample of them)."""
    wave = MelInverter(model.config.audio)(decode_mel(model, codes))[:samples]
    return resample(wave, model.config.audio.sample_rate, rate) if rate else wave


def reconstruct(model: ConvVQVAE, wave: torch.Tensor, rate: int, out_rate: int | None = None,
                levels: int | None = None) -> Reconstruction:
    """wave [C, S] or [S] at rate -> its Reconstruction at out_rate (default rate) through the first `levels`
    (default all), as loud as the input (RMS) but no sample above OUTPUT_PEAK. Its quality figures compare
    the two at the model's rate (what the model heard), the output's level matched."""
    model_rate, out_rate = model.config.audio.sample_rate, out_rate or rate
    mono = prepare(wave, rate, model.config)
    heard = input_mel(model, mono)
    codes = model.encode(heard[None])[0].T
    mel = decode_mel(model, codes[:levels])
    out = MelInverter(model.config.audio)(mel)[:len(mono)]
    out, gain_db, limited_db = match_loudness(out, mono)
    figures = quality(mono, out, heard, mel)
    if out_rate != model_rate:  # limited again: resampling can overshoot the peak a little
        out, more = limited(resample(out, model_rate, out_rate)[:-(-wave.shape[-1] * out_rate // rate)])
        limited_db += more
    return Reconstruction(out, out_rate, codes, heard, mel, gain_db, limited_db, figures)


def match_loudness(wave: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """wave [S] scaled to reference's RMS, then limited: (wave, gain_db, limited_db).

    The decoder's log-mel, and less so Griffin-Lim's phase guess, lose level unevenly (measured: bench/RESULTS.md,
    "which mel inversion"), so the level is set from the input, not trusted from the output. A silent wave or
    reference keeps its level.
    """
    return match_rms(wave, rms(reference))


def match_rms(wave: torch.Tensor, target: float) -> tuple[torch.Tensor, float, float]:
    """match_loudness to a reference known by its RMS only (sda decode: the source's, from the codes file's index)."""
    now = rms(wave)
    gain = target / now if now > 0 and target > 0 else 1.0
    out, limited_db = limited(wave * gain)
    return out, _db(gain), limited_db


def rms(wave: torch.Tensor) -> float:
    """The root mean square of wave [S] (0 for no samples)."""
    return wave.square().mean().sqrt().item() if len(wave) else 0.0


def limited(wave: torch.Tensor, peak: float = OUTPUT_PEAK) -> tuple[torch.Tensor, float]:
    """wave [S] scaled down, if it must be, so that no sample exceeds peak: (wave, the attenuation in dB, <= 0)."""
    top = wave.abs().max().item() if len(wave) else 0.0
    scale = peak / top if top > peak else 1.0
    return wave * scale, _db(scale)


def _db(ratio: float) -> float:
    return 20 * math.log10(ratio)
