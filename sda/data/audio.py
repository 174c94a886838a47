"""Audio in and out: decoding files, mono and resampling, and the log-mel front end with its inverse.

Files are read with soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, MP3, AIFF at any bit depth), never with
torchaudio.load. The model sees log-magnitude mel spectrograms of mono audio at AudioConfig.sample_rate:
`LogMel` turns a chunk of chunk_samples into exactly chunk_frames frames, and `MelInverter` turns frames
back into sound (pseudo-inverse of the mel filterbank, then Griffin-Lim) for previews and `sda reconstruct`.

    wave, sr = read_audio("kick.wav")                      # [C, S] float32, the whole file
    mono = resample(to_mono(wave), sr, audio.sample_rate)  # [S']
    mel = LogMel(audio)(mono[None])                        # [1, n_mels, S' // hop_length]
    back = MelInverter(audio)(mel)                         # [1, frames * hop_length]

    with AudioSource("take.wav", audio.sample_rate) as source:   # any length: read only what is needed
        source.read(0, audio.chunk_samples)                      # [chunk_samples] mono at the model's rate
    AudioSource("take.wav", None)                                # mono at the file's own rate

A file is opened only if it is a regular file (a named pipe or a device would block or never end), and
only at sample rates in config.FILE_SAMPLE_RATES; every way a file can fail is an AudioFileError whose
message says why in words.
"""

import errno
import functools
import math
import os
import re
import secrets
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from fractions import Fraction
from pathlib import Path

import soundfile as sf
import torch
import torchaudio.functional as AF
import torchaudio.transforms as AT
from torch import nn

from sda.config import FILE_SAMPLE_RATES, AudioConfig
from sda.errors import AudioFileError
from sda.text import plural, printable

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif")
WRITABLE_AUDIO = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif")  # what write_audio writes (not MP3)
LOG_FLOOR = 1e-5  # magnitude floor before the log: -100 dB, well under any audible content
# Resampling takes blocks of p input samples to q output samples (the rates' ratio, reduced), with a kernel of
# q x (p + 2 x width) taps and about q multiply-adds per input sample. Terms beyond these bounds (a rate such as
# 22051 Hz, coprime with 22050, gives 22051:22050) are replaced by the nearest fraction within them, which moves
# the rate by under 0.06% (a pitch error under 1 cent). Every standard rate to every standard rate is exact.
MAX_RATIO_TERMS = (8192, 1024)  # (p, q)
READ_SAMPLES = 1 << 20  # samples (frames x channels) decoded by one read: bounded whatever the channel count
PIECE_FRAMES = 1 << 20  # input frames resampled at once by AudioSource.read
# After a seek, libsndfile's MP3 and Vorbis decoders give wrong samples for up to about 2000 frames (measured:
# the decoder starts without the previous block's overlap and bit reservoir). So a seek in a file that is not
# PCM lands this many frames early, and those frames are decoded and dropped.
SEEK_PREROLL = 8192
_EXACT_SEEK = ("FLOAT", "DOUBLE", "ULAW", "ALAW")  # and every PCM_ subtype (WAV, AIFF, FLAC)
# MelInverter's defaults, measured on 23 real sounds (11-12 per collection, 3 s at most) with two trained models
# (bench/phase_estimates.py; bench/RESULTS.md, 2026-12-04). Against sda before (the pseudo-inverse's magnitude kept,
# 32 iterations from zero phase), on the real audio's log-mel: the output's log-mel 2.2-2.4x closer to the input's
# (L1 0.066-0.073, was 0.158-0.165), the STFT distance 5-11% lower, the RMS ratio 0.98-0.99 (was 0.95-0.96); on the
# decoders' log-mel the first 2-2.4x closer, the STFT distance within 1%. 128 iterations gain 3% more STFT distance at
# twice the time; 64 takes most of the log-mel gain, at 1.5-3x the old inverter's time per second of audio.
INVERSION_ITERS = 64
INVERSION_MOMENTUM = 0.99  # "fast Griffin-Lim"; 0 (plain Griffin-Lim): 1.3-1.5x further from the mel at 64
INVERSION_SEED = 0  # of the starting phases: random, but the same every time (MelInverter._start_phase: why)
_MAGNITUDE_EPS = 1e-9


def is_audio_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def check_sample_rate(rate: int) -> None:
    low, high = FILE_SAMPLE_RATES
    if not low <= rate <= high:
        raise AudioFileError(f"sample rate {rate} Hz is outside what sda reads ({low} to {high} Hz)")


@contextmanager
def open_audio(path: str | Path) -> Iterator[sf.SoundFile]:
    """The file, opened for reading with soundfile, if it is a regular audio file at a rate sda reads.

    Raises AudioFileError naming what it is instead (a named pipe, a broken link, unreadable, not decodable);
    libsndfile errors while reading inside the block become one too.
    """
    fd = _open_regular(path)
    try:
        with _without_mpg123_notes() if _maybe_mpeg(fd) else _nothing():
            try:
                file = sf.SoundFile(fd, closefd=False)
            except sf.LibsndfileError as exc:
                raise AudioFileError(_decode_failure(exc)) from None
            except (RuntimeError, ValueError, TypeError, OSError) as exc:  # other decoder failures
                raise AudioFileError(f"could not decode: {printable(str(exc))[:80]}") from None
            with file:
                check_sample_rate(file.samplerate)
                try:
                    yield file
                except sf.LibsndfileError as exc:
                    raise AudioFileError(_decode_failure(exc)) from None
    finally:
        os.close(fd)


def read_audio(path: str | Path, max_seconds: float | None = None,
               max_samples: int | None = None) -> tuple[torch.Tensor, int]:
    """Decode a whole file: (wave [C, S] float32 in [-1, 1] for integer formats, native sample rate).

    For one file a user names; a folder's files are read through AudioSource, in bounded memory.
    max_seconds, max_samples (frames x channels: what memory the decoded file takes): a file past either is an
    AudioFileError saying so, raised before it is decoded (from its header), or, where the header under-states the
    length (MP3 estimates it), once one frame past the limit is read.
    """
    with open_audio(path) as file:
        seconds_limit = math.inf if max_seconds is None else int(max_seconds * file.samplerate)
        samples_limit = math.inf if max_samples is None else max_samples // file.channels

        def check(frames: int, known: bool) -> None:
            if max_seconds is not None and frames > seconds_limit:
                raise AudioFileError(_too_long(frames / file.samplerate if known else None, max_seconds))
            if max_samples is not None and frames > samples_limit:
                raise AudioFileError(_too_many(file, max_samples))

        check(file.frames, known=True)
        limit = min(seconds_limit, samples_limit)
        data = file.read(-1 if limit == math.inf else int(limit) + 1, dtype="float32", always_2d=True)  # [S, C]
        check(len(data), known=False)
        return torch.from_numpy(data.T.copy()), file.samplerate


def _too_many(file: sf.SoundFile, max_samples: int) -> str:
    return (f"the file holds {plural(file.channels, 'channel')} at {file.samplerate} Hz for "
            f"{file.frames / file.samplerate:.0f} s, more than the {max_samples / 1e6:g} million samples sda takes "
            "whole; cut it into shorter files, or mix it down to fewer channels")


def _too_long(seconds: float | None, max_seconds: float) -> str:
    length = f"{seconds:.0f} s long" if seconds is not None else f"over {max_seconds:.0f} s long"
    minutes = f" ({max_seconds / 60:g} minutes)" if max_seconds >= 60 else ""
    return (f"the file is {length}: sda takes audio files of at most {max_seconds:.0f} s{minutes} whole; cut it "
            "into shorter files")


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
        with suppress(OSError):
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


def resampling_ratio(orig_sr: int, new_sr: int) -> tuple[int, int]:
    """(p, q): resampling from orig_sr to new_sr takes p input samples to q output samples.

    The exact ratio, reduced, when its terms are within MAX_RATIO_TERMS; else the nearest fraction whose
    terms are (see MAX_RATIO_TERMS). Both rates must be in FILE_SAMPLE_RATES.
    """
    for rate in (orig_sr, new_sr):
        if not FILE_SAMPLE_RATES[0] <= rate <= FILE_SAMPLE_RATES[1]:
            raise ValueError(f"cannot resample at {rate} Hz: rates must be in {FILE_SAMPLE_RATES[0]}-"
                             f"{FILE_SAMPLE_RATES[1]} Hz")
    max_p, max_q = MAX_RATIO_TERMS
    gcd = math.gcd(orig_sr, new_sr)
    p, q = orig_sr // gcd, new_sr // gcd
    if p <= max_p and q <= max_q:
        return p, q
    near = Fraction(orig_sr, new_sr).limit_denominator(max(1, min(max_q, max_p * new_sr // orig_sr)))
    return max(1, near.numerator), near.denominator


def resample(wave: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """[..., S] at orig_sr -> [..., ceil(S * q / p)] at new_sr (band-limited sinc; p, q = resampling_ratio)."""
    p, q = resampling_ratio(orig_sr, new_sr)
    if p == q:
        return wave
    return AF.resample(wave, p, q)


class AudioSource:
    """One audio file read as mono at `rate`, a stretch at a time, in memory bounded whatever the file's
    length, channel count or sample rate: only the frames a stretch needs are decoded.

        with AudioSource("take.wav", 22050) as source:
            source.frames, source.sample_rate, source.channels   # the file, as its header says
            source.length                                         # its samples at 22050 Hz
            source.read(0, 16384)              # [16384] float32 mono at 22050 Hz; zeros past the end
            source.peak, source.finite         # over every sample decoded so far, every channel

    A stretch is what resample(to_mono(whole file)) holds there, up to float rounding: blocks of p input
    frames give q output samples (resampling_ratio), and each stretch is resampled from whole blocks with
    enough frames on either side for the kernel. A file that ends before its header says reads as zeros.
    """

    def __init__(self, path: str | Path, rate: int | None):
        with ExitStack() as stack:
            self._file = stack.enter_context(open_audio(path))
            self.sample_rate, self.channels = self._file.samplerate, self._file.channels
            self.frames = max(0, self._file.frames)
            self._exact_seek = self._file.subtype.startswith("PCM_") or self._file.subtype in _EXACT_SEEK
            self._p, self._q = resampling_ratio(self.sample_rate, rate or self.sample_rate)  # None: the file's own
            self.length = -(-self.frames * self._q // self._p)
            self._resampler = None if self._p == self._q else _resampler(self._p, self._q)
            # Blocks of margin before a stretch: the kernel reaches `width` input frames either side of a block.
            self._margin = math.ceil(self._resampler.width / self._p) if self._resampler else 0
            self._piece = max(self._q, PIECE_FRAMES * self._q // self._p)  # output samples per resampling
            self.peak, self.finite = 0.0, True
            self._close = stack.pop_all().close

    def __enter__(self) -> "AudioSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._close()

    def read(self, start: int, stop: int) -> torch.Tensor:
        """[stop - start] float32: output samples start..stop at the source's rate, zeros past `length`."""
        out = torch.zeros(stop - start)
        end = min(stop, self.length)
        for lo in range(start, end, self._piece):
            hi = min(end, lo + self._piece)
            out[lo - start: hi - start] = self._stretch(lo, hi)
        return out

    def _stretch(self, lo: int, hi: int) -> torch.Tensor:
        if self._resampler is None:
            return self._mono(lo, hi)
        p, q = self._p, self._q
        # Output block b (samples b*q .. b*q + q - 1) comes from input frames b*p - width .. b*p + p + width.
        first, last = max(0, lo // q - self._margin), -(-hi // q)
        resampled = self._resampler(self._mono(first * p, min(self.frames, last * p + self._resampler.width)))
        stretch = resampled[lo - first * q: hi - first * q]
        # torchaudio sizes its output as ceil(q * n / p) in float32, which can round a file's last sample away
        # (227163 frames from 48 kHz to 22050 Hz give 104353 samples, not 104354): that sample is silence here.
        return torch.nn.functional.pad(stretch, (0, hi - lo - len(stretch)))

    def _mono(self, start: int, stop: int) -> torch.Tensor:
        """[stop - start] float32: input frames start..stop, the mean of the channels; zeros past the file's end."""
        mono = torch.zeros(stop - start)
        step = max(1, READ_SAMPLES // self.channels)
        try:
            if self._file.tell() != start:
                early = 0 if self._exact_seek else min(start, SEEK_PREROLL)
                self._file.seek(start - early)
                while early > 0:  # decoded only to set the decoder up
                    early -= len(self._file.read(min(step, early), dtype="float32", always_2d=True)) or early
            at = 0
            while at < len(mono):
                block = self._file.read(min(step, len(mono) - at), dtype="float32", always_2d=True)  # [n, C]
                if not len(block):
                    break  # the file ends before its header said
                self._note(block)
                wave = torch.from_numpy(block)
                mono[at: at + len(wave)] = wave[:, 0] if self.channels == 1 else wave.mean(dim=1)
                at += len(wave)
        except sf.LibsndfileError as exc:
            raise AudioFileError(_decode_failure(exc)) from None
        return mono

    def _note(self, block) -> None:
        """Peak and finiteness over block [n, C] (numpy): max and min propagate NaN, and are fast."""
        if self.finite and len(block):
            high, low = float(block.max()), float(block.min())
            self.finite = math.isfinite(high) and math.isfinite(low)
            self.peak = max(self.peak, high, -low)


def _resampler(p: int, q: int) -> AT.Resample:
    """torchaudio's resampler from p to q; float32, so the same kernel as resample() builds (AF.resample).

    A folder's files come at a few rates: kernels of up to about 4 MB (p x q up to 2**20, every standard rate)
    are built once and kept, 16 at most; larger ones (odd rates) are built for their file only.
    """
    return _kept_resampler(p, q) if p * q <= 1 << 20 else AT.Resample(p, q, dtype=torch.float32)


@functools.lru_cache(maxsize=16)
def _kept_resampler(p: int, q: int) -> AT.Resample:
    return AT.Resample(p, q, dtype=torch.float32)


# Opening: regular files only, never blocking --------------------------------------------------------------

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0) \
    | getattr(os, "O_BINARY", 0)
_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def _open_regular(path: str | Path) -> int:
    """A read-only descriptor of path, if it is a regular file (else AudioFileError saying what it is).

    Opening a named pipe blocks until a writer comes, reading a device may never end, and opening one can
    act on it: so stat first, open only what is regular, without blocking (O_NONBLOCK), and look again at
    what was opened (fstat), as the path may have been swapped in between.
    """
    try:
        _check_regular(os.stat(path).st_mode)
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise AudioFileError(_unreadable(exc, path)) from None
    try:
        _check_regular(os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_regular(mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "a special file")
        raise AudioFileError(f"not a regular file ({kind})")


def _unreadable(exc: OSError, path) -> str:
    if exc.errno == errno.ELOOP:
        return "a link loop (the link leads back to itself)"
    if exc.errno == errno.ENOENT:
        return "a broken link (what it points to does not exist)" if os.path.islink(path) else "no longer exists"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "cannot be read: permission denied"
    return f"cannot be read: {printable(exc.strerror or str(exc)).lower()}"


def _decode_failure(exc: sf.LibsndfileError) -> str:
    return f"could not decode: {printable(exc.error_string).rstrip('.')}"


# libmpg123's notes -------------------------------------------------------------------------------------------

# Headers of the formats libsndfile reads that are not MPEG: their files never reach libmpg123.
_NOT_MPEG = (b"RIFF", b"RIFX", b"RF64", b"BW64", b"FORM", b"fLaC", b"OggS", b"caff", b".snd", b"riff")
_MPG123_LINE = re.compile(rb"(Note|Warning|Error): |\[[^\]\n]*mpg123[^\]\n]*\]")
_STDERR_LOCK = threading.RLock()
_stderr_redirected = False


def _maybe_mpeg(fd: int) -> bool:
    head = os.read(fd, 4)
    os.lseek(fd, 0, os.SEEK_SET)  # libsndfile reads from where the descriptor is
    return head not in _NOT_MPEG


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _without_mpg123_notes() -> Iterator[None]:
    """Descriptor 2 goes to a temporary file while the block runs, then back; what was written to it meanwhile
    is written to stderr, less libmpg123's lines.

    libmpg123 prints notes on the stream ("Note: Trying to resync...") straight to stderr, and libsndfile
    offers no way to quiet it. Descriptor 2 is the process's, so other threads writing to stderr meanwhile
    write to the file too: their lines come out afterwards, late but whole. One redirection at a time (a lock,
    reentrant for a thread that opens a second file inside the first).
    """
    global _stderr_redirected
    with _STDERR_LOCK:
        if _stderr_redirected:
            yield
            return
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no stderr at all: nothing to keep clean
            yield
            return
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            _stderr_redirected = True
            try:
                yield
            finally:
                _stderr_redirected = False
                try:
                    if sys.stderr is not None:
                        sys.stderr.flush()
                except (OSError, ValueError):
                    pass
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                kept = b"".join(line for line in capture.read().splitlines(keepends=True)
                                if not _MPG123_LINE.match(line))
                while kept:
                    kept = kept[os.write(2, kept):]


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

    Fast Griffin-Lim (Perraudin et al. 2013; momentum INVERSION_MOMENTUM, INVERSION_ITERS iterations) from
    seeded random phases, in which the linear magnitude is re-estimated at every iteration as well as the phase:
    the rebuilt spectrogram's own magnitude, rescaled by one multiplicative non-negative least-squares update
    (Lee and Seung) so that its mel bands match the target's. It starts from the mel filterbank's pseudo-inverse,
    clamped at 0. sda before kept that magnitude throughout (torchaudio's GriffinLim): the minimum-norm answer,
    each band's energy spread evenly over its bins, so a partial came out smeared into a band (a bell's partials
    grew side bands), 4-5% quieter in the median (21% for one chime) and far from its own mel. Re-estimated, the
    magnitudes keep the partials the phase builds up, and the output's log-mel is 2-2.4x closer to the target
    (bench/phase_estimates.py; bench/RESULTS.md). A decoder's log-mel that is quieter than its input stays so:
    that is the model's, not the inverter's.

    pinv copes with filterbanks that have empty mel bands (n_mels high for the n_fft, which AudioConfig
    allows), where torchaudio's InverseMelScale (lstsq's default driver) raises.
    """

    def __init__(self, audio: AudioConfig, n_iter: int = INVERSION_ITERS, momentum: float = INVERSION_MOMENTUM):
        super().__init__()
        self.n_fft, self.hop_length, self.n_iter, self.momentum = audio.n_fft, audio.hop_length, n_iter, momentum
        filterbank = _mel_spectrogram(audio).mel_scale.fb  # [n_freqs, n_mels]; mel = fb.T @ magnitude
        self.register_buffer("filterbank", filterbank)
        self.register_buffer("mel_to_linear", torch.linalg.pinv(filterbank.T))  # [n_freqs, n_mels]
        self.register_buffer("window", torch.hann_window(audio.n_fft))

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        lead, (n_mels, frames) = log_mel.shape[:-2], log_mel.shape[-2:]
        fb, window = self.filterbank.to(log_mel.device), self.window.to(log_mel.device)
        mel = log_mel.reshape(-1, n_mels, frames).float().exp()
        # LogMel dropped the final centred frame; restore one (a copy of the last) so that the STFT of
        # T * hop samples, which has T + 1 frames, matches it frame for frame.
        mel = torch.cat([mel, mel[..., -1:]], dim=-1)
        magnitude = (self.mel_to_linear.to(mel.device) @ mel).clamp_min(0)  # [B, n_freqs, T + 1]
        wanted = fb @ mel  # the numerator of every multiplicative update: fb (fb.T x) should come to this
        angles = torch.polar(torch.ones_like(magnitude), self._start_phase(*magnitude.shape[-2:], mel.device))
        previous = torch.zeros_like(angles)
        for _ in range(self.n_iter):
            rebuilt = torch.stft(self._istft(magnitude * angles, window), self.n_fft, self.hop_length,
                                 window=window, center=True, return_complex=True)
            current = rebuilt.abs() + _MAGNITUDE_EPS  # never exactly 0: a multiplicative update keeps zeros
            # wanted first: the product then has its size, T + 1, which a tracer knows without proof (sda.model.export)
            magnitude = wanted * current / (fb @ (fb.T @ current)).clamp_min(_MAGNITUDE_EPS)
            # torchaudio's (and librosa's) form of the momentum step: the same direction as Perraudin's.
            angles = rebuilt - previous * (self.momentum / (1 + self.momentum))
            angles = angles / angles.abs().clamp_min(1e-16)
            previous = rebuilt
        return self._istft(magnitude * angles, window).reshape(*lead, -1)  # [..., T * hop]

    @staticmethod
    def _start_phase(frequencies: int, frames: int, device: torch.device) -> torch.Tensor:
        """[frequencies, frames] phases in [0, 2 pi), uniform-looking, from a fixed seed: the same for every call
        and batch item, and those of a shorter input are the first columns of a longer one's.

        Not zero: a zero (or any frame-invariant) start lines the frames up into a pulse every hop, and the
        re-estimated magnitudes keep that comb (horizontal stripes in a snare's noise, a buzz at the frame rate).
        An integer hash of (bin, frame) rather than torch.rand with a Generator, so that sda.model.export can
        trace it with the length symbolic.
        """
        f = torch.arange(frequencies, device=device)[:, None]
        t = torch.arange(frames, device=device)[None, :]
        h = (f * 374761393 + t * 668265263 + INVERSION_SEED) & 0x7FFFFFFF  # products < 2**61: no int64 overflow
        h = ((h ^ (h >> 13)) * 1274126177) & 0x7FFFFFFF
        h = h ^ (h >> 16)
        return h.float() * (2 * math.pi / 2**31)

    def _istft(self, spec: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        # No length argument: the inverse of T + 1 centred frames is exactly T * hop samples (n_fft is even), and
        # istft's length would fix the length when sda.model.export traces this.
        return torch.istft(spec, self.n_fft, self.hop_length, window=window, center=True)
