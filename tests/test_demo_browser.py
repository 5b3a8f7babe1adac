"""The demo end to end in a real headless browser: Debian's chromium driven by playwright.

The app serves a tiny untrained model (or the run named by GPTLAB_DEMO_MODEL, which is how
docs/demo.png was made from a trained one); a second app serves a tiny instruction run. Skips, saying why, where chromium or playwright
is missing: `.ci/install-browser.sh` installs chromium.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_demo import free_port, write_tiny_instruction_run, write_tiny_run

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and quiet: without the background-networking flags chromium keeps trying to reach
# Google's services, which a closed network turns into a flood of failing requests.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000  # generous: two loaded CPU cores


def missing_browser() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found: install Debian's chromium (bash .ci/install-browser.sh)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (Python) is not installed: uv sync --group dev"
    return None


pytestmark = [
    pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser())),
    # gradio's queue statistics call pandas in ways pandas 3 deprecates: not ours to fix.
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting'"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


def served(spec: str):
    """The demo of `spec` served on a free port of this machine: its address, until closed."""
    from gptlab.demo.app import DemoApp, serve
    from gptlab.demo.models import ModelStore
    from gptlab.demo.settings import DemoLimits

    page = DemoApp(ModelStore("cpu"), DemoLimits(), [spec], spec).build()
    port = free_port()
    serve(page, "127.0.0.1", port, block=False)
    yield f"http://127.0.0.1:{port}/"
    page.close()


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    spec = os.environ.get("GPTLAB_DEMO_MODEL") or str(
        write_tiny_run(tmp_path_factory.mktemp("runs") / "tiny")
    )
    yield from served(spec)


@pytest.fixture(scope="module")
def instruct_url(tmp_path_factory):
    yield from served(str(write_tiny_instruction_run(tmp_path_factory.mktemp("runs") / "instruct")))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(browser, demo_url):
    """A fresh page of the demo, its model loaded and its explorer drawn."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(demo_url)
    page.wait_for_selector("#explorer .ntx-row")
    yield page
    page.close()


def test_generate_streams_text_colours_it_and_the_explorer_follows(browser_page, tmp_path):
    page = browser_page
    page.locator("#prompt textarea").fill("To be")
    page.locator("#generate").click()
    page.wait_for_function("document.querySelector('#output textarea').value.length > 0")
    # The run ends with the new tokens coloured, and the explorer reading prompt + output.
    page.wait_for_selector("#coloured .tokp-token")
    output = page.locator("#output textarea").input_value()
    assert output
    text = "To be" + output
    page.wait_for_function(
        "text => document.querySelector('#explorer-text textarea').value === text", arg=text
    )
    rows = page.locator("#explorer .ntx-row")
    assert rows.count() == 12
    assert (
        page.locator("#explorer .ntx-bar.ntx-final")
        .first.get_attribute("style")
        .startswith("width:")
    )

    # Moving top-k redraws the chart: top-k 5 removes the 7 tokens below the 5th of 12 (top-p,
    # which comes after it, may remove some of the first 5 too).
    top_k = page.locator("#top-k input[type=number]")
    top_k.fill("5")
    top_k.press("Enter")
    page.wait_for_function(
        "[...document.querySelectorAll('#explorer .ntx-note')]"
        ".filter(note => note.textContent === 'removed by top-k').length === 7"
    )
    page.mouse.move(0, 0)  # no button left in its hover colour
    page.screenshot(path=tmp_path / "demo.png", full_page=True)
    assert (tmp_path / "demo.png").stat().st_size > 10_000

    # A click on a bar appends its token to the text.
    rows.first.click()
    page.wait_for_function(
        "n => document.querySelector('#explorer-text textarea').value.length > n", arg=len(text)
    )


def test_a_bad_value_is_a_message_in_the_page(browser_page):
    page = browser_page
    page.locator("#seed input").fill("-5")
    page.locator("#generate").click()
    page.get_by_text("seed must be at least 0").first.wait_for()
    assert page.locator("#output textarea").input_value() == ""


def test_an_instruction_run_opens_the_instruct_tab_which_streams_a_response(browser, instruct_url):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(instruct_url)
    page.get_by_text("instruction run ·").first.wait_for()
    page.locator("#instruct-help").get_by_text("Type an instruction").wait_for()
    page.locator("#instruction textarea").fill("Name the colour.")
    page.locator("#instruction-input textarea").fill("item 3")
    page.locator("#answer").click()
    page.wait_for_function("document.querySelector('#response textarea').value.length > 0")
    page.close()
