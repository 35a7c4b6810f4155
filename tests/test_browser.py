"""The classroom in a real browser: the project's JupyterLab, driven in headless Chromium by Playwright.

Run alone with ``pytest -m browser`` (``make test`` runs it with everything else). It needs Debian's
``chromium`` (``apt-get install chromium``; ``make test`` installs it when run as root) and
``playwright`` from PyPI (the ``test`` extra), used with that system browser: nothing is downloaded.
Without either, the test skips and says which is missing.

The lessons are copied to a temporary folder first, so running them here never rewrites the committed
notebooks. Screenshots go to ``test-artifacts/browser/`` (git-ignored).

The other tests here need no browser: they check that the tour and the README link every lesson.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SERVER_START_TIMEOUT_S = 90
RUN_TIMEOUT_S = 300  # one lesson, run top to bottom in the browser (lessons take <= 3 min on 2 cores)
ERROR_PATTERN = r"Traceback \(most recent call last\)|^\s*\w*(Error|Exception)\b.*$"

# JupyterLab settings for the test server: every cell in the DOM (so every prompt can be read), the
# notebook's kernel started without asking, and no news pop-up.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none",
                                                                     "autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                          "checkForUpdates": False},
}


# ---------------------------------------------------------------------------------------------- helpers

def find_chromium() -> "str | None":
    """The system Chromium: ``$VITLAB_CHROMIUM`` if set, else the first of BROWSER_NAMES on the PATH."""
    if os.environ.get("VITLAB_CHROMIUM"):
        return os.environ["VITLAB_CHROMIUM"]
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def lesson_notebooks() -> list[Path]:
    """Every lesson: notebooks/NN_name.ipynb, in order."""
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _request(url: str, method: str, timeout: float = 10.0) -> None:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=timeout):
        pass


@dataclass
class Lab:
    base_url: str  # http://127.0.0.1:PORT
    token: str
    root: Path  # the folder the server serves: copies of the lessons
    log: Path  # the server's output

    def api(self, path: str) -> str:
        return f"{self.base_url}{path}?token={self.token}"

    def open_url(self, notebook: str) -> str:
        return f"{self.base_url}/lab/tree/{notebook}?token={self.token}&reset"

    def wait_for_idle_kernel(self, notebook: str, timeout_s: float = 90.0) -> None:
        """Wait until the server has a session for ``notebook`` whose kernel is started and idle."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sessions = json.loads(_get(self.api("/api/sessions")))
            if any(s["path"].endswith(notebook) and s["kernel"]["execution_state"] == "idle" for s in sessions):
                return
            time.sleep(0.5)
        pytest.fail(f"no idle kernel for {notebook} after {timeout_s:.0f} s: {self.log.read_text()[-2000:]}")

    def set_windowing(self, mode: str) -> None:
        """Set the notebook windowing mode ('none': every cell in the DOM; 'full': only those in view).

        Takes effect for notebooks opened after the next page load.
        """
        name = "@jupyterlab/notebook-extension:tracker"
        settings = dict(LAB_SETTINGS["@jupyterlab/notebook-extension/tracker.jupyterlab-settings"], windowingMode=mode)
        request = urllib.request.Request(self.api(f"/lab/api/settings/{name}"), method="PUT",
                                         data=json.dumps({"raw": json.dumps(settings)}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10):
            pass

    def shutdown_kernels(self) -> None:
        for session in json.loads(_get(self.api("/api/sessions"))):
            _request(self.api(f"/api/sessions/{session['id']}"), "DELETE")


def _stop(process: subprocess.Popen, lab: "Lab | None") -> None:
    """Stop the server and its kernels: ask politely, then signal the process group, then kill it."""
    if process.poll() is None and lab is not None:
        try:
            _request(lab.api("/api/shutdown"), "POST")  # shuts down every kernel, then the server
            process.wait(timeout=20)
        except (OSError, urllib.error.URLError, subprocess.TimeoutExpired):
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)  # the server was started as the leader of its own group
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            continue


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def chromium_path() -> str:
    pytest.importorskip("playwright.sync_api", exc_type=ImportError,
                        reason="playwright is not installed: `pip install playwright` (the `test` extra has it; "
                        "`make test` installs it). Browser test skipped.")
    path = find_chromium()
    if path is None:
        pytest.skip("no Chromium found (looked for $VITLAB_CHROMIUM, " + ", ".join(BROWSER_NAMES) + "): "
                    "install Debian's `chromium` (`apt-get install -y chromium`; `make test` does this when "
                    "run as root). Browser test skipped.")
    return path


@pytest.fixture(scope="module")
def lab(chromium_path, tmp_path_factory):
    """JupyterLab on a free localhost port, serving copies of the lessons; always stopped afterwards."""
    work = tmp_path_factory.mktemp("lab")
    root = work / "notebooks"
    root.mkdir()
    for notebook in lesson_notebooks():
        shutil.copy2(notebook, root / notebook.name)
    for name, values in LAB_SETTINGS.items():
        path = work / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), HF_HUB_OFFLINE="1",
               JUPYTER_CONFIG_DIR=str(work / "config"), JUPYTER_RUNTIME_DIR=str(work / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"))
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={work / 'settings'}",
               f"--LabApp.workspaces_dir={work / 'workspaces'}", "--LabApp.news_url=",
               "--ServerApp.terminals_enabled=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = work / "jupyterlab.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = Lab(f"http://127.0.0.1:{port}", token, root, log)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                _get(server.api("/api/status"))
                break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within {SERVER_START_TIMEOUT_S} s:\n"
                                f"{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield server
    finally:
        _stop(process, server)
        if ARTIFACTS.is_dir():
            shutil.copy2(log, ARTIFACTS / "jupyterlab.log")


@pytest.fixture(scope="module")
def page(chromium_path, lab):
    """One headless Chromium page (1280 x 1200: a widget fits in one screenshot), closed afterwards."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    console = []  # the browser console, saved beside the screenshots
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1200})
            tab = context.new_page()
            tab.set_default_timeout(60_000)
            tab.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
            tab.on("pageerror", lambda error: console.append(f"page error: {error}"))
            yield tab
        finally:
            browser.close()
            (ARTIFACTS / "console.log").write_text("\n".join(console) + "\n")


# ---------------------------------------------------------------------------------------------- in the page

def _open(page, lab: Lab, notebook: str, kernel: bool = True) -> None:
    """Load JupyterLab with ``notebook`` open (and, with ``kernel``, wait until its kernel is idle)."""
    page.goto(lab.open_url(notebook))
    page.locator(".jp-NotebookPanel:visible .jp-Cell").first.wait_for(state="visible")
    if kernel:
        lab.wait_for_idle_kernel(notebook)
        page.locator(".jp-NotebookPanel:visible .jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(
            state="attached")


def _open_from_file_browser(page, notebook: str) -> None:
    """Open another notebook in the loaded JupyterLab by double-clicking it in the file browser."""
    page.locator(".jp-DirListing-item", has=page.locator(".jp-DirListing-itemText", has_text=re.compile(
        rf"^{re.escape(notebook)}$"))).dblclick()
    page.locator(".jp-NotebookPanel:visible", has=page.locator(".jp-Cell")).first.wait_for(state="visible")
    page.get_by_role("tab", name=re.compile(re.escape(notebook))).first.wait_for(state="visible")


def _prompts(page) -> list[str]:
    """The execution prompt of every code cell: '[3]:', '[*]:' (running or queued) or '[ ]:'."""
    return page.locator(".jp-NotebookPanel:visible .jp-CodeCell .jp-InputPrompt").all_inner_texts()


def _error_outputs(page) -> list[str]:
    """Text of every output that is a Python error (traceback), as the reader sees it."""
    texts = page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output[data-mime-type="
                         "'application/vnd.jupyter.stderr']").all_inner_texts()
    return [t[:1500] for t in texts if re.search(ERROR_PATTERN, t, re.M)]


def _menu(page, menu: str, item: str) -> None:
    """Click ``menu`` in the menu bar, then its ``item`` (whose name may be followed by its shortcut)."""
    page.get_by_role("menuitem", name=menu, exact=True).click()
    shortcut = r"( [A-Z]\w*(\+\S+)+)?"  # e.g. " Ctrl+S", " Shift+Enter"
    page.get_by_role("menuitem", name=re.compile(rf"^{re.escape(item)}{shortcut}$")).click()


def _clear_and_run_all(page) -> None:
    """Clear every saved output and prompt (so nothing old can pass for new), then Run All Cells."""
    _menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function("() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')]"
                           ".every(p => !/\\d/.test(p.innerText))")
    _menu(page, "Run", "Run All Cells")


def _wait_until_finished(page, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    page.wait_for_timeout(500)
    while time.monotonic() < deadline:
        prompts = _prompts(page)
        running = any("*" in p for p in prompts)
        if not running and prompts and (re.search(r"\[\d+\]", prompts[-1]) or _error_outputs(page)):
            return
        page.wait_for_timeout(500)
    pytest.fail(f"the notebook did not finish within {timeout_s:.0f} s; prompts: {_prompts(page)}")


def _save(page, path: Path, timeout_s: float = 30.0) -> None:
    """File ▸ Save Notebook, then wait until the file on disk has been rewritten."""
    before = path.stat().st_mtime_ns
    _menu(page, "File", "Save Notebook")
    deadline = time.monotonic() + timeout_s
    while path.stat().st_mtime_ns == before:
        if time.monotonic() > deadline:
            pytest.fail(f"{path.name} was not saved within {timeout_s:.0f} s")
        page.wait_for_timeout(200)
    page.wait_for_timeout(300)  # let the write finish


def _saved_errors(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return [f"cell {i}: {o['ename']}: {o['evalue']}" for i, cell in enumerate(cells) if cell["cell_type"] == "code"
            for o in cell.get("outputs", []) if o["output_type"] == "error"]


def _move_slider(page, slider, presses: int = 1) -> None:
    """Move an ipywidgets slider the way a student does: grab the handle, press the right arrow key."""
    handle = slider.locator(".noUi-handle")
    handle.scroll_into_view_if_needed()
    handle.focus()
    for _ in range(presses):
        handle.press("ArrowRight")


# ---------------------------------------------------------------------------------------------- the tests

@pytest.mark.browser
def test_every_lesson_opens_in_jupyterlab_with_no_error_shown(page, lab):
    """Each lesson as a student first sees it: it opens, shows its heading, and no output is an error."""
    lessons = lesson_notebooks()
    assert lessons, "no lessons in notebooks/"
    problems = []
    lab.set_windowing("full")  # only the cells in view are drawn: opening is quick; the file is checked below
    try:
        for i, notebook in enumerate(lessons):
            if i == 0:
                _open(page, lab, notebook.name, kernel=False)
            else:
                _open_from_file_browser(page, notebook.name)
            heading = page.locator(".jp-NotebookPanel:visible .jp-MarkdownCell h1").first
            heading.wait_for(state="visible")
            page.screenshot(path=str(ARTIFACTS / f"open_{notebook.stem}.png"))
            if not heading.inner_text().strip():
                problems.append(f"{notebook.name}: no heading")
            problems += [f"{notebook.name}: {text}" for text in _error_outputs(page)]
            problems += [f"{notebook.name}: saved error output, {error}" for error in _saved_errors(notebook)]
    finally:
        lab.shutdown_kernels()  # only reading here: the kernels JupyterLab started are not needed
        lab.set_windowing("none")
    assert not problems, "\n".join(problems)


# The widget lessons: the notebook to run, the slider to move (its description), and the widget text that
# must change with it.
WIDGET_LESSONS = {
    "00_tour": ("image", "predicted"),
    "01_patches_to_tokens": ("patch P", "patch tokens"),
}


@pytest.mark.browser
@pytest.mark.parametrize("stem", sorted(WIDGET_LESSONS))
def test_lesson_runs_in_the_browser_and_its_slider_changes_the_output(page, lab, stem):
    """Run All Cells as a student would; no cell shows an error; moving the slider redraws the widget."""
    notebook = lab.root / f"{stem}.ipynb"
    if not notebook.is_file():
        pytest.skip(f"notebooks/{stem}.ipynb does not exist")
    try:
        _run_and_move_the_slider(page, lab, notebook, *WIDGET_LESSONS[stem])
    finally:
        lab.shutdown_kernels()


def _run_and_move_the_slider(page, lab: Lab, notebook: Path, description: str, expected_text: str) -> None:
    stem = notebook.stem
    _open(page, lab, notebook.name)
    started = time.monotonic()
    _clear_and_run_all(page)
    _wait_until_finished(page, RUN_TIMEOUT_S)
    seconds = time.monotonic() - started
    page.screenshot(path=str(ARTIFACTS / f"run_{stem}.png"))
    (ARTIFACTS / f"run_{stem}.html").write_text(page.content())  # the DOM, to debug a failure
    errors = _error_outputs(page)
    assert not errors, f"{stem}: cells show errors after Run All:\n" + "\n---\n".join(errors)

    slider = page.locator(".jp-NotebookPanel:visible .widget-slider").filter(
        has=page.locator("label", has_text=re.compile(rf"^{re.escape(description)}$"))).last
    slider.wait_for(state="visible")
    widget = slider.locator("xpath=ancestor::div[contains(@class, 'jp-OutputArea-output')][1]")
    text, picture = widget.locator(".widget-html, .widget-htmlmath").first, widget.locator("img").first
    picture.wait_for(state="visible")
    before = (slider.locator(".widget-readout").inner_text(), text.inner_text(), picture.get_attribute("src"))
    assert expected_text in before[1], f"{stem}: the widget shows {before[1]!r}"
    widget.screenshot(path=str(ARTIFACTS / f"widget_{stem}_before.png"))

    _move_slider(page, slider)
    page.wait_for_function(
        "([node, old]) => node.innerText !== old", arg=[text.element_handle(), before[1]], timeout=30_000)
    page.wait_for_function(
        "([node, old]) => node.getAttribute('src') !== old", arg=[picture.element_handle(), before[2]],
        timeout=30_000)
    after = (slider.locator(".widget-readout").inner_text(), text.inner_text(), picture.get_attribute("src"))
    widget.screenshot(path=str(ARTIFACTS / f"widget_{stem}_after.png"))
    assert after[0] != before[0], f"{stem}: the slider did not move (readout {before[0]!r})"
    assert after[1] != before[1] and expected_text in after[1]
    assert not _error_outputs(page), f"{stem}: an error appeared after moving the slider"

    _save(page, notebook)
    assert not _saved_errors(notebook), f"{stem}: error outputs saved: {_saved_errors(notebook)}"
    print(f"{stem}: ran in the browser in {seconds:.0f} s; slider {description!r} {before[0]} -> {after[0]}")


# ---------------------------------------------------------------------------------------------- the website

@pytest.mark.browser
def test_site_index_links_every_lesson_and_a_lesson_page_shows_its_figures_and_a_solution(page, tmp_path):
    """`make site`'s pages in a real browser: the index links all lessons, lesson 03's page shows its figures
    (every image decoded) and reveals an exercise's solution when its summary is clicked. It uses the module's
    one browser page (a second Playwright instance cannot start inside the first one's event loop)."""
    from vitlab.site import build_site

    index = build_site(tmp_path / "site")[0]
    page.goto(index.as_uri())
    links = page.locator("table a")
    assert links.count() == len(lesson_notebooks())
    page.locator("table a", has_text="03").click()
    page.wait_for_load_state("load")
    assert page.url.endswith("03_training_fashion_mnist.html")
    images = page.locator(".jp-OutputArea-output img")
    assert images.count() >= 5
    assert page.evaluate("Array.from(document.querySelectorAll('.jp-OutputArea-output img'))"
                         ".every(img => img.complete && img.naturalWidth > 0)")
    details = page.locator("details").first
    assert details.get_attribute("open") is None
    details.locator("summary").click()
    assert details.get_attribute("open") is not None
    assert details.locator("code").first.is_visible()
    page.screenshot(path=str(ARTIFACTS / "site-lesson-03.png"))
