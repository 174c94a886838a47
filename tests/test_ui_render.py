"""sda.ui.render: what the page shows, as plain values, checked without a server."""

import dataclasses
import math
import re
from datetime import datetime

import pytest

from sda import report
from sda.model.health import LevelHealth
from sda.train.engine import RunOptions
from sda.train.history import History
from sda.ui.job import DONE, FAILED, RUNNING, STOPPING, JobView, TrainingJob
from sda.ui.render import (
    alerts_markdown,
    busy_banner,
    curve_frames,
    history_frames,
    job_levels_html,
    levels_html,
    report_text,
    status_markdown,
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
    recon, commit = curve_frames(finished)
    assert list(recon.columns) == ["x", "loss", "series"] and len(recon) == len(commit) == len(finished.curve)
    assert set(recon["series"]) == {"train", "validation"} and str(recon["x"].dtype) == "int64"
    assert recon["loss"].tolist() == [p.reconstruction for p in finished.curve]
    assert commit["loss"].tolist() == [p.commitment for p in finished.curve]
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
    loading = dataclasses.replace(running, started=None, step=None)
    assert status_markdown(loading) == "**Loading** and checking the audio…"
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


def test_a_series_not_measured_yet_still_has_a_point_that_is_empty(finished):
    first_train = next(p for p in finished.curve if p.split == "train")
    early = dataclasses.replace(finished, curve=(first_train,))  # before the first epoch ended
    recon, commit = curve_frames(early)
    assert recon["series"].tolist() == ["train", "validation"] and recon["x"].tolist() == [first_train.step] * 2
    assert recon["loss"].iloc[0] == first_train.reconstruction and math.isnan(recon["loss"].iloc[1])
    assert math.isnan(commit["loss"].iloc[1])
    empty = curve_frames(dataclasses.replace(finished, curve=()))
    assert all(len(frame) == 0 for frame in empty)


def test_a_model_files_history_plots_against_epoch(finished):
    from sda.format import container
    history = container.read_metadata(finished.summary.model_path)["history"]
    recon, commit = history_frames(History.from_dict(history))  # the assertions read the file's dicts
    assert recon["x"].tolist() == [e for e in range(1, SMALL.epochs + 1) for _ in range(2)]
    assert recon["loss"].tolist()[1::2] == [e["validation"]["reconstruction"] for e in history["epochs"]]
    assert commit["loss"].tolist()[0::2] == [e["train"]["commitment"] for e in history["epochs"]]
