"""sda encode and sda decode: a collection to a codes file (sda.format.codesfile) and back to audio files.

    sda encode MODEL INPUT... --out codes.sda [--force]
    sda decode MODEL codes.sda --out DIR [--force] [--sample-rate N]

encode scans files and folders as training does (sda.data.dataset.gather and read_whole: the same decoding, skip
and reject rules), reports each file it cannot use and goes on, and puts one code grid [L, T'] per file
(sda.model.codec.encode) into one codes file. decode gives one wav per entry (sda.model.codec.decode), named from
the index (made safe: codesfile.output_names), at the source's rate and length unless told another rate, and
refuses codes of another model unless --force.
"""

import argparse
import sys
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from sda.cli.checks import check_output_file, check_output_folder
from sda.config import MAX_CODEC_SECONDS
from sda.errors import AudioFileError, DataError, OutputError, SdaError
from sda.text import duration, plural, printable, printable_lines, size


def cmd_encode(args: argparse.Namespace) -> int:
    from sda.data.dataset import Rejection, gather, read_whole
    from sda.format import codesfile
    from sda.format.modelfile import load_codec_model
    from sda.model import codec

    check_output_file(args.out, (".sda",), args.force, inputs=[args.model], example="codes.sda", what="codes file")
    model, metadata = load_codec_model(args.model, "encode")
    candidates, skipped = gather(args.inputs)  # a missing input is refused here, before any decoding
    identity, info = codesfile.ModelIdentity.of(model, metadata), codesfile.CodecInfo.of(model.config)
    entries, grids, rejected = [], [], []
    with _bar(len(candidates), "encoding") as bar:
        for candidate in candidates:
            bar.set_postfix_str(candidate.path[-40:], refresh=False)
            try:
                whole = read_whole(candidate, MAX_CODEC_SECONDS)
            except AudioFileError as why:
                rejected.append(Rejection(candidate.path, printable(str(why))))
                bar.update()
                continue
            mono = codec.prepare(whole.wave, whole.sample_rate, model.config)  # codec.encode's two steps: the
            grid = codec.encode_mono(model, mono)  # mono at the model's rate also gives the level to decode to
            entries.append(codesfile.Entry(candidate.path, whole.seconds, whole.sample_rate, whole.channels,
                                           len(whole.wave), grid.shape[1], codec.rms(mono)))
            grids.append(grid)
            bar.update()
    problems = [*skipped, *rejected]
    if not entries:
        raise DataError(f"nothing to encode: {_listed(problems) if problems else 'no audio files were found'}; "
                        f"nothing was written")
    codesfile.save(args.out, codesfile.CodeSet(identity, info, tuple(entries), tuple(grids)))
    seconds, positions = sum(e.seconds for e in entries), sum(e.frames for e in entries)
    print(f"encoded {plural(len(entries), 'file')} ({duration(seconds)} of audio) with "
          f"{printable(identity.describe())}")
    print(f"  {plural(positions, 'code position')} x {info.levels} levels, {info.codebook_size} codes per level, "
          f"{info.frame_rate:.2f} positions a second")
    _print_problems(skipped, rejected)
    print(f"wrote {printable(str(args.out))} ({size(args.out.stat().st_size)})")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from sda.data.audio import write_audio
    from sda.format import codesfile
    from sda.format.modelfile import load_codec_model

    check_output_folder(args.out)
    model, metadata = load_codec_model(args.model, "decode")
    codes = codesfile.load(args.codes)
    here, info = codesfile.ModelIdentity.of(model, metadata), codesfile.CodecInfo.of(model.config)
    if (codes.codec.levels, codes.codec.codebook_size) != (info.levels, info.codebook_size):
        raise SdaError(f"{args.codes} holds codes of {printable(codes.model.describe())}: {codes.codec.levels} levels "
                       f"of {codes.codec.codebook_size} codes, which {args.model} ({info.levels} levels of "
                       f"{info.codebook_size}) cannot decode even with --force; decode them with that model")
    if codes.model.weights_sha256 != here.weights_sha256:
        if not args.force:
            raise SdaError(f"{args.codes} holds codes of another model: {printable(codes.model.describe())}; "
                           f"{args.model} is {printable(here.describe())}. Decode them with their model, or give "
                           "--force to decode them with this one anyway")
        print(f"sda: warning: decoding codes of {printable(codes.model.describe())} with {printable(here.describe())} "
              "(--force)", file=sys.stderr)
    names = codesfile.output_names(codes.entries)
    targets = [args.out / name for name in names]
    existing = [str(t) for t in targets if t.exists() or t.is_symlink()]
    if existing and not args.force:
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise OutputError(f"{plural(len(existing), 'file')} to write {'exists' if len(existing) == 1 else 'exist'} "
                          f"already ({', '.join(existing[:3])}{more}): "
                          "give another --out folder, or --force to replace them")
    args.out.mkdir(exist_ok=True)
    attenuated = 0
    with _bar(len(targets), "decoding") as bar:
        for entry, grid, name, target in zip(codes.entries, codes.grids, names, targets, strict=True):
            _make_folders(args.out, name)
            out = codesfile.decode_entry(model, entry, grid, args.sample_rate)
            attenuated += out.limited_db < 0
            write_audio(target, out.wave, out.rate)
            bar.update()
    seconds = sum(e.seconds for e in codes.entries)
    rates = ", ".join(f"{r} Hz" for r in sorted({args.sample_rate or e.sample_rate for e in codes.entries}))
    whose = "" if args.sample_rate else " (the sources' rates)"
    print(f"decoded {plural(len(targets), 'file')} ({duration(seconds)} of audio) with {printable(here.describe())}")
    print(f"  mono at {rates}{whose}, at the sources' levels")
    renamed = [(e.path, n) for e, n in zip(codes.entries, names, strict=True) if _as_wav(e.path) != n]
    if renamed:
        print(f"  renamed {plural(len(renamed), 'file')} to stay unique and inside the folder: "
              + ", ".join(f"{printable(p)} -> {printable(n)}" for p, n in renamed[:5])
              + (f", and {len(renamed) - 5} more" if len(renamed) > 5 else ""))
    if attenuated:
        print(f"  {plural(attenuated, 'file')} scaled down to stay under full scale (at the sources' level it "
              "would clip)")
    print(f"wrote {printable(str(args.out))}")
    return 0


def add_parsers(commands) -> None:
    """The parser sections of encode and decode, under sda's subcommands."""
    e = commands.add_parser("encode", help="encode audio files and folders into a codes file, through a model",
                            description="Encode audio files and folders (searched recursively, as training does) "
                                        "into one codes file: a code grid per file, for sda decode or a "
                                        "downstream model (sda.codes.load).")
    e.add_argument("model", type=Path, metavar="MODEL.sda", help="the model to encode with")
    e.add_argument("inputs", type=Path, nargs="+", metavar="INPUT", help="audio files and folders of them")
    e.add_argument("--out", type=Path, required=True, metavar="CODES.sda",
                   help="the codes file to write, NAME.sda (required: no default)")
    e.add_argument("--force", action="store_true", help="replace the codes file if it exists")
    e.set_defaults(run=cmd_encode)

    d = commands.add_parser("decode", help="decode a codes file into audio files, through its model",
                            description="Decode a codes file (from sda encode) into one wav per entry, named as "
                                        "its source, at the source's sample rate and length.")
    d.add_argument("model", type=Path, metavar="MODEL.sda", help="the model the codes were made with")
    d.add_argument("codes", type=Path, metavar="CODES.sda", help="a codes file written by sda encode")
    d.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="the folder to write into, created if missing in a folder that exists (required: no "
                        "default)")
    d.add_argument("--force", action="store_true",
                   help="replace existing files, and decode codes made by another model")
    d.add_argument("--sample-rate", type=_rate, metavar="N",
                   help="write every file at N Hz (default: each source's own rate)")
    d.set_defaults(run=cmd_decode)


def _make_folders(out: Path, name: str) -> None:
    """The folders of name (a relative path from codesfile.output_names) under out, made one level at a time, and
    never through a link: one made inside out by someone else could lead anywhere."""
    folder = out
    for part in PurePosixPath(name).parent.parts:
        folder = folder / part
        if folder.is_symlink():
            raise OutputError(f"{folder} is a link: sda decode writes only into real folders inside {out} (a link "
                              "could lead out of it); remove the link or choose another --out folder")
        folder.mkdir(exist_ok=True)  # a file in the way raises FileExistsError, which names it


def _as_wav(path: str) -> str | None:
    """The name a decoded file has when its path needed no change: its extension made .wav."""
    try:
        return PurePosixPath(path).with_suffix(".wav").as_posix()
    except ValueError:  # no name to give a suffix to
        return None


def _rate(text: str) -> int:
    from sda.config import FILE_SAMPLE_RATES

    low, high = FILE_SAMPLE_RATES
    if not (len(text) <= 10 and text.isdigit() and low <= int(text) <= high):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a sample rate in Hz from {low} to {high}")
    return int(text)


def _bar(total: int, what: str) -> tqdm:
    """One bar on a terminal, as training's (sda.cli.progress); none when output is a file or a pipe."""
    return tqdm(total=total, desc=what, unit="file", file=sys.stdout, leave=False, dynamic_ncols=True,
                disable=not sys.stdout.isatty())


def _print_problems(skipped, rejected) -> None:
    if skipped:
        print(f"  skipped {plural(len(skipped), 'file')}: {_listed(skipped)}")
    if rejected:
        print(f"  could not encode {plural(len(rejected), 'file')}:")
        for r in rejected:
            print(f"    {r.path}: {r.reason}")


def _listed(problems, limit: int = 10) -> str:
    shown = ", ".join(f"{p.path} ({p.reason})" for p in problems[:limit])
    return printable_lines(shown + (f", and {len(problems) - limit} more" if len(problems) > limit else ""))
