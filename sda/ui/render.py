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
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import torch

from sda import report
from sda.model.bitrate import Bitrate, bits_per_second
from sda.model.health import LOW_UTILIZATION, LevelHealth, codes_carrying, percent
from sda.text import duration, plural, printable
from sda.train.history import History, WindowRecord
from sda.ui.charts import Band, Chart, Rule, Series, svg
from sda.ui.job import DONE, FAILED, STOPPED, STOPPING, CurvePoint, JobView
from sda.ui.listen import Listening, Take

SERIES = ("train", "validation")
SERIES_COLORS = dict(zip(SERIES, ("#2563eb", "#ea580c"), strict=True))
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
                judged: bool = True, rate: Bitrate | None = None) -> str:
    """One table row per RVQ level; a level under LOW_UTILIZATION gets class "weak" and says so in words.
    warmup_steps: the quantizer is not on yet (sda.train.warmup), so the rows say that instead of figures.
    judged False: the window is too short to judge (sda.model.health.judged), so no row gets a verdict.
    rate: the window's bitrate (sda.model.bitrate): each row gets its entropy and bit/s, and a last row the total.
    Every cell is escaped: a model file can hold anything where a figure belongs."""
    if rate is not None and rate.levels != len(levels):
        rate = None  # a file whose bitrate record does not match its table: the table alone
    if not levels:
        return '<p class="sda-muted">Codebook health appears after the first steps.</p>'
    rows = []
    for i, h in enumerate(levels):
        number = html_text(h.level + 1 if _is_number(h.level) else h.level)
        if warmup_steps is not None:
            rows.append(f'<tr class="sda-level warming" data-level="{number}"><td>{number}</td>'
                        f'<td colspan="{7 if rate else 5}">warming up: the quantizer starts after step '
                        f"{_cell(warmup_steps)}</td></tr>")
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
            f"{_bitrate_cells(rate, i) if rate else ''}<td>{'⚠ ' if weak else ''}{flag}</td></tr>")
    rate_head = "<th>Entropy (bits)</th><th>Bit rate</th>" if rate else ""
    total = (f'<tfoot><tr class="sda-bitrate"><td colspan="8">{html_text(rate.effective_line())}</td></tr></tfoot>'
             if rate and warmup_steps is None else "")
    return (f'<table class="sda-levels"><caption>{html_text(caption)}</caption><thead><tr><th>Level</th>'
            "<th>Utilization</th><th>Perplexity</th><th>Dead codes</th><th>Replaced</th>"
            f"{rate_head}<th>Health</th></tr></thead><tbody>{''.join(rows)}</tbody>{total}</table>")


def _bitrate_cells(rate: Bitrate, level: int) -> str:
    """A level's entropy (bits a code position) and what that makes a second, Bitrate's own figures."""
    return (f"<td>{rate.entropies[level]:.2f} / {rate.codebook_bits:.0f}</td>"
            f"<td>{html_text(bits_per_second(rate.level_bps(level)))}</td>")


def job_levels_html(view: JobView) -> str:
    h = view.health
    if h is None:
        return levels_html([])
    if h.warming_up and all(level.assignments == 0 for level in h.levels):
        return levels_html(h.levels, f"Warm-up, step {h.step}: training as a plain autoencoder",
                           view.started.config.warmup_steps)
    return levels_html(h.levels, f"Codebook health over the last {plural(h.window_steps, 'step')} (at step {h.step})",
                       judged=h.judged, rate=h.bitrate)


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
        reading = f": {report.decoding_text(view.reading)}" if view.reading else ""
        return f"**Loading** and checking the audio{reading}…"
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


# Health over time, per-code usage, loss charts and run comparison: SVG charts (sda.ui.charts) in gr.HTML.

LEVEL_COLORS = ("#2563eb", "#16a34a", "#9333ea", "#db2777", "#0891b2", "#ca8a04", "#dc2626", "#4b5563")
MODEL_COLORS = ("#2563eb", "#ea580c", "#16a34a", "#9333ea", "#db2777", "#0891b2", "#ca8a04", "#4b5563")
USAGE_BARS = 128  # at most, per level: a K of 1024 or 4096 is grouped (sorted, so a group's mean is its shape)


@dataclass(frozen=True)
class LossView:
    """How the page draws loss: a log y axis (a spike then leaves the tail readable) and an EMA smoothing
    weight in [0, 1) applied to the drawn series only, as TensorBoard's slider does."""

    log_y: bool = True
    smoothing: float = 0.0


DEFAULT_LOOK = LossView()


@dataclass(frozen=True)
class ComparedModel:
    """One model of a run comparison, as its file has it."""

    name: str  # the file's name as the page lists it
    config: dict  # metadata["config"]
    history: History


def _color(palette: tuple[str, ...], i: int) -> str:
    return palette[i % len(palette)]


def _pair(*charts: Chart) -> str:
    return f'<div class="sda-chart-row">{"".join(svg(c) for c in charts)}</div>'


def epoch_windows(history: History) -> list[WindowRecord]:
    """The health of each epoch's end as windows, for files from before sda kept every window; their step is
    unknown (0): draw them by epoch. An epoch with warm-up steps counts as warming up while nothing was counted."""
    return [WindowRecord(0, e.epoch, e.warmup and all(h.assignments == 0 for h in e.health), True,
                         tuple(h.utilization for h in e.health), tuple(h.perplexity for h in e.health))
            for e in history.epochs if e.health]


def _warmup_band(windows: list[WindowRecord], x) -> tuple[Band, ...]:
    """The shaded x range of the warm-up windows at the start of the run (their figures mean nothing)."""
    warm = [x(w) for w in windows if w.warming_up]
    if not warm:
        return ()
    after = [x(w) for w in windows if not w.warming_up and x(w) >= warm[0]]
    return (Band(warm[0], after[0] if after else warm[-1], "warm-up: quantizer off"),)


def health_history_html(windows: Sequence[WindowRecord], by: str = "step") -> str:
    """Two charts of every health window: utilization per level (with the 30% line) and perplexity per level
    (log scale), against step (or epoch, for epoch_windows). Warm-up windows are a shaded band, not points."""
    windows = list(windows)
    x = (lambda w: w.step) if by == "step" else (lambda w: w.epoch)
    levels = max((len(w.utilization) for w in windows), default=0)
    drawn = [w for w in windows if not w.warming_up]

    def series(values) -> tuple[Series, ...]:
        return tuple(Series(f"level {i + 1}", _color(LEVEL_COLORS, i),
                            tuple((x(w), values(w)[i]) for w in drawn if i < len(values(w))))
                     for i in range(levels))

    bands = _warmup_band(windows, x)
    note = "" if drawn else ("waiting for the end of warm-up" if windows else "after the first health window")
    utilization = Chart("Utilization per level", by, "codes in use", series(lambda w: w.utilization),
                        y_range=(0.0, 1.0), y_percent=True, rules=(Rule(LOW_UTILIZATION, "30% line"),),
                        bands=bands, note=note, css_class="sda-utilization-chart",
                        extra={"windows": str(len(windows))})
    perplexity = Chart("Perplexity per level", by, "perplexity", series(lambda w: w.perplexity), log_y=True,
                       bands=bands, note=note, css_class="sda-perplexity-chart")
    return _pair(utilization, perplexity)


def job_health_history_html(view: JobView) -> str:
    return health_history_html(view.windows)


def model_health_history_html(history: History) -> str:
    """A saved model's health history: every window it kept, or, in older files, each epoch's end."""
    if history.windows:
        return health_history_html(history.windows)
    return health_history_html(epoch_windows(history), by="epoch")


def usage_html(usage: torch.Tensor | None, missing: str = "appears after the first health window") -> str:
    """Per level, the window's per-code counts sorted most used first, as bars: the dead codes are the empty
    tail (shaded). Past USAGE_BARS codes, each bar is the mean of a run of neighbouring ranks."""
    if usage is None:
        return f'<p class="sda-muted sda-usage-missing">Per-code usage: {html_text(missing)}.</p>'
    counts = usage.detach().to("cpu", torch.int64)
    k = counts.shape[1]
    group = max(1, math.ceil(k / USAGE_BARS))
    charts = []
    for level, row in enumerate(counts):
        ranked = row.sort(descending=True).values
        used = int((ranked > 0).sum())
        means = torch.nn.functional.pad(ranked.double(), (0, -k % group)).view(-1, group).mean(1)
        bars = tuple((i * group, float(m)) for i, m in enumerate(means.tolist()))
        dead = (Band(used, k, f"{k - used} dead"),) if used < k else ()
        carrying = codes_carrying(row)
        title = f"Level {level + 1}: {used} of {k} codes used; {carrying} carry half"
        charts.append(Chart(title, "code rank (most used first)", "assignments", (Series(f"level {level + 1}",
                            _color(LEVEL_COLORS, level), bars),), bars=True, bar_width=group, bands=dead, legend=False,
                            note=f"{group} codes a bar" if group > 1 else "", css_class="sda-usage-chart",
                            extra={"level": str(level + 1), "used": str(used)}))
    return _pair(*charts)


def job_usage_html(view: JobView) -> str:
    h = view.health
    return usage_html(h.usage if h is not None and not h.warming_up else None,
                      "appears when the quantizer is on" if h is not None else "appears after the first health window")


def smoothed(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's debiased EMA: each value weight x the running mean + (1 - weight) x itself, the running
    mean divided by 1 - weight^n so the first points are not pulled toward 0. NaN stays NaN and is skipped."""
    if weight <= 0:
        return list(values)
    out, mean, n = [], 0.0, 0
    for value in values:
        if not math.isfinite(value):
            out.append(value)
            continue
        n += 1
        mean = weight * mean + (1 - weight) * value
        out.append(mean / (1 - weight ** n))
    return out


def _loss_series(points: Sequence[CurvePoint], which: str, look: LossView, color: str, prefix: str = "",
                 splits: tuple[str, ...] = SERIES) -> tuple[Series, ...]:
    """Train solid, validation dashed; smoothed when asked, with the raw train line faint behind."""
    out = []
    for split in splits:
        xs = [p.step for p in points if p.split == split]
        ys = [getattr(p, which) for p in points if p.split == split]
        if not xs:
            continue
        name = f"{prefix}{split}"
        if look.smoothing > 0:
            out.append(Series(f"{name} (raw)", color, tuple(zip(xs, ys, strict=True)), split != "train",
                              faint=True))
        out.append(Series(name, color, tuple(zip(xs, smoothed(ys, look.smoothing), strict=True)), split != "train"))
    return tuple(out)


def loss_charts_html(points: Sequence[CurvePoint], x_title: str, look: LossView) -> tuple[str, str]:
    """(reconstruction, commitment) loss charts of train and validation points."""
    def chart(which: str, title: str, kind: str) -> str:
        series = tuple(s for split, color in SERIES_COLORS.items()
                       for s in _loss_series(points, which, look, color, splits=(split,)))
        note = f"smoothing {look.smoothing:.2f}" if look.smoothing > 0 else ""
        return svg(Chart(title, x_title, "loss", series, log_y=look.log_y, note=note, css_class=f"sda-{kind}-chart"))
    return chart("reconstruction", "Reconstruction loss", "recon"), chart("commitment", "Commitment loss", "commit")


def history_curve(history: History) -> tuple[CurvePoint, ...]:
    """A model file's per-epoch losses as curve points whose x (step) is the epoch."""
    return tuple(CurvePoint(e.epoch, split, losses["reconstruction"], losses["commitment"])
                 for e in history.epochs for split, losses in (("train", e.train), ("validation", e.validation)))


def settings_table_html(models: Sequence[ComparedModel]) -> str:
    """The models' settings side by side: one column per model, one row per config value; a row whose values
    differ is marked (class "differs" and a ≠)."""
    flat = [report.flat_settings(m.config) for m in models]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    head = "".join(f"<th>{html_text(m.name)}</th>" for m in models)
    rows = []
    for key in keys:
        values = [f.get(key, "—") for f in flat]
        differs = len({repr(v) for v in values}) > 1
        cells = "".join(f"<td>{html_text(v)}</td>" for v in values)
        rows.append(f'<tr class="{"differs" if differs else "same"}"><th>{"≠ " if differs else ""}{html_text(key)}'
                    f"</th>{cells}</tr>")
    return (f'<table class="sda-compare"><caption>Settings (≠: differs between the models)</caption><thead><tr>'
            f"<th>Setting</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def compare_html(models: Sequence[ComparedModel], look: LossView = DEFAULT_LOOK) -> str:
    """Overlays of the models' loss histories (by epoch) and per-level utilization histories (one chart per
    level, one colour per model), and their settings side by side."""
    if len(models) < 2:
        return '<p class="sda-muted">Choose two or more models to compare them.</p>'
    loss = []
    for which, title in (("reconstruction", "Reconstruction loss"), ("commitment", "Commitment loss")):
        series = tuple(s for i, m in enumerate(models)
                       for s in _loss_series(history_curve(m.history), which, look, _color(MODEL_COLORS, i),
                                             f"{m.name}: "))
        loss.append(Chart(f"{title} by epoch (dashed: validation)", "epoch", "loss", series, log_y=look.log_y,
                          css_class="sda-compare-loss"))
    runs = [(m, *_windows_of(m.history)) for m in models]  # (model, windows, "step" or "epoch")
    levels = max((len(w.utilization) for _, windows, _ in runs for w in windows), default=0)
    x_title = " or ".join(sorted({by for *_, by in runs}))  # an old file's windows are by epoch
    utilization = []
    for level in range(levels):
        series = tuple(Series(m.name, _color(MODEL_COLORS, i), tuple(
            (w.step if by == "step" else w.epoch, w.utilization[level])
            for w in windows if not w.warming_up and level < len(w.utilization)))
            for i, (m, windows, by) in enumerate(runs))
        utilization.append(Chart(f"Level {level + 1} utilization", x_title, "codes in use", series,
                                 y_range=(0.0, 1.0), y_percent=True, rules=(Rule(LOW_UTILIZATION, "30% line"),),
                                 css_class="sda-compare-utilization"))
    return (_pair(*loss) + "".join(_pair(*utilization[i:i + 2]) for i in range(0, len(utilization), 2))
            + settings_table_html(models))


def _windows_of(history: History) -> tuple[list[WindowRecord], str]:
    if history.windows:
        return list(history.windows), "step"
    return epoch_windows(history), "epoch"


# Listening (the Models tab): a file through a model at every depth of its RVQ (sda.ui.listen).


def depth_words(levels: int, total: int) -> str:
    """'level 1 only', 'levels 1-2', 'all 3 levels'."""
    if levels == total:
        return f"all {total} levels"
    return "level 1 only" if levels == 1 else f"levels 1–{levels}"


def take_label(take: Take, total: int) -> str:
    """A player's label: the depth and its quality figures (plain text: a gr.Audio label)."""
    return plain_text(f"{depth_words(take.levels, total)[:1].upper()}{depth_words(take.levels, total)[1:]}: "
                      f"{report.quality_text(take.quality)}")


def listening_markdown(heard: Listening) -> str:
    """The lines over the players: the file and its code grid; what was done to the output's level."""
    channels = {1: "mono", 2: "stereo"}.get(heard.channels, f"{heard.channels} channels")
    full = heard.full
    return (f"**{md_text(heard.source)}**: {heard.seconds:.2f} s, {heard.rate} Hz {channels} → a code grid of "
            f"{len(heard.takes)} levels × {plural(heard.positions, 'time position')} ({heard.codebook_size} codes "
            f"per level) → {heard.rate} Hz mono.\n\nLevel of the reconstruction: "
            f"{md_text(report.loudness_text(full.gain_db, full.limited_db))}.")


def takes_html(takes: Sequence[Take]) -> str:
    """A row per depth l = 1..L: its quality figures, and how much level l lowered the log-mel L1 of depth l - 1
    (negative when it raised it)."""
    total, rows, before = len(takes), [], None
    for take in takes:
        q = take.quality
        # negative: the level made it worse; + 0.0 so that a drop that rounds to nothing reads 0.000, not -0.000
        gain = "" if before is None else f"{round(before - q.log_mel_l1, 3) + 0.0:.3f}"
        rows.append(f'<tr class="sda-take" data-levels="{take.levels}"><td>{html_text(depth_words(take.levels, total))}'
                    f"</td><td>{_figure(q.log_mel_l1, '.3f')}</td><td>{html_text(gain or '—')}</td>"
                    f"<td>{_figure(q.stft_distance, '.2f')}</td><td>{_figure(q.si_sdr_db, '.1f')}</td></tr>")
        before = q.log_mel_l1
    return ('<table class="sda-levels sda-takes"><caption>What each level adds (lower distances are closer to the '
            "input; SI-SDR compares waveforms, so a guessed phase keeps it near or under 0 dB)</caption>"
            "<thead><tr><th>Levels decoded</th><th>log-mel L1</th><th>L1 drop from adding the level</th>"
            f"<th>STFT distance</th><th>SI-SDR (dB)</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _figure(value: float, spec: str) -> str:
    return "n/a" if math.isnan(value) else html_text(format(value, spec))
