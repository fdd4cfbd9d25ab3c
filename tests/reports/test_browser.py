"""report.html in a real browser (headless Chromium): the summary box comes first, every example's
caption names its own picture, hostile names run no script, and the page makes no network request.
Skipped with the reason where Chromium is not installed (Debian: apt-get install chromium)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest

from redteam.core.config import AuditConfig, MethodSource
from redteam.engine import AuditRun
from reports import write_reports

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
#: Chrome's own background services (time, accounts, safe browsing, updates): their traffic varies run to run.
CHROME_SERVICES = ("google.com", "googleapis.com", "gvt1.com", "gstatic.com", "googleusercontent.com")
HOSTILE = "<script>document.body.insertAdjacentHTML('beforeend','<p id=pwned>')</script><img src=x onerror=\"this.id='pwned'\">"


class _Dom(HTMLParser):
    """The order of the page's headings, and each example figure's (img alt, caption)."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.figures: list[list[str]] = []
        self.ids: list[str] = []
        self._capture: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.append(str(values["id"]))
        if tag in ("h1", "h2"):
            self._capture, self.headings = "heading", [*self.headings, ""]
        elif tag == "figure":
            self.figures.append([])
        elif tag == "img" and self.figures and len(self.figures[-1]) == 0:
            self.figures[-1].append(str(values.get("alt")))
        elif tag == "figcaption":
            self._capture = "caption"
            self.figures[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "figcaption"):
            self._capture = None

    def handle_data(self, data: str) -> None:
        if self._capture == "heading":
            self.headings[-1] += data
        elif self._capture == "caption":
            self.figures[-1][-1] += data


def test_report_in_headless_chromium(sample_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    config = AuditConfig(
        originals=sample_dir,
        out=tmp_path / "out",
        methods=(MethodSource(HOSTILE, "reference", spec="gaussian_blur:sigma=2"),),
        cache_dir=cache_dir,
        recognizers=("dlib",),
        builtin_policy="demo_policy.toml",
        attacks=("none", "wiener", "richardson_lucy"),
    )
    report = write_reports(AuditRun(config).run(), tmp_path / "out")["html"]
    blank = tmp_path / "blank.html"
    blank.write_text('<!DOCTYPE html><title>blank</title><img src="http://proxy-check.example/x.png">')
    _, browser_own = chromium(blank, tmp_path / "profile-blank")  # Chrome's own background traffic, for reference
    assert "proxy-check.example" in browser_own  # the recording proxy sees a page's requests
    shown, hosts = chromium(report, tmp_path / "profile")
    assert shown.returncode == 0, shown.stderr[-2000:]
    dom = _Dom()
    dom.feed(shown.stdout)
    assert dom.headings[0] == "Face anonymization red-team report" and dom.headings[1].startswith("Summary: ")
    assert "pwned" not in dom.ids and '<p id="pwned">' not in shown.stdout  # the hostile name ran nothing
    assert dom.figures and all(len(figure) == 2 and figure[0] == figure[1] for figure in dom.figures), dom.figures
    assert {figure[0] for figure in dom.figures} == {"wiener", "richardson_lucy"}
    extra = {host for host in hosts - browser_own if not host.endswith(CHROME_SERVICES)}
    assert not extra, f"the report made requests to {sorted(extra)}"
    assert "http://" not in report.read_text() and "https://" not in report.read_text()


def chromium(page: Path, profile: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Load `page` in headless Chromium with every request sent to a local recording proxy; the dumped
    DOM (after scripts ran) and the hosts it asked for."""
    requests: list[bytes] = []
    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen()
    proxy.settimeout(0.2)
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            try:
                connection, _ = proxy.accept()
            except TimeoutError:
                continue
            requests.append(connection.recv(4096))
            connection.close()

    listener = threading.Thread(target=record, daemon=True)
    listener.start()
    try:
        shown = subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                f"--proxy-server=http://127.0.0.1:{proxy.getsockname()[1]}",
                "--proxy-bypass-list=<-loopback>",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=3000",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        stop.set()
        listener.join()
        proxy.close()
    hosts = {match.group(1).decode() for request in requests if (match := re.match(rb"(?:CONNECT|GET|POST|HEAD) (?:https?://)?([^/: ]+)", request))}
    return shown, hosts


def test_leaks_are_named_on_the_first_screen(identities: Path, cache_dir: Path, tmp_path: Path) -> None:
    """A new user's audit (16 faces, three observed folders, two faces of the box folder left unredacted):
    the report's first screen (1280 x 800) names both leaks, laid out by Chromium."""
    from PIL import Image

    from tests.redteam.test_fail_closed import anonymize_folder

    leaked = ("barack_obama/obama.jpg", "rose_leslie/img1.jpg")
    folders = {name: anonymize_folder(identities, tmp_path / name, {}, spec) for name, spec in (("blur", "gaussian_blur:sigma=8"), ("px", "mosaic:block=16"))}
    folders["box"] = anonymize_folder(identities, tmp_path / "box", {}, "box:margin=0.5")
    for rel in leaked:
        Image.open(identities / rel).convert("RGB").save(folders["box"] / Path(rel).with_suffix(".png"))
    config = AuditConfig(
        originals=identities,
        out=tmp_path / "out",
        methods=tuple(MethodSource(name, "observed", folder=folder) for name, folder in folders.items()),
        cache_dir=cache_dir,
        recognizers=("dlib",),
        attacks=("none",),
        identify=False,
    )
    result = AuditRun(config).run()
    assert {leak.image for leak in result.leaks} == set(leaked)
    page = write_reports(result, tmp_path / "out")["html"]
    probe = tmp_path / "probe.html"  # the report plus a script that records where Chromium laid out each leak line
    probe.write_text(
        page.read_text().replace(
            "</body>",
            "<script>document.body.setAttribute('data-leaks', JSON.stringify([...document.querySelectorAll('li.leak')]"
            ".map(e => [e.textContent, e.getBoundingClientRect().bottom])))</script></body>",
        )
    )
    shown = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,800", "--virtual-time-budget=3000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-2000:]
    import html
    import json

    match = re.search(r'data-leaks="([^"]*)"', shown.stdout)
    assert match, shown.stdout[:2000]
    lines = json.loads(html.unescape(match.group(1)))
    assert len(lines) == 2 and all(bottom <= 800 for _, bottom in lines), lines
    assert {rel for rel in leaked if any(rel in text for text, _ in lines)} == set(leaked)
