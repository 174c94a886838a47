"""`sda train` in a real pseudo-terminal, its screen rendered by a terminal emulator (pyte) as it runs:
the level rows stay on screen while training, whatever the epoch length."""

import os
import pty
import select
import subprocess
import sys
import time

import pyte
import pytest

from sda.data.synth import write_collection

COLUMNS, LINES = 140, 50


def screens_of(cmd: list[str], timeout: float = 240) -> tuple[list[str], list[str], str]:
    """The screens a person would have seen (rendered whenever the output paused for 0.2 s, and at
    the end), the screen after every read (a row shown only briefly is in one of these), and
    everything written, as text. The command must exit 0."""
    controller, terminal = pty.openpty()
    os.set_blocking(controller, False)
    env = {**os.environ, "COLUMNS": str(COLUMNS), "LINES": str(LINES), "TERM": "xterm"}
    os.system(f"stty cols {COLUMNS} rows {LINES} < {os.ttyname(terminal)}")
    proc = subprocess.Popen(cmd, stdin=terminal, stdout=terminal, stderr=terminal, env=env, close_fds=True)
    os.close(terminal)
    screen = pyte.Screen(COLUMNS, LINES)
    stream = pyte.ByteStream(screen)
    screens, frames, written, fresh, deadline = [], [], bytearray(), False, time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            stream.feed(chunk)
            frames.append("\n".join(screen.display))
            written += chunk
            fresh = True
        else:
            if fresh:
                screens.append("\n".join(screen.display))
                fresh = False
            if proc.poll() is not None:
                break
    os.close(controller)
    screens.append("\n".join(screen.display))
    assert proc.wait(timeout=30) == 0, screens[-1] if screens else "no output"
    return screens, frames, written.decode(errors="replace")


@pytest.mark.slow
def test_level_rows_stay_on_screen_with_one_step_per_epoch(tmp_path):
    folder = write_collection(tmp_path / "kit", n_files=5, seed=3)[0].parent
    cmd = [sys.executable, "-m", "sda", "train", str(folder), "--epochs", "40", "--codebook-dim", "8",
           "--out", str(tmp_path / "models"), "--model-name", "t"]
    screens, frames, written = screens_of(cmd)
    assert "40 epochs of 1 step " in written, "the collection must give one step per epoch"
    during = [f for f in frames if "ETA" in f and "Training finished" not in f]
    assert any("warming up: the quantizer starts after step 4" in f for f in during), "no warm-up rows on screen"
    rows = [all(f"level {n}  util" in f for n in (1, 2, 3)) for f in during]
    assert True in rows, "the level rows were never on screen"
    # From the first health update on, the rows stay: every frame shows them but the odd one caught in
    # the middle of a redraw (a read can end anywhere in the bytes of one), and so does every screen the
    # output paused on. (Before, they were cleared at each epoch end and came back at the next update.)
    after = rows[rows.index(True):]
    assert len(after) > 20 and sum(after) >= 0.9 * len(after), f"rows on {sum(after)} of {len(after)} frames"
    for shown in [s for s in screens[:-1] if "level 1  util" in s and "ETA" in s]:
        assert all(f"level {n}  util" in shown for n in (1, 2, 3)), shown
    assert "Training finished: 40 of 40 epochs" in screens[-1]
