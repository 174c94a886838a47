"""What can go wrong, classified once. The engine and the commands raise these; the frontends only map a kind to
an exit status (the CLI) or a title (the page), and print the message as it is.

    kind_of(exc)           # "settings", "data", ... (KINDS below); None: unexpected, a bug: keep its traceback
    EXIT[kind_of(exc)]     # the CLI's exit status for it

The table (every class's message says what happened and, for the user's errors, what to change):

    class            kind          exit  meaning
    SdaUserError     (base)        2     something the user gave, and can fix; a ValueError, printed as it is
      ConfigError    settings      2     a setting (flag, page field, stored config) out of range, unknown or
                                         contradicting another
      DataError      data          2     the audio folder cannot be trained on as it is (missing, no audio, too
                                         few usable files, only silence; sda.data.dataset has one subclass each)
        AudioFileError data        2     one file cannot be used as audio (why, in words: it goes into reports)
      SdaError       model file    2     a .sda file given (model, checkpoint, codes) cannot be used (also bad
                                         arguments to container.write and codesfile.save)
        SdaFormatError              2     not an sda file (foreign files named when recognisable), or malformed
        SdaVersionError             2     an sda v1 file, or a newer major version
        SdaCorruptError             2     damaged: checksum mismatch, truncation, trailing data, non-zero padding
      OutputError    output        2     where results go cannot take them: a folder not writable, too little
                                         space at the start, a name another run holds, a file in the way
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError  file          2     a path the user gave does not exist or cannot be opened (the OS's
                                         message names it)
    RunFailed        (base)        1     training began and could not go on; the message says what is on disk
      TrainingError  training      1     diverged (non-finite losses), or another reason training cannot go on
      SaveError      save          1     a save did not complete (disk full, permission, size limit): its path,
                                         and what of the run is intact on disk
      PeerFailure    process       1     under torch.distributed: another process died or did not answer
    OSError (other)  system        1     the operating system failed (disk full, I/O error) outside a save
    anything else    None          1     a bug: the CLI prints the traceback, the page says where it is logged

130 (EXIT_INTERRUPTED) is Ctrl-C or SIGTERM, and 0 a run that ended as asked.
"""

import errno

EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class SdaUserError(ValueError):
    """Something the user gave (a setting, the data, a model file, a name or output path) cannot be used."""

    kind = "input"


class ConfigError(SdaUserError):
    """A setting is out of range or unknown; the message names it and the allowed values."""

    kind = "settings"


class DataError(SdaUserError):
    """The folder cannot be trained on as it is; the message says what was found and what to do."""

    kind = "data"


class AudioFileError(DataError):
    """A file cannot be used as audio; the message says why in words (it goes into reports and metadata)."""


class SdaError(SdaUserError):
    """Base class of every .sda error (sda.format.container); a ValueError so that frontends print the message as is."""

    kind = "model file"


class SdaFormatError(SdaError):
    """Not an sda file, or a malformed one."""


class SdaVersionError(SdaError):
    """An sda file of a version this reader does not read: v1, or a newer major version."""


class SdaCorruptError(SdaError):
    """A damaged sda file: checksum mismatch, truncation, trailing data, non-zero padding."""


class OutputError(SdaUserError):
    """The output folder cannot take this run: not writable, too little space, or the name is another run's."""

    kind = "output"


class RunFailed(RuntimeError):
    """Training began and cannot go on; the message says why and what is on disk."""

    kind = "training"


class TrainingError(RunFailed):
    """Training cannot go on (diverged); the message says what to change."""


class SaveError(RunFailed):
    """A save did not complete (disk full, permission, a size limit); the message names the folder and says what of
    the run is on disk now. Not the user's input: the run was fine, the system could not keep it."""

    kind = "save"


class PeerFailure(RunFailed):
    """A collective failed: another process of the run died, or did not answer in time."""

    kind = "process"


# An OSError for a path the user named: the OS's message names it, and the user can fix it.
_PATH_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.ELOOP,
                          errno.ENAMETOOLONG})

USER_KINDS = frozenset({"input", "settings", "data", "model file", "output", "file"})
KINDS = USER_KINDS | {"training", "save", "process", "system"}
EXIT: dict[str | None, int] = {**dict.fromkeys(USER_KINDS, EXIT_BAD_INPUT),
                               **dict.fromkeys(KINDS - USER_KINDS, EXIT_FAILED), None: EXIT_FAILED}
EXPECTED = (SdaUserError, RunFailed, OSError)  # what kind_of classifies; anything else is a bug


def kind_of(exc: BaseException) -> str | None:
    """The kind of exc (the table above), or None for an unexpected exception: a bug, whose traceback is kept."""
    if isinstance(exc, SdaUserError | RunFailed):
        return exc.kind
    if isinstance(exc, OSError):
        return "file" if exc.errno in _PATH_ERRNOS else "system"
    return None
