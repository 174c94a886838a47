"""What a change costs `make demo`: `sda train --demo` from two source trees, alternating, phase by phase.

    python bench/demo_cost.py OLD_TREE NEW_TREE [--rounds 8]

Each tree is a checkout with its C++ extension built in place (`python setup.py build_ext --inplace`);
both run under this interpreter, so only the sda sources differ. Rounds alternate which tree goes
first. Phases come from the lines the run prints: start to the first epoch line (imports, the
output-folder checks, writing and decoding the generated collection, k-means), epochs 2 to the
last, and the last epoch line to exit (the final save and report).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = "import sys; from sda.cli.main import main; sys.exit(main(['train', '--demo']))"


def one_run(tree: Path, cwd: Path) -> tuple[float, float, float, float]:
    """(start to first epoch, the other epochs, last epoch to exit, total) in seconds."""
    shutil.rmtree(cwd / "models", ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", RUN], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    first = last = None
    for line in proc.stdout:
        if line.startswith("epoch "):
            last = time.perf_counter() - start
            first = first or last
    if proc.wait() != 0 or first is None:
        raise SystemExit(f"the demo from {tree} failed (exit {proc.returncode})")
    end = time.perf_counter() - start
    return first, last - first, end - last, end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    times = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as scratch:
        for name in trees:
            (Path(scratch) / name).mkdir()
        for round_ in range(args.rounds):
            order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
            for name in order:
                times[name].append(one_run(trees[name], Path(scratch) / name))
            ratio = times["new"][-1][3] / times["old"][-1][3]
            print(f"round {round_ + 1}: old {times['old'][-1][3]:.1f} s, new {times['new'][-1][3]:.1f} s, "
                  f"new/old {ratio:.2f}", flush=True)
    print("\n| tree | to first epoch | other epochs | last epoch to exit | total |  (medians, s)")
    print("|---|---|---|---|---|")
    for name in trees:
        print(f"| {name} | " + " | ".join(f"{statistics.median(c):.2f}" for c in zip(*times[name], strict=True)) + " |")
    ratios = [n[3] / o[3] for n, o in zip(times["new"], times["old"], strict=True)]
    print(f"\nnew/old total, per round: min {min(ratios):.2f}, median {statistics.median(ratios):.2f}, "
          f"max {max(ratios):.2f}")


if __name__ == "__main__":
    main()
