"""One process against two on this machine's CPU: `sda train` and `sda train --nproc 2` on the same global batch.

    python bench/distributed_cpu.py [--data FOLDER] [--epochs 30] [--batch-size 16] [--rounds 2]
    python bench/distributed_cpu.py --smoke     # 2 epochs, 1 round: checks the script, not the figures

Each round runs, alternating, `sda train DATA --batch-size 2B` and `sda train DATA --nproc 2 --batch-size B`:
the same chunks per optimizer step and the same number of steps. Reported: the wall time of each
command (interpreter start, data loading, training, saving), the engine's own time (from the saved
checkpoint: data loading, setup and the loop), and their ratios. torch gives one process all the
cores; `--nproc 2` gives each of the two half of them (OMP_NUM_THREADS), so on a CPU the figures
show what the collectives and the second copy of the data cost, not a speed-up.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sda.format import container  # noqa: E402


def run(data: Path, out: Path, name: str, nproc: int, batch: int, epochs: int, smoke: bool) -> tuple[float, float]:
    """(wall seconds, engine seconds) of one `sda train`."""
    cmd = [sys.executable, "-m", "sda", "train", str(data), "--nproc", str(nproc), "--batch-size", str(batch),
           "--epochs", str(epochs), "--out", str(out), "--model-name", name, "--health-every", "1000"]
    if smoke:
        cmd += ["--codebook-dim", "8"]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # as a user would run it
    start = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    wall = time.monotonic() - start
    position = container.read_metadata(out / f"{name}.checkpoint.sda")["position"]
    return wall, position["elapsed_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="audio folder (default: a generated 24-file collection)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16, help="per process with --nproc 2; doubled for one")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny model, 2 epochs, 1 round")
    args = parser.parse_args()
    if args.smoke:
        args.epochs, args.rounds = 2, 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            from sda.data.synth import write_collection
            data = write_collection(tmp / "data", n_files=6 if args.smoke else 24)[0].parent
        rows = []
        for r in range(args.rounds):
            one = run(data, tmp, f"one{r}", 1, 2 * args.batch_size, args.epochs, args.smoke)
            two = run(data, tmp, f"two{r}", 2, args.batch_size, args.epochs, args.smoke)
            rows.append((one, two))
            print(f"round {r + 1}: one process {one[0]:.1f} s wall ({one[1]:.1f} s engine), "
                  f"two processes {two[0]:.1f} s wall ({two[1]:.1f} s engine)", flush=True)
    print(f"\n| run | 1 process, batch {2 * args.batch_size} | 2 processes, batch {args.batch_size} each "
          "| ratio (wall) | ratio (engine) |\n|---|---|---|---|---|")
    for r, ((w1, e1), (w2, e2)) in enumerate(rows):
        print(f"| {r + 1} | {w1:.1f} s ({e1:.1f} s) | {w2:.1f} s ({e2:.1f} s) | {w2 / w1:.2f}x | {e2 / e1:.2f}x |")
    print(f"median engine ratio {statistics.median(e2 / e1 for (_, e1), (_, e2) in rows):.2f}x; "
          f"{args.epochs} epochs, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
