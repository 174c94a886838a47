"""Codebook quality: sda's ResidualVQ against vector-quantize-pytorch's, in the same model on the same data.

    .venv/bin/python bench/codebook_quality.py                       # generated collection (sda.data.synth)
    .venv/bin/python bench/codebook_quality.py --data /usr/share/sounds/freedesktop/stereo
    .venv/bin/python bench/codebook_quality.py --smoke               # seconds: every code path, tiny budget

For each seed, the same ConvVQVAE (same initial weights, same batches in the same order) is trained
for a fixed number of steps twice: once with sda.model.quantizer.ResidualVQ and once with
vector_quantize_pytorch.ResidualVQ (same levels, codebook size, dim, EMA decay, k-means init with the
same iterations on the first batch, dead-code threshold; plain straight-through, no rotation trick).
The two runs alternate, so machine noise hits both alike. Reported per quantizer, mean and standard
deviation over seeds: per-level utilization and perplexity over the last epoch of training (the
window sda's frontends show; --window sets another) and over the validation set, validation
reconstruction loss, milliseconds per training step (after the first, which runs k-means) and, of
that, milliseconds inside the quantizer's forward. The last row bounds what any quantizer could
gain here: the peer's step time without its quantizer.

Targets (issue 3, CPU): our utilization at least the peer's on every level, reconstruction no worse,
a training step at least 1.5x faster.
"""

import argparse
import dataclasses
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import sda
from sda.config import AudioConfig, VQVAEConfig
from sda.data.dataset import load_dataset
from sda.data.synth import write_collection
from sda.kernels import backend
from sda.model.health import HealthWindow, level_health
from sda.model.quantizer import QuantizerOutput
from sda.model.vqvae import ConvVQVAE

try:
    from vector_quantize_pytorch import ResidualVQ as PeerResidualVQ
except ImportError:  # bench extra not installed: measure sda alone and say so
    PeerResidualVQ = None


class PeerQuantizer(nn.Module):
    """vector-quantize-pytorch's ResidualVQ behind sda.model.quantizer.ResidualVQ's interface."""

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.codebook_size = cfg.codebook_size
        self.rvq = PeerResidualVQ(
            dim=cfg.codebook_dim, num_quantizers=cfg.rvq_levels, codebook_size=cfg.codebook_size,
            decay=cfg.ema_decay, kmeans_init=True, kmeans_iters=cfg.kmeans_iters,
            threshold_ema_dead_code=cfg.dead_code_threshold, commitment_weight=1.0, rotation_trick=False,
        )

    def forward(self, z):
        quantized, codes, commitment = self.rvq(z.transpose(1, 2))  # it takes [B, T, D]
        # Health needs usage counts; the peer does not return them, so they are counted here (and timed).
        counts = torch.stack([torch.bincount(codes[..., i].reshape(-1), minlength=self.codebook_size)
                              for i in range(codes.shape[-1])])
        return QuantizerOutput(quantized.transpose(1, 2), codes, commitment.reshape(-1), counts,
                               torch.zeros(codes.shape[-1], dtype=torch.int64, device=z.device))

    def all_finite(self) -> torch.Tensor:
        """As ResidualVQ.all_finite: the engine reads it with each step's losses."""
        return torch.stack([torch.isfinite(p).all() for p in self.rvq.buffers() if p.is_floating_point()]).all()


def timed_forward(module: nn.Module, log: list[float]) -> None:
    """Record the wall time of every forward call of module into log."""
    original = module.forward

    def forward(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            log.append(time.perf_counter() - start)

    module.forward = forward


def train_once(name, cfg, data, seed, steps, window_steps):
    """Train one model for `steps` steps; returns its figures as a dict."""
    torch.manual_seed(seed)
    model = ConvVQVAE(cfg)  # the same initial weights for both quantizers: the seed decides them
    if name == "vqp":
        model.quantizer = PeerQuantizer(cfg)
    model.set_normalization(data.train_mels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    order = torch.Generator().manual_seed(seed)
    window = HealthWindow(cfg.rvq_levels, cfg.codebook_size, steps=window_steps)
    step_times, quantizer_times = [], []
    timed_forward(model.quantizer, quantizer_times)
    model.train()
    for _ in range(steps):
        batch = data.train_mels[torch.randint(len(data.train_mels), (cfg.batch_size,), generator=order)]
        start = time.perf_counter()
        out = model(batch)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        step_times.append(time.perf_counter() - start)
        window.add(out.counts, out.replaced)
    model.eval()
    with torch.no_grad():
        val = model(data.val_mels)
    metrics = {}  # name -> value, in report order; the name's last word says how to compare
    for h, v in zip(window.snapshot(), val.counts, strict=True):
        metrics[f"level {h.level + 1} utilization, train %"] = 100 * h.utilization
        metrics[f"level {h.level + 1} perplexity, train x"] = h.perplexity
        metrics[f"level {h.level + 1} utilization, val %"] = 100 * level_health(v).utilization
    metrics["validation reconstruction loss x"] = val.reconstruction_loss.item()
    metrics["ms per training step faster"] = 1000 * statistics.median(step_times[1:])
    metrics["ms of it in the quantizer forward faster"] = 1000 * statistics.median(quantizer_times[1:steps])
    metrics["first step, with k-means, s faster"] = step_times[0]
    return metrics


def compare(name: str, ours: float, peer: float) -> str:
    kind = name.rsplit(" ", 1)[1]
    if kind == "%":
        return f"{ours - peer:+.1f} pts"
    return f"{ours / peer:.2f}x" if kind == "x" else f"{peer / ours:.2f}x faster"


def report(results: dict[str, list[dict]], cfg, args, data_name, n_train, n_val) -> str:
    names = list(results)
    lines = [
        f"sda {sda.__version__}, torch {torch.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()} ({torch.get_num_threads()} threads); kernel backend: {backend(torch.empty(0, 1))}",
        f"data: {data_name}: {n_train} training chunks, {n_val} validation chunks",
        f"model: {cfg.rvq_levels} levels x {cfg.codebook_size} codes x dim {cfg.codebook_dim}, hidden "
        f"{cfg.hidden_channels}, batch {cfg.batch_size}, {args.steps} steps, decay {cfg.ema_decay}, dead-code "
        f"threshold {cfg.dead_code_threshold}, k-means {cfg.kmeans_iters} iterations; seeds {args.seeds}; "
        f"training health over the last {args.window} steps; cells: mean +-sd over seeds",
        "",
        "| | " + " | ".join(names) + (" | sda vs vqp |" if len(names) == 2 else " |"),
        "|---" * (len(names) + 1 + (len(names) == 2)) + "|",
    ]
    means = {n: {k: statistics.fmean(r[k] for r in runs) for k in runs[0]} for n, runs in results.items()}
    for key in means["sda"]:
        label = key.rsplit(" ", 1)[0] if key.endswith((" x", " faster")) else key
        cells = [f"{means[n][key]:.4g} +-{statistics.pstdev(r[key] for r in results[n]):.2g}" for n in names]
        if len(names) == 2:
            cells.append(compare(key, means["sda"][key], means["vqp"][key]))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if len(names) == 2:
        ours, peer = means["sda"], means["vqp"]
        step, quantizer = peer["ms per training step faster"], peer["ms of it in the quantizer forward faster"]
        lines.append(f"| bound: the peer's step with a free quantizer | | {step - quantizer:.4g} | "
                     f"{step / (step - quantizer):.2f}x at most |")
        util_ok = all(ours[k] >= peer[k] for k in ours if "utilization, train" in k)
        recon_ok = ours["validation reconstruction loss x"] <= peer["validation reconstruction loss x"]
        speed = step / ours["ms per training step faster"]
        lines += ["", f"targets: utilization >= peer on every level: {'met' if util_ok else 'NOT met'}; "
                  f"reconstruction no worse: {'met' if recon_ok else 'NOT met'}; "
                  f"step >= 1.5x faster: {'met' if speed >= 1.5 else 'NOT met'} ({speed:.2f}x)"]
    else:
        lines += ["", "vector-quantize-pytorch is not installed (pip install -e '.[bench]'): sda measured alone"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="an audio folder (default: a generated collection)")
    parser.add_argument("--files", type=int, default=24, help="files in the generated collection")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--window", type=int, help="training steps the health figures cover (default: an epoch)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rvq-levels", type=int, default=3)
    parser.add_argument("--codebook-size", type=int, help="default: auto from the number of files")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--smoke", action="store_true", help="tiny model and budget: checks the script runs")
    parser.add_argument("--out", type=Path, help="also write the report (markdown) here")
    args = parser.parse_args(argv)

    cfg = VQVAEConfig(rvq_levels=args.rvq_levels, codebook_size=args.codebook_size, batch_size=args.batch_size)
    if args.smoke:
        cfg = dataclasses.replace(cfg, hidden_channels=16, codebook_dim=8, kmeans_iters=2,
                                  audio=AudioConfig(n_mels=32, chunk_frames=16))
        args.steps, args.window, args.seeds, args.files = 3, 2, [0], 6
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data or Path(tmp)
        if args.data is None:
            write_collection(folder, n_files=args.files)
        data = load_dataset(folder, cfg)
    cfg = data.config
    args.window = args.window or -(-len(data.train_mels) // cfg.batch_size)
    data_name = str(args.data) if args.data else f"generated collection (sda.data.synth, {args.files} files)"

    names = ["sda", "vqp"] if PeerResidualVQ is not None else ["sda"]
    results = {name: [] for name in names}
    for seed in args.seeds:
        for name in names:
            results[name].append(train_once(name, cfg, data, seed, args.steps, args.window))
            last = results[name][-1]
            print(f"seed {seed} {name}: val recon {last['validation reconstruction loss x']:.4f}, "
                  f"{last['ms per training step faster']:.1f} ms/step", file=sys.stderr)
    text = report(results, cfg, args, data_name, len(data.train_mels), len(data.val_mels))
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
