"""Generated audio collections: deterministic, varied, musical-ish files for tests, demos and benchmarks.

write_collection cycles through six kinds of sound (kicks, snares, hats, plucks, chords, noise textures,
from a tenth of a second to several seconds, so some files give several chunks) and through sample rates,
mono/stereo, file formats and sample formats, the way a real folder of samples is mixed. Same seed, same
bytes of audio.
"""

from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATES = (16000, 22050, 44100, 48000)
SUBTYPES = {"wav": ("PCM_16", "FLOAT"), "flac": ("PCM_16", "PCM_24"), "ogg": ("VORBIS",),
            "mp3": ("MPEG_LAYER_III",), "aiff": ("PCM_16", "PCM_24")}


def _time(rng, sr, shortest, longest):
    return np.arange(int(sr * rng.uniform(shortest, longest))) / sr


def kick(rng, sr):
    t = _time(rng, sr, 0.3, 0.6)
    freq = 45 + 120 * np.exp(-t * 30)  # the pitch drop is what makes it a kick
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t * rng.uniform(6, 10))


def snare(rng, sr):
    t = _time(rng, sr, 0.2, 0.4)
    tone = np.sin(2 * np.pi * rng.uniform(170, 230) * t) * np.exp(-t * 25)
    return 0.6 * rng.standard_normal(len(t)) * np.exp(-t * 18) + 0.4 * tone


def hat(rng, sr):
    t = _time(rng, sr, 0.05, 0.15)
    return np.diff(rng.standard_normal(len(t) + 1)) * np.exp(-t * 50)  # first difference: a crude high-pass


def pluck(rng, sr):
    t = _time(rng, sr, 0.6, 1.5)
    f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
    return sum(np.sin(2 * np.pi * f0 * k * t) * np.exp(-t * 3 * k) / k for k in range(1, 8) if f0 * k < sr / 2)


def chord(rng, sr):
    t = _time(rng, sr, 2.5, 4.0)
    root = 110 * 2 ** (rng.integers(0, 12) / 12)
    third = 5 / 4 if rng.random() < 0.5 else 6 / 5  # major or minor
    tones = sum(np.sin(2 * np.pi * root * r * (1 + rng.uniform(-2e-3, 2e-3)) * t) for r in (1, third, 3 / 2, 2))
    return tones * np.minimum(1, t / 0.5) * np.minimum(1, (t[-1] - t) / 0.8)  # slow attack and release


def texture(rng, sr):
    t = _time(rng, sr, 3.0, 6.0)
    rumble = np.cumsum(rng.standard_normal(len(t)))
    rumble -= np.convolve(rumble, np.ones(256) / 256, mode="same")  # remove the drift of the random walk
    swell = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t)
    chirps = np.sin(2 * np.pi * (2000 + 1500 * np.sin(2 * np.pi * 7 * t)) * t) * (np.sin(2 * np.pi * 0.7 * t) > 0.9)
    return rumble / np.abs(rumble).max() * swell + 0.2 * chirps  # wind plus the odd bird


KINDS = (kick, snare, hat, pluck, chord, texture)


def write_collection(folder: str | Path, n_files: int = 24, seed: int = 0,
                     formats: tuple[str, ...] = ("wav", "flac", "ogg")) -> list[Path]:
    """Write n_files generated sounds into folder (created if needed) and return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_files):
        make, ext = KINDS[i % len(KINDS)], formats[i % len(formats)]
        sr, stereo = SAMPLE_RATES[i % len(SAMPLE_RATES)], (i // len(SAMPLE_RATES)) % 2 == 1
        wave = make(rng, sr)
        wave = wave * rng.uniform(0.3, 0.9) / np.abs(wave).max()
        if stereo:  # panned, with the far channel a few milliseconds late
            pan, delay = rng.uniform(0.2, 0.8), int(sr * rng.uniform(0, 0.004))
            wave = np.stack([(1 - pan) * wave, pan * np.roll(wave, delay)], axis=1)
        subtypes = SUBTYPES[ext]
        path = folder / f"{i:02d}_{make.__name__}.{ext}"
        sf.write(path, wave.astype(np.float32), sr, subtype=subtypes[(i // len(formats)) % len(subtypes)])
        paths.append(path)
    return paths
