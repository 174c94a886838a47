"""The v2 .sda container (SDA_FORMAT.md): round trips, canonical bytes, every rejection, atomic writes.

Every test runs once per backend (the C++ extension and pure Python: the autouse fixture
`backend`); the tests at the end compare the two backends directly.
"""

import errno
import json
import os
import pickle
import struct
import types
import zlib

import numpy as np
import pytest
import torch

from sda.errors import SdaCorruptError, SdaError, SdaFormatError, SdaVersionError
from sda.format import container

MAGIC = b"\x89SDA\r\n\x1a\n"
DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
    "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


def _cpp_unavailable():
    """Why the C++ backend cannot run here, or None."""
    try:
        previous = container.set_backend("cpp")
    except SdaError as exc:
        return str(exc)
    container.set_backend(previous)
    return None


CPP_UNAVAILABLE = _cpp_unavailable()
BACKENDS = ("python", "cpp")


@pytest.fixture(autouse=True, params=BACKENDS)
def backend(request):
    """Runs each test with each backend. A test parametrized with BOTH runs once and switches itself."""
    if request.param != "python" and CPP_UNAVAILABLE:
        pytest.skip(CPP_UNAVAILABLE)
    previous = container.BACKEND
    if request.param in BACKENDS:
        container.set_backend(request.param)
    yield request.param
    container.set_backend(previous)


BOTH = pytest.mark.parametrize("backend", ["both"], indirect=True)


# ----------------------------------------------------------------------------------------------
# Helpers: files built byte by byte from the spec, independently of the module under test.


def align(n):
    return -(-n // 64) * 64


def build(header=None, data=b"", *, header_bytes=None, major=2, minor=0, flags=0, reserved=bytes(20),
          header_length=None, data_offset=None, data_length=None, crc=None, padding=None):
    """An .sda file's bytes. The header CRC is right unless crc is given, whatever else is wrong."""
    if header_bytes is None:
        header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    h = len(header_bytes) if header_length is None else header_length
    d = align(64 + len(header_bytes)) if data_offset is None else data_offset
    length = len(data) if data_length is None else data_length
    prefix = struct.pack("<8sHHIQQQ", MAGIC, major, minor, flags, h, d, length)
    if crc is None:
        crc = zlib.crc32(header_bytes, zlib.crc32(prefix))
    if padding is None:
        padding = bytes(max(0, d - 64 - len(header_bytes)))
    return prefix + struct.pack("<I", crc) + reserved + header_bytes + padding + data


def entry(name, dtype, shape, offset, payload, **override):
    e = {"name": name, "dtype": dtype, "shape": shape, "offset": offset, "nbytes": len(payload),
         "crc32": zlib.crc32(payload)}
    e.update(override)
    return e


def header(tensors=(), metadata=None, **override):
    h = {"format": "sda", "version": [2, 0], "kind": "model", "tensors": list(tensors),
         "metadata": {} if metadata is None else metadata}
    h.update(override)
    return h


def raw_header(metadata_json="{}", tensors_json="[]"):
    """Header bytes with hand-written JSON, for what json.dumps will not produce."""
    text = f'{{"format":"sda","kind":"model","metadata":{metadata_json},"tensors":{tensors_json},"version":[2,0]}}'
    return text.encode("utf-8", "surrogateescape")


# Two tensors: x (F32 [2], 8 bytes, then 56 bytes of padding) and y (U8 [3]).
X, Y = struct.pack("<2f", 1.0, 2.0), b"\x01\x02\x03"
VALID = [entry("x", "F32", [2], 0, X), entry("y", "U8", [3], 64, Y)]
VALID_DATA = X + bytes(56) + Y


def put(tmp_path, data, name="f.sda"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def nested(levels):
    """levels dicts, each inside the previous one."""
    value = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def same(a, b):
    """Same dtype, shape and bytes (so NaNs and -0.0 compare exactly)."""
    return (a.dtype == b.dtype and a.shape == b.shape
            and torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8)))


def random_tensor(dtype, shape, rng):
    if dtype.is_floating_point:
        return torch.randn(shape, generator=rng, dtype=torch.float64).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=rng).bool()
    info = torch.iinfo(dtype)
    low, high = max(info.min, -(2**62)), min(info.max, 2**62)
    return torch.randint(low, high, shape, generator=rng, dtype=torch.int64).to(dtype)


def sample(tmp_path, rng, name="m.sda"):
    """A file written by container.write with three tensors, metadata, and padding after the header."""
    path = tmp_path / name
    tensors = {"enc.weight": random_tensor(torch.float32, (5, 3), rng),
               "enc.bias": random_tensor(torch.float16, (5,), rng),
               "codebook": random_tensor(torch.bfloat16, (4, 2), rng)}
    container.write(path, tensors, {"name": "sample", "epochs": 3})
    return path, tensors


def layout(path):
    """(header length H, data offset D, tensor table) of a file, read from its prefix and header."""
    raw = path.read_bytes()
    h, d = struct.unpack_from("<QQ", raw, 16)
    return h, d, json.loads(raw[64:64 + h])["tensors"]


# ----------------------------------------------------------------------------------------------
# Round trips


def test_set_backend(backend):
    assert backend == container.BACKEND
    assert container.set_backend("python") == backend
    assert container.BACKEND == "python"
    with pytest.raises(SdaError, match="the backend must be 'cpp' or 'python', not 'rust'"):
        container.set_backend("rust")
    assert container.BACKEND == "python"
    assert container.set_backend(backend) == "python"
    assert backend == container.BACKEND


def test_crc32_matches_zlib(rng):
    data = memoryview(torch.randint(0, 256, (70_000,), generator=rng, dtype=torch.uint8).numpy())
    for n in [*range(0, 130), 255, 256, 1000, 4097, 65_536]:  # the table tail, the 16- and 64-byte folds
        for start in (0, 1, 7, 16):
            part = data[start:start + n]
            assert container._crc(part) == zlib.crc32(part), (n, start)
            assert container._crc(part, 0xDEADBEEF) == zlib.crc32(part, 0xDEADBEEF), (n, start)


@pytest.mark.parametrize("code", list(DTYPES))
def test_round_trip_every_dtype_and_shape(tmp_path, rng, code):
    dtype = DTYPES[code]
    shapes = {"scalar": (), "empty": (0,), "empty3d": (3, 0, 2), "matrix": (7, 5),
              "eight_dims": (1, 2, 1, 2, 1, 2, 1, 2)}
    tensors = {name: random_tensor(dtype, shape, rng) for name, shape in shapes.items()}
    if dtype.is_floating_point:  # the bytes go through untouched: NaN, infinities, -0.0
        tensors["special"] = torch.tensor([float("nan"), float("inf"), float("-inf"), -0.0], dtype=dtype)
    path = tmp_path / "m.sda"
    container.write(path, tensors, {})
    back, metadata = container.read(path)
    assert metadata == {}
    assert list(back) == sorted(tensors)
    for name, t in tensors.items():
        assert same(back[name], t), name
        assert back[name].is_contiguous() and back[name].device.type == "cpu"
    table = {e["name"]: e for e in container.read_header(path)["tensors"]}
    assert table["scalar"]["shape"] == [] and table["empty3d"]["nbytes"] == 0
    assert all(e["dtype"] == code for e in table.values())


def test_no_tensors(tmp_path):
    path = tmp_path / "m.sda"
    container.write(path, {}, {"a": 1})
    assert container.read(path) == ({}, {"a": 1})
    h, d, _ = layout(path)
    assert path.stat().st_size == d == align(64 + h)  # prefix + header, padded to the data offset; no data


def test_non_contiguous_and_shared_inputs(tmp_path, rng):
    base = random_tensor(torch.float32, (6, 4), rng)
    param = torch.nn.Parameter(random_tensor(torch.float32, (3, 3), rng))
    tensors = {
        "transposed": base.t(),
        "strided": base[::2, 1:],
        "expanded": torch.ones(3, 1).expand(3, 4),
        "channels_last": random_tensor(torch.float32, (2, 3, 4, 5), rng).to(memory_format=torch.channels_last),
        "parameter": param,  # requires grad
        "negated_view": torch.tensor([1 + 2j, 3 - 4j]).conj().imag,  # a lazily negated, strided view
        "negated_contiguous": torch._neg_view(torch.tensor([1.0, 2.0])),
        "whole": base,  # shares storage with the two views above
        "first_rows": base[:2],
    }
    path = tmp_path / "m.sda"
    container.write(path, tensors, {})
    back, _ = container.read(path)
    for name, t in tensors.items():
        assert same(back[name], t.detach().resolve_neg()), name
    # Shared storage is written once per name: the loaded tensors are independent.
    back["whole"].zero_()
    assert same(back["first_rows"], base[:2])


def test_metadata_round_trip(tmp_path):
    metadata = {
        "name": "tiny ✓ модель",
        "config": {"codebook_size": 512, "levels": (4, 8), "commitment": 0.25, "nested": {"deep": [[1, [2, {}]], []]}},
        "health": {"perplexity": float("nan"), "usage": [1.0, float("inf"), -float("inf"), 0.1]},
        "numpy": {"f": np.float32(1.5), "i": np.int64(-3), "b": np.bool_(True), "nan": np.float64("nan")},
        "limits": [2**63 - 1, -(2**63)],
        "flags": [True, False, None],
        "text": 'quotes " and \\ and \n newline and [brackets {',
    }
    path = tmp_path / "m.sda"
    container.write(path, {}, metadata)
    expected = {
        "name": "tiny ✓ модель",
        "config": {"codebook_size": 512, "levels": [4, 8], "commitment": 0.25, "nested": {"deep": [[1, [2, {}]], []]}},
        "health": {"perplexity": None, "usage": [1.0, None, None, 0.1]},
        "numpy": {"f": 1.5, "i": -3, "b": True, "nan": None},
        "limits": [2**63 - 1, -(2**63)],
        "flags": [True, False, None],
        "text": 'quotes " and \\ and \n newline and [brackets {',
    }
    assert container.read(path)[1] == expected
    assert container.read_metadata(path) == expected
    assert b"NaN" not in path.read_bytes() and b"Infinity" not in path.read_bytes()


def test_kind(tmp_path):
    path = tmp_path / "c.sda"
    container.write(path, {"w": torch.ones(2)}, {"epoch": 3}, kind="checkpoint")
    header_ = container.read_header(path)
    assert header_["kind"] == "checkpoint" and header_["version"] == [2, 0] and header_["format"] == "sda"
    assert container.read(path, kind="checkpoint")[1] == {"epoch": 3}
    assert container.read_metadata(path, kind="checkpoint") == {"epoch": 3}
    with pytest.raises(SdaFormatError, match="is an sda checkpoint, not a model"):
        container.read(path, kind="model")
    with pytest.raises(SdaFormatError, match="is an sda checkpoint, not a model"):
        container.read_metadata(path, kind="model")
    with pytest.raises(SdaError, match="kind must be one of model, checkpoint"):
        container.write(path, {}, {}, kind="weights")


# ----------------------------------------------------------------------------------------------
# Canonical bytes


def test_bytes_match_the_spec_exactly(tmp_path):
    """The whole file, rebuilt here from SDA_FORMAT.md alone: a byte-identical target for every backend."""
    path = tmp_path / "m.sda"
    container.write(path, {"b": torch.arange(3, dtype=torch.int32), "a": torch.tensor([1.0, -2.0])},
                  {"z": 1, "a": [True, None, "é", 0.5]})
    a, b = struct.pack("<2f", 1.0, -2.0), struct.pack("<3i", 0, 1, 2)
    text = ('{"format":"sda","kind":"model","metadata":{"a":[true,null,"é",0.5],"z":1},"tensors":['
            f'{{"crc32":{zlib.crc32(a)},"dtype":"F32","name":"a","nbytes":8,"offset":0,"shape":[2]}},'
            f'{{"crc32":{zlib.crc32(b)},"dtype":"I32","name":"b","nbytes":12,"offset":64,"shape":[3]}}'
            '],"version":[2,0]}')
    hb = text.encode()
    d = align(64 + len(hb))
    prefix = MAGIC + struct.pack("<HHIQQQ", 2, 0, 0, len(hb), d, 76)
    expected = prefix + struct.pack("<I", zlib.crc32(prefix + hb)) + bytes(20) + hb + bytes(d - 64 - len(hb))
    expected += a + bytes(56) + b
    assert path.read_bytes() == expected


def test_identical_inputs_give_identical_bytes(tmp_path, rng):
    tensors = {"w": random_tensor(torch.float32, (4, 4), rng), "b": random_tensor(torch.int8, (3,), rng)}
    metadata = {"z": {"y": 1, "x": [2, 3]}, "a": "first", "m": 0.1}
    container.write(tmp_path / "1.sda", tensors, metadata)
    container.write(tmp_path / "2.sda", tensors, metadata)
    # Insertion order of neither dict matters; non-contiguous inputs give the same bytes as contiguous ones.
    reordered_tensors = {"b": tensors["b"], "w": tensors["w"].t().contiguous().t()}
    reordered_metadata = {"m": 0.1, "a": "first", "z": {"x": [2, 3], "y": 1}}
    container.write(tmp_path / "3.sda", reordered_tensors, reordered_metadata)
    first = (tmp_path / "1.sda").read_bytes()
    assert first == (tmp_path / "2.sda").read_bytes() == (tmp_path / "3.sda").read_bytes()


def test_read_metadata_reads_only_the_header(tmp_path, rng):
    path, _ = sample(tmp_path, rng)
    _, d, table = layout(path)
    raw = bytearray(path.read_bytes())
    for e in table:  # damage every tensor
        raw[d + e["offset"]] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert container.read_metadata(path) == {"name": "sample", "epochs": 3}
    assert [e["name"] for e in container.read_header(path)["tensors"]] == ["codebook", "enc.bias", "enc.weight"]
    with pytest.raises(SdaCorruptError):
        container.read(path)


# ----------------------------------------------------------------------------------------------
# Rejections: prefix and size


def test_valid_reference_file_reads(tmp_path):
    """The base that the malformed cases below each change in one way."""
    tensors, metadata = container.read(put(tmp_path, build(header(VALID), VALID_DATA)))
    assert tensors["x"].tolist() == [1.0, 2.0] and tensors["y"].tolist() == [1, 2, 3] and metadata == {}


@pytest.mark.parametrize("index", range(8))
def test_each_magic_byte_damaged(tmp_path, index):
    raw = bytearray(build(header(VALID), VALID_DATA))
    raw[index] ^= 0x01
    with pytest.raises(SdaFormatError, match="sda"):
        container.read(put(tmp_path, bytes(raw)))
    raw[index] ^= 0x81  # a different damage to the same byte
    with pytest.raises(SdaFormatError):
        container.read_metadata(put(tmp_path, bytes(raw)))


def test_damaged_signature_is_named(tmp_path):
    raw = build(header(VALID), VALID_DATA)
    with pytest.raises(SdaFormatError, match="signature is damaged.*binary mode"):
        container.read(put(tmp_path, b"\x09" + raw[1:]))  # the high bit stripped by a 7-bit transfer
    with pytest.raises(SdaFormatError, match="signature is damaged"):
        container.read(put(tmp_path, raw[:4] + b"\n" + raw[6:]))  # CRLF -> LF


def test_truncation_at_each_region(tmp_path, rng):
    path, _ = sample(tmp_path, rng)
    raw = path.read_bytes()
    h, d, table = layout(path)
    assert 64 + h < d, "the sample must have padding after the header"
    by_name = {e["name"]: e for e in table}
    second = by_name["enc.bias"]
    cuts = {
        "inside the magic": 5, "after the magic": 8, "inside the prefix": 40, "at the header": 64,
        "inside the header": 64 + h // 2, "at the padding": 64 + h, "inside the padding": d - 1, "at the data": d,
        "inside the first tensor": d + 3, "between tensors": d + second["offset"] - 1,
        "inside a later tensor": d + second["offset"] + 1, "one byte short": len(raw) - 1,
    }
    for where, size in cuts.items():
        short = put(tmp_path, raw[:size], "short.sda")
        with pytest.raises(SdaCorruptError, match="is truncated.*copy it again") as info:
            container.read(short)
        assert str(short) in str(info.value), where
        with pytest.raises(SdaCorruptError, match="is truncated"):
            container.read_metadata(short)
    with pytest.raises(SdaFormatError, match="is empty"):
        container.read(put(tmp_path, b"", "short.sda"))


def test_trailing_data(tmp_path, rng):
    path, _ = sample(tmp_path, rng)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(SdaCorruptError, match="1 bytes of trailing data"):
        container.read(path)
    with pytest.raises(SdaCorruptError, match="trailing data"):
        container.read_metadata(path)


def test_versions(tmp_path):
    with pytest.raises(SdaVersionError, match="v1 models are not supported; retrain with sda train"):
        container.read(put(tmp_path, build(header(VALID), VALID_DATA, major=1)))
    with pytest.raises(SdaVersionError, match="v3.0 file, newer than this sda reads.*upgrade sda"):
        container.read(put(tmp_path, build(header(VALID, version=[3, 0]), VALID_DATA, major=3)))
    with pytest.raises(SdaVersionError, match="upgrade sda"):
        container.read_metadata(put(tmp_path, b"\x89SDA\r\n\x1a\n\xff\xff" + bytes(54)))  # whatever follows
    with pytest.raises(SdaFormatError, match="unknown format version 0"):
        container.read(put(tmp_path, build(header(VALID, version=[0, 0]), VALID_DATA, major=0)))


def test_any_minor_version_reads_and_may_add_fields(tmp_path):
    future = header([{**VALID[0], "quantization": None}, VALID[1]], version=[2, 7], checksum_algorithm="crc32")
    tensors, _ = container.read(put(tmp_path, build(future, VALID_DATA, minor=7)))
    assert tensors["y"].tolist() == [1, 2, 3]
    # v2.0 has exactly the specified fields.
    with pytest.raises(SdaFormatError, match="unknown field"):
        container.read(put(tmp_path, build(header(VALID, checksum_algorithm="crc32"), VALID_DATA)))
    with pytest.raises(SdaFormatError, match="unknown field"):
        container.read(put(tmp_path, build(header([{**VALID[0], "extra": 1}, VALID[1]]), VALID_DATA)))


BAD_PREFIXES = [
    ({"flags": 1}, SdaFormatError, "unknown flags 0x1.*upgrade sda"),
    ({"flags": 1 << 31}, SdaFormatError, "unknown flags 0x80000000"),
    ({"reserved": b"\x01" + bytes(19)}, SdaFormatError, "reserved prefix bytes"),
    ({"reserved": bytes(19) + b"\x80"}, SdaFormatError, "reserved prefix bytes"),
    ({"header_length": 10_000}, SdaCorruptError, "is truncated.*inside the header"),
    ({"header_length": 2**63}, SdaFormatError, "header length .* over the 16777216-byte limit"),
    ({"header_length": 16 * 2**20 + 1}, SdaFormatError, "over the 16777216-byte limit"),
    ({"data_offset": 500}, SdaFormatError, "data offset 500 must be a multiple of 64"),
    ({"data_offset": 64, "padding": b""}, SdaFormatError, "data offset 64 must be a multiple of 64 and at least"),
    ({"data_length": 66}, SdaCorruptError, "1 bytes of trailing data"),
    ({"data_length": 68}, SdaCorruptError, "is truncated"),
    ({"data_length": 2**64 - 1}, SdaCorruptError, "is truncated"),
    ({"crc": 0}, SdaCorruptError, "the header is corrupt.*copy it again"),
]


@pytest.mark.parametrize(("change", "error", "message"), BAD_PREFIXES)
def test_bad_prefix_fields(tmp_path, change, error, message):
    with pytest.raises(error, match=message):
        container.read(put(tmp_path, build(header(VALID), VALID_DATA, **change)))


def test_larger_data_offset_is_accepted_with_zero_padding(tmp_path):
    raw = build(header(VALID), VALID_DATA, data_offset=align(64 + len(json.dumps(header(VALID)))) + 640)
    assert container.read(put(tmp_path, raw))[0]["y"].tolist() == [1, 2, 3]


def test_every_single_bit_flip_is_caught(tmp_path, rng):
    """Each byte of the file, one bit flipped: always an SdaError, never a wrong load or another exception."""
    path = tmp_path / "m.sda"
    container.write(path, {"a": random_tensor(torch.float32, (3,), rng), "b": torch.tensor([True, False])}, {"k": [1]})
    raw = path.read_bytes()
    for i in range(len(raw)):
        damaged = bytearray(raw)
        damaged[i] ^= 1 << (i % 8)
        path.write_bytes(bytes(damaged))
        with pytest.raises(SdaError):
            container.read(path)


def test_header_crc_mismatch(tmp_path, rng):
    path, _ = sample(tmp_path, rng)
    raw = bytearray(path.read_bytes())
    raw[70] ^= 0x04  # inside the header JSON
    path.write_bytes(bytes(raw))
    with pytest.raises(SdaCorruptError, match="the header is corrupt"):
        container.read(path)
    with pytest.raises(SdaCorruptError, match="the header is corrupt"):
        container.read_metadata(path)


def test_bit_flip_in_each_tensor_names_it(tmp_path, rng):
    path, tensors = sample(tmp_path, rng)
    raw = path.read_bytes()
    _, d, table = layout(path)
    for e in table:
        damaged = bytearray(raw)
        damaged[d + e["offset"] + e["nbytes"] // 2] ^= 0x10
        path.write_bytes(bytes(damaged))
        with pytest.raises(SdaCorruptError, match=f"tensor '{e['name']}' is corrupt.*copy it again"):
            container.read(path)
        back, _ = container.read(path, verify=False)  # unverified, the damaged bytes come through
        assert not same(back[e["name"]], tensors[e["name"]])


def test_non_zero_padding(tmp_path, rng):
    path, _ = sample(tmp_path, rng)
    raw = path.read_bytes()
    h, d, table = layout(path)
    second = sorted(table, key=lambda e: e["offset"])[1]
    for where, index in [("after the header", 64 + h), ("before tensor 'enc.bias'", d + second["offset"] - 1)]:
        damaged = bytearray(raw)
        damaged[index] = 0x20
        path.write_bytes(bytes(damaged))
        with pytest.raises(SdaCorruptError, match=f"the padding {where} holds non-zero bytes"):
            container.read(path)
        container.read(path, verify=False)
        container.read_metadata(path)


# ----------------------------------------------------------------------------------------------
# Rejections: the header JSON and the tensor table (all with a right header CRC)


def case(h, data=VALID_DATA, **kw):
    return build(h, data, **kw)


def changed(index, **fields):
    """The VALID header with one tensor entry's fields changed."""
    entries = [dict(e) for e in VALID]
    entries[index].update(fields)
    return header(entries)


BAD_HEADERS = {
    # layout of the tensor table
    "offset not aligned": (case(changed(1, offset=8)), "offset 8 is not a non-negative multiple"),
    "negative offset": (case(changed(0, offset=-64)), "offset -64 is not a non-negative"),
    "gap at the start": (case(header([{**VALID[0], "offset": 64}, {**VALID[1], "offset": 128}]),
                              bytes(64) + X + bytes(56) + Y), "offset 64 leaves a gap"),
    "gap between": (case(changed(1, offset=128), X + bytes(120) + Y), "offset 128 leaves a gap"),
    "overlap": (case(header([entry("x", "U8", [100], 0, bytes(100)), entry("y", "U8", [3], 64, bytes(3))]),
                     bytes(100)), "overlaps the previous tensor"),
    "descending offsets": (case(header([*VALID, entry("z", "U8", [0], 0, b"")])), "must be in ascending offset order"),
    "past the data": (case(changed(1, shape=[10], nbytes=10)), "extend past the data length 67"),
    "short of the data": (case(header(VALID), VALID_DATA + b"\0"), "the tensors end at 67 but the data length is 68"),
    "no tensors but data": (case(header([]), b"\0"), "the tensors end at 0 but the data length is 1"),
    "nbytes wrong": (case(changed(0, nbytes=4)), r"nbytes 4 is not product\(2,\) x 4"),
    "huge shape, huge nbytes": (case(changed(0, shape=[2**62, 2**62], nbytes=2**126)), "outside the 64-bit range"),
    "huge shape, nbytes fits": (case(changed(0, shape=[2**40], nbytes=2**42)), "extend past the data length"),
    "shape overflows nbytes": (case(changed(0, shape=[2**62, 4], nbytes=0)), "nbytes 0 is not"),
    "empty shape too large for torch": (case(header([entry("x", "F32", [2**62, 2**62, 0], 0, b"")]), b""),
                                        r"shape \[4611686018427387904, 4611686018427387904, 0\] is too large"),
    # tensor fields
    "duplicate name": (case(changed(1, name="x")), "the name 'x' appears twice"),
    "empty name": (case(changed(0, name="")), "name '' is not 1 to 255 UTF-8 bytes"),
    "NUL in name": (case(changed(0, name="a\0b")), "without NUL"),
    "name too long": (case(changed(0, name="é" * 128)), "is not 1 to 255 UTF-8 bytes"),
    "name not a string": (case(changed(0, name=7)), "name 7 is not"),
    "unknown dtype": (case(changed(0, dtype="F8")), "unknown dtype 'F8'"),
    "negative dimension": (case(changed(0, shape=[-2])), "shape .* non-negative integers"),
    "bool dimension": (case(changed(0, shape=[True, 2])), "shape .* non-negative integers"),
    "float dimension": (case(changed(0, shape=[2.0])), "shape .* non-negative integers"),
    "nine dimensions": (case(changed(0, shape=[1] * 8 + [2])), "at most 8 non-negative"),
    "shape not a list": (case(changed(0, shape=2)), "shape 2 is not a list"),
    "crc32 too large": (case(changed(0, crc32=2**32)), "crc32 4294967296 is not an integer"),
    "crc32 negative": (case(changed(0, crc32=-1)), "crc32 -1 is not"),
    "entry missing a field": (case(header([{k: v for k, v in VALID[0].items() if k != "crc32"}, VALID[1]])),
                              r"tensors\[0\] lacks crc32"),
    "entry not an object": (case(header([[1, 2], VALID[1]])), r"tensors\[0\] is not an object"),
    "bool byte not 0 or 1": (case(header([entry("b", "BOOL", [2], 0, b"\x00\x02")]), b"\x00\x02"),
                             "holds bytes other than 0 and 1"),
    # top-level fields
    "format": (case(header(VALID, format="safetensors")), "format is 'safetensors', not 'sda'"),
    "version mismatch": (case(header(VALID, version=[2, 1])), r"version is \[2, 1\], but the prefix says \[2, 0\]"),
    "version shape": (case(header(VALID, version=[2, 0, 0])), "version is"),
    "kind": (case(header(VALID, kind="weights")), "kind is 'weights', not one of model, checkpoint, codes"),
    "metadata not an object": (case(header(VALID, metadata=[1])), "metadata is not a JSON object"),
    "tensors not a list": (case({**header(), "tensors": {"x": 1}}, b""), "tensors is not a list"),
    "missing metadata": (case({k: v for k, v in header(VALID).items() if k != "metadata"}),
                         "the header lacks metadata"),
    "not an object": (case([1, 2]), "it is a JSON list, not an object"),
    # JSON
    "duplicate key": (case(None, b"", header_bytes=raw_header('{"a":1,"a":2}')), "duplicate key 'a'"),
    "duplicate top key": (case(None, b"", header_bytes=b'{"kind":"model",' + raw_header()[1:]), "duplicate key 'kind'"),
    "NaN literal": (case(None, b"", header_bytes=raw_header('{"a":NaN}')), "non-finite number NaN"),
    "Infinity literal": (case(None, b"", header_bytes=raw_header('{"a":Infinity}')), "non-finite number Infinity"),
    "-Infinity literal": (case(None, b"", header_bytes=raw_header('{"a":[-Infinity]}')), "non-finite number -Infinity"),
    "float overflow": (case(None, b"", header_bytes=raw_header('{"a":1e999}')), "overflows to infinity"),
    "int above 64 bits": (case(None, b"", header_bytes=raw_header('{"a":9223372036854775808}')), "outside the 64-bit"),
    "int below 64 bits": (case(None, b"", header_bytes=raw_header('{"a":-9223372036854775809}')), "outside the 64-bit"),
    "long int": (case(None, b"", header_bytes=raw_header('{"a":' + "9" * 5000 + "}")), "outside the 64-bit range"),
    # The metadata object is at depth 2, so 64 nested objects starting with it reach depth 65.
    "depth 65": (case(None, b"", header_bytes=raw_header('{"a":' * 64 + "1" + "}" * 64)), "deeper than 64 levels"),
    "depth 100000": (case(None, b"", header_bytes=raw_header("[" * 100_000 + "]" * 100_000)), "deeper than 64"),
    "invalid UTF-8": (case(None, b"", header_bytes=raw_header('{"a":"\udcff"}')), "invalid UTF-8 at byte"),
    "byte-order mark": (case(None, b"", header_bytes=b"\xef\xbb\xbf" + raw_header()), "byte-order mark"),
    "lone surrogate": (case(None, b"", header_bytes=raw_header('{"a":"\\ud800"}')), "lone surrogate"),
    "trailing garbage": (case(None, b"", header_bytes=raw_header() + b" x"), "malformed JSON"),
    "truncated JSON": (case(None, b"", header_bytes=raw_header()[:-1]), "malformed JSON"),
    "empty header": (case(None, b"", header_bytes=b""), "malformed JSON"),
}


@pytest.mark.parametrize("name", list(BAD_HEADERS))
def test_bad_header(tmp_path, name):
    raw, message = BAD_HEADERS[name]
    path = put(tmp_path, raw)
    with pytest.raises(SdaFormatError, match=message) as info:
        container.read(path)
    assert str(path) in str(info.value)
    if name != "bool byte not 0 or 1":  # that one is in the data, which read_metadata never reads
        with pytest.raises(SdaFormatError, match=message):
            container.read_metadata(path)


def test_limits_that_are_allowed(tmp_path):
    deepest = raw_header('{"a":' * 63 + '"[[[{{{"' + "}" * 63)  # depth 64; brackets inside strings do not count
    assert container.read_metadata(put(tmp_path, build(None, b"", header_bytes=deepest)))["a"]["a"]["a"]
    ints = raw_header('{"a":9223372036854775807,"b":-9223372036854775808,"c":-0,"d":1E308}')
    assert container.read_metadata(put(tmp_path, build(None, b"", header_bytes=ints))) == {
        "a": 2**63 - 1, "b": -(2**63), "c": 0, "d": 1e308}
    escapes = raw_header('{"q\\"[":"\\\\","\\ud83d\\ude00":"\\u00e9"}')
    assert container.read_metadata(put(tmp_path, build(None, b"", header_bytes=escapes))) == {'q"[': "\\", "😀": "é"}
    long_name = [entry("é" * 127 + "a", "U8", [1] * 8, 0, b"\x07")]
    assert container.read(put(tmp_path, build(header(long_name), b"\x07")))[0]["é" * 127 + "a"].shape == (1,) * 8


# ----------------------------------------------------------------------------------------------
# Foreign files


class _Marker:
    """Unpickling this creates a file: the proof that a loader ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_torch_save_zip_is_named(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(SdaFormatError, match="zip archive: a torch.save checkpoint or an sda v1 model") as info:
        container.read(path)
    assert "v1 models are not supported; retrain with sda train" in str(info.value)
    with pytest.raises(SdaFormatError, match="zip archive"):
        container.read_metadata(path)


def test_no_code_runs_when_loading_a_hostile_file(tmp_path):
    # The payload is live: torch.load with weights_only=False does create its marker...
    live = tmp_path / "live.marker"
    torch.save({"x": _Marker(live)}, tmp_path / "live.pt")
    torch.load(tmp_path / "live.pt", weights_only=False)
    assert live.exists()
    # ... and sdafile reads neither form, naming the kind of file.
    marker = tmp_path / "pwned.marker"
    torch.save({"x": _Marker(marker)}, tmp_path / "evil.pt")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"x": _Marker(marker)}, protocol=4))
    with pytest.raises(SdaFormatError, match="torch.save"):
        container.read(tmp_path / "evil.pt")
    with pytest.raises(SdaFormatError, match="pickle"):
        container.read(tmp_path / "evil.pkl")
    for path in [tmp_path / "evil.pt", tmp_path / "evil.pkl"]:
        with pytest.raises(SdaFormatError):
            container.read_metadata(path)
        with pytest.raises(SdaFormatError):
            container.read_header(path)
    assert not marker.exists()


def _safetensors_bytes():
    h = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    return struct.pack("<Q", len(h)) + h + bytes(4)


FOREIGN = [
    (pickle.dumps({"a": 1}, protocol=2), "is a Python pickle.*can run code"),
    (pickle.dumps([1.0], protocol=5), "is a Python pickle"),
    (_safetensors_bytes(), "is a safetensors file"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 0), r"is a GGUF model \(llama.cpp\)"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 1234\n",
     "is a git-lfs pointer.*git lfs pull"),
    (b"<!DOCTYPE html>\n<html><body>Sign in</body></html>", "is an HTML page.*download the file again"),
    (b" \r\n\t<HTML><HEAD><TITLE>404</TITLE></HEAD></HTML>", "is an HTML page"),
    (b"<html lang=en>", "is an HTML page"),
    (b"\xef\xbb\xbf\n<!doctype html>", "is an HTML page"),
    (b"hello, world\n", "is not an sda file .it starts with 68 65 6c 6c 6f 2c 20 77."),
    (b"\x89PNG\r\n\x1a\n" + bytes(24), "is not an sda file .it starts with 89 50 4e 47"),
]


@pytest.mark.parametrize(("content", "message"), FOREIGN)
def test_foreign_files_are_named(tmp_path, content, message):
    path = put(tmp_path, content, "thing.sda")
    with pytest.raises(SdaFormatError, match=message):
        container.read(path)
    with pytest.raises(SdaFormatError, match=message):
        container.read_metadata(path)


def test_legacy_torch_save_and_numpy_are_named(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(SdaFormatError, match="is a Python pickle"):
        container.read(tmp_path / "legacy.pt")
    np.save(tmp_path / "a.npy", np.arange(3))
    with pytest.raises(SdaFormatError, match=r"is a NumPy \.npy array"):
        container.read(tmp_path / "a.npy")


def test_paths_that_are_not_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.sda"):
        container.read(tmp_path / "missing.sda")
    with pytest.raises(FileNotFoundError):
        container.read_metadata(tmp_path / "missing.sda")
    with pytest.raises(SdaFormatError, match="is a directory"):
        container.read(tmp_path)
    if hasattr(os, "mkfifo"):  # opening a FIFO would block until a writer came
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(SdaFormatError, match="is not a regular file"):
            container.read(tmp_path / "fifo")


# ----------------------------------------------------------------------------------------------
# Writing: argument checks and atomicity


BAD_WRITES = [
    ({1: torch.ones(1)}, {}, "tensor names must be strings"),
    ({"": torch.ones(1)}, {}, "must be 1 to 255 UTF-8 bytes without NUL"),
    ({"a\0b": torch.ones(1)}, {}, "without NUL"),
    ({"é" * 128: torch.ones(1)}, {}, "must be 1 to 255 UTF-8 bytes"),
    ({"\ud800": torch.ones(1)}, {}, "not valid Unicode"),
    ({"w": np.ones(2)}, {}, "tensor 'w' is a ndarray, not a torch.Tensor"),
    ({"w": torch.ones(2, dtype=torch.complex64)}, {}, "dtype torch.complex64, which .sda files do not store"),
    ({"w": torch.empty(2, dtype=torch.uint16)}, {}, "dtype torch.uint16"),
    ({"w": torch.ones(2).to(torch.float8_e4m3fn)}, {}, "dtype torch.float8_e4m3fn"),
    ({"w": torch.ones([1] * 9)}, {}, "has 9 dimensions; .sda files store at most 8"),
    ({"w": torch.empty([2**62, 0, 2**62])}, {}, r"product of its non-zero dimensions is 2\*\*63 or more"),
    ({"w": torch.eye(2).to_sparse()}, {}, "layout torch.sparse_coo"),
    ({"w": torch.empty(2, device="meta")}, {}, "is on the meta device"),
    ({}, [], "metadata must be a mapping"),
    ([torch.ones(1)], {}, "tensors must be a mapping"),
    ({}, {1: "a"}, r"metadata: the key 1 is a int; JSON keys are strings"),
    ({}, {"a": {"b": {1, 2}}}, r"metadata\['a'\]\['b'\]: cannot store a set"),
    ({}, {"a": object()}, "cannot store a object"),
    ({}, {"a": torch.ones(1)}, "cannot store a Tensor"),
    ({}, {"a": [2**63]}, r"metadata\['a'\]\[0\]: the integer 9223372036854775808 does not fit in 64 bits"),
    ({}, {"a": "\udcff"}, "is not valid Unicode"),
    ({}, {"deep": nested(63)}, "nests deeper than"),
    ({}, {"x": "a" * (16 * 2**20)}, "over the 16777216-byte limit"),
]


@pytest.mark.parametrize(("tensors", "metadata", "message"), BAD_WRITES)
def test_write_rejects_bad_arguments(tmp_path, tensors, metadata, message):
    with pytest.raises(SdaError, match=message):
        container.write(tmp_path / "m.sda", tensors, metadata)
    assert os.listdir(tmp_path) == []


def test_write_rejects_cycles_and_accepts_the_deepest_metadata(tmp_path):
    cycle = []
    cycle.append(cycle)
    with pytest.raises(SdaError, match="nests deeper than the header's limit of 64 levels .or holds a reference cycle"):
        container.write(tmp_path / "m.sda", {}, {"c": cycle})
    container.write(tmp_path / "m.sda", {}, {"deep": nested(62)})  # the metadata object is depth 2 of the header
    assert container.read_metadata(tmp_path / "m.sda")["deep"]["a"]["a"]


@pytest.fixture
def old_file(tmp_path):
    path = tmp_path / "m.sda"
    container.write(path, {"w": torch.zeros(4)}, {"version": "old"})
    return path, path.read_bytes()


def _assert_untouched(old_file):
    path, before = old_file
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name], "a temporary file was left behind"


def break_write_all(monkeypatch, exception, items_written=None):
    """Make the backend's write_all write its first items_written items (all: None), then raise exception."""
    real = container._io

    def write_all(fd, path, items):
        real.write_all(fd, path, items if items_written is None else items[:items_written])
        raise exception

    broken = types.SimpleNamespace(crc32=real.crc32, read_into=real.read_into, first_nonzero=real.first_nonzero,
                                   write_all=write_all)
    monkeypatch.setattr(container, "_io", broken)


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_write_keeps_the_old_file(old_file, monkeypatch, failing):
    exception = OSError(errno.EIO, f"simulated {failing} failure")
    if failing == "fsync":  # everything written, then the backend's fsync fails
        break_write_all(monkeypatch, exception)
    else:
        monkeypatch.setattr(os, "replace", lambda *args: (_ for _ in ()).throw(exception))
    with pytest.raises(OSError, match=f"simulated {failing} failure"):
        container.write(old_file[0], {"w": torch.ones(4)}, {"version": "new"})
    monkeypatch.undo()
    _assert_untouched(old_file)


@pytest.mark.parametrize("exception", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_write_interrupted_midway_keeps_the_old_file(old_file, monkeypatch, exception):
    break_write_all(monkeypatch, exception, items_written=2)  # the header and the first tensor
    with pytest.raises(type(exception)):
        container.write(old_file[0], {"a": torch.ones(4), "b": torch.ones(4)}, {"version": "new"})
    monkeypatch.undo()
    _assert_untouched(old_file)


def test_backend_os_errors_name_the_path(tmp_path):
    """The backend's own OSErrors carry the errno and the path (the C++ one builds them itself)."""
    if os.path.exists("/dev/full"):  # every write to it fails with ENOSPC
        fd = os.open("/dev/full", os.O_WRONLY)
        try:
            with pytest.raises(OSError) as info:
                container._io.write_all(fd, "/dev/full", [(0, b"sda")])
        finally:
            os.close(fd)
        assert info.value.errno == errno.ENOSPC and info.value.filename == "/dev/full"
    fd = os.open(tmp_path, os.O_RDONLY)  # a directory cannot be read
    try:
        with pytest.raises(IsADirectoryError) as info:
            container._io.read_into(fd, str(tmp_path), [(0, bytearray(4))])
    finally:
        os.close(fd)
    assert info.value.errno == errno.EISDIR and info.value.filename == str(tmp_path)


def test_backend_short_reads(tmp_path):
    path = put(tmp_path, bytes(100))
    fd = os.open(path, os.O_RDONLY)
    try:
        buffers = [bytearray(b"\xff" * 50), bytearray(40)]
        assert container._io.read_into(fd, str(path), [(0, buffers[0]), (60, buffers[1])]) == [zlib.crc32(bytes(50)),
                                                                                          zlib.crc32(bytes(40))]
        assert buffers[0] == bytes(50)
        with pytest.raises(EOFError) as info:
            container._io.read_into(fd, str(path), [(0, bytearray(50)), (80, bytearray(40))])
        assert (info.value.index, info.value.offset) == (1, 100)
        assert container._io.first_nonzero(fd, str(path), [(0, 10), (10, 100)]) == -1
        with pytest.raises(EOFError) as info:
            container._io.first_nonzero(fd, str(path), [(0, 10), (90, 120)])
        assert (info.value.index, info.value.offset) == (1, 100)
    finally:
        os.close(fd)


@pytest.mark.parametrize(("cut", "where"), [(-5, "inside tensor 'enc.weight'"),
                                            ("padding", "inside the padding after the header")])
def test_file_that_shrinks_while_it_is_read(tmp_path, rng, monkeypatch, cut, where):
    """The size is checked first; a file cut short after that is still reported as truncated."""
    path, _ = sample(tmp_path, rng)
    _, d, _ = layout(path)
    size = d - 1 if cut == "padding" else path.stat().st_size + cut
    real_read_header = container._read_header

    def read_header_then_cut(f, p):
        result = real_read_header(f, p)
        os.truncate(path, size)
        return result

    monkeypatch.setattr(container, "_read_header", read_header_then_cut)
    with pytest.raises(SdaCorruptError, match=f"is truncated: it ends after {size} bytes, {where}; the copy"):
        container.read(path)


def test_bad_tensor_keeps_the_old_file(old_file):
    with pytest.raises(SdaError, match="meta device"):
        container.write(old_file[0], {"a": torch.ones(2), "b": torch.empty(2, device="meta")}, {})
    _assert_untouched(old_file)


def test_write_replaces_and_respects_the_umask(old_file):
    path, _ = old_file
    previous = os.umask(0o022)
    try:
        container.write(path, {"w": torch.ones(4)}, {"version": "new"})
    finally:
        os.umask(previous)
    assert container.read(path)[1] == {"version": "new"}
    assert os.listdir(path.parent) == [path.name]
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o644


def test_write_into_a_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        container.write(tmp_path / "no" / "m.sda", {}, {})


# ----------------------------------------------------------------------------------------------
# The two backends against each other (each test runs once, switching backends itself)


def with_each_backend(fn):
    """{backend: fn()}, calling fn once with each backend."""
    results = {}
    for name in BACKENDS:
        previous = container.set_backend(name)
        try:
            results[name] = fn()
        finally:
            container.set_backend(previous)
    return results


def outcome(fn, *args, **kwargs):
    """What fn did: ("ok", its result), or the exception's type and message."""
    try:
        return "ok", fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any difference between the backends matters
        return type(exc), str(exc)


def read_everything(path):
    """The outcomes of read (verified and not) and read_metadata on path, comparable with ==."""

    def tensors_and_metadata(verify):
        tensors, metadata = container.read(path, verify=verify)
        return {name: (t.dtype, tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes())
                for name, t in tensors.items()}, metadata

    return (outcome(tensors_and_metadata, True), outcome(tensors_and_metadata, False),
            outcome(container.read_metadata, path))


@BOTH
def test_backends_write_identical_bytes_and_read_each_other(tmp_path, rng):
    tensors = {f"t.{code}": random_tensor(dtype, (3, 5), rng) for code, dtype in DTYPES.items()}
    tensors["big"] = random_tensor(torch.float32, ((5 << 20) // 4 + 3,), rng)  # several read chunks and a tail
    tensors["scalar"] = torch.tensor(2.5)
    tensors["zz"] = torch.empty(0)  # last and empty: the file still ends at D + L, after the padding
    metadata = {"name": "both", "loss": [0.5, float("nan")], "nested": {"b": [1, None], "a": "é"}}

    def write():
        path = tmp_path / f"{container.BACKEND}.sda"
        container.write(path, tensors, metadata)
        return path

    paths = with_each_backend(write)
    assert paths["python"].read_bytes() == paths["cpp"].read_bytes()
    _, d, table = layout(paths["cpp"])
    assert paths["cpp"].stat().st_size == d + table[-1]["offset"] and table[-1]["name"] == "zz"
    for path in paths.values():
        reads = with_each_backend(lambda path=path: container.read(path))
        for back, meta in reads.values():
            assert meta == {**metadata, "loss": [0.5, None]}
            assert list(back) == sorted(tensors)
            assert all(same(back[name], t) for name, t in tensors.items())


@BOTH
def test_a_tensor_bit_flip_gives_the_same_error_from_both_backends(tmp_path, rng):
    path = tmp_path / "m.sda"
    container.write(path, {"a": random_tensor(torch.float32, (3,), rng),
                         "big": random_tensor(torch.float32, ((5 << 20) // 4,), rng)}, {})
    raw = path.read_bytes()
    _, d, table = layout(path)
    for e in table:
        for index in (d + e["offset"], d + e["offset"] + e["nbytes"] - 1):  # for "big": the first and last chunk
            damaged = bytearray(raw)
            damaged[index] ^= 0x08
            path.write_bytes(bytes(damaged))
            results = with_each_backend(lambda: outcome(container.read, path))
            assert results["python"] == results["cpp"]
            assert results["cpp"][0] is SdaCorruptError
            assert results["cpp"][1].startswith(f"{path}: tensor {e['name']!r} is corrupt (CRC-32 0x")


def malformed_files(tmp_path):
    """(label, bytes) for every malformed file above, and every truncation and bit flip of two valid ones."""
    for name, (raw, _) in BAD_HEADERS.items():
        yield f"header: {name}", raw
    for change, _, _ in BAD_PREFIXES:
        yield f"prefix: {change}", build(header(VALID), VALID_DATA, **change)
    for content, _ in FOREIGN:
        yield f"foreign: {content[:16]!r}", content
    written = tmp_path / "written.sda"  # with a BOOL tensor, and padding after the header
    container.write(written, {"a": torch.tensor([1.0, -2.0, 3.0]), "b": torch.tensor([True, False])}, {"k": [1]})
    for valid in (build(header(VALID), VALID_DATA), written.read_bytes()):
        yield "trailing data", valid + b"\0"
        for size in range(len(valid)):
            yield f"cut to {size} bytes", valid[:size]
        for i in range(len(valid)):
            damaged = bytearray(valid)
            damaged[i] ^= 1 << (i % 8)
            yield f"bit flip in byte {i}", bytes(damaged)


@BOTH
def test_malformed_files_give_identical_errors_from_both_backends(tmp_path):
    path = tmp_path / "bad.sda"
    count = 0
    for label, raw in malformed_files(tmp_path):
        path.write_bytes(raw)
        results = with_each_backend(lambda: read_everything(path))
        assert results["python"] == results["cpp"], label
        assert results["cpp"][0][0] != "ok", label
        count += 1
    assert count > 1000


@BOTH
def test_bad_write_arguments_give_identical_errors_from_both_backends(tmp_path):
    for tensors, metadata, _ in BAD_WRITES:
        results = with_each_backend(lambda t=tensors, m=metadata: outcome(container.write, tmp_path / "m.sda", t, m))
        assert results["python"] == results["cpp"]
        assert issubclass(results["cpp"][0], SdaError), results["cpp"]
    assert os.listdir(tmp_path) == []
