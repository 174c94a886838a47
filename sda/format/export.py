"""`sda export`'s output: a folder of torch.export programs (sda.model.export) that load with torch alone.

    check_output(folder, force)               # OutputError now, before any work, if the folder cannot be written
    write_export(folder, model, name, force)  # the programs and their description; returns the files written
    info = read_info(folder)                  # the description (INFO_FILE): plain JSON

The folder (a program has one method, so one file each):

    encode.pt2       wave [S] float32 mono at sample_rate -> codes [L, T'] int64
    decode_mel.pt2   codes [l, T'] int64, l <= L -> log-mel [n_mels, T' x downsample] float32
    decode.pt2       codes [l, T'] -> wave [T' x downsample x hop_length] float32 (Griffin-Lim)
    sda-export.json  model_name, sample_rate, hop_length, downsample, samples_per_position, levels,
                     codebook_size, n_mels, n_fft, torch, programs (what each takes and gives)

Each .pt2 is torch.export.save's, and holds sda-export.json too (torch.export.load's extra_files), so a program
copied on its own still says what it is. Loading one (torch.export.load) unpickles parts of it, as every torch
program does: load only exports you made or trust. The folder is written beside its place and renamed into it,
so an interrupted export leaves the old folder or none; --force replaces only a folder that is an sda export.
"""

import json
import os
import secrets
import shutil
from pathlib import Path

import torch

from sda.errors import OutputError
from sda.model.export import PROGRAMS, describe, export_programs
from sda.model.vqvae import ConvVQVAE

INFO_FILE = "sda-export.json"
SIGNATURES = {
    "encode": "wave [S] float32 mono at sample_rate -> codes [levels, T'] int64, "
              "T' = ceil(max(S, n_fft) / samples_per_position)",
    "decode_mel": "codes [l, T'] int64, the first l <= levels -> log-mel [n_mels, T' x downsample] float32",
    "decode": "codes [l, T'] int64 -> wave [T' x samples_per_position] float32 at sample_rate (Griffin-Lim)",
}


def check_output(folder: Path, force: bool) -> None:
    """Refuse what would fail late or lose something: a file in the way, a missing parent folder, an existing
    folder without force, and with force a folder that is not an earlier export (it would be deleted)."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file: an export is a folder of programs; give the name of a folder to "
                          "create")
    if not folder.parent.is_dir():
        raise OutputError(f"the folder {folder.parent} does not exist: create it first, or export somewhere else")
    if folder.exists():
        if not force:
            raise OutputError(f"{folder} exists: give another output path, or --force to replace it")
        if not (folder / INFO_FILE).is_file():
            raise OutputError(f"{folder} is a folder but not an sda export (no {INFO_FILE}): --force replaces only "
                              "an earlier export; give another output path")


def write_export(folder: Path, model: ConvVQVAE, name: str, force: bool = False) -> list[Path]:
    """Export model's programs into folder (see the module docstring); returns the files, in PROGRAMS order then
    INFO_FILE. ValueError if the model has no codes yet (saved during warm-up)."""
    check_output(folder, force)
    programs = export_programs(model)
    info = {**describe(model, name), "programs": {key: SIGNATURES[key] for key in PROGRAMS}}
    text = json.dumps(info, indent=2, ensure_ascii=False) + "\n"
    staging = folder.with_name(f".{folder.name}.{secrets.token_hex(6)}.tmp")
    staging.mkdir()
    try:
        for key in PROGRAMS:
            torch.export.save(programs[key], staging / f"{key}.pt2", extra_files={INFO_FILE: text})
        (staging / INFO_FILE).write_text(text, encoding="utf-8")
        _replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [folder / f"{key}.pt2" for key in PROGRAMS] + [folder / INFO_FILE]


def _replace(staging: Path, folder: Path) -> None:
    """Rename staging to folder; an earlier export there is moved aside first and removed once the new one is in."""
    if not folder.exists():
        os.rename(staging, folder)
        return
    old = folder.with_name(f".{folder.name}.{secrets.token_hex(6)}.old")
    os.rename(folder, old)
    try:
        os.rename(staging, folder)
    except BaseException:
        os.rename(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


def read_info(folder: Path) -> dict:
    """The export's description, INFO_FILE."""
    return json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
