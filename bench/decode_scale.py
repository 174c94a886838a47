"""Reading a folder at scale: preflight + load_dataset in one process, in the pool, and from the cache.

    .venv/bin/python bench/decode_scale.py --sizes 100 500 2000 --root /tmp/sda-decode-bench
    .venv/bin/python bench/decode_scale.py --smoke          # 12 short files, every mode, seconds

Collections are generated like a sample pack: durations log-uniform from 0.1 s to 3 minutes (most files short),
44.1 and 48 kHz, stereo, 16-bit WAV and FLAC in turn; a third of the files are Debian's real sounds
(/usr/share/sounds: oxygen-sounds, sound-theme-freedesktop) looped to length, a third noise bursts with decays (hits),
a third decaying harmonic tones. A collection is written once per --root and size, and kept.

Each mode runs in a fresh process, as a user's run does (the pool's start-up is in its time): the page's flow, a
preflight and then load_dataset with the default AudioConfig. Modes: `one` (one process, no cache: both passes
decode; torch on its default threads, as sda decoded before the pool), `one-thread` (the same on one thread: one
worker's share of the work), `pool-late` (the default pool, no cache, its fork server started by the first pass, as
a script calling load_dataset gets), `pool` (the same with the fork server started before the process imports
torch, as sda train and sda ui do: sda.data.parallel.start_early), `cold` (the pool, an empty cache: the preflight
decodes and writes it, the load reads it), `hit` (the same cache, warm: nothing is decoded). Every mode but
pool-late starts early. "total" is the preflight and the load; "process" is the whole measuring process, from its
start (interpreter, imports, the fork server's start beside them) to its exit. Peak memory is RSS:
ru_maxrss of the measuring process, and the peak of the summed RSS of it and every process under it (the pool's
workers, the fork server), sampled every 20 ms from /proc.
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATES, DURATIONS = (44100, 48000), (0.1, 180.0)
SOUNDS = Path("/usr/share/sounds")
MODES = ("one", "one-thread", "pool-late", "pool", "cold", "hit")


def real_sounds() -> list[tuple[np.ndarray, int]]:
    """Debian's installed sounds, mono float32, with their rates (a few dozen short ones)."""
    sounds = []
    for path in sorted(SOUNDS.rglob("*")):
        if path.suffix in (".ogg", ".oga", ".wav") and path.is_file():
            try:
                wave, rate = sf.read(path, dtype="float32", always_2d=True)
            except (RuntimeError, sf.LibsndfileError):
                continue
            if len(wave) > 1000 and np.abs(wave).max() > 1e-3:
                sounds.append((wave.mean(axis=1), rate))
    return sounds


def sound(kind: int, seconds: float, rate: int, rng: np.random.Generator, library) -> np.ndarray:
    """[S, 2] float32, peak about 0.3-0.9."""
    n = max(1, int(seconds * rate))
    t = np.arange(n, dtype=np.float32) / rate
    if kind == 0 and library:  # a real sound, looped (resampled by interpolation to the file's rate)
        wave, native = library[rng.integers(len(library))]
        source = np.interp(np.arange(int(len(wave) * rate / native)) * native / rate, np.arange(len(wave)), wave)
        mono = np.resize(source.astype(np.float32), n)
    elif kind == 1:  # noise bursts with decays, at random times: hits
        mono = np.zeros(n, dtype=np.float32)
        for start in np.sort(rng.uniform(0, max(seconds - 0.05, 0.01), size=max(1, int(seconds * 2)))):
            i = int(start * rate)
            length = min(n - i, int(rate * rng.uniform(0.05, 0.6)))
            decay = np.exp(-np.arange(length) / (rate * rng.uniform(0.02, 0.2)))
            mono[i:i + length] += (rng.standard_normal(length) * decay).astype(np.float32)
    else:  # a harmonic tone with vibrato, decaying and re-struck
        f0 = rng.uniform(60, 800)
        phase = 2 * np.pi * f0 * (t + 0.002 * np.sin(2 * np.pi * 5 * t))
        mono = sum(np.sin(k * phase) / k for k in range(1, 6)).astype(np.float32)
        mono *= np.exp(-(t % rng.uniform(0.5, 4.0)) * rng.uniform(0.5, 4.0))
    mono *= rng.uniform(0.3, 0.9) / max(float(np.abs(mono).max()), 1e-6)
    delay = int(rng.integers(1, max(2, rate // 200)))  # the far channel a few ms late
    return np.stack([mono, np.concatenate([np.zeros(delay, np.float32), mono[:-delay]])[:n]], axis=1)


def generate(folder: Path, n_files: int, seed: int, short: bool = False) -> dict:
    """Write the collection (once: a folder with its manifest is reused) and return its manifest."""
    manifest = folder / "manifest.json"
    if manifest.exists():
        return json.loads(manifest.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    rng, library = np.random.default_rng(seed), real_sounds()
    low, high = (0.1, 3.0) if short else DURATIONS
    began, seconds, size = time.perf_counter(), 0.0, 0
    for i in range(n_files):
        length = math.exp(rng.uniform(math.log(low), math.log(high)))
        rate, ext = RATES[i % 2], ("wav", "flac")[(i // 2) % 2]
        path = folder / f"{i // 100:02d}" / f"{i:04d}.{ext}"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, sound(i % 3, length, rate, rng, library), rate, subtype="PCM_16")
        seconds += length
        size += path.stat().st_size
    then = time.time() - 60  # older than sda.data.dataset.RECENT_SECONDS, as a real collection is
    for path in folder.rglob("*.*"):
        os.utime(path, (then, then))
    info = {"files": n_files, "seconds": round(seconds, 1), "bytes": size,
            "generate_s": round(time.perf_counter() - began, 1), "real_sounds": len(library)}
    manifest.write_text(json.dumps(info))
    return info


def tree_rss() -> int:
    """Bytes: the summed RSS of this process and every process under it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, pending = 0, [os.getpid()]
    while pending:
        pid = pending.pop()
        pending += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            pass
    return total


def measure(mode: str, folder: Path, cache: Path) -> dict:
    """One mode, in this process: the page's flow (a preflight, then load_dataset)."""
    from sda.config import DecodeOptions, VQVAEConfig
    from sda.data.parallel import start_early

    decode = {"one": DecodeOptions(workers=1, cache=False), "one-thread": DecodeOptions(workers=1, cache=False),
              "pool-late": DecodeOptions(cache=False), "pool": DecodeOptions(cache=False),
              "cold": DecodeOptions(cache_dir=cache), "hit": DecodeOptions(cache_dir=cache)}[mode]
    if mode != "pool-late":  # before torch is imported, as the CLI does (nothing for one worker)
        start_early(decode.workers)
    from sda.data.dataset import load_dataset, preflight

    if mode == "one-thread":
        import torch

        torch.set_num_threads(1)
    config = VQVAEConfig()
    peak, done = [0], threading.Event()

    def sample():
        while not done.wait(0.02):
            peak[0] = max(peak[0], tree_rss())

    sampler = threading.Thread(target=sample, daemon=True)
    peak[0] = tree_rss()
    sampler.start()
    began = time.perf_counter()
    report = preflight(folder, config.audio, decode=decode)
    checked = time.perf_counter()
    data = load_dataset(folder, config, decode=decode)
    loaded = time.perf_counter()
    done.set()
    sampler.join()
    peak[0] = max(peak[0], tree_rss())
    return {"mode": mode, "preflight_s": checked - began, "load_s": loaded - checked, "total_s": loaded - began,
            "files": len(report.files), "rejected": len(report.rejected), "chunks": report.n_chunks,
            "dataset_bytes": data.train_mels.nbytes + data.val_mels.nbytes + data.val_audio.nbytes,
            "maxrss_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "maxrss_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
            "peak_tree_rss": peak[0]}


def run_mode(mode: str, folder: Path, cache: Path) -> dict:
    began = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--measure", mode, str(folder), str(cache)], capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "process_s": time.perf_counter() - began}


def gib(n: int) -> str:
    return f"{n / 2**30:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--root", type=Path, default=Path("/tmp/sda-decode-bench"))
    parser.add_argument("--smoke", action="store_true", help="12 files of 0.1-3 s, for the test of this script")
    parser.add_argument("--measure", nargs=3, metavar=("MODE", "FOLDER", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        mode, folder, cache = args.measure
        print(json.dumps(measure(mode, Path(folder), Path(cache))))
        return
    sizes = [12] if args.smoke else args.sizes
    print("| files | audio | on disk | generated in | mode | preflight s | load s | total s | process s | vs one "
          "| vs one, process | vs one thread | vs pool | dataset GiB | maxrss self GiB | peak RSS all GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        folder = args.root / f"{'smoke' if args.smoke else 'collection'}-{n}"
        info = generate(folder, n, seed=n, short=args.smoke)
        cache = args.root / f"cache-{n}"
        for stale in cache.glob("*") if cache.exists() else ():
            stale.unlink()
        rows = {mode: run_mode(mode, folder, cache) for mode in MODES}
        for mode, r in rows.items():
            print(f"| {n} | {info['seconds'] / 3600:.2f} h | {info['bytes'] / 1e9:.2f} GB | {info['generate_s']:.0f} s "
                  f"| {mode} | {r['preflight_s']:.2f} | {r['load_s']:.2f} | {r['total_s']:.2f} | {r['process_s']:.2f} "
                  f"| {rows['one']['total_s'] / r['total_s']:.2f}x "
                  f"| {rows['one']['process_s'] / r['process_s']:.2f}x "
                  f"| {rows['one-thread']['total_s'] / r['total_s']:.2f}x "
                  f"| {rows['pool']['total_s'] / r['total_s']:.2f}x "
                  f"| {gib(r['dataset_bytes'])} | {gib(r['maxrss_self'])} | {gib(r['peak_tree_rss'])} |", flush=True)
        cached = sum(p.stat().st_size for p in cache.glob("*"))
        print(f"<!-- {n} files: {rows['hit']['files']} usable, {rows['hit']['chunks']} chunks, cache {gib(cached)} "
              "GiB -->", flush=True)


if __name__ == "__main__":
    main()
