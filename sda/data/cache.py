"""Decoded files on disk, so that a second pass over a folder decodes nothing that has not changed.

    cache = DecodedCache.open(DecodeOptions())        # None when the options say no cache
    key = entry_key(folder / source, audio, "mels")   # None if the file cannot be looked at (it is decoded anyway)
    entry = cache.get(key)                            # Entry(meta, array) or None: missing, stale or damaged
    cache.get(key, payload=False)                     # the meta alone (a preflight needs no chunks)
    cache.put(key, {"frames": 44100}, chunks)         # chunks: a float32 array of any shape, e.g. [n, n_mels, frames]

An entry is named by a digest of everything its content depends on: the file's resolved path, size and mtime_ns, the
AudioConfig (every field shapes the chunks or their log-mels), what is stored ("mels", "waves/12") and CACHE_FORMAT.
A changed file, setting or format is a new name; the old entry is never read again and goes when the cap needs room.

A cache file is an input like any other, which anyone who can write the folder could have made: it is never
unpickled. It holds MAGIC, the header's length (uint32, little-endian), the header (JSON: key, meta, shape,
payload digest), the header's blake2b digest, then the payload, raw little-endian float32. Everything is checked
before it is believed (the header's size and digest, that it is this entry's, that the shape matches the file's
length, before anything is allocated, then the payload's digest); an entry that fails is deleted and counted in
`refused`, and the caller decodes the file again. Writes go to a temporary file, then os.replace: a crash or a full
disk leaves no half entry under an entry's name. A cache that cannot be written degrades to none, with one note.

Size: entries over DecodeOptions.cache_max_bytes in all are deleted least recently used first (a hit sets the
entry's mtime, the LRU clock; atime is often not kept).
"""

import dataclasses
import hashlib
import json
import os
import secrets
import struct
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sda.config import AudioConfig, DecodeOptions
from sda.text import printable

CACHE_FORMAT = 1  # bump when what an entry holds, or how it is computed, changes
MAGIC = b"SDADEC\x00\x01"
SUFFIX = ".sdadec"
MAX_HEADER = 1 << 16  # bytes: a header is a few hundred
_LENGTH = struct.Struct("<I")
_DIGEST = 32  # blake2b digest bytes
_FLOAT32 = np.dtype("<f4")


@dataclass(frozen=True)
class Key:
    name: str  # the entry's file name, a hex digest of what the content depends on
    identity: tuple[int, int]  # (st_size, st_mtime_ns) of the file when the key was made: unchanged after decoding?


@dataclass(frozen=True)
class Entry:
    meta: dict  # what the caller stored with the array (JSON values)
    array: np.ndarray | None  # float32, the shape it was stored with; None when asked for the meta alone


def entry_key(path: Path, audio: AudioConfig, what: str) -> Key | None:
    """The key of what is stored for the file at path under audio; None when it cannot be looked at (its decode
    will say why)."""
    try:
        found = os.stat(path)
        resolved = os.path.realpath(path)
    except (OSError, ValueError):
        return None
    described = json.dumps({"format": CACHE_FORMAT, "path": os.fsencode(resolved).hex(), "size": found.st_size,
                            "mtime_ns": found.st_mtime_ns, "audio": dataclasses.asdict(audio), "what": what},
                           sort_keys=True)
    return Key(hashlib.blake2b(described.encode(), digest_size=20).hexdigest(), (found.st_size, found.st_mtime_ns))


def unchanged(path: Path, key: Key) -> bool:
    """Whether the file still has the size and mtime its key was made with (so a decode may be stored under it)."""
    try:
        found = os.stat(path)
    except OSError:
        return False
    return (found.st_size, found.st_mtime_ns) == key.identity


@dataclass
class DecodedCache:
    directory: Path
    max_bytes: int
    hits: int = 0
    misses: int = 0
    written: int = 0
    refused: int = 0  # damaged or foreign entries, deleted
    notes: list[str] = field(default_factory=list)  # for the report: why the cache stopped being written
    _writable: bool = True
    _total: int | None = None  # bytes of entries in directory, counted at the first write

    @classmethod
    def open(cls, options: DecodeOptions) -> "DecodedCache | None":
        return cls(options.directory(), options.cache_max_bytes) if options.cache else None

    def get(self, key: Key | None, payload: bool = True) -> Entry | None:
        if key is None:
            return None
        path = self.directory / (key.name + SUFFIX)
        try:
            with open(path, "rb") as file:
                entry = _read(file, key.name, payload)
        except FileNotFoundError:
            entry = None
        except (OSError, ValueError, RecursionError):  # damaged, truncated, foreign, unreadable: never believed
            entry = None
            self.refused += 1
            self._delete(path)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        with suppress(OSError):
            os.utime(path)  # the LRU clock
        return entry

    def put(self, key: Key | None, meta: dict, array: np.ndarray) -> None:
        if key is None or not self._writable:
            return
        array = np.ascontiguousarray(array, dtype=_FLOAT32)
        data = array.tobytes()
        header = json.dumps({"format": CACHE_FORMAT, "key": key.name, "meta": meta, "shape": list(array.shape),
                             "payload_blake2b": hashlib.blake2b(data, digest_size=_DIGEST).hexdigest()}).encode()
        blob = b"".join([MAGIC, _LENGTH.pack(len(header)), header, hashlib.blake2b(header, digest_size=_DIGEST)
                        .digest(), data])
        if len(blob) > self.max_bytes:  # alone over the cap: kept by no one
            return
        path = self.directory / (key.name + SUFFIX)
        tmp = self.directory / f".{key.name}.{secrets.token_hex(4)}.tmp"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._make_room(len(blob))
            with open(tmp, "wb") as file:
                file.write(blob)
            os.replace(tmp, path)
        except OSError as exc:
            self._delete(tmp)
            self._writable = False
            self.notes.append(f"the decoded-audio cache {printable(str(self.directory))} cannot be written "
                              f"({printable(exc.strerror or str(exc)).lower()}): decoding without it. Free some "
                              "space, or set SDA_CACHE_DIR (--cache-dir) to a writable folder, or --no-cache")
            return
        self.written += 1
        self._total = (self._total or 0) + len(blob)

    def _make_room(self, incoming: int) -> None:
        """Delete the least recently used entries until incoming more bytes fit under max_bytes."""
        if self._total is not None and self._total + incoming <= self.max_bytes:
            return
        entries = []
        for path in self.directory.glob("*" + SUFFIX):
            try:
                found = path.stat()
            except OSError:
                continue
            entries.append((found.st_mtime_ns, found.st_size, path))
        entries.sort()
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total + incoming <= self.max_bytes:
                break
            self._delete(path)
            total -= size
        self._total = total

    @staticmethod
    def _delete(path: Path) -> None:
        with suppress(OSError):
            path.unlink()


def _read(file, name: str, payload: bool) -> Entry:
    """The entry in file, checked (ValueError saying what is wrong otherwise); payload=False stops after the header."""
    size = os.fstat(file.fileno()).st_size
    head = file.read(len(MAGIC) + _LENGTH.size)
    if len(head) < len(MAGIC) + _LENGTH.size or head[:len(MAGIC)] != MAGIC:
        raise ValueError("not a cache entry of this version")
    (length,) = _LENGTH.unpack(head[len(MAGIC):])
    if length > MAX_HEADER or len(head) + length + _DIGEST > size:
        raise ValueError("header length out of bounds")
    header = file.read(length)
    if hashlib.blake2b(header, digest_size=_DIGEST).digest() != file.read(_DIGEST):
        raise ValueError("header digest mismatch")
    fields = json.loads(header)
    if not isinstance(fields, dict) or fields.get("format") != CACHE_FORMAT or fields.get("key") != name:
        raise ValueError("another entry's header")
    shape, meta, digest = fields.get("shape"), fields.get("meta"), fields.get("payload_blake2b")
    if (not isinstance(shape, list) or not all(type(n) is int and 0 <= n < 2**31 for n in shape)
            or not isinstance(meta, dict) or not isinstance(digest, str)):
        raise ValueError("malformed header")
    count = int(np.prod(shape, dtype=object)) if shape else 1
    start = len(head) + length + _DIGEST
    if start + count * _FLOAT32.itemsize != size:  # checked before anything of that size is allocated
        raise ValueError("payload size does not match the shape")
    if not payload:
        return Entry(meta, None)
    data = bytearray(count * _FLOAT32.itemsize)  # writable, so the array (and a tensor of it) owns it
    if file.readinto(data) != len(data) or hashlib.blake2b(data, digest_size=_DIGEST).hexdigest() != digest:
        raise ValueError("payload digest mismatch")
    return Entry(meta, np.frombuffer(data, dtype=_FLOAT32).reshape(shape))
