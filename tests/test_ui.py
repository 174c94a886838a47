"""The Gradio app, served for real and driven through gradio_client, the way a script or another page would."""

import dataclasses
import pathlib
import re

import pytest
from gradio_client import handle_file

from sda.data.dataset import preflight
from sda.data.synth import write_collection
from sda.format import modelfile
from sda.text import duration
from sda.ui.app import serve
from sda.ui.render import DEFAULT_LOOK
from tests.helpers import MODEL, SMALL, WAIT, Page, free_port, shown_markdown, trained_model


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    app = serve(models, port=free_port(), base_config=dataclasses.replace(SMALL, epochs=None), quiet=True)
    yield app
    if app.slot.job is not None:
        app.slot.stop()
        app.slot.job.wait(WAIT)
    app.close()


def wait_idle(app):
    if app.slot.job is not None:
        assert app.slot.job.wait(WAIT)


def test_checking_a_folder_shows_what_was_found_and_the_codebook_size(app, folder):
    report, codebook = Page(app).client.predict(str(folder), api_name="/check_folder")
    assert "6 usable audio files" in report and "00_kick.wav" in report
    assert codebook == f"64 codes per level (for {duration(preflight(folder).total_seconds)} of audio)"


def test_a_folder_that_cannot_be_used_is_explained(app, tmp_path):
    page = Page(app)
    report, codebook = page.client.predict(str(tmp_path / "nowhere"), api_name="/check_folder")
    assert report.startswith("⚠ ") and "does not exist" in report and codebook == "—"
    few = write_collection(tmp_path / "few", n_files=3)[0].parent
    report, _ = page.client.predict(str(few), api_name="/check_folder")
    assert "3 usable" in report and "at least 5" in report and "Add more audio files" in report


@pytest.mark.parametrize(("settings", "message"), [
    ({"levels": 7}, "rvq_levels=7 is out of range: expected a whole number from 2 to 4"),
    ({"levels": 2.5}, "RVQ levels must be a whole number"),
    ({"epochs": -1}, "epochs=-1 is out of range"),
    ({"commitment": "lots"}, "commitment weight must be a number, got 'lots'"),
    ({"lr": 3.0}, "learning_rate=3.0 is out of range"),
    ({"health_every": 0}, "health_every=0 is out of range: expected a whole number from 1 to"),
    ({"data": "  "}, "choose the folder of audio to train on first"),
])
def test_bad_settings_are_refused_on_the_page_and_the_server_keeps_serving(app, folder, settings, message):
    wait_idle(app)
    page = Page(app)
    shown = page.start(**{"data": folder, **settings})
    assert shown["notice"].startswith("**Cannot start:**") and message in shown_markdown(shown["notice"])
    assert app.slot.job is None or not app.slot.job.view().active  # nothing was started
    assert "usable audio files" in page.client.predict(str(folder), api_name="/check_folder")[0]


def handler(app, name):
    """One of the page's event handlers (the closures of sda.ui.app.build_app), to call as Gradio would."""
    return next(f.fn for f in app.fns.values() if f.name == name)


def by_id(shown: dict) -> dict:
    """A handler's updates by the elem_id of their component (the components that have one)."""
    return {c.elem_id: value for c, value in shown.items() if getattr(c, "elem_id", None)}


FORM = {"sda-folder", "sda-preflight", "sda-codebook", "sda-levels", "sda-commitment", "sda-epochs", "sda-name"}


def test_a_failed_start_keeps_the_last_runs_charts_and_report_and_says_why(app, folder, tmp_path):
    wait_idle(app)
    page = Page(app)
    page.start(folder, epochs=1, name="kept-run")
    finished = page.poll_until(lambda s: s["status"].startswith("**Finished**"), "the finished run")
    report, recon, health = finished["report"], finished["recon"], finished["health"]
    page.start(tmp_path / "gone")
    shown = page.poll_until(lambda s: "Could not start" in s["status"], "the failure")
    assert "does not exist" in shown["status"] and shown["banner"] == ""
    assert shown["report"] == report and report.startswith("Training finished")  # kept, as the charts are
    assert shown["recon"] == recon and shown["health"] == health and 'data-level="1"' in health


def test_a_good_folder_check_clears_the_error_of_an_earlier_start(app, folder, tmp_path):
    wait_idle(app)
    page = Page(app)
    page.start(tmp_path / "gone")
    page.poll_until(lambda s: "Could not start" in s["status"], "the failure")
    check, after = handler(app, "check_folder"), handler(app, "after_check")
    _, codebook = check(str(tmp_path / "also-gone"))
    assert after(codebook) == ({"__type__": "update"}, {"__type__": "update"})  # a bad folder: left as it is
    _, codebook = check(str(folder))
    notice, status = after(codebook)
    assert codebook.startswith("64 codes") and notice == "" and status.startswith("No training yet")


def test_a_reload_during_a_run_shows_it_and_leaves_the_form_at_its_defaults(app, folder):
    wait_idle(app)
    page = Page(app)
    page.start(folder, epochs=0, name="")  # automatic epochs and a generated name: a reload must not fill them in
    page.poll_until(lambda s: "· step " in s["status"], "the first step")
    shown = by_id(handler(app, "on_load")(None, None))
    assert not FORM & set(shown), "a reload rewrote the form from the running job"
    assert "· step " in shown["sda-status"] and "one model at a time" in shown["sda-banner"]
    page.stop()
    page.poll_until(lambda s: s["status"].startswith("**Stopped early**"), "the stopped run")


def test_a_taken_name_says_what_to_do_on_the_page_not_a_flag(app, folder):
    wait_idle(app)
    (app.models_dir / "taken.sda").write_bytes(b"")
    page = Page(app)
    page.start(folder, name="taken")
    shown = page.poll_until(lambda s: "Could not start" in s["status"], "the refusal")
    message = shown_markdown(shown["status"])
    assert "already exists" in message and "choose another model name" in message
    assert not re.search(r"(?<![\w-])--[a-z]", message), message  # no CLI flag (--resume) the page cannot act on


def test_new_warnings_make_one_short_toast_not_a_stack(monkeypatch, tmp_path):
    from datetime import datetime

    from sda.train.events import Alert
    from sda.ui import app as page_app
    from sda.ui.job import RUNNING, JobView

    toasts = []
    monkeypatch.setattr(page_app, "_toast", lambda kind, message, title, duration=None: toasts.append(
        (message, title, duration)))
    alerts = tuple(Alert(f"RVQ level {i} uses 3% of its codes", level=i - 1) for i in (1, 2, 3))
    view = JobView(job_id=1, version=5, status=RUNNING, began=datetime.now(), model_name=None, alerts=alerts)
    ui = page_app.LiveViews(*(f"c{i}" for i in range(7)), ("p1", "p2"), *(f"d{i}" for i in range(6)))
    page_app._changes(view, None, ui, tmp_path)
    assert toasts == [("RVQ level 1 uses 3% of its codes (and 2 more warnings: see Warnings under the codebook "
                       "health)", "Codebook health", page_app.TOAST_SECONDS)]
    seen = {"job": 1, "version": 4, "toasted": 3}
    page_app._changes(view, seen, ui, tmp_path)
    assert len(toasts) == 1  # nothing new: no toast


def test_start_poll_stop_and_the_model_is_saved(app, folder):
    wait_idle(app)
    page = Page(app)
    shown = page.start(folder, levels=2, commitment=0.5, epochs=500, name="client-run")
    assert shown["notice"] == "" and "one model at a time" in shown["banner"]
    shown = page.poll_until(lambda s: 'data-level="2"' in s.get("health", ""), "two level rows")
    assert 'data-level="3"' not in shown["health"] and re.search(r"\*\*Epoch \d+ of 500\*\* · step", shown["status"])
    assert 'data-series="train"' in shown["recon"] and "(log scale)" in shown["recon"]  # SVG charts, sda.ui.charts
    # Health over time and per-code usage come with the health table; the table's rows carry the bitrate
    shown = page.poll_until(lambda s: "30% line" in s["history"], "the health history, past the warm-up")
    assert 'class="sda-chart sda-utilization-chart"' in shown["history"] and 'data-series="level 2"' in shown["history"]
    assert "codes used" in shown["usage"] and "bit/s" in shown["health"] and "nominal" in shown["health"]

    # Another page (a reload, another tab) attaches to the same run, and cannot start a second one.
    other = Page(app)
    seen = other.poll_until(lambda s: 'data-level="2"' in s.get("health", ""), "the running job")
    assert "client-run" in seen["banner"]
    refused = other.start(folder, name="second")
    assert "already running" in refused["notice"] and "'client-run'" in refused["notice"]

    page.stop()
    shown = page.poll_until(lambda s: s["status"].startswith("**Stopped early**"), "the stopped run")
    path = app.models_dir / "client-run.sda"
    assert str(path) in shown["status"] and f"model: {path}" in shown["report"]
    assert "Training stopped early" in shown["report"] and shown["banner"] == ""
    model, metadata = modelfile.load_model(path)
    assert model.config.rvq_levels == 2 and model.config.commitment_weight == 0.5 and model.config.epochs == 500
    assert not (app.models_dir / "second.sda").exists()

    info = page.call("/show_model", path.name, names=MODEL)
    assert info["notice"] == "" and "sda model 'client-run'" in info["info"]
    assert info["config"]["rvq_levels"] == 2 and info["health"].count('<tr class="sda-level') == 2
    assert "effective" in info["health"] and 'data-level="2"' in info["usage"] and "Utilization" in info["history"]
    compared = page.call("/compare", [path.name, path.name], names=["notice", "compare"])
    assert "two or more" in compared["compare"]  # the same model twice is one model


def test_epochs_0_means_automatic(app, folder):
    wait_idle(app)
    page = Page(app)
    page.start(folder, epochs=0, name="auto-epochs")
    page.poll_until(lambda s: "· step " in s["status"], "the first step")  # a stop before it saves nothing
    page.stop()  # early: the model is saved with its resolved settings all the same
    page.poll_until(lambda s: s["status"].startswith("**Stopped early**"), "the stopped run")
    model, _ = modelfile.load_model(app.models_dir / "auto-epochs.sda")
    auto = dataclasses.replace(SMALL, epochs=None).resolve(seconds=12.0, n_train_chunks=47)
    assert model.config.epochs == auto.epochs == 67


def test_a_finished_run_shows_previews_the_report_and_the_new_model(app, folder):
    wait_idle(app)
    page = Page(app)
    page.start(folder, levels=3, epochs=2, name="short-run")
    shown = page.poll_until(lambda s: s["status"].startswith("**Finished**"), "the finished run")
    assert shown["report"].startswith("Training finished: 2 of 2 epochs")
    assert shown["clip1-original"] and shown["clip1-reconstruction"]  # the validation set has at least one clip
    assert shown["models"] == "short-run.sda"  # the Models list selects the new model (by name)
    modelfile.load_model(app.models_dir / "short-run.sda")


def test_a_corrupt_or_foreign_file_is_named_as_such(app, tmp_path):
    page = Page(app)
    junk = tmp_path / "junk.sda"
    junk.write_bytes(b"PK\x03\x04 this is a zip, not an sda file" * 4)
    shown = page.call("/open_model", handle_file(str(junk)), names=MODEL)
    assert shown["notice"].startswith("**Cannot open junk.sda:** junk.sda is a zip archive") and shown["info"] == ""
    golden = pathlib.Path(__file__).parent / "data" / "golden.sda"  # a valid container, not an sda model
    cut = tmp_path / "cut.sda"
    cut.write_bytes(golden.read_bytes()[:40])
    shown = page.call("/open_model", handle_file(str(cut)), names=MODEL)
    assert shown["notice"].startswith("**Cannot open cut.sda:** cut.sda is truncated: it ends after 40 bytes")
    shown = page.call("/open_model", handle_file(str(golden)), names=MODEL)
    assert shown["notice"].startswith("**Cannot open golden.sda:** golden.sda is an .sda file but not an sda model")
    assert shown["info"] == ""


def test_the_controls_take_their_defaults_bounds_and_words_from_the_config(tmp_path):
    from sda.config import RANGES, RunOptions, VQVAEConfig
    from sda.ui.app import build_app

    blocks = build_app(tmp_path).blocks.values()
    shown = {b.label: b for b in blocks if getattr(b, "label", None)}
    levels, commitment = RANGES["rvq_levels"], RANGES["commitment_weight"]
    slider = shown[levels.label_for("rvq_levels")]
    assert (slider.minimum, slider.maximum, slider.value) == (levels.low, levels.high, VQVAEConfig.rvq_levels)
    slider = shown[commitment.label_for("commitment_weight")]
    assert commitment.fits(slider.minimum) and commitment.fits(slider.maximum)
    assert (slider.minimum, slider.maximum) == commitment.typical and slider.value == VQVAEConfig.commitment_weight
    for name, default in [("batch_size", VQVAEConfig.batch_size), ("learning_rate", VQVAEConfig.learning_rate),
                          ("seed", VQVAEConfig.seed), ("health_every", RunOptions.health_every)]:
        control = shown[RANGES[name].label_for(name)]
        assert control.value == default and control.info.lower().startswith(RANGES[name].help.lower()), name


def test_the_preview_players_name_the_file_each_clip_is_from(tmp_path):
    from datetime import datetime

    import numpy as np
    import soundfile as sf

    from sda.train.events import Preview
    from sda.ui.app import _preview_players
    from sda.ui.job import DONE, JobView

    wavs = []
    for name in ("original.wav", "reconstruction.wav"):
        sf.write(tmp_path / name, np.zeros(100, dtype=np.float32), 8000)
        wavs.append(tmp_path / name)
    view = JobView(job_id=1, version=1, status=DONE, began=datetime.now(), model_name=None,
                   preview=Preview(epoch=2, clips=[tuple(wavs)], sources=("drums/kick\x1b[2J.wav",)))
    players = ("o1", "r1", "o2", "r2")  # stand-ins for the gr.Audio components
    shown = _preview_players(view, players)
    assert shown["o1"]["label"] == "Clip 1 (drums/kick\\x1b[2J.wav): original"  # printable: no escape reaches a page
    assert shown["r1"]["label"] == "Clip 1 (drums/kick\\x1b[2J.wav): reconstruction after epoch 2"
    assert shown["o2"]["visible"] is False


def test_a_comparison_opens_only_models_listed_in_the_models_folder(tmp_path):
    from sda.ui.app import _compare

    outside = tmp_path / "outside.sda"
    outside.write_bytes(b"not a model")
    models = tmp_path / "models"
    models.mkdir()
    (models / "junk.sda").write_bytes(b"not a model either")
    notice, html = _compare(models, ["../outside.sda", str(outside), "<b>x</b>.sda", "junk.sda"], DEFAULT_LOOK)
    assert notice.startswith("**Left out:** ../outside.sda: there is no such model in the models folder")
    assert "&lt;b&gt;x&lt;/b&gt;.sda: there is no such model" in notice and "junk.sda:" in notice
    assert "two or more" in html  # nothing left to compare
    for bad in ("junk.sda", [1, 2], {"a": 1}):
        notice, _ = _compare(models, bad, DEFAULT_LOOK)
        assert notice.startswith("**Cannot compare:** expected a list of model names")
    notice, _ = _compare(models, ["junk.sda"] * 9, DEFAULT_LOOK)
    assert notice == "**Cannot compare 9 models:** at most 8"


def test_a_reconstruction_runs_beside_a_training_runs_live_view_and_an_upload_opens_it(app, folder, monkeypatch,
                                                                                      tmp_path):
    """Listening (the Models tab) while a run trains: the run's polls go on answering while a reconstruction is
    under way (its own queue, off the event loop), and a model opened as an upload, not listed, is the one used."""
    import threading

    from gradio_client import Client

    from sda.ui import app as page_app

    model = trained_model(folder, tmp_path).rename(tmp_path / "listened.sda")  # not in the models folder
    wait_idle(app)
    page = Page(app)
    page.start(folder, epochs=500, name="listen-beside")
    page.poll_until(lambda s: "· step " in s["status"], "the first step")
    began, go_on, real_listen = threading.Event(), threading.Event(), page_app.listen

    def held(*args, **kwargs):  # the reconstruction waits until the test has seen polls answered
        began.set()
        assert go_on.wait(WAIT)
        return real_listen(*args, **kwargs)

    monkeypatch.setattr(page_app, "listen", held)
    client = Client(app.local_url, verbose=False)
    pending = client.submit(None, handle_file(str(model)), None, str(folder / "00_kick.wav"), api_name="/listen")
    assert began.wait(WAIT)
    steps = [page.call("/poll")["status"] for _ in range(3)]  # answered while the reconstruction is held
    assert all("· step " in s for s in steps) and not pending.done()
    go_on.set()
    notice, summary, *_ = pending.result(timeout=WAIT)
    assert notice == "" and summary.startswith("Through **listened.sda**: **") and "00\\_kick.wav**: " in summary
    page.stop()
    page.poll_until(lambda s: s["status"].startswith("**Stopped early**"), "the stopped run")
