"""Text for people: per-level health lines, the end-of-training report, and `sda info`.

Both frontends print these, so the CLI's report and the Gradio tab's are the same words.
"""

from sda.config import CLI, PAGE, smaller_codebook_size
from sda.errors import SdaFormatError
from sda.format import container
from sda.model.health import LOW_UTILIZATION, HealthWarning, LevelHealth, percent
from sda.text import duration, plural, size
from sda.train.events import Summary
from sda.train.history import EpochRecord, History

__all__ = ["CLI", "PAGE"]  # the frontends (sda.config), here too for those that only print reports
MIN_VALIDATION_CHUNKS = 8  # fewer validation chunks than this measure too little to judge a model by


def level_line(h: LevelHealth, judged: bool = True) -> str:
    """'level 1  util  87.5%  perplexity  70.1  dead  16' plus a flag when the level is weak; a window too
    short to judge (sda.model.health.judged: just after warm-up) gets no verdict, and says so."""
    verdict = f"  << under {LOW_UTILIZATION:.0%}" if is_weak(h) else ""
    flag = verdict if judged else "  (too few steps to judge)"
    return (f"level {h.level + 1}  util {percent(h.utilization):>6}  perplexity {h.perplexity:6.1f}  "
            f"dead {h.dead:4d}/{h.codebook_size}  replaced {h.replaced}{flag}")


def eta_text(eta_s: float | None) -> str:
    """The time left as both frontends show it; the engine has none until a few steps are timed (sda.train.eta)."""
    return "ETA estimating" if eta_s is None else f"ETA {duration(eta_s)}"


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


def validation_note(chunks: int, files: int) -> str:
    """How much validation measured on, and whether that is enough to judge by."""
    what = f"{plural(chunks, 'chunk')} from {plural(files, 'file')}"
    if chunks < MIN_VALIDATION_CHUNKS:
        return (f"validation: {what}, too few to judge the model by (under {MIN_VALIDATION_CHUNKS}); "
                "its loss and utilization are indicative only")
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


def health_table(levels: list[LevelHealth]) -> str:
    return "\n".join("  " + level_line(h) for h in levels)


def health_block(levels: list[LevelHealth], step: int, warmup_steps: int) -> list[str]:
    """The end-of-training health table, or why there is none: a run stopped during warm-up has no
    quantizer figures, and zeros would read as a collapse."""
    if any(h.assignments for h in levels):
        return ["  codebook health (last training window):", health_table(levels)]
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
        *health_block(s.health, s.steps, s.warmup_steps),
    ]
    levels = len(s.health)
    weak = [w for w in s.health_warnings if w.still_weak]
    lines += _warnings_block(s.health_warnings, s.warnings, frontend, levels)
    counted = any(h.assignments for h in s.health)
    if not weak and not s.warnings and counted and all(not is_weak(h) for h in s.health):
        lines.append("  no warnings: every level stayed healthy" if not s.health_warnings else
                     "  no level ended weak")
    lines += [f"  model: {s.model_path} ({size(s.model_bytes)})", f"  checkpoint: {s.checkpoint_path}"]
    if s.stopped:
        lines.append(f"  continue with: sda train DATA_DIR --resume {s.checkpoint_path}")
    return "\n".join(lines)


def describe(path, frontend: str = CLI) -> tuple[str, dict, str]:
    """(kind, metadata, info_text) of a model or checkpoint file, from its header; the weights are not read.

    A valid .sda container whose metadata is not what sda writes raises SdaFormatError, like any damage.
    """
    header = container.read_header(path)
    kind, metadata = header["kind"], header["metadata"]
    try:
        return kind, metadata, info_text(path, metadata, kind, frontend)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"no {exc}" if isinstance(exc, KeyError) else f"a bad entry ({exc})"
        raise SdaFormatError(f"{path} is an .sda file but not an sda model or checkpoint: its metadata has "
                                     f"{what}. It was written by another program, or by a newer sda.") from None


def info_text(path, metadata: dict, kind: str = "model", frontend: str = CLI) -> str:
    """What `sda info` prints from a model or checkpoint file's metadata (the weights are not read)."""
    cfg, data = metadata["config"], metadata["dataset"]
    history = History.from_dict(metadata["history"])
    epochs = history.epochs
    lines = [
        f"{path}: sda {kind} {metadata['model_name']!r}, created {metadata['created']} "
        f"(sda {metadata['versions']['sda']}, torch {metadata['versions']['torch']})",
        f"  model: {cfg['rvq_levels']} RVQ levels x {cfg['codebook_size']} codes x dim {cfg['codebook_dim']}, "
        f"commitment weight {cfg['commitment_weight']}, seed {cfg['seed']}",
        f"  audio: {cfg['audio']['sample_rate']} Hz, {cfg['audio']['n_mels']} mels, hop {cfg['audio']['hop_length']}, "
        f"chunks of {cfg['audio']['chunk_frames']} frames",
        f"  training: {len(epochs)} of {plural(cfg['epochs'], 'epoch')}, "
        f"{batch(cfg['batch_size'], history.processes)}, lr {cfg['learning_rate']}",
        f"  data: {data['folder']}: {plural(len(data['files']), 'file')}, {data['total_seconds']:.1f} s, "
        f"{plural(data['chunks'], 'chunk')}; "
        + validation_note(*_validation_size(data)),
        "  " + _warmup_text(cfg.get("warmup_steps", 0)),
        "  weights: " + _weights_text(metadata, epochs),
        *health_block([LevelHealth(**h) for h in metadata["health"]],  # stored as plain dicts
                      (metadata.get("weights") or {}).get("step", 0), cfg.get("warmup_steps", 0)),
    ]
    if epochs:
        lines.append("  loss curve (epoch: train / validation, validation reconstruction):")
        best = min(epochs, key=lambda e: e.validation["loss"])
        for label, e in (("first", epochs[0]), ("best", best), ("last", epochs[-1])):
            lines.append(f"    {label:5} {e.epoch:4d}: {e.train['loss']:.4f} / {e.validation['loss']:.4f}, "
                         f"{e.validation['reconstruction']:.4f}")
    lines += _warnings_block(history.health_warnings, history.warnings, frontend, cfg["rvq_levels"])
    return "\n".join(lines)


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
