"""The built book, opened page by page in headless Chromium as a reader would: `make browser`.

The book in `_build/html` (built by `make book` or `make book-strict`) is served on localhost and
every page is loaded in a 1440 x 900 window, the reference width at which code and output hold
100 characters (book/_static/book.css). A page fails when it has:

- a request that fails, returns an error status or leaves localhost;
- a console error or an uncaught exception;
- raw TeX outside code (`$$`, `\\(`, `\\[`, `\\begin`): MathJax did not typeset it;
- an image that did not load, or a figure whose alt text is empty or a file name;
- a code or output block wider than its column (folded code is unfolded first);
- a solution that is not folded when the page opens;
- a figure whose smallest text renders below 9 CSS px (read from the PNG's own text chunks,
  written by lib.plot.figure_png, scaled by the width the page gives the image);
- a `show_source` label that does not name a file in the repository.

Searching for "RoPE" and for 注意力 must return chapters. The first screen of every page is
saved under `_build/screenshots/` (not committed) for anyone to look at. `index.html` only
redirects to the introduction, which is checked as a page of its own.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
WINDOW = {"width": 1440, "height": 900}
MIN_TEXT_PX = 9.0
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LABEL = re.compile(r"^(?P<path>[\w./-]+\.py), lines \d+–\d+$")
RAW_TEX = re.compile(r"\$\$|\\\(|\\\[|\\begin\{")

playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium: apt-get install chromium", allow_module_level=True)
if not (HTML / "index.html").is_file():
    pytest.fail(f"{HTML} holds no built book: run make book first", pytrace=False)

PAGES = sorted(
    p.relative_to(HTML).as_posix()
    for p in HTML.rglob("*.html")
    if not {"_static", "_sources"} & set(p.relative_to(HTML).parts) and p.name != "index.html"
)


@pytest.fixture(scope="module")
def site():
    handler = functools.partial(Quiet, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def open_page(browser, url: str):
    """Load `url`, wait for MathJax, and return the page and the problems seen on the way."""
    page = browser.new_page(viewport=WINDOW)
    problems: list[str] = []
    host = urlparse(url).netloc
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))

    def check_response(response) -> None:
        if response.status >= 400:
            problems.append(f"HTTP {response.status}: {response.url}")

    def check_request(request) -> None:
        where = urlparse(request.url)
        if where.scheme not in ("data", "blob") and where.netloc != host:
            problems.append(f"off-site request: {request.url}")

    page.on("response", check_response)
    page.on("request", check_request)
    page.goto(url, wait_until="load")
    page.evaluate("() => window.MathJax?.startup?.promise")
    page.wait_for_load_state("networkidle")
    return page, problems


# Everything measured in one pass in the page: solutions before unfolding, then all folds open.
MEASURE = """() => {
  const article = document.querySelector("article") || document.body;
  const solutions = [...article.querySelectorAll(".solution")].map(s =>
    [...s.children].filter(c => !c.classList.contains("admonition-title"))
      .some(c => c.checkVisibility() && c.getBoundingClientRect().height > 0) ? s.id : null)
    .filter(Boolean);
  article.querySelectorAll("details").forEach(d => d.open = true);
  const visible = e => e.checkVisibility();
  const outside = e => !e.closest("pre, code, .MathJax, mjx-container, script, style");
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  const prose = [];
  while (walker.nextNode()) {
    if (outside(walker.currentNode.parentElement)) prose.push(walker.currentNode.data);
  }
  return {
    title: document.title,
    solutions,
    wide: [...article.querySelectorAll("pre")].filter(visible)
      .filter(p => p.scrollWidth > p.clientWidth + 1)
      .map(p => `${p.scrollWidth}px > ${p.clientWidth}px: ${p.textContent.trim().slice(0, 60)}`),
    images: [...article.querySelectorAll("img")].map(i => ({
      src: i.currentSrc, alt: i.alt, complete: i.complete, natural: i.naturalWidth,
      shown: i.getBoundingClientRect().width, figure: !!i.closest(".cell_output"),
    })),
    labels: [...article.querySelectorAll(".cell_output p > em:only-child")].map(e => e.textContent),
    prose: prose.join(" "),
  };
}"""


@pytest.mark.parametrize("name", PAGES)
def test_page_reads_as_it_should(site, browser, name):
    page, problems = open_page(browser, site + name)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / (name.replace("/", "__").removesuffix(".html") + ".png")))
    seen = page.evaluate(MEASURE)
    page.close()

    problems += [f"solution shown unfolded: {s}" for s in seen["solutions"]]
    problems += [f"block wider than the column: {w}" for w in seen["wide"]]
    tex = RAW_TEX.search(seen["prose"])
    if tex:
        at = tex.start()
        problems.append(f"raw TeX in the text: ...{seen['prose'][max(0, at - 40) : at + 40]}...")
    if seen["title"].count("Transformers, Derived") > 1:
        problems.append(f"the title repeats the book's name: {seen['title']}")
    for label in seen["labels"]:
        match = LABEL.match(label)
        if match and not (ROOT / match["path"]).is_file():
            problems.append(f"show_source label names no file in the repository: {label}")
    for image in seen["images"]:
        problems += image_problems(image)
    assert not problems, f"{name}:\n  " + "\n  ".join(dict.fromkeys(problems))


def image_problems(image: dict) -> list[str]:
    """What is wrong with one image: not loaded, no alt text, or text too small as shown."""
    src = image["src"]
    if not image["complete"] or image["natural"] == 0:
        return [f"image did not load: {src}"]
    alt = image["alt"].strip()
    if not image["figure"]:
        return []
    if not alt or re.fullmatch(r"\S+\.(png|svg|jpe?g)", alt):
        return [f"figure without alt text (alt={alt!r}): {src}"]
    chunks = Image.open(HTML / urlparse(src).path.lstrip("/")).text  # the PNG's text chunks
    if "Book zoom" not in chunks:
        return [f"figure not drawn by lib.plot.sharp_figures (no size record): {src}"]
    if chunks["Book smallest text px"] == "none":
        return []
    one_x = image["natural"] / float(chunks["Book zoom"])
    smallest = float(chunks["Book smallest text px"]) * image["shown"] / one_x
    if smallest < MIN_TEXT_PX:
        return [f"figure text renders at {smallest:.1f} px (< {MIN_TEXT_PX}): {src}"]
    return []


def test_the_front_page_opens_the_introduction(site, browser):
    page = browser.new_page(viewport=WINDOW)
    page.goto(site + "index.html")
    page.wait_for_url("**/book/intro.html")
    page.close()


@pytest.mark.parametrize("query", ["RoPE", "注意力"])
def test_search_finds_chapters(site, browser, query):
    page, problems = open_page(browser, f"{site}search.html?q={quote(query)}")
    page.wait_for_selector("#search-results ul.search li", timeout=15_000)
    hits = page.eval_on_selector_all(
        "#search-results ul.search li a", "links => links.map(a => a.getAttribute('href'))"
    )
    page.close()
    assert not problems, problems
    assert any(h.startswith("notebooks/") for h in hits), f"{query!r} found no chapter: {hits}"
