"""Open a Snakemake HTML report in headless Chromium: check what renders, take screenshots.

The report is one self-contained page (a React app; every result is a ``data:`` URI in its
global ``results``). :func:`probe_report` loads a copy of it with a probe script appended,
which, once the page has run, decodes every image result in the browser, parses every HTML
result and decodes the images inside it, opens Snakemake's "Statistics" view (the per-rule
runtimes) and writes what it found as JSON into the DOM; Chromium's ``--dump-dom`` hands it
back. :func:`screenshot_report` shows one result (or the statistics) the way a user clicking
it would see it and saves a PNG.

    python -m vlcore.report.browser report.html --screenshot shot.png --show captions.html

Needs a Chromium binary (Debian: ``apt-get install chromium``; ``VLCORE_CHROMIUM`` names
another one).
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

_HELPERS = r"""
function vlcoreDecode(uri) {
  const comma = uri.indexOf(",");
  const meta = uri.slice(0, comma), payload = uri.slice(comma + 1);
  if (!meta.endsWith(";base64")) return decodeURIComponent(payload);
  const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}
function vlcoreLoadImage(src) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve({ok: img.naturalWidth > 0, width: img.naturalWidth, height: img.naturalHeight});
    img.onerror = () => resolve({ok: false, width: 0, height: 0});
    img.src = src;
  });
}
function vlcoreSleep(ms) { return new Promise((r) => setTimeout(r, ms)); }
function vlcoreWrite(id, obj) {
  const pre = document.createElement("pre");
  pre.id = id;
  pre.textContent = JSON.stringify(obj);
  document.body.appendChild(pre);
}
"""

_PROBE = r"""
async function vlcoreProbe() {
  await vlcoreSleep(200);
  const out = {app_text: document.querySelector("#app").innerText, categories: categories, results: {}};
  for (const [path, r] of Object.entries(results)) {
    const entry = {mime: r.mime_type, labels: r.labels, rule: r.job_properties.rule};
    if (r.mime_type.startsWith("image/")) {
      entry.image = await vlcoreLoadImage(r.data_uri);
    } else if (r.mime_type === "text/html") {
      const doc = new DOMParser().parseFromString(vlcoreDecode(r.data_uri), "text/html");
      entry.tables = doc.querySelectorAll("table").length;
      entry.text = doc.body.textContent.slice(0, 2000);
      entry.images = await Promise.all(
        [...doc.querySelectorAll("img")].map((i) => vlcoreLoadImage(i.getAttribute("src"))));
    }
    out.results[path] = entry;
  }
  app.setView({content: "stats"});
  await vlcoreSleep(1500);
  const charts = [...document.querySelectorAll("#runtimes canvas, #runtimes svg")];
  out.runtime_charts = charts.filter((c) => c.getBoundingClientRect().width > 0).length;
  out.runtime_rules = [...new Set(runtimes_spec.data.values.map((v) => v.rule))].sort();
  vlcoreWrite("vlcore-probe", out);
}
window.addEventListener("load", () => vlcoreProbe().catch(
  (e) => vlcoreWrite("vlcore-probe", {error: String(e && e.stack || e)})));
"""

_SHOW = r"""
async function vlcoreShow(target) {
  await vlcoreSleep(200);
  if (target === "stats") { app.setView({content: "stats"}); return; }
  const path = Object.keys(results).find((p) => p === target || p.endsWith(target));
  if (path === undefined) { vlcoreWrite("vlcore-show", {error: "no result " + target}); return; }
  const mime = results[path].mime_type;
  const content = mime.startsWith("image/") ? "img" : mime === "text/html" ? "html" : "text";
  app.setView({navbarMode: "resultinfo", resultPath: path, content: content,
               contentPath: results[path].data_uri});
}
window.addEventListener("load", () => vlcoreShow(%s));
"""


class ChromiumNotFound(RuntimeError):
    """No Chromium binary: install Debian's ``chromium`` or set ``VLCORE_CHROMIUM``."""


def find_chromium() -> str:
    named = os.environ.get("VLCORE_CHROMIUM")
    if named:
        return named
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    raise ChromiumNotFound(
        "no Chromium found (tried " + ", ".join(CANDIDATES) + "); install it "
        "(Debian: apt-get install chromium) or set VLCORE_CHROMIUM to its path"
    )


def run_chromium(
    page: Path, *args: str, budget_ms: int = 20000, timeout: float = 60, attempts: int = 2
) -> str:
    """Run headless Chromium on ``page`` with ``args``; return its stdout.

    A run that hangs (headless Chromium's virtual time now and then never runs out on a
    loaded machine) is killed with its child processes after ``timeout`` seconds and tried
    again, ``attempts`` times in all.
    """
    for attempt in range(1, attempts + 1):
        with tempfile.TemporaryDirectory(prefix="vlcore-chromium-") as profile:
            command = [
                find_chromium(),
                "--headless",
                "--no-sandbox",  # we may be root (CI); the page is our own file
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget_ms}",
                *args,
                page.resolve().as_uri(),
            ]
            proc = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # its own process group, killed whole on a hang
            )
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                logger.warning("chromium hung (attempt %d of %d)", attempt, attempts)
                continue
        if proc.returncode != 0:
            raise RuntimeError(f"chromium failed ({proc.returncode}): {stderr[-3000:]}")
        return stdout
    raise RuntimeError(f"chromium hung {attempts} times on {page} (timeout {timeout} s each)")


def _with_script(report: Path, script: str, dest: Path) -> Path:
    text = report.read_text(encoding="utf-8")
    tag = f"<script>{_HELPERS}{script}</script>"
    index = text.rfind("</body>")
    if index < 0:
        raise ValueError(f"{report} is not an HTML page with a <body>")
    dest.write_text(text[:index] + tag + text[index:], encoding="utf-8")
    return dest


def _read_json_from_dom(dom: str, element_id: str) -> dict[str, Any]:
    match = re.search(rf'<pre id="{element_id}">(.*?)</pre>', dom, re.DOTALL)
    if match is None:
        raise RuntimeError(f"the page wrote no #{element_id}: its scripts did not finish")
    return json.loads(html.unescape(match.group(1)))


@dataclass
class ReportProbe:
    """What the browser found in a report (see :func:`probe_report`)."""

    app_text: str  # the visible text of the report's menu once rendered
    categories: dict[str, dict[str, list[str]]]  # category -> subcategory -> result paths
    results: dict[str, dict[str, Any]]  # path -> mime, labels, rule, image / tables, images
    runtime_charts: int  # rendered charts in the "Statistics" view
    runtime_rules: list[str]  # the rules the runtime chart has data for

    def broken_images(self) -> list[str]:
        """Every image (a result, or an image inside an HTML result) that did not decode."""
        broken = []
        for path, entry in self.results.items():
            if "image" in entry and not entry["image"]["ok"]:
                broken.append(path)
            broken += [
                f"{path}#img{i}" for i, img in enumerate(entry.get("images", [])) if not img["ok"]
            ]
        return broken


def probe_report(report: str | os.PathLike, budget_ms: int = 20000) -> ReportProbe:
    """Load ``report`` in headless Chromium and report what rendered (see the module doc)."""
    report = Path(report)
    with tempfile.TemporaryDirectory(prefix="vlcore-probe-") as tmp:
        page = _with_script(report, _PROBE, Path(tmp) / report.name)
        dom = run_chromium(page, "--dump-dom", budget_ms=budget_ms)
    found = _read_json_from_dom(dom, "vlcore-probe")
    if "error" in found:
        raise RuntimeError(f"the probe failed in the browser: {found['error']}")
    return ReportProbe(**found)


def screenshot_report(
    report: str | os.PathLike,
    out_png: str | os.PathLike,
    show: str | None = None,
    size: tuple[int, int] = (1400, 1000),
    budget_ms: int = 3000,
) -> Path:
    """Save a PNG of ``report`` as a browser shows it: its start page, or with ``show`` the
    result whose path ends with ``show`` opened (``"stats"``: the runtimes view)."""
    report, out_png = Path(report), Path(out_png).resolve()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    script = _SHOW % json.dumps(show) if show else ""
    with tempfile.TemporaryDirectory(prefix="vlcore-shot-") as tmp:
        page = _with_script(report, script, Path(tmp) / report.name)
        run_chromium(
            page,
            f"--screenshot={out_png}",
            f"--window-size={size[0]},{size[1]}",
            budget_ms=budget_ms,
        )
    if not out_png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {out_png}")
    return out_png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("report", help="the report.html of snakemake --report")
    parser.add_argument("--screenshot", help="save a PNG of the report here")
    parser.add_argument("--show", help="open the result whose path ends with this ('stats')")
    args = parser.parse_args(argv)
    probe = probe_report(args.report)
    for path, entry in probe.results.items():
        detail = entry.get("image") or {
            "tables": entry.get("tables"),
            "images": len(entry.get("images", [])),
        }
        print(f"{entry['mime']:<10} {path}  {detail}")
    print(f"runtime charts: {probe.runtime_charts} ({len(probe.runtime_rules)} rules)")
    broken = probe.broken_images()
    print("broken images:", ", ".join(broken) if broken else "none")
    if args.screenshot:
        print("screenshot:", screenshot_report(args.report, args.screenshot, args.show))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
