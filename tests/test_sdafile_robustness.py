"""Robustness of the v2 .sda container (SDA_FORMAT.md), beyond the rule-by-rule tests in test_sdafile.py.

- Fuzzing: small valid files are damaged byte by byte (bit flips, overwrites, truncation, insertions,
  deletions, appended garbage), or edited in their header with the header CRC recomputed so that what
  gets tested is the JSON and tensor-table validation (offsets, sizes, shapes, dtypes, names, nesting,
  numbers, prefix fields). Every backend reads every mutant: the only acceptable outcomes are a read
  or an SdaError, never another exception, a crash or a hang; a read returns exactly the bytes its
  tensor table describes, with matching CRCs (never silently wrong data); raw damage is always caught;
  the backends agree. Shapes the fuzzer found torch cannot make have their own regression test.
- Atomic save under SIGKILL: a writer killed at random moments while it overwrites a file never leaves
  anything but a complete old or new file at the destination.
- A write that hits RLIMIT_FSIZE raises OSError, keeps the old file and leaves no temporary file.
- A golden file, tests/data/golden.sda (every dtype, 0-d and empty tensors, fixed metadata): every
  backend reads its exact values, and writing the same inputs today gives the same bytes, so any drift
  of the format shows. After a deliberate format change (which should also bump the version in SDA_FORMAT.md),
  regenerate it from the repository root with

      .venv/bin/python tests/test_sdafile_robustness.py --regenerate-golden

Every test runs against both backends, "python" and "cpp"; one that is not available is skipped.
Fuzz failures print hypothesis's @reproduce_failure blob; `--hypothesis-show-statistics` shows how
the mutants fared (which checks rejected them).
"""

import contextlib
import copy
import errno
import faulthandler
import json
import math
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sda.errors import SdaError, SdaFormatError
from sda.format import container

MAGIC = b"\x89SDA\r\n\x1a\n"
PREFIX = struct.Struct("<8sHHIQQQI20s")  # magic, major, minor, flags, H, D, L, header CRC, reserved
DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
    "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}
ITEMSIZE = {name: torch.empty(0, dtype=dtype).element_size() for name, dtype in DTYPES.items()}
KINDS = ("model", "checkpoint")
GOLDEN = Path(__file__).parent / "data" / "golden.sda"


def align(n):
    return -(-n // 64) * 64


def raw(tensor) -> bytes:
    """A tensor's memory, so that NaN payloads and -0.0 compare exactly."""
    return tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


# ----------------------------------------------------------------------------------------------
# Backends


@pytest.fixture(params=["python", "cpp"])
def backend(request):
    """Runs the test with container.set_backend(param); skips a backend that is not available."""
    if not hasattr(container, "set_backend"):
        # Before set_backend existed the module was pure Python: run its own backend only.
        if request.param != container.BACKEND:
            pytest.skip("container.set_backend is not there yet")
        yield request.param
        return
    try:
        previous = container.set_backend(request.param)
    except SdaError as exc:
        pytest.skip(f"{request.param} backend unavailable: {exc}")
    try:
        yield request.param
    finally:
        container.set_backend(previous)


@contextlib.contextmanager
def using(name):
    """The block runs with backend name (which the backend fixture has shown to be available)."""
    if not hasattr(container, "set_backend"):
        assert name == container.BACKEND
        yield
        return
    previous = container.set_backend(name)
    try:
        yield
    finally:
        container.set_backend(previous)


def child_env(backend):
    """The environment of a child Python that imports sdafile with the given backend."""
    env = {key: value for key, value in os.environ.items() if key != "SDA_PURE_PYTHON"}
    if backend == "python":
        env["SDA_PURE_PYTHON"] = "1"
    return env


# ----------------------------------------------------------------------------------------------
# The oracle: a successful read checked against the file's bytes, decoded here from SDA_FORMAT.md.


def check_against_spec(buf: bytes, tensors, metadata, *, verify=True):
    """Asserts that (tensors, metadata), as read from a file holding buf, is what the file says.

    With verify, also that the header and every tensor match their CRCs and the padding is zero: a
    verified read of a file whose bytes disagree with its table would be silently wrong data.
    """
    magic, major, minor, flags, h, d, length, crc, reserved = PREFIX.unpack_from(buf)
    assert (magic, major, flags, reserved) == (MAGIC, 2, 0, bytes(20))
    assert h <= 16 * 2**20 and d % 64 == 0 and d >= 64 + h and len(buf) == d + length
    header_bytes = buf[64:64 + h]
    assert zlib.crc32(header_bytes, zlib.crc32(buf[:40])) == crc
    header = json.loads(header_bytes.decode("utf-8"))
    assert header["format"] == "sda" and header["version"] == [2, minor] and header["kind"] in KINDS
    assert metadata == header["metadata"]
    table = header["tensors"]
    assert list(tensors) == [entry["name"] for entry in table]
    if verify:
        assert buf[64 + h:d].count(0) == d - 64 - h, "non-zero padding after the header was accepted"
    end = 0
    for entry, tensor in zip(table, tensors.values(), strict=True):
        name, dtype, shape, offset, nbytes = (entry[k] for k in ("name", "dtype", "shape", "offset", "nbytes"))
        assert tensor.dtype == DTYPES[dtype] and list(tensor.shape) == shape and len(shape) <= 8, name
        assert nbytes == math.prod(shape) * ITEMSIZE[dtype], name
        # Tensors follow each other in offset order, each at the first 64-aligned offset after the previous one.
        assert offset == align(end), name
        stored = buf[d + offset:d + offset + nbytes]
        assert len(stored) == nbytes and offset + nbytes <= length, name
        assert raw(tensor) == stored, f"tensor {name!r} does not hold the bytes its table entry points at"
        if dtype == "BOOL":
            assert stored.count(0) + stored.count(1) == nbytes, f"BOOL tensor {name!r} holds bytes other than 0 and 1"
        if verify:
            assert zlib.crc32(stored) == entry["crc32"], f"tensor {name!r} was read despite a CRC mismatch"
            assert buf[d + end:d + offset].count(0) == offset - end, f"non-zero padding before {name!r} was accepted"
        end = offset + nbytes
    return header


def attempt(function, *args, **kwargs):
    """('ok', result) or ('error', class name, message) for an SdaError; any other exception fails the test."""
    try:
        return ("ok", function(*args, **kwargs))
    except SdaError as exc:
        return ("error", type(exc).__name__, str(exc))


def comparable(outcome):
    """An outcome with its tensors replaced by (name, dtype, shape, bytes), for == between backends."""
    if outcome[0] == "ok" and isinstance(outcome[1], tuple):
        tensors, metadata = outcome[1]
        return ("ok", [(name, str(t.dtype), tuple(t.shape), raw(t)) for name, t in tensors.items()], metadata)
    return outcome


def summary(outcome, path):
    """A short label of an outcome for hypothesis's statistics: which check stopped the file."""
    if outcome[0] == "ok":
        return "ok"
    # Without the path, names, parenthesized details and numbers, so that the same check gives the same label.
    message = outcome[2].replace(str(path), "<path>").split(";")[0]
    message = re.sub(r"\d+", "N", re.sub(r"\([^)]*\)|'[^']*'", "...", message))
    return f"{outcome[1]}: {message[:100]}"


def examine(path, buf):
    """Reads one file with every reader of the current backend and checks what must hold whatever the file holds.

    Returns the comparable outcomes, for comparison with another backend.
    """
    header = attempt(container.read_header, path)
    metadata = attempt(container.read_metadata, path)
    verified = attempt(container.read, path)
    unverified = attempt(container.read, path, verify=False)

    # read_metadata and read_header read the same prefix and header, and read checks them first.
    assert metadata == (header if header[0] == "error" else ("ok", header[1]["metadata"]))
    if header[0] == "error":
        assert verified[:2] == unverified[:2] == header[:2], (header, verified, unverified)
    if unverified[0] == "ok":
        spec_header = check_against_spec(buf, *unverified[1], verify=False)
        assert header[0] == "ok" and header[1]["tensors"] == spec_header["tensors"]
    if verified[0] == "ok":
        check_against_spec(buf, *verified[1], verify=True)
        # verify=False skips checks, it never changes what is read.
        assert comparable(unverified) == comparable(verified)
    return {"read_header": header, "read_metadata": metadata,
            "read": comparable(verified), "read(verify=False)": comparable(unverified)}


def examine_all(backend, path, buf):
    """examine() with the backend under test and, for a native backend, the same with the pure-Python reference:
    the spec requires the same result, and the same error for the same bad input."""
    Path(path).write_bytes(buf)
    outcomes = examine(path, buf)
    if backend != "python":
        with using("python"):
            reference = examine(path, buf)
        assert outcomes == reference, f"the {backend} and python backends disagree"
    event(f"read: {summary(outcomes['read'], path)}")
    return outcomes


# ----------------------------------------------------------------------------------------------
# Small valid files


def _tensor(dtype_and_shape):
    dtype, shape = dtype_and_shape
    nbytes = math.prod(shape) * ITEMSIZE[dtype]
    content = st.binary(min_size=nbytes, max_size=nbytes)
    if dtype == "BOOL":
        content = content.map(lambda b: bytes(x & 1 for x in b))
    # view() reinterprets the random bytes, so floats include NaNs, infinities and subnormals.
    return content.map(lambda b: torch.tensor(list(b), dtype=torch.uint8).view(DTYPES[dtype]).reshape(shape))


TENSORS = st.dictionaries(
    st.text(alphabet="ab._0é", min_size=1, max_size=5),
    # Shapes up to 3-d with sizes from 0: so 0-d ([]), empty and ordinary tensors.
    st.tuples(st.sampled_from(list(DTYPES)), st.lists(st.integers(0, 3), max_size=3)).flatmap(_tensor),
    max_size=4,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)
INPUTS = st.tuples(TENSORS, st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4), st.sampled_from(KINDS))


def write_base(backend, directory, inputs):
    """The bytes container.write gives for inputs; a native writer must give the same bytes as the Python one."""
    path = directory / "base.sda"
    container.write(path, *inputs)
    buf = path.read_bytes()
    if backend != "python":
        with using("python"):
            container.write(path, *inputs)
        assert path.read_bytes() == buf, f"the {backend} and python writers give different bytes"
    return buf


def regions(buf):
    """The file's regions as (start, stop): prefix, header, padding after it, tensor data, and the end."""
    h, d = struct.unpack_from("<QQ", buf, 16)
    spans = [(0, 64), (64, 64 + h), (64 + h, d), (d, len(buf)), (len(buf) - 1, len(buf))]
    return [(start, stop) for start, stop in spans if start < stop]


def same_as_inputs(outcome, inputs):
    tensors, metadata, _ = inputs
    expected = [(name, str(tensors[name].dtype), tuple(tensors[name].shape), raw(tensors[name]))
                for name in sorted(tensors)]
    return outcome == ("ok", expected, metadata)


# Hypothesis settings for the fuzz tests: bounded example counts keep all four fuzz runs (two tests, two
# backends) within about 20 s; the deadline flags a slow read (each takes milliseconds), and the
# watchdog fixture a real hang, which a deadline cannot interrupt.
FUZZ = settings(
    deadline=5000,
    derandomize=False,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def watchdog():
    """Dumps every thread's stack and exits if the test hangs (in native code no Python timeout can interrupt)."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


# ----------------------------------------------------------------------------------------------
# 1a. Fuzzing with byte-level damage: every change must be caught.


def flip_bit(draw, buf, at):
    buf[at] ^= 1 << draw(st.integers(0, 7))
    return buf


def overwrite(draw, buf, at):
    # At most 4 bytes: CRC-32 catches every error burst up to 32 bits, so a changed tensor can never pass.
    new = draw(st.binary(min_size=1, max_size=4))[:len(buf) - at]
    buf[at:at + len(new)] = new
    return buf


def truncate(draw, buf, at):
    return buf[:at]


def insert(draw, buf, at):
    return buf[:at] + draw(st.binary(min_size=1, max_size=70)) + buf[at:]


def delete(draw, buf, at):
    return buf[:at] + buf[at + draw(st.integers(1, 70)):]


def append(draw, buf, at):
    return buf + draw(st.binary(min_size=1, max_size=70))


DAMAGE = [flip_bit, overwrite, truncate, insert, delete, append]


@settings(FUZZ, max_examples=250)
@given(inputs=INPUTS, data=st.data())
def test_fuzz_byte_damage_is_always_caught(backend, tmp_path, watchdog, inputs, data):
    base = write_base(backend, tmp_path, inputs)
    mutant = bytearray(base)
    for _ in range(data.draw(st.integers(1, 3), label="damages")):
        if not mutant:
            break
        # A region first, so that the small prefix and padding are hit as often as the header.
        start, stop = data.draw(st.sampled_from(regions(base)), label="region")
        at = min(data.draw(st.integers(start, stop - 1), label="at"), len(mutant) - 1)  # earlier damage may cut it
        mutant = data.draw(st.sampled_from(DAMAGE), label="damage")(data.draw, mutant, at)
    outcomes = examine_all(backend, tmp_path / "mutant.sda", bytes(mutant))
    if mutant == base:  # damage that undid itself
        assert same_as_inputs(outcomes["read"], inputs), outcomes["read"]
    else:
        # Every byte is covered by the header CRC, a tensor CRC, the size rule, or a must-be-zero rule. One
        # damage is always caught (CRC-32 catches every burst up to 32 bits); several could only pass through
        # a CRC-32 collision, a 2**-32 chance.
        assert outcomes["read"][0] == "error", "a damaged file was read without an error"


# ----------------------------------------------------------------------------------------------
# 1b. Fuzzing the header, with its CRC recomputed: the validation must reject or read correctly.


class Draft:
    """A file taken apart: its header as JSON data, its tensor data, and overrides of its prefix fields.

    to_bytes() puts it back together with a correct header CRC, whatever the edits made of the rest.
    """

    def __init__(self, buf):
        h, d = struct.unpack_from("<QQ", buf, 16)
        self.header = json.loads(buf[64:64 + h])
        self.data = bytearray(buf[d:])
        self.fields = {}  # prefix field -> function (H, D, L) -> the value written instead of the computed one
        self.extra_padding = 0  # zero bytes added before the data (and to D): still a valid file
        self.dumps = canonical
        self.text_edits = []  # functions bytes -> bytes, applied to the serialized header in order

    def to_bytes(self):
        header_bytes = self.dumps(self.header)
        for edit in self.text_edits:
            header_bytes = edit(header_bytes)
        h = len(header_bytes)
        d = align(64 + h) + self.extra_padding
        length = len(self.data)
        values = {"major": 2, "minor": 0, "flags": 0, "H": h, "D": d, "L": length, "reserved": bytes(20)}
        values.update({field: value(h, d, length) for field, value in self.fields.items()})
        prefix = struct.pack("<8sHHIQQQ", MAGIC, *(values[k] for k in ("major", "minor", "flags", "H", "D", "L")))
        crc = zlib.crc32(header_bytes, zlib.crc32(prefix))
        return prefix + struct.pack("<I", crc) + values["reserved"] + header_bytes + bytes(d - 64 - h) + self.data


def canonical(header):
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


SERIALIZERS = [
    canonical,
    lambda header: json.dumps(header, ensure_ascii=True).encode(),  # key order as built, \u escapes, spaces
    lambda header: json.dumps(header, indent=1, sort_keys=True).encode(),
]

INTERESTING_INTS = [0, 1, -1, 2, 3, 8, 63, 64, 65, 255, 256, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1, 2**62,
                    2**63 - 64, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, 10**30]
WEIRD = st.one_of(
    st.sampled_from(INTERESTING_INTS),
    st.integers(),
    # nan and inf serialize as NaN and Infinity literals, which the reader must refuse.
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 64.0, 1e308, math.nan, math.inf, -math.inf]),
    st.booleans(),
    st.none(),
    st.sampled_from(["", "sda", "model", "checkpoint", "F32", "BOOL", "U8", "f32", "x" * 300, "a\x00b", "é" * 128]),
    st.text(max_size=4),
    st.sampled_from([[], [0], [1, 2], [2, 0], [64.0], [True], [[1]], [-1], [2**62, 2**62, 0], [1] * 9, {}, {"a": 1}]),
).map(copy.deepcopy)  # a fresh copy: later edits must not change these lists, nor tie them into cycles


def places(value, containers_only=False):
    """Every (holder, key) in a JSON value, depth first."""
    found = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if not containers_only or isinstance(item, (dict, list)):
            found.append((value, key))
        found.extend(places(item, containers_only))
    return found


def entries(draft):
    table = draft.header.get("tensors")
    return [e for e in table if isinstance(e, dict)] if isinstance(table, list) else []


def replace_anything(draw, draft):
    header = draft.header
    # The tensor table first: hypothesis favours the start of a list, and the table is the richest target.
    targets = [p for key in sorted(header, key=lambda k: k != "tensors") for p in [(header, key), *places(header[key])]]
    if targets:
        holder, key = draw(st.sampled_from(targets), label="place")
        holder[key] = draw(WEIRD, label="value")


def delete_a_key(draw, draft):
    dicts = [d for d in [draft.header] + [c[k] for c, k in places(draft.header, True)] if isinstance(d, dict) and d]
    if dicts:
        target = draw(st.sampled_from(dicts))
        del target[draw(st.sampled_from(sorted(target)))]


def add_a_key(draw, draft):
    dicts = [draft.header] + [c[k] for c, k in places(draft.header, True) if isinstance(c[k], dict)]
    target = draw(st.sampled_from(dicts))
    key = draw(st.sampled_from(["name", "dtype", "shape", "offset", "nbytes", "crc32", "tensors", "kind", "extra", ""]))
    target[key] = draw(WEIRD)


def edit_a_list(draw, draft):
    lists = [c[k] for c, k in places(draft.header, True) if isinstance(c[k], list)]
    if not lists:
        return
    target = draw(st.sampled_from(lists))
    how = draw(st.sampled_from(["duplicate", "drop", "reverse", "append"]))
    if how == "append" or not target:
        target.append(draw(WEIRD))
    elif how == "duplicate":
        target.insert(draw(st.integers(0, len(target))), copy.deepcopy(draw(st.sampled_from(target))))
    elif how == "drop":
        del target[draw(st.integers(0, len(target) - 1))]
    else:
        target.reverse()


def nudge_a_number(draw, draft):
    """An offset, size, CRC or dimension moved by a boundary amount, or set to an interesting integer."""
    candidates = [(e, k) for e in entries(draft) for k in ("offset", "nbytes", "crc32") if k in e]
    candidates += [(e["shape"], i) for e in entries(draft) if isinstance(e.get("shape"), list)
                   for i in range(len(e["shape"]))]
    if not candidates:
        return
    holder, key = draw(st.sampled_from(candidates))
    if not isinstance(holder[key], int) or draw(st.booleans()):
        holder[key] = draw(st.sampled_from(INTERESTING_INTS))
    else:
        holder[key] += draw(st.sampled_from([-(2**63), -65, -64, -1, 1, 63, 64, 65, 2**32, 2**63]))


SAME_ITEMSIZE = [["F64", "I64"], ["F32", "I32"], ["F16", "BF16", "I16"], ["I8", "U8", "BOOL"]]


def retype(draw, draft):
    """A dtype of the same itemsize: still a consistent table (BOOL must then reject bytes above 1)."""
    candidates = [e for e in entries(draft) if isinstance(e.get("dtype"), str) and e["dtype"] in DTYPES]
    if candidates:
        e = draw(st.sampled_from(candidates))
        e["dtype"] = draw(st.sampled_from(next(group for group in SAME_ITEMSIZE if e["dtype"] in group)))


def reshape(draw, draft):
    """A shape with the same number of elements: still a consistent table, and some shapes are extreme."""
    candidates = [e for e in entries(draft) if isinstance(e.get("shape"), list)
                  and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in e["shape"])]
    if not candidates:
        return
    e = draw(st.sampled_from(candidates))
    n = math.prod(e["shape"])
    shapes = [[n], [1, n], [n, 1], [1] * 8 + [n], [1] * 7 + [n]] + ([[]] if n == 1 else [])
    if n == 0:
        # Empty, so any other dimensions are allowed: up to the int64 limit, and products past it.
        shapes += [[0, 2**63 - 1], [2**63 - 1, 0, 2**63 - 1], [2**62, 2**62, 0], [2**31] * 7 + [0]]
    e["shape"] = draw(st.sampled_from(shapes))


def rename(draw, draft):
    candidates = entries(draft)
    if candidates:
        e = draw(st.sampled_from(candidates))
        names = [c.get("name") for c in candidates if c is not e] or ["x"]
        e["name"] = draw(st.sampled_from(names + ["", "a" * 255, "a" * 256, "é" * 127 + "a", "é" * 128, "x\x00y"]))


def nest_metadata(draw, draft):
    """Lists nested around the limit: the header object is depth 1 and metadata depth 2, so 62 more fit."""
    value = 0
    for _ in range(draw(st.sampled_from([61, 62, 63, 64, 200]))):
        value = [value] if draw(st.booleans()) else {"k": value}
    if isinstance(draft.header.get("metadata"), dict):
        draft.header["metadata"]["deep"] = value


def rewrite_data(draw, draft):
    """Changes a tensor's bytes and its CRC to match: a consistent file whose read must return the new bytes."""
    candidates = [e for e in entries(draft) if isinstance(e.get("offset"), int) and isinstance(e.get("nbytes"), int)
                  and e["offset"] >= 0 and e["nbytes"] > 0 and e["offset"] + e["nbytes"] <= len(draft.data)]
    if candidates:
        e = draw(st.sampled_from(candidates))
        at = e["offset"] + draw(st.integers(0, e["nbytes"] - 1))
        draft.data[at] = draw(st.sampled_from([0, 1, 2, 255]))
        e["crc32"] = zlib.crc32(draft.data[e["offset"]:e["offset"] + e["nbytes"]])


def resize_data(draw, draft):
    """More or less tensor data than the table describes, with L and the file size still agreeing."""
    if draw(st.booleans()):
        draft.data += bytes(draw(st.sampled_from([1, 63, 64, 65])))
    else:
        del draft.data[-draw(st.integers(1, 65)):]


def more_padding(draw, draft):
    draft.extra_padding += 64 * draw(st.integers(1, 3))  # a larger D with zero padding is valid


def prefix_field(draw, draft):
    """A prefix field set to a wrong or extreme value (with the CRC over it recomputed)."""
    field = draw(st.sampled_from(["major", "minor", "flags", "reserved", "H", "D", "L", "D+L wraps"]))
    if field in ("major", "minor"):
        value = draw(st.sampled_from([0, 1, 2, 3, 0xFFFF]))
        draft.fields[field] = lambda h, d, length: value
    elif field == "flags":
        value = draw(st.sampled_from([1, 2, 0x80000000]))
        draft.fields[field] = lambda h, d, length: value
    elif field == "reserved":
        where = draw(st.integers(0, 19))
        draft.fields[field] = lambda h, d, length: bytes(where) + b"\x01" + bytes(19 - where)
    elif field == "D+L wraps":
        # D + L = 2**64 + the file size: right modulo 2**64, so an unchecked uint64 sum would pass the size rule.
        draft.fields["D"] = lambda h, d, length: 2**64 - 64
        draft.fields["L"] = lambda h, d, length: d + length + 64
    else:
        change = draw(st.sampled_from(["-1", "+1", "-64", "+64", "zero", "16 MiB + 1", "2**63", "2**64 - 64",
                                       "2**64 - 1"]))
        index = "HDL".index(field)

        def value(h, d, length):
            natural = (h, d, length)[index]
            return {"-1": max(natural - 1, 0), "+1": natural + 1, "-64": max(natural - 64, 0), "+64": natural + 64,
                    "zero": 0, "16 MiB + 1": 16 * 2**20 + 1, "2**63": 2**63, "2**64 - 64": 2**64 - 64,
                    "2**64 - 1": 2**64 - 1}[change]

        draft.fields[field] = value


# Edits of the serialized header, to reach what json.dumps never writes.
NUMBER = re.compile(rb"(?<![\w.\\])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
LITERALS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"123456789012345678901234567890", b"-0", b"1.0",
            b"1E2", b"true", b"null", b'"1"', b"9223372036854775808", b"-9223372036854775809", b"0x10", b"01"]


def text_edit(draw, draft):
    """An edit of the serialized header (applied after the structural edits): syntax the writer never produces."""
    how = draw(st.sampled_from(["insert", "delete", "number", "duplicate key", "bom", "surrogate", "wrap",
                                "trailing", "invalid utf-8", "unbalanced"]))
    at = draw(st.floats(0, 1))  # where in the text, as a fraction of its length
    token = draw(st.sampled_from([b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b" ", b"0", b"-", b"\x00"]))
    literal, which = draw(st.sampled_from(LITERALS)), draw(st.integers(0, 50))
    # A second "kind" or "tensors" in the header object, or a second "name" or "offset" in the first table
    # entry, if any (the canonical serializer writes the first table entry's opening as [{).
    key = draw(st.sampled_from([b'{"kind":"model",', b'{"tensors":[],', b'[{"name":"a",', b'[{"offset":0,']))
    # The first two escapes are lone surrogates; the others are a valid pair and an escaped backslash.
    escape = draw(st.sampled_from([b"\\ud800", b"\\udfff", b"\\ud83d\\ude00", b"\\\\ud800"]))
    tail = draw(st.sampled_from([b" ", b"\n", b"x", b"{}", b"\x00"]))
    depth = draw(st.sampled_from([63, 100_000]))

    def edit(b):
        i = int(at * len(b))
        if how == "insert":
            return b[:i] + token + b[i:]
        if how == "delete":
            return b[:i] + b[i + 1:]
        if how == "number":
            numbers = list(NUMBER.finditer(b))
            if not numbers:
                return b
            m = numbers[which % len(numbers)]
            return b[:m.start()] + literal + b[m.end():]
        if how == "duplicate key":
            return b.replace(key[:2] if key.startswith(b"[") else key[:1], key, 1)
        if how == "bom":
            return b"\xef\xbb\xbf" + b
        if how == "surrogate":
            return re.sub(rb'"(name|kind)": ?"', lambda m: m.group(0) + escape, b, count=1)
        if how == "wrap":
            return b"[" + b + b"]"
        if how == "trailing":
            return b + tail
        if how == "invalid utf-8":
            return b.replace(b'"sda"', b'"s\xffa"', 1)
        return b.replace(b'"metadata":{', b'"metadata":{"d":' + b"[" * depth, 1)  # unbalanced, deep

    draft.text_edits.append(edit)


# The edits that keep or nearly keep a consistent table first: hypothesis favours the start of a list.
HEADER_EDITS = [nudge_a_number, reshape, retype, rename, rewrite_data, replace_anything, delete_a_key, add_a_key,
                edit_a_list, nest_metadata, resize_data, more_padding, prefix_field, text_edit]


@settings(FUZZ, max_examples=400)
@given(inputs=INPUTS, data=st.data())
def test_fuzz_header_edits_are_rejected_or_read_correctly(backend, tmp_path, watchdog, inputs, data):
    draft = Draft(write_base(backend, tmp_path, inputs))
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        data.draw(st.sampled_from(HEADER_EDITS), label="edit")(data.draw, draft)
    draft.dumps = data.draw(st.sampled_from(SERIALIZERS), label="serializer")
    # Everything else is checked in examine(): an SdaError or a read that is exactly what the table says.
    examine_all(backend, tmp_path / "mutant.sda", draft.to_bytes())


@pytest.mark.parametrize("shape", [[2**62, 2**62, 0], [0, 2**63 - 1, 2], [2**31] * 7 + [0]])
def test_empty_tensor_with_dimensions_whose_product_overflows(backend, tmp_path, shape):
    """0 elements, 0 bytes, but torch's size arithmetic overflows on the shape (a RuntimeError the fuzzer found):
    the reader must refuse it as malformed."""
    entry = {"name": "x", "dtype": "F32", "shape": shape, "offset": 0, "nbytes": 0, "crc32": 0}
    draft = Draft(write_base(backend, tmp_path, ({}, {}, "model")))
    draft.header["tensors"] = [entry]
    path = tmp_path / "m.sda"
    path.write_bytes(draft.to_bytes())
    with pytest.raises(SdaFormatError, match="shape"):
        container.read(path)


# ----------------------------------------------------------------------------------------------
# 3. Atomic save under SIGKILL


# A fork server: imports sdafile (seconds, while the test prepares the two versions), reads versions A and B
# from their reference files, then for each line on stdin forks a writer that overwrites the destination back
# to back, alternating A and B, until it is killed; it prints the writer's pid and reaps it. It runs no
# parallel torch op before forking, so the writers are safe from OpenMP's problems with fork.
KILL_SERVER = r"""
import os, sys, time
from sda.format import container
print(container.BACKEND, flush=True)
path, ref_a, ref_b = sys.stdin.readline().split("\t")
versions = [container.read(ref_a), container.read(ref_b.strip())]
print("ready", flush=True)
for line in sys.stdin:
    first = int(line)
    pid = os.fork()
    if pid == 0:
        deadline = time.monotonic() + 60  # in case nobody kills it
        while time.monotonic() < deadline:
            container.write(path, *versions[first % 2])
            first += 1
        os._exit(0)
    print(pid, flush=True)
    os.waitpid(pid, 0)
    print("reaped", flush=True)
"""


def sigkill_version(tag, rng):
    """About 32 MB, so that one write takes tens of milliseconds; A and B differ in content, shapes and metadata."""
    rows = {"A": 2048, "B": 2047}[tag]
    return ({"weight": torch.randn(rows, 2048, generator=rng),
             "codes": torch.randint(0, 2**15, (8, 1_000_000), generator=rng, dtype=torch.int16)},
            {"version": tag})


def test_atomic_save_under_sigkill(backend, tmp_path, rng, watchdog):
    server = subprocess.Popen([sys.executable, "-c", KILL_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=child_env(backend))
    writer = None
    try:
        references, work = tmp_path / "references", tmp_path / "work"
        references.mkdir()
        work.mkdir()
        contents = {}
        for tag in "AB":
            container.write(references / f"{tag}.sda", *sigkill_version(tag, rng))
            contents[tag] = (references / f"{tag}.sda").read_bytes()
        destination = work / "model.sda"
        destination.write_bytes(contents["A"])
        rounds, seen, leftovers = 10, [], 0
        delays = (0.01 + 0.25 * torch.rand(rounds, generator=rng)).tolist()

        assert server.stdout.readline().strip() == backend, "the writer runs another backend"
        server.stdin.write(f"{destination}\t{references / 'A.sda'}\t{references / 'B.sda'}\n")
        server.stdin.flush()
        assert server.stdout.readline().strip() == "ready"
        for i, delay in enumerate(delays):
            server.stdin.write(f"{i}\n")
            server.stdin.flush()
            writer = int(server.stdout.readline())
            if i % 2:
                # Every other round, aim: wait for the writer's temporary file to appear, so that this kill
                # comes mid-write for certain (a write spends a good part of its time outside its temporary
                # file: the checksums before, the directory fsync after).
                deadline = time.monotonic() + 5
                while len(os.listdir(work)) < 2 and time.monotonic() < deadline:
                    time.sleep(0.001)
                delay /= 10
            time.sleep(delay)
            os.kill(writer, signal.SIGKILL)
            assert server.stdout.readline().strip() == "reaped"
            writer = None
            # The destination is always one complete version; a killed writer's temporary file is not it.
            content = destination.read_bytes()
            tag = next((tag for tag, expected in contents.items() if content == expected), None)
            assert tag is not None, f"after kill {i + 1} ({delay:.3f} s in) the destination is neither A nor B"
            assert container.read(destination)[1] == {"version": tag}
            seen.append(tag)
            others = [p for p in work.iterdir() if p != destination]
            leftovers += len(others)
            for p in others:  # 32 MB each
                p.unlink()
    finally:
        if writer is not None:
            os.kill(writer, signal.SIGKILL)
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    # A leftover temporary file means the kill came mid-write: without any, the test tested nothing.
    assert leftovers >= 1, f"no kill interrupted a write (versions seen: {seen})"
    assert leftovers <= rounds, f"{leftovers} temporary files left by {rounds} killed writers (versions seen: {seen})"


# ----------------------------------------------------------------------------------------------
# 4. A write that hits the file size limit


FSIZE_CHILD = r"""
import json, resource, signal, sys
import torch
from sda.format import container
path, limit = sys.argv[1], int(sys.argv[2])
print(container.BACKEND)
new = {"weight": torch.arange(2**18, dtype=torch.float32)}  # 1 MiB, over the limit
# SIGXFSZ would kill the process; ignored, the write that crosses the limit fails with EFBIG instead.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    container.write(path, new, {"version": "new"})
except OSError as exc:
    print(json.dumps({"raised": type(exc).__name__, "errno": exc.errno, "message": str(exc)}))
else:
    print(json.dumps({"raised": None}))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file size limits")
def test_write_over_the_file_size_limit_keeps_the_old_file(backend, tmp_path):
    path = tmp_path / "model.sda"
    container.write(path, {"weight": torch.ones(16)}, {"version": "old"})
    before = path.read_bytes()
    limit = 100_003  # above the old file, below the new one, and not aligned: the crossing write is partial
    assert len(before) < limit
    result = subprocess.run([sys.executable, "-c", FSIZE_CHILD, path, str(limit)], capture_output=True, text=True,
                            env=child_env(backend), timeout=120)
    assert result.returncode == 0, result.stderr
    child_backend, outcome = result.stdout.splitlines()
    assert child_backend == backend, f"the child ran another backend: {result.stderr}"
    outcome = json.loads(outcome)
    assert outcome["raised"] is not None, "the write succeeded despite the file size limit"
    assert outcome["errno"] == errno.EFBIG, outcome
    assert path.read_bytes() == before
    tensors, metadata = container.read(path)
    assert metadata == {"version": "old"} and torch.equal(tensors["weight"], torch.ones(16))
    assert os.listdir(tmp_path) == [path.name], "a temporary file was left behind"


# ----------------------------------------------------------------------------------------------
# 5. The golden file


def golden_inputs():
    """Fixed tensors of every dtype (special values, 0-d, empty, 8-d, a non-ASCII name) and fixed metadata."""
    inf, nan = math.inf, math.nan
    tensors = {
        "f64": torch.tensor([0.0, -0.0, 1.5, -2.25, 1e300, 5e-324, math.pi, inf, -inf, nan], dtype=torch.float64),
        "f32": torch.tensor([[1.0, -0.5, 3.4028234663852886e38], [1.401298464324817e-45, inf, nan]],
                            dtype=torch.float32),
        "f16": torch.tensor([0.0, 1.0, -2.0, 65504.0, 5.960464477539063e-08, 0.333251953125, inf, -inf],
                            dtype=torch.float16),
        "bf16": torch.tensor([[1.0, -1.5], [3.3895313892515355e38, 9.183549615799121e-41]], dtype=torch.bfloat16),
        "i64": torch.tensor([-(2**63), -1, 0, 1, 2**63 - 1], dtype=torch.int64),
        "i32": torch.tensor([[-(2**31), 2**31 - 1], [0, -7]], dtype=torch.int32),
        "i16": torch.tensor([-32768, 32767, 0, 12345], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 0, -1], dtype=torch.int8),
        "u8": torch.tensor([[[0, 1, 127, 128, 255]]], dtype=torch.uint8),
        "bool": torch.tensor([[True, False, True], [False, False, True]]),
        "scalar.f32": torch.tensor(3.25),
        "scalar.bool": torch.tensor(True),
        "empty.i32": torch.zeros(0, dtype=torch.int32),
        "empty.f16": torch.zeros(2, 0, 3, dtype=torch.float16),
        "eight.dims": torch.arange(4, dtype=torch.uint8).reshape(1, 2, 1, 1, 1, 1, 1, 2),
        "naïve.µ": torch.tensor(-5, dtype=torch.int8),
    }
    metadata = {
        "model": "golden", "created": "2024-01-01T00:00:00+00:00",
        "numbers": {"int": 42, "negative": -7, "int64_min": -(2**63), "int64_max": 2**63 - 1, "float": 0.1,
                    "tiny": 5e-324, "huge": 1.7976931348623157e308, "negative_zero": -0.0, "nan": nan, "inf": inf},
        "text": {"unicode": "naïve µ — ✓ 🎵", "escapes": "quote \" backslash \\ newline \n tab \t nul \0"},
        "list": [1, 2.5, "three", None, True, False, [], {}],
        "tuple": (1, 2),
        "nested": {"a": {"b": {"c": [1, [2, [3]]]}}},
    }
    return tensors, metadata, "model"


# What reading the golden metadata gives: non-finite numbers stored as null, tuples as lists.
GOLDEN_METADATA = {
    "model": "golden", "created": "2024-01-01T00:00:00+00:00",
    "numbers": {"int": 42, "negative": -7, "int64_min": -(2**63), "int64_max": 2**63 - 1, "float": 0.1,
                "tiny": 5e-324, "huge": 1.7976931348623157e308, "negative_zero": -0.0, "nan": None, "inf": None},
    "text": {"unicode": "naïve µ — ✓ 🎵", "escapes": "quote \" backslash \\ newline \n tab \t nul \0"},
    "list": [1, 2.5, "three", None, True, False, [], {}],
    "tuple": [1, 2],
    "nested": {"a": {"b": {"c": [1, [2, [3]]]}}},
}


def test_golden_file(backend, tmp_path):
    golden = GOLDEN.read_bytes()
    assert len(golden) < 10_000
    expected, _, kind = golden_inputs()
    tensors, metadata = container.read(GOLDEN)
    # The committed file itself is checked against the spec, so that a regeneration by a broken writer shows.
    header = check_against_spec(golden, tensors, metadata)
    assert header["kind"] == kind
    assert list(tensors) == sorted(expected)  # name order, by code point
    for name, tensor in expected.items():
        assert tensors[name].dtype == tensor.dtype and tensors[name].shape == tensor.shape, name
        assert raw(tensors[name]) == raw(tensor), f"{name}: {tensors[name]} != {tensor}"
    # json.dumps tells -0.0 from 0.0, which == does not.
    assert metadata == GOLDEN_METADATA
    assert json.dumps(metadata, sort_keys=True) == json.dumps(GOLDEN_METADATA, sort_keys=True)
    assert container.read_metadata(GOLDEN) == GOLDEN_METADATA

    container.write(tmp_path / "golden.sda", *golden_inputs())
    assert (tmp_path / "golden.sda").read_bytes() == golden, (
        "the writer no longer produces tests/data/golden.sda byte for byte: the format drifted. If that is "
        "deliberate (and versioned), regenerate it: .venv/bin/python tests/test_sdafile_robustness.py "
        "--regenerate-golden")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate-golden"]:
        sys.exit(f"usage: {sys.argv[0]} --regenerate-golden   (rewrites {GOLDEN} with sdafile.{container.BACKEND})")
    GOLDEN.parent.mkdir(exist_ok=True)
    container.write(GOLDEN, *golden_inputs())
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes) with the {container.BACKEND} backend")
