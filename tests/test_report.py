"""sda.report: what `sda info` and the end-of-training report say: weak levels flagged, resolved dips
kept apart from levels that ended weak, advice for the frontend in use, validation that says its size;
the utilization history, per-code usage and bitrate; several models side by side."""

import dataclasses
from pathlib import Path

import pytest
import torch

from sda.config import VQVAEConfig
from sda.format import container, modelfile
from sda.model.bitrate import Bitrate
from sda.model.health import level_health
from sda.report import (
    CLI,
    COMPARE_WIDTH,
    PAGE,
    SPARK_WIDTH,
    advice,
    compare_text,
    describe_file,
    history_lines,
    info_text,
    level_line,
    summary_text,
    validation_note,
)
from sda.train.engine import RunOptions
from sda.train.events import Summary
from sda.train.history import History, WindowRecord
from tests.helpers import CONTROL, DIP, SMALL, WEAK, run


def test_level_line_flags_only_weak_levels():
    healthy = level_health(torch.tensor([1] * 8 + [0] * 2))
    weak = level_health(torch.tensor([5] * 2 + [0] * 8), level=1)
    assert "<< under 30%" not in level_line(healthy)
    assert level_line(weak).startswith("level 2  util  20.0%") and level_line(weak).endswith("<< under 30%")
    assert "<<" not in level_line(level_health(torch.zeros(10, dtype=torch.int64)))  # nothing counted: no verdict
    # Just after warm-up the window is too short to judge (sda.model.health.judged): figures, no verdict.
    assert level_line(weak, judged=False).endswith("replaced 0  (too few steps to judge)")




def metadata(**history) -> dict:
    cfg = VQVAEConfig(rvq_levels=3).resolve(seconds=12.0, n_train_chunks=10)
    epoch = {"train": {"loss": 1.0}, "validation": {"loss": 2.0, "reconstruction": 1.5}}
    files = [{"path": f"{name}.wav", "chunks": 2} for name in "abcdef"]
    return {
        "model_name": "kit", "created": "2026-11-29T17:00:00+00:00", "versions": {"sda": "0.1.0", "torch": "2.x"},
        "config": dataclasses.replace(cfg, warmup_steps=40).to_dict(),
        "dataset": {"folder": "/k", "files": files, "total_seconds": 9.5, "chunks": 12, "validation_files": ["a.wav"]},
        "health": [level_health(torch.tensor([1] * 60 + [0] * 4)).to_dict(),
                   level_health(torch.tensor([1] * 10 + [0] * 54), level=1).to_dict()],
        "history": {"epochs": [{**epoch, "epoch": 1}, {"epoch": 2, "train": {"loss": 0.5},
                                                      "validation": {"loss": 0.7, "reconstruction": 0.6}}],
                    "warnings": [], **history},
        "weights": {"step": 8, "epoch": 2, "mid_epoch": False},
    }


def test_info_shows_config_data_health_and_the_loss_curve():
    text = info_text("kit.sda", metadata())
    assert "sda model 'kit'" in text and "3 RVQ levels x 64 codes x dim 64" in text
    assert "  data: /k: 6 files, 9.5 s, 12 chunks\n  validation: 2 chunks from 1 file, too few to judge" in text
    assert "warm-up: 40 steps as a plain autoencoder" in text
    assert "weights: after step 8 (epoch 2, the last trained)" in text
    lines = text.splitlines()
    assert any(line.strip().startswith("level 1") and "<<" not in line for line in lines)
    assert any(line.strip().startswith("level 2") and line.endswith("<< under 30%") for line in lines)
    assert "best     2: 0.5000 / 0.7000, 0.6000" in text
    assert "warning" not in text and "ended weak" not in text


def test_info_keeps_resolved_dips_apart_from_levels_that_ended_weak():
    text = info_text("kit.sda", metadata(health_warnings=[DIP.to_dict(), WEAK.to_dict()]))
    weak_at, dips_at = text.index("codebook levels that ended weak (1)"), text.index("earlier dips, not a problem")
    assert weak_at < dips_at
    assert "RVQ level 3 uses 20.0% of its 128 codes (under 30%) at step 300" in text[weak_at:dips_at]
    assert "still under 30% (18.0% in the latest window)" in text[weak_at:dips_at]
    assert "--codebook-size" in text[weak_at:dips_at]  # sda info is the CLI: its advice names the flag
    assert "level 1 at 16.0% at step 20, recovered at step 48 (97.0% now)" in text[dips_at:]


def test_files_written_before_these_records_still_describe_themselves():
    old = metadata(warnings=["epoch 2, step 9: RVQ level 2 uses 16% of its 64 codes"])
    del old["weights"], old["config"]["warmup_steps"]
    text = info_text("old.sda", old)
    assert "warm-up: none" in text and "weights: as of epoch 2, the last in the history" in text
    assert "warnings (1):" in text and "RVQ level 2 uses 16%" in text


def test_advice_names_what_the_frontend_in_use_offers():
    cli, page = advice(WEAK, CLI, levels=3), advice(WEAK, PAGE, levels=3)
    assert cli == "Try --codebook-size 32 (it uses 26 of 128 codes), --rvq-levels 2 or more files."
    assert page == "Try fewer RVQ levels (2) or more files."  # the page has no codebook-size control
    assert advice(WEAK, PAGE, levels=2) == "Try more files."


def test_validation_says_when_it_is_too_small_to_judge():
    assert "too few to judge" in validation_note(1, 1) and "1 chunk from 1 file" in validation_note(1, 1)
    assert validation_note(14, 4) == "validation: 14 chunks from 4 files"


def summary(**changes) -> Summary:
    fields = dict(model_name="m", model_path=Path("models/m.sda"), model_bytes=4_000_000,
                  checkpoint_path=Path("models/m.checkpoint.sda"), device="cpu", precision="fp32", backend="torch",
                  epochs_done=30, epochs=30, steps=400, elapsed_s=20.0, stopped=False, resumed=False, train_loss=0.5,
                  val_loss=0.7, val_reconstruction=0.6, health=[level_health(torch.ones(128), i) for i in range(3)],
                  val_chunks=14, val_files=4, warmup_steps=40)
    return Summary(**{**fields, **changes})


def test_the_end_report_of_a_healthy_run_has_no_warning():
    text = summary_text(summary())
    assert "no warnings: every level stayed healthy" in text and "Warning" not in text
    assert "validation: 14 chunks from 4 files" in text


def test_the_end_report_presents_a_resolved_dip_as_history_only():
    text = summary_text(summary(health_warnings=[DIP]))
    assert "levels that ended weak" not in text
    assert "earlier dips, not a problem now: level 1 at 16.0% at step 20" in text
    assert "no level ended weak" in text
    text = summary_text(summary(health_warnings=[DIP, WEAK]), PAGE)
    assert "codebook levels that ended weak (1)" in text and "fewer RVQ levels (2)" in text
    assert "--codebook-size" not in text


def test_a_run_stopped_in_its_warm_up_says_so_instead_of_showing_a_collapse():
    nothing = [level_health(torch.zeros(128, dtype=torch.int64), i) for i in range(3)]
    text = summary_text(summary(stopped=True, steps=3, health=nothing))
    assert "none yet, training stopped in the warm-up (step 3 of 40)" in text
    assert "util" not in text and "every level stayed healthy" not in text
    info = info_text("m.sda", {**metadata(), "health": [h.to_dict() for h in nothing],
                               "weights": {"step": 3, "epoch": 0, "mid_epoch": True}})
    assert "none yet, training stopped in the warm-up (step 3 of 40)" in info and "util " not in info


def test_a_run_of_one_epoch_and_one_step_says_so_in_the_singular():
    text = summary_text(summary(epochs_done=1, epochs=1, steps=1))
    assert text.startswith("Training finished: 1 of 1 epoch, 1 step in")


def test_the_end_report_gives_each_levels_bits_and_the_total_bitrate():
    rate = Bitrate(frame_rate=21.5, codebook_bits=7.0, entropies=(7.0, 7.0, 7.0))
    text = summary_text(summary(bitrate=rate))
    assert "perplexity  128.0  7.0 bits 150 bit/s  dead" in text
    assert "bitrate: 21.5 codes/s a level; 452 bit/s nominal, 452 bit/s effective (100.0%)" in text
    assert "bits" not in summary_text(summary())  # a Summary without a bitrate (none counted): no column


# Real models: a 3-level and a 2-level one of the tiny config, each window kept (health every step).

@pytest.fixture(scope="module")
def models(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    run(dataclasses.replace(SMALL, epochs=2), RunOptions(folder, out, "three", health_every=1))
    run(dataclasses.replace(SMALL, epochs=2, rvq_levels=2, codebook_size=16), RunOptions(folder, out, "two",
                                                                                         health_every=1))
    return out / "three.sda", out / "two.sda"


def history_rows(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  utilization (0-100%) over "))
    return lines[start:start + 1 + sum(1 for line in lines[start + 1:] if line.startswith("    level"))]


def test_info_of_a_model_has_its_history_usage_and_bitrate(models):
    described = describe_file(models[0], usage=True)
    text, windows = described.text, described.history.windows
    head, *levels = history_rows(text)
    assert f"over {len(windows)} windows to step {windows[-1].step} (· warm-up)" in head
    assert len(levels) == 3
    for n, line in enumerate(levels, 1):
        assert line.startswith(f"    level {n}  ·")  # the warm-up, then the figures
        spark = line.split()[2]
        assert len(spark) == len(windows) and set(spark) <= set("▁▂▃▄▅▆▇█·")
        assert " lowest " in line and ", last " in line and line.endswith("%")
    usage = modelfile.load_usage(models[0])
    for n, counts in enumerate(usage, 1):
        dead = int((counts == 0).sum())
        assert f"    level {n}  " in text and f"of 64 codes carry half the assignments; {dead} dead" in text
    assert "bitrate: 21.5 codes/s a level; 388 bit/s nominal" in text  # 22050 / (256 x 4), 3 x 6 bits
    assert text.count(" bits ") == 3 and all(len(line) <= COMPARE_WIDTH for line in [head, *levels])


def test_the_page_reads_no_usage_and_says_nothing_of_it(models):
    assert "code usage" not in describe_file(models[0]).text


def test_the_ascii_form_is_all_ascii(models):
    text = describe_file(models[0], usage=True, unicode=False).text  # nothing from the file is outside ASCII
    text.encode("ascii")
    assert "(. warm-up)" in text and history_rows(text)[1].startswith("    level 1  .")


def old_file(source: Path, target: Path) -> Path:
    """source as sda wrote models before health windows, per-code usage and the bitrate record."""
    tensors, metadata = container.read(source)
    del tensors[modelfile.USAGE_TENSOR], metadata["bitrate"], metadata["history"]["windows"]
    container.write(target, tensors, metadata, kind="model")
    return target


def test_an_old_file_still_describes_itself_from_what_it_has(models, tmp_path):
    new = describe_file(models[0], usage=True).text
    text = describe_file(old_file(models[0], tmp_path / "old.sda"), usage=True).text
    assert "code usage: not recorded" in text
    assert "utilization (0-100%) over 2 epochs to epoch 2 (· warm-up)" in text  # from its epochs' health
    bitrate = next(line for line in new.splitlines() if line.startswith("  bitrate:"))
    assert bitrate in text  # computed from its health and config, as sda would have stored it


def test_two_models_side_by_side(models):
    text = compare_text([describe_file(path, usage=True) for path in models])
    lines = text.splitlines()
    assert lines[0].split() == ["three.sda", "two.sda"]
    row = {line[2:21].strip(): (line[:1], line[21:].split()) for line in lines[1:] if line[2:21].strip()}
    assert row["name"] == (" ", ["'three'", "'two'"])
    assert row["levels x codes"] == ("*", ["3", "x", "64", "(dim", "8)", "2", "x", "16", "(dim", "8)"])
    assert row["epochs"][1] == ["2", "of", "2", "2", "of", "2"]
    assert row["level 3 util/ppl"][1][-1] == "-"  # the 2-level model has no third level
    assert row["bitrate nominal"][1] == ["388", "bit/s", "172", "bit/s"]  # 3 x log2 64, 2 x log2 16 at 21.5/s
    assert row["bitrate effective"][1][1:3] == ["bit/s", f"({row['bitrate effective'][1][2][1:]}"]
    assert "warnings" in row
    assert "settings that differ (*):" in text
    assert row["codebook_size"] == ("*", ["64", "16"]) and row["rvq_levels"] == ("*", ["3", "2"])
    assert "seed" not in row  # the same in both: not listed
    assert text.count("  utilization (0-100%) over ") == 2 and f"{models[1]}:" in text
    assert max(len(line) for line in lines) <= COMPARE_WIDTH


def test_names_from_files_reach_the_table_made_printable(models, tmp_path):
    tensors, metadata = container.read(models[1])
    metadata["model_name"] = "x" + CONTROL + "y" * 60
    hostile = tmp_path / f"k{CONTROL}.sda"
    container.write(hostile, tensors, metadata, kind="model")
    text = compare_text([describe_file(path, usage=True) for path in (models[0], hostile)], unicode=False)
    assert r"k\x1b]52;c;aGk=\x07.sda" in text and r"'x\x1b]52;c;aGk=\x07yy" in text  # the path and the name
    assert "\x1b" not in text and "\x07" not in text
    assert "..." in text and max(len(line) for line in text.splitlines() if "utilization" not in line) <= 100


def test_a_long_history_is_resampled_and_its_lowest_judged_window_named():
    windows = [WindowRecord(step, 1, step <= 10, step > 11, (0.9 if step != 40 else 0.125, 0.6), (9.0, 5.0))
               for step in range(1, 101)]
    windows[10] = dataclasses.replace(windows[10], utilization=(0.05, 0.05))  # just after warm-up: not judged
    head, one, two = history_lines(History(windows=windows))
    assert head == ("  utilization (0-100%) over 100 windows to step 100 (lowest of up to 4 a column; "
                    "· warm-up):")
    # Windows 1-10 are the warm-up; 11 is not judged, so its 5% shows (▁) but is not the lowest named.
    assert one.startswith("    level 1  ···▁▇") and one.endswith("  lowest 12.5% at step 40 (under 30%), last 90.0%")
    spark = one.split()[2]
    assert len(spark) == SPARK_WIDTH and spark.count("▂") == 1 and spark.index("▂") == 12  # the dip, in 100 windows
    assert two.endswith("  lowest 60.0% at step 12, last 60.0%")
    ascii_line = history_lines(History(windows=windows), unicode=False)[1]
    assert ascii_line.startswith("    level 1  ..._#") and ascii_line.isascii()


def test_a_run_of_warm_up_only_has_no_figures_yet():
    windows = [WindowRecord(step, 1, True, False, (0.0,), (0.0,)) for step in (1, 2)]
    assert history_lines(History(windows=windows))[1] == "    level 1  ··  no figures yet (warm-up)"
    assert history_lines(History()) == []


def test_a_model_with_damaged_tensors_still_shows_its_metadata_and_says_so(models, tmp_path):
    damaged = tmp_path / "damaged.sda"
    data = bytearray(models[0].read_bytes())
    data[-100] ^= 0xFF  # in the tensor data, past the header and metadata
    damaged.write_bytes(bytes(data))
    text = describe_file(damaged, usage=True).text
    assert "sda model 'three'" in text and "code usage: cannot be read: " in text and "damaged" in text


def test_the_end_report_names_the_metrics_log_when_one_was_written(tmp_path):
    log = tmp_path / "kit.metrics.jsonl"
    assert f"  metrics log: {log}" in summary_text(summary(metrics_path=log))
    assert "metrics log" not in summary_text(summary())  # a process other than the first writes none
