"""Codebook health over a whole training run: the default schedule (sda.train.warmup) against sda before it
and against vector-quantize-pytorch's ResidualVQ in the same model, on real and generated collections.

    .venv/bin/python bench/health_dynamics.py --data /usr/share/sounds/freedesktop/stereo --generated 24 120
    .venv/bin/python bench/health_dynamics.py --variants new ae lr --seeds 0 1     # the schedule's parts
    .venv/bin/python bench/health_dynamics.py --smoke                             # seconds: every code path

Every run is a real `sda.train.engine.train` with every default (auto codebook size, epochs, warm-up; batch
16), so the figures are what `sda train DIR` shows. Variants (same seed -> same initial weights, same
batches in the same order; they alternate per seed, so machine noise hits all alike):

    new      the default: sda.train.warmup.RULE (the autoencoder warm-up, step-scaled k-means counts) with
             the automatic warm-up length
    today    sda before issue 13: warmup_steps=0 (k-means at step 0, k-means-sized counts, constant lr)
             and the codebook size by file count (FILE_COUNT_TIERS) rather than by seconds of audio
    vqp      vector-quantize-pytorch's ResidualVQ (k-means init on its first batch, same decay and
             dead-code threshold), no warm-up, as that library trains
    lr       only the learning-rate ramp (k-means at step 0, k-means-sized counts)
    lr+scale the ramp and step-scaled counts, k-means at step 0
    ae+lr    the autoencoder warm-up with the ramp
    ae       only the autoencoder warm-up (k-means-sized counts)
    ae+scale the autoencoder warm-up and step-scaled counts, constant lr (what RULE is today)
    all      all three parts
    dc0.5    the default with dead_code_threshold 0.5 (codes used under half a time per step are
             re-seeded; the default is 0.25)
    files    the default schedule with today's codebook size by file count

Per collection, variant and seed: the lowest utilization of any level in a judged window after
warm-up, how many judged windows had a level under 30%, warnings raised, final utilization and
perplexity per level (the last training window), the mean and the lowest utilization per level
over the last LATE_WINDOWS training windows (one window is a noisy sample), and there the codes unused in
a window and the codes re-seeded in one (mean per window and level: the codes a window misses are mostly
codes on their way to being re-seeded, see bench/RESULTS.md), validation
reconstruction loss at the end, the largest loss spike after step 10 (max train loss after step 10
/ train loss at step 10), and milliseconds per training step (median).
"""

import argparse
import contextlib
import dataclasses
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

import sda
from sda.config import AudioConfig, VQVAEConfig
from sda.data.dataset import preflight
from sda.data.synth import write_collection
from sda.model.health import LOW_UTILIZATION
from sda.model.vqvae import ConvVQVAE
from sda.train import engine, warmup
from sda.train.engine import RunOptions
from sda.train.events import Alert, Done, Epoch, Error, Health, Step

sys.path.insert(0, str(Path(__file__).parent))
from codebook_quality import PeerQuantizer, PeerResidualVQ  # noqa: E402 (the same peer, one definition)

RULES = {
    "new": warmup.RULE,
    "lr": warmup.Rule(autoencoder=False, lr_ramp=True, step_scale_counts=False),
    "lr+scale": warmup.Rule(autoencoder=False, lr_ramp=True, step_scale_counts=True),
    "ae+lr": warmup.Rule(autoencoder=True, lr_ramp=True, step_scale_counts=False),
    "ae": warmup.Rule(autoencoder=True, lr_ramp=False, step_scale_counts=False),
    "ae+scale": warmup.Rule(autoencoder=True, lr_ramp=False, step_scale_counts=True),
    "all": warmup.Rule(autoencoder=True, lr_ramp=True, step_scale_counts=True),
}
NO_WARMUP = ("today", "vqp")
CONFIG_CHANGES = {"dc0.5": {"dead_code_threshold": 0.5}}  # variants that differ from "new" in the config
FILE_COUNT = ("today", "files")  # variants that size the codebook as sda did before issue 13
FILE_COUNT_TIERS = ((20, 64), (100, 128))  # (usable files below, size); else 256


def size_by_file_count(folder: Path) -> int:
    n_files = len(preflight(folder).files)
    return next((size for below, size in FILE_COUNT_TIERS if n_files < below), 256)
LATE_WINDOWS = 15  # the end of a run: 150 steps at health_every = 10


class InitializingPeer(PeerQuantizer):
    """The peer behind the engine's k-means hook: it initialises itself on its first batch."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.register_buffer("_initialized", torch.tensor(False))

    @property
    def initialized(self) -> bool:
        return bool(self._initialized)

    def initialize(self, z, count_scale=1.0):
        self._initialized.fill_(True)


@contextlib.contextmanager
def variant(name: str):
    """Swap the schedule rule (and, for vqp, the quantizer the engine builds) for one run."""
    saved_rule, saved_model = warmup.RULE, engine.ConvVQVAE
    warmup.RULE = RULES.get(name, saved_rule)
    if name == "vqp":
        engine.ConvVQVAE = lambda cfg, sync: ConvVQVAE(cfg, quantizer=InitializingPeer(cfg))  # one process: no sync
    try:
        yield
    finally:
        warmup.RULE, engine.ConvVQVAE = saved_rule, saved_model


def run_once(name: str, folder: Path, base: VQVAEConfig, seed: int, out: Path) -> dict:
    config = dataclasses.replace(base, **{"seed": seed, "warmup_steps": 0 if name in NO_WARMUP else base.warmup_steps,
                                          **CONFIG_CHANGES.get(name, {})})
    if name in FILE_COUNT and base.codebook_size is None:
        config = dataclasses.replace(config, codebook_size=size_by_file_count(folder))
    options = RunOptions(data_dir=folder, out_dir=out, model_name=f"{name}-{seed}-{time.monotonic_ns()}",
                         preview_every=100_000)
    losses, step_times, judged, windows, churn, warnings, last_val, summary = {}, [], [], [], [], 0, None, None
    previous = None
    with variant(name):
        for event in engine.train(config, options, threading.Event()):
            if isinstance(event, Step):
                now = time.perf_counter()
                if previous is not None:
                    step_times.append(now - previous)
                previous = now
                losses[event.step] = event.loss
            elif isinstance(event, Health) and event.judged:
                judged.append(min(h.utilization for h in event.levels))
                windows.append([100 * h.utilization for h in event.levels])
                churn.append([(h.dead, h.replaced) for h in event.levels])
            elif isinstance(event, Alert) and event.warning is not None:
                warnings += 1
            elif isinstance(event, Epoch):
                last_val = event.validation["reconstruction"]
                previous = None  # validation is not a training step
            elif isinstance(event, Done):
                summary = event.summary
            elif isinstance(event, Error):
                raise RuntimeError(f"{name} seed {seed}: {event.message}")
    after10 = [v for s, v in losses.items() if s > 10 and math_finite(v)]
    figures = {
        "lowest util after warm-up %": 100 * min(judged) if judged else float("nan"),
        "windows under 30%": sum(u < LOW_UTILIZATION for u in judged),
        "warnings": warnings,
    }
    for h in summary.health:
        figures[f"L{h.level + 1} final util %"] = 100 * h.utilization
        figures[f"L{h.level + 1} perplexity"] = h.perplexity
    late = list(zip(*windows[-LATE_WINDOWS:], strict=True))  # [level][window]
    figures[f"late util % (mean, last {LATE_WINDOWS} windows)"] = Levels([statistics.fmean(u) for u in late])
    figures[f"late util % (lowest, last {LATE_WINDOWS} windows)"] = Levels([min(u) for u in late])
    late_churn = list(zip(*churn[-LATE_WINDOWS:], strict=True))  # [level][window] of (unused, re-seeded)
    figures["late unused codes per window"] = Levels([statistics.fmean(u for u, _ in w) for w in late_churn])
    figures["late re-seeded codes per window"] = Levels([statistics.fmean(r for _, r in w) for w in late_churn])
    figures["codebook size"] = summary.health[0].codebook_size
    figures["val recon"] = last_val
    figures["spike after step 10"] = max(after10) / losses[10] if after10 and 10 in losses else float("nan")
    figures["ms/step"] = 1000 * statistics.median(step_times) if step_times else float("nan")
    figures["warm-up steps"] = summary.warmup_steps
    return figures


class Levels(list):
    """One figure per level, printed L1/L2/L3 in one cell."""

    def __str__(self):
        return "/".join(f"{v:.1f}" for v in self)


def mean(values: list):
    if isinstance(values[0], Levels):
        return Levels(statistics.fmean(level) for level in zip(*values, strict=True))
    return statistics.fmean(values)


def math_finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def table(title: str, rows: list[tuple[str, str, dict]]) -> str:
    keys = list(rows[0][2])
    lines = [f"#### {title}", "", "| variant | seed | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for name, seed, figures in rows:
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in figures.values()]
        lines.append(f"| {name} | {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, nargs="*", default=[], help="audio folders (real collections)")
    parser.add_argument("--generated", type=int, nargs="*", default=[], help="generated collections of N files")
    parser.add_argument("--variants", nargs="+", default=["new", "today", "vqp"],
                        choices=["new", "today", "vqp", "files", *[r for r in RULES if r != "new"], *CONFIG_CHANGES])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--smoke", action="store_true", help="tiny model and budget: checks the script runs")
    parser.add_argument("--out", type=Path, help="also write the report (markdown) here")
    args = parser.parse_args(argv)

    base = VQVAEConfig()
    if args.smoke:
        base = dataclasses.replace(base, hidden_channels=16, codebook_dim=8, kmeans_iters=2, epochs=4,
                                   audio=AudioConfig(n_mels=32, chunk_frames=16))
        args.seeds, args.generated, args.data = [0], [6], []
    variants = [v for v in args.variants if v != "vqp" or PeerResidualVQ is not None]
    sections = [f"sda {sda.__version__}, torch {torch.__version__}, Python {platform.python_version()}, "
                f"{platform.machine()} ({torch.get_num_threads()} threads); variants {', '.join(variants)}; "
                f"seeds {args.seeds}" + ("" if "vqp" in variants or "vqp" not in args.variants
                                         else "; vector-quantize-pytorch not installed: vqp left out")]
    with tempfile.TemporaryDirectory() as tmp:
        collections = [(str(folder), folder) for folder in args.data]
        for n in args.generated:
            folder = Path(tmp) / f"generated-{n}"
            write_collection(folder, n_files=n)
            collections.append((f"generated collection (sda.data.synth, {n} files)", folder))
        for title, folder in collections:
            rows = []
            for seed in args.seeds:
                for name in variants:
                    figures = run_once(name, folder, base, seed, Path(tmp) / "models")
                    rows.append((name, str(seed), figures))
                    print(f"{title} seed {seed} {name}: {figures}", file=sys.stderr, flush=True)
            for name in variants:
                mine = [f for n, _, f in rows if n == name]
                rows.append((f"**{name}**", "mean", {k: mean([f[k] for f in mine]) for k in mine[0]}))
            sections.append(table(title, rows))
    text = "\n\n".join(sections)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
