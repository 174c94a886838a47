"""What watching training in the browser costs: the same run with no frontend, and through `sda ui` with a page open.

    python bench/ui_overhead.py [--data FOLDER] [--rounds 2]
    python bench/ui_overhead.py --smoke      # a tiny model for 2 epochs: checks the script, not the figures

Each round trains the same seeded model twice, alternating: once as a bare background job (sda.ui.job,
what the page runs, with nothing polling it), once started from a headless chromium page on a
served app that polls it every POLL_SECONDS. Reported: the engine's elapsed time for each, their
ratio, and the CPU seconds chromium used during the page run. Needs playwright and Debian's chromium.
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sda.config import VQVAEConfig  # noqa: E402
from sda.train.engine import RunOptions  # noqa: E402
from sda.ui.app import POLL_SECONDS, serve  # noqa: E402
from sda.ui.job import TrainingJob  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def chromium_cpu_seconds() -> int:
    rows = subprocess.run(["ps", "-eo", "cputimes,args"], capture_output=True, text=True).stdout.splitlines()[1:]
    return sum(int(row.split(None, 1)[0]) for row in rows if "chromium" in row)


def bare_run(config: VQVAEConfig, data: Path, models: Path, name: str) -> float:
    job = TrainingJob(config, RunOptions(data, models, name))
    job.wait()
    return job.view().summary.elapsed_s


def page_run(browser, app, data: Path, name: str) -> tuple[float, int]:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app.local_url)
    page.locator("#sda-folder textarea").fill(str(data))
    page.locator("#sda-name textarea").fill(name)
    before = chromium_cpu_seconds()
    page.locator("#sda-start").click()
    # This run's end: a fresh page first shows the previous round's "Finished" until its first poll
    expect(page.locator("#sda-status")).to_contain_text(re.compile(rf"Finished.*{re.escape(name)}\.sda"),
                                                        timeout=1_800_000)
    used = chromium_cpu_seconds() - before
    page.close()
    return app.slot.job.view().summary.elapsed_s, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="audio folder (default: a generated 24-file collection)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--port", type=int, default=7899)
    parser.add_argument("--smoke", action="store_true", help="tiny model, 2 epochs, 1 round")
    args = parser.parse_args()
    config = VQVAEConfig()
    if args.smoke:
        from sda.config import AudioConfig
        config = VQVAEConfig(hidden_channels=16, codebook_dim=8, batch_size=8, epochs=2, kmeans_iters=2,
                             audio=AudioConfig(n_mels=32, chunk_frames=16))
        args.rounds = 1
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            from sda.data.synth import write_collection
            data = write_collection(tmp / "data", n_files=6 if args.smoke else 24)[0].parent
        app = serve(tmp / "models", port=args.port, base_config=config, quiet=True)
        bare, paged, cpu = [], [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            for r in range(args.rounds):
                bare.append(bare_run(config, data, tmp / "models", f"bare{r}"))
                elapsed, used = page_run(browser, app, data, f"page{r}")
                paged.append(elapsed)
                cpu.append(used)
                print(f"round {r + 1}: bare job {bare[-1]:.1f} s, with the page {paged[-1]:.1f} s "
                      f"(chromium {used} CPU s)", flush=True)
            browser.close()
        app.close()
    print("\n| run | bare job | through sda ui, page open | ratio | chromium CPU |\n|---|---|---|---|---|")
    for r, (b, pg, c) in enumerate(zip(bare, paged, cpu, strict=True)):
        print(f"| {r + 1} | {b:.1f} s | {pg:.1f} s | {pg / b:.2f}x | {c} s |")
    print(f"median ratio {statistics.median(pg / b for b, pg in zip(bare, paged, strict=True)):.2f}x; "
          f"poll every {POLL_SECONDS} s; {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
