"""sda.ui.render: what the page shows, as plain values, checked without a server."""

import dataclasses
import math
import re
from datetime import datetime

import pytest
import torch

from sda import report
from sda.data.dataset import FILES, DecodeProgress
from sda.model.bitrate import Bitrate
from sda.model.health import LevelHealth
from sda.train.engine import RunOptions
from sda.train.history import EpochRecord, History, WindowRecord
from sda.ui.job import DONE, FAILED, RUNNING, STOPPING, CurvePoint, JobView, TrainingJob
from sda.ui.render import (
    ComparedModel,
    LossView,
    alerts_markdown,
    busy_banner,
    compare_html,
    epoch_windows,
    health_history_html,
    html_text,
    job_levels_html,
    levels_html,
    loss_charts_html,
    model_health_history_html,
    report_text,
    smoothed,
    status_markdown,
    usage_html,
)
from tests.helpers import SMALL


def health(level, used, k=64, assignments=100):
    return LevelHealth(level, k, used, used / k, float(used), k - used, 0, assignments)


@pytest.fixture(scope="module")
def finished(folder, tmp_path_factory):
    job = TrainingJob(SMALL, RunOptions(folder, tmp_path_factory.mktemp("models"), "m", health_every=2))
    assert job.wait(120)
    return job.view()


def test_each_level_is_a_row_and_a_weak_one_is_marked_in_class_and_words():
    html = levels_html([health(0, 40), health(1, 19), health(2, 0, assignments=0)], "window <b>")
    rows = re.findall(r'<tr class="([^"]*)" data-level="(\d)">(.*?)</tr>', html)
    assert [(cls, level) for cls, level, _ in rows] == [("sda-level", "1"), ("sda-level weak", "2"), ("sda-level", "3")]
    assert "62.5%" in rows[0][2] and "24 / 64" in rows[0][2] and rows[0][2].endswith("<td>ok</td>")
    assert "29.6%" in rows[1][2] and "⚠ under 30%" in rows[1][2]  # 29.69% is not rounded up toward the line
    assert "no data" in rows[2][2]  # nothing counted yet: not called weak (as report.is_weak says)
    assert "window &lt;b&gt;" in html
    early = levels_html([health(0, 10)], judged=False)  # just after warm-up: figures, but no verdict yet
    assert "weak" not in early and "15.6%" in early and "too few steps to judge" in early


def test_no_levels_yet_is_said_in_words():
    assert "appears after the first steps" in levels_html([])


def test_a_finished_job_draws_its_table_curves_status_and_the_clis_report(finished):
    assert finished.status == DONE
    html = job_levels_html(finished)
    assert html.count('<tr class="sda-level') == SMALL.rvq_levels and f"at step {finished.health.step}" in html
    recon, commit = loss_charts_html(finished.curve, "step", LossView())
    assert all('data-series="train"' in chart and 'data-series="validation"' in chart for chart in (recon, commit))
    assert status_markdown(finished).startswith(f"**Finished** after {SMALL.epochs} of {SMALL.epochs} epochs")
    assert str(finished.summary.model_path) in status_markdown(finished)
    assert report_text(finished) == report.summary_text(finished.summary)  # the same words as the CLI
    assert busy_banner(finished) == ""


def test_a_running_job_shows_epoch_step_eta_and_the_banner(finished):
    running = dataclasses.replace(finished, status=RUNNING, summary=None)
    line = status_markdown(running)
    step = finished.step
    assert f"**Epoch {step.epoch} of {SMALL.epochs}** · step {step.step} of {step.total_steps} · ETA 0.00 s" in line
    assert "on cpu (fp32), kernels torch" in line
    assert "one model at a time" in busy_banner(running) and "**m**" in busy_banner(running)
    assert status_markdown(dataclasses.replace(running, status=STOPPING)).startswith("**Stopping** after this step")
    loading = dataclasses.replace(running, started=None, step=None, reading=None)
    assert status_markdown(loading) == "**Loading** and checking the audio…"
    reading = dataclasses.replace(loading, reading=DecodeProgress(3, 7, 2, FILES))
    assert status_markdown(reading) == ("**Loading** and checking the audio: decoding 3/7 audio files (2 from the "
                                        "cache)…")
    assert report_text(running) == ""


def test_warnings_are_listed_newest_first_and_escaped(finished):
    from sda.train.events import Alert
    assert alerts_markdown(dataclasses.replace(finished, alerts=())) == ""
    view = dataclasses.replace(finished, alerts=(Alert("level 1 <low>", level=0), Alert("step 9 skipped")))
    assert alerts_markdown(view) == "**Warnings (2)**\n- step 9 skipped\n- level 1 &lt;low&gt;"


def test_levels_weak_now_are_the_problem_with_page_advice_and_recovered_dips_are_history(finished):
    from tests.helpers import DIP, WEAK

    live = dataclasses.replace(finished.health, warnings=(DIP, WEAK))
    view = dataclasses.replace(finished, status=RUNNING, summary=None, health=live)
    text = alerts_markdown(view)
    weak_at, dips_at = text.index("**Warnings (1)**"), text.index("**Earlier dips, not a problem now**")
    assert weak_at < dips_at and "RVQ level 3 uses 20.0% of its 128 codes" in text[weak_at:dips_at]
    assert "Try fewer RVQ levels (2) or more files." in text[weak_at:dips_at]  # the page has no codebook size
    assert "--codebook-size" not in text
    assert "level 1 at 16.0% at step 20: recovered at step 48 (97.0% now)" in text[dips_at:]
    # The records of the latest health event are the truth: a dip that recovered since is no problem.
    later = dataclasses.replace(WEAK, recovered_step=400, recovered_utilization=0.6)
    assert "Warnings" not in alerts_markdown(dataclasses.replace(view, health=dataclasses.replace(live, warnings=(
        DIP, later))))


def test_failures_say_whether_the_input_or_training_was_at_fault():
    view = JobView(job_id=1, version=3, status=FAILED, began=datetime.now(), model_name=None,
                   error="/x does not exist: check the path <here>", bad_input=True)
    assert status_markdown(view) == "**Could not start training:** /x does not exist: check the path &lt;here&gt;"
    assert status_markdown(dataclasses.replace(view, bad_input=False)).startswith("**Training failed:**")
    assert report_text(view) == "sda: error: /x does not exist: check the path <here>"
    assert status_markdown(None).startswith("No training yet")


# Health over time, per-code usage, bitrate, loss charts, comparison (hand-made records)

HOSTILE = '<img src=x onerror="window.__xss=1">'


def window(step, utilization, perplexity=(4.0, 2.0), warming_up=False, epoch=1):
    return WindowRecord(step, epoch, warming_up, True, tuple(utilization), tuple(perplexity))


def test_the_level_rows_carry_each_levels_entropy_and_bitrate_and_the_table_the_total():
    rate = Bitrate(frame_rate=20.0, codebook_bits=6.0, entropies=(5.0, 3.0))
    html = levels_html([health(0, 40), health(1, 19)], rate=rate)
    rows = re.findall(r'<tr class="sda-level[^"]*" data-level="\d">(.*?)</tr>', html)
    assert "<td>5.00 / 6</td><td>100 bit/s</td>" in rows[0]
    assert "<td>3.00 / 6</td><td>60 bit/s</td>" in rows[1]
    assert "<th>Entropy (bits)</th><th>Bit rate</th>" in html
    assert rate.effective_line() == "effective 160 bit/s of 240 bit/s nominal (66.7%) at 20.0 codes/s"
    assert f'<tr class="sda-bitrate"><td colspan="8">{rate.effective_line()}</td>' in html
    mismatched = levels_html([health(0, 40)], rate=rate)  # a file whose record has another number of levels
    assert "bit/s" not in mismatched and "Entropy" not in mismatched


def test_a_files_bitrate_record_is_read_back_or_refused():
    rate = Bitrate(21.5, 10.0, (7.5, 6.25))
    assert Bitrate.from_dict(rate.to_dict()) == rate
    for bad in ({}, {"frame_rate": "x", "codebook_bits": 10, "entropy_bits": []}, None,
                {"frame_rate": 1.0, "codebook_bits": 2.0, "entropy_bits": [3.0]},  # more bits than the codebook holds
                {"frame_rate": math.nan, "codebook_bits": 2.0, "entropy_bits": []}):
        with pytest.raises(ValueError):
            Bitrate.from_dict(bad)


def test_health_history_draws_each_level_the_30_percent_line_and_the_warmup_as_a_band():
    windows = [window(10, (0.0, 0.0), (0.0, 0.0), warming_up=True), window(20, (0.0, 0.0), (0.0, 0.0), True),
               window(30, (0.5, 0.2)), window(40, (0.6, 0.25), (8.0, 3.0))]
    html = health_history_html(windows)
    utilization, perplexity = re.findall(r"<svg .*?</svg>", html)
    assert 'data-windows="4"' in utilization and "30% line" in utilization and "sda-chart-rule" in utilization
    band = re.search(r'<rect class="sda-chart-band" x="([\d.]+)" y="\d+" width="([\d.]+)"', utilization)
    assert band and "warm-up: quantizer off" in utilization and "warm-up" in perplexity
    lines = dict(re.findall(r'data-series="(level \d)" d="([^"]*)"', utilization))
    assert set(lines) == {"level 1", "level 2"} and all(d.count("L") == 1 for d in lines.values())  # 2 points each
    start = float(lines["level 1"].split()[0][1:])
    assert start == pytest.approx(float(band[1]) + float(band[2]), abs=0.2)  # the lines start where warm-up ends
    assert "(log scale)" in perplexity
    assert "waiting for the end of warm-up" in health_history_html(windows[:2])
    assert "no data yet" in health_history_html([])


def test_a_model_without_windows_draws_its_health_history_by_epoch():
    old = History(epochs=[EpochRecord(e, {}, {}, health=[health(0, 10 * e), health(1, 5 * e)]) for e in (1, 2, 3)])
    html = model_health_history_html(old)
    assert ">epoch</text>" in html and 'data-windows="3"' in html
    assert [w.utilization for w in epoch_windows(old)] == [(10 / 64, 5 / 64), (20 / 64, 10 / 64), (30 / 64, 15 / 64)]
    assert ">step</text>" in model_health_history_html(History(windows=[window(5, (0.5, 0.5))]))


def test_usage_is_sorted_most_used_first_grouped_to_at_most_128_bars_and_the_dead_tail_shaded():
    usage = torch.zeros(2, 1024, dtype=torch.int64)
    usage[0, 100:400] = torch.arange(300, 0, -1)  # 300 codes used, not in rank order
    usage[1, 5] = 7
    html = usage_html(usage)
    charts = re.findall(r"<svg .*?</svg>", html)
    assert len(charts) == 2 and 'data-used="300"' in charts[0] and 'data-used="1"' in charts[1]
    assert "Level 1: 300 of 1024 codes used; 89 carry half" in charts[0] and "724 dead" in charts[0]
    assert "1023 dead" in charts[1] and "8 codes a bar" in charts[0]
    heights = [float(h) for h in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)"', charts[0])]
    assert 0 < len(heights) <= 128 and heights == sorted(heights, reverse=True)  # the empty bars draw nothing
    assert "not recorded in this file" in usage_html(None, "not recorded in this file")
    small = usage_html(torch.tensor([[3, 0, 1, 2]]))
    assert "codes a bar" not in small and "1 dead" in small


def test_smoothing_is_tensorboards_debiased_ema_and_skips_missing_points():
    assert smoothed([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
    assert smoothed([5.0, 5.0], 0.9) == pytest.approx([5.0, 5.0])  # debiased: not pulled toward 0
    out = smoothed([1.0, math.nan, 3.0], 0.5)
    assert out[0] == 1.0 and math.isnan(out[1]) and out[2] == pytest.approx((0.25 + 1.5) / 0.75)


def test_loss_charts_are_log_scale_by_default_and_smoothing_keeps_the_raw_line_faint():
    points = [CurvePoint(s, "train", 1.0 / s, 0.1) for s in range(1, 20)] + [CurvePoint(19, "validation", 0.2, 0.1)]
    recon, commit = loss_charts_html(points, "step", LossView())
    assert "loss (log scale)" in recon and 'data-series="train"' in recon and 'data-series="validation"' in recon
    assert "stroke-dasharray" in recon and "raw" not in recon  # validation dashed
    smooth, _ = loss_charts_html(points, "step", LossView(log_y=False, smoothing=0.6))
    assert "log scale" not in smooth and "smoothing 0.60" in smooth
    assert 'data-series="train (raw)"' in smooth and 'stroke-opacity="0.3"' in smooth
    assert 'data-series="train (raw)"' not in smooth.split('class="sda-chart-legend"')[1]  # not in the legend
    zero = loss_charts_html([CurvePoint(1, "train", 0.5, 0.0)], "step", LossView())[1]  # warm-up: no commitment
    assert "no data yet" in zero


def test_comparison_overlays_the_models_marks_differing_settings_and_escapes_every_name():
    a = ComparedModel(HOSTILE, {"rvq_levels": 2, "audio": {"sample_rate": 22050}, HOSTILE: HOSTILE},
                      History(epochs=[EpochRecord(1, LOSSES, LOSSES)], windows=[window(5, (0.5, 0.2))]))
    b = ComparedModel("b.sda", {"rvq_levels": 3, "audio": {"sample_rate": 22050}},
                      History(epochs=[EpochRecord(1, LOSSES, LOSSES, health=[health(0, 9)])]))  # old: no windows
    html = compare_html([a, b])
    assert "<img" not in html and html.count("&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;") >= 4
    rows = dict(re.findall(r'<tr class="(differs|same)"><th>(?:≠ )?([^<]*)</th>', html)[i][::-1] for i in range(3))
    assert rows == {"rvq_levels": "differs", "audio.sample_rate": "same", html_text(HOSTILE): "differs"}
    assert "Level 1 utilization" in html and "Level 2 utilization" in html and ">epoch or step</text>" in html
    assert "Reconstruction loss by epoch" in html and 'data-series="b.sda: validation"' in html
    assert "two or more" in compare_html([a])


LOSSES = {"loss": 1.0, "reconstruction": 0.9, "commitment": 0.1}
