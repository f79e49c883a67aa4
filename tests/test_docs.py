"""The documentation site in a real browser: `python tools/docs.py` builds _docs/, a local server serves it, and Debian's
headless Chromium loads every page. Each page must have its title, an API section for every public function and class
of its module (where nbdev's doc links point), images that load, and no internal link that leads nowhere."""
import base64, html, importlib, importlib.util, os, re, shutil, subprocess, sys, tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from urllib.parse import urljoin, urldefrag, urlsplit
from urllib.request import urlopen
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
NBS, DOCS = REPO/"nbs", REPO/"_docs"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run",
         "--disable-component-update", "--disable-sync"]

def notebook_pages() -> list[dict]:
    "What each notebook in nbs/ must become: page file, title (its H1), module (default_exp)."
    import nbformat
    from nbdev.config import nbpath2html
    out = []
    for p in sorted(NBS.glob("*.ipynb")):
        nb = nbformat.read(p, as_version=4)
        title = next(m[1] for c in nb.cells if c.cell_type == "markdown" for m in [re.search(r"^# (.+)$", c.source, re.M)] if m)
        mod = next((m[1] for c in nb.cells if c.cell_type == "code" for m in [re.search(r"^#\|\s*default_exp\s+(\S+)", c.source, re.M)] if m), None)
        out.append(dict(nb=p.name, href=nbpath2html(p).name, title=title.strip(), module=mod))
    return out

PAGES = notebook_pages()

def public_api(module: str) -> dict[str, str]:
    "The module's public functions and classes, each with the `page.html#anchor` nbdev's doc links use for it."
    import inspect
    from mlpipe._modidx import d
    mod = importlib.import_module(f"mlpipe.{module}")
    syms = d["syms"].get(f"mlpipe.{module}", {})
    return {n: syms[f"mlpipe.{module}.{n}"][0] for n in getattr(mod, "__all__", [])
            if (inspect.isfunction(getattr(mod, n)) or inspect.isclass(getattr(mod, n))) and f"mlpipe.{module}.{n}" in syms}

_spec = importlib.util.spec_from_file_location("docs_tool", REPO/"tools/docs.py")
docs = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(docs)  # tools/ is not a package

@pytest.fixture(scope="module")
def site():
    "_docs/, built now unless it is newer than every notebook, module and the builder (CI builds it just before)."
    index = DOCS/"index.html"
    sources = [*NBS.glob("*.ipynb"), *(REPO/"mlpipe").glob("*.py"), REPO/"tools/docs.py"]
    if not index.exists() or index.stat().st_mtime < max(p.stat().st_mtime for p in sources):
        r = subprocess.run([sys.executable, "tools/docs.py"], cwd=REPO, capture_output=True, text=True, timeout=1500)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    with docs.lock(shared=True): yield DOCS  # no rebuild under our feet (a shared working tree)

@pytest.fixture(scope="module")
def server(site):
    "The site on http://127.0.0.1:<free port>/, as a static host serves it."
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            # Chromium may close a connection before a file is fully sent; that is not a failure of the site.
            if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)): super().handle_error(request, client_address)
    httpd = Server(("127.0.0.1", 0), partial(Quiet, directory=str(site)))
    Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown(); httpd.server_close()

@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    "Run headless Chromium with a fresh profile; returns its stdout."
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"): pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    base = tmp_path_factory.getbasetemp()  # made here, once: mktemp from two threads at once raced to make it
    def run(*args):
        profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=base))
        r = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, f"chromium {args}: exit {r.returncode}\n{r.stderr[-2000:]}"
        return r.stdout
    return run

class Dom(HTMLParser):
    "What the tests look at in a page's DOM: title, ids (and those inside API boxes), links, resources, images."
    def __init__(self, text):
        super().__init__()
        self.title, self.h1, self.ids, self.api_ids, self.links, self.resources, self.imgs = "", "", set(), set(), [], [], []
        self._divs, self._in = [], None
        self.feed(text)
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div": self._divs.append("celltag_api" in (a.get("class") or "").split())
        if a.get("id"):
            self.ids.add(a["id"])
            if any(self._divs): self.api_ids.add(a["id"])
        if tag == "a" and a.get("href"): self.links.append(a["href"])
        if tag in ("img", "script", "iframe", "source") and "src" in a: self.resources.append(a["src"] or "")
        if tag == "link" and a.get("href"): self.resources.append(a["href"])
        if tag == "img": self.imgs.append(a.get("src") or "")
        if tag in ("title", "h1"): self._in = tag
    def handle_endtag(self, tag):
        if tag == "div" and self._divs: self._divs.pop()
        if tag == self._in: self._in = None
    def handle_data(self, data):
        if self._in == "title": self.title += data
        elif self._in == "h1" and not self.h1: self.h1 = data.strip()

@pytest.fixture(scope="module")
def doms(server, browser):
    "Every page as Chromium rendered it (--dump-dom), two browsers at a time."
    with ThreadPoolExecutor(2) as pool:
        dumped = list(pool.map(lambda p: browser("--dump-dom", server + p["href"]), PAGES))
    return {p["href"]: Dom(text) for p, text in zip(PAGES, dumped)}

@pytest.mark.parametrize("page", PAGES, ids=[p["nb"] for p in PAGES])
def test_page_has_its_title_and_api(page, doms):
    dom = doms[page["href"]]
    assert dom.h1 == html.unescape(page["title"]).replace("`", ""), f"{page['href']}: h1 {dom.h1!r}, notebook title {page['title']!r}"
    assert page["title"].replace("`", "") in html.unescape(dom.title)
    if page["module"] and page["module"] != "__main__":
        api = public_api(page["module"])
        for name, link in api.items():
            target, anchor = link.split("#")
            assert target == page["href"], f"nbdev links {name} to {target}, not to {page['href']}"
            assert anchor in dom.ids, f"{page['href']}: nbdev's link to {name}, #{anchor}, leads nowhere"
            # the API box's heading; `-1` when a section heading above it has the same name (pandoc numbers repeats)
            assert any(re.fullmatch(rf"{re.escape(anchor)}(-\d+)?", i) for i in dom.api_ids), f"{page['href']}: no API section for {name}"

def test_every_page_is_in_the_navigation(doms):
    for href, dom in doms.items():
        assert {p["href"] for p in PAGES} <= set(dom.links), f"{href}: navigation misses pages"

def test_no_broken_internal_links_or_images(doms, server):
    "Every href/src on the same site answers 200, every #fragment exists on its page, every image decodes."
    host, checked, bad = urlsplit(server).netloc, {}, []
    for href, dom in doms.items():
        page_url = server + href
        for ref in dom.links + dom.resources:
            if ref.startswith(("data:", "mailto:", "javascript:")): continue
            url, frag = urldefrag(urljoin(page_url, ref))
            if urlsplit(url).netloc != host: continue  # GitHub source links, nbdev.fast.ai: outside, not fetched
            if url not in checked:
                try:
                    with urlopen(url, timeout=10) as r: checked[url] = (r.status, r.headers.get_content_type())
                except OSError as e: checked[url] = (getattr(e, "code", str(e)), "")
            if checked[url][0] != 200: bad.append(f"{href}: {ref} -> {checked[url][0]}")
            elif frag and url.startswith(server) and url[len(server):] in doms and frag not in doms[url[len(server):]].ids:
                bad.append(f"{href}: {ref} -> no id {frag!r} there")
        for src in dom.imgs:
            if not src: bad.append(f"{href}: <img> without src")
            elif src.startswith("data:image/png;base64,"):
                if not base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG"): bad.append(f"{href}: inline image is not a PNG")
            elif not src.startswith("data:") and not checked.get(urldefrag(urljoin(page_url, src))[0], ("", ""))[1].startswith("image/"):
                bad.append(f"{href}: {src} is not served as an image")
    assert not bad, "\n".join(bad)
    assert len(checked) >= len(PAGES)

def test_the_site_loads_nothing_from_outside(doms, server):
    "No script, stylesheet or image from another host: the site works offline."
    outside = [(h, r) for h, d in doms.items() for r in d.resources if urlsplit(urljoin(server, r)).scheme in ("http", "https")
               and urlsplit(urljoin(server, r)).netloc != urlsplit(server).netloc]
    assert not outside, outside

def test_plots_the_notebooks_draw_are_on_the_pages(doms):
    "The home page shows the README's training curves; the callbacks page the LivePlot its notebook drew in a kernel."
    assert "images/metrics.png" in doms["index.html"].imgs
    assert any(s.startswith("data:image/png;base64,") for s in doms["callbacks.html"].imgs)

def test_screenshots(server, browser):
    "Home and trainer pages as a person sees them, saved to _docs/screenshots/ (look at them)."
    from PIL import Image, ImageStat
    shots = DOCS/"screenshots"; shots.mkdir(exist_ok=True)
    for page in ("index", "trainer"):
        png = shots/f"{page}.png"
        png.unlink(missing_ok=True)
        browser(f"--screenshot={png}", "--window-size=1280,2000", "--hide-scrollbars", server + f"{page}.html")
        img = Image.open(png).convert("L")
        assert img.size == (1280, 2000)
        dark = sum(img.histogram()[:128]) / (1280 * 2000)
        assert 0.01 < dark < 0.5, f"{png}: {dark:.1%} dark pixels: a blank or broken page?"
        left, right = ImageStat.Stat(img.crop((0, 0, 200, 2000))).mean[0], ImageStat.Stat(img.crop((300, 0, 1280, 2000))).mean[0]
        assert left != right  # the navigation column and the page differ: the stylesheet applied

def test_quarto_files_are_committed_and_current():
    "What `nbdev-docs` needs where Quarto is installed: _quarto.yml reading nbdev.yml and sidebar.yml, styles.css."
    q = yaml.safe_load((NBS/"_quarto.yml").read_text())
    assert q["project"]["type"] == "website" and q["metadata-files"] == ["nbdev.yml", "sidebar.yml"]
    assert (NBS/q["format"]["html"]["css"]).exists()
    assert yaml.safe_load((NBS/"nbdev.yml").read_text())["project"]["output-dir"] == "_docs"
    listed = set(yaml.safe_load((NBS/"sidebar.yml").read_text())["website"]["sidebar"]["contents"])
    assert listed == {p.name for p in NBS.glob("*.ipynb")}, "nbs/sidebar.yml is stale: run python tools/docs.py and commit it"

def _hits(dom_text: str) -> list[tuple[str, str]]:
    "The search results in a dumped page: (href, text) of each."
    return [(m[1], html.unescape(re.sub(r"<[^>]+>", " ", m[2]))) for m in re.finditer(r'<a class="hit" href="([^"]+)"[^>]*>(.*?)</a>', dom_text, re.S)]

@pytest.mark.parametrize("query, page", [("OMP_NUM_THREADS", "core.html"), ("packed", "packed.html"), ("lr-find", "lr_find.html"),
                                         ("resume bit-identical", "train.html")])
def test_search_finds_the_sections(query, page, server, browser):
    "The search box, in Chromium: `?q=` fills it; every word matches, results link to the sections that hold them."
    hits = _hits(browser("--dump-dom", server + f"trainer.html?q={query.replace(' ', '+')}"))
    assert hits and any(h.split("#")[0] == page for h, _ in hits), hits[:5]
    for href, _ in hits:  # every result is a real page and section
        target, _, frag = href.partition("#")
        assert (DOCS/target).is_file() and (not frag or f'id="{frag}"' in (DOCS/target).read_text()), href

def test_search_says_when_nothing_matches(server, browser):
    dom = browser("--dump-dom", server + "index.html?q=zqxwvunlikelyword")
    assert not _hits(dom) and 'data-count="0"' in dom and "No match" in dom

def test_home_diagram_fits_from_1024_to_1920_px(server, browser):
    "The README's diagram on the home page: never wrapped, and no scrolling needed at common screen widths."
    probe = DOCS/"_probe_widths.html"
    probe.write_text("""<!doctype html><body><script>
const widths = [1024, 1280, 1920], res = {};
for (const w of widths) {
  const f = document.createElement("iframe"); f.width = w; f.height = 900; f.src = "index.html";
  f.onload = () => {
    const pre = [...f.contentDocument.querySelectorAll("pre")].find(p => p.textContent.includes("data/processed/<version>/"));
    const code = pre && (pre.querySelector("code") || pre);  // markdown puts the text in pre > code
    res[w] = pre ? {ws: getComputedStyle(code).whiteSpace, overflow: pre.scrollWidth - pre.clientWidth} : null;
    if (Object.keys(res).length === widths.length) document.body.dataset.result = JSON.stringify(res);
  };
  document.body.append(f);
}
</script></body>""")
    try: dom = browser("--virtual-time-budget=20000", "--dump-dom", server + probe.name)
    finally: probe.unlink(missing_ok=True)
    found = re.search(r'data-result="([^"]+)"', dom)
    assert found, dom[-500:]
    import json
    res = json.loads(html.unescape(found[1]))
    for width, r in res.items():
        assert r and r["ws"] == "pre" and r["overflow"] <= 0, (width, r)
