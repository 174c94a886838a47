"""sda.report: what `sda info` and the end-of-training report say, weak levels flagged."""

import torch

from sda.config import VQVAEConfig
from sda.health import level_health
from sda.report import info_text, level_line


def test_level_line_flags_only_weak_levels():
    healthy = level_health(torch.tensor([1] * 8 + [0] * 2))
    weak = level_health(torch.tensor([5] * 2 + [0] * 8), level=1)
    assert "<< under 30%" not in level_line(healthy)
    assert level_line(weak).startswith("level 2  util  20.0%") and level_line(weak).endswith("<< under 30%")
    assert "<<" not in level_line(level_health(torch.zeros(10, dtype=torch.int64)))  # nothing counted: no verdict


def test_info_shows_config_data_health_and_the_loss_curve():
    cfg = VQVAEConfig(rvq_levels=2).resolve(n_files=6, n_train_chunks=10)
    epoch = {"train": {"loss": 1.0}, "validation": {"loss": 2.0, "reconstruction": 1.5}}
    metadata = {
        "model_name": "kit", "created": "2026-11-29T17:00:00+00:00", "versions": {"sda": "0.1.0", "torch": "2.x"},
        "config": cfg.to_dict(),
        "dataset": {"folder": "/k", "files": [{}] * 6, "total_seconds": 9.5, "chunks": 12,
                    "validation_files": ["a.wav"]},
        "health": [level_health(torch.tensor([1] * 60 + [0] * 4)).to_dict(),
                   level_health(torch.tensor([1] * 10 + [0] * 54), level=1).to_dict()],
        "history": {"epochs": [{**epoch, "epoch": 1}, {"epoch": 2, "train": {"loss": 0.5},
                                                      "validation": {"loss": 0.7, "reconstruction": 0.6}}],
                    "warnings": ["epoch 2, step 9: RVQ level 2 uses 16% of its 64 codes"]},
    }
    text = info_text("kit.sda", metadata)
    assert "sda model 'kit'" in text and "2 RVQ levels x 64 codes x dim 64" in text
    assert "/k: 6 files, 9.5 s, 12 chunks (1 files for validation)" in text
    lines = text.splitlines()
    assert any(line.strip().startswith("level 1") and "<<" not in line for line in lines)
    assert any(line.strip().startswith("level 2") and line.endswith("<< under 30%") for line in lines)
    assert "best     2: 0.5000 / 0.7000, 0.6000" in text and "RVQ level 2 uses 16%" in text
