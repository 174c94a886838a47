"""Attacks on the page (`sda ui`), item 3: the folder box given `/`, `../../..`, symlinks out of the data root.

With --data-root the folder box reads only folders under it: anything else is refused with a message
naming the root, before any file is listed, so no name from outside reaches the page. Beyond loopback
(--host other than loopback, or --share) --data-root is required.
"""

import os
from pathlib import Path

import pytest
from gradio_client import Client

from attacks.harness import refused, sda_limited
from sda.data.synth import write_collection
from sda.errors import ConfigError, DataError
from sda.ui.app import _check_folder, check_data_root, confine, reachable_beyond_loopback, serve
from tests.helpers import SMALL, START, free_port, shown_markdown


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """tmp/root holding one collection (kit) and links; tmp/outside holding a file nobody may see named."""
    base = tmp_path_factory.mktemp("root-base")
    root = base / "root"
    write_collection(root / "kit", n_files=6, seed=1)
    outside = base / "outside"
    write_collection(outside, n_files=6, seed=2)
    (outside / "secret-plans.wav").write_bytes(b"RIFF not really")
    (root / "out-link").symlink_to(outside, target_is_directory=True)
    (root / "loop").symlink_to(root / "loop")
    return root.resolve()


def test_paths_inside_the_root_are_read_and_every_way_out_is_refused(root):
    assert confine("kit", root) == root / "kit" and confine(str(root / "kit"), root) == root / "kit"
    assert confine("kit/../kit", root) == root / "kit" and confine(str(root), root) == root
    for way_out in ("/", "..", "../../..", "kit/../../outside", str(root.parent / "outside"), "out-link",
                    "out-link/", str(root) + "-sibling"):
        with pytest.raises(DataError, match=f"is outside the data folder {root}: this page reads audio only"):
            confine(way_out, root)
    with pytest.raises(DataError, match="cannot be resolved"):
        confine("loop", root)
    assert confine("~", root) == root / "~"  # under a root, ~ is no way to the server's home folder
    assert confine("~/sounds", None) == Path.home() / "sounds"  # no root (loopback): the path as typed


def test_the_folder_report_never_names_a_file_outside_the_root(root, monkeypatch):
    from sda.ui import app

    def no_scan(folder, *args, **kwargs):
        raise AssertionError(f"{folder} was scanned")

    with monkeypatch.context() as patched:  # refused before any scan: `/` is never walked
        patched.setattr(app, "preflight", no_scan)
        for way_out in ("/", "../../..", "out-link", "../outside"):
            report, codebook = _check_folder(way_out, SMALL, root)
            assert report.startswith(f"⚠ {way_out} is outside the data folder {root}") and codebook == "—"
            assert "secret-plans" not in report
    report, _ = _check_folder("kit", SMALL, root)
    assert "6 usable audio files" in report and str(root / "kit") in report


def test_the_data_root_must_be_a_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        check_data_root(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        check_data_root(tmp_path / "file")
    (tmp_path / "link").symlink_to(tmp_path)
    assert check_data_root(tmp_path / "link") == tmp_path.resolve()


@pytest.mark.parametrize(("host", "share", "beyond"), [
    ("127.0.0.1", False, False), ("127.0.0.2", False, False), ("::1", False, False), ("[::1]", False, False),
    ("localhost", False, False), ("LOCALHOST", False, False), ("0.0.0.0", False, True), ("::", False, True),
    ("192.168.1.5", False, True), ("myhost.example", False, True), ("127.0.0.1", True, True),
])
def test_what_counts_as_beyond_loopback(host, share, beyond):
    assert reachable_beyond_loopback(host, share) is beyond


@pytest.mark.parametrize(("host", "share", "flag"), [("0.0.0.0", False, "--host 0.0.0.0"),
                                                     ("127.0.0.1", True, "--share")])
def test_serving_beyond_loopback_without_a_data_root_is_refused_before_listening(tmp_path, host, share, flag):
    port = free_port()
    with pytest.raises(ConfigError, match=f"serving beyond this machine \\({flag}\\) needs --data-root DIR"):
        serve(tmp_path / "models", host=host, port=port, share=share, quiet=True)
    assert not (tmp_path / "models").exists()  # nothing was set up


def test_the_cli_refuses_beyond_loopback_without_a_data_root_and_a_missing_root(tmp_path):
    run = sda_limited("ui", "--host", "0.0.0.0", "--port", free_port(), "--models", tmp_path / "m", timeout=90)
    refused(run, "sda: error: serving beyond this machine (--host 0.0.0.0) needs --data-root DIR")
    run = sda_limited("ui", "--port", free_port(), "--models", tmp_path / "m", "--data-root", tmp_path / "nope",
                      timeout=90)
    refused(run, f"sda: error: --data-root {tmp_path / 'nope'} does not exist")


@pytest.fixture(scope="module")
def app(root, tmp_path_factory):
    app = serve(tmp_path_factory.mktemp("models"), port=free_port(), base_config=SMALL, quiet=True, data_root=root)
    yield app
    if app.slot.job is not None:
        app.slot.stop()
        app.slot.job.wait(120)
    app.close()


def test_the_served_folder_box_and_start_stay_under_the_root(app, root):
    client = Client(app.local_url, verbose=False)
    for way_out in ("/", "../../..", "out-link"):
        report, _ = client.predict(way_out, api_name="/check_folder")
        assert f"is outside the data folder {root}" in report and "secret-plans" not in report
        result = dict(zip(START, client.predict(way_out, 2, 0.25, 2, "", 2, 8, 1e-3, 0, api_name="/start"),
                          strict=False))
        assert shown_markdown(result["notice"]).startswith(f"**Cannot start:** {way_out} is outside the data folder")
        assert app.slot.job is None  # nothing started
    report, _ = client.predict("kit", api_name="/check_folder")
    assert "6 usable audio files" in report
    assert os.path.samefile(app.data_root, root)
