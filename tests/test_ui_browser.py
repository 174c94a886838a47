"""The page in a real browser: Playwright for Python driving Debian's chromium, headless.

It sets the controls, starts training, sees one row per RVQ level (a starved level highlighted and
announced in a toast), reloads the page and finds the run again, presses Stop, and sees the saved
model in the report and in the Models tab. Without playwright or chromium it skips, saying which;
with SDA_REQUIRE_BROWSER=1 (set by .ci/run) it fails instead, so CI cannot pass without running it.
"""

import dataclasses
import os
import re
import shutil
from pathlib import Path

import pytest

from sda.data.synth import write_collection
from sda.format import modelfile
from sda.ui.app import serve
from sda.ui.render import SERIES_COLORS
from tests.helpers import CHROMIUM, SMALL, free_port, skip_or_fail

TIMEOUT_MS = 90_000  # generous: CI machines are shared


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        skip_or_fail("browser test: playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        skip_or_fail(f"browser test: no chromium at {CHROMIUM} (apt-get install chromium, or set SDA_CHROMIUM)")
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        except Error as exc:
            skip_or_fail(f"browser test: chromium at {CHROMIUM} does not start: {exc.message.splitlines()[0]}")
        yield browser
        browser.close()


def served(models: Path, config):
    """A page app on a free port, for a fixture to yield; afterwards any run it left is stopped, then the app."""
    app = serve(models, port=free_port(), base_config=config, quiet=True)
    yield app
    if app.slot.job is not None:
        app.slot.stop()
        app.slot.job.wait(120)
    app.close()


BROWSER_CONFIG = dataclasses.replace(SMALL, codebook_size=4096, epochs=None, batch_size=1, hidden_channels=64)


@pytest.fixture
def app(tmp_path):
    # Batch 1 on 24 files: epochs of about 170 steps, a few seconds each, so the charts are first drawn
    # before any validation point (the case that once left the validation line undrawn), and the run
    # is long enough to stop. A health window then holds at most 170 x 4 = 680 vectors: with 4096 codes
    # per level no level can reach 30%, so the highlight and the toast are exercised on every run.
    yield from served(tmp_path / "models", BROWSER_CONFIG)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_collection(tmp_path_factory.mktemp("kit24"), n_files=24, seed=5)[0].parent


def test_train_watch_reload_stop_and_find_the_model(browser, app, folder, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    page = browser.new_page()
    page.goto(app.local_url)

    page.locator("#sda-folder textarea").fill(str(folder))
    page.locator("#sda-folder textarea").press("Enter")
    expect(page.locator("#sda-preflight textarea")).to_have_value(re.compile("24 usable audio files"))
    expect(page.locator("#sda-codebook textarea")).to_have_value(
        re.compile(r"^4096 codes per level \(for \d+\.\d\d s of audio\)$"))
    for box in ("#sda-preflight", "#sda-report"):  # columns line up: monospace, as in a terminal
        assert "mono" in page.locator(f"{box} textarea").evaluate("e => getComputedStyle(e).fontFamily")
    for control, value in (("#sda-levels", "2"), ("#sda-commitment", "0.5")):
        page.locator(f"{control} input[type=number]").fill(value)
        page.locator(f"{control} input[type=number]").press("Enter")
    expect(page.locator("#sda-epochs input")).to_have_value("0")  # left as it is: automatic
    page.locator("#sda-name textarea").fill("browser-run")
    page.locator("#sda-start").click()

    rows = page.locator("#sda-health tr.sda-level")
    expect(rows).to_have_count(2)  # one row per RVQ level, as set on the slider
    expect(page.locator("#sda-health tr.weak")).to_have_count(2)
    expect(rows.first).to_contain_text("under 30%")
    expect(page.locator('[data-testid="toast-body"]').first).to_contain_text("RVQ level 1 uses")
    expect(page.locator("#sda-alerts")).to_contain_text("Warnings (2)")  # stays after the toasts fade
    # The warnings come as one short toast (TOAST_SECONDS), not a stack left over the health table.
    expect(page.locator('[data-testid="toast-body"]').filter(has_text="RVQ level")).to_have_count(0, timeout=20_000)
    expect(page.locator("#sda-status")).to_contain_text(re.compile(r"Epoch \d+ of \d\d+ · step \d+ of \d+ · ETA"))
    expect(page.locator("#sda-banner")).to_contain_text("one model at a time")
    for plot in ("recon", "commit"):  # each series drawn as a line in its colour (a chart can lose them)
        for color in SERIES_COLORS.values():
            expect(page.locator(f'.sda-{plot}-plot path.sda-chart-line[stroke="{color}"]')).to_have_count(1)
    expect(page.locator("#sda-start")).to_be_disabled()

    page.reload()  # the run goes on in the server; the fresh page attaches to it
    expect(rows).to_have_count(2)
    expect(page.locator("#sda-status")).to_contain_text(re.compile(r"Epoch \d+ of \d\d+ · step"))
    # The form is the user's, at its defaults: not the running job's resolved epochs and name, which the next
    # Start would otherwise take (and be refused for the name, or train a fixed count instead of automatic).
    expect(page.locator("#sda-folder textarea")).to_have_value("")
    expect(page.locator("#sda-epochs input")).to_have_value("0")
    expect(page.locator("#sda-name textarea")).to_have_value("")

    page.locator("#sda-stop").click()
    model_path = app.models_dir / "browser-run.sda"
    report = page.locator("#sda-report textarea")
    expect(report).to_have_value(re.compile("^Training stopped early"))
    expect(report).to_have_value(re.compile(f"model: {re.escape(str(model_path))}"))
    expect(page.locator("#sda-status")).to_contain_text("Stopped early")
    expect(page.locator("#sda-start")).to_be_enabled()
    model, _ = modelfile.load_model(model_path)
    assert model.config.rvq_levels == 2 and model.config.commitment_weight == 0.5 and model.config.epochs >= 30

    page.get_by_role("tab", name="Models").click()
    expect(page.locator("#sda-model-info textarea")).to_have_value(re.compile("sda model 'browser-run'"))
    expect(page.locator("#sda-model-health tr.sda-level")).to_have_count(2)

    # After the reload, Start on another folder with the form as it was left: a new generated name, and the
    # automatic number of epochs of that folder (not the first run's name, refused, nor its epochs).
    other = write_collection(tmp_path / "kit6", n_files=6, seed=6)[0].parent
    page.get_by_role("tab", name="Training").click()
    page.locator("#sda-folder textarea").fill(str(other))
    page.locator("#sda-folder textarea").press("Enter")
    expect(page.locator("#sda-preflight textarea")).to_have_value(re.compile("6 usable audio files"))
    page.locator("#sda-start").click()
    expect(page.locator("#sda-status")).to_contain_text(re.compile(r"Epoch \d+ of \d+ · step"))
    page.locator("#sda-stop").click()
    expect(page.locator("#sda-report textarea")).to_have_value(re.compile("^Training stopped early"))
    second = [p for p in app.models_dir.glob("sda-*.sda") if not p.name.endswith(".checkpoint.sda")]
    assert len(second) == 1 and re.fullmatch(r"sda-\d{8}-\d{6}\.sda", second[0].name), second
    _, metadata = modelfile.load_model(second[0])
    pf = metadata["dataset"]
    train_chunks = pf["chunks"] - sum(f["chunks"] for f in pf["files"] if f["path"] in set(pf["validation_files"]))
    automatic = BROWSER_CONFIG.resolve(len(pf["files"]), train_chunks).epochs
    assert metadata["config"]["epochs"] == automatic

    app.close()  # the server stops: the page's status must not go on reading as live (SERVER_WATCH)
    page.get_by_role("tab", name="Training").click()
    expect(page.locator("#sda-status")).to_have_attribute("data-sda-server", "lost")
    assert "No answer from sda ui" in page.locator("#sda-status").evaluate(
        "e => getComputedStyle(e, '::before').content")


@pytest.fixture
def small_app(tmp_path):
    yield from served(tmp_path / "models", dataclasses.replace(SMALL, epochs=2))


def test_markup_everywhere_stays_text(browser, small_app, folder, tmp_path):
    """Item 1 of issue 14: a model file with markup in every field, a folder and a model name that are
    markup. Selecting the model, training on the folder under that name, the toasts and the report:
    no script runs (window.__xss stays unset) and the markup is on the page as text."""
    from playwright.sync_api import expect

    from tests.helpers import MARK, hostile_model, trained_model

    expect.set_options(timeout=TIMEOUT_MS)
    hostile_model(trained_model(folder, tmp_path / "source"), small_app.models_dir / f"{MARK}.sda")
    page = browser.new_page()
    page.goto(small_app.local_url)

    page.get_by_role("tab", name="Models").click()
    page.get_by_role("button", name="Refresh list").click()  # the file was written after the page was built
    page.locator("#sda-model-choice input").click()
    page.get_by_role("option", name=f"{MARK}.sda").click()
    expect(page.locator("#sda-model-info textarea")).to_have_value(re.compile(re.escape(f"sda model '{MARK}source")))
    expect(page.locator("#sda-model-health tr.sda-level").first).to_contain_text(MARK)  # the replaced codes
    expect(page.locator("#sda-model-health caption")).to_have_text("Codebook health at the end of training")
    page.screenshot(path=str(tmp_path / "models-tab.png"), full_page=True)
    assert page.evaluate("window.__xss") is None

    kit = tmp_path / MARK  # a folder whose name is markup, holding the collection
    shutil.copytree(folder, kit)
    page.get_by_role("tab", name="Training").click()
    page.locator("#sda-folder textarea").fill(str(kit))
    page.locator("#sda-folder textarea").press("Enter")
    expect(page.locator("#sda-preflight textarea")).to_have_value(re.compile(re.escape(str(kit))))
    run = f"{MARK}-run"  # the hostile file above already holds the name MARK
    page.locator("#sda-name textarea").fill(run)
    page.locator("#sda-start").click()
    expect(page.locator("#sda-banner")).to_contain_text(f"A training job is running ({run}")
    expect(page.locator("#sda-status")).to_contain_text("Finished")
    expect(page.locator("#sda-status")).to_contain_text(f"{run}.sda")
    expect(page.locator('[data-testid="toast-body"]').filter(has_text="Model saved")).to_contain_text(run)
    expect(page.locator("#sda-report textarea")).to_have_value(re.compile(re.escape(
        f"model: {small_app.models_dir / run}.sda")))
    page.screenshot(path=str(tmp_path / "training-tab.png"), full_page=True)
    assert page.evaluate("window.__xss") is None
    for png in ("models-tab.png", "training-tab.png"):
        keep_screenshot(tmp_path / png)


def test_the_login_page_asks_for_the_password_and_lets_the_right_one_in(browser, tmp_path):
    """Item 2 of issue 14: with a login (on by default beyond loopback) the page shows Gradio's login
    form first; a wrong password is refused, the right one opens the page."""
    from playwright.sync_api import expect

    from sda.ui.app import Login

    expect.set_options(timeout=TIMEOUT_MS)
    app = serve(tmp_path / "models", port=free_port(), base_config=SMALL, quiet=True,
                login=Login("sda", "correct horse battery"))
    try:
        page = browser.new_page()
        page.goto(app.local_url)
        expect(page.get_by_text("log in as sda with the password sda ui printed")).to_be_visible()
        expect(page.locator("#sda-folder")).to_have_count(0)  # nothing of the page before the login
        page.screenshot(path=str(tmp_path / "login.png"), full_page=True)
        page.get_by_label("username").fill("sda")
        page.get_by_label("password").fill("wrong password")
        page.get_by_role("button", name="Login").click()
        expect(page.get_by_text("Incorrect Credentials")).to_be_visible()
        page.screenshot(path=str(tmp_path / "login-refused.png"), full_page=True)
        page.get_by_label("username").fill("sda")
        page.get_by_label("password").fill("correct horse battery")
        page.get_by_role("button", name="Login").click()
        expect(page.locator("#sda-folder textarea")).to_be_visible()
    finally:
        for png in tmp_path.glob("login*.png"):
            keep_screenshot(png)
        app.close()


def keep_screenshot(png: Path) -> None:
    """To look at the screenshots: SDA_SCREENSHOTS=DIR keeps a copy of each there."""
    if os.environ.get("SDA_SCREENSHOTS"):
        folder = Path(os.environ["SDA_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, folder / png.name)
