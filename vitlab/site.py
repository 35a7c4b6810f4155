"""The course as a website: every lesson as a static HTML page, and an index page with the lesson table.

``make site`` (``python -m vitlab.site --out site``) turns the committed, executed notebooks into HTML with
nbconvert's JupyterLab template: the outputs are the committed ones (nothing is re-executed), figures
are embedded in the pages, and links between lessons point to the other pages. The folder is
self-contained: open ``site/index.html`` from disk or copy the folder to any static web host.

Why nbconvert rather than Jupyter Book or Sphinx with myst-nb: it ships with JupyterLab (no extra
dependency to install or lock), it builds offline in seconds, and it renders exactly the outputs that
nbval checks. What it does not do offline: typeset LaTeX (the pages ask a CDN for MathJax, so without a
network the formulas show as their source).
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
from pathlib import Path

from .gallery import LESSONS, ROOT

__all__ = ["build_site", "main"]

_NOTEBOOK_LINK = re.compile(r'href="(\d\d_[A-Za-z0-9_]+)\.ipynb(#[^"]*)?"')


def _index(title: str, pictures: set[str]) -> str:
    rows = []
    for lesson in LESSONS:
        number = lesson.notebook.split("_")[0]
        picture = (f'<img src="images/{lesson.notebook}.png" alt="{html.escape(lesson.title)}" width="260">'
                   if lesson.notebook in pictures else "")
        rows.append(f'<tr><td><a href="{lesson.notebook}.html">{number} — {html.escape(lesson.title)}</a></td>'
                    f"<td>{html.escape(lesson.summary)}</td><td>{picture}</td></tr>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; line-height: 1.4; }}
table {{ border-collapse: collapse; }} td {{ border-top: 1px solid #ddd; padding: 0.5em; vertical-align: top; }}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p>Vision Transformers built step by step, checked against timm, trained on a laptop CPU, and opened up to see
what they learned. Each lesson is shown as it was last executed; to run it yourself, clone the repository and
run <code>make lab</code>.</p>
<table>
<tr><th>lesson</th><th>what you build or find out</th><th>picture</th></tr>
{chr(10).join(rows)}
</table>
</body></html>
"""


def build_site(out_dir: "str | Path" = "site", notebooks_dir: "str | Path | None" = None,
               images_dir: "str | Path | None" = None, title: str = "vitlab: the Vision Transformer, lesson by lesson"
               ) -> list[Path]:
    """Write ``index.html`` and one page per lesson (``<notebook>.html``) into ``out_dir``.

    Args:
        out_dir: the site folder (created; pages already there are replaced).
        notebooks_dir: where the lessons are (default: this repository's ``notebooks/``).
        images_dir: the lesson pictures of the index (default ``docs/images``; a lesson without one has none).
        title: the index page's title.
    Returns:
        the pages written, the index first.
    Raises:
        FileNotFoundError: a lesson has no notebook.
    """
    from nbconvert import HTMLExporter

    out = Path(out_dir)
    notebooks_dir = Path(notebooks_dir) if notebooks_dir is not None else ROOT / "notebooks"
    images_dir = Path(images_dir) if images_dir is not None else ROOT / "docs" / "images"
    missing = [lesson.notebook for lesson in LESSONS if not (notebooks_dir / f"{lesson.notebook}.ipynb").is_file()]
    if missing:
        raise FileNotFoundError(f"No notebook for the lessons {missing} in {notebooks_dir}.")
    out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    pages = []
    for lesson in LESSONS:
        body, _ = exporter.from_filename(str(notebooks_dir / f"{lesson.notebook}.ipynb"))
        body = _NOTEBOOK_LINK.sub(lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"', body)
        page = out / f"{lesson.notebook}.html"
        page.write_text(body, encoding="utf-8")
        pages.append(page)
    pictures = set()
    if images_dir.is_dir():
        (out / "images").mkdir(exist_ok=True)
        for lesson in LESSONS:
            picture = images_dir / f"{lesson.notebook}.png"
            if picture.is_file():
                shutil.copy2(picture, out / "images" / picture.name)
                pictures.add(lesson.notebook)
    index = out / "index.html"
    index.write_text(_index(title, pictures), encoding="utf-8")
    return [index] + pages


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitlab.site", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="site", help="the site folder (default: site)")
    args = parser.parse_args(argv)
    pages = build_site(args.out)
    print(f"{len(pages)} pages written; open {pages[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
