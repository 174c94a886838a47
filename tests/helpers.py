"""What several test modules share: the tiny training config, ways to run sda and to drive its page, and
hostile inputs. Test modules import from here, never from each other."""

import dataclasses
import html
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sda.config import AudioConfig, VQVAEConfig
from sda.format import container
from sda.model.health import HealthWarning
from sda.train import events
from sda.train.engine import RunOptions, train

# Training: a model small enough for a run of a few seconds on a CPU.

SMALL = VQVAEConfig(hidden_channels=16, codebook_dim=8, batch_size=8, epochs=3, kmeans_iters=2,
                    audio=AudioConfig(n_mels=32, chunk_frames=16))


def run(config, options, stop=None, stop_after=None):
    """All events of a run; with stop_after, the stop flag is set once that many steps were seen."""
    stop = stop or threading.Event()
    seen = []
    for event in train(config, options, stop):
        seen.append(event)
        if stop_after is not None and isinstance(event, events.Step) and event.step == stop_after:
            stop.set()
    return seen


# The command line.

def sda(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "sda", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


# The page, through gradio_client (sda.ui.app).

WAIT = 120  # seconds: generous, CI machines are shared
PLAYERS = [f"clip{i}-{which}" for i in (1, 2, 3) for which in ("original", "reconstruction")]
# The outputs of /poll in order (buttons are not part of the API), and of /start, /stop and /show_model.
POLL = ["banner", "status", "health", "alerts", "recon", "commit", *PLAYERS, "report", "models", "history", "usage"]
START = ["notice", *POLL, "key"]  # key: the client key that may stop the run (sda.ui.app: who may do what)
STOP = ["notice", *POLL]
MODEL = ["notice", "info", "health", "recon", "commit", "config", "history", "usage"]


def shown_markdown(markdown: str) -> str:
    """The text a Markdown output shows for what sda.ui.render.md_text wrote: backslash escapes and
    entities undone (a value's `_` reaches the page as `\\_`)."""
    return html.unescape(re.sub(r"\\(.)", r"\1", markdown))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Page:
    """What one page would show, kept up to date from its own gradio_client session's results."""

    def __init__(self, app, auth=None):
        from gradio_client import Client

        self.client = Client(app.local_url, verbose=False, auth=auth)
        self.shown = {}

    def call(self, api_name, *args, names=POLL):
        result = self.client.predict(*args, api_name=api_name)
        for name, value in zip(names, result, strict=True):
            if isinstance(value, dict) and value.get("__type__") == "update":
                if "value" not in value:
                    continue  # unchanged
                value = value["value"]
            self.shown[name] = value
        return self.shown

    def start(self, data, levels=2, commitment=0.25, epochs=None, name="", health_every=2, batch=8, lr=1e-3, seed=0):
        """/start with this page's key (none at first: the server makes one and returns it)."""
        return self.call("/start", str(data), levels, commitment, epochs, name, health_every, batch, lr, seed,
                         self.shown.get("key"), names=START)

    def stop(self):
        return self.call("/stop", self.shown.get("key"), names=STOP)

    def poll_until(self, predicate, what):
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            shown = self.call("/poll")
            if predicate(shown):
                return shown
            time.sleep(0.2)
        raise AssertionError(f"the page never showed {what}; it shows {self.shown}")


# The page in a browser.

CHROMIUM = os.environ.get("SDA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def skip_or_fail(reason: str):
    if os.environ.get("SDA_REQUIRE_BROWSER"):
        pytest.fail(f"{reason}; SDA_REQUIRE_BROWSER is set, so the browser test may not be skipped")
    pytest.skip(reason)


# Hostile inputs, and the warnings a report shows.

# Markup that runs script when a page puts it into HTML unescaped; `window.__xss` tells the browser test.
MARK = '<img src=x onerror="window.__xss=1">'
CONTROL = "\x1b]52;c;aGk=\x07"  # an OSC-52 clipboard write


def trained_model(folder: Path, models: Path) -> Path:
    """A real model file, models/source.sda, from a one-epoch run of the tiny config on folder."""
    from sda.ui.job import DONE, TrainingJob

    job = TrainingJob(dataclasses.replace(SMALL, epochs=1), RunOptions(folder, models, "source", health_every=2))
    assert job.wait(120) and job.view().status == DONE, job.view().error
    return models / "source.sda"


# A model for the codec commands (sda encode, decode): random weights, codebooks marked initialised, so that it
# encodes and decodes as a trained one does (its codes mean nothing), built in a fraction of a second.
CODING = dataclasses.replace(SMALL, codebook_size=16, epochs=1)


def coding_model(path: Path, name: str, seed: int = 0, config: VQVAEConfig = CODING, initialized: bool = True) -> Path:
    import torch

    from sda.format import modelfile
    from sda.model.vqvae import ConvVQVAE

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ConvVQVAE(config.validate())
    for codebook in model.quantizer.codebooks:
        codebook.initialized.fill_(initialized)
    metadata = {"model_name": name, "created": f"2026-12-0{seed % 9 + 1}T00:00:00+00:00", "config": config.to_dict(),
                "weights": {"step": 2, "epoch": 1}}
    modelfile.save_model(path, model.eval(), metadata)
    return path


def _marked(value):
    """Every string of a metadata tree with MARK in front (paths that matched each other still match)."""
    if isinstance(value, str):
        return MARK + value
    if isinstance(value, dict):
        return {key: _marked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_marked(item) for item in value]
    return value


def hostile_model(source: Path, path: Path) -> Path:
    """source's weights, with MARK in every string of its metadata and in every figure the page shows
    as it is (the replaced codes and the codebook size of each level), a rejected file, a warning and
    a terminal escape in its name: the file still opens, so the markup reaches every view of the Models tab."""
    tensors, metadata = container.read(source)
    metadata = _marked(metadata)
    for level in metadata["health"]:
        level["replaced"] = level["codebook_size"] = MARK
    metadata["model_name"] += CONTROL
    metadata["dataset"]["rejected"] = [{"path": MARK + CONTROL + ".wav", "reason": MARK}]
    metadata["history"]["warnings"] = [MARK + " a warning"]
    container.write(path, tensors, metadata)
    return path


DIP = HealthWarning(level=0, epoch=3, step=20, codebook_size=128, utilization=0.16, dead=108, perplexity=3.6,
                    recovered_step=48, recovered_utilization=0.97)
WEAK = HealthWarning(level=2, epoch=30, step=300, codebook_size=128, utilization=0.2, dead=102, perplexity=6.0,
                     latest_utilization=0.18)
