"""Build README.md from nbs/index.ipynb: what `nbdev-readme` does with Quarto, done without it.

The notebook is executed with execnb (nbdev's own executor) so generated parts, such as the config reference, are
current; its outputs are saved back into the notebook (for `nbdev-docs` users), and nbconvert renders the Markdown,
honouring nbdev's `#| hide` and `#| echo: false` directives."""
import re
from pathlib import Path
import nbformat
from execnb.shell import CaptureShell
from fastcore.nbio import read_nb, write_nb
from nbconvert import MarkdownExporter
from nbdev.clean import nbdev_clean

root = Path(__file__).resolve().parents[1]
src = root/"nbs/index.ipynb"

def execute(path):
    "Run the notebook in-process, as nbdev-test does, and save its outputs."
    nb = read_nb(path)
    shell = CaptureShell()
    shell.set_path(str(path.parent))
    shell.run_all(nb, exc_stop=True)
    write_nb(nb, path)
    nbdev_clean(fname=str(path))  # the committed notebook stays clean (gate 1)

def render(path) -> str:
    "Markdown of the notebook without hidden cells, echo:false inputs or directive lines."
    nb = nbformat.read(path, as_version=4)
    cells = []
    for c in nb.cells:
        lines = c.source.splitlines()
        direcs = {l[3:].strip() for l in lines if l.startswith("#| ")}
        if "hide" in direcs: continue
        c.source = "\n".join(l for l in lines if not l.startswith("#| "))
        if c.cell_type == "code" and "echo: false" in direcs:
            c = nbformat.v4.new_markdown_cell("\n\n".join(
                o.get("data", {}).get("text/markdown", "") or o.get("text", "") for o in c.outputs))
        cells.append(c)
    nb.cells = cells
    md, _ = MarkdownExporter().from_notebook_node(nb)
    md = re.sub(r"\]\((?!https?:|#|/)", "](nbs/", md)  # image/link paths are relative to nbs/ in the notebook
    return "<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file. -->\n\n" + re.sub(r"\n{3,}", "\n\n", md).strip() + "\n"

if __name__ == "__main__":
    execute(src)
    (root/"README.md").write_text(render(src))
