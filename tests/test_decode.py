"""Decoding a folder in parallel (sda.data.parallel) and through the on-disk cache (sda.data.cache)."""

import hashlib
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from sda.config import AudioConfig, DecodeOptions, VQVAEConfig
from sda.data import cache as cache_module
from sda.data import dataset, parallel, synth
from sda.data.cache import DecodedCache, entry_key
from sda.data.dataset import FILES, VALIDATION, load_dataset, preflight
from sda.data.parallel import LoadingStopped
from tests.helpers import sda

CONFIG = VQVAEConfig(audio=AudioConfig(n_mels=32, chunk_frames=16), validation_fraction=0.25)
ONE = DecodeOptions(workers=1, cache=False)


def age(folder, seconds=60.0):
    """Set every file's mtime back: a file changed under RECENT_SECONDS ago is not cached (sda.data.dataset)."""
    then = time.time() - seconds
    for path in folder.rglob("*"):
        os.utime(path, (then, then))


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """9 generated sounds (wav and flac, several rates, mono and stereo), one long file, and a corrupt one."""
    folder = tmp_path_factory.mktemp("kit")
    synth.write_collection(folder, n_files=8, seed=4, formats=("wav", "flac"))
    long = 0.3 * np.sin(np.arange(44100 * 6) * 2 * np.pi * 220 / 44100)[:, None].repeat(2, axis=1)
    (folder / "sub").mkdir()
    sf.write(folder / "sub" / "long.flac", long, 44100)
    (folder / "broken.wav").write_bytes(b"RIFF" + bytes(range(256)) * 20)
    age(folder)
    return folder


def same(a, b):
    assert a.preflight == b.preflight and a.preflight.rejected == b.preflight.rejected
    assert torch.equal(a.train_mels, b.train_mels) and torch.equal(a.val_mels, b.val_mels)
    assert torch.equal(a.val_audio, b.val_audio)


@pytest.fixture(scope="module")
def one_process(kit):
    return load_dataset(kit, CONFIG, decode=ONE)


def count_decodes(monkeypatch):
    """The files _decode is called for, in this process (workers=1)."""
    calls = []
    real = dataset._decode

    def counted(folder, source, audio, share=None):
        calls.append(source)
        return real(folder, source, audio, share)

    monkeypatch.setattr(dataset, "_decode", counted)
    return calls


@pytest.fixture
def every_file_to_the_pool(monkeypatch):
    """The kit decodes in well under parallel.ALONE_SECONDS: without this, it would never reach the pool."""
    monkeypatch.setattr(parallel, "BEGIN_HERE", False)


def test_a_pool_gives_the_one_process_result_bit_for_bit_in_scan_order(kit, one_process, every_file_to_the_pool):
    assert [r.path for r in one_process.preflight.rejected] == ["broken.wav"]
    pooled = load_dataset(kit, CONFIG, decode=DecodeOptions(workers=2, cache=False))
    same(one_process, pooled)
    assert [f.path for f in pooled.preflight.files] == sorted(f.path for f in pooled.preflight.files)


def slow_square(n: int) -> tuple[int, int]:
    time.sleep(0.02)
    return n * n, os.getpid()


def pools_started(monkeypatch) -> list:
    started, real = [], parallel._PoolStart

    def counted(workers):
        started.append(workers)
        return real(workers)

    monkeypatch.setattr(parallel, "_PoolStart", counted)
    return started


def test_a_short_pass_never_starts_a_pool(monkeypatch):
    started = pools_started(monkeypatch)
    results = list(parallel.in_order(slow_square, range(10), workers=2))  # 0.2 s, under ALONE_SECONDS
    assert [square for square, _ in results] == [n * n for n in range(10)]
    assert {pid for _, pid in results} == {os.getpid()} and started == []


def test_a_long_pass_decodes_alone_then_hands_the_rest_to_the_pool_in_order(monkeypatch):
    started = pools_started(monkeypatch)
    monkeypatch.setattr(parallel, "ALONE_SECONDS", 0.1)
    results = list(parallel.in_order(slow_square, range(400), workers=2))  # 8 s in one process
    assert [square for square, _ in results] == [n * n for n in range(400)]
    here = [i for i, (_, pid) in enumerate(results) if pid == os.getpid()]
    assert started == [2] and here == list(range(len(here)))  # this process took the first ones, and only those
    assert 5 <= len(here) < 400 and len({pid for _, pid in results}) == 3


EARLY = """
import sys
from multiprocessing import forkserver
from sda.data.parallel import start_early
start_early({workers})
print(forkserver._forkserver._forkserver_pid is not None, "torch" in sys.modules)
"""


@pytest.mark.parametrize("workers, started", [(2, True), (1, False)])
def test_start_early_starts_the_fork_server_at_once_without_importing_torch(workers, started):
    run = subprocess.run([sys.executable, "-c", EARLY.format(workers=workers)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [str(started), "False"]


def test_the_cli_has_not_imported_torch_when_a_command_starts():
    # sda train and sda ui call start_early before importing torch, so that the two imports overlap; an import of
    # torch at the top of sda.cli (it was there, through sda.cli.codes) would put the fork server's after it again.
    run = subprocess.run([sys.executable, "-c", "import sys, sda.cli.main; print('torch' in sys.modules)"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "False", run.stderr


def test_progress_counts_every_file_then_the_validation_files(kit, tmp_path):
    seen = []
    load_dataset(kit, CONFIG, decode=DecodeOptions(workers=2, cache_dir=tmp_path), on_progress=seen.append)
    files = [p for p in seen if p.stage == FILES]
    assert [p.done for p in files] == list(range(1, 11)) and {p.total for p in files} == {10}
    assert [p.stage for p in seen[len(files):]] == [VALIDATION] * 2 and seen[-1].done == seen[-1].total == 2
    again = []
    load_dataset(kit, CONFIG, decode=DecodeOptions(workers=2, cache_dir=tmp_path), on_progress=again.append)
    assert again[len(files) - 1].cached == 9  # all but the broken file, whose rejection is not cached
    assert again[-1].cached == 2


def test_the_stop_flag_ends_a_pooled_load_promptly(kit, every_file_to_the_pool):
    stop = threading.Event()

    def stop_after_the_first(progress):
        stop.set()

    began = time.monotonic()
    with pytest.raises(LoadingStopped):
        load_dataset(kit, CONFIG, stop, decode=DecodeOptions(workers=2, cache=False), on_progress=stop_after_the_first)
    assert time.monotonic() - began < 30
    with pytest.raises(LoadingStopped):  # set before: nothing is decoded
        preflight(kit, CONFIG.audio, decode=DecodeOptions(workers=2, cache=False), stop=stop)


def test_a_second_load_and_a_load_after_a_preflight_decode_nothing(kit, one_process, tmp_path, monkeypatch):
    calls = count_decodes(monkeypatch)
    decode = DecodeOptions(workers=1, cache_dir=tmp_path)
    preflight(kit, CONFIG.audio, seed=CONFIG.seed, validation_fraction=CONFIG.validation_fraction, decode=decode)
    assert len(calls) == 10  # the page's check: every file, its log-mels cached
    calls.clear()
    first = load_dataset(kit, CONFIG, decode=decode)  # Start: the validation waves only
    validation = [one_process.preflight.files[i].source for i in one_process.preflight.val_indices]
    assert sorted(calls) == sorted([*validation, "broken.wav"])
    calls.clear()
    second = load_dataset(kit, CONFIG, decode=decode)
    assert calls == ["broken.wav"]  # rejections are decoded again (not cached)
    same(one_process, first)
    same(one_process, second)


def test_a_changed_file_is_decoded_again(tmp_path, monkeypatch):
    folder = tmp_path / "kit"
    paths = synth.write_collection(folder, n_files=6, seed=2, formats=("wav",))
    age(folder)
    decode = DecodeOptions(workers=1, cache_dir=tmp_path / "cache")
    load_dataset(folder, CONFIG, decode=decode)
    synth.write_collection(tmp_path / "other", n_files=6, seed=9, formats=("wav",))
    os.replace(tmp_path / "other" / paths[0].name, paths[0])  # new content and size
    then = time.time() - 30
    os.utime(paths[0], (then, then))  # and mtime, old enough to be cached
    calls = count_decodes(monkeypatch)
    data = load_dataset(folder, CONFIG, decode=decode)
    assert paths[0].name in calls and len(set(calls)) <= 2  # it, and maybe again as a validation file
    same(load_dataset(folder, CONFIG, decode=ONE), data)


def test_a_file_changed_a_moment_ago_is_not_cached(tmp_path):
    folder = tmp_path / "kit"
    synth.write_collection(folder, n_files=5, seed=2, formats=("wav",))
    load_dataset(folder, CONFIG, decode=DecodeOptions(workers=1, cache_dir=tmp_path / "cache"))
    assert not list((tmp_path / "cache").glob("*" + cache_module.SUFFIX))


def entries(directory):
    return sorted(directory.glob("*" + cache_module.SUFFIX))


def forged(path, header: dict | bytes, payload: bytes = b""):
    """An entry whose header digest is right, whatever the header says."""
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(cache_module.MAGIC + len(blob).to_bytes(4, "little") + blob
                     + hashlib.blake2b(blob, digest_size=32).digest() + payload)


@pytest.mark.parametrize("damage", ["truncated", "payload", "garbage", "huge", "foreign", "shape", "meta", "nested"])
def test_a_damaged_or_hostile_entry_is_refused_deleted_and_rebuilt(kit, one_process, tmp_path, damage):
    decode = DecodeOptions(workers=1, cache_dir=tmp_path)
    load_dataset(kit, CONFIG, decode=decode)
    victims = entries(tmp_path)
    assert len(victims) == 11  # 9 files' log-mels, 2 validation files' waves
    for path in victims:
        data = path.read_bytes()
        length = int.from_bytes(data[8:12], "little")
        header = json.loads(data[12:12 + length])
        if damage == "truncated":
            path.write_bytes(data[:len(data) // 2])
        elif damage == "payload":
            path.write_bytes(data[:-5] + bytes(5 - i for i in range(5)))
        elif damage == "garbage":
            path.write_bytes(os.urandom(300))
        elif damage == "huge":  # a shape that would allocate petabytes, and its digest right
            forged(path, {**header, "shape": [2**30, 2**30, 2**30]}, data[12 + length + 32:])
        elif damage == "foreign":  # another entry's, renamed
            forged(path, {**header, "key": "0" * 40}, data[12 + length + 32:])
        elif damage == "shape":  # consistent with its payload, not with the settings
            forged(path, {**header, "shape": [int(np.prod(header["shape"]))]}, data[12 + length + 32:])
        elif damage == "meta":
            forged(path, {**header, "meta": {**header["meta"], "chunks": -1}}, data[12 + length + 32:])
        else:
            forged(path, b'{"meta": ' + b"[" * 20_000 + b"]" * 20_000 + b"}")  # json.loads recurses
    again = load_dataset(kit, CONFIG, decode=decode)
    same(one_process, again)
    assert len(entries(tmp_path)) == 11  # rebuilt
    same(one_process, load_dataset(kit, CONFIG, decode=decode))


def test_the_cache_refuses_what_it_cannot_check_before_allocating(tmp_path):
    cache = DecodedCache(tmp_path, 1 << 30)
    key = entry_key(tmp_path, CONFIG.audio, "mels")  # any path that exists gives a key
    cache.put(key, {"x": 1}, np.arange(6, dtype=np.float32).reshape(2, 3))
    entry = cache.get(key)
    assert entry.meta == {"x": 1} and entry.array.tolist() == [[0, 1, 2], [3, 4, 5]] and entry.array.flags.writeable
    path = entries(tmp_path)[0]
    path.write_bytes(cache_module.MAGIC + (2**31).to_bytes(4, "little"))  # a header length past the file
    assert cache.get(key) is None and cache.refused == 1 and not path.exists()


def test_the_size_cap_evicts_the_least_recently_used(tmp_path):
    files = []
    for i in range(4):
        files.append(tmp_path / f"f{i}")
        files[-1].write_bytes(b"x")
    keys = [entry_key(f, CONFIG.audio, "mels") for f in files]
    array = np.zeros((256, 256), dtype=np.float32)  # 256 KiB an entry
    cache = DecodedCache(tmp_path / "cache", 3 * array.nbytes + 4096)
    for i, key in enumerate(keys[:3]):
        cache.put(key, {}, array)
        os.utime(tmp_path / "cache" / (key.name + cache_module.SUFFIX), (1000 + i, 1000 + i))
    assert cache.get(keys[0]) is not None  # used: now the most recent
    cache.put(keys[3], {}, array)
    assert [cache.get(k) is not None for k in keys] == [True, False, True, True]
    assert sum(p.stat().st_size for p in entries(tmp_path / "cache")) <= cache.max_bytes


def test_a_cache_that_cannot_be_written_is_no_cache_with_one_note(kit, one_process, tmp_path):
    (tmp_path / "a-file").write_text("")
    decode = DecodeOptions(workers=1, cache_dir=tmp_path / "a-file" / "cache")  # cannot be made, even by root
    data = load_dataset(kit, CONFIG, decode=decode)
    same(one_process, data)
    text = data.preflight.format()
    assert text.count("note: the decoded-audio cache") == 1 and "cannot be written" in text and "--no-cache" in text


def test_train_with_no_cache_writes_nothing_to_the_cache(kit, tmp_path, decoded_cache):
    run = sda("train", kit, "--no-cache", "--epochs", "1", "--hidden-channels", "8", "--codebook-dim", "4",
              "--n-mels", "16", "--chunk-frames", "8", "--kmeans-iters", "1", "--out", tmp_path, "--model-name", "m")
    assert run.returncode == 0, run.stderr
    assert "read 10 audio files: 0 from the cache, 10 decoded" in run.stdout
    assert not any(decoded_cache.iterdir())


@pytest.mark.parametrize("args, message", [
    (["--decode-workers", "0"], "0 is too small: it must be at least 1"),
    (["--decode-workers", "many"], "'many' is not a whole number"),
    (["--cache-dir", "{file}"], "is a file, not a folder"),
    (["--cache-dir", ""], "give a folder for the cache"),
])
def test_a_bad_decoding_flag_exits_2_with_one_message(kit, tmp_path, args, message):
    (tmp_path / "f").write_text("")
    run = sda("train", kit, *[a.format(file=tmp_path / "f") for a in args])
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr
