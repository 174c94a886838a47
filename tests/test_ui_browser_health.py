"""Codebook health over time in a real browser (the setup of tests/test_ui_browser.py): during a run the
health history and per-code usage charts appear and change from one poll to the next, the level rows
carry the bitrate; the Models tab compares two saved models, one of them named with markup.

Screenshots of the page mid-run and of the comparison go to SDA_SCREENSHOTS if set, else to the test's
tmp_path; the folder is printed (pytest -s shows it).
"""

import dataclasses
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.helpers import MARK, SMALL, trained_model
from tests.test_ui_browser import TIMEOUT_MS, browser, folder, served  # noqa: F401 (fixtures)


@pytest.fixture
def app(tmp_path):
    # Batch 1 on 24 files: epochs of about 170 steps, a health window every 10 steps (the default), so the charts change
    # at every poll; a short warm-up, so the band and the lines after it are both drawn.
    config = dataclasses.replace(SMALL, codebook_size=256, epochs=None, batch_size=1, hidden_channels=32,
                                 warmup_steps=20)
    yield from served(tmp_path / "models", config)


@pytest.fixture
def shots(tmp_path):
    where = Path(os.environ.get("SDA_SCREENSHOTS") or tmp_path / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots in {where}")
    return where


def test_health_history_usage_and_bitrate_live_then_two_models_compared(browser, app, folder, shots):  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app.local_url)
    page.locator("#sda-folder textarea").fill(str(folder))
    page.locator("#sda-name textarea").fill("health-run")
    page.locator("#sda-start").click()

    history = page.locator("#sda-health-history")
    line = history.locator('.sda-utilization-chart path[data-series="level 1"]')
    expect(line).to_have_count(1)  # drawn after the warm-up...
    expect(history.locator(".sda-chart-band-label").first).to_have_text("warm-up: quantizer off")  # ...marked
    expect(history.locator(".sda-chart-rule-label")).to_have_text("30% line")
    expect(history.locator(f'.sda-perplexity-chart path[data-series="level {SMALL.rvq_levels}"]')).to_have_count(1)
    usage = page.locator("#sda-usage svg.sda-usage-chart")
    expect(usage).to_have_count(SMALL.rvq_levels)
    rows = page.locator("#sda-health tr.sda-level")
    expect(rows.first).to_contain_text("bit/s")
    expect(rows.first).to_contain_text(re.compile(r"\d\.\d\d / 8"))
    expect(page.locator("#sda-health tr.sda-bitrate")).to_contain_text(
        re.compile(r"effective [\d.]+ k?bit/s of [\d.]+ k?bit/s nominal \(\d+\.\d%\) at [\d.]+ codes/s"))
    expect(page.locator(".sda-recon-chart")).to_contain_text("loss (log scale)")

    # The charts follow the run: their content changes between two polls.
    drawn_line, drawn_usage = line.get_attribute("d"), usage.first.inner_html()
    expect(line).not_to_have_attribute("d", drawn_line)
    expect(usage.first).not_to_have_js_property("innerHTML", drawn_usage)
    page.screenshot(path=str(shots / "health-mid-run.png"), full_page=True)

    # Smoothing redraws the loss charts with the raw line faint behind the smoothed one.
    smoothing = page.locator("#sda-loss-smoothing input[type=number]")
    smoothing.fill("0.8")
    smoothing.press("Enter")
    expect(page.locator('.sda-recon-chart path[data-series="train (raw)"]')).to_have_count(1)

    page.locator("#sda-stop").click()
    expect(page.locator("#sda-status")).to_contain_text("Stopped early")

    # A second model, named with markup: the comparison shows both names as text, and runs no script.
    shutil.copy(trained_model(folder, app.models_dir.parent / "other"), app.models_dir / f"{MARK}.sda")
    page.get_by_role("tab", name="Models").click()
    page.get_by_role("button", name="Refresh list").click()
    for name in ("health-run.sda", f"{MARK}.sda"):
        page.locator("#sda-compare-choice input").click()
        page.get_by_role("option", name=name).click()
    compare = page.locator("#sda-compare")
    expect(compare.locator(".sda-compare-utilization")).to_have_count(SMALL.rvq_levels)
    for name in ("health-run.sda", f"{MARK}.sda"):
        # Each level's utilization chart has a line for each model (the stopped run has no whole epoch of loss)
        expect(compare.locator(".sda-chart-key").filter(has_text=re.compile(f"^{re.escape(name)}$"))).to_have_count(
            SMALL.rvq_levels)
        expect(compare.locator("table.sda-compare thead")).to_contain_text(name)
    expect(compare.locator("table.sda-compare tr.differs").first).to_be_visible()  # epochs, warm-up, ... differ
    page.keyboard.press("Escape")
    compare.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "models-compare.png"), full_page=True)
    assert page.evaluate("window.__xss") is None

    # One model chosen: its history, usage and bitrate in the Models tab
    page.locator("#sda-model-choice input").click()
    page.get_by_role("option", name="health-run.sda").click()
    expect(page.locator("#sda-model-history .sda-utilization-chart path[data-series='level 1']")).to_have_count(1)
    expect(page.locator("#sda-model-usage svg.sda-usage-chart")).to_have_count(SMALL.rvq_levels)
    expect(page.locator("#sda-model-health tr.sda-bitrate")).to_contain_text("nominal")
    page.screenshot(path=str(shots / "models-one.png"), full_page=True)
