"""Text for people: per-level health lines, the end-of-training report, and `sda info`.

Both frontends print these, so the CLI's report and the Gradio tab's are the same words.
"""

from sda import sdafile
from sda.events import Summary
from sda.health import LOW_UTILIZATION, LevelHealth


def level_line(h: LevelHealth) -> str:
    """'level 1  util  87.5%  perplexity  70.1  dead  16' plus a flag when the level is weak."""
    flag = f"  << under {LOW_UTILIZATION:.0%}" if is_weak(h) else ""
    return (f"level {h.level + 1}  util {100 * h.utilization:5.1f}%  perplexity {h.perplexity:6.1f}  "
            f"dead {h.dead:4d}/{h.codebook_size}  replaced {h.replaced}{flag}")


def is_weak(h: LevelHealth) -> bool:
    return h.assignments > 0 and h.utilization < LOW_UTILIZATION


def health_table(levels: list[LevelHealth]) -> str:
    return "\n".join("  " + level_line(h) for h in levels)


def batch(per_process: int, processes: int) -> str:
    """'batch 16', or 'batch 16 per process x 2 processes' for a distributed run."""
    return f"batch {per_process}" + (f" per process x {processes} processes" if processes > 1 else "")


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


def size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e5 else f"{n_bytes / 1e3:.1f} kB"


def _loss(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def summary_text(s: Summary) -> str:
    how = "stopped early" if s.stopped else "finished"
    lines = [
        f"Training {how}: {s.epochs_done} of {s.epochs} epochs, {s.steps} steps in {duration(s.elapsed_s)}"
        + (" (resumed from a checkpoint)" if s.resumed else ""),
        f"  final train loss {_loss(s.train_loss)}, validation loss {_loss(s.val_loss)} "
        f"(reconstruction {_loss(s.val_reconstruction)})",
        f"  device {s.device} ({s.precision}), kernel backend {s.backend}"
        + (f", {s.processes} processes" if s.processes > 1 else ""),
        "  codebook health (last training window):",
        health_table(s.health),
    ]
    if s.warnings:
        lines.append(f"  warnings ({len(s.warnings)}):")
        lines += [f"    - {w}" for w in s.warnings]
    lines += [f"  model: {s.model_path} ({size(s.model_bytes)})", f"  checkpoint: {s.checkpoint_path}"]
    if s.stopped:
        lines.append(f"  continue with: sda train DATA_DIR --resume {s.checkpoint_path}")
    return "\n".join(lines)


def describe(path) -> tuple[str, dict, str]:
    """(kind, metadata, info_text) of a model or checkpoint file, from its header; the weights are not read.

    A valid .sda container whose metadata is not what sda writes raises SdaFormatError, like any damage.
    """
    header = sdafile.read_header(path)
    kind, metadata = header["kind"], header["metadata"]
    try:
        return kind, metadata, info_text(path, metadata, kind)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"no {exc}" if isinstance(exc, KeyError) else f"a bad entry ({exc})"
        raise sdafile.SdaFormatError(f"{path} is an .sda file but not an sda model or checkpoint: its metadata has "
                                     f"{what}. It was written by another program, or by a newer sda.") from None


def info_text(path, metadata: dict, kind: str = "model") -> str:
    """What `sda info` prints from a model or checkpoint file's metadata (the weights are not read)."""
    cfg, data = metadata["config"], metadata["dataset"]
    epochs = metadata["history"]["epochs"]
    lines = [
        f"{path}: sda {kind} {metadata['model_name']!r}, created {metadata['created']} "
        f"(sda {metadata['versions']['sda']}, torch {metadata['versions']['torch']})",
        f"  model: {cfg['rvq_levels']} RVQ levels x {cfg['codebook_size']} codes x dim {cfg['codebook_dim']}, "
        f"commitment weight {cfg['commitment_weight']}, seed {cfg['seed']}",
        f"  audio: {cfg['audio']['sample_rate']} Hz, {cfg['audio']['n_mels']} mels, hop {cfg['audio']['hop_length']}, "
        f"chunks of {cfg['audio']['chunk_frames']} frames",
        f"  training: {len(epochs)} of {cfg['epochs']} epochs, "
        f"{batch(cfg['batch_size'], metadata['history'].get('processes', 1))}, lr {cfg['learning_rate']}",
        f"  data: {data['folder']}: {len(data['files'])} files, {data['total_seconds']:.1f} s, {data['chunks']} chunks "
        f"({len(data['validation_files'])} files for validation)",
        "  codebook health (last training window):",
        health_table([LevelHealth(**h) for h in metadata["health"]]),  # stored as plain dicts
    ]
    if epochs:
        lines.append("  loss curve (epoch: train / validation, validation reconstruction):")
        best = min(epochs, key=lambda e: e["validation"]["loss"])
        for label, e in (("first", epochs[0]), ("best", best), ("last", epochs[-1])):
            lines.append(f"    {label:5} {e['epoch']:4d}: {e['train']['loss']:.4f} / {e['validation']['loss']:.4f}, "
                         f"{e['validation']['reconstruction']:.4f}")
    warnings = metadata["history"]["warnings"]
    if warnings:
        lines.append(f"  warnings during training ({len(warnings)}):")
        lines += [f"    - {w}" for w in warnings]
    return "\n".join(lines)
