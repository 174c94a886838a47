"""Attacks on the page (`sda ui`) through its API, items 2 and 4: hostile values in every input, and who may
start, stop, log in, upload and download.

A server is launched for real and driven with gradio_client (and httpx for the raw routes), as a
script or another page would. Every hostile call gets a message, nothing starts, and the server keeps
serving: the next good call works.
"""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError, AuthenticationError

from sda.errors import ConfigError
from sda.ui.app import MAX_WHOLE, Login, login_for, serve
from tests.helpers import SMALL, STOP, WAIT, Page, free_port, shown_markdown

GOOD = {"path": None, "levels": 2, "commitment": 0.25, "epochs": 2, "name": "", "every": 2, "batch": 8, "lr": 1e-3,
        "seed": 0, "board": ""}  # path: the folder fixture; board (the TensorBoard folder) comes after the client key
# Each input's words in a message about it (the page's own or VQVAEConfig.validate's).
WORDS = {"path": ("folder",), "levels": ("rvq levels", "rvq_levels"), "commitment": ("commitment",),
         "epochs": ("epochs",), "name": ("model name",), "every": ("health update interval", "health_every"),
         "batch": ("batch",), "lr": ("learning rate", "learning_rate"), "seed": ("seed",), "board": ("tensorboard",)}
HOSTILE = [1e308, -1e308, 1e30, 10**30, -(10**30), MAX_WHOLE + 1, -1, -0.5, True, False, None, math.nan, math.inf,
           -math.inf, "x" * 100_000, "3", [1], {"a": 1}, "\udcff", "a\x00b"]
# The few hostile values that are a valid setting for one input: no epochs is automatic, no name a timestamp.
VALID = [("epochs", None), ("name", None), ("name", "3"), ("board", None), ("board", "3")]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = serve(tmp_path_factory.mktemp("models"), port=free_port(), base_config=SMALL, quiet=True)
    yield app
    if app.slot.job is not None:
        app.slot.stop()
        app.slot.job.wait(WAIT)
    app.close()


def call(app, api_name: str, *data) -> list:
    """One API call as raw JSON (gradio_client cannot send NaN or infinity): the outputs, or the error."""
    base = app.local_url.rstrip("/")
    posted = httpx.post(f"{base}/gradio_api/call/{api_name}", content=json.dumps({"data": list(data)}),
                        headers={"content-type": "application/json"}, timeout=WAIT)
    posted.raise_for_status()
    with httpx.stream("GET", f"{base}/gradio_api/call/{api_name}/{posted.json()['event_id']}", timeout=WAIT) as events:
        lines = list(events.iter_lines())
    event = None
    for line in lines:
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event in ("complete", "error"):
            data = json.loads(line[6:])
            if event == "error":
                raise AppError(str(data))
            return data
    raise AssertionError(f"no result from /{api_name}: {lines}")


@pytest.fixture(autouse=True)
def no_run_left(app):
    """A test that started a run by mistake fails alone: the next one finds the slot free."""
    yield
    if app.slot.job is not None and app.slot.job.view().active:
        app.slot.stop()
        app.slot.job.wait(WAIT)


def idle(app) -> bool:
    return app.slot.job is None or not app.slot.job.view().active


def settings(folder, **changed) -> list:
    """The inputs of /start in order, with no client key yet (None)."""
    values = {**GOOD, "path": str(folder), **changed}
    return [values[name] for name in GOOD if name != "board"] + [None, values["board"]]


# ----------------------------------------------------------------------------------------------
# Item 4: every input of every API call, each hostile value


@pytest.mark.parametrize("field", list(GOOD))
def test_each_hostile_value_of_each_start_input_gets_a_message_and_starts_nothing(app, folder, field):
    for value in HOSTILE:
        if (field, value) in VALID or (field == "path" and value in (None, "3")):
            continue  # valid, or (path "3") a folder that does not exist: the run itself says so
        result = call(app, "start", *settings(folder, **{field: value}))
        notice = shown_markdown(result[0])
        assert notice.startswith("**Cannot start:**"), (field, value, notice)
        assert any(word in notice.lower() for word in WORDS[field]), (field, value, notice)
        assert len(notice) < 1000 and "Traceback" not in notice
        assert idle(app), (field, value)
    report, _ = Client(app.local_url, verbose=False).predict(str(folder), api_name="/check_folder")  # still serving
    assert "6 usable audio files" in report


def test_a_folder_that_is_not_text_is_refused_by_the_folder_check(app, folder):
    for value in (5, 1e308, math.nan, True, [1], {"a": 1}, "x" * 100_000, "\udcff", "a\x00b"):
        report, codebook = call(app, "check_folder", value)
        assert report.startswith("⚠ the audio folder ") and codebook == "—", (value, report)
        assert len(report) < 1000
    assert call(app, "check_folder", None) == ["", ""]
    assert "6 usable audio files" in Client(app.local_url, verbose=False).predict(str(folder),
                                                                                  api_name="/check_folder")[0]


def test_a_models_list_value_that_is_not_a_listed_name_is_refused(app, tmp_path):
    secret = tmp_path / "elsewhere.sda"
    secret.write_bytes(b"SDA")
    for value in (5, 1e308, math.inf, [1], {"a": 1}, str(secret), "../elsewhere.sda", "/etc/passwd", "x" * 100_000):
        notice, info, *_ = call(app, "show_model", value, True, 0.0)
        assert notice.startswith("**Cannot open ") and info == "", (value, notice)
        assert "there is no such model in the models folder" in notice
        assert len(notice) < 1000


def test_the_loss_chart_settings_take_any_value_a_client_sends(app):
    for log_y, smoothing in ((5, math.inf), ("yes", -1e308), ([1], {"a": 1}), (None, math.nan), (True, "x" * 100_000)):
        notice, *_ = call(app, "show_model", "no-such.sda", log_y, smoothing)
        assert "there is no such model in the models folder" in notice, (log_y, smoothing)


def test_an_upload_path_outside_the_upload_folder_is_not_opened(app):
    client = Client(app.local_url, verbose=False)
    with pytest.raises(AppError):  # Gradio refuses a file it did not receive as an upload
        client.predict({"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, api_name="/open_model")
    assert Client(app.local_url, verbose=False).predict(api_name="/poll")  # still serving


# ----------------------------------------------------------------------------------------------
# Item 2: stop, uploads, file routes


def test_only_the_client_that_started_a_run_can_stop_it(app, folder):
    owner, other = Page(app), Page(app)
    shown = owner.start(folder, epochs=500, name="owned")
    assert shown["notice"] == "" and len(shown["key"]) >= 16
    for key in (None, "", 5, [1], "x" * 16, shown["key"][:-1] + "A", "é" * 20):
        refused = other.call("/stop", key, names=STOP)
        assert shown_markdown(refused["notice"]).startswith("**Cannot stop:** this run was started from another"), key
        assert app.slot.job.view().status == "running"
    owner.poll_until(lambda s: "· step " in s["status"], "the first step")  # a stop before it saves nothing
    owner.stop()
    owner.poll_until(lambda s: s["status"].startswith("**Stopped early**"), "the stopped run")
    assert (app.models_dir / "owned.sda").exists()


def test_the_models_folder_and_server_files_are_not_served(app, folder):
    page = Page(app)
    page.start(folder, epochs=2, name="served-files")
    shown = page.poll_until(lambda s: s["status"].startswith("**Finished**"), "the finished run")
    model = app.models_dir / "served-files.sda"
    previews = sorted(app.models_dir.rglob("*.wav"))
    assert model.exists() and previews
    base = app.local_url.rstrip("/")
    for path in (model, previews[0], app.models_dir / "served-files.checkpoint.sda", "/etc/passwd", __file__):
        assert httpx.get(f"{base}/gradio_api/file={path}").status_code == 403, path
    assert shown["clip1-original"]
    drawn = call(app, "poll")  # a fresh page draws everything, the players too (raw: with their labels)
    player = next(x["value"] for x in drawn if isinstance(x, dict) and re.fullmatch(r"Clip 1 \(.+\): original",
                                                                                         x.get("label", "")))
    assert not player["path"].startswith(str(app.models_dir))  # Gradio's own copy, in its cache
    assert httpx.get(player["url"]).status_code == 200


def test_uploads_are_capped(tmp_path, app):
    big = tmp_path / "big.sda"
    with big.open("wb") as f:  # sparse: 101 MiB on paper (MAX_UPLOAD is 100 MiB), nothing on disk
        f.truncate(101 * 2**20)
    client = Client(app.local_url, verbose=False)
    with pytest.raises(Exception, match="(?i)(exceeds|too large|413|maximum)"):
        client.predict(handle_file(str(big)), api_name="/open_model")
    assert client.predict(api_name="/poll")


# ----------------------------------------------------------------------------------------------
# Item 2: logins


def test_the_login_is_on_beyond_loopback_and_given_passwords_are_used_anywhere(tmp_path):
    assert login_for("127.0.0.1", False, environ={}) is None
    made = login_for("0.0.0.0", False, environ={})
    assert made.user == "sda" and made.made_here and len(made.password) >= 16 and "password" not in repr(made)
    assert login_for("127.0.0.1", True, environ={}).made_here  # --share
    assert login_for("0.0.0.0", False, environ={}).password != made.password  # made fresh each start
    assert login_for("127.0.0.1", False, environ={"SDA_UI_PASSWORD": "correct horse"}) == Login("sda", "correct horse")
    (tmp_path / "pw").write_text("from a file\nsecond line\n")
    assert login_for("0.0.0.0", False, password_file=tmp_path / "pw", environ={}).password == "from a file"
    assert login_for("0.0.0.0", False, no_auth=True, environ={}) is None
    for bad, message in ((dict(environ={"SDA_UI_PASSWORD": "short"}), "has 5 characters: give at least 8"),
                         (dict(no_auth=True, environ={"SDA_UI_PASSWORD": "long enough"}), "contradict")):
        with pytest.raises(ConfigError, match=message):
            login_for("0.0.0.0", False, **bad)
    (tmp_path / "empty").write_text("")
    with pytest.raises(ConfigError, match="the first line of .*empty has 0 characters"):
        login_for("0.0.0.0", False, password_file=tmp_path / "empty", environ={})


def test_serving_beyond_loopback_without_a_login_is_refused_unless_no_auth(tmp_path):
    with pytest.raises(ConfigError, match="needs a login: .* --no-auth serves every visitor without one"):
        serve(tmp_path / "models", host="0.0.0.0", port=free_port(), data_root=tmp_path, quiet=True)


def test_with_a_login_every_route_asks_for_it(tmp_path, folder):
    login = Login("sda", "a long password")
    app = serve(tmp_path / "models", port=free_port(), base_config=SMALL, quiet=True, login=login)
    try:
        with pytest.raises(AuthenticationError):
            Client(app.local_url, verbose=False)
        with pytest.raises(ValueError, match="Could not login"):
            Client(app.local_url, verbose=False, auth=("sda", "wrong password"))
        base = app.local_url.rstrip("/")
        for route in ("/gradio_api/info", "/config", f"/gradio_api/file={folder}/00_kick.wav"):
            assert httpx.get(base + route).status_code == 401, route
        assert httpx.post(f"{base}/gradio_api/upload", files={"files": ("x.sda", b"SDA")}).status_code == 401
        assert "6 usable audio files" in Page(app, auth=("sda", "a long password")).client.predict(
            str(folder), api_name="/check_folder")[0]
    finally:
        app.close()


def _serve_cli(*args):
    """`sda ui ARGS` in a subprocess, without SDA_UI_PASSWORD; (process, its first line) once it serves."""
    env = {key: value for key, value in os.environ.items() if key != "SDA_UI_PASSWORD"}
    proc = subprocess.Popen([sys.executable, "-m", "sda", "ui", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**env, "PYTHONUNBUFFERED": "1"})
    return proc, proc.stdout.readline()


def test_sda_ui_beyond_loopback_prints_a_password_once_and_asks_for_it(tmp_path, folder):
    port = free_port()
    proc, first = _serve_cli("--host", "0.0.0.0", "--port", port, "--models", tmp_path / "m", "--data-root",
                             folder.parent)
    lines = [first, proc.stdout.readline() if first else ""]
    try:
        assert lines[0].startswith(f"sda ui: open http://localhost:{port}") and str(folder.parent) in lines[0], lines
        assert lines[1].startswith("sda ui: log in as sda with password "), lines
        password = lines[1].split("password ", 1)[1].split(" ", 1)[0]
        url = f"http://127.0.0.1:{port}/"
        with pytest.raises(AuthenticationError):
            Client(url, verbose=False)
        client = Client(url, verbose=False, auth=("sda", password))
        assert "6 usable audio files" in client.predict(folder.name, api_name="/check_folder")[0]  # under the root
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0 and "Traceback" not in err
    assert password not in out + err  # printed once, in the line read above


def test_sda_ui_no_auth_beyond_loopback_serves_and_warns(tmp_path, folder):
    port = free_port()
    proc, first = _serve_cli("--host", "0.0.0.0", "--port", port, "--models", tmp_path / "m", "--no-auth",
                             "--data-root", folder.parent)
    try:
        assert first.startswith(f"sda ui: open http://localhost:{port}"), first
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        assert "6 usable audio files" in client.predict(folder.name, api_name="/check_folder")[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0 and "Traceback" not in err
    assert "sda ui: warning: serving 0.0.0.0 with no login (--no-auth): anyone who can reach it" in err
    assert "log in" not in first + out


# ----------------------------------------------------------------------------------------------
# Issue 17 item 5: listening in the Models tab (/listen: the model listed, the model uploaded, the sound uploaded,
# the sound's path), each input hostile, and the files it may read

LISTEN = ["notice", "results", "summary", "original", "full", "takes", "depth1", "depth2", "depth3", "depth4",
          "spectrogram", "downloads"]


@pytest.fixture(scope="module")
def listenable(app, folder):
    """app's models folder with a trained model (source.sda) and one saved in its warm-up (early.sda)."""
    import dataclasses

    from sda.train.engine import RunOptions
    from tests.helpers import run, trained_model

    trained_model(folder, app.models_dir)
    run(dataclasses.replace(SMALL, warmup_steps=5), RunOptions(folder, app.models_dir, "early"), stop_after=2)
    return app


def listened(app, listed="source.sda", model=None, sound=None, path=None) -> dict:
    """/listen called raw; its outputs by name, an update's value in place of the update."""
    values = call(app, "listen", listed, model, sound, path)
    return {name: value.get("value") if isinstance(value, dict) and value.get("__type__") == "update" else value
            for name, value in zip(LISTEN, values, strict=True)} | {"raw": values}


def uploaded(app, content: bytes, name: str) -> dict:
    """content uploaded to the page as a browser does, as the FileData a client then sends."""
    posted = httpx.post(f"{app.local_url.rstrip('/')}/gradio_api/upload", files={"files": (name, content)},
                        timeout=WAIT)
    posted.raise_for_status()
    return {"path": posted.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def refused(result: dict) -> str:
    notice = shown_markdown(result["notice"])
    assert notice.startswith("**Cannot reconstruct"), notice
    assert len(notice) < 1000 and "Traceback" not in notice
    assert result["summary"] == "" and result["downloads"] is None and result["spectrogram"] == ""
    return notice


def test_a_sound_through_a_listed_model_gives_a_player_per_level_and_its_downloads(listenable, folder):
    result = listened(listenable, path=str(folder / "00_kick.wav"))
    assert result["notice"] == "" and "code grid of 3 levels" in result["summary"]
    shown = [v for v in result["raw"][6:10] if v.get("visible")]
    assert len(shown) == SMALL.rvq_levels and all(v["value"]["url"] for v in shown)
    assert [Path(f["path"]).name for f in result["downloads"]] == [
        "00_kick.reconstruction.wav", "00_kick.first-1-level.wav", "00_kick.first-2-levels.wav"]
    assert not result["full"]["path"].startswith(str(listenable.takes.root))  # Gradio's own copy, in its cache
    assert httpx.get(result["full"]["url"]).status_code == 200


def test_each_hostile_value_of_each_listen_input_gets_a_message_and_reconstructs_nothing(listenable, folder):
    good = {"listed": "source.sda", "model": None, "sound": None, "path": str(folder / "00_kick.wav")}
    before = len(list(listenable.takes.root.iterdir()))
    for field in good:
        for value in HOSTILE:
            # A hostile upload is judged alone: a list choice or a path beside it would be used instead.
            inputs = {**good, **({"listed": None} if field == "model" else {"path": None} if field == "sound" else {}),
                      field: value}
            try:
                refused(listened(listenable, *inputs.values()))
            except AppError:  # Gradio's own check of an upload's FileData refused it before the handler
                assert field in ("model", "sound"), (field, value)
    assert len(list(listenable.takes.root.iterdir())) == before
    assert listened(listenable, path=str(folder / "00_kick.wav"))["notice"] == ""  # still serving


def test_a_file_that_was_not_uploaded_is_not_read_as_an_upload(listenable, folder):
    from sda.ui.app import _uploaded_path

    for field in ("model", "sound"):
        for path in ("/etc/passwd", str(folder / "00_kick.wav"), str(listenable.models_dir / "source.sda")):
            for value in ({"path": path, "meta": {"_type": "gradio.FileData"}}, {"path": path}):
                with pytest.raises(AppError):  # Gradio refuses a FileData it did not receive, or one without meta
                    listened(listenable, None, **{field: value}, path=str(folder / "00_kick.wav"))
            # ...and the handler, called without Gradio in front, reads only what is in Gradio's upload folder.
            with pytest.raises(ConfigError, match="was not uploaded to this page"):
                _uploaded_path({"path": path})
    assert listened(listenable, path=str(folder / "00_kick.wav"))["notice"] == ""  # still serving


def test_a_sound_that_is_not_audio_too_long_or_empty_is_refused_with_a_message(listenable, tmp_path):
    import numpy as np
    import soundfile as sf

    long, empty = tmp_path / "long.wav", tmp_path / "empty.wav"
    sf.write(long, np.zeros(601 * 1000, dtype=np.int16), 1000, subtype="PCM_16")  # 601 s at 1 kHz: 1.2 MB
    sf.write(empty, np.zeros(0, dtype=np.int16), 44100, subtype="PCM_16")
    cases = ((b"just some text, not audio\n" * 100, "notes.wav", "could not decode"),
             (long.read_bytes(), "long.wav", "the file is 601 s long: sda takes audio files of at most 600 s "
                                             "(10 minutes) whole; cut it into shorter files"),
             (empty.read_bytes(), "empty.wav", "it holds no audio (0 samples)"))
    for content, name, message in cases:
        sound = uploaded(listenable, content, name)
        notice = refused(listened(listenable, sound=sound))
        assert notice.startswith(f"**Cannot reconstruct {name}:**") and message in notice, notice
        assert str(Path(sound["path"]).parent) not in notice  # the upload's temporary path means nothing to anyone


def test_a_model_saved_during_its_warm_up_says_it_has_no_codes_yet(listenable, folder):
    notice = refused(listened(listenable, "early.sda", path=str(folder / "00_kick.wav")))
    assert "early.sda was saved during warm-up (step 2 of 5)" in notice and "no codes yet" in notice
    assert "--resume" in notice


def test_hostile_file_names_reach_the_labels_as_text(listenable, folder):
    from tests.helpers import CONTROL, MARK

    name = f"{MARK}{CONTROL}*x*.wav"
    result = listened(listenable, sound=uploaded(listenable, (folder / "00_kick.wav").read_bytes(), name))
    assert result["notice"] == ""
    assert "<img" not in result["summary"] and "\x1b" not in result["summary"]
    assert shown_markdown(result["summary"]).startswith(
        f"Through **source.sda**: **{MARK}\\x1b]52;c;aGk=\\x07*x*.wav**: ")
    labels = [v["label"] for v in result["raw"][3:10] if isinstance(v, dict) and v.get("visible")]
    assert labels[0] == f"Original: {MARK}\\x1b]52;c;aGk=\\x07*x*.wav"  # a player's label is text, never markup
    assert not any("\x1b" in label or "\x07" in label for label in labels)
    assert "<img" not in result["spectrogram"] and "&lt;img src=x" in result["spectrogram"]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+\.wav", Path(f["path"]).name) for f in result["downloads"])


def test_a_sound_path_outside_the_data_root_is_refused(listenable, folder, tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside.wav"
    root.mkdir()
    shutil.copy(folder / "00_kick.wav", root / "kick.wav")
    shutil.copy(folder / "00_kick.wav", outside)
    (root / "link.wav").symlink_to(outside)
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(listenable.models_dir / "source.sda", models / "source.sda")
    confined = serve(models, port=free_port(), base_config=SMALL, quiet=True, data_root=root)
    try:
        for path in ("/etc/passwd", str(outside), "../outside.wav", str(root / ".." / "outside.wav"), "link.wav",
                     str(root / "link.wav")):
            notice = refused(listened(confined, path=path))
            assert f"is outside the data folder {root}" in notice, (path, notice)
        assert listened(confined, path="kick.wav")["notice"] == ""  # relative: taken under the root
        assert listened(confined, path=str(root / "kick.wav"))["notice"] == ""
    finally:
        confined.close()
