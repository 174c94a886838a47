"""Attacks on the page (`sda ui`), item 1: markup in model files, file names, folders and user input.

Each test builds its hostile input itself. The page must show such input as text: every value from
a file, a folder or a user reaches an HTML or Markdown output escaped (no raw `<`), a text box or a
dropdown label with its control characters made visible, a toast HTML-escaped. The browser half (no
script runs, the markup is readable) is tests/test_ui_browser.py::test_markup_everywhere_stays_text.
"""

import dataclasses
import re
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sda.format import container
from sda.model.health import LevelHealth
from sda.text import printable
from sda.train.events import Alert, Started, Summary
from sda.ui.job import DONE, FAILED, RUNNING, JobView
from sda.ui.render import (
    alerts_markdown,
    busy_banner,
    html_text,
    levels_html,
    md_text,
    plain_json,
    report_text,
    status_markdown,
)
from tests.helpers import CONTROL, MARK, SMALL, hostile_model, shown_markdown, trained_model

ESCAPED = html_text(MARK)  # &lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;
VIEWS = ["notice", "info", "health", "recon", "commit", "config", "history", "usage"]  # ui._show_model's components


def no_markup(text: str) -> None:
    """No tag can start in text that goes into HTML or Markdown: every < of a value is escaped."""
    assert "<img" not in text and "<b" not in text, text


@pytest.fixture(scope="module")
def source(folder, tmp_path_factory):
    return trained_model(folder, tmp_path_factory.mktemp("source"))


def _leaves(value, path=()):
    """The path of every leaf (string, number, bool, null) in a JSON tree."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    else:
        yield path


def _set(tree, path, value):
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


def assert_models_tab_is_safe(shown: dict) -> None:
    """What _show_model returns for any file: HTML and Markdown without markup, text without controls."""
    for html in ("notice", "health", "recon", "commit", "history", "usage"):  # the charts are HTML too
        no_markup(shown[html] or "")
    assert "\x1b" not in shown["info"] and "\x1b" not in shown["notice"]


# ----------------------------------------------------------------------------------------------
# The render functions, each fed markup and control characters where it shows a value


def test_every_cell_of_the_levels_table_is_escaped_even_where_a_number_belongs():
    level = LevelHealth(*[MARK] * 8)  # level, codebook_size, used, utilization, perplexity, dead, replaced, assignments
    table = levels_html([level], caption=MARK)
    no_markup(table)
    assert table.count(ESCAPED) == 8  # caption, data-level, level, utilization, perplexity, dead, size, replaced
    warming = levels_html([level], warmup_steps=MARK)
    no_markup(warming)
    assert ESCAPED in warming


def test_status_banner_alerts_and_report_escape_what_they_quote(tmp_path):
    path = tmp_path / f"{MARK}.sda"
    failed = JobView(job_id=1, version=1, status=FAILED, began=datetime.now(), model_name=MARK,
                     error=f"{MARK} {CONTROL}")
    assert shown_markdown(status_markdown(failed)) == f"**Training failed:** {printable(failed.error)}"
    assert "\x1b" not in report_text(failed) and MARK in report_text(failed)  # a Textbox shows text as text
    started = Started(config=SMALL, preflight=None, device=MARK, precision="fp32", backend="torch", model_path=path,
                      checkpoint_path=path, steps_per_epoch=1, resumed_at=None)
    running = dataclasses.replace(failed, status=RUNNING, started=started, alerts=(Alert(MARK + CONTROL),))
    summary = Summary(**{**{f.name: None for f in dataclasses.fields(Summary)}, "model_path": path, "epochs_done": 1,
                         "epochs": 1, "steps": 1, "elapsed_s": 1.0})
    done = dataclasses.replace(running, status=DONE, summary=summary)
    for markdown in (status_markdown(running), busy_banner(running), alerts_markdown(running),
                     busy_banner(dataclasses.replace(running, started=None)), status_markdown(done)):
        no_markup(markdown)
        assert MARK in shown_markdown(markdown) and "\x1b" not in markdown


@given(st.text())
def test_md_text_shows_any_text_as_that_text_and_lets_no_markup_through(text):
    markdown = md_text(text)
    assert "<" not in markdown and "\n" not in markdown  # no tag, and no line where a block could start
    assert re.fullmatch(r"(?:[^\\`*_\[\]~|&]|\\[\\`*_\[\]~|]|&(?:amp|lt|gt);)*", markdown), markdown
    assert shown_markdown(markdown) == printable(text)


def test_toasts_are_html_escaped_and_model_labels_are_text(tmp_path):
    from sda.ui import app

    said = []
    app._toast(lambda message, title: said.append((message, title)), MARK + CONTROL, "Cannot <b>start")
    assert said == [(ESCAPED + "\\x1b]52;c;aGk=\\x07", "Cannot &lt;b&gt;start")]
    (tmp_path / f"{MARK}{CONTROL}.sda").write_bytes(b"")
    [(label, value)] = app._model_choices(tmp_path)
    assert label == value == f"{MARK}\\x1b]52;c;aGk=\\x07.sda"  # a Dropdown shows labels as text: controls escaped


def test_plain_json_makes_every_key_and_string_printable():
    assert plain_json({"a\x1b": ["b\udcff", 1, None, {"c": "\u202e"}]}) == {"a\\x1b": ["b\\xff", 1, None,
                                                                                           {"c": "\\u202e"}]}


def test_a_folders_file_names_reach_the_folder_report_as_text(tmp_path):
    from sda.ui.app import _check_folder

    (tmp_path / f"{MARK}{CONTROL}.wav").write_bytes(b"not audio")
    report, _ = _check_folder(str(tmp_path), SMALL)
    assert MARK in report and "\x1b" not in report and "\x07" not in report


# ----------------------------------------------------------------------------------------------
# Model files: markup in every field the Models tab shows, and in each field alone


def test_a_model_with_markup_in_every_field_is_shown_as_text(source, tmp_path):
    from sda.ui.app import _show_model

    shown = _show_model(hostile_model(source, tmp_path / "m.sda"), VIEWS)
    assert_models_tab_is_safe(shown)
    assert shown["notice"] == "" and MARK in shown["info"] and "\\x1b]52" in shown["info"]
    assert shown["health"].count(ESCAPED) == 2 * SMALL.rvq_levels  # replaced and the codebook size of each level
    assert shown["config"] == plain_json(container.read_metadata(tmp_path / "m.sda")["config"])


def test_markup_in_any_single_field_of_a_model_file_never_reaches_the_page_raw(source, tmp_path):
    """Each leaf of the metadata, alone, replaced by MARK: whether the page can still show the file or
    says why not, nothing it shows holds markup, and nothing raises."""
    from sda.ui.app import _show_model

    tensors, metadata = container.read(source)
    paths = list(_leaves(metadata))
    assert len(paths) > 100  # the config, the data, the health table and the history, all of them
    refused = 0
    for path in paths:
        crafted = container.read_metadata(source)
        _set(crafted, path, MARK)
        container.write(tmp_path / "m.sda", tensors, crafted)
        shown = _show_model(tmp_path / "m.sda", VIEWS)
        assert_models_tab_is_safe(shown)
        refused += shown["notice"] != ""
    assert 0 < refused < len(paths)  # some fields are only shown, others must be numbers: both kinds were hit


def test_a_bad_entry_is_refused_with_a_message_that_quotes_it_escaped(source, tmp_path):
    from sda.ui.app import _show_model

    tensors, metadata = container.read(source)
    metadata["health"][0][MARK] = 1
    container.write(tmp_path / f"{MARK}.sda", tensors, metadata)
    shown = _show_model(str(tmp_path / f"{MARK}.sda"), VIEWS)
    no_markup(shown["notice"])
    assert shown_markdown(shown["notice"]).startswith(f"**Cannot open {MARK}.sda:**")
    assert shown["info"] == "" and shown["health"] == ""


def test_the_models_list_opens_only_files_in_the_models_folder(source, tmp_path):
    from sda.ui.app import _listed_model, _show_model

    models = tmp_path / "models"
    models.mkdir()
    (models / "kit.sda").write_bytes(source.read_bytes())
    assert _listed_model(models, "kit.sda") == models / "kit.sda"
    for elsewhere in (str(source), "../source/source.sda", "/etc/passwd", "kit"):
        shown = _show_model(_listed_model(models, elsewhere), VIEWS, elsewhere)
        assert "there is no such model in the models folder" in shown["notice"] and shown["info"] == ""
    shown = _show_model(_listed_model(models, 7), VIEWS, 7)  # not even text
    assert shown["notice"].startswith("**Cannot open int:**")
