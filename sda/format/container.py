"""The v2 .sda container: tensors plus JSON metadata, checksummed, written atomically (SDA_FORMAT.md).

API::

    write(path, tensors, metadata, kind="model") -> None
        tensors: a mapping name -> torch.Tensor (any device, any strides; stored CPU-contiguous);
        metadata: a JSON-like mapping (non-finite floats are stored as null, tuples as lists,
        NumPy scalars as Python numbers). Tensors are stored in name order, so identical inputs
        give identical bytes whatever the order of the dicts.
    read(path, verify=True, *, kind=None) -> (dict[str, torch.Tensor], dict)
        The tensors (CPU, contiguous, in file order) and the metadata. verify=False skips the
        per-tensor CRCs and the padding checks; the prefix, header CRC and tensor table are
        always checked. kind="model", "checkpoint" or "codes" rejects a file of another kind
        before any tensor is read.
    read_metadata(path, *, kind=None) -> dict
        The metadata only: reads the 64-byte prefix and the header, never the tensor data.
    read_header(path) -> dict
        The whole validated header: {"format", "version", "kind", "tensors", "metadata"};
        "tensors" is the table of {"name", "dtype", "shape", "offset", "nbytes", "crc32"}.
    BACKEND = "cpp" or "python"
        Which backend does the byte work (reads, writes, checksums): the C++ extension
        sda._sdafile where it is built (and SDA_PURE_PYTHON is not "1"), else pure Python.
    set_backend(name) -> str
        Switch to "cpp" or "python" for this process and return the previous name; "cpp"
        raises SdaError where the extension is unavailable. For tests and benchmarks.

Errors (defined in sda.errors, with the rest of sda's): every problem with a file's content raises a
subclass of SdaError (itself a ValueError, so a frontend can print its message as is):
    SdaFormatError   not an sda file (foreign files are named when recognisable), or malformed
    SdaVersionError  an sda v1 file, or a newer major version
    SdaCorruptError  damaged: a checksum mismatch (naming the tensor, or the header),
                     truncation, trailing data, non-zero padding
Bad arguments to write() raise SdaError. Operating-system failures (a missing file, no
permission) propagate as the usual OSError, whose message names the path.

Where SDA_FORMAT.md leaves a choice, this implementation (and so every backend) does this:
- The writer stores tensors in name order, each at the first 64-aligned offset after the previous
  one, with D = align64(64 + H). The data length L ends at the last tensor's last byte (no padding
  after it; 0 with no tensors). The reader requires exactly that tensor layout and that L, and
  accepts any larger D whose padding is zero.
- A v2.0 header has exactly the specified fields; a v2.x header (x > 0) may add fields, ignored.
- Padding (after the header, between tensors) must be zero: checked when verify=True.
- BOOL bytes must be 0 or 1 (anything else is undefined in torch): checked always.
- The JSON depth counts the header object as 1, so metadata may nest 63 levels.
- A shape whose non-zero dimensions multiply to 2**63 or more is refused, even with 0 elements
  ([2**62, 2**62, 0]): torch's size arithmetic overflows on it.

Two backends: the byte-level work is four functions, crc32, read_into, first_nonzero and
write_all, which the C++ extension sda._sdafile (csrc/sdafile.cpp) and the class _PurePython
here implement with the same signatures. Everything else (layout, JSON, validation, the atomic
write protocol, every message) is the shared code of this module, so both backends write
byte-identical files and raise the same error for the same bad input. ("Backend" in sda means this byte
backend here; elsewhere the kernel backend, sda.kernels.backend: "triton" or "torch"; torch.distributed's
process-group backend, gloo or nccl, in sda.train.distributed; and pyproject.toml's build backend.)
"""

import contextlib
import errno
import io
import itertools
import json
import math
import os
import re
import secrets
import stat
import struct
import sys
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, cast

import numpy as np
import torch

from sda.errors import SdaCorruptError, SdaError, SdaFormatError, SdaVersionError
from sda.format import native

__all__ = [
    "BACKEND",
    "read",
    "read_header",
    "read_metadata",
    "set_backend",
    "write",
]

MAGIC = b"\x89SDA\r\n\x1a\n"
MAJOR, MINOR = 2, 0
ALIGNMENT = 64
MAX_HEADER_BYTES = 16 * 2**20
MAX_DEPTH = 64  # JSON nesting, counting the header object itself as depth 1
MAX_DIMS = 8
MAX_NAME_BYTES = 255
KINDS = ("model", "checkpoint", "codes")  # codes: sda.format.codesfile (README: Codes files)

# magic, major, minor, flags, header length H, data offset D, data length L, CRC-32, reserved
_PREFIX = struct.Struct("<8sHHIQQQI20s")
assert _PREFIX.size == 64
_CRC_END = 40  # the header CRC covers bytes [0, 40) of the prefix, then the header

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
_ITEMSIZE = {name: torch.empty(0, dtype=dtype).element_size() for name, dtype in DTYPES.items()}

_HEADER_KEYS = frozenset({"format", "version", "kind", "tensors", "metadata"})
_ENTRY_KEYS = frozenset({"name", "dtype", "shape", "offset", "nbytes", "crc32"})
_INT64 = range(-(2**63), 2**63)
_U32 = range(2**32)


def _align(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


def _crc(data, value: int = 0) -> int:
    return _io.crc32(data, value)


def _check_host():
    # The format is little-endian and tensors are stored as raw memory.
    if sys.byteorder != "little":
        raise SdaError("sda files can only be read and written on little-endian machines")


# ----------------------------------------------------------------------------------------------
# Writing


def write(path, tensors, metadata, kind: str = "model") -> None:
    """Write tensors and metadata to path atomically: the old file stays unless the new one is complete."""
    _check_host()
    if kind not in KINDS:
        raise SdaError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not isinstance(tensors, Mapping):
        raise SdaError(f"tensors must be a mapping of name -> torch.Tensor, not {type(tensors).__name__}")
    if not isinstance(metadata, Mapping):
        raise SdaError(f"metadata must be a mapping (a JSON object), not {type(metadata).__name__}")

    entries, blobs, offset = [], [], 0
    for name in sorted(tensors, key=_name_sort_key):
        data, dtype_name, shape = _tensor_bytes(name, tensors[name])
        entries.append({"name": name, "dtype": dtype_name, "shape": shape, "offset": offset,
                        "nbytes": data.nbytes, "crc32": _crc(data)})
        blobs.append((offset, data))
        offset = _align(offset + data.nbytes)
    data_length = entries[-1]["offset"] + entries[-1]["nbytes"] if entries else 0

    header = {"format": "sda", "version": [MAJOR, MINOR], "kind": kind, "tensors": entries,
              "metadata": _clean_metadata(metadata, "", 2)}
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    header_bytes = text.encode("utf-8")  # strings were checked to be encodable
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise SdaError(f"the header would be {len(header_bytes)} bytes, over the {MAX_HEADER_BYTES}-byte limit; "
                       "store less metadata (large arrays belong in tensors)")
    data_offset = _align(64 + len(header_bytes))
    head = bytearray(_PREFIX.pack(MAGIC, MAJOR, MINOR, 0, len(header_bytes), data_offset, data_length, 0, bytes(20)))
    struct.pack_into("<I", head, _CRC_END, _crc(header_bytes, _crc(head[:_CRC_END])))
    head += header_bytes
    head += bytes(data_offset - len(head))
    _write_atomic(path, bytes(head), blobs)


def _name_sort_key(name):
    if not isinstance(name, str):
        raise SdaError(f"tensor names must be strings, not {type(name).__name__} ({name!r})")
    return name  # code point order, which is also UTF-8 byte order


def _tensor_bytes(name: str, tensor):
    """The tensor's bytes as a flat uint8 memoryview over a CPU contiguous copy (or the tensor itself)."""
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise SdaError(f"tensor name {name!r} is not valid Unicode (it holds a lone surrogate)") from None
    if not 1 <= len(encoded) <= MAX_NAME_BYTES or "\0" in name:
        raise SdaError(f"tensor name {name!r} must be 1 to {MAX_NAME_BYTES} UTF-8 bytes without NUL")
    if not isinstance(tensor, torch.Tensor):
        raise SdaError(f"tensor {name!r} is a {type(tensor).__name__}, not a torch.Tensor")
    if tensor.dtype not in _DTYPE_NAMES:
        raise SdaError(f"tensor {name!r} has dtype {tensor.dtype}, which .sda files do not store; "
                       f"convert it to one of {', '.join(str(d) for d in DTYPES.values())}")
    if tensor.layout != torch.strided:
        raise SdaError(f"tensor {name!r} has layout {tensor.layout}; convert it to a dense tensor (.to_dense())")
    if tensor.dim() > MAX_DIMS:
        raise SdaError(f"tensor {name!r} has {tensor.dim()} dimensions; .sda files store at most {MAX_DIMS}")
    if tensor.is_meta:
        raise SdaError(f"tensor {name!r} is on the meta device and has no data to store")
    shape = list(tensor.shape)
    if not _shape_fits(shape):
        raise SdaError(f"tensor {name!r} has shape {shape}, which .sda files do not store: the product of its "
                       "non-zero dimensions is 2**63 or more")
    # resolve_neg: a lazily negated view (conj().imag) would otherwise store its un-negated memory.
    flat = tensor.detach().to("cpu").resolve_neg().contiguous().reshape(-1)
    # view(uint8) reinterprets the memory; numpy() then exposes it as a buffer (it cannot take bf16).
    data = flat.view(torch.uint8).numpy().data
    return data, _DTYPE_NAMES[tensor.dtype], shape


def _create_temporary(directory: str, name: str) -> tuple[str, int]:
    """(path, open descriptor) of a new temporary file for name in directory, created exclusively."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        candidate = os.path.join(directory, _TEMPORARY.format(name=name, tag=secrets.token_hex(6)))
        try:
            return candidate, os.open(candidate, flags, 0o666)  # 0o666: the umask decides, as for any new file
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {directory}")


def _shape_fits(shape) -> bool:
    """Whether torch can make shape in any dimension order: its non-zero dimensions multiply to below 2**63.

    (An empty shape such as [2**62, 2**62, 0] has 0 elements, but torch's size arithmetic overflows on it.)
    """
    return math.prod(d for d in shape if d) < 2**63


def _clean_metadata(value, where: str, depth: int):
    """value as plain JSON: non-finite floats -> None, tuples -> lists; rejects what JSON or the reader cannot take."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SdaError(f"metadata{where}: the string {value!r} is not valid Unicode") from None
        return value
    if isinstance(value, int):
        if value not in _INT64:
            raise SdaError(f"metadata{where}: the integer {value} does not fit in 64 bits; store it as a string")
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.generic) and not isinstance(value, (np.void, np.datetime64, np.timedelta64)):
        return _clean_metadata(value.item(), where, depth)
    if isinstance(value, (Mapping, list, tuple)):
        if depth > MAX_DEPTH:
            raise SdaError(f"metadata{where} nests deeper than the header's limit of {MAX_DEPTH} levels "
                           "(or holds a reference cycle)")
        if isinstance(value, Mapping):
            out = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise SdaError(f"metadata{where}: the key {key!r} is a {type(key).__name__}; JSON keys are strings")
                out[key] = _clean_metadata(item, f"{where}[{key!r}]", depth + 1)
            return out
        return [_clean_metadata(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise SdaError(f"metadata{where}: cannot store a {type(value).__name__}; "
                   "use dict, list, str, int, float, bool or None")


_TEMPORARY = ".{name}.{tag}.tmp"  # beside the target; tag: 12 hex digits


def temporaries(path) -> list:
    """The temporary files that writes of path left behind (a writer killed mid-write), as Paths. Only the
    caller knows that no write of path is under way, and so whether they can be removed."""
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.") + "[0-9a-f]{12}" + re.escape(".tmp"))
    try:
        return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))
    except FileNotFoundError:
        return []


def _write_atomic(path, head: bytes, blobs) -> None:
    """Write head, then each (offset, buffer) at data offset len(head) + offset, zero padded, to a
    temporary file beside path; fsync it, rename it over path, fsync the directory."""
    # Every byte is written, padding included (no holes): the file ends exactly at D + L even
    # when the last tensor is empty.
    items, position = [(0, head)], len(head)
    for offset, data in blobs:
        start = len(head) + offset
        if start > position:
            items.append((position, bytes(start - position)))
        items.append((start, data))
        position = start + data.nbytes
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp, fd = _create_temporary(directory, os.path.basename(path))
    still_open: int | None = fd
    try:
        _io.write_all(fd, tmp, items)  # writes and fsyncs
        still_open = None
        os.close(fd)  # released even when it reports an error, so never closed twice
        os.replace(tmp, path)
    except BaseException:
        if still_open is not None:
            os.close(still_open)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    # Makes the rename durable. Only POSIX can open a directory; some filesystems refuse to fsync one.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------
# Reading


def read(path, verify: bool = True, *, kind: str | None = None):
    """Return (tensors, metadata) from an .sda file; tensors is a dict name -> CPU tensor in file order."""
    with _open(path) as f:
        header, layout = _read_header(f, path)
        _check_kind(header, kind, path)
        tensors = _read_data(f, path, layout, header["tensors"], verify)
    return tensors, header["metadata"]


def read_metadata(path, *, kind: str | None = None) -> dict:
    """Return the metadata of an .sda file, reading only its prefix and header."""
    with _open(path) as f:
        header, _ = _read_header(f, path)
    _check_kind(header, kind, path)
    return header["metadata"]


def read_header(path) -> dict:
    """Return the whole validated header: format, version, kind, the tensor table and the metadata."""
    with _open(path) as f:
        header, _ = _read_header(f, path)
    return header


def _check_kind(header, kind, path):
    if kind is None:
        return
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)} or None, not {kind!r}")
    if header["kind"] != kind:
        noun = {"codes": "codes file"}
        found, wanted = noun.get(header["kind"], header["kind"]), noun.get(kind, kind)
        raise SdaFormatError(f"{path} is an sda {found}, not a {wanted}")


def _open(path):
    _check_host()
    # A FIFO or device would block or never end: only regular files are read. A missing file
    # raises the usual FileNotFoundError here.
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise SdaFormatError(f"{path} is a directory, not an sda file")
    if not stat.S_ISREG(mode):
        raise SdaFormatError(f"{path} is not a regular file")
    return open(path, "rb", buffering=0)


def _read_header(f, path):
    """Check the prefix, the size rule and the header CRC, then parse and validate the header JSON.

    Returns (header dict, (header_end, data_offset, file_size)).
    """
    size = os.fstat(f.fileno()).st_size
    first = f.read(512)
    if first[:8] != MAGIC:
        if len(first) < 8 and first and MAGIC.startswith(first):
            raise _truncated(path, len(first), "inside the 8-byte signature")
        raise SdaFormatError(_foreign(path, first, size))
    if len(first) < _PREFIX.size:
        raise _truncated(path, len(first), f"inside the {_PREFIX.size}-byte prefix")
    prefix = first[:_PREFIX.size]
    _, major, minor, flags, header_length, data_offset, data_length, crc, reserved = _PREFIX.unpack(prefix)

    if major == 1:
        raise SdaVersionError(f"{path} is an sda v1 model; v1 models are not supported; retrain with sda train")
    if major > MAJOR:
        raise SdaVersionError(f"{path} is an sda v{major}.{minor} file, newer than this sda reads "
                              f"(v{MAJOR}); upgrade sda")
    if major != MAJOR:
        raise SdaFormatError(f"{path}: unknown format version {major}.{minor}; the file is damaged or not an sda file")
    if header_length > MAX_HEADER_BYTES:
        raise SdaFormatError(f"{path}: header length {header_length} is over the {MAX_HEADER_BYTES}-byte limit; "
                             "the file is damaged or was not written by sda")
    header_end = _PREFIX.size + header_length
    if size < header_end:
        raise _truncated(path, size, f"inside the header (which needs {header_end} bytes)")

    # The CRC comes before the field checks so that a damaged prefix is reported as damage.
    f.seek(_PREFIX.size)
    header_bytes = f.read(header_length)
    if len(header_bytes) != header_length:
        raise _truncated(path, len(header_bytes) + _PREFIX.size, "inside the header")
    actual = _crc(header_bytes, _crc(prefix[:_CRC_END]))
    if actual != crc:
        raise SdaCorruptError(f"{path}: the header is corrupt (CRC-32 {actual:#010x}, expected {crc:#010x}); "
                              "the file is damaged: copy it again or restore it from a backup")

    if flags:
        raise SdaFormatError(f"{path}: unknown flags {flags:#x} in the prefix; the file uses features this sda does "
                             "not know: upgrade sda (or the file is damaged)")
    if any(reserved):
        raise SdaFormatError(f"{path}: the reserved prefix bytes 44-63 are not zero; the file is damaged or was not "
                             "written by sda")
    if data_offset % ALIGNMENT or data_offset < header_end:
        raise SdaFormatError(f"{path}: data offset {data_offset} must be a multiple of {ALIGNMENT} and at least "
                             f"{header_end} (the header's end); the file is damaged or was not written by sda")
    end = data_offset + data_length
    if size < end:
        where = "inside the padding before the tensor data" if size < data_offset else "inside the tensor data"
        raise _truncated(path, size, f"{where} (the file should have {end} bytes)")
    if size > end:
        raise SdaCorruptError(f"{path}: {size - end} bytes of trailing data after the end of the file ({end} bytes); "
                              "something was appended to it or it is damaged: copy it again")

    header = _parse_json(header_bytes, path)
    _validate_header(header, major, minor, data_length, path)
    return header, (header_end, data_offset, size)


def _truncated(path, size, where):
    return SdaCorruptError(f"{path} is truncated: it ends after {size} bytes, {where}; the copy or download was cut "
                           "short (or the disk filled up): copy it again")


def _foreign(path, first: bytes, size: int) -> str:
    """The message for a file without our magic, naming its kind when the first bytes tell."""
    if size == 0:
        return f"{path} is empty (0 bytes), not an sda model"
    if first[1:4] == MAGIC[1:4]:
        return (f"{path} starts like an sda file but its 8-byte signature is damaged ({first[:8].hex(' ')}), as a "
                "text-mode or 7-bit transfer does; copy it again in binary mode")
    if first[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return (f"{path} is a zip archive: a torch.save checkpoint or an sda v1 model, not an sda v2 file. v1 models "
                "are not supported; retrain with sda train. (sda never unpickles torch.save files: that can run code.)")
    if first[:1] == b"\x80" and first[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return (f"{path} is a Python pickle (pickle.dump, or a legacy torch.save), not an sda file; sda does not load "
                "pickles because unpickling can run code. Use a model saved by sda train")
    if len(first) >= 9 and first[8:9] == b"{" and 2 <= int.from_bytes(first[:8], "little") <= size - 8:
        return f"{path} is a safetensors file, not an sda file; sda loads .sda models written by sda train"
    if first[:4] == b"GGUF":
        return f"{path} is a GGUF model (llama.cpp), not an sda file; sda loads .sda models written by sda train"
    if first[:6] == b"\x93NUMPY":
        return f"{path} is a NumPy .npy array, not an sda file; sda loads .sda models written by sda train"
    if first.startswith(b"version https://git-lfs"):
        return (f"{path} is a git-lfs pointer, not the model itself: fetch the real file with git lfs pull "
                "(or download it directly)")
    if first.removeprefix(b"\xef\xbb\xbf").lstrip().lower().startswith((b"<!doctype", b"<html")):
        return (f"{path} is an HTML page, not an sda model: probably an error or login page saved in place of the "
                "download; download the file again (check the URL and any sign-in)")
    return (f"{path} is not an sda file (it starts with {first[:8].hex(' ')}); "
            "sda loads .sda models written by sda train")


def _invalid(path, message):
    # Past the CRC checks, a bad field is not damage in transit but a file sda did not write.
    return SdaFormatError(f"{path}: {message}; it was not written by a working sda")


class _Reject(Exception):
    """Raised inside json.loads hooks; turned into SdaFormatError with the path."""


def _parse_json(header_bytes: bytes, path):
    def fail(message):
        return _invalid(path, f"the header is not valid: {message}")

    if header_bytes.startswith(b"\xef\xbb\xbf"):
        raise fail("it starts with a byte-order mark")
    try:
        text = header_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"invalid UTF-8 at byte {exc.start}") from None
    # json.loads recurses once per nesting level, so the depth is bounded before it runs.
    if _json_depth(text) > MAX_DEPTH:
        raise fail(f"JSON nests deeper than {MAX_DEPTH} levels")
    try:
        header = json.loads(text, object_pairs_hook=_json_object, parse_constant=_json_constant,
                            parse_int=_json_int, parse_float=_json_float)
        # Lone surrogates (\ud800 escapes) are valid JSON syntax but not text; re-encoding finds them.
        if _SURROGATE_ESCAPE.search(text):
            json.dumps(header, ensure_ascii=False).encode("utf-8")
    except _Reject as exc:
        raise fail(str(exc)) from None
    except UnicodeEncodeError:
        raise fail("a string holds a lone surrogate escape") from None
    except (ValueError, RecursionError) as exc:
        raise fail(f"malformed JSON ({exc})") from None
    return header


# A JSON string, or an unterminated one running to the end: it always matches once started, so
# stripping strings is linear even on hostile input (no retries from every later quote).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _json_depth(text: str) -> int:
    """The deepest bracket nesting outside strings, without recursion.

    Exact for valid JSON; on invalid JSON it is exact up to the first syntax error, which is as
    far as json.loads gets, so it bounds json.loads's recursion either way.
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def _json_object(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _Reject(f"duplicate key {duplicate[:80]!r}")
    return obj


def _json_constant(name):
    raise _Reject(f"non-finite number {name}")


def _json_int(digits: str):
    # Length first: int() of a huge digit string is slow (and limited).
    if len(digits) > 20 or int(digits) not in _INT64:
        raise _Reject(f"integer {digits[:40]} is outside the 64-bit range")
    return int(digits)


def _json_float(digits: str):
    value = float(digits)
    if not math.isfinite(value):
        raise _Reject(f"number {digits[:40]} overflows to infinity")
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _validate_header(header, major, minor, data_length, path) -> None:
    """Check every field's type and range and the tensor table's layout, before any allocation."""

    def fail(message):
        return _invalid(path, f"the header is not valid: {message}")

    def check_keys(obj, expected, where):
        missing = expected - obj.keys()
        if missing:
            raise fail(f"{where} lacks {', '.join(sorted(missing))}")
        # A newer minor version may add fields, which this reader ignores; v2.0 has exactly these.
        unknown = obj.keys() - expected
        if unknown and minor == 0:
            raise fail(f"{where} has unknown field(s) {', '.join(_short(k) for k in sorted(unknown))}")

    if not isinstance(header, dict):
        raise fail(f"it is a JSON {type(header).__name__}, not an object")
    check_keys(header, _HEADER_KEYS, "the header")
    if header["format"] != "sda":
        raise fail(f"format is {_short(header['format'])}, not 'sda'")
    version = header["version"]
    if not (isinstance(version, list) and len(version) == 2 and all(_is_int(v) for v in version)
            and version == [major, minor]):
        raise fail(f"version is {_short(version)}, but the prefix says [{major}, {minor}]")
    if header["kind"] not in KINDS:
        raise fail(f"kind is {_short(header['kind'])}, not one of {', '.join(KINDS)}")
    if not isinstance(header["metadata"], dict):
        raise fail("metadata is not a JSON object")
    table = header["tensors"]
    if not isinstance(table, list):
        raise fail("tensors is not a list")

    names = set()
    end = previous_offset = 0  # where the previous tensor starts and ends, relative to the data offset
    for i, entry in enumerate(table):
        where = f"tensors[{i}]"
        if not isinstance(entry, dict):
            raise fail(f"{where} is not an object")
        check_keys(entry, _ENTRY_KEYS, where)
        name = entry["name"]
        if not isinstance(name, str) or not 1 <= len(name.encode("utf-8")) <= MAX_NAME_BYTES or "\0" in name:
            raise fail(f"{where}: name {_short(name)} is not 1 to {MAX_NAME_BYTES} UTF-8 bytes without NUL")
        if name in names:
            raise fail(f"{where}: the name {_short(name)} appears twice")
        names.add(name)
        where = f"tensor {name!r}"
        dtype = entry["dtype"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise fail(f"{where}: unknown dtype {_short(dtype)} (known: {' '.join(DTYPES)})")
        shape = entry["shape"]
        if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(_is_int(d) and d >= 0 for d in shape)):
            raise fail(f"{where}: shape {_short(shape)} is not a list of at most {MAX_DIMS} non-negative integers")
        crc, offset, nbytes = entry["crc32"], entry["offset"], entry["nbytes"]
        if not _is_int(crc) or crc not in _U32:
            raise fail(f"{where}: crc32 {_short(crc)} is not an integer in [0, 2**32)")
        if not _is_int(nbytes) or nbytes != math.prod(shape) * _ITEMSIZE[dtype]:
            raise fail(f"{where}: nbytes {_short(nbytes)} is not product{tuple(shape)} x {_ITEMSIZE[dtype]} "
                       f"({dtype} itemsize)")
        if not _shape_fits(shape):  # only possible with a zero dimension, since nbytes fits in 64 bits
            raise fail(f"{where}: shape {_short(shape)} is too large for torch (the product of its non-zero "
                       "dimensions is 2**63 or more)")
        if not _is_int(offset) or offset < 0 or offset % ALIGNMENT:
            raise fail(f"{where}: offset {_short(offset)} is not a non-negative multiple of {ALIGNMENT}")
        if offset < previous_offset:
            raise fail(f"{where}: offset {offset} is below the previous tensor's {previous_offset} (tensors must be "
                       "in ascending offset order)")
        # Tensors follow each other in offset order, each at the first aligned offset after the
        # previous one: no overlap, and no gap beyond the alignment padding.
        expected = _align(end)
        if offset < expected:
            raise fail(f"{where}: offset {offset} overlaps the previous tensor, which ends at {end}")
        if offset > expected:
            raise fail(f"{where}: offset {offset} leaves a gap after the previous tensor (expected {expected})")
        end, previous_offset = offset + nbytes, offset
        if end > data_length:
            raise fail(f"{where}: bytes [{offset}, {end}) extend past the data length {data_length}")
    if end != data_length:
        raise fail(f"the tensors end at {end} but the data length is {data_length}")


def _read_data(f, path, layout, table, verify: bool) -> dict:
    """Read each tensor straight into fresh memory, checking its CRC and the padding when verify.

    The backend does all the I/O first; the checks then run in file order, so the first problem
    in the file is the one reported, whichever backend read it.
    """
    header_end, data_offset, _ = layout
    fd, file_name = f.fileno(), os.fspath(path)
    # The table was checked against the file size, so this allocates no more than the file holds.
    buffers = [torch.empty(entry["nbytes"], dtype=torch.uint8) for entry in table]
    nonzero = -1  # the first padding range with a non-zero byte: 0 after the header, i + 1 before tensor i
    if verify:
        ranges, position = [(header_end, data_offset)], data_offset
        for entry in table:
            ranges.append((position, data_offset + entry["offset"]))
            position = data_offset + entry["offset"] + entry["nbytes"]
        try:
            nonzero = _io.first_nonzero(fd, file_name, ranges)
        except EOFError as exc:
            index, offset = _short_read(exc)
            where = "the padding after the header" if index == 0 else _padding(table[index - 1])
            raise _truncated(path, offset, f"inside {where}") from None
        if nonzero == 0:
            raise SdaCorruptError(f"{path}: the padding after the header holds non-zero bytes; the file is damaged: "
                                  "copy it again")
    items = [(data_offset + entry["offset"], buffer.numpy()) for entry, buffer in zip(table, buffers, strict=True)]
    try:
        crcs = _io.read_into(fd, file_name, items, verify)
    except EOFError as exc:  # the file shrank after it was measured
        index, offset = _short_read(exc)
        raise _truncated(path, offset, f"inside tensor {table[index]['name']!r}") from None

    tensors = {}
    for i, (entry, buffer, actual) in enumerate(zip(table, buffers, crcs, strict=True)):
        name, dtype = entry["name"], entry["dtype"]
        if i + 1 == nonzero:
            raise SdaCorruptError(f"{path}: {_padding(entry)} holds non-zero bytes; the file is damaged: copy it again")
        if verify and actual != entry["crc32"]:
            raise SdaCorruptError(f"{path}: tensor {name!r} is corrupt (CRC-32 {actual:#010x}, expected "
                                  f"{entry['crc32']:#010x}); the file is damaged: copy it again or restore it "
                                  "from a backup")
        # A bool byte other than 0 or 1 is undefined behaviour in torch, so it is refused even unverified.
        if dtype == "BOOL" and entry["nbytes"] and bool((buffer > 1).any()):
            raise _invalid(path, f"tensor {name!r} (BOOL) holds bytes other than 0 and 1")
        tensors[name] = buffer.view(DTYPES[dtype]).reshape(entry["shape"])
    return tensors


def _padding(entry) -> str:
    return f"the padding before tensor {entry['name']!r}"


# ----------------------------------------------------------------------------------------------
# Backends: the byte work. The C++ extension sda._sdafile implements the same four functions
# with the same signatures (csrc/sdafile.cpp), with the GIL released.

# Read and checksum this many bytes at a time, each chunk right after reading it, while it is in cache.
_CHUNK = 4 << 20


class _ShortRead(EOFError):
    """The file ended at byte offset, inside item (or range) index: the twin of _sdafile.ShortReadError."""

    def __init__(self, path, index: int, offset: int):
        super().__init__(f"{path}: the file ends at byte {offset}, inside item {index}")
        self.index, self.offset = index, offset


def _short_read(exc: EOFError) -> tuple[int, int]:
    """(index, offset) of a short read, which both backends raise as an EOFError carrying the two."""
    short = cast(_ShortRead, exc)  # or _sdafile.ShortReadError: the same attributes
    return short.index, short.offset


@contextlib.contextmanager
def _naming(path):
    """Name the path in an OSError about the descriptor (which names none, or the fd), as the C++ backend does."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None or not (exc.filename is None or isinstance(exc.filename, int)):
            raise
        raise OSError(exc.errno, exc.strerror, path) from None  # OSError() picks the subclass by errno


class _PurePython:
    """The byte work in pure Python, with the signatures of sda._sdafile's functions."""

    crc32 = staticmethod(zlib.crc32)

    @staticmethod
    def read_into(fd: int, path, items, crc: bool = True) -> list:
        """Fill each (file_offset, writable buffer) item; return each buffer's CRC-32 (0s if not crc)."""
        crcs = []
        with _naming(path):
            f = io.FileIO(fd, "r", closefd=False)  # readinto fills the buffer in place, on any OS
            for index, (offset, buffer) in enumerate(items):
                view, value = memoryview(buffer).cast("B"), 0
                for start in range(0, len(view), _CHUNK):
                    chunk = view[start:start + _CHUNK]
                    f.seek(offset + start)
                    done = 0
                    while done < len(chunk):
                        n = f.readinto(chunk[done:])
                        if not n:
                            raise _ShortRead(path, index, offset + start + done)
                        done += n
                    if crc:
                        value = zlib.crc32(chunk, value)
                crcs.append(value)
        return crcs

    @staticmethod
    def first_nonzero(fd: int, path, ranges) -> int:
        """The index of the first (start, stop) byte range holding a non-zero byte, or -1."""
        with _naming(path):
            f = io.FileIO(fd, "r", closefd=False)
            for index, (start, stop) in enumerate(ranges):
                f.seek(start)
                while start < stop:
                    chunk = f.read(min(stop - start, _CHUNK))
                    if not chunk:
                        raise _ShortRead(path, index, start)
                    if chunk.count(0) != len(chunk):
                        return index
                    start += len(chunk)
        return -1

    @staticmethod
    def write_all(fd: int, path, items) -> None:
        """Write each (file_offset, buffer) item, then fsync the file."""
        with _naming(path):
            for offset, data in items:
                view = memoryview(data).cast("B")
                os.lseek(fd, offset, os.SEEK_SET)
                while view:
                    n = os.write(fd, view)
                    if not n:  # no progress and no error: never loop forever
                        raise OSError(errno.EIO, os.strerror(errno.EIO), path)
                    view = view[n:]
            os.fsync(fd)


class _ByteWork(Protocol):
    """The four functions of a backend: _PurePython's, or sda._sdafile's."""

    def crc32(self, data, value: int = 0, /) -> int: ...

    def read_into(self, fd: int, path, items, crc: bool = True) -> list: ...

    def first_nonzero(self, fd: int, path, ranges) -> int: ...

    def write_all(self, fd: int, path, items) -> None: ...


_NATIVE_FUNCTIONS = ("crc32", "read_into", "first_nonzero", "write_all")
_BACKENDS: dict[str, _ByteWork]
if native.extension is not None and all(hasattr(native.extension, f) for f in _NATIVE_FUNCTIONS):
    _BACKENDS, _CPP_MISSING = {"cpp": native.extension, "python": _PurePython}, ""
else:
    _BACKENDS = {"python": _PurePython}
    _CPP_MISSING = ("SDA_PURE_PYTHON=1 is set" if os.environ.get("SDA_PURE_PYTHON") == "1"
                    else "the extension sda._sdafile is out of date; rebuild it with pip install -e ."
                    if native.extension is not None
                    else "the extension sda._sdafile was not built; reinstall sda with a C++ compiler present")
BACKEND = "cpp" if "cpp" in _BACKENDS else "python"
_io = _BACKENDS[BACKEND]


def set_backend(name: str) -> str:
    """Do the byte work with backend name ("cpp" or "python") from now on; return the previous name."""
    global BACKEND, _io
    if name not in ("cpp", "python"):
        raise SdaError(f"the backend must be 'cpp' or 'python', not {name!r}")
    if name not in _BACKENDS:
        raise SdaError(f"the C++ backend is not available: {_CPP_MISSING}")
    previous, BACKEND, _io = BACKEND, name, _BACKENDS[name]
    return previous
