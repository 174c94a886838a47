"""What the codec commands (reconstruct, encode, decode) check of where their output goes, before any work (the
model is sda.format.modelfile.load_codec_model's). Each refusal is an OutputError (exit 2) saying what to do.

    check_output_file(out, (".sda",), force, example="codes.sda", what="codes file")
    check_output_folder(out)                  # a folder, or one that can be created
"""

import os
from collections.abc import Sequence
from pathlib import Path

from sda.errors import OutputError


def check_output_file(output: Path, extensions: Sequence[str], force: bool, *, inputs: Sequence[Path] = (),
                      example: str = "out.wav", what: str = "audio file") -> None:
    """Refuse an output that is one of the inputs, a folder, of an extension not in extensions, in a missing folder,
    or an existing file without --force."""
    if output.is_dir():
        raise OutputError(f"{output} is a folder: give the path of the {what} to write, e.g. {output / example}")
    for source in inputs:
        if output.exists() and source.exists() and os.path.samefile(source, output):
            raise OutputError(f"{output} is the input file: writing it would destroy it; give another output path")
    if output.suffix.lower() not in extensions:
        raise OutputError(f"cannot write {output}: its extension is not one of {', '.join(extensions)}")
    if not output.parent.is_dir():
        raise OutputError(f"the folder of {output} does not exist: create it first, or write somewhere else")
    if output.exists() and not force:
        raise OutputError(f"{output} exists: give another output path, or --force to replace it")


def check_output_folder(folder: Path) -> None:
    """Refuse a folder to write into that is a file, or that is missing in a missing folder (it is created later,
    one level only, so that a typo in its parent is not made into folders)."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file, not a folder: give the folder to write the audio files into")
    if not folder.exists() and not folder.parent.is_dir():
        raise OutputError(f"the folder of {folder} does not exist: create it first, or write somewhere else")
