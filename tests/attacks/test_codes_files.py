"""Attacks through codes files (issue 17): each test damages or crafts a codes file from a real one and checks that
sda.codes.load refuses it with an SdaError naming the file and what is wrong, and that sda decode refuses it (exit 2,
one message, no traceback) within a 6 GB address space. Names in the index are not refused but neutralised by
decode (tests/test_codes.py writes them; here every hostile name maps inside the folder)."""

import contextlib
import dataclasses
import io
import struct

import pytest
import torch

import sda.codes
from attacks.harness import refused, sda_limited
from sda.cli.main import main
from sda.errors import SdaCorruptError, SdaError, SdaFormatError
from sda.format import codesfile, container
from tests.helpers import coding_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return coding_model(tmp_path_factory.mktemp("model") / "m.sda", "m")


@pytest.fixture(scope="module")
def valid(model, folder, tmp_path_factory):
    """A codes file of three of the generated files, written by sda encode."""
    out = tmp_path_factory.mktemp("codes") / "valid.sda"
    picks = [str(p) for p in sorted(folder.iterdir())[:3]]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["encode", str(model), *picks, "--out", str(out)]) == 0
    return out


def craft(source, target, tensors=None, kind="codes", **changes):
    """target: source's tensors (or tensors(original)) and metadata with changes; "a__b__0" sets a nested key or
    list item, and DELETE removes it."""
    original, metadata = container.read(source)
    for dotted, value in changes.items():
        node, *path = [metadata, *dotted.split("__")]
        for key in path[:-1]:
            node = node[int(key) if isinstance(node, list) else key]
        last = int(path[-1]) if isinstance(node, list) else path[-1]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    container.write(target, tensors(original) if tensors else original, metadata, kind=kind)
    return target


DELETE = object()


def grid(index, value):
    name = codesfile.tensor_name(index)
    return lambda tensors: {**tensors, name: value(tensors[name]) if callable(value) else value}


def set_code(value):
    def edit(t):
        t = t.clone()
        t[0, 0] = value
        return t
    return edit


ATTACKS = {
    # wrong dtype, out-of-range codes
    "int32 codes": dict(tensors=grid(0, lambda t: t.int())),
    "int64 codes": dict(tensors=grid(0, lambda t: t.long())),
    "float codes": dict(tensors=grid(0, lambda t: t.float())),
    "a code equal to the codebook size": dict(tensors=grid(1, set_code(16))),
    "a negative code": dict(tensors=grid(1, set_code(-1))),
    # the index against the tensors
    "frames that are not the grid's": dict(entries__0__frames=3),
    "a grid of one level too few": dict(tensors=grid(0, lambda t: t[:2])),
    "a grid without its entry": dict(entries__2=DELETE),
    "an entry without its grid": dict(tensors=lambda t: {k: v for k, v in t.items() if k != codesfile.tensor_name(2)}),
    "an extra tensor": dict(tensors=lambda t: {**t, "evil": torch.zeros(2, dtype=torch.int16)}),
    "positions too few for the seconds": dict(entries__0__samples=10**6, entries__0__seconds=10**6 / 16000),
    "seconds that are not samples / rate": dict(entries__0__seconds=100.0),
    "levels that are not the model's grids": dict(codec__levels=2),
    "a frame rate that does not add up": dict(codec__frame_rate=99.0),
    # huge declared sizes
    "10**12 positions declared": dict(entries__0__frames=10**12),
    "10**15 samples declared": dict(entries__0__samples=10**15),
    "10**9 channels": dict(entries__0__channels=10**9),
    "a 1e300-second file": dict(entries__0__seconds=1e300),
    "100001 entries": dict(entries=[{}] * 100_001),
    "a codebook of 2**40 codes": dict(codec__codebook_size=2**40),
    "2**40 samples per position": dict(codec__samples_per_position=2**40),
    "a sample rate of 10**9": dict(entries__0__sample_rate=10**9),
    # metadata of the wrong types
    "levels as text": dict(codec__levels="3"),
    "levels as a float": dict(codec__levels=3.0),
    "frames as true": dict(entries__0__frames=True),
    "entries as an object": dict(entries={"0": {}}),
    "an entry as a list": dict(entries__0=[1, 2]),
    "no model identity": dict(model=DELETE),
    "a model identity of null": dict(model=None),
    "a short weights hash": dict(model__weights_sha256="abc"),
    "an uppercase weights hash": dict(model__weights_sha256="A" * 64),
    "a model name that is a number": dict(model__name=5),
    "a path that is a number": dict(entries__0__path=7),
    "an empty path": dict(entries__0__path=""),
    "a path of 70000 characters": dict(entries__0__path="a" * 70_000),
    "a model name of 5000 characters": dict(model__name="a" * 5000),
    "a codes format of true": dict(codes_format=True),
    "rms of null (NaN when written)": dict(entries__0__rms=float("nan")),
    "a negative rms": dict(entries__0__rms=-1.0),
    "seconds as text": dict(entries__0__seconds="0.4"),
    "an unknown entry field": dict(entries__0__evil=1),
    "a missing entry field": dict(entries__0__channels=DELETE),
    "an unknown top field": dict(evil=1),
    "a newer codes format": dict(codes_format=2),
    "metadata with no codec": dict(codec=DELETE),
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_crafted_codes_file_is_refused_by_load(valid, tmp_path, attack):
    path = craft(valid, tmp_path / "crafted.sda", **ATTACKS[attack])
    with pytest.raises(SdaFormatError, match="crafted.sda is not a codes file sda can read: "):
        sda.codes.load(path)


def test_the_valid_file_loads(valid):
    codes = sda.codes.load(valid)
    assert len(codes) == 3 and all(g.shape == (3, e.frames) for g, e in zip(codes.codes, codes.index, strict=True))


def _bytes_changed(valid, target, edit):
    data = bytearray(valid.read_bytes())
    target.write_bytes(bytes(edit(data)))
    return target


def _data_offset(data) -> int:
    return struct.unpack_from("<Q", data, 24)[0]


def _flip(data, at):
    data[at] ^= 0x40
    return data


DAMAGE = {
    "truncated in the prefix": (lambda d: d[:30], "truncated"),
    "truncated in the header": (lambda d: d[:100], "truncated"),
    "truncated in the codes": (lambda d: d[:-5], "truncated"),
    "a bad magic": (lambda d: b"NOT-SDA!" + d[8:], "is not an sda file"),
    "a damaged signature (text-mode copy)": (lambda d: _flip(d, 5), "signature is damaged"),
    "a wrong header checksum": (lambda d: _flip(d, 70), "the header is corrupt"),
    "a wrong codes checksum": (lambda d: _flip(d, _data_offset(d) + 1), "is corrupt (CRC-32"),
    "trailing data": (lambda d: d + b"\0" * 7, "trailing data"),
    "empty": (lambda d: b"", "is empty"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_codes_file_is_refused_naming_the_damage(valid, tmp_path, damage):
    edit, words = DAMAGE[damage]
    path = _bytes_changed(valid, tmp_path / "damaged.sda", edit)
    with pytest.raises(SdaError, match="damaged.sda") as caught:
        sda.codes.load(path)
    assert words in str(caught.value)
    if "checksum" in damage:
        assert isinstance(caught.value, SdaCorruptError)


def test_a_codes_file_of_another_kind_is_refused_both_ways(valid, model, tmp_path):
    as_model = craft(valid, tmp_path / "as-model.sda", kind="model")
    with pytest.raises(SdaFormatError, match="as-model.sda is an sda model, not a codes file"):
        sda.codes.load(as_model)
    with pytest.raises(SdaFormatError, match="is an sda model, not a codes file"):
        sda.codes.load(model)


@pytest.mark.parametrize("attack", ["10**12 positions declared", "a code equal to the codebook size"])
def test_sda_decode_refuses_a_crafted_codes_file_in_bounded_memory(valid, model, tmp_path, attack):
    path = craft(valid, tmp_path / "crafted.sda", **ATTACKS[attack])
    result = sda_limited("decode", model, path, "--out", tmp_path / "out", timeout=120)
    refused(result, "crafted.sda", "not a codes file sda can read")
    assert not (tmp_path / "out").exists()


def test_sda_decode_refuses_a_model_given_as_codes_and_codes_given_as_a_model(valid, model, tmp_path):
    out = io.StringIO()
    with contextlib.redirect_stderr(out):
        assert main(["decode", str(model), str(model), "--out", str(tmp_path / "out")]) == 2
        assert main(["decode", str(valid), str(valid), "--out", str(tmp_path / "out")]) == 2
        assert main(["encode", str(valid), str(valid), "--out", str(tmp_path / "c.sda")]) == 2
    said = out.getvalue()
    assert "is an sda model, not a codes file" in said and said.count("is an sda codes file, not a model") == 2
    assert "Traceback" not in said


HOSTILE_NAMES = ["../" * 50 + "etc/passwd", "/etc/passwd", "\\..\\..\\x", "a/./../../b", "\x00", "\x1b[2J", "~/x",
                 "..", ".", "/", "a" * 4096, "é/" * 100, "\u202egpj.exe", "con", "x/" + "y" * 300]


def test_every_hostile_name_maps_inside_the_output_folder(valid, tmp_path):
    path = craft(valid, tmp_path / "names.sda", entries__0__path="placeholder")
    loaded = codesfile.load(path)
    entries = tuple(dataclasses.replace(loaded.entries[0], path=name) for name in HOSTILE_NAMES)
    out = (tmp_path / "out").resolve()
    for name in codesfile.output_names(entries):
        parts = name.split("/")
        assert all(p and p not in (".", "..") and not p.startswith(".") and "\x00" not in p for p in parts), name
        assert all(len(p.encode()) <= codesfile.MAX_NAME_BYTES + len("-99.wav") for p in parts), name
        assert (out / name).resolve().is_relative_to(out) and not name.startswith("/"), name
        assert not any(c in name for c in "\x1b\u202e\\"), name
