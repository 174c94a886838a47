"""The files a run owns in its output folder, and the claim on its name that keeps them its own.

    files = claim(Path("models"), "kit-v1", run_id="3f2a...")   # None for the name: a new generated one
    files.model, files.checkpoint, files.previews                # kit-v1.sda, kit-v1.checkpoint.sda, kit-v1-previews/
    files.metrics                                                # kit-v1.metrics.jsonl (sda.train.metrics)
    files.on_disk()                                              # what of this run is saved now, in words
    files.release()                                              # at the end of the run, however it ends

A name is claimed at the start of a run by an exclusive lock (fcntl.flock) on `.NAME.lock` in the output folder,
held until the run ends. So a second run of the same name (a second terminal, a second page) is refused at its start,
where before both trained and the later save overwrote the other's model. The kernel drops the lock when its process
dies, however it dies, so a killed run never blocks its name. Creating the lock file is also the check that the
output folder is writable, made before any audio is decoded. While the lock is held no other sda process writes this
name's files, so the temporary files a killed writer left (container.temporaries) are removed then.

A run has an identity (run_id, stored in the metadata of its model and checkpoint): resuming writes only over files of
the same run, never over an unrelated model that happens to have the same name.
"""

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sda.config import CLI, PAGE
from sda.errors import ConfigError, OutputError, SdaError
from sda.format import container
from sda.text import printable, size

GENERATED_NAME = "sda-%Y%m%d-%H%M%S"  # strftime: what a run without --model-name is called (then -2, -3, ...)
MAX_NAME_CHARS = 100


def check_model_name(name: str) -> str:
    """A model name becomes NAME.sda beside the other models: one plain file name, nothing that could be a path."""
    if (not isinstance(name, str) or len(name) > MAX_NAME_CHARS or not name.strip() or name[0] in ".-"
            or any(c in name for c in '/\\:\0') or printable(name) != name):
        raise ConfigError(f"model name {printable(str(name))!r} cannot be used: give a plain name of at most "
                          f"{MAX_NAME_CHARS} characters, without / \\ or : or control characters, not starting with . "
                          "or - (for example kit-v1)")
    return name


@dataclass
class RunFiles:
    """The paths of one run's files; holds the claim (an open, locked file) until release()."""

    out_dir: Path
    name: str
    run_id: str | None
    _lock_fd: int | None = None

    @property
    def model(self) -> Path:
        return self.out_dir / f"{self.name}.sda"

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / f"{self.name}.checkpoint.sda"

    @property
    def previews(self) -> Path:
        return self.out_dir / f"{self.name}-previews"

    @property
    def metrics(self) -> Path:
        return self.out_dir / f"{self.name}.metrics.jsonl"

    @property
    def lock(self) -> Path:
        return self.out_dir / f".{self.name}.lock"

    def release(self) -> None:
        """Give the name back (idempotent). The lock file goes first, so that no later run locks a file that is
        about to be removed."""
        if self._lock_fd is None:
            return
        with contextlib.suppress(OSError):
            self.lock.unlink()
        os.close(self._lock_fd)
        self._lock_fd = None

    def on_disk(self) -> str:
        """What of this run is saved now, with the step each file holds: for messages after a failed save."""
        parts = []
        for what, path in (("model", self.model), ("checkpoint", self.checkpoint)):
            try:
                weights = container.read_metadata(path).get("weights") or {}
                parts.append(f"the {what} {path} (step {weights.get('step', '?')}, epoch {weights.get('epoch', '?')})")
            except FileNotFoundError:
                parts.append(f"no {what}")
            except (OSError, SdaError) as exc:
                parts.append(f"the {what} {path}, which cannot be read ({exc})")
        return " and ".join(parts)


def claim(out_dir: Path, name: str | None, run_id: str | None, resuming: bool = False,
          frontend: str = CLI) -> RunFiles:
    """Claim name (or a new generated one) in out_dir for the run run_id. Refused with OutputError if out_dir
    cannot be written, if another run holds the name, or if files of another run have it (a new run: any model,
    checkpoint, previews or metrics log of that name; a resumed one: files with another run_id). frontend: whose
    controls the messages name (sda.config.CLI: flags; PAGE: the page's)."""
    out_dir = Path(out_dir).expanduser()
    if name is not None:
        check_model_name(name)  # before anything is created
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(out_dir, exc, frontend) from None
    if name is not None:
        return _claim_one(out_dir, name, run_id, resuming, frontend)
    stamp = datetime.now().strftime(GENERATED_NAME)
    for n in range(1, 1000):  # two runs started in the same second get -2, -3...
        try:
            return _claim_one(out_dir, stamp if n == 1 else f"{stamp}-{n}", run_id, resuming, frontend)
        except OutputError as exc:
            if not isinstance(exc.__cause__, _Taken):
                raise
    how = "type a model name" if frontend == PAGE else "give a name with --model-name"
    raise OutputError(f"{out_dir} holds 999 runs named {stamp}*: {how}")


class _Taken(Exception):
    """The name is taken (the cause of an OutputError, so that a generated name moves on to the next one)."""


def _claim_one(out_dir: Path, name: str, run_id: str | None, resuming: bool, frontend: str) -> RunFiles:
    files = RunFiles(out_dir, name, run_id)
    while True:  # the lock file may be removed by its holder between our open and our lock: then again
        try:
            fd = os.open(files.lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise _unwritable(out_dir, exc, frontend) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise OutputError(f"another sda run is training {name!r} in {out_dir} now ({holder}): choose another "
                              "model name, or wait for it to end") from _Taken()
        try:
            same = os.fstat(fd).st_ino == os.stat(files.lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    files._lock_fd = fd
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%H:%M:%S')}".encode())
        for stale in container.temporaries(files.model) + container.temporaries(files.checkpoint):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()  # a writer of this name killed mid-save: no one else writes them while we hold the lock
        _check_owner(files, resuming, frontend)
    except BaseException as exc:
        files.release()
        if isinstance(exc, OSError):
            raise _unwritable(out_dir, exc, frontend) from None
        raise
    return files


def _check_owner(files: RunFiles, resuming: bool, frontend: str) -> None:
    """Raise OutputError unless every existing file of files.name is this run's."""
    if not resuming:
        taken = [p for p in (files.model, files.checkpoint, files.previews, files.metrics) if p.exists()]
        if taken:
            # The page cannot resume a run: there, another name is the way on.
            how = "" if frontend == PAGE else f", or continue it with --resume {files.checkpoint}"
            raise OutputError(f"a model named {files.name!r} already exists in {files.out_dir} "
                              f"({', '.join(p.name for p in taken)}): choose another model name{how}") from _Taken()
        return
    for path in (files.model, files.checkpoint):
        if not path.exists():
            continue
        try:
            theirs = container.read_metadata(path).get("run_id")
        except (OSError, SdaError) as exc:
            raise OutputError(f"{path} would be overwritten by this resumed run, but it cannot be read ({exc}): "
                              "move it away, or resume into another folder with --out") from None
        if theirs != files.run_id:
            raise OutputError(f"{path} belongs to another training run than this checkpoint (run "
                              f"{theirs or 'unknown'}, not {files.run_id or 'unknown'}): resuming would overwrite it. "
                              "Resume into another folder with --out, or move that file away") from None


def check_space(out_dir: Path, needed_bytes: int, frontend: str = CLI) -> None:
    """Refuse a run whose saves cannot fit: found at the start, not at the first checkpoint."""
    free = shutil.disk_usage(out_dir).free
    if free < needed_bytes:
        how = "free some space there" if frontend == PAGE else "free some space, or choose another folder with --out"
        raise OutputError(f"{out_dir} has {size(free)} free and this run needs about {size(needed_bytes)} for its "
                          f"model, checkpoint and previews (each save is written whole before it replaces the last): "
                          f"{how}")


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        return printable(os.pread(fd, 200, 0).decode("utf-8", "replace")) or "starting"
    return "holder unknown"


def _unwritable(out_dir: Path, exc: OSError, frontend: str = CLI) -> OutputError:
    reasons: dict[int | None, str] = {
        errno.EROFS: "it is on a read-only filesystem", errno.EACCES: "permission denied",
        errno.EPERM: "permission denied", errno.ENOSPC: "the disk is full", errno.ENOTDIR: "a file is in the way"}
    reason = reasons.get(exc.errno, exc.strerror or str(exc))
    # The page saves only to the models folder sda ui was started with: its user can only ask for it to be fixed.
    how = ("whoever runs sda ui can make it writable, or serve another models folder" if frontend == PAGE else
           "Choose another folder with --out")
    return OutputError(f"cannot write to the output folder {out_dir}: {reason}. {how}")
