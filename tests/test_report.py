"""The HTML report: built from a run of the tiny demo, opened in headless Chromium.

Chromium (Debian package ``chromium``) is installed by the fixture with apt-get when it is
missing, as on a fresh CI machine. It is driven through the Chrome DevTools Protocol over a pipe
(``--remote-debugging-pipe``: NUL-separated JSON on file descriptors 3 and 4), so the test needs
neither chromedriver nor selenium nor a websocket library.

The screenshot of the report (showing one figure) is written to ``tests/_tmp/report/`` and to the
run's tmp folder; both paths are printed.
"""

import base64
import html.parser
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from test_workflow import TINY_DEMO

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
SCREENSHOT_DIR = REPO / "tests" / "_tmp" / "report"
CONFIG = {"demo": TINY_DEMO, "sample_pixels": [[10, 10], [30, 40]]}
#: Launch flags for this machine kind: no sandbox as root, and nothing that reaches the network.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--mute-audio", "--hide-scrollbars"]
WIDTH, HEIGHT = 1400, 900


# ------------------------------------------------------------------ a minimal DevTools client
class Chromium:
    """Headless Chromium driven over the DevTools protocol pipe; one page (``self.session``)."""

    def __init__(self, binary, workdir):
        self.log_path = Path(workdir) / "chromium.log"
        cmd_read, self._write = os.pipe()      # we write commands, Chromium reads fd 3
        self._read, events_write = os.pipe()   # Chromium writes fd 4, we read

        def pipe_fds():  # in the child, before exec: move the two ends to fds 3 and 4
            a, b = os.dup(cmd_read), os.dup(events_write)
            os.dup2(a, 3)
            os.dup2(b, 4)

        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [binary, *CHROMIUM_FLAGS, f"--user-data-dir={Path(workdir) / 'profile'}",
                 "--remote-debugging-pipe", f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=pipe_fds, close_fds=False)
        os.close(cmd_read)
        os.close(events_write)
        self._buffer, self._id, self.events = b"", 0, []
        try:
            target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.send("Target.attachToTarget",
                                     {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page", "Network"):
                self.send(f"{domain}.enable", page=True)
            self.send("Emulation.setDeviceMetricsOverride",
                      {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}, page=True)
        except BaseException:
            self.close()
            raise

    def _receive(self, deadline):
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from Chromium (log: {self.log_path})")
            if select.select([self._read], [], [], left)[0]:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium exited ({self.proc.poll()}); log: "
                                       f"{self.log_path.read_text()[-2000:]}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method, params=None, page=False, timeout=60):
        """Send one command; events that arrive meanwhile are kept in ``self.events``."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if page:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]
            self.events.append(answer)

    def wait_for_event(self, method, timeout=60):
        deadline = time.monotonic() + timeout
        while not any(event.get("method") == method for event in self.events):
            self.events.append(self._receive(deadline))

    def evaluate(self, expression, timeout=60):
        """Value of a JavaScript expression in the page (promises are awaited)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, page=True, timeout=timeout)
        if "exceptionDetails" in result:
            raise AssertionError(f"JavaScript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path):
        data = self.send("Page.captureScreenshot", {"format": "png"}, page=True)["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._write)
        os.close(self._read)


def _chromium_binary():
    """Path of Debian's Chromium, installing the package with apt-get if it is missing."""
    binary = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if binary:
        return binary
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail("Chromium is not installed and cannot be installed here (needs root and apt-get): "
                    "apt-get install chromium")
    start = time.monotonic()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-y", "-qq"]
    install = apt + ["install", "--no-install-recommends", "chromium"]
    proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:  # stale or empty package lists on a fresh machine
        subprocess.run(apt + ["update"], capture_output=True, text=True, env=env, timeout=900)
        proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0 or not Path("/usr/bin/chromium").exists():
        pytest.fail(f"apt-get install chromium failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    print(f"apt-get install chromium: {time.monotonic() - start:.1f} s")
    return "/usr/bin/chromium"


# ------------------------------------------------------------------ fixtures
def _snakemake(workdir, *options):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
           "--configfiles", "config/config.yaml", "config/test.yaml", *options]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"snakemake {' '.join(options)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The tiny demo run with `snakemake --cores 2`, then `snakemake --report report.html`."""
    workdir = tmp_path_factory.mktemp("report_run")
    shutil.copytree(REPO / "config", workdir / "config")
    (workdir / "config" / "test.yaml").write_text(yaml.safe_dump(CONFIG))
    start = time.monotonic()
    _snakemake(workdir, "--cores", "2")
    print(f"snakemake --cores 2: {time.monotonic() - start:.1f} s")
    start = time.monotonic()
    out = _snakemake(workdir, "--report", "report.html")
    print(f"snakemake --report: {time.monotonic() - start:.1f} s")
    return workdir, workdir / "report.html", out


@pytest.fixture(scope="module")
def page(report):
    """Chromium with the report loaded (and rendered by its React app)."""
    binary = _chromium_binary()
    browser = Chromium(binary, tempfile.mkdtemp(prefix="chromium-", dir=report[0]))
    try:
        browser.send("Page.navigate", {"url": report[1].as_uri()}, page=True)
        browser.wait_for_event("Page.loadEventFired")
        browser.evaluate("""new Promise((resolve, reject) => { const t0 = Date.now();
            (function poll() { if (typeof app !== 'undefined' && document.querySelector('#app nav'))
                                   resolve(true);
                               else if (Date.now() - t0 > 20000) reject('report app did not render');
                               else setTimeout(poll, 50); })(); })""")
        yield browser
    finally:
        browser.close()


# ------------------------------------------------------------------ tests
class _Resources(html.parser.HTMLParser):
    """Collects every URL an HTML page would load by itself (scripts, styles, images, frames)."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        keys = {"script": ["src"], "img": ["src"], "iframe": ["src"], "embed": ["src"],
                "object": ["data"], "link": ["href"], "source": ["src"]}.get(tag, [])
        self.urls += [attrs[key] for key in keys if attrs.get(key)]


def test_report_is_one_self_contained_html_file(report):
    workdir, path, out = report
    assert "Report created" in out
    assert path.is_file() and path.stat().st_size < 20e6
    assert not (workdir / "report").exists()
    parser = _Resources()
    parser.feed(path.read_text())
    external = [url for url in parser.urls if not url.startswith("data:")]
    assert external == [], f"the report loads files besides itself: {external}"


def test_report_loads_without_errors(page, report):
    """No JavaScript exception, no console or browser-log error, no request outside the file
    itself and data: URIs, and no docutils error or warning text in the rendered page."""
    time.sleep(0.5)  # let late console messages arrive
    page.evaluate("1")
    problems = []
    for event in page.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            problems.append(params["exceptionDetails"].get("exception", {}).get("description")
                            or params["exceptionDetails"].get("text"))
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            problems.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            problems.append(f"{params['entry']['source']}: {params['entry']['text']}")
        elif method == "Network.loadingFailed":
            problems.append(f"request failed: {params.get('errorText')}")
    assert problems == []
    urls = {event["params"]["request"]["url"] for event in page.events
            if event.get("method") == "Network.requestWillBeSent"}
    assert report[1].as_uri() in urls
    assert {url for url in urls if url != report[1].as_uri() and not url.startswith("data:")} == set()
    text = page.evaluate("document.body.innerText")
    assert "Dark-commissioning run of the detcal workflow" in text  # workflow.rst
    for marker in ("System Message", "ERROR/", "WARNING/", "Unknown target name"):
        assert marker not in text, f"docutils message in the report text: {marker}"


#: Click through the report as a reader would: every category in the menu, then every result's
#: "eye" button; returns what was shown (image sizes as decoded by the browser).
CLICK_THROUGH = r"""
(async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const until = async (what, cond) => {
    const t0 = Date.now();
    while (!cond()) { if (Date.now() - t0 > 5000) throw new Error('timed out: ' + what); await sleep(20); }
  };
  const out = {categories: {}, results: {}};
  for (const category of Object.keys(categories)) {
    app.setView({navbarMode: 'menu'});
    await until('menu', () => document.querySelector('nav') && app.state.navbarMode === 'menu');
    const item = [...document.querySelectorAll('nav li')].find(li => li.textContent.trim() === category);
    if (!item) { out.categories[category] = 'not in the menu'; continue; }
    (item.querySelector('a') || item).click();
    await until('category ' + category, () => app.state.category === category);
    out.categories[category] = document.querySelector('nav').innerText.includes(category) ? 'ok' : 'not shown';
  }
  for (const [path, entry] of Object.entries(results)) {
    app.showResultInfo(path);
    await until('info ' + path, () => app.state.navbarMode === 'resultinfo' && app.state.resultPath === path);
    await sleep(30);
    const eye = document.querySelector('nav td a[type=button], nav li span a[type=button]');
    const shown = {mime: entry.mime_type, caption: !!entry.caption, eye: !!eye};
    if (eye && entry.mime_type.startsWith('image/')) {
      eye.click();
      await until('image ' + path, () => { const img = document.querySelector('#app img:not(nav img)');
                                           return img && img.src === entry.data_uri && img.complete; });
      const img = document.querySelector('#app img:not(nav img)');
      shown.width = img.naturalWidth; shown.height = img.naturalHeight;
    } else {
      shown.bytes = entry.data_uri.length;
    }
    out.results[path] = shown;
  }
  return out;
})()
"""


def test_every_figure_is_in_the_report_and_shows(page, report):
    workdir = report[0]
    figures = {p.relative_to(workdir).as_posix() for p in (workdir / "results").rglob("*.png")}
    assert len(figures) >= 14  # 7 step figures for each of the 2 exposures
    seen = page.evaluate(CLICK_THROUGH, timeout=120)
    assert seen["categories"] and set(seen["categories"].values()) == {"ok"}, seen["categories"]
    items = seen["results"]
    assert figures <= set(items), f"figures missing from the report: {sorted(figures - set(items))}"
    for path, shown in items.items():
        assert shown["caption"] and shown["eye"], (path, shown)
        if shown["mime"].startswith("image/"):
            assert shown["width"] >= 200 and shown["height"] >= 200, (path, shown)
        else:
            assert shown["bytes"] > 100, (path, shown)
    print(f"report items: {len(items)} ({len(figures)} figures), categories: {sorted(seen['categories'])}")


def test_screenshot_of_a_figure_in_the_report(page, report):
    """Leaves a picture of the report as a reader gets there: menu -> the jump category -> the
    eye button of the first figure in its table."""
    workdir = report[0]
    category = page.evaluate("Object.keys(categories).filter(c => c.includes('jump'))[0]")
    assert category, "no jump category in the report"
    page.evaluate(f"""(async () => {{
        const sleep = ms => new Promise(r => setTimeout(r, ms));
        const until = async (what, cond) => {{ const t0 = Date.now();
            while (!cond()) {{ if (Date.now() - t0 > 5000) throw new Error(what); await sleep(20); }} }};
        app.setView({{navbarMode: 'menu', content: 'rulegraph'}});
        await until('menu', () => app.state.navbarMode === 'menu');
        const item = [...document.querySelectorAll('nav li')]
            .find(li => li.textContent.trim() === {json.dumps(category)});
        (item.querySelector('a') || item).click();
        await until('category', () => document.querySelector('nav td a[type=button]'));
        document.querySelector('nav td a[type=button]').click();
        await until('figure', () => (document.querySelector('#app img:not(nav img)') || {{}}).complete);
        await sleep(300); return true; }})()""")
    shot = workdir / "results" / "report-screenshot.png"
    page.screenshot(shot)
    assert shot.stat().st_size > 20_000
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SCREENSHOT_DIR / "report-screenshot.png")
    print(f"screenshot of the report: {SCREENSHOT_DIR / 'report-screenshot.png'} (and {shot})")
