"""Listening in the Models tab, in a real browser (the setup of tests/test_ui_browser.py): pick a model, upload a
wav whose name is markup, Reconstruct; the original and the reconstruction play side by side, one player per
level of the model, the spectrogram is drawn, the wavs are offered for download, and no markup runs.

Screenshots go to SDA_SCREENSHOTS if set (tests.test_ui_browser.keep_screenshot).
"""

import dataclasses
import re

import httpx
import pytest

from sda.data.synth import write_collection
from tests.helpers import MARK, SMALL, trained_model
from tests.test_ui_browser import TIMEOUT_MS, browser, keep_screenshot, served  # noqa: F401 (fixtures)


@pytest.fixture
def app(tmp_path):
    # The model is in the folder before the page is built, so the Models list holds it from the start.
    kit = write_collection(tmp_path / "kit", n_files=6, seed=7)[0].parent
    trained_model(kit, tmp_path / "models")
    yield from served(tmp_path / "models", dataclasses.replace(SMALL, epochs=2))


def test_pick_a_model_upload_a_sound_and_hear_it_at_every_depth(browser, app, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    sound = tmp_path / f"{MARK}.wav"
    sound.write_bytes(next((tmp_path / "kit").glob("*.wav")).read_bytes())
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app.local_url)
    page.get_by_role("tab", name="Models").click()
    page.locator("#sda-model-choice input").click()
    page.get_by_role("option", name="source.sda").click()
    expect(page.locator("#sda-model-info textarea")).to_have_value(re.compile("sda model 'source'"))
    page.locator("#sda-listen-upload input[type=file]").set_input_files(str(sound))
    expect(page.locator("#sda-listen-upload")).to_contain_text(".wav")  # uploaded before Reconstruct reads it
    page.locator("#sda-listen").click()

    expect(page.locator("#sda-listen-summary")).to_contain_text(f"{MARK}.wav")  # as text
    expect(page.locator("#sda-listen-summary")).to_contain_text(f"code grid of {SMALL.rvq_levels} levels")
    expect(page.locator("#sda-listen-summary")).to_contain_text("to match the input's loudness")
    for side in ("original", "full"):  # side by side, each with its audio
        link = page.locator(f"#sda-listen-{side} a[data-testid=download-link]")
        expect(link).to_have_attribute("href", re.compile(r"/gradio_api/file=.+\.wav$"))
        assert httpx.get(link.get_attribute("href")).status_code == 200
    depths = page.locator("[id^=sda-listen-depth-]:visible")
    expect(depths).to_have_count(SMALL.rvq_levels)  # what the first l levels give, l = 1..L
    expect(depths.first).to_contain_text(re.compile(r"Level 1 only: log-mel L1 [\d.]+, STFT distance .* SI-SDR"))
    expect(page.locator("#sda-listen-takes tr.sda-take")).to_have_count(SMALL.rvq_levels)
    spectrogram = page.locator("#sda-listen-spectrogram svg.sda-spectrogram")
    expect(spectrogram).to_be_visible()
    expect(spectrogram.locator("image.sda-spectrogram-map")).to_have_count(2)
    assert spectrogram.evaluate("e => e.getBoundingClientRect().height") > 200
    downloads = page.locator("#sda-listen-downloads a[download]")
    expect(downloads).to_have_count(SMALL.rvq_levels)  # all levels, then each shallower depth
    expect(downloads.first).to_have_attribute("download", re.compile(r"\.reconstruction\.wav$"))
    assert page.evaluate("window.__xss") is None
    top = page.locator("#sda-listen-upload").bounding_box()["y"]
    page.screenshot(path=str(tmp_path / "listen.png"), full_page=True, clip={"x": 0, "y": max(0, top - 120),
                    "width": 1400, "height": 1900})
    keep_screenshot(tmp_path / "listen.png")
