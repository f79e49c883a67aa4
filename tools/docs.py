"""Build the documentation site in `_docs/`: the pages `nbdev-docs` makes with Quarto, made offline without it.

    python tools/docs.py          # -> _docs/index.html (the README) and one page per notebook, in ~1.5 min

1. nbdev's own first step of `nbdev-docs`: `nbs/nbdev.yml` (from pyproject.toml), `nbs/_quarto.yml` and
   `nbs/sidebar.yml` (the page list). They are committed, so where Quarto is installed `nbdev-docs` and
   `nbdev-preview` work as they do in any nbdev project.
2. Each page's notebook runs top to bottom in a fresh IPython kernel (nbclient), in a scratch folder `_proc/`, without
   the cells `nbdev-test` leaves out (`#| notest`, `#| slow`, `#| eval: false`, the `nbdev_export()` cell); the
   notebooks in nbs/ are read, never written. It runs before step 3 because nbdev's processors delete the `#| export`
   and `#| hide` cells, imports included, so a processed notebook cannot run by itself.
3. nbdev's doc processors (`FilterDefaults`, what `nbdev-proc-nbs` applies) turn each executed notebook into the page
   Quarto would render: title and subtitle as frontmatter, `show_doc` for every exported symbol, export and hidden
   cells removed, backticked symbols linked to their docs. The results stay in `_proc/`.
4. nbconvert's HTML exporter (Jupyter's own renderer, the JupyterLab look) renders each page. A small template adds
   the navigation; `_quarto_cells` and `_fix_html` do the few Quarto things the pages rely on: the frontmatter title,
   `echo: false`, `output: asis`, heading ids made as pandoc makes them (so nbdev's `page.html#symbol` links resolve).
"""
import argparse, fcntl, hashlib, html, json, os, re, shutil, subprocess, tempfile, time, warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
import jinja2, nbformat, yaml
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from nbdev import serve_drv
from nbdev.config import get_config
from nbdev.processors import FilterDefaults
from nbdev.quarto import nbdev_sidebar, refresh_quarto_yml
from nbdev.test import nb_test_cells
from traitlets.config import Config

ROOT = Path(__file__).resolve().parents[1]
SKIP = "skip-execution"  # nbclient's tag for cells it must not run
KERNEL = Config({"KernelManager": {"transport_encryption": "auto"}})  # CurveZMQ on the kernel's sockets (else ipykernel warns)

@contextmanager
def lock(shared: bool = False):
    "Builds of one checkout take turns (people sharing a working tree run them at once); readers of _docs/ share it."
    path = Path(tempfile.gettempdir())/f"mlpipe-docs-{hashlib.sha1(str(ROOT).encode()).hexdigest()[:12]}.lock"
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield

def run_notebook(src: Path, cwd: Path, timeout: int = 600) -> nbformat.NotebookNode:
    "Notebook `src` executed in a fresh IPython kernel started in `cwd`, without the cells nbdev-test skips."
    src = Path(src)
    runs = {c.idx_ for c in nb_test_cells(src, get_config(src.parent).tst_flags.split())}
    nb = nbformat.read(src, as_version=4)
    skipped = [c for i, c in enumerate(nb.cells) if c.cell_type == "code" and i not in runs]
    for c in skipped: c.metadata.setdefault("tags", []).append(SKIP)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel picks its inline backend, as in Jupyter
    NotebookClient(nb, timeout=timeout, kernel_name="python3", config=KERNEL, resources={"metadata": {"path": str(cwd)}}).execute(env=env)
    for c in skipped:
        c.metadata.tags.remove(SKIP)
        if not c.metadata.tags: del c.metadata["tags"]
    return nb

def _assets(nbs: Path) -> list[Path]:
    "The files in nbs/ a page may refer to (images...): not notebooks, not git-ignored (a notebook's scratch output)."
    try: out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "."], cwd=nbs, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError): files = [p.relative_to(nbs) for p in nbs.rglob("*") if p.is_file()]
    else: files = [Path(l) for l in out.splitlines()]
    return [f for f in files if f.suffix != ".ipynb" and not any(p.startswith((".", "_")) for p in f.parts) and (nbs/f).is_file()]

def _sidebar(nbs: Path) -> list[str]:
    "Notebook names in sidebar.yml order (sections flattened)."
    def flat(items):
        for o in items:
            if isinstance(o, dict): yield from flat(o.get("contents", []))
            else: yield str(o)
    return list(flat(yaml.safe_load((nbs/"sidebar.yml").read_text())["website"]["sidebar"]["contents"]))

def _frontmatter(nb) -> dict:
    "The YAML frontmatter nbdev's FrontmatterProc put in the first (raw) cell; the cell is removed."
    c = nb.cells[0] if nb.cells else None
    if c is None or c.cell_type != "raw" or not c.source.startswith("---"): return {}
    nb.cells.pop(0)
    return yaml.safe_load(c.source.strip().strip("-")) or {}

def _slug(text: str) -> str:
    "A heading's id as pandoc (so Quarto) makes it: what nbdev's doc links (`trainer.html#trainer.fit`) point at."
    s = re.sub(r"[^\w\s.-]", "", html.unescape(re.sub(r"<[^>]+>", "", text)).lower())
    return re.sub(r"^[^a-z]+", "", re.sub(r"\s+", "-", s.strip())) or "section"

_re_dir = re.compile(r"^#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$")

def _quarto_cells(nb):
    "Do what Quarto does with the directives left on code cells: include, echo, output (asis, false)."
    cells = []
    for c in nb.cells:
        c.metadata.pop("execution", None)  # timings (execnb writes numbers where nbformat wants strings)
        if c.cell_type == "code":
            lines = c.source.splitlines()
            d = {m[1]: m[2] for m in map(_re_dir.match, lines) if m}
            c.source = "\n".join(l for l in lines if not _re_dir.match(l))
            if d.get("include") == "false": continue
            if d.get("output") == "false": c.outputs = []
            if d.get("output") == "asis":  # markdown output becomes page markdown: show_doc's API sections
                md = "\n\n".join(o.get("data", {}).get("text/markdown", "") for o in c.outputs)
                tags = ["api"] if c.source.startswith("show_doc(") else []
                c = nbformat.v4.new_markdown_cell(md, metadata={"tags": tags} if tags else {})
            elif d.get("echo") == "false": c.metadata.setdefault("tags", []).append("remove_input")
        if c.cell_type == "markdown":  # pandoc link attributes, e.g. show_doc's `[source](url){target="_blank"}`
            c.source = re.sub(r"(\]\([^)\s]+\))\{[^}\n]*\}", r"\1", c.source)
        cells.append(c)
    nb.cells = cells

_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{#- no require.js, MathJax or mermaid from a CDN: the site works offline -#}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block extra_css %}<style>
body.jp-Notebook { display: flex; align-items: flex-start; margin: 0; padding: 0; }
nav.site { position: sticky; top: 0; flex: none; width: 15rem; height: 100vh; overflow-y: auto; box-sizing: border-box;
  padding: 1.25rem .75rem; border-right: 1px solid #e3e3e3; background: #f8f9fa; font: 14px/1.4 system-ui, sans-serif; }
nav.site a { display: block; padding: .3rem .6rem; border-radius: 4px; color: #2c3e50; text-decoration: none; }
nav.site a:hover { background: #e9ecef; }
nav.site a.brand { font-size: 1.3rem; font-weight: 700; margin-bottom: .75rem; }
nav.site a.current { background: #e1ecf8; font-weight: 600; color: #1a5fb4; }
nav.site ul.toc { list-style: none; margin: .2rem 0 .5rem .6rem; padding-left: .5rem; border-left: 2px solid #d0d7de; }
nav.site ul.toc a { padding: .1rem .4rem; font-size: 13px; color: #57606a; }
nav.site a.repo { margin-top: 1rem; font-size: 13px; color: #57606a; }
main { flex: 1; min-width: 0; max-width: 64rem; padding: 1.5rem 2.5rem 3rem; }
header.page h1 { margin: .5rem 0 .25rem; font: 700 2.2rem/1.2 system-ui, sans-serif; }
header.page p.description { margin: 0 0 1.5rem; font-size: 1.15rem; font-style: italic; color: #57606a; }
.celltag_api { margin: 1.5rem 0 1rem; padding: 0 1rem .25rem; border: 1px solid #d0d7de; border-radius: 6px;
  box-shadow: 0 1px 3px rgba(0,0,0,.06); }
.celltag_api hr:first-child { display: none; }
.celltag_api hr:first-child + p { float: right; margin: .9rem 0 0; font-size: smaller; }
footer.pager { display: flex; justify-content: space-between; margin-top: 3rem; padding-top: 1rem;
  border-top: 1px solid #e3e3e3; font: 15px system-ui, sans-serif; }
footer.pager a { text-decoration: none; color: #1a5fb4; }
.jp-RenderedHTMLCommon a, .jp-RenderedHTMLCommon a code { color: #1a5fb4; }
main .jp-RenderedHTMLCommon pre, main .jp-RenderedHTMLCommon pre code { white-space: pre; }  /* a diagram never wraps */
main .jp-RenderedHTMLCommon pre { overflow-x: auto; font-size: 12.5px; line-height: 1.4; }  /* a long command scrolls */
@media (max-width: 1200px) { nav.site { width: 13rem; } main { padding: 1.25rem 1.25rem 3rem; } }
nav.site input.search { width: 100%; box-sizing: border-box; margin: 0 0 .5rem; padding: .35rem .5rem; font: inherit;
  border: 1px solid #d0d7de; border-radius: 4px; }
#search-results a.hit { padding: .3rem .5rem; border-bottom: 1px solid #eee; }
#search-results a.hit b { display: block; font-size: 13px; }
#search-results a.hit span { display: block; font-size: 12px; color: #57606a; }
#search-results p { margin: .25rem .6rem; color: #57606a; }
</style>{% endblock extra_css %}
{%- block body_header -%}
<body class="jp-Notebook" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
<nav class="site" aria-label="Pages">
<a class="brand" href="index.html">{{ resources.site.title }}</a>
<input class="search" id="search" type="search" placeholder="Search the docs" aria-label="Search the docs" autocomplete="off">
<div id="search-results" role="list"></div>
{%- for p in resources.site.pages %}
<a href="{{ p.href }}"{% if p.href == resources.page.href %} class="current" aria-current="page"{% endif %}>{{ p.title }}</a>
{%- if p.href == resources.page.href %}<!--TOC-->{% endif %}
{%- endfor %}
<a class="repo" href="{{ resources.site.repo }}">Source on GitHub</a>
</nav>
<main>
<header class="page"><h1 class="title">{{ resources.page.title }}</h1>
{%- if resources.page.description %}<p class="description">{{ resources.page.description | markdown2html | replace("<p>", "") | replace("</p>", "") }}</p>{% endif %}</header>
{%- endblock body_header -%}
{% block body_footer %}
<footer class="pager">
<span>{% if resources.page.prev %}<a class="prev" href="{{ resources.page.prev.href }}">&larr; {{ resources.page.prev.title }}</a>{% endif %}</span>
<span>{% if resources.page.next %}<a class="next" href="{{ resources.page.next.href }}">{{ resources.page.next.title }} &rarr;</a>{% endif %}</span>
</footer>
</main>
<script src="search.js"></script>
<script>
(function () {  /* the site's own search: every section of every page in search.js, matched here, offline */
  const box = document.getElementById("search"), out = document.getElementById("search-results");
  function show(q) {
    out.innerHTML = "";
    const words = q.toLowerCase().split(/\\s+/).filter(Boolean);
    if (!words.length) { delete out.dataset.count; return; }
    const hits = [];
    for (const e of (window.MLPIPE_SEARCH || [])) {
      const head = (e.p + " " + e.h).toLowerCase(), hay = head + " " + e.t.toLowerCase();
      if (words.every(w => hay.includes(w))) hits.push([words.filter(w => head.includes(w)).length, e]);
    }
    hits.sort((a, b) => b[0] - a[0]);
    for (const [, e] of hits.slice(0, 20)) {
      const a = document.createElement("a"), b = document.createElement("b"), span = document.createElement("span");
      const i = e.t.toLowerCase().indexOf(words[0]);
      a.className = "hit"; a.href = e.u; a.setAttribute("role", "listitem");
      b.textContent = e.p + (e.h ? " \u203a " + e.h : "");
      span.textContent = i < 0 ? e.t.slice(0, 100) : "\u2026" + e.t.slice(Math.max(0, i - 40), i + 80) + "\u2026";
      a.append(b, span); out.append(a);
    }
    if (!hits.length) { const p = document.createElement("p"); p.textContent = "No match"; out.append(p); }
    out.dataset.count = hits.length;
  }
  box.addEventListener("input", () => show(box.value));
  const q = new URLSearchParams(location.search).get("q");
  if (q) { box.value = q; show(q); }
})();
</script>
</body>
{% endblock body_footer %}
"""

def _exporter() -> HTMLExporter:
    c = Config()
    c.TagRemovePreprocessor.update(enabled=True, remove_input_tags={"remove_input"})  # `echo: false`
    return HTMLExporter(config=c, template_name="lab", template_file="page.html.j2", exclude_input_prompt=True,
                        exclude_output_prompt=True, extra_loaders=[jinja2.DictLoader({"page.html.j2": _TEMPLATE})])

def _fix_html(body: str, site_url: str) -> str:
    "Pandoc heading ids (and a table of contents from the h2s); links to our own published site made relative."
    seen, toc = set(), []
    def hd(m):
        lvl, inner = m[1], m[3]
        text = re.sub(r'<a class="anchor-link".*?</a>', "", inner)
        s = base = _slug(text)
        n = 0
        while s in seen: n += 1; s = f"{base}-{n}"
        seen.add(s)
        if lvl == "2": toc.append((s, re.sub(r"<[^>]+>", "", text)))
        inner = re.sub(r'(<a class="anchor-link" href="#)[^"]*', rf"\g<1>{s}", inner)
        return f'<h{lvl} id="{s}">{inner}</h{lvl}>'
    body = re.sub(r'<h([1-6]) id="([^"]*)">(.*?)</h\1>', hd, body, flags=re.S)
    toc_html = "".join(f'<li><a href="#{s}">{t}</a></li>' for s, t in toc)
    body = body.replace("<!--TOC-->", f'<ul class="toc">{toc_html}</ul>' if toc else "", 1)
    return body.replace(f'href="{site_url.rstrip("/")}/', 'href="')

def execute(names: list[str], nbs: Path, proc: Path, workers: int = 2, timeout: int = 600):
    "Steps 2 and 3: each notebook executed in a kernel, then processed by nbdev, into `proc`."
    shutil.rmtree(proc, ignore_errors=True); proc.mkdir()
    for f in _assets(nbs): (proc/f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(nbs/f, proc/f)
    with ThreadPoolExecutor(workers) as pool, warnings.catch_warnings():  # each notebook in its own kernel process
        warnings.filterwarnings("ignore", "Found cells containing imports")  # nbdev's hint; a failing such cell raises below
        for name, nb in zip(names, pool.map(lambda n: run_notebook(nbs/n, proc, timeout), names)):
            nbformat.write(nb, proc/name)
            try: serve_drv.main((proc/name, proc/name, FilterDefaults))  # nbdev's processing of one notebook, as in nbdev-proc-nbs
            except Exception as e:
                raise SystemExit(f"nbs/{name}: nbdev's doc processing, the step `nbdev-docs` runs before Quarto, failed:\n{e}\n\n"
                                 "To render show_doc, nbdev runs each exported cell and each cell that imports something, out "
                                 "of the notebook's context: give imports a cell of their own (nbdev FAQ).") from None

def render(names: list[str], nbs: Path, proc: Path, out: Path) -> list[Path]:
    "Step 4: the processed notebooks in `proc` as HTML pages in `out`, with the assets of nbs/."
    site = yaml.safe_load((nbs/"nbdev.yml").read_text())["website"]
    pages = []
    for name in names:
        nb = nbformat.read(proc/name, as_version=4)
        fm = _frontmatter(nb)
        pages.append(dict(nb=nb, title=str(fm.get("title", Path(name).stem)), description=fm.get("description", ""),
                          href=fm.get("output-file", Path(name).with_suffix(".html").name)))
    shutil.rmtree(out, ignore_errors=True); out.mkdir(parents=True)
    for f in _assets(nbs):
        if f.suffix not in (".yml", ".yaml", ".css"): (out/f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(nbs/f, out/f)
    nav = [dict(href=p["href"], title=p["title"]) for p in pages]
    res_site = dict(title=site["title"], repo=site.get("repo-url", ""), pages=nav)
    exp, bodies = _exporter(), {}
    for i, p in enumerate(pages):
        nb = p.pop("nb")
        _quarto_cells(nb)
        nb.metadata["title"] = p["title"] if p["href"] == "index.html" else f"{p['title']} – {site['title']}"
        page = dict(p, prev=nav[i-1] if i else None, next=nav[i+1] if i+1 < len(nav) else None)
        body, _ = exp.from_notebook_node(nb, resources=dict(site=res_site, page=page))
        bodies[p["href"]] = _fix_html(body, site.get("site-url", ""))
    ids = {h: set(re.findall(r' id="([^"]+)"', b)) for h, b in bodies.items()}
    def link(m):  # nbdev links every backticked name it knows; one without a doc section of its own (a method, a
        page, frag = m[1], m[2]  # private helper) goes to its class's section, else to the top of its page
        if page not in ids or frag in ids[page]: return m[0]
        cls = frag.split(".")[0]
        return f'href="{page}#{cls}"' if cls in ids[page] else f'href="{page}"'
    for href, body in bodies.items():
        (out/href).write_text(re.sub(r'href="([\w.-]+\.html)#([^"]+)"', link, body))
    titles = {p["href"]: p["title"] for p in pages}
    index = [e for href, body in bodies.items() for e in search_entries(href, titles[href], body)]
    (out/"search.js").write_text("window.MLPIPE_SEARCH = " + json.dumps(index, ensure_ascii=False) + ";\n")
    return [out/h for h in bodies]

def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())

def search_entries(href: str, title: str, body: str) -> list[dict]:
    "The search index of one page: a section per h2/h3 heading (page, heading, its link, its text), the top as one more."
    main = body.split("<main>", 1)[-1].split('<footer class="pager">', 1)[0]
    main = re.sub(r"<(script|style)\b.*?</\1>", " ", main, flags=re.S)
    main = re.sub(r'<img [^>]*src="data:[^"]*"[^>]*>', " ", main)  # inline images are not text
    parts = re.split(r'<h([23]) id="([^"]+)">(.*?)</h\1>', main, flags=re.S)
    out = [dict(p=title, h="", u=href, t=_text(parts[0])[:4000])]
    for i in range(1, len(parts) - 3, 4):
        heading = _text(re.sub(r'<a class="anchor-link".*?</a>', "", parts[i + 2]))
        out.append(dict(p=title, h=heading, u=f"{href}#{parts[i + 1]}", t=_text(parts[i + 3])[:4000]))
    return out

def build(out: Path | None = None, workers: int = 2, timeout: int = 600, render_only: bool = False) -> list[Path]:
    "Build the site; returns the pages written."
    os.chdir(ROOT)  # nbdev's helpers read the config from the working directory
    cfg = get_config()
    nbs, proc, out = cfg.nbs_path, cfg.config_path/"_proc", Path(out or cfg.doc_path)
    with lock():
        refresh_quarto_yml()  # step 1
        nbdev_sidebar.__wrapped__()  # (the undecorated function: the decorated one parses sys.argv)
        names, t = _sidebar(nbs), time.time()
        if not render_only:
            execute(names, nbs, proc, workers, timeout)
            print(f"docs: {len(names)} notebooks executed and processed in {time.time() - t:.0f} s"); t = time.time()
        pages = render(names, nbs, proc, out)
        print(f"docs: {len(pages)} pages rendered in {time.time() - t:.0f} s")
    return pages

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: doc_path, _docs/)")
    ap.add_argument("--workers", type=int, default=2, help="notebooks executed at once, each in its own kernel")
    ap.add_argument("--render-only", action="store_true", help="re-render the pages from the last run's _proc/ (template work)")
    args = ap.parse_args()
    start = time.time()
    pages = build(args.out, args.workers, render_only=args.render_only)
    print(f"docs: {len(pages)} pages in {pages[0].parent} ({time.time() - start:.0f} s)")
