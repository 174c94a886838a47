"""Mel-to-audio inversion options on real audio: what MelInverter should do by default (issue 17, item 7).

    nice .venv/bin/python bench/phase_estimates.py                     # 10 files per collection, 3 s each
    nice .venv/bin/python bench/phase_estimates.py --files 3 --only oracle   # minutes: enough for the times
    nice .venv/bin/python bench/phase_estimates.py --options pinv-zero-0.99 mel-rand-0.99   # two options only
    nice .venv/bin/python bench/phase_estimates.py --listen /tmp/ear   # also writes wavs of a few, for sox
    .venv/bin/python bench/phase_estimates.py --smoke                  # seconds: every option, generated sounds

For each file (an evenly spaced subset of each collection, resampled to the model's rate, cut to --seconds),
two log-mels are inverted: (a) `oracle`, the LogMel of the real audio (what the phase estimate alone loses),
and (b) `decoder`, the decoder's log-mel of a trained model (/tmp/models/ox.sda for /tmp/oxygen,
fd.sda for freedesktop: what users hear). Each is inverted by every option below and scored against the real
audio with sda.model.quality's figures, before any loudness matching:

    stft      multi-resolution STFT distance (lower is better)
    matched   the same after scaling the output to the input's RMS, as `sda reconstruct` does
    sisdr     SI-SDR in dB (higher is better; near 0 or below for any guessed phase)
    consist   log-mel L1 between the mel inverted and LogMel of the output (the phase estimate's consistency)
    rms       RMS of the output / RMS of the input (1 is right; the known symptom is well under 1)
    ms/s      milliseconds per second of audio, one torch thread (the inversion only, not the scoring)

Options (a name reads linear-phase-momentum-iterations):
    linear  pinv: the filterbank's pseudo-inverse, clamped at 0 (minimum-norm, MelInverter before);
            nnls: then NNLS_ITERS projected-gradient steps of min |fb^T x - mel|^2, x >= 0 (from pinv)
            mu:   then NNLS_ITERS multiplicative updates (Lee-Seung) of the same problem (from pinv + eps)
            mel:  pinv to start, then at every Griffin-Lim iteration the rebuilt magnitude, rescaled toward the
                  target mel by one multiplicative update (keeps the partials the phase makes, matches the mel)
    phase   zero: every phase 0 (torchaudio's rand_init=False); rand: uniform, seeded;
            adv:  each bin's phase advanced by its centre frequency (a phase vocoder's guess, vectorised);
            pghi: phase-gradient heap integration (Prusa et al. 2017), numpy + heapq
    momentum  0.99 ("fast Griffin-Lim", torchaudio's default) or 0 (plain Griffin-Lim)
    iterations 32, 64, 128, 256 (one run of 256, its iterate read at each count; times are cumulative)

MelInverter's default is mel-rand-0.99-64 (bench/RESULTS.md, 2026-12-04, has the figures and why).
"""

import argparse
import heapq
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sda.config import AudioConfig, VQVAEConfig
from sda.data.audio import LogMel, MelInverter, _mel_spectrogram, read_audio, write_audio
from sda.data.synth import write_collection
from sda.format.modelfile import load_model
from sda.model.codec import decode_mel, padded, prepare
from sda.model.quality import si_sdr, stft_distance
from sda.model.vqvae import ConvVQVAE

COLLECTIONS = (("oxygen", "/tmp/oxygen", "*.ogg", "/tmp/models/ox.sda"),
               ("freedesktop", "/usr/share/sounds/freedesktop/stereo", "*.oga", "/tmp/models/fd.sda"))
COUNTS = (32, 64, 128, 256)
NNLS_ITERS = 30
# (linear, phase, momentum): each run to max(COUNTS) iterations. The linear methods are compared at one phase
# setting, the phase settings with pinv: a full grid would be 4x longer on a shared 2-core machine.
OPTIONS = (("pinv", "zero", 0.99), ("pinv", "zero", 0.0), ("pinv", "rand", 0.99), ("pinv", "rand", 0.0),
           ("pinv", "adv", 0.99), ("pinv", "pghi", 0.99), ("pinv", "pghi", 0.0),
           ("nnls", "zero", 0.99), ("mu", "zero", 0.99), ("nnls", "pghi", 0.99),
           ("mel", "zero", 0.99), ("mel", "pghi", 0.99), ("mel", "rand", 0.99), ("mel", "adv", 0.99),
           ("mel", "rand", 0.0))
# A click, a tonal bell, a long decay: written as wavs with --listen, for sox stat and spectrogram.
LISTEN = ("Oxygen-Window-Close.ogg", "bell.oga", "complete.oga", "Oxygen-Sys-App-Positive.ogg")
torch.set_num_threads(1)  # measured: on the shared 2-core machine, 5x faster than 2 threads


class Inversion:
    """The pieces of a mel inversion at one AudioConfig, each a small function so that options compose."""

    def __init__(self, audio: AudioConfig):
        self.audio, self.n_fft, self.hop = audio, audio.n_fft, audio.hop_length
        self.fb = _mel_spectrogram(audio).mel_scale.fb  # [F, n_mels]
        self.pinv = torch.linalg.pinv(self.fb.T)
        self.window = torch.hann_window(self.n_fft)
        self.step = 1 / torch.linalg.matrix_norm(self.fb, ord=2) ** 2  # 1/L of the least-squares gradient

    def linear(self, log_mel: torch.Tensor, method: str) -> torch.Tensor:
        """[n_mels, T] -> magnitude [F, T + 1] (the extra frame: LogMel dropped the last centred one)."""
        mel = log_mel.exp()
        x = (self.pinv @ mel).clamp_min(0)
        for _ in range(NNLS_ITERS if method in ("nnls", "mu") else 0):
            if method == "nnls":
                x = (x - self.step * (self.fb @ (self.fb.T @ x - mel))).clamp_min(0)
            else:  # multiplicative: stays non-negative, never moves an exact zero, so start from pinv + eps
                x = (x + 1e-9) * (self.fb @ mel) / (self.fb @ (self.fb.T @ (x + 1e-9))).clamp_min(1e-12)
        return torch.cat([x, x[:, -1:]], dim=1)

    def stft(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.stft(wave, self.n_fft, self.hop, window=self.window, center=True, return_complex=True)

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        return torch.istft(spec, self.n_fft, self.hop, window=self.window, center=True, length=length)

    def initial_phase(self, magnitude: torch.Tensor, kind: str) -> torch.Tensor:
        freqs, frames = magnitude.shape
        if kind == "zero":
            return torch.zeros_like(magnitude)
        if kind == "rand":  # the phases MelInverter starts from: an integer hash of (bin, frame). The figures in
            # bench/RESULTS.md of 2026-12-04 were measured with torch.rand from seed 0 instead (see there).
            return MelInverter._start_phase(freqs, frames, magnitude.device).to(magnitude.dtype)
        if kind == "adv":  # a stationary partial at bin m advances 2 pi m hop / n_fft per frame (torch.stft's phase)
            bins, hops = torch.arange(freqs, dtype=magnitude.dtype), torch.arange(frames, dtype=magnitude.dtype)
            return 2 * math.pi * self.hop / self.n_fft * bins[:, None] * hops[None, :]
        return torch.from_numpy(pghi(magnitude.numpy(), self.hop, self.n_fft)).to(magnitude.dtype)

    def griffin_lim(self, magnitude, phase, momentum, counts, length, mel=None):
        """Fast Griffin-Lim (Perraudin et al. 2013, torchaudio's form) from `phase`; yields (count, wave).

        With mel ([n_mels, T + 1], linear), the magnitude is re-estimated at every iteration too: the rebuilt
        spectrogram's own magnitude, scaled by one multiplicative NNLS update toward the target mel, so that its
        fine structure (partials sharper than the mel bands) is kept while its mel bands match.
        """
        angles, previous = torch.polar(torch.ones_like(magnitude), phase), None
        for i in range(1, max(counts) + 1):
            rebuilt = self.stft(self.istft(magnitude * angles, length))
            if mel is not None:
                current = rebuilt.abs() + 1e-9
                magnitude = current * (self.fb @ mel) / (self.fb @ (self.fb.T @ current)).clamp_min(1e-12)
            angles = rebuilt if previous is None or not momentum else rebuilt - momentum / (1 + momentum) * previous
            angles = angles / angles.abs().clamp_min(1e-16)
            previous = rebuilt
            if i in counts:
                yield i, self.istft(magnitude * angles, length)


def pghi(magnitude: np.ndarray, hop: int, n_fft: int, tol: float = 1e-5) -> np.ndarray:
    """Phase [F, T] from magnitude [F, T] by phase-gradient heap integration (Prusa, Balazs, Sondergaard 2017).

    The phase derivatives of a Gaussian-windowed STFT follow from its log-magnitude; a Hann window of length
    n_fft is close to a Gaussian of gamma = 0.25645 n_fft^2. Integration starts at the loudest bin and spreads
    to its neighbours, loudest first; bins under tol x the peak are left at phase 0 (deterministic).
    """
    gamma = 0.25645 * n_fft ** 2
    floor = math.log(tol) + math.log(max(float(magnitude.max()), 1e-12))
    logs = np.maximum(np.log(np.maximum(magnitude, 1e-30)), floor)  # no slopes from the near-silent bins
    freqs, frames = magnitude.shape
    # With the phase taken at the window's centre: d(phase)/d(frame) is the bin's frequency plus hop n_fft / gamma
    # times the log-magnitude's slope across bins (a partial between bins), and d(phase)/d(bin) is -gamma /
    # (hop n_fft) times its slope across frames (a click's delay within the window).
    t_grad = 2 * np.pi * hop * np.arange(freqs)[:, None] / n_fft + hop * n_fft / gamma * np.gradient(logs, axis=0)
    f_grad = -gamma / (hop * n_fft) * np.gradient(logs, axis=1)
    phase = np.zeros_like(magnitude)
    done = magnitude < tol * magnitude.max()
    heap: list = []
    flat = magnitude.ravel()
    order = np.argsort(-flat)
    for start in order:
        f0, t0 = divmod(int(start), frames)
        if done[f0, t0]:
            continue
        done[f0, t0] = True
        heap = [(-flat[start], f0, t0)]
        while heap:
            _, f, t = heapq.heappop(heap)
            for nf, nt in ((f, t + 1), (f, t - 1), (f + 1, t), (f - 1, t)):
                if 0 <= nf < freqs and 0 <= nt < frames and not done[nf, nt]:
                    if nf == f:  # along time
                        phase[nf, nt] = phase[f, t] + (nt - t) * (t_grad[f, t] + t_grad[nf, nt]) / 2
                    else:
                        phase[nf, nt] = phase[f, t] + (nf - f) * (f_grad[f, t] + f_grad[nf, nt]) / 2
                    done[nf, nt] = True
                    heapq.heappush(heap, (-magnitude[nf, nt], nf, nt))
    # torch.stft takes each frame's phase at the window's start, n_fft / 2 before its centre: pi m more at bin m.
    return phase + np.pi * np.arange(freqs)[:, None]


def rms(x: torch.Tensor) -> float:
    return x.double().square().mean().sqrt().item()


def files_of(folder: str, pattern: str, count: int) -> list[Path]:
    paths = sorted(Path(folder).glob(pattern))
    return [paths[round(i * (len(paths) - 1) / max(1, count - 1))] for i in range(min(count, len(paths)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10, help="files per collection")
    parser.add_argument("--seconds", type=float, default=3.0, help="each file cut to this")
    parser.add_argument("--only", choices=("oracle", "decoder"), help="one of the two log-mels")
    parser.add_argument("--listen", type=Path, help="write the LISTEN files' inversions here as wav")
    parser.add_argument("--options", nargs="+", help="only these, as linear-phase-momentum (pinv-zero-0.99)")
    parser.add_argument("--smoke", action="store_true", help="3 generated sounds, an untrained model, 2 and 4 "
                                                             "iterations: checks that every path runs")
    args = parser.parse_args()
    collections, counts = COLLECTIONS, COUNTS
    if args.smoke:
        folder = tempfile.mkdtemp(prefix="phase-estimates-")
        write_collection(folder, 3, formats=("wav",))
        collections, counts, args.files, args.seconds = (("generated", folder, "*.wav", None),), (2, 4), 3, 1.0
    rows: dict[tuple, list] = {}
    for collection, folder, pattern, model_path in collections:
        # The smoke run's model is untrained and unquantised: its decoder's log-mel is only something to invert.
        model = load_model(Path(model_path))[0] if model_path else ConvVQVAE(VQVAEConfig().resolve(3, 3)).eval()
        audio = model.config.audio
        inv, log_mel = Inversion(audio), LogMel(audio)
        paths = files_of(folder, pattern, args.files)
        if args.listen:
            paths += [p for p in sorted(Path(folder).glob(pattern)) if p.name in LISTEN and p not in paths]
        for path in paths:
            mono = prepare(*read_audio(path), model.config)[: int(args.seconds * audio.sample_rate)]
            mono = padded(mono, model.config)
            with torch.no_grad():
                oracle = log_mel(mono[None])[0]
                decoded = (decode_mel(model, model.encode(oracle[None])[0].T) if model_path else
                           model(oracle[None], quantize=False).reconstruction[0])
            for source, mel in (("oracle", oracle), ("decoder", decoded)):
                if args.only and source != args.only:
                    continue
                for linear, phase, momentum in OPTIONS:
                    if args.options and f"{linear}-{phase}-{momentum:g}" not in args.options:
                        continue
                    began, scoring = time.perf_counter(), 0.0  # the time spent scoring is not the inversion's
                    magnitude = inv.linear(mel, linear)
                    start = inv.initial_phase(magnitude, phase)
                    target = torch.cat([mel, mel[:, -1:]], dim=1).exp() if linear == "mel" else None
                    for count, wave in inv.griffin_lim(magnitude, start, momentum, counts, len(mono), target):
                        scored = time.perf_counter()
                        spent = scored - began - scoring
                        wave = wave.float()
                        key = (collection, source, f"{linear}-{phase}-{momentum:g}-{count}")
                        consist = (log_mel(wave[None])[0] - mel).abs().mean().item()
                        matched = wave * rms(mono) / max(rms(wave), 1e-12)
                        rows.setdefault(key, []).append((stft_distance(mono, wave), stft_distance(mono, matched),
                                                         si_sdr(mono, wave), consist,
                                                         rms(wave) / max(rms(mono), 1e-12),
                                                         1000 * spent / (len(mono) / audio.sample_rate)))
                        if args.listen and path.name in LISTEN:
                            args.listen.mkdir(parents=True, exist_ok=True)
                            write_audio(args.listen / f"{path.stem}-{source}-{key[2]}.wav", wave, audio.sample_rate)
                            write_audio(args.listen / f"{path.stem}-input.wav", mono, audio.sample_rate)
                        scoring += time.perf_counter() - scored
            print(f"  {collection}/{path.name}", file=sys.stderr, flush=True)
    print(f"{platform.node()}, {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.files} files per collection, at most {args.seconds:g} s each\n")
    print("| collection | mel | option | stft | matched | sisdr dB | consist | rms out/in | ms/s |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for (collection, source, option), values in rows.items():
        medians = [statistics.median(v) for v in zip(*values, strict=True)]
        print(f"| {collection} | {source} | {option} | {medians[0]:.3f} | {medians[1]:.3f} | {medians[2]:.1f} | "
              f"{medians[3]:.3f} | {medians[4]:.2f} | {medians[5]:.0f} |")


if __name__ == "__main__":
    main()
