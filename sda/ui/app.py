"""The Gradio app behind `sda ui`: a Training tab driving the shared engine, and a Models tab.

    app = serve(models_dir=Path("models"), host="127.0.0.1", port=7860)   # returns once listening
    app.slot.stop(); app.close()

Training runs as the process's one background job (sda.ui.job.JobSlot), so every page, and a page
reloaded mid-run, shows the same run. Each page polls it with a gr.Timer; a poll sends only what
changed since that page's last one (the health history and usage charts with each new health window,
the loss charts with each new point: sda.ui.charts draws them as SVG). The Models tab shows one model
file, or compares several of the models folder (their loss and utilization histories overlaid, their
settings side by side). Stop sets the engine's stop flag: the engine finishes the step
and saves the model and a checkpoint. Handlers never raise at the user: bad input becomes a message
on the page (and a toast), and the server keeps serving. Every API input is checked for its type
and size here (_text, _number, _whole) before use, and settings for their range by
VQVAEConfig.validate.

Who may do what (issue 14):
- Beyond loopback (serve: --share, or a host that is not a loopback address or localhost) the page
  asks for a login: user "sda" and a password that is made at start and printed once, or given
  (SDA_UI_PASSWORD, --password-file). Without one, serve refuses unless told no_auth (--no-auth),
  and the CLI then warns. On loopback there is no login unless a password is given.
- Beyond loopback a data root is required: the folder box reads only folders under it (confine).
- Stop: only the client that started the run may stop it. The page keeps a random client key in
  the browser's local storage (gr.BrowserState), so a reload or another tab of the same browser can
  stop it; an API client passes the key /start returned. A login is no such proof: every user of
  the page shares the one password. The server's operator stops any run with Ctrl-C.
- Files: the page serves no file of the models folder or the data root (no allowed_paths); preview
  clips go to the page as samples, and Gradio serves its own copies. Uploads (.sda files to open, sounds to
  listen to) are capped at MAX_UPLOAD.
- Listening (the Models tab, sda.ui.listen): the model is one of the list (_listed_model) or an upload, the
  sound an upload (only files in Gradio's upload folder: _uploaded_path) or a path confined as the folder box's
  is; the wavs it makes are written to the app's own temporary folder (TakeStore), of which Gradio serves its
  copies. One reconstruction at a time, in a queue of its own, so a training job's polls never wait for it.
"""

import contextlib
import dataclasses
import ipaddress
import math
import os
import re
import secrets
import weakref
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import soundfile as sf
from gradio.utils import get_upload_folder

from sda.config import (
    MAX_CODEC_SAMPLES,
    MAX_CODEC_SECONDS,
    RANGES,
    DecodeOptions,
    RunOptions,
    VQVAEConfig,
    check_setting,
)
from sda.data.audio import AUDIO_EXTENSIONS, read_audio
from sda.data.dataset import DecodeProgress, OnProgress, preflight
from sda.errors import AudioFileError, ConfigError, DataError, SdaError, SdaUserError
from sda.format.modelfile import load_codec_model, load_usage
from sda.model.bitrate import Bitrate, bitrate
from sda.model.health import LevelHealth
from sda.report import PAGE, decoding_text, describe
from sda.text import duration, plural, printable
from sda.train.engine import PREVIEW_CLIPS
from sda.train.history import History
from sda.train.runfiles import check_model_name
from sda.ui.job import DONE, FAILED, RUNNING, STOPPED, JobBusyError, JobSlot, JobView, NotYourJobError
from sda.ui.listen import Listening, TakeStore, listen
from sda.ui.render import (
    DEFAULT_LOOK,
    ComparedModel,
    LossView,
    alerts_markdown,
    busy_banner,
    compare_html,
    health_history_html,
    history_curve,
    html_text,
    job_health_history_html,
    job_levels_html,
    job_usage_html,
    levels_html,
    listening_markdown,
    loss_charts_html,
    md_text,
    model_health_history_html,
    plain_json,
    plain_text,
    report_text,
    status_markdown,
    take_label,
    takes_html,
    usage_html,
)

POLL_SECONDS = 1.0
SERVER_CHECK_SECONDS = 3  # how often the page checks that its server still answers (SERVER_WATCH)
TOAST_SECONDS = 5  # a warning toast fades after this: the Warnings list under the health table keeps them all
# Markdown that shows values from files, folders and users (escaped by sda.ui.render.md_text): no LaTeX,
# so a "$$" in a file name stays text.
TEXT = {"latex_delimiters": []}
MAX_COMPARED = 8  # models in one comparison: more lines than that read as noise
AUTO_EPOCHS = 0  # what the Epochs field holds for "automatic" (VQVAEConfig.epochs=None)
LOGIN_USER, PASSWORD_ENV, MIN_PASSWORD = "sda", "SDA_UI_PASSWORD", 8
MAX_UPLOAD = "100mb"  # the page takes uploads only to open a .sda model or checkpoint
# The largest whole number a page's number field holds exactly (a browser's numbers are doubles).
MAX_WHOLE = 2**53 - 1
MAX_PATH_CHARS, MAX_NAME_CHARS = 4096, 1000  # sda.train.engine.check_model_name then allows 100
TENSORBOARD = "tensorboard"  # the page's TensorBoard folders are under models_dir/TENSORBOARD (tensorboard_folder)
_CLIENT_KEY = re.compile(r"[A-Za-z0-9_-]{16,128}")
CSS = """
.sda-levels { width: 100%; border-collapse: collapse; }
.sda-levels caption { text-align: left; opacity: 0.75; padding-bottom: 4px; }
.sda-levels th, .sda-levels td { padding: 4px 10px; text-align: right; }
.sda-levels th:last-child, .sda-levels td:last-child { text-align: left; }
.sda-levels tr.weak td { background: rgba(245, 158, 11, 0.28); font-weight: 600; }
.sda-levels tr.warming td { opacity: 0.7; font-style: italic; }
.sda-muted { opacity: 0.7; }
/* Reports and the preflight line up in columns, as in a terminal */
#sda-report textarea, #sda-preflight textarea, #sda-model-info textarea { font-family: var(--font-mono), monospace; }
/* SERVER_WATCH (below): while the server does not answer, or is another one, the status line is no longer live */
#sda-status[data-sda-server] > * { display: none; }
#sda-status[data-sda-server]::before { display: block; font-weight: 600; padding: 8px 0; }
#sda-status[data-sda-server="lost"]::before {
  content: "No answer from sda ui: it may have stopped. This page no longer shows a live run.";
}
#sda-status[data-sda-server="restarted"]::before {
  content: "sda ui has restarted since this page loaded: reload the page to see what it is doing now.";
}
.sda-levels tfoot td { text-align: left; padding-top: 6px; opacity: 0.85; }
/* eight columns with the bitrate: tighter cells, and a narrow column scrolls rather than hides the verdict */
.sda-levels th, .sda-levels td { padding: 4px 6px; }
#sda-health, #sda-model-health { overflow-x: auto; }
.sda-chart-row { display: flex; flex-wrap: wrap; gap: 8px 16px; width: 100%; }
.sda-chart-box { flex: 1 1 300px; min-width: 0; margin: 0; }
/* two charts a row at most, so a lone third one is not drawn twice as large */
.sda-chart-row > .sda-chart-box { max-width: calc(50% - 8px); }
@media (max-width: 700px) { .sda-chart-row > .sda-chart-box { max-width: 100%; } }
.sda-chart { width: 100%; height: auto; display: block; font: 11px system-ui, sans-serif; }
.sda-chart text { fill: currentColor; }
.sda-chart .sda-chart-title { font-size: 12px; font-weight: 600; }
.sda-chart .sda-chart-tick, .sda-chart .sda-chart-note { opacity: 0.7; }
.sda-chart-grid { stroke: currentColor; stroke-opacity: 0.12; }
.sda-chart-frame { stroke: currentColor; stroke-opacity: 0.45; }
.sda-chart-rule { stroke: #dc2626; stroke-width: 1.2; stroke-dasharray: 4 3; }
.sda-chart .sda-chart-rule-label { fill: #dc2626; font-size: 10px; }
.sda-chart-band { fill: #9ca3af; fill-opacity: 0.2; }
.sda-chart .sda-chart-band-label { font-size: 10px; font-style: italic; opacity: 0.8; }
.sda-chart-legend { display: flex; flex-wrap: wrap; gap: 2px 14px; font-size: 12px; padding: 0 0 4px 12%; }
.sda-chart-key i { display: inline-block; width: 16px; margin-right: 5px; vertical-align: middle; }
/* Listening: the spectrogram at about its drawn size, the level-by-level table's first column as words */
.sda-spectrogram { max-width: 1100px; }
.sda-takes th:first-child, .sda-takes td:first-child { text-align: left; }
.sda-takes th:last-child, .sda-takes td:last-child { text-align: right; }
.sda-compare { border-collapse: collapse; margin-top: 8px; font-size: 13px; }
.sda-compare caption { text-align: left; opacity: 0.75; padding-bottom: 4px; }
.sda-compare th, .sda-compare td { padding: 2px 10px; text-align: left; border-bottom: 1px solid rgba(128,128,128,.2); }
.sda-compare tr.differs th, .sda-compare tr.differs td { background: rgba(245, 158, 11, 0.22); font-weight: 600; }
"""
# The page's own check that its server is there (Gradio's polls stop quietly when it is not): every few seconds
# it asks for the app's id, which each server process makes anew. No answer, or another id, marks the status
# line (data-sda-server, shown by CSS) so that a run's last epoch and ETA do not read as live.
SERVER_WATCH = """
() => {
  const root = ((window.gradio_config && window.gradio_config.root) || window.location.origin).replace(/\\/$/, "");
  let first = null;
  const check = async () => {
    let problem = "";
    try {
      const response = await fetch(root + "/gradio_api/app_id", {cache: "no-store"});
      const id = (await response.json()).app_id;
      if (first === null) first = id;
      else if (id !== first) problem = "restarted";
    } catch (error) {
      problem = "lost";
    }
    const status = document.getElementById("sda-status");
    if (status && problem) status.dataset.sdaServer = problem;
    else if (status) delete status.dataset.sdaServer;
  };
  check();
  setInterval(check, CHECK_MS);
}
""".replace("CHECK_MS", str(1000 * SERVER_CHECK_SECONDS))


@dataclass(frozen=True)
class LiveViews:
    """The components a poll may update, by name; `seen` is the page's own record of what it has drawn."""

    seen: gr.State
    banner: gr.Markdown
    status: gr.Markdown
    health: gr.HTML
    alerts: gr.Markdown
    recon_plot: gr.HTML  # the loss charts (sda.ui.charts)
    commit_plot: gr.HTML
    players: tuple  # gr.Audio: (original, reconstruction) for each preview clip, flattened
    report: gr.Textbox
    start: gr.Button
    stop: gr.Button
    models: gr.Dropdown
    history: gr.HTML  # health history charts (utilization, perplexity per level)
    usage: gr.HTML  # the latest window's per-code usage, sorted

    def outputs(self) -> list:
        return [self.seen, self.banner, self.status, self.health, self.alerts, self.recon_plot, self.commit_plot,
                *self.players, self.report, self.start, self.stop, self.models, self.history, self.usage]


def build_app(models_dir: Path, base_config: VQVAEConfig | None = None, slot: JobSlot | None = None,
              data_root: Path | None = None, decode: DecodeOptions | None = None) -> gr.Blocks:
    """The Blocks app. base_config holds every setting the page does not show (tests pass a small model);
    data_root (resolved, see check_data_root): the only folder the folder box may read under (confine); decode: how
    the folder check and Start read the audio (the check fills the cache that Start then reads)."""
    models_dir, base_config = Path(models_dir), base_config or VQVAEConfig()
    decode = (decode or DecodeOptions()).validate()
    slot = slot or JobSlot()
    defaults = RunOptions(data_dir=Path("."))
    store = TakeStore()  # the reconstructions' wavs (sda.ui.listen); removed when the app goes (below)

    # delete_cache: uploads and copies of previews older than a day go, checked daily.
    with gr.Blocks(title="sda: train discrete audio models", delete_cache=(86400, 86400)) as app:
        seen = gr.State(None)  # what this page has shown of which job; see _changes
        client = gr.BrowserState(None, storage_key="sda-client")  # this browser's key: who may stop (module doc)
        gr.Markdown("# sda\nTrain an RVQ-VAE on a folder of sounds, with the health of every codebook level in view.")
        banner = gr.Markdown("", elem_id="sda-banner", **TEXT)
        with gr.Tab("Training"), gr.Row():
            with gr.Column(scale=2, min_width=320):
                under = f" Folders under {data_root} only (a relative path is taken there)." if data_root else ""
                folder = gr.Textbox(label="Audio folder", elem_id="sda-folder",
                                    placeholder=plain_text(data_root or "/path/to/your/sounds"),
                                    info=plain_text("5 to 500 sounds, searched recursively. Press Enter to check the "
                                                    f"folder.{under}"))
                found = gr.Textbox(label="What sda found", lines=6, max_lines=14, interactive=False,
                                   elem_id="sda-preflight")
                codebook = gr.Textbox(label="Codebook size (automatic, from the seconds of usable audio)",
                                      interactive=False, elem_id="sda-codebook")
                levels = gr.Slider(*slider_span("rvq_levels"), value=base_config.rvq_levels, step=1,
                                   elem_id="sda-levels", **described("rvq_levels"))
                commitment = gr.Slider(*slider_span("commitment_weight"), value=base_config.commitment_weight,
                                       step=0.05, elem_id="sda-commitment", **described("commitment_weight"))
                # 0, not blank, means automatic: the browser sends an empty number field as 0.
                epochs = gr.Number(value=base_config.epochs or AUTO_EPOCHS, precision=0, elem_id="sda-epochs",
                                   **described("epochs", "0 = automatic"))
                name = gr.Textbox(label="Model name", placeholder="blank = sda-YYYYmmdd-HHMMSS", elem_id="sda-name",
                                  info=f"Saved as NAME.sda in {models_dir}")
                with gr.Accordion("More settings", open=False):
                    health_every = gr.Number(value=defaults.health_every, precision=0, **described("health_every"))
                    batch_size = gr.Number(value=base_config.batch_size, precision=0, **described("batch_size"))
                    learning_rate = gr.Number(value=base_config.learning_rate, **described("learning_rate"))
                    seed = gr.Number(value=base_config.seed, precision=0, **described("seed"))
                    board = gr.Textbox("", label="TensorBoard folder (optional)", elem_id="sda-tensorboard",
                                       info=plain_text(f"A folder name: TensorBoard files go in "
                                                       f"{models_dir / TENSORBOARD}/FOLDER/NAME"))
                with gr.Row():
                    start = gr.Button("Start", variant="primary", elem_id="sda-start")
                    stop = gr.Button("Stop", variant="stop", interactive=False, elem_id="sda-stop")
                notice = gr.Markdown("", elem_id="sda-notice", **TEXT)
            with gr.Column(scale=3, min_width=420):
                status = gr.Markdown(status_markdown(None), elem_id="sda-status", **TEXT)
                health = gr.HTML(levels_html([]), elem_id="sda-health")
                alerts = gr.Markdown("", elem_id="sda-alerts", **TEXT)
                history_chart = gr.HTML(health_history_html([]), elem_id="sda-health-history")
                usage_chart = gr.HTML(usage_html(None), elem_id="sda-usage")
                recon_plot, commit_plot = _loss_plots("step")
                loss_log, loss_smoothing = _loss_controls("sda-loss")
                look = gr.State(LossView())  # this page's loss chart settings, for the polls that redraw them
                players = []
                for i in range(PREVIEW_CLIPS):
                    with gr.Row():
                        players += [gr.Audio(label=f"Clip {i + 1}: original", type="filepath", interactive=False,
                                             visible=False),
                                    gr.Audio(label=f"Clip {i + 1}: reconstruction", type="filepath",
                                             interactive=False, visible=False)]
                final = gr.Textbox(label="Report", lines=12, max_lines=40, interactive=False, elem_id="sda-report",
                                   buttons=["copy"])

        with gr.Tab("Models"):
            with gr.Row():
                choice = gr.Dropdown(label=plain_text(f"Models in {models_dir}"), choices=_model_choices(models_dir),
                                     value=None,
                                     scale=3, elem_id="sda-model-choice")
                refresh = gr.Button("Refresh list", scale=1, size="sm")
                upload = gr.File(label="…or open a .sda file", file_types=[".sda"], type="filepath", scale=2)
            model_notice = gr.Markdown("", elem_id="sda-model-notice", **TEXT)
            model_info = gr.Textbox(label="Model", lines=10, max_lines=30, interactive=False, elem_id="sda-model-info")
            model_health = gr.HTML("", elem_id="sda-model-health")
            listening = _listen_section(data_root)
            model_history = gr.HTML("", elem_id="sda-model-history")
            model_usage = gr.HTML("", elem_id="sda-model-usage")
            model_recon, model_commit = _loss_plots("epoch")
            model_log, model_smoothing = _loss_controls("sda-model-loss")
            model_config = gr.JSON(label="Config")
            gr.Markdown("### Compare runs")
            compare_choice = gr.Dropdown(label=plain_text(f"Models in {models_dir} to compare (two or more)"),
                                         choices=_model_choices(models_dir), value=[], multiselect=True,
                                         max_choices=MAX_COMPARED, elem_id="sda-compare-choice")
            compare_notice = gr.Markdown("", elem_id="sda-compare-notice", **TEXT)
            compare_view = gr.HTML(compare_html([]), elem_id="sda-compare")

        live = LiveViews(seen, banner, status, health, alerts, recon_plot, commit_plot, tuple(players), final, start,
                         stop, choice, history=history_chart, usage=usage_chart)
        model_views = [model_notice, model_info, model_health, model_recon, model_commit, model_config, model_history,
                       model_usage]

        def check_folder(path: str, progress=PROGRESS):
            def on_file(p: DecodeProgress) -> None:
                progress((p.done, p.total), desc=decoding_text(p))

            return _check_folder(path, base_config, data_root, decode, on_file)

        def after_check(codebook_line):
            """After a folder check, by the codebook line it drew: a folder that checks out (a line, not blank or
            _UNUSABLE) means an earlier Start's error no longer applies, so it goes."""
            if not isinstance(codebook_line, str) or codebook_line in ("", _UNUSABLE):
                return gr.update(), gr.update()
            view = slot.job.view() if slot.job else None
            refused = view is not None and view.status == FAILED and view.started is None
            return "", status_markdown(None) if refused else gr.update()

        def on_start(seen_now, path, n_levels, weight, n_epochs, model_name, every, batch, lr, seed_value,
                     key=None, board_folder=""):
            key = _client_key(key) or _new_client_key()
            try:
                config = dataclasses.replace(
                    base_config, rvq_levels=_whole(n_levels, "RVQ levels"),
                    commitment_weight=_number(weight, "commitment weight"),
                    epochs=None if _auto(n_epochs) else _whole(n_epochs, "epochs"),
                    batch_size=_whole(batch, "batch size"), learning_rate=_number(lr, "learning rate"),
                    seed=_whole(seed_value, "seed")).validate()
                path = _text(path, "the audio folder", MAX_PATH_CHARS)
                if not path:
                    raise ConfigError("choose the folder of audio to train on first")
                every = check_setting("health_every", _whole(every, "health update interval"))
                options = RunOptions(data_dir=confine(path, data_root), out_dir=models_dir,
                                     model_name=_text(model_name, "the model name", MAX_NAME_CHARS) or None,
                                     health_every=every, tensorboard=tensorboard_folder(board_folder, models_dir),
                                     frontend=PAGE, decode=decode)
                job = slot.start(config, options, owner=key)
            except (SdaUserError, JobBusyError) as exc:  # a bug is not the user's: it propagates to Gradio's log
                _toast(gr.Warning, exc, "Cannot start")
                return {notice: f"**Cannot start:** {md_text(exc)}", client: key}
            return {notice: "", client: key, **_changes(job.view(), None, live, models_dir)}

        def on_stop(seen_now, key=None, look_now=None):
            try:
                job = slot.stop_for(_client_key(key))
            except NotYourJobError as exc:
                _toast(gr.Warning, exc, "Cannot stop")
                return {notice: f"**Cannot stop:** {md_text(exc)}"}
            view = job.view() if job else None
            return {notice: "" if view and view.active else "Nothing is training.",
                    **_changes(view, seen_now, live, models_dir, _look(look_now))}

        def on_poll(seen_now, look_now=None):
            """The timer's tick: what changed since this page's last poll."""
            return _changes(slot.job.view() if slot.job else None, seen_now, live, models_dir, _look(look_now))

        def on_look(log_y, smoothing):
            """The loss charts' log scale or smoothing changed: redraw them now (a poll redraws only on new points)."""
            new = _loss_view(log_y, smoothing)
            view = slot.job.view() if slot.job else None
            recon, commit = loss_charts_html(view.curve if view else (), "step", new)
            return {look: new, recon_plot: recon, commit_plot: commit}

        def on_load(seen_now, key):
            """A fresh or reloaded page: draw the job's progress, toast nothing old; a browser without a client
            key gets one. The form is left at its defaults, not rewritten from the running job: its resolved
            settings (epochs 400 for automatic, the generated or taken name) would be the next Start's."""
            view = slot.job.view() if slot.job else None
            drawn = {"job": view.job_id, "toasted": len(view.alerts), "ended": not view.active} if view else None
            return {**_changes(view, drawn, live, models_dir), client: _client_key(key) or _new_client_key()}

        def on_choose(listed, log_y=True, smoothing=0.0):
            return _show_model(_listed_model(models_dir, listed), model_views, listed, _loss_view(log_y, smoothing))

        def on_open(path, log_y=True, smoothing=0.0):
            return _show_model(path, model_views, look=_loss_view(log_y, smoothing))

        def on_model_look(listed, path, log_y, smoothing):
            """The Models tab's loss settings changed: redraw the model shown (from the list, else the upload)."""
            if listed:
                return on_choose(listed, log_y, smoothing)
            return on_open(path, log_y, smoothing)

        def on_listen(listed, model_upload, sound, sound_path, progress=PROGRESS):
            """Reconstruct: the sound (an upload, else the path box) through the model shown (listed, else uploaded)."""
            def on_level(done: int, total: int) -> None:
                progress((done, total), desc=f"Reconstructing: {done} of {plural(total, 'depth')} done")

            return _listen_to(models_dir, data_root, store, listening, listed, model_upload, sound, sound_path,
                              on_level)

        def on_compare(names, log_y=True, smoothing=0.0):
            notice_text, html = _compare(models_dir, names, _loss_view(log_y, smoothing))
            return {compare_notice: notice_text, compare_view: html}

        # preprocess=False: every value reaches the handler as sent, and is checked there (_text, _number,
        # _whole; ranges by VQVAEConfig.validate, whose messages name the setting), not coerced first.
        for checked in (folder.submit(check_folder, folder, [found, codebook], preprocess=False,
                                      api_name="check_folder"),
                        folder.blur(check_folder, folder, [found, codebook], preprocess=False, api_name=False)):
            checked.then(after_check, codebook, [notice, status], preprocess=False, api_name=False)
        start.click(on_start, [seen, folder, levels, commitment, epochs, name, health_every, batch_size,
                               learning_rate, seed, client, board], [notice, *live.outputs(), client], preprocess=False,
                    api_name="start")
        stop.click(on_stop, [seen, client, look], [notice, *live.outputs()], preprocess=False, api_name="stop")
        timer = gr.Timer(POLL_SECONDS)
        timer.tick(on_poll, [seen, look], live.outputs(), show_progress="hidden", concurrency_limit=None,
                   api_name="poll")
        for control in (loss_log, loss_smoothing):
            control.change(on_look, [loss_log, loss_smoothing], [look, recon_plot, commit_plot], preprocess=False,
                           api_name=False, show_progress="hidden")
        app.load(on_load, [seen, client], [*live.outputs(), client], preprocess=False, api_name=False)
        choice.change(on_choose, [choice, model_log, model_smoothing], model_views, preprocess=False,
                      api_name="show_model")
        upload.upload(on_open, [upload, model_log, model_smoothing], model_views, api_name="open_model")
        refresh.click(lambda: gr.update(choices=_model_choices(models_dir)), None, choice, api_name=False)
        refresh.click(lambda: gr.update(choices=_model_choices(models_dir)), None, compare_choice, api_name=False)
        for control in (model_log, model_smoothing):
            control.change(on_model_look, [choice, upload, model_log, model_smoothing], model_views, api_name=False,
                           show_progress="hidden")
        # One reconstruction at a time, app-wide (it holds a few copies of up to MAX_CODEC_SECONDS of audio), in its
        # own queue: the polls of a training job's live view (concurrency_limit=None) never wait behind it.
        listening.button.click(on_listen, [choice, upload, listening.upload, listening.path], listening.outputs(),
                               preprocess=False, api_name="listen", concurrency_limit=1, concurrency_id="listen")
        for control in (compare_choice, model_log, model_smoothing):
            control.change(on_compare, [compare_choice, model_log, model_smoothing], [compare_notice, compare_view],
                           preprocess=False, api_name="compare" if control is compare_choice else False)

    app.slot, app.models_dir, app.data_root, app.takes = slot, models_dir, data_root, store
    weakref.finalize(app, store.close)  # at the latest when the process exits
    return app


def _loss_plots(x_title: str) -> tuple[gr.HTML, gr.HTML]:
    """Side by side: reconstruction and commitment loss, each with a train and a validation series (SVG
    charts, sda.ui.charts: Gradio's LinePlot has no log scale)."""
    empty = loss_charts_html((), x_title, LossView())
    with gr.Row(equal_height=True):
        return tuple(gr.HTML(chart, elem_classes=f"sda-{kind}-plot", min_width=280)
                     for kind, chart in zip(("recon", "commit"), empty, strict=True))


def _loss_controls(prefix: str) -> tuple[gr.Checkbox, gr.Slider]:
    """Log scale (on by default: a spike then leaves the rest readable) and EMA smoothing of the drawn lines."""
    with gr.Row():
        log_y = gr.Checkbox(value=True, label="Log scale", elem_id=f"{prefix}-log", scale=1, min_width=120)
        smoothing = gr.Slider(0, 0.99, value=0.0, step=0.01, label="Smoothing (EMA weight; 0 = raw)",
                              elem_id=f"{prefix}-smoothing", scale=3)
    return log_y, smoothing


MAX_LEVELS = int(RANGES["rvq_levels"].high)  # players for what the first l levels give: one per level at most
PROGRESS = gr.Progress()  # Gradio gives a handler whose parameter defaults to one a progress bar of its own


@dataclass(frozen=True)
class ListenViews:
    """The Models tab's listening section: the sound to reconstruct, and what a reconstruction shows."""

    upload: gr.File
    path: gr.Textbox
    button: gr.Button
    notice: gr.Markdown  # why it could not, or ""
    results: gr.Column  # what follows: hidden until a reconstruction fills it, so an empty one takes no room
    summary: gr.Markdown  # the file, its code grid, the gain applied and any limiting
    original: gr.Audio
    full: gr.Audio  # all levels, beside the original
    takes: gr.HTML  # the quality figures of each depth, with what each level adds
    depths: tuple  # gr.Audio: what the first l levels give, l = 1..MAX_LEVELS (those past the model's hidden)
    spectrogram: gr.HTML
    downloads: gr.File

    def outputs(self) -> list:
        return [self.notice, self.results, self.summary, self.original, self.full, self.takes, *self.depths,
                self.spectrogram, self.downloads]


def _listen_section(data_root: Path | None) -> ListenViews:
    """Upload a sound or name one (under data_root if there is one: confine), press Reconstruct; the players,
    figures, spectrogram and downloads stay hidden until a reconstruction fills them."""
    gr.Markdown("### Listen through the model\nPick a model above, give a sound, press **Reconstruct**: the original "
                "and its reconstruction side by side, then what the first 1, 2, … levels of codes give alone.")
    under = f" under {data_root} (a relative path is taken there)" if data_root else ""
    with gr.Row(equal_height=True):
        upload = gr.File(label="Upload a sound", file_types=list(AUDIO_EXTENSIONS), type="filepath", scale=2,
                         height=150, elem_id="sda-listen-upload")
        with gr.Column(scale=3):
            path = gr.Textbox(label="…or the path of a sound on this server", elem_id="sda-listen-path",
                              placeholder=plain_text(data_root / "kick.wav" if data_root else "/path/to/kick.wav"),
                              info=plain_text(f"An audio file{under}, of at most {MAX_CODEC_SECONDS / 60:g} minutes; "
                                              "used when nothing is uploaded."))
            button = gr.Button("Reconstruct", variant="primary", elem_id="sda-listen")
    notice = gr.Markdown("", elem_id="sda-listen-notice", **TEXT)

    def player(label: str, elem_id: str) -> gr.Audio:
        return gr.Audio(label=label, type="filepath", interactive=False, visible=False, elem_id=elem_id,
                        buttons=["download"])

    with gr.Column(visible=False, elem_id="sda-listen-results") as results:
        summary = gr.Markdown("", elem_id="sda-listen-summary", **TEXT)
        with gr.Row():
            original, full = player("Original", "sda-listen-original"), player("Reconstruction", "sda-listen-full")
        takes = gr.HTML("", elem_id="sda-listen-takes")
        with gr.Row(elem_id="sda-listen-depths"):
            depths = tuple(player(f"Levels 1–{i}", f"sda-listen-depth-{i}") for i in range(1, MAX_LEVELS + 1))
        spectrogram = gr.HTML("", elem_id="sda-listen-spectrogram")
        downloads = gr.File(label="Download the reconstructions (wav, at the input's rate)", file_count="multiple",
                            interactive=False, visible=False, elem_id="sda-listen-downloads")
    return ListenViews(upload, path, button, notice, results, summary, original, full, takes, depths, spectrogram,
                       downloads)


def _listen_to(models_dir: Path, data_root: Path | None, store: TakeStore, ui: ListenViews, listed, model_upload,
               sound, sound_path, on_level=None) -> dict:
    """The listening section's updates for one Reconstruct, or its notice saying why not (everything cleared:
    a previous reconstruction never stays beside a refusal, and its files go with later ones, TakeStore)."""
    cleared = {ui.notice: "", ui.results: gr.update(visible=False), ui.summary: "",
               ui.original: gr.update(value=None, visible=False),
               ui.full: gr.update(value=None, visible=False), ui.takes: "", ui.spectrogram: "",
               ui.downloads: gr.update(value=None, visible=False),
               **{p: gr.update(value=None, visible=False) for p in ui.depths}}
    name = ""
    try:
        model_path, model_name = _listen_model(models_dir, listed, model_upload)
        audio_path, name = _listen_sound(sound, sound_path, data_root)
        model, _ = load_codec_model(model_path, "open it here again", name=model_name)
        wave, rate = read_audio(audio_path, MAX_CODEC_SECONDS, MAX_CODEC_SAMPLES)
        if wave.shape[-1] == 0:
            raise AudioFileError("it holds no audio (0 samples): give a file with sound in it")
        heard = listen(model, wave, rate, name, store.new_folder(), on_level)
    except (SdaUserError, OSError) as exc:
        message = str(exc)
        for value in (model_upload, sound):  # an upload's temporary path means nothing to anyone
            with contextlib.suppress(ConfigError):  # (a value that is no upload was the error itself)
                if (upload := _uploaded_path(value)) is not None:
                    message = message.replace(str(upload), upload.name)
        what = f" {md_text(name[:200])}" if name else ""
        return {**cleared, ui.notice: f"**Cannot reconstruct{what}:** {md_text(message)}"}
    return {**cleared, **_listened(ui, heard, model_name)}


def _listened(ui: ListenViews, heard: Listening, model_name: str) -> dict:
    total = len(heard.takes)
    out = {ui.results: gr.update(visible=True),
           ui.summary: f"Through **{md_text(model_name)}**: {listening_markdown(heard)}",
           ui.original: gr.update(value=str(heard.original), visible=True,
                                  label=plain_text(f"Original: {heard.source}")),
           ui.full: gr.update(value=str(heard.full.path), visible=True, label=take_label(heard.full, total)),
           ui.takes: takes_html(heard.takes), ui.spectrogram: heard.spectrogram,
           ui.downloads: gr.update(value=[str(t.path) for t in (heard.full, *heard.takes[:-1])], visible=True)}
    for player, take in zip(ui.depths, heard.takes, strict=False):
        out[player] = gr.update(value=str(take.path), visible=True, label=take_label(take, total))
    return out


def _listen_model(models_dir: Path, listed, upload) -> tuple[Path, str]:
    """(file, name as shown) of the model the Models tab shows: the one chosen in the list, else the upload."""
    if listed not in (None, ""):
        path = _listed_model(models_dir, listed)
        if not isinstance(path, Path):
            shown = listed if isinstance(listed, str) else type(listed).__name__
            raise SdaError(f"there is no model {shown[:200]} in the models folder: press Refresh list and choose "
                           "one of the list")
        return path, printable(path.name)
    path = _uploaded_path(upload)
    if path is None:
        raise SdaError("choose a model in the list above, or open a .sda file, first")
    return path, printable(_upload_name(upload, path))


def _listen_sound(upload, typed, data_root: Path | None) -> tuple[Path, str]:
    """(file, name as shown) of the sound to reconstruct: the upload, else the path typed (confine: under
    data_root when there is one, as the Training tab's folder box)."""
    path = _uploaded_path(upload)
    if path is not None:
        return path, printable(_upload_name(upload, path))
    text = _text(typed, "the path of the sound", MAX_PATH_CHARS)
    if not text:
        raise ConfigError("upload a sound, or give the path of one, first")
    return confine(text, data_root), printable(text)


def _uploaded_path(value) -> Path | None:
    """The file of an upload as a client sends it (a Gradio FileData, or its path), if it lies in Gradio's upload
    folder; None for no upload. Gradio checks that too; this check keeps a raw value from naming any other file."""
    if isinstance(value, dict):
        value = value.get("path")
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > MAX_PATH_CHARS or "\0" in value:
        raise ConfigError(f"expected an uploaded file, got {_shown(value)}")
    folder = Path(get_upload_folder()).resolve()
    path = Path(value).resolve()
    if folder not in path.parents:
        raise ConfigError("that file was not uploaded to this page: upload it with the Upload box")
    return path


def _upload_name(value, path: Path) -> str:
    """The name the user's browser gave an upload (shown escaped), else the cached file's."""
    name = value.get("orig_name") if isinstance(value, dict) else None
    return name[:MAX_NAME_CHARS] if isinstance(name, str) and name else path.name


def _loss_view(log_y, smoothing) -> LossView:
    """The page's loss settings, as sent (an API client may send anything: the default then)."""
    log_y = log_y if isinstance(log_y, bool) else True
    ok = isinstance(smoothing, int | float) and not isinstance(smoothing, bool) and 0 <= smoothing < 1
    return LossView(log_y, float(smoothing) if ok else 0.0)


def _look(value) -> LossView:
    return value if isinstance(value, LossView) else DEFAULT_LOOK


@dataclass(frozen=True)
class Login:
    """The page's one login. made_here: the password was generated at start, so the CLI prints it."""

    user: str
    password: str = dataclasses.field(repr=False)
    made_here: bool = False


def login_for(host: str, share: bool, no_auth: bool = False, password_file: Path | None = None,
              environ=os.environ) -> Login | None:
    """The login `sda ui` asks for: a given password (password_file's first line, or SDA_UI_PASSWORD)
    wherever the page is served; else, beyond loopback, a random one made now; else none. no_auth:
    none, and no password may be given with it."""
    if password_file is not None:
        lines = Path(password_file).read_text(encoding="utf-8").splitlines()  # OSError: the CLI says so
        password, source = (lines[0].strip() if lines else ""), f"the first line of {password_file}"
    else:
        password, source = environ.get(PASSWORD_ENV), PASSWORD_ENV
    if no_auth:
        if password:
            raise ConfigError(f"--no-auth and a password ({source}) contradict each other: give one of them")
        return None
    if password is not None:
        if len(password) < MIN_PASSWORD:
            raise ConfigError(f"the password in {source} has {len(password)} characters: give at least "
                              f"{MIN_PASSWORD}")
        return Login(LOGIN_USER, password)
    if reachable_beyond_loopback(host, share):
        return Login(LOGIN_USER, secrets.token_urlsafe(16), made_here=True)
    return None


def serve(models_dir: Path, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          base_config: VQVAEConfig | None = None, quiet: bool = False, data_root: Path | None = None,
          login: Login | None = None, no_auth: bool = False, decode: DecodeOptions | None = None) -> gr.Blocks:
    """Build the app and start serving it in the background; the caller keeps the main thread.
    data_root: the folder box reads only folders under it (see confine). login: the user and password
    the page asks for (login_for). Beyond loopback both are required, the login unless no_auth."""
    where = "--share" if share else f"--host {host}"
    if reachable_beyond_loopback(host, share):
        if data_root is None:
            raise ConfigError(f"serving beyond this machine ({where}) needs --data-root DIR: without it the folder "
                              "box would let every visitor list and read any folder of this server. Give the "
                              "folder that holds your audio collections")
        if login is None and not no_auth:
            raise ConfigError(f"serving beyond this machine ({where}) needs a login: the default makes a password "
                              f"and prints it, or give one ({PASSWORD_ENV} or --password-file); --no-auth serves "
                              "every visitor without one")
    root = check_data_root(data_root) if data_root is not None else None
    app = build_app(models_dir, base_config, data_root=root, decode=decode)
    Path(models_dir).mkdir(parents=True, exist_ok=True)
    # No allowed_paths: Gradio serves only its own cache (preview clips are sent as samples, _clip) and
    # the uploads, which max_file_size caps.
    app.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=True, quiet=quiet, css=CSS,
               js=SERVER_WATCH, show_error=True, max_file_size=MAX_UPLOAD,
               auth=(login.user, login.password) if login else None,
               auth_message="sda: log in as sda with the password sda ui printed at start (or the one you gave it)")
    return app


def reachable_beyond_loopback(host: str, share: bool) -> bool:
    """Whether a server on host (and a --share link) can be reached from other machines: anything but a
    loopback address or the name localhost."""
    if share:
        return True
    if host.lower() == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any address
        return True


def check_data_root(path: Path) -> Path:
    """--data-root as the real folder it names (symlinks and .. resolved), or DataError saying why not."""
    try:
        real = Path(path).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):  # missing, unreadable, a symlink loop
        raise DataError(f"--data-root {path} does not exist: give the folder that holds your audio collections") \
            from None
    if not real.is_dir():
        raise DataError(f"--data-root {path} is a file, not a folder: give the folder that holds your audio "
                        "collections")
    return real


def confine(text: str, root: Path | None) -> Path:
    """The folder typed in the folder box, as the path the page may read.

    No data root (a page on loopback): the path as typed, ~ expanded. With a data root: a relative
    path is taken under it, and the path, once symlinks and .. are resolved, must lie in it;
    DataError, naming the root, otherwise. The resolved path is returned, so what is checked is what
    is read. (The scan in sda.data.dataset bounds the work; a symlink inside the root that points out of it
    is the root owner's choice.)
    """
    if root is None:
        return Path(text).expanduser()
    path = Path(text) if Path(text).is_absolute() else root / text
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise DataError(f"{text} cannot be resolved (a symlink loop?): choose a folder under {root}") from None
    if real != root and root not in real.parents:
        raise DataError(f"{text} is outside the data folder {root}: this page reads audio only from folders under "
                        "it; give a path inside it, or one relative to it")
    return real


def tensorboard_folder(text, models_dir: Path) -> Path | None:
    """The page's TensorBoard folder: blank for none, else one plain folder name, taken under
    models_dir/tensorboard/, so that the page writes nowhere but under its models folder."""
    name = _text(text, "the TensorBoard folder", MAX_NAME_CHARS)
    if not name:
        return None
    try:
        check_model_name(name)  # the same rule as a model name: one plain name, never a path
    except ConfigError:
        raise ConfigError(f"the TensorBoard folder {printable(name)!r} cannot be used: give a plain folder name "
                          f"(it goes under {models_dir / TENSORBOARD}), without / \\ or : or control characters, "
                          "not starting with . or -") from None
    return models_dir / TENSORBOARD / name


def _changes(view: JobView | None, seen: dict | None, ui: LiveViews, models_dir: Path,
             look: LossView = DEFAULT_LOOK) -> dict:
    """Component updates that bring a page from what it has drawn (`seen`) to `view`; toasts for new alerts.

    `seen` records, for one page, the job it last drew and how far: the version, the health step, the
    curve length, the alert count, the preview epoch and whether it drew the end. None: draw everything.
    """
    if view is None:
        if seen == {"job": None}:
            return {ui.seen: seen}
        return {ui.seen: {"job": None}, ui.banner: "", ui.status: status_markdown(None),
                ui.start: gr.update(interactive=True), ui.stop: gr.update(interactive=False)}
    old = seen if seen and seen.get("job") == view.job_id else {}  # another job: draw and toast all of it
    if old.get("version") == view.version:
        return {ui.seen: seen}  # nothing new (an empty dict would read as one output value)
    _toast_alerts(view.alerts[old.get("toasted", 0):])
    # A job that has not begun training (loading the data, or refused: a bad folder, a taken name) has nothing to
    # draw: the page keeps the last run's table, charts, previews and report, and the status says what goes on.
    drawn = view.started is not None
    new = {"job": view.job_id, "version": view.version, "toasted": len(view.alerts), "ended": not view.active,
           "drawn": drawn}
    out = {ui.seen: new, ui.banner: busy_banner(view), ui.status: status_markdown(view),
           ui.start: gr.update(interactive=not view.active), ui.stop: gr.update(interactive=view.status == RUNNING)}
    if drawn:
        new.update({"health": view.health.step if view.health else None, "curve": len(view.curve),
                    "alerts": alerts_markdown(view), "preview": view.preview.epoch if view.preview else None})

        def changed(key: str) -> bool:
            return key not in old or old[key] != new[key]

        if changed("health"):
            out[ui.health] = job_levels_html(view)
            out[ui.history], out[ui.usage] = job_health_history_html(view), job_usage_html(view)
        if changed("alerts"):
            out[ui.alerts] = alerts_markdown(view)
        if changed("curve"):
            out[ui.recon_plot], out[ui.commit_plot] = loss_charts_html(view.curve, "step", look)
        if changed("preview"):
            out.update(_preview_players(view, ui.players))
        if changed("drawn") or (not old.get("ended") and new["ended"]):  # the run's first sight, or its end
            out[ui.report] = report_text(view)
    if not old.get("ended") and new["ended"]:  # the end, seen by this page for the first time
        if view.status == STOPPED and view.summary is None:
            gr.Info(view.error, title="Training stopped")
        elif view.status in (DONE, STOPPED):
            how = "finished" if view.status == DONE else "stopped"
            _toast(gr.Info, f"Model saved: {view.summary.model_path}", f"Training {how}")
            out[ui.models] = gr.update(choices=_model_choices(models_dir),
                                       value=printable(Path(view.summary.model_path).name))
        elif view.status == FAILED and old:
            _toast(gr.Warning, view.error, "Could not start training" if view.bad_input else "Training failed")
    return out


def _toast_alerts(alerts) -> None:
    """New warnings as one short toast, not one each: toasts stack over the health table, and the list under
    it (alerts_markdown) keeps every warning anyway."""
    if not alerts:
        return
    more = len(alerts) - 1
    message = alerts[0].message + (f" (and {plural(more, 'more warning')}: see Warnings under the codebook health)"
                                   if more else "")
    title = "Codebook health" if all(a.level is not None for a in alerts) else "Training"
    _toast(gr.Warning, message, title, duration=TOAST_SECONDS)


def slider_span(name: str) -> tuple[float, float]:
    """(low, high) of the page's slider for a setting: its typical span (sda.config.RANGES), else its whole range."""
    limits = RANGES[name]
    return limits.typical or (limits.low, limits.high)


def described(name: str, auto: str = "") -> dict:
    """A control's label and info line, from sda.config.RANGES (what the flag's --help says too). auto: what the
    control holds for an automatic setting, said before the config's "auto: ..." words."""
    limits = RANGES[name]
    info = limits.help.replace("; auto:", f"; {auto}:" if auto else "; auto:")
    return {"label": limits.label_for(name), "info": plain_text(info[:1].upper() + info[1:] + ".")}


def _preview_players(view: JobView, players: tuple) -> dict:
    """Each clip's original and latest reconstruction; players without a clip are hidden."""
    clips = view.preview.clips if view.preview else []
    out = {}
    for i, player in enumerate(players):
        clip, which = divmod(i, 2)
        samples = _clip(clips[clip][which]) if clip < len(clips) else None
        if samples is not None:
            source = view.preview.sources[clip] if clip < len(view.preview.sources) else None
            label = f"Clip {clip + 1}" + (f" ({plain_text(source)})" if source else "") + ": " + (
                "original" if which == 0 else f"reconstruction after epoch {view.preview.epoch}")
            out[player] = gr.update(value=samples, visible=True, label=label)
        else:
            out[player] = gr.update(value=None, visible=False)
    return out


def _clip(path: Path):
    """A preview wav as (rate, int16 samples), which Gradio copies into its own cache and serves from
    there: the models folder itself is never served (module doc). None if it is gone or unreadable."""
    try:
        samples, rate = sf.read(str(path), dtype="int16")
    except (OSError, RuntimeError, sf.LibsndfileError):
        return None
    return rate, samples


def _check_folder(path: str, base_config: VQVAEConfig, data_root: Path | None = None,
                  decode: DecodeOptions | None = None, on_progress: OnProgress | None = None) -> tuple[str, str]:
    """(preflight report, codebook size line) for a folder, or the reason it cannot be used (one outside
    data_root among them: confine). on_progress hears of each file decoded (the page's progress bar)."""
    try:
        path = _text(path, "the audio folder", MAX_PATH_CHARS)
        if not path:
            return "", ""
        pf = preflight(confine(path, data_root), base_config.audio, seed=base_config.seed,
                       validation_fraction=base_config.validation_fraction, decode=decode, on_progress=on_progress)
    except (DataError, ConfigError) as exc:
        return plain_text(f"⚠ {exc}"), _UNUSABLE
    return plain_text(pf.format()), _codebook_line(pf, base_config)


_UNUSABLE = "—"  # the codebook line of a folder that cannot be used


def _codebook_line(pf, config: VQVAEConfig) -> str:
    size = config.resolve(seconds=pf.total_seconds, n_train_chunks=pf.n_chunks - pf.val_chunks).codebook_size
    return f"{size} codes per level (for {duration(pf.total_seconds)} of audio)"


def _model_files(models_dir: Path) -> dict[str, Path]:
    """The .sda files in models_dir, newest first, by the name the page shows (sda.text.printable: a name
    that is not valid UTF-8 is shown, and chosen, by its escaped form)."""
    files = sorted(Path(models_dir).glob("*.sda"), key=lambda p: p.stat().st_mtime, reverse=True)
    return {printable(p.name): p for p in files}


def _model_choices(models_dir: Path) -> list[tuple[str, str]]:
    """(label, name) of every .sda file in models_dir, newest first; checkpoints say so. The value is the
    file's name, never a path: the Models list opens only what is in models_dir (_listed_model)."""
    return [(name + ("  (checkpoint)" if name.endswith(".checkpoint.sda") else ""), name)
            for name in _model_files(models_dir)]


def _listed_model(models_dir: Path, name) -> Path | str | None:
    """The file a Models-list value names, looked up among models_dir's .sda files (so no value, whatever
    a client sends, opens a file elsewhere); the value itself when it names none (_show_model says so)."""
    if name in (None, ""):
        return None
    if not isinstance(name, str):
        return name
    return _model_files(models_dir).get(name, name)


def _show_model(path, views: list, listed=None, look: LossView = DEFAULT_LOOK) -> dict:
    """The Models tab for one file (a Path from the models list, or the path of an upload): its description,
    health table (with its bitrate), health history, per-code usage, loss curves and config; or why it cannot."""
    notice, info, health, recon, commit, config, history_view, usage_view = views
    cleared = {notice: "", info: "", health: "", recon: "", commit: "", config: None, history_view: "",
               usage_view: ""}
    if not path:
        return cleared
    if listed is not None and not isinstance(path, Path):  # a list value that names no model file there
        shown = listed if isinstance(listed, str) else type(listed).__name__
        return {**cleared, notice: f"**Cannot open {md_text(shown[:200])}:** there is no such model in the models "
                                   "folder; press Refresh list and choose one of the list"}
    if not isinstance(path, str | Path):
        return {**cleared, notice: f"**Cannot open the file:** expected an uploaded .sda file, got "
                                   f"{md_text(type(path).__name__)}"}
    try:
        _, metadata, text = describe(Path(path), PAGE)  # prefix and metadata only: the weights are not read
        snapshot = [LevelHealth(**h) for h in metadata["health"]]
        history = History.from_dict(metadata["history"])
        frames = loss_charts_html(history_curve(history), "epoch", look)
        rate = _model_bitrate(metadata, snapshot)
        charts = model_health_history_html(history)
    except (SdaError, OSError) as exc:
        message = str(exc)
    except KeyError as exc:  # describe() has read the rest: what is left is the health table and loss history
        message = f"its metadata lacks {exc}"
    except (TypeError, ValueError, AttributeError) as exc:
        message = f"its health table or loss history has a bad entry ({exc})"
    else:
        return {notice: "", info: plain_text(text), health: levels_html(snapshot, "Codebook health at the end of "
                                                                                  "training", rate=rate),
                recon: frames[0], commit: frames[1], config: plain_json(metadata["config"]), history_view: charts,
                usage_view: _model_usage(Path(path))}
    message = message.replace(str(path), Path(path).name)  # an upload's temporary path means nothing to anyone
    return {**cleared, notice: f"**Cannot open {md_text(Path(path).name)}:** {md_text(message)}"}


def _model_bitrate(metadata: dict, snapshot: list[LevelHealth]) -> Bitrate | None:
    """The file's bitrate record; in files from before it, computed from its config and health table. None when
    neither can be (a record sda did not write among them): the table then shows no bitrate, the rest stays."""
    try:
        if "bitrate" in metadata:
            return Bitrate.from_dict(metadata["bitrate"])
        return bitrate(VQVAEConfig.from_dict(metadata["config"]), snapshot)
    except (SdaError, KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def _model_usage(path: Path) -> str:
    """The per-code usage chart of a model file's last window (the whole file is read and verified)."""
    try:
        return usage_html(load_usage(path), "not recorded in this file")
    except (SdaError, OSError) as exc:
        return usage_html(None, f"could not be read ({str(exc).replace(str(path), path.name)})")


def _compare(models_dir: Path, names, look: LossView) -> tuple[str, str]:
    """(notice, comparison) of the models named, each looked up among models_dir's files (_model_files), so a
    value a client sends opens nothing else."""
    if names in (None, ""):
        names = []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return f"**Cannot compare:** expected a list of model names, got {md_text(_shown(names))}", compare_html([])
    if len(names) > MAX_COMPARED:
        return f"**Cannot compare {len(names)} models:** at most {MAX_COMPARED}", compare_html([])
    files, models, problems = _model_files(models_dir), [], []
    for name in dict.fromkeys(names):
        path = files.get(name)
        if path is None:
            problems.append(f"{md_text(name[:200])}: there is no such model in the models folder")
            continue
        try:
            _, metadata, _ = describe(path, PAGE)
            models.append(ComparedModel(name, plain_json(metadata["config"]), History.from_dict(metadata["history"])))
        except (SdaError, OSError, KeyError, TypeError, ValueError, AttributeError) as exc:
            problems.append(f"{md_text(name)}: {md_text(str(exc).replace(str(path), path.name))}")
    notice = ("**Left out:** " + "; ".join(problems)) if problems else ""
    return notice, compare_html(models, look)


def _toast(kind, message, title: str, duration: float | None = None) -> None:
    """gr.Warning or gr.Info: Gradio shows a toast's message as (sanitised) HTML, not Markdown: html_text.
    duration: seconds it stays (None: Gradio's default)."""
    kind(html_text(message), title=html_text(title), **({} if duration is None else {"duration": duration}))


def _shown(value) -> str:
    """A value as a message quotes it: its repr, cut to 60 characters (a client may send megabytes)."""
    text = repr(value)
    return printable(text if len(text) <= 60 else text[:57] + "...")


def _text(value, what: str, limit: int) -> str:
    """A text input, stripped ("" for none), or ConfigError: not text, longer than limit, or holding a
    character no file name can (NUL, a lone surrogate)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be text, got {type(value).__name__} {_shown(value)}")
    if len(value) > limit:
        raise ConfigError(f"{what} is {len(value)} characters long: at most {limit}")
    if "\0" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ConfigError(f"{what} holds a character no file name can (NUL or a lone surrogate): {_shown(value)}")
    return value.strip()


def _number(value, what: str) -> float:
    """A finite number sent as a number (not text, not true/false), or ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{what} must be a number, got {_shown(value)}")
    return float(value)


def _whole(value, what: str) -> int:
    """A whole number within what a page's number field holds exactly (|n| <= MAX_WHOLE), or ConfigError;
    its range is checked after, by sda.config (RANGES)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        number = _number(value, what)
        if number != int(number):
            raise ConfigError(f"{what} must be a whole number, got {_shown(value)}")
    if abs(number) > MAX_WHOLE:
        raise ConfigError(f"{what} must be a whole number of at most {MAX_WHOLE}, got {_shown(value)}")
    return int(number)


def _auto(epochs) -> bool:
    """Whether the Epochs field says automatic: AUTO_EPOCHS, or nothing (an API client); false is no number."""
    return epochs is None or epochs == "" or (type(epochs) in (int, float) and epochs == AUTO_EPOCHS)


def _client_key(value) -> str | None:
    """A client key as the page keeps it (url-safe text of 16 to 128 characters), or None."""
    return value if isinstance(value, str) and _CLIENT_KEY.fullmatch(value) else None


def _new_client_key() -> str:
    return secrets.token_urlsafe(24)
