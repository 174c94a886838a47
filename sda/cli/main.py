"""The sda command line: train, info, reconstruct, encode and decode (sda.cli.codes), export, ui, env. Training logic
lives in sda.train.engine; this file turns flags into a config and events into text.

Exit status (sda.errors has the table of what each error means): 0 done, 1 training failed or a save did not complete
(one message), or an unexpected error (its traceback), 2 bad input (flags, folder, model file, output), 130 stopped
by Ctrl-C or SIGTERM (model and checkpoint saved). `sda train`'s settings flags are built from sda.config: the
dataclass defaults, and RANGES' bounds and help.
"""

import argparse
import dataclasses
import os
import platform
import signal
import stat
import sys
import threading
import traceback
from pathlib import Path

import sda
from sda.cli import codes
from sda.cli.checks import check_output_file
from sda.config import (
    CACHE_DIR_ENV,
    CACHE_MAX_BYTES,
    FILE_SAMPLE_RATES,
    MAX_DECODE_WORKERS,
    OPTIONAL,
    RANGES,
    RVQ_LEVELS,
    AudioConfig,
    DecodeOptions,
    RunOptions,
    VQVAEConfig,
)
from sda.errors import (
    EXIT,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    AudioFileError,
    ConfigError,
    kind_of,
)
from sda.text import plural, printable, printable_lines

# sda train's flags for the settings of sda.config, in the order --help lists them; a setting's flag is its name
# with dashes unless FLAG_NAMES says otherwise. Every field of VQVAEConfig and AudioConfig has one.
TRAIN_FLAGS = ("rvq_levels", "commitment_weight", "codebook_size", "codebook_dim", "epochs", "batch_size",
               "learning_rate", "seed")
RUN_FLAGS = ("health_every", "checkpoint_every", "preview_every", "timeout_s")  # RunOptions'
FLAG_NAMES = {"learning_rate": "--lr", "timeout_s": "--dist-timeout"}


def cmd_env(args: argparse.Namespace) -> int:
    """Print the versions, devices and backends sda will use on this machine."""
    import torch

    from sda.format import container
    from sda.train.devices import kernel_backend

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"

    print(f"sda {sda.__version__} on Python {platform.python_version()} ({sys.platform})")
    print(f"torch {torch.__version__}, triton {triton_version}")
    print(f"SDA_KERNELS={os.environ.get('SDA_KERNELS', 'auto')}")
    cpu_backend = kernel_backend(torch.device("cpu"))
    print(f"kernel backend on cpu: {cpu_backend}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            dev = torch.device("cuda", i)
            name = torch.cuda.get_device_name(i)
            print(f"kernel backend on {dev} ({name}): {kernel_backend(dev)}")
    else:
        print("cuda: not available")
    print(f".sda file backend: {container.BACKEND}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from sda.cli.launch import check_nproc, launch, under_torchrun
    from sda.data.parallel import start_early

    if args.demo:
        from sda.data.synth import write_collection

        args.data_dir = args.out / "demo-data"
        if not args.data_dir.exists():
            write_collection(args.data_dir, n_files=24)
    elif args.data_dir is None:
        raise ConfigError("give the folder of audio to train on (sda train DATA_DIR), or --demo")
    audio = AudioConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(AudioConfig)})
    config = VQVAEConfig(audio=audio, **{name: getattr(args, name) for name in _config_settings()}).validate()
    if check_nproc(args.nproc):  # flags and the demo data are settled here, once, before any worker starts
        return launch(args.nproc, args.argv, args.device)
    if not under_torchrun():  # before torch is imported here (sda.data.parallel); a torchrun worker shares the cores
        start_early(args.decode_workers)
    from sda.train import distributed

    options = RunOptions(data_dir=args.data_dir, out_dir=args.out, model_name=args.model_name, device=args.device,
                         precision=args.precision, resume=args.resume, tensorboard=args.tensorboard,
                         decode=_decode_options(args), **{name: getattr(args, name) for name in RUN_FLAGS})
    status = _train_and_show(config, options)
    if distributed.launched():
        # torch's C++ teardown at interpreter exit can abort a worker whose work is done (SIGABRT,
        # "terminate called without an active exception", seen here 3 times in about 150 runs); torchrun
        # would then count the run as failed and stop the others. So a worker leaves without it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _train_and_show(config, options) -> int:
    from sda.cli.progress import Progress
    from sda.train.engine import train
    from sda.train.events import Cancelled, Error, Step

    stop, training = threading.Event(), threading.Event()
    interrupted = _stop_on_first_ctrl_c(stop, training)
    progress = Progress(interactive=sys.stdout.isatty())
    try:
        for event in train(config, options, stop, on_progress=progress.reading):
            if isinstance(event, Step):
                training.set()
            if isinstance(event, Error):
                if not event.quiet:
                    progress.show(event)
                return EXIT[event.kind]
            if isinstance(event, Cancelled):
                progress.close()
                print(f"sda: {printable_lines(event.message)}", file=sys.stderr)
                return EXIT_INTERRUPTED
            progress.show(event)
    finally:
        progress.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return EXIT_INTERRUPTED if interrupted.is_set() else 0


def _stop_on_first_ctrl_c(stop: threading.Event, training: threading.Event) -> threading.Event:
    """First Ctrl-C (or SIGTERM, as from a service manager): finish the step, save, report; before the first
    step (training not set), stop with nothing saved. Second: abort."""
    from sda.train import distributed

    interrupted = threading.Event()

    def handler(signum, frame):
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()
        stop.set()
        if not distributed.first_process():  # the others of a distributed run stop with it, silently
            return
        what = ("stopping after this step; saving the model and a checkpoint" if training.is_set() else
                "stopping before training begins; nothing will be saved")
        print(f"\nsda: {what} (Ctrl-C again to abort)", file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return interrupted


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def cmd_info(args: argparse.Namespace) -> int:
    """One file: its description. Several: side by side; a file that cannot be read is reported and the others
    still shown, and the exit status is that of its error (2: a bad file)."""
    from sda.report import compare_text, describe_file

    unicode = _utf8_output()
    if len(args.models) == 1:  # a model's per-code usage needs the whole file read (a few MB)
        print(printable_lines(describe_file(args.models[0], unicode=unicode, usage=True).text))
        return 0
    described, status = [], 0
    for path in args.models:
        try:
            described.append(describe_file(path, unicode=unicode, usage=True))
        except Exception as exc:
            kind = kind_of(exc)
            if kind is None:  # a bug: main() prints its traceback
                raise
            print(f"sda: error: {printable_lines(exc)}", file=sys.stderr)
            status = status or EXIT[kind]
    if len(described) == 1:
        print(printable_lines(described[0].text))
    elif described:
        print(compare_text(described, unicode))  # printable cell by cell, so columns line up
    return status


def _utf8_output() -> bool:
    """Whether stdout can show a sparkline's block characters: its encoding is UTF-8, and not only because Python
    made it so. Under a C or POSIX locale (LANG=C, or none set) Python turns on its UTF-8 mode by itself (PEP 540)
    while the terminal stays ASCII; PYTHONIOENCODING, PYTHONUTF8 or -X utf8 asking for UTF-8 is believed."""
    import codecs

    if codecs.lookup(sys.stdout.encoding or "ascii").name != "utf-8":
        return False
    asked = os.environ.get("PYTHONIOENCODING") or os.environ.get("PYTHONUTF8") or "utf8" in sys._xoptions
    return bool(asked) or not sys.flags.utf8_mode


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from sda.config import MAX_CODEC_SECONDS
    from sda.data.audio import read_audio, write_audio
    from sda.format.modelfile import load_codec_model
    from sda.model import codec
    from sda.model.bitrate import frame_rate
    from sda.report import code_grid_lines, loudness_text, quality_text

    _check_reconstruct_paths(args.input, args.output, args.force)
    model, _ = load_codec_model(args.model, "reconstruct")
    levels = model.config.rvq_levels
    if args.levels is not None and not 1 <= args.levels <= levels:
        raise ConfigError(f"--levels {args.levels}: {printable(str(args.model))} has {levels} levels: give 1 to "
                          f"{levels}")
    try:
        wave, input_rate = read_audio(args.input, MAX_CODEC_SECONDS)
    except AudioFileError as exc:
        raise AudioFileError(f"cannot use {args.input}: {exc}") from None
    except Exception as exc:  # soundfile raises several types; all mean the same to the user
        raise AudioFileError(f"cannot read {args.input} as audio: {exc}") from None
    channels, samples = wave.shape
    if samples == 0:
        raise AudioFileError(f"{args.input} holds no audio (0 samples): give a file with sound in it")
    out_rate = args.sample_rate or input_rate
    result = codec.reconstruct(model, wave, input_rate, out_rate, args.levels)
    write_audio(args.output, result.wave, out_rate)
    used, positions = min(args.levels or levels, levels), result.codes.shape[1]
    shape = f"{samples / input_rate:.2f} s at {input_rate} Hz, {plural(channels, 'channel')}"
    print(f"{printable(str(args.input))}: {shape}")
    print(f"  code grid: {levels} levels x {plural(positions, 'time position')} ({model.config.codebook_size} codes "
          f"per level, {frame_rate(model.config):.1f} positions a second)")
    if args.codes:
        print("\n".join(code_grid_lines(result.codes, frame_rate(model.config))))
    if used < levels:
        print(f"  decoded from the first {plural(used, 'level')} of {levels}")
    print(f"  quality: {quality_text(result.quality)}")
    print(f"  level: {loudness_text(result.gain_db, result.limited_db)}")
    mono = "mono" if channels == 1 else f"mono: the model hears one channel, the input's {channels} were averaged"
    print(f"wrote {printable(str(args.output))} ({out_rate} Hz, {mono})")
    return 0


def _check_reconstruct_paths(source: Path, output: Path, force: bool) -> None:
    """Refuse, before any work, what would block, fail late or lose a file: a non-regular input (a FIFO would
    block), an output that is the input, a folder, in a missing folder, of a format sda cannot write, or an
    existing file without --force."""
    from sda.data.audio import WRITABLE_AUDIO

    mode = os.stat(source).st_mode  # FileNotFoundError names the path
    if not stat.S_ISREG(mode):
        raise AudioFileError(f"{source} is not a regular file (a folder, FIFO or device): give an audio file")
    check_output_file(output, WRITABLE_AUDIO, force, inputs=[source])


def cmd_export(args: argparse.Namespace) -> int:
    """sda export MODEL --out DIR: the model as torch.export programs that run with torch alone (sda.format.export)."""
    import time

    from sda.format.export import check_output, write_export
    from sda.format.modelfile import load_codec_model

    check_output(args.out, args.force)
    model, metadata = load_codec_model(args.model, "export")
    name = metadata.get("model_name")
    start = time.perf_counter()
    files = write_export(args.out, model, name if isinstance(name, str) else args.model.stem, args.force)
    size = sum(f.stat().st_size for f in files)
    out = printable(str(args.out))
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s: {', '.join(f.name for f in files)} "
          f"({size / 1e6:.1f} MB)")
    print(f"use it with torch alone: codes = torch.export.load('{out}/encode.pt2').module()(wave)  "
          f"# wave [S] float32 mono at {model.config.audio.sample_rate} Hz")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from sda.data.parallel import start_early

    start_early(args.decode_workers)  # the page's first preflight then finds the pool's fork server ready
    from sda.ui.app import login_for, reachable_beyond_loopback, serve

    login = login_for(args.host, args.share, args.no_auth, args.password_file)
    try:
        app = serve(args.models, host=args.host, port=args.port, share=args.share, quiet=True,
                    data_root=args.data_root, login=login, no_auth=args.no_auth, decode=_decode_options(args))
    except OSError as exc:  # Gradio's own message advises launch() arguments, which mean nothing here
        reason = "the port is in use" if "empty port" in str(exc) else str(exc)
        raise ConfigError(f"cannot serve on {args.host}:{args.port}: {reason}; choose another port with --port "
                          "(or another address with --host)") from None
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop saves a running job, as Ctrl-C does
    audio = f", audio from folders under {printable(str(app.data_root))}" if app.data_root else ""
    print(f"sda ui: open {app.local_url} (models in {printable(str(args.models))}{audio}); Ctrl-C to quit", flush=True)
    if login is not None:
        password = (f"password {login.password} (made for this run; set SDA_UI_PASSWORD or --password-file for a "
                    "fixed one)" if login.made_here else "the password you gave")
        print(f"sda ui: log in as {login.user} with {password}", flush=True)
    elif args.no_auth and reachable_beyond_loopback(args.host, args.share):
        print(f"sda ui: warning: serving {'a public share link' if args.share else args.host} with no login "
              "(--no-auth): anyone who can reach it can start and stop training, list the folders under "
              f"{printable(str(app.data_root))} and open the models", file=sys.stderr, flush=True)
    if app.share_url:
        print(f"sda ui: public share link {app.share_url} (anyone with it and the login can train on this machine)",
              flush=True)
    try:
        threading.Event().wait()  # the server runs in its own threads; this one waits for Ctrl-C
    except KeyboardInterrupt:
        job = app.slot.job
        if job is not None and job.view().active:
            print("sda ui: stopping the training run; saving the model and a checkpoint (Ctrl-C again to abort)",
                  file=sys.stderr, flush=True)
            job.stop()
            job.wait()
    finally:
        app.close()
    return 0


def _config_settings() -> list[str]:
    """The settings of VQVAEConfig that sda train takes as flags: all of them but audio (AudioConfig's own)."""
    return [f.name for f in dataclasses.fields(VQVAEConfig) if f.name != "audio"]


def _default(name: str):
    """The default of a setting: its dataclass's (VQVAEConfig, AudioConfig or RunOptions)."""
    for cls in (VQVAEConfig, AudioConfig, RunOptions):
        for f in dataclasses.fields(cls):
            if f.name == name:
                return f.default
    raise KeyError(name)


def _add_setting(group, name: str) -> None:
    """The flag of setting name: its default from the dataclass, its type, range and help from sda.config.RANGES,
    and so the same message for a bad value as the config gives."""
    limits, default = RANGES[name], _default(name)
    shown = "auto" if default is None and name in OPTIONAL else (f"{default:g}" if isinstance(default, float)
                                                                 else default)
    flag = FLAG_NAMES.get(name, f"--{name.replace('_', '-')}")
    extra = {"choices": RVQ_LEVELS, "type": int} if name == "rvq_levels" else {"type": _setting(name)}
    if name != "rvq_levels":
        extra["metavar"] = "SECONDS" if name == "timeout_s" else "N" if limits.whole else "X"
    text = f"{limits.help} (default: {shown})".replace("%", "%%")  # argparse %-formats help
    group.add_argument(flag, dest=name, default=default, help=text, **extra)


def _setting(name: str):
    """The argparse type of a setting: its type and range from sda.config.RANGES, said in the message."""
    limits = RANGES[name]

    def parse(text: str):
        shown = text if len(text) <= 30 else f"{text[:20]}... ({len(text)} characters)"
        try:
            if len(text) > 40:  # before int(): Python refuses over 4300 digits with a message about its own limit
                raise ValueError
            value = int(text) if limits.whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{shown!r} is not {limits.describe()}") from None
        if not limits.fits(value):
            raise argparse.ArgumentTypeError(f"{shown} is out of range: it must be {limits.describe()}")
        return value
    return parse


def _int_at_least(low: int, high: int | None = None):
    def parse(text: str) -> int:
        try:
            if len(text) > 40:
                raise ValueError
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is too small: it must be at least {low}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{value} is too large: it must be at most {high}")
        return value
    return parse


def _add_decode_flags(parser) -> None:
    """How the audio is read (sda.config.DecodeOptions): for every command that reads a folder of audio."""
    group = parser.add_argument_group("reading the audio (how fast, never what the model gets)")
    group.add_argument("--decode-workers", type=_int_at_least(1, MAX_DECODE_WORKERS), metavar="N",
                       help="processes that decode the files; 1 decodes in this one (default: one per core, at most "
                            "one per file)")
    group.add_argument("--cache-dir", type=_cache_dir, metavar="DIR",
                       help=f"where decoded files are kept, so that the next run on the same folder decodes only "
                            f"what changed; at most {CACHE_MAX_BYTES / 2**30:g} GiB, the least recently used going "
                            f"first (default: ${CACHE_DIR_ENV}, else $XDG_CACHE_HOME/sda/decoded, else "
                            "~/.cache/sda/decoded)")
    group.add_argument("--no-cache", action="store_true",
                       help="decode every file, and keep nothing on disk (default: the cache is used)")


def _cache_dir(text: str) -> Path:
    path = Path(text).expanduser()
    if not text.strip():
        raise argparse.ArgumentTypeError("give a folder for the cache (or --no-cache)")
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{printable(text)} is a file, not a folder: give a folder for the decoded "
                                         "audio (it is made if it does not exist), or --no-cache")
    return path


def _decode_options(args: argparse.Namespace) -> DecodeOptions:
    return DecodeOptions(workers=args.decode_workers, cache=not args.no_cache, cache_dir=args.cache_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sda", description=sda.__doc__)
    parser.add_argument("--version", action="version", version=f"sda {sda.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    env = commands.add_parser("env", help="show versions, devices and the kernel backend in use")
    env.set_defaults(run=cmd_env)

    t = commands.add_parser("train", help="train a model on a folder of audio files",
                            description="Train an RVQ-VAE on a folder of audio files, showing codebook health live.")
    t.add_argument("data_dir", nargs="?", type=Path, metavar="DATA_DIR", help="folder of audio (searched recursively)")
    t.add_argument("--demo", action="store_true", help="train on a generated collection; no DATA_DIR needed")
    for name in TRAIN_FLAGS:
        _add_setting(t, name)
    run = t.add_argument_group("the run")
    run.add_argument("--device", default=RunOptions.device, help="auto (cuda, mps, cpu), cpu, cuda, cuda:N or mps "
                                                                 "(default: %(default)s)")
    run.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=RunOptions.precision,
                     help="auto: bf16 autocast on CUDA, fp32 elsewhere (default: %(default)s)")
    run.add_argument("--model-name", metavar="NAME", help="the model's name: it is saved as NAME.sda in --out "
                                                          "(default: a timestamp, sda-YYYYmmdd-HHMMSS)")
    run.add_argument("--out", type=Path, default=RunOptions.out_dir, metavar="DIR",
                     help="folder for models (default: ./%(default)s)")
    run.add_argument("--resume", type=Path, metavar="CHECKPOINT",
                     help="continue from NAME.checkpoint.sda, with its settings (default: a new run)")
    run.add_argument("--tensorboard", type=Path, metavar="DIR",
                     help="also write TensorBoard files, in DIR/NAME/ (needs pip install 'sda[tensorboard]'); "
                          "NAME.metrics.jsonl beside the model is always written (default: none)")
    for name in RUN_FLAGS:
        _add_setting(run, name)
    run.add_argument("--nproc", type=_int_at_least(1, 1024), default=1, metavar="N",
                     help="train on N processes on this machine (torch.distributed: one GPU each, or CPU with gloo); "
                          "the batch size is per process. For several machines use torchrun (see README) "
                          "(default: %(default)s)")
    model = t.add_argument_group("the model and its training, further")
    for name in _config_settings():
        if name not in TRAIN_FLAGS:
            _add_setting(model, name)
    audio = t.add_argument_group("audio (the model's input; changing it changes the model)")
    for f in dataclasses.fields(AudioConfig):
        _add_setting(audio, f.name)
    _add_decode_flags(t)
    t.set_defaults(run=cmd_train)

    i = commands.add_parser("info", help="show a model's config, data, codebook health and loss curve",
                            description="Show a model's config, data, codebook health (its history, per-code "
                                        "usage and bitrate) and loss curve; with several, side by side.")
    i.add_argument("models", type=Path, nargs="+", metavar="MODEL.sda",
                   help="one or more model or checkpoint files (NAME.sda or NAME.checkpoint.sda); several are shown "
                        "side by side")
    i.set_defaults(run=cmd_info)

    r = commands.add_parser("reconstruct", help="encode, quantize and decode an audio file through a model")
    r.add_argument("model", type=Path, metavar="MODEL.sda", help="the model to encode and decode with")
    r.add_argument("input", type=Path, metavar="IN", help="the audio file to reconstruct (any format sda trains on)")
    r.add_argument("output", type=Path, metavar="OUT.wav", help="a .wav, .flac, .ogg or .aiff file to write")
    r.add_argument("--force", action="store_true", help="replace OUT if it exists (never the input)")
    r.add_argument("--sample-rate", type=_int_at_least(*FILE_SAMPLE_RATES), metavar="HZ",
                   help="the sample rate of OUT (default: the input's)")
    r.add_argument("--levels", type=_int_at_least(1, max(RVQ_LEVELS)), metavar="N",
                   help="decode from the first N levels only, to hear what each adds (default: all)")
    r.add_argument("--codes", action="store_true",
                   help="print the code grid: one line per time position, its time and each level's code")
    r.set_defaults(run=cmd_reconstruct)

    codes.add_parsers(commands)  # encode, decode

    x = commands.add_parser("export", help="write a model as torch.export programs that run with torch alone",
                            description="Write the model's encoder with its quantizer, and its decoder, as "
                                        "torch.export programs (encode.pt2, decode_mel.pt2, decode.pt2 and "
                                        "sda-export.json in a folder) that load with torch alone, without sda or "
                                        "torchaudio.")
    x.add_argument("model", type=Path, metavar="MODEL.sda", help="the model to export")
    x.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="the folder to write (it must not exist, unless --force)")
    x.add_argument("--force", action="store_true", help="replace DIR if it is an earlier export")
    x.set_defaults(run=cmd_export)

    u = commands.add_parser("ui", help="serve the training page (Gradio) in the browser",
                            description="Serve the Gradio training page: train with live codebook health, "
                                        "and look at saved models.")
    u.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    u.add_argument("--port", type=_int_at_least(1, 65535), default=7860, metavar="N",
                   help="port to listen on (default: %(default)s)")
    u.add_argument("--share", action="store_true", help="also serve through a public Gradio share link")
    u.add_argument("--models", type=Path, default=Path("models"), metavar="DIR",
                   help="folder the page saves models to and lists (default: ./%(default)s)")
    u.add_argument("--data-root", type=Path, metavar="DIR",
                   help="the page reads audio only from folders under DIR (relative paths are taken there); "
                        "required with --share or a --host other than loopback (default: none, any folder of this "
                        "machine, allowed on loopback only)")
    u.add_argument("--password-file", type=Path, metavar="FILE",
                   help="the login password, from FILE's first line (default: $SDA_UI_PASSWORD, or beyond loopback "
                        "a password made at start and printed); the user is sda")
    u.add_argument("--no-auth", action="store_true",
                   help="serve beyond loopback without a login (every visitor can train and stop runs): not advised")
    _add_decode_flags(u)
    u.set_defaults(run=cmd_ui)
    return parser


def main(argv=None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name a terminal's encoding cannot show becomes \uNNNN, not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_BAD_INPUT
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for sda train --nproc, which passes them on
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("sda: aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (sda info m.sda | head): nothing failed, and nowhere to say more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit cannot raise again
        return EXIT_FAILED
    except Exception as exc:  # what it is was decided by its class (sda.errors); here only its exit status
        kind = kind_of(exc)
        if kind is None:  # unexpected: a bug, whose traceback is what its report needs
            traceback.print_exc()
            print(f"sda: unexpected error ({type(exc).__name__}); the traceback above says where", file=sys.stderr)
        else:
            print(f"sda: error: {printable_lines(exc)}", file=sys.stderr)
        return EXIT[kind]
