"""Audio in and out: decoding files, mono and resampling, and the log-mel front end with its inverse.

Files are read with soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, MP3, AIFF at any bit depth), never with
torchaudio.load. The model sees log-magnitude mel spectrograms of mono audio at AudioConfig.sample_rate:
`LogMel` turns a chunk of chunk_samples into exactly chunk_frames frames, and `MelInverter` turns frames
back into sound (pseudo-inverse of the mel filterbank, then Griffin-Lim) for previews and `sda reconstruct`.

    wave, sr = read_audio("kick.wav")                      # [C, S] float32
    mono = resample(to_mono(wave), sr, audio.sample_rate)  # [S']
    mel = LogMel(audio)(mono[None])                        # [1, n_mels, S' // hop_length]
    back = MelInverter(audio)(mel)                         # [1, frames * hop_length]
"""

import contextlib
import os
import secrets
from pathlib import Path

import soundfile as sf
import torch
import torchaudio.functional as AF
import torchaudio.transforms as AT
from torch import nn

from sda.config import AudioConfig

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif")
LOG_FLOOR = 1e-5  # magnitude floor before the log: -100 dB, well under any audible content


def is_audio_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def read_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Decode a whole file: (wave [C, S] float32 in [-1, 1] for integer formats, native sample rate)."""
    data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)  # [S, C]
    return torch.from_numpy(data.T.copy()), sample_rate


def write_audio(path: str | Path, wave: torch.Tensor, sample_rate: int) -> None:
    """Write wave [S] or [C, S] as 16-bit PCM, or Vorbis for .ogg (clipped to [-1, 1]; the format follows the
    extension), atomically:
    a failed write (a full disk) leaves the file that was there, and raises OSError."""
    data = wave.detach().float().clamp(-1, 1).cpu().numpy()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fmt = _format_of(path)
        subtype = "VORBIS" if fmt == "OGG" else "PCM_16"  # Ogg holds only compressed audio
        sf.write(tmp, data.T if data.ndim == 2 else data, sample_rate, subtype=subtype, format=fmt)
        os.replace(tmp, path)
    except (OSError, sf.SoundFileError, TypeError, ValueError) as exc:  # ValueError: not a format soundfile writes
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno is not None:  # a full disk keeps its errno, for the caller
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}") from None
        raise OSError(f"cannot write {path}: {exc}") from None


def _format_of(path: Path) -> str:
    """soundfile's format name for path's extension (the temporary file's own extension is .tmp)."""
    return {".aif": "AIFF", ".oga": "OGG"}.get(path.suffix.lower(), path.suffix[1:].upper())


def to_mono(wave: torch.Tensor) -> torch.Tensor:
    """[C, S] -> [S]: the mean of the channels."""
    return wave.mean(dim=0)


def resample(wave: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """[..., S] at orig_sr -> [..., ceil(S * new_sr / orig_sr)] at new_sr (band-limited sinc)."""
    if orig_sr == new_sr:
        return wave
    return AF.resample(wave, orig_sr, new_sr)


def _mel_spectrogram(audio: AudioConfig) -> AT.MelSpectrogram:
    # One definition for both directions, so the inverse uses exactly the filterbank of the forward.
    return AT.MelSpectrogram(sample_rate=audio.sample_rate, n_fft=audio.n_fft, hop_length=audio.hop_length,
                             n_mels=audio.n_mels, power=1.0, center=True)


class LogMel(nn.Module):
    """wave [B, S] -> log-magnitude mel [B, n_mels, S // hop_length].

    With center=True the STFT yields S // hop + 1 frames; the last one is centred past the end of the
    chunk (mostly padding), so it is dropped and a chunk of chunk_samples gives exactly chunk_frames.
    S must exceed n_fft // 2 (the STFT reflects that much at each end); a chunk always does.
    """

    def __init__(self, audio: AudioConfig):
        super().__init__()
        self.hop_length = audio.hop_length
        self.mel = _mel_spectrogram(audio)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        frames = wave.shape[-1] // self.hop_length
        mel = self.mel(wave)[..., :frames]
        return torch.log(mel.clamp_min(LOG_FLOOR))


class MelInverter(nn.Module):
    """log-mel [..., n_mels, T] -> wave [..., T * hop_length], deterministic.

    Mel to linear magnitude uses the pseudo-inverse of the mel filterbank, computed once here. It is the
    minimum-norm least-squares answer, which torchaudio's InverseMelScale recomputes with lstsq on every
    call (before torchaudio 2.1 it ran up to 100000 SGD steps instead, far slower). Unlike lstsq's default
    'gels' driver, pinv also copes with filterbanks that have empty mel bands (n_mels high for the n_fft,
    which AudioConfig allows), where InverseMelScale raises. Griffin-Lim then estimates the phase.
    """

    def __init__(self, audio: AudioConfig, n_iter: int = 32):
        super().__init__()
        self.hop_length = audio.hop_length
        filterbank = _mel_spectrogram(audio).mel_scale.fb  # [n_freqs, n_mels]; mel = fb.T @ magnitude
        self.register_buffer("mel_to_linear", torch.linalg.pinv(filterbank.T))  # [n_freqs, n_mels]
        self.n_fft, self.n_iter = audio.n_fft, n_iter

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        frames = log_mel.shape[-1]
        magnitude = (self.mel_to_linear @ log_mel.exp()).clamp_min(0)  # [..., n_freqs, T]
        # LogMel dropped the final centred frame; restore one (a copy of the last) so that the STFT
        # inside Griffin-Lim, of T * hop samples, has T + 1 frames just like the input.
        magnitude = torch.cat([magnitude, magnitude[..., -1:]], dim=-1)
        griffin_lim = AT.GriffinLim(n_fft=self.n_fft, hop_length=self.hop_length, power=1.0, n_iter=self.n_iter,
                                    rand_init=False, length=frames * self.hop_length)
        return griffin_lim.to(magnitude.device)(magnitude)
