"""What the Gradio app shows, as plain values: pure functions of a JobView or of a model file's metadata.

Kept apart from the layout in sda.ui so they can be tested without a server. The words come from
sda.report wherever the CLI says the same thing, so both frontends report alike.
"""

import math
from html import escape

import pandas as pd

from sda import report
from sda.health import LOW_UTILIZATION, LevelHealth, percent
from sda.job import DONE, FAILED, STOPPED, STOPPING, JobView

CURVE_COLUMNS = ("x", "loss", "series")
SERIES = ("train", "validation")


def levels_html(levels: list[LevelHealth], caption: str = "", warmup_steps: int | None = None,
                judged: bool = True) -> str:
    """One table row per RVQ level; a level under LOW_UTILIZATION gets class "weak" and says so in words.
    warmup_steps: the quantizer is not on yet (sda.warmup), so the rows say that instead of figures.
    judged False: the window is too short to judge (sda.health.judged), so no row gets a verdict."""
    if not levels:
        return '<p class="sda-muted">Codebook health appears after the first steps.</p>'
    rows = []
    for h in levels:
        if warmup_steps is not None:
            rows.append(f'<tr class="sda-level warming" data-level="{h.level + 1}"><td>{h.level + 1}</td>'
                        f'<td colspan="5">warming up: the quantizer starts after step {warmup_steps}</td></tr>')
            continue
        weak = judged and report.is_weak(h)
        flag = ("too few steps to judge" if not judged else f"under {LOW_UTILIZATION:.0%}" if weak
                else "ok" if h.assignments else "no data")
        rows.append(
            f'<tr class="sda-level{" weak" if weak else ""}" data-level="{h.level + 1}">'
            f"<td>{h.level + 1}</td><td>{percent(h.utilization)}</td><td>{h.perplexity:.1f}</td>"
            f"<td>{h.dead} / {h.codebook_size}</td><td>{h.replaced}</td><td>{'⚠ ' if weak else ''}{flag}</td></tr>")
    return (f'<table class="sda-levels"><caption>{escape(caption)}</caption><thead><tr><th>Level</th>'
            "<th>Utilization</th><th>Perplexity</th><th>Dead codes</th><th>Replaced</th><th>Health</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def job_levels_html(view: JobView) -> str:
    h = view.health
    if h is None:
        return levels_html([])
    if h.warming_up and all(level.assignments == 0 for level in h.levels):
        return levels_html(h.levels, f"Warm-up, step {h.step}: training as a plain autoencoder",
                           view.started.config.warmup_steps)
    return levels_html(h.levels, f"Codebook health over the last {h.window_steps} steps (at step {h.step})",
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
        items = [f"- {escape(w.message())}; {escape(w.outcome())}. {report.advice(w, report.PAGE, levels)}"
                 for w in weak] + [f"- {escape(m)}" for m in other]
        parts.append(f"**Warnings ({len(items)})**\n" + "\n".join(items))
    dips = [w for w in reversed(health) if not w.still_weak]
    if dips:
        parts.append("**Earlier dips, not a problem now**\n" + "\n".join(
            f"- level {w.level + 1} at {percent(w.utilization)} at step {w.step}: {escape(w.outcome())}"
            for w in dips))
    return "\n\n".join(parts)


def curve_frames(view: JobView) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reconstruction, commitment) loss against step, one series each for train and validation."""
    rows = [(p.step, p.reconstruction, p.commitment, p.split) for p in view.curve]
    return _frames(rows)


def history_frames(history: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same two frames against epoch, from a model file's loss history."""
    rows = [(e["epoch"], e[split]["reconstruction"], e[split]["commitment"], split)
            for e in history["epochs"] for split in ("train", "validation")]
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
        return f"**{what}:** {escape(view.error or '')}"
    if view.status == STOPPED and view.summary is None:
        return f"**Stopped** {escape(view.error or '')}"
    if view.status in (DONE, STOPPED):
        s = view.summary
        how = "Finished" if view.status == DONE else "Stopped early"
        return (f"**{how}** after {s.epochs_done} of {s.epochs} epochs ({s.steps} steps, "
                f"{report.duration(s.elapsed_s)}). Model saved: `{s.model_path}`")
    if started is None:
        return "**Loading** and checking the audio…"
    where = f"`{started.model_path}` on {started.device} ({started.precision}), kernels {started.backend}"
    if step is None:
        line = f"**Epoch 1 of {started.config.epochs}**, starting · {where}"
    else:
        line = (f"**Epoch {step.epoch} of {started.config.epochs}** · step {step.step} of {step.total_steps} · "
                f"ETA {report.duration(step.eta_s)} · loss {step.loss:.4f} · {where}")
    if view.status == STOPPING:
        line = "**Stopping** after this step; saving the model and a checkpoint… · " + line
    return line


def busy_banner(view: JobView | None) -> str:
    """The page-wide notice that the one training slot is taken."""
    if view is None or not view.active:
        return ""
    name = view.started.model_path.stem if view.started else (view.model_name or "a new model")
    return (f"A training job is running (**{escape(name)}**, started {view.began:%H:%M:%S}). sda trains one model "
            "at a time: **Start** is available again when it finishes or is stopped.")


def report_text(view: JobView | None) -> str:
    """The CLI's end report (sda.report.summary_text), or the error that ended the run."""
    if view is None:
        return ""
    if view.summary is not None:
        return report.summary_text(view.summary, report.PAGE)
    if view.status == FAILED:
        return f"sda: error: {view.error}"
    return view.error or ""  # stopped before the first step: what happened
