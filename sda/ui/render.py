"""What the Gradio app shows, as plain values: pure functions of a JobView or of a model file's metadata.

Kept apart from the layout in sda.ui.app so they can be tested without a server. The words come from
sda.report wherever the CLI says the same thing, so both frontends report alike.

Every value that comes from a file, a folder or a user (a model's metadata, a file name, a path, an
error message quoting any of them) reaches the page through one of three functions, chosen by what
the component does with text: `html_text` for gr.HTML and for toasts (gr.Info / gr.Warning: Gradio
shows their message as HTML, not Markdown), `md_text` for gr.Markdown, `plain_text` for components
that show text as text (Textbox, Dropdown labels); `plain_json` for gr.JSON. All of them make control
characters and lone surrogates visible first (sda.text.printable).
"""

import math
from html import escape

import pandas as pd

from sda import report
from sda.model.health import LOW_UTILIZATION, LevelHealth, percent
from sda.text import duration, plural, printable
from sda.train.history import History
from sda.ui.job import DONE, FAILED, STOPPED, STOPPING, JobView

CURVE_COLUMNS = ("x", "loss", "series")
SERIES = ("train", "validation")
# Markdown's inline markup: code spans, emphasis, links and images, strikethrough, tables; a backslash
# makes each one literal. Block markup (#, -, 1.) needs a line start, and printable() leaves no newline.
_MARKDOWN = str.maketrans({c: "\\" + c for c in "\\`*_[]~|"})


def plain_text(value) -> str:
    """A value shown as text (Textbox, Dropdown label): control characters made visible, nothing else;
    its lines stay lines (a report is several)."""
    return "\n".join(printable(line) for line in str(value).split("\n"))


def html_text(value) -> str:
    """A value inside HTML (text or a quoted attribute): markup escaped, so `<img onerror=...>` reads as text.
    One line: a newline is shown as \\x0a."""
    return escape(printable(str(value)), quote=True)


def md_text(value) -> str:
    """A value inside Markdown: one line, HTML escaped, every inline Markdown mark made literal."""
    return escape(printable(str(value)), quote=False).translate(_MARKDOWN)


def plain_json(value):
    """A JSON value from a file (a model's config) with every key and string made printable, for gr.JSON;
    a lone surrogate would otherwise fail the whole response."""
    if isinstance(value, dict):
        return {printable(str(key)): plain_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_json(item) for item in value]
    return printable(value) if isinstance(value, str) else value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value, spec: str = "") -> str:
    """A figure formatted with spec, or, when a file holds something else there, that thing as text."""
    return html_text(format(value, spec) if _is_number(value) else value)


def levels_html(levels: list[LevelHealth], caption: str = "", warmup_steps: int | None = None,
                judged: bool = True) -> str:
    """One table row per RVQ level; a level under LOW_UTILIZATION gets class "weak" and says so in words.
    warmup_steps: the quantizer is not on yet (sda.train.warmup), so the rows say that instead of figures.
    judged False: the window is too short to judge (sda.model.health.judged), so no row gets a verdict.
    Every cell is escaped: a model file can hold anything where a figure belongs."""
    if not levels:
        return '<p class="sda-muted">Codebook health appears after the first steps.</p>'
    rows = []
    for h in levels:
        number = html_text(h.level + 1 if _is_number(h.level) else h.level)
        if warmup_steps is not None:
            rows.append(f'<tr class="sda-level warming" data-level="{number}"><td>{number}</td>'
                        f'<td colspan="5">warming up: the quantizer starts after step {_cell(warmup_steps)}</td></tr>')
            continue
        counted = _is_number(h.assignments) and _is_number(h.utilization)
        weak = judged and counted and report.is_weak(h)
        flag = ("too few steps to judge" if not judged else f"under {LOW_UTILIZATION:.0%}" if weak
                else "ok" if counted and h.assignments else "no data")
        utilization = html_text(percent(h.utilization)) if _is_number(h.utilization) else _cell(h.utilization)
        rows.append(
            f'<tr class="sda-level{" weak" if weak else ""}" data-level="{number}">'
            f"<td>{number}</td><td>{utilization}</td><td>{_cell(h.perplexity, '.1f')}</td>"
            f"<td>{_cell(h.dead)} / {_cell(h.codebook_size)}</td><td>{_cell(h.replaced)}</td>"
            f"<td>{'⚠ ' if weak else ''}{flag}</td></tr>")
    return (f'<table class="sda-levels"><caption>{html_text(caption)}</caption><thead><tr><th>Level</th>'
            "<th>Utilization</th><th>Perplexity</th><th>Dead codes</th><th>Replaced</th><th>Health</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def job_levels_html(view: JobView) -> str:
    h = view.health
    if h is None:
        return levels_html([])
    if h.warming_up and all(level.assignments == 0 for level in h.levels):
        return levels_html(h.levels, f"Warm-up, step {h.step}: training as a plain autoencoder",
                           view.started.config.warmup_steps)
    return levels_html(h.levels, f"Codebook health over the last {plural(h.window_steps, 'step')} (at step {h.step})",
                       judged=h.judged)


def alerts_markdown(view: JobView) -> str:
    """The run's warnings, newest first (a toast fades, this list stays): levels weak now, with what the
    page lets the user do, then other warnings; dips a level has recovered from are history, apart."""
    levels = view.started.config.rvq_levels if view.started else 3
    # The records as of now (each Health event carries them, outcomes updated), not as first raised
    health = view.summary.health_warnings if view.summary else view.health.warnings if view.health else []
    weak = [w for w in reversed(health) if w.still_weak]
    other = [a.message for a in reversed(view.alerts) if a.warning is None]
    parts = []
    if weak or other:
        items = [f"- {md_text(w.message())}; {md_text(w.outcome())}. {report.advice(w, report.PAGE, levels)}"
                 for w in weak] + [f"- {md_text(m)}" for m in other]
        parts.append(f"**Warnings ({len(items)})**\n" + "\n".join(items))
    dips = [w for w in reversed(health) if not w.still_weak]
    if dips:
        parts.append("**Earlier dips, not a problem now**\n" + "\n".join(
            f"- level {w.level + 1} at {percent(w.utilization)} at step {w.step}: {md_text(w.outcome())}"
            for w in dips))
    return "\n\n".join(parts)


def curve_frames(view: JobView) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reconstruction, commitment) loss against step, one series each for train and validation."""
    rows = [(p.step, p.reconstruction, p.commitment, p.split) for p in view.curve]
    return _frames(rows)


def history_frames(history: History) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same two frames against epoch, from a model file's loss history."""
    rows = [(e.epoch, losses["reconstruction"], losses["commitment"], split)
            for e in history.epochs for split, losses in (("train", e.train), ("validation", e.validation))]
    return _frames(rows)


def _frames(rows: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    # A Gradio 6.31 chart fixes its colour domain from the value it is first drawn with, so a series
    # that starts later (validation, after the first epoch) would never be drawn: give each missing
    # series an empty point (null loss, which the chart skips) from the start.
    present = {split for *_, split in rows}
    if rows:
        rows = rows + [(rows[0][0], math.nan, math.nan, split) for split in SERIES if split not in present]
    types = {"x": "int64", "loss": "float64", "series": "str"}  # also when empty, so the axes stay numeric
    recon = pd.DataFrame([(x, r, s) for x, r, _, s in rows], columns=CURVE_COLUMNS).astype(types)
    commit = pd.DataFrame([(x, c, s) for x, _, c, s in rows], columns=CURVE_COLUMNS).astype(types)
    return recon, commit


def status_markdown(view: JobView | None) -> str:
    """One line: where the run is (epoch, step, ETA), or how it ended."""
    if view is None:
        return "No training yet: choose a folder and press **Start**."
    started, step = view.started, view.step
    if view.status == FAILED:
        what = "Could not start training" if view.bad_input else "Training failed"
        return f"**{what}:** {md_text(view.error or '')}"
    if view.status == STOPPED and view.summary is None:
        return f"**Stopped** {md_text(view.error or '')}"
    if view.status in (DONE, STOPPED):
        s = view.summary
        how = "Finished" if view.status == DONE else "Stopped early"
        return (f"**{how}** after {s.epochs_done} of {plural(s.epochs, 'epoch')} ({plural(s.steps, 'step')}, "
                f"{duration(s.elapsed_s)}). Model saved: {md_text(s.model_path)}")
    if started is None:
        if view.status == STOPPING:
            return "**Stopping** before training begins: nothing will be saved…"
        return "**Loading** and checking the audio…"
    where = (f"{md_text(started.model_path)} on {md_text(started.device)} ({md_text(started.precision)}), "
             f"kernels {md_text(started.backend)}")
    if step is None:
        line = f"**Epoch 1 of {started.config.epochs}**, starting · {where}"
    else:
        line = (f"**Epoch {step.epoch} of {started.config.epochs}** · step {step.step} of {step.total_steps} · "
                f"{report.eta_text(step.eta_s)} · loss {step.loss:.4f} · {where}")
    if view.status == STOPPING:
        line = "**Stopping** after this step; saving the model and a checkpoint… · " + line
    return line


def busy_banner(view: JobView | None) -> str:
    """The page-wide notice that the one training slot is taken."""
    if view is None or not view.active:
        return ""
    name = view.started.model_path.stem if view.started else (view.model_name or "a new model")
    return (f"A training job is running (**{md_text(name)}**, started {view.began:%H:%M:%S}). sda trains one model "
            "at a time: **Start** is available again when it finishes or is stopped.")


def report_text(view: JobView | None) -> str:
    """The CLI's end report (sda.report.summary_text), or the error that ended the run, for a text box."""
    if view is None:
        return ""
    if view.summary is not None:
        return plain_text(report.summary_text(view.summary, report.PAGE))
    if view.status == FAILED:
        return plain_text(f"sda: error: {view.error}")
    return plain_text(view.error or "")  # stopped before the first step: what happened
