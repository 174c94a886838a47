"""Text for people: per-level health lines, the end-of-training report, and `sda info`.

Both frontends print these, so the CLI's report and the Gradio tab's are the same words. Functions that draw a
sparkline take `unicode`: whether the output can show block characters (the CLI decides it from its stdout).

    describe(path)                        # (kind, metadata, text) of one file: what `sda info` prints
    describe_file(path, usage=True)       # the same as a Described, with the per-code usage read too
    compare_text([described, ...])        # `sda info A B ...`: the files side by side
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import torch

from sda.config import CLI, PAGE, VQVAEConfig, smaller_codebook_size
from sda.data.dataset import FILES, DecodeProgress
from sda.errors import SdaError, SdaFormatError
from sda.format import container, modelfile
from sda.model.bitrate import Bitrate, bitrate, bits_per_second
from sda.model.health import LOW_UTILIZATION, HealthWarning, LevelHealth, codes_carrying, percent
from sda.model.quality import Quality
from sda.text import duration, plural, printable, size, sparkline, sparks
from sda.train.events import Summary
from sda.train.history import EpochRecord, History

__all__ = ["CLI", "PAGE"]  # the frontends (sda.config), here too for those that only print reports
T = TypeVar("T")
MIN_VALIDATION_CHUNKS = 8  # fewer validation chunks than this measure too little to judge a model by


def level_line(h: LevelHealth, judged: bool = True, rate: Bitrate | None = None) -> str:
    """'level 1  util  87.5%  perplexity  70.1  dead  16' plus a flag when the level is weak; a window too
    short to judge (sda.model.health.judged: just after warm-up) gets no verdict, and says so. With the
    window's bitrate, the level's bits a position and bit/s come after the perplexity they are made of."""
    verdict = f"  << under {LOW_UTILIZATION:.0%}" if is_weak(h) else ""
    flag = verdict if judged else "  (too few steps to judge)"
    bits = f"  {rate.level_text(h.level)}" if rate is not None and h.assignments and h.level < rate.levels else ""
    return (f"level {h.level + 1}  util {percent(h.utilization):>6}  perplexity {h.perplexity:6.1f}{bits}  "
            f"dead {h.dead:4d}/{h.codebook_size}  replaced {h.replaced}{flag}")


def eta_text(eta_s: float | None) -> str:
    """The time left as both frontends show it; the engine has none until a few steps are timed (sda.train.eta)."""
    return "ETA estimating" if eta_s is None else f"ETA {duration(eta_s)}"


def bitrate_line(rate: Bitrate | None, levels: list[LevelHealth]) -> str | None:
    """'bitrate: 21.5 codes/s a level; 452 bit/s nominal, 401 bit/s effective (88.7%)', or None while no level
    has counted anything (in warm-up every entropy is 0, which would read as a bitrate of 0)."""
    if rate is None or not any(h.assignments for h in levels):
        return None
    return f"bitrate: {rate.line()}"


def warming_up_line(level: int, warmup_steps: int) -> str:
    """The row of a level while sda.train.warmup has the quantizer off: no figures that mean nothing yet."""
    return f"level {level + 1}  warming up: the quantizer starts after step {warmup_steps}"


def advice(h: LevelHealth | HealthWarning, frontend: str, levels: int) -> str:
    """What the user can do about a weak level, with the controls of the frontend in use."""
    used = h.codebook_size - h.dead
    options = []
    if frontend == CLI:
        smaller = smaller_codebook_size(used, h.codebook_size)
        if smaller:
            options.append(f"--codebook-size {smaller} (it uses {used} of {h.codebook_size} codes)")
        if levels > 2:
            options.append(f"--rvq-levels {levels - 1}")
    elif levels > 2:
        options.append(f"fewer RVQ levels ({levels - 1})")
    options.append("more files")
    return "Try " + ", ".join(options[:-1]) + (" or " if len(options) > 1 else "") + options[-1] + "."


def warning_lines(warnings: list[HealthWarning], frontend: str, levels: int) -> list[str]:
    """Levels that ended weak first, as the problem they are, with advice; then resolved dips, as history."""
    weak = [w for w in warnings if w.still_weak]
    dips = [w for w in warnings if not w.still_weak]
    lines = [f"{w.message()}; {w.outcome()}. {advice(w, frontend, levels)}" for w in weak]
    if dips:
        lines.append("earlier dips, not a problem now: " + "; ".join(
            f"level {w.level + 1} at {percent(w.utilization)} at step {w.step}, {w.outcome()}" for w in dips))
    return lines


def decoding_text(p: DecodeProgress) -> str:
    """'decoding 37/500 audio files (30 from the cache)': how far reading a folder is, on the CLI's bar and the page."""
    what = "decoding" if p.stage == FILES else "reading again"
    cached = f" ({p.cached} from the cache)" if p.cached else ""
    return f"{what} {p.done}/{plural(p.total, p.stage[:-1])}{cached}"


def decoded_text(p: DecodeProgress) -> str:
    """'read 500 audio files: 480 from the cache, 20 decoded': a finished pass."""
    return f"read {plural(p.total, p.stage[:-1])}: {p.cached} from the cache, {p.total - p.cached} decoded"


def validation_note(chunks: int, files: int) -> str:
    """How much validation measured on, and whether that is enough to judge by."""
    what = f"{plural(chunks, 'chunk')} from {plural(files, 'file')}"
    if chunks < MIN_VALIDATION_CHUNKS:
        # Kept under 80 columns: the end report prints it in a terminal.
        return f"validation: {what}, too few to judge by (under {MIN_VALIDATION_CHUNKS}): indicative only"
    return f"validation: {what}"


def is_weak(h: LevelHealth) -> bool:
    return h.assignments > 0 and h.utilization < LOW_UTILIZATION


def _warnings_block(health_warnings: list[HealthWarning], other: list[str], frontend: str, levels: int) -> list[str]:
    """The report's warnings: weak levels (a problem), resolved dips (history), other warnings."""
    lines = []
    weak = [w for w in health_warnings if w.still_weak]
    if weak:
        lines.append(f"  codebook levels that ended weak ({len(weak)}):")
    for line in warning_lines(health_warnings, frontend, levels):
        lines.append(f"    - {line}" if not line.startswith("earlier dips") else f"  {line}")
    if other:
        lines.append(f"  warnings ({len(other)}):")
        lines += [f"    - {w}" for w in other]
    return lines


def health_table(levels: list[LevelHealth], rate: Bitrate | None = None) -> str:
    return "\n".join("    " + level_line(h, rate=rate) for h in levels)


def health_block(levels: list[LevelHealth], step: int, warmup_steps: int, rate: Bitrate | None = None) -> list[str]:
    """The end-of-training health table and its bitrate, or why there is none: a run stopped during warm-up
    has no quantizer figures, and zeros would read as a collapse."""
    if any(h.assignments for h in levels):
        total = bitrate_line(rate, levels)
        return ["  codebook health (last training window):", health_table(levels, rate),
                *([f"  {total}"] if total else [])]
    if warmup_steps and step <= warmup_steps:
        return [f"  codebook health: none yet, training stopped in the warm-up (step {step} of {warmup_steps}); "
                "the codebooks start after it"]
    return ["  codebook health: none yet, no training step was counted"]


def batch(per_process: int, processes: int) -> str:
    """'batch 16', or 'batch 16 per process x 2 processes' for a distributed run."""
    return f"batch {per_process}" + (f" per process x {plural(processes, 'process')}" if processes > 1 else "")


def _loss(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def summary_text(s: Summary, frontend: str = CLI) -> str:
    how = "stopped early" if s.stopped else "finished"
    lines = [
        f"Training {how}: {s.epochs_done} of {plural(s.epochs, 'epoch')}, {plural(s.steps, 'step')} in "
        f"{duration(s.elapsed_s)}"
        + (" (resumed from a checkpoint)" if s.resumed else ""),
        f"  final train loss {_loss(s.train_loss)}, validation loss {_loss(s.val_loss)} "
        f"(reconstruction {_loss(s.val_reconstruction)})",
        f"  {validation_note(s.val_chunks, s.val_files)}",
        f"  device {s.device} ({s.precision}), kernel backend {s.backend}"
        + (f", {plural(s.processes, 'process')}" if s.processes > 1 else ""),
        *health_block(s.health, s.steps, s.warmup_steps, s.bitrate),
    ]
    levels = len(s.health)
    weak = [w for w in s.health_warnings if w.still_weak]
    lines += _warnings_block(s.health_warnings, s.warnings, frontend, levels)
    counted = any(h.assignments for h in s.health)
    if not weak and not s.warnings and counted and all(not is_weak(h) for h in s.health):
        lines.append("  no warnings: every level stayed healthy" if not s.health_warnings else
                     "  no level ended weak")
    lines += [f"  model: {s.model_path} ({size(s.model_bytes)})", f"  checkpoint: {s.checkpoint_path}"]
    if s.metrics_path is not None:
        lines.append(f"  metrics log: {s.metrics_path}")
    if s.stopped:
        lines.append(f"  continue with: sda train DATA_DIR --resume {s.checkpoint_path}")
    return "\n".join(lines)


@dataclass(frozen=True)
class CodeUsage:
    """What a file holds of its per-code usage (sda.format.modelfile.load_usage): counts [levels, K] of the last
    training window, None in files from before sda kept them."""

    counts: torch.Tensor | None
    problem: str | None = None  # why the tensors could not be read (damage): info still shows the rest


@dataclass(frozen=True)
class Described:
    """One model or checkpoint file, read and checked: what `sda info` prints of it, alone or beside others."""

    path: Path
    kind: str  # "model" or "checkpoint"
    metadata: dict
    history: History
    text: str  # info_text: the file on its own
    usage: CodeUsage | None = None  # None: not read (checkpoints hold none)


def describe(path, frontend: str = CLI, unicode: bool = True) -> tuple[str, dict, str]:
    """(kind, metadata, info_text) of a model or checkpoint file, from its header; the weights are not read.

    A valid .sda container whose metadata is not what sda writes raises SdaFormatError, like any damage.
    """
    described = describe_file(path, frontend, unicode)
    return described.kind, described.metadata, described.text


def describe_file(path, frontend: str = CLI, unicode: bool = True, usage: bool = False) -> Described:
    """describe() as a record; with usage, a model's per-code usage counts too, for which the whole file is read
    and verified (a few MB; a checkpoint holds none, and is read no further than its header)."""
    header = container.read_header(path)
    kind, metadata = header["kind"], header["metadata"]
    if kind == "codes":
        raise SdaFormatError(f"{path} is an sda codes file (sda encode), not a model: decode it with sda decode "
                             f"MODEL {path} --out DIR, or read it in Python with sda.codes.load")
    text = _checked(path, lambda: info_text(path, metadata, kind, frontend, unicode))  # the metadata is sda's
    history = History.from_dict(metadata["history"])  # which info_text has read
    if not (usage and kind == "model"):
        return Described(Path(path), kind, metadata, history, text)
    counts = _usage(Path(path))
    return Described(Path(path), kind, metadata, history,
                     _checked(path, lambda: info_text(path, metadata, kind, frontend, unicode, counts)), counts)


def _usage(path: Path) -> CodeUsage:
    """The per-code usage of a model file. Reading it verifies every tensor, so a file with damaged weights still
    has its metadata shown, and the damage said where the usage would be."""
    try:
        return CodeUsage(modelfile.load_usage(path))
    except SdaError as exc:
        return CodeUsage(None, str(exc))


def _checked(path, read: Callable[[], T]) -> T:
    """read(), which reads the file's metadata; metadata that is not what sda writes raises SdaFormatError."""
    try:
        return read()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"no {exc}" if isinstance(exc, KeyError) else f"a bad entry ({exc})"
        raise SdaFormatError(f"{path} is an .sda file but not an sda model or checkpoint: its metadata has "
                             f"{what}. It was written by another program, or by a newer sda.") from None


def info_text(path, metadata: dict, kind: str = "model", frontend: str = CLI, unicode: bool = True,
              usage: CodeUsage | None = None) -> str:
    """What `sda info` prints from a model or checkpoint file's metadata (and usage, when it was read)."""
    cfg, data = metadata["config"], metadata["dataset"]
    history = History.from_dict(metadata["history"])
    epochs = history.epochs
    health = final_health(metadata)
    lines = [
        f"{path}: sda {kind} {metadata['model_name']!r}",
        f"  created {metadata['created']} (sda {metadata['versions']['sda']}, torch {metadata['versions']['torch']})",
        f"  model: {cfg['rvq_levels']} RVQ levels x {cfg['codebook_size']} codes x dim {cfg['codebook_dim']}, "
        f"commitment weight {cfg['commitment_weight']}, seed {cfg['seed']}",
        f"  audio: {cfg['audio']['sample_rate']} Hz, {cfg['audio']['n_mels']} mels, hop {cfg['audio']['hop_length']}, "
        f"chunks of {cfg['audio']['chunk_frames']} frames",
        f"  training: {len(epochs)} of {plural(cfg['epochs'], 'epoch')}, "
        f"{batch(cfg['batch_size'], history.processes)}, lr {cfg['learning_rate']}",
        f"  data: {data['folder']}: {plural(len(data['files']), 'file')}, {data['total_seconds']:.1f} s, "
        f"{plural(data['chunks'], 'chunk')}",
        "  " + validation_note(*_validation_size(data)),
        "  " + _warmup_text(cfg.get("warmup_steps", 0)),
        "  weights: " + _weights_text(metadata, epochs),
        *health_block(health, _step(metadata, history), cfg.get("warmup_steps", 0), stored_bitrate(metadata, health)),
        *usage_lines(usage),
        *history_lines(history, unicode),
    ]
    if epochs:
        lines.append("  loss curve (epoch: train / validation, validation reconstruction):")
        best = min(epochs, key=lambda e: e.validation["loss"])
        for label, e in (("first", epochs[0]), ("best", best), ("last", epochs[-1])):
            lines.append(f"    {label:5} {e.epoch:4d}: {e.train['loss']:.4f} / {e.validation['loss']:.4f}, "
                         f"{e.validation['reconstruction']:.4f}")
    lines += _warnings_block(history.health_warnings, history.warnings, frontend, cfg["rvq_levels"])
    return "\n".join(lines)


def final_health(metadata: dict) -> list[LevelHealth]:
    return [LevelHealth(**h) for h in metadata["health"]]  # stored as plain dicts


def _step(metadata: dict, history: History) -> int:
    """The step the file's weights are from; files from before "weights" was kept: their last health window's."""
    at = metadata.get("weights")
    return at.get("step", 0) if at else (history.windows[-1].step if history.windows else 0)


def stored_bitrate(metadata: dict, health: list[LevelHealth]) -> Bitrate | None:
    """The file's bitrate record. Files from before it: the bitrate of its final health and config, if its config
    still loads; None when no level counted anything (a model saved in its warm-up has no bitrate yet)."""
    if not any(h.assignments for h in health):
        return None
    if metadata.get("bitrate") is not None:
        return Bitrate.from_dict(metadata["bitrate"])
    try:
        return bitrate(VQVAEConfig.from_dict(metadata["config"]), health)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):  # a config of an sda too old or new to rebuild
        return None


def usage_lines(usage: CodeUsage | None) -> list[str]:
    """Per level, how few codes carry half of the last window's assignments (sda.model.health.codes_carrying):
    utilization counts a code used once as used; this says whether the level is used as a much smaller one."""
    if usage is None:
        return []
    if usage.problem is not None:
        return [f"  code usage: cannot be read: {usage.problem}"]
    if usage.counts is None:
        return ["  code usage: not recorded (the file was written by an sda that did not keep it)"]
    if not bool(usage.counts.any()):
        return ["  code usage: none counted (the file was saved before the quantizer started)"]
    lines = ["  code usage (last training window):"]
    for level, counts in enumerate(usage.counts):
        dead = int((counts == 0).sum())
        lines.append(f"    level {level + 1}  {codes_carrying(counts)} of {counts.numel()} codes carry half the "
                     f"assignments; {dead} dead")
    return lines


@dataclass(frozen=True)
class Trace:
    """The utilization of every level over a run, one point per health window (or per epoch, in files from before
    windows were kept); None where the quantizer was not on yet (warm-up): its figures mean nothing."""

    unit: str  # "step" or "epoch": what `at` counts
    at: list[int]
    levels: list[list[float | None]]  # [level][point]
    judged: list[bool]  # per point: measured against the 30% line (the lowest figure is of these)


def trace_of(history: History) -> Trace | None:
    """The run's utilization trace, from its health windows or else its epochs' health; None if it has neither."""
    if history.windows:
        windows = history.windows
        levels = max(len(w.utilization) for w in windows)
        return Trace("step", [w.step for w in windows],
                     [[None if w.warming_up or level >= len(w.utilization) else w.utilization[level] for w in windows]
                      for level in range(levels)], [w.judged for w in windows])
    epochs = [e for e in history.epochs if e.health]
    if not epochs:
        return None
    levels = max(len(e.health) for e in epochs)

    def point(e: EpochRecord, level: int) -> float | None:
        counted = level < len(e.health) and e.health[level].assignments > 0
        return e.health[level].utilization if counted else None

    return Trace("epoch", [e.epoch for e in epochs], [[point(e, level) for e in epochs] for level in range(levels)],
                 [not e.warmup for e in epochs])


SPARK_WIDTH = 32  # columns of a history sparkline: with its figures, a line fits 100 columns


def history_lines(history: History, unicode: bool = True) -> list[str]:
    """Each level's utilization over the run as a sparkline from 0 to 100%, with its lowest and last figures.
    A column is a run of windows, not of steps: past History's MAX_WINDOWS a run keeps fewer of its early ones."""
    trace = trace_of(history)
    if trace is None:
        return []
    n, point = len(trace.at), "window" if trace.unit == "step" else "epoch"
    per = -(-n // SPARK_WIDTH)  # points a column, rounded up: what sparkline's runs come to at most
    scale = f"lowest of up to {per} a column; " if per > 1 else ""
    lines = [f"  utilization (0-100%) over {plural(n, point)} to {trace.unit} {trace.at[-1]} ({scale}"
             f"{sparks(unicode).gap} warm-up):"]
    for level, points in enumerate(trace.levels):
        line = sparkline(points, low=0.0, high=1.0, width=SPARK_WIDTH, unicode=unicode)
        lines.append(f"    level {level + 1}  {line}  {_lowest_and_last(trace, points)}")
    return lines


def _lowest_and_last(trace: Trace, points: list[float | None]) -> str:
    """'lowest 12.5% at step 40 (under 30%), last 87.5%': the lowest of the judged points (a window just after
    warm-up is too short to judge, and no warning counted it), or of all with figures if none was judged."""
    figures = [(u, at) for u, at, ok in zip(points, trace.at, trace.judged, strict=True) if u is not None and ok] \
        or [(u, at) for u, at in zip(points, trace.at, strict=True) if u is not None]
    if not figures:
        return "no figures yet (warm-up)"
    low, at = min(figures, key=lambda f: f[0])
    under = f" (under {LOW_UTILIZATION:.0%})" if low < LOW_UTILIZATION else ""
    last = next(u for u in reversed(points) if u is not None)
    return f"lowest {percent(low)} at {trace.unit} {at}{under}, last {percent(last)}"


def _validation_size(data: dict) -> tuple[int, int]:
    validation = set(data["validation_files"])
    return sum(f["chunks"] for f in data["files"] if f["path"] in validation), len(validation)


def _warmup_text(steps: int) -> str:
    if not steps:
        return "warm-up: none (the quantizer was on from the first step)"
    return f"warm-up: {plural(steps, 'step')} as a plain autoencoder, then k-means (sda.train.warmup)"


def _weights_text(metadata: dict, epochs: list[EpochRecord]) -> str:
    """Which point of training the file's weights are from."""
    at = metadata.get("weights")
    if at is None:  # files from before this was recorded hold the weights of their last epoch
        return f"as of epoch {epochs[-1].epoch}, the last in the history" if epochs else "before any epoch ended"
    where = f"after step {at['step']} (epoch {at['epoch']}"
    return where + (", mid-epoch: training was stopped there)" if at.get("mid_epoch") else ", the last trained)")


COMPARE_WIDTH = 100  # columns `sda info A B ...` fits its table to
LABEL_WIDTH = 21  # the table's first column: what each row is


def compare_text(models: list[Described], unicode: bool = True) -> str:
    """`sda info A B ...`: a table with a column per file (settings that differ marked *), then each one's
    utilization history. Every value from a file goes through printable, then is cut to its column."""
    rows = _compare_rows(models)
    differ = _differing_settings(models)
    label_width = max(LABEL_WIDTH, *(len(key) + 3 for key, _ in differ))  # "* audio.max_chunks_per_file"
    width = max(12, min(30, (COMPARE_WIDTH - label_width) // len(models) - 2))
    ellipsis = "…" if unicode else "..."

    def cell(text: str) -> str:
        text = printable(text)
        return text if len(text) <= width else text[:width - len(ellipsis)] + ellipsis

    def row(label: str, values: list[str], mark: bool = False) -> str:
        head = ("* " if mark else "  ") + label
        return (f"{head:<{label_width}}" + "  ".join(f"{cell(v):<{width}}" for v in values)).rstrip()

    lines = [row("", [m.path.name for m in models]), *(row(*r) for r in rows)]
    if differ:
        lines.append("  settings that differ (*):")
        lines += [row(key, values, True) for key, values in differ]
    for m in models:
        history = history_lines(m.history, unicode)
        if history:
            lines += ["", f"{printable(str(m.path))}:", *history]
    return "\n".join(lines)


def _compare_rows(models: list[Described]) -> list[tuple[str, list[str], bool]]:
    """(label, one value per model, whether it differs where a difference is a setting) of the table."""
    def each(value) -> list[str]:
        return [value(m) for m in models]

    shape = each(lambda m: "{rvq_levels} x {codebook_size} (dim {codebook_dim})".format(**m.metadata["config"]))
    rows = [("name", each(lambda m: repr(m.metadata["model_name"])), False),
            ("created", each(lambda m: _created(m.metadata["created"])), False),
            ("levels x codes", shape, len(set(shape)) > 1),
            ("epochs", each(lambda m: f"{len(m.history.epochs)} of {m.metadata['config']['epochs']}"), False),
            ("steps", each(lambda m: str(_step(m.metadata, m.history))), False),
            ("files", each(lambda m: f"{len(m.metadata['dataset']['files'])} "
                                     f"({len(m.metadata['dataset']['validation_files'])} validation)"), False),
            ("train loss", each(lambda m: _final_loss(m.history, "train")), False),
            ("validation loss", each(lambda m: _final_loss(m.history, "validation")), False)]
    healths = [final_health(m.metadata) for m in models]
    for level in range(max(len(h) for h in healths)):
        rows.append((f"level {level + 1} util/ppl", [_level_cell(h, level) for h in healths], False))
    rates = [stored_bitrate(m.metadata, h) for m, h in zip(models, healths, strict=True)]
    rows += [("bitrate effective", [f"{bits_per_second(r.effective_bps)} ({100 * r.share:.1f}%)" if r else "-"
                                    for r in rates], False),
             ("bitrate nominal", [bits_per_second(r.nominal_bps) if r else "-" for r in rates], False),
             ("warnings", each(lambda m: _warnings_cell(m.history)), False)]
    return rows


def _created(stamp: str) -> str:
    """'2026-12-03 16:40' of an ISO time; anything else as it is (printable makes it safe)."""
    try:
        return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(stamp)


def _final_loss(history: History, which: str) -> str:
    last = history.last()
    return _loss(getattr(last, which)["loss"]) if last else "n/a"


def _level_cell(health: list[LevelHealth], level: int) -> str:
    if level >= len(health):
        return "-"
    h = health[level]
    return f"{percent(h.utilization)}, {h.perplexity:.1f}" if h.assignments else "none counted"


def _warnings_cell(history: History) -> str:
    """'level 3 weak, 1 dip, 2 other': what the file's warnings come to, in a cell."""
    weak = [w for w in history.health_warnings if w.still_weak]
    dips = len(history.health_warnings) - len(weak)
    parts = [f"level {w.level + 1} weak" for w in weak]
    parts += [plural(dips, "dip")] if dips else []
    parts += [f"{len(history.warnings)} other"] if history.warnings else []
    return ", ".join(parts) or "none"


def _differing_settings(models: list[Described]) -> list[tuple[str, list[str]]]:
    """(setting, one value per model) of every config setting whose values are not all the same."""
    flat = [flat_settings(m.metadata["config"]) for m in models]
    keys = sorted(set().union(*flat))
    values = [(key, [str(f.get(key, "-")) for f in flat]) for key in keys]
    return [(key, vs) for key, vs in values if len(set(vs)) > 1]


def flat_settings(config: dict, prefix: str = "") -> dict[str, object]:
    """{"audio.sample_rate": 22050, ...}: a config dict's nested settings by their dotted names (both frontends'
    comparisons)."""
    flat: dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flat_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# Listening to a model (`sda reconstruct` and the page's Models tab): what the codec did, in words.

def quality_text(figures: Quality) -> str:
    """A sda.model.quality.Quality as one line: what each figure is, with its unit (NaN: a silent input)."""
    def figure(value: float, spec: str, unit: str = "") -> str:
        return "n/a (silent input)" if math.isnan(value) else f"{value:{spec}}{unit}"

    return (f"log-mel L1 {figure(figures.log_mel_l1, '.3f')}, STFT distance {figure(figures.stft_distance, '.2f')}"
            f", SI-SDR {figure(figures.si_sdr_db, '.1f', ' dB')}")


def loudness_text(gain_db: float, limited_db: float) -> str:
    """What reconstruct did to the output's level (sda.model.codec.match_loudness): the gain that matched the
    input's loudness, and any further attenuation that kept every sample under full scale."""
    gain = (f"gain {gain_db:+.1f} dB to match the input's loudness (RMS)" if abs(gain_db) >= 0.05
            else "no gain needed to match the input's loudness (RMS)")
    if limited_db <= -0.05:
        return f"{gain}, then attenuated by {-limited_db:.1f} dB so that no sample clips"
    return f"{gain}; no limiting needed (no sample near full scale)"


def code_grid_lines(codes: torch.Tensor, positions_per_second: float) -> list[str]:
    """codes [L, T'] as one line per time position: its start in seconds and the code of each level."""
    levels = codes.shape[0]
    width = max(5, len(str(int(codes.max()))) + 1 if codes.numel() else 5)
    head = "  position  time s" + "".join(f"{f'L{i + 1}':>{width}}" for i in range(levels))
    return [head, *(f"  {t:8d}  {t / positions_per_second:6.2f}" + "".join(f"{int(c):>{width}}" for c in column)
                    for t, column in enumerate(codes.T.tolist()))]
