"""One process of a test run: `python -m torch.distributed.run ... distributed_worker.py SPEC.json`, or plain
`python distributed_worker.py SPEC.json` for one process (tests/test_distributed.py starts both).

It trains through sda.train.engine.train exactly as `sda train` does, and then leaves what only the test
needs: this process's model state before the first step and at the end (OUT/rank{R}.pt, sda saves
only process 0's model) and, from
process 0, the run's summary (OUT/summary.json). SPEC.json holds:
    config       VQVAEConfig.to_dict() output
    data, out    folders
    nan_at       [rank, step]: that process's loss is made NaN at that training step, or null
"""

import json
import os
import sys
from pathlib import Path

import torch

from sda.config import VQVAEConfig
from sda.model.vqvae import ConvVQVAE
from sda.train import distributed, engine
from sda.train.events import Done, Error

spec = json.loads(Path(sys.argv[1]).read_text())
built = []


class RecordedModel(ConvVQVAE):
    """The engine's model, kept for the end; optionally a NaN loss at one training step of one process."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.training_calls = 0
        built.append(self)

    def forward(self, mel, quantize=True):
        if self.training and quantize and not hasattr(self, "initial"):  # the codebooks as k-means left them
            self.initial = {k: v.clone() for k, v in self.state_dict().items()}
        out = super().forward(mel, quantize)
        if self.training:
            self.training_calls += 1
            if spec["nan_at"] == [distributed.rank(), self.training_calls]:
                out = out._replace(loss=out.loss * float("nan"))
        return out


engine.ConvVQVAE = RecordedModel
out = Path(spec["out"])
options = engine.RunOptions(spec["data"], out, "m", device="cpu", health_every=1000, preview_every=1000, timeout_s=60)
for event in engine.train(VQVAEConfig.from_dict(spec["config"]), options):
    if isinstance(event, Error):
        sys.exit(f"{event.message}")
    if isinstance(event, Done):
        s = event.summary
        summary = {"steps": s.steps, "warnings": s.warnings, "replaced": [h.replaced for h in s.health],
                   "processes": s.processes}
        (out / "summary.json").write_text(json.dumps(summary))
rank = os.environ.get("RANK", "0")  # the group is gone once train() returns
torch.save({"initial": built[0].initial, "final": built[0].state_dict()}, out / f"rank{rank}.pt")
