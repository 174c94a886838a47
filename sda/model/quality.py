"""How close a reconstruction is to its input, in the figures codec papers report.

    q = quality(reference, output, input_mel, decoded_mel)   # a Quality record
    q.log_mel_l1        # the training loss's distance (sda.model.losses), decoder log-mel vs. the input's
    q.stft_distance     # multi-resolution STFT distance of the audio (spectral convergence + log-magnitude L1)
    q.si_sdr_db         # scale-invariant signal-to-distortion ratio of the audio, in dB

log_mel_l1 says how well the codes and decoder keep the spectrum; the two audio figures also count what the
phase estimate (Griffin-Lim) loses. SI-SDR compares waveforms sample by sample, so a reconstruction whose
phase was guessed scores near or below 0 dB even when it sounds close: read it to compare phase estimates,
not as a verdict on the codes. The audio figures of a silent reference are undefined: NaN.
"""

from dataclasses import dataclass

import torch

from sda.model.losses import reconstruction_loss

# (n_fft, hop) of the multi-resolution STFT distance, as in Parallel WaveGAN and auraloss's defaults.
STFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))
_EPS = 1e-7


@dataclass(frozen=True)
class Quality:
    log_mel_l1: float
    stft_distance: float
    si_sdr_db: float


def quality(reference: torch.Tensor, output: torch.Tensor, input_mel: torch.Tensor,
            decoded_mel: torch.Tensor) -> Quality:
    """reference, output [S] audio at one rate; input_mel, decoded_mel [n_mels, T] log-mel -> Quality."""
    frames = min(input_mel.shape[-1], decoded_mel.shape[-1])
    l1 = reconstruction_loss(decoded_mel[None, :, :frames], input_mel[None, :, :frames]).item()
    return Quality(l1, stft_distance(reference, output), si_sdr(reference, output))


def stft_distance(reference: torch.Tensor, output: torch.Tensor) -> float:
    """Mean over STFT_RESOLUTIONS of spectral convergence + mean |log magnitude difference|; 0 is identical."""
    n = min(len(reference), len(output))
    if not reference[:n].any():
        return float("nan")
    terms = []
    for n_fft, hop in STFT_RESOLUTIONS:
        window = torch.hann_window(n_fft)
        ref, out = (torch.stft(_long_enough(x[:n].float(), n_fft), n_fft, hop, window=window,
                               return_complex=True).abs() for x in (reference, output))
        convergence = (ref - out).norm() / ref.norm().clamp_min(_EPS)
        log_l1 = (ref.clamp_min(_EPS).log() - out.clamp_min(_EPS).log()).abs().mean()
        terms.append((convergence + log_l1).item())
    return sum(terms) / len(terms)


def si_sdr(reference: torch.Tensor, output: torch.Tensor) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019) of output [S] against reference [S], both made zero-mean."""
    n = min(len(reference), len(output))
    if not reference[:n].any():
        return float("nan")
    ref, out = reference[:n].double() - reference[:n].double().mean(), output[:n].double() - output[:n].double().mean()
    scale = (out @ ref) / (ref @ ref).clamp_min(_EPS)
    target, noise = scale * ref, out - scale * ref
    return (10 * torch.log10((target @ target).clamp_min(_EPS) / (noise @ noise).clamp_min(_EPS))).item()


def _long_enough(wave: torch.Tensor, n_fft: int) -> torch.Tensor:
    # torch.stft's reflection padding needs more than n_fft // 2 samples; a click of one sample still gets a figure.
    return torch.nn.functional.pad(wave, (0, max(0, n_fft - len(wave))))
