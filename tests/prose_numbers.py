"""Numbers a lesson's prose states, and whether the lesson's own outputs back them.

A *claim* is a number in a markdown cell with a decimal point or a percent sign (91.2%, 8.6 points,
1.5x, 306.5M): the kind of number that reports a result and goes stale when the result changes.
Whole numbers without a percent sign (sizes, epochs, lesson numbers) are not claims. Ignored: exercise
solutions in ``<details>`` blocks (tests/test_exercises.py checks them against what they print), code
spans and blocks, LaTeX, link targets, HTML comments, section references (Sec. 3.1, Appendix D.4,
Table 5, Fig. 7, Eq. 1) and version numbers (2.15.0).

A claim is *backed* when a number printed in one of the notebook's code-cell outputs rounds to it
(at the claim's own precision, as a fraction or as a percentage, the sign aside, and scaled by a
k / M / B suffix), or when the cell's metadata lists it as quoted:

    "metadata": {"vitlab": {"quoted": {"76.53%": "ViT paper, Table 5", "91.5%": "lesson 03"}}}

Quoted numbers come from a paper, another lesson or arithmetic on stated constants; each says its
source, and each must still occur in its cell (a stale entry is an error too).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

_REMOVE = [
    re.compile(r"<details>.*?</details>", re.S),  # exercise solutions: checked against their own output
    re.compile(r"```.*?```", re.S),            # code blocks
    re.compile(r"`[^`\n]*`"),                   # code spans
    re.compile(r"\$\$.*?\$\$", re.S),           # display maths
    re.compile(r"\$[^$\n]*\$"),                 # inline maths
    re.compile(r"<!--.*?-->", re.S),            # HTML comments
    re.compile(r"\]\([^)]*\)"),                 # link targets
    re.compile(r"https?://\S+|arXiv:\S+"),      # addresses
    # section references: Sec. 3.1.4, Section 4.5, Appendix D.4, Table 5, Fig. 7, Eq. 1, §3.2
    re.compile(r"(?:Sec(?:tion|s)?\.?|Appendix|Tables?|Fig(?:ure|s)?\.?|Eqs?\.?|§)\s*[A-Z]?\d+(?:\.\d+)*"),
    re.compile(r"\b[A-Z]\.\d+(?:[–-][A-Z]?\.?\d+)?"),  # D.4, D.7–D.8
    re.compile(r"\b\d+\.\d+\.\d+\S*"),          # versions: 2.15.0, 0.29.1+cpu
]
_NUMBER = re.compile(r"(?<![\w.])([-−]?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s?(%|[kMB]\b)?")
_SCALE = {"k": 1e3, "M": 1e6, "B": 1e9}
_OUTPUT_NUMBER = re.compile(r"[-−]?\d+(?:,\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?")


def prose_text(markdown: str) -> str:
    """The markdown with everything that is not prose about results blanked out."""
    for pattern in _REMOVE:
        markdown = pattern.sub(" ", markdown)
    return markdown


def claims(markdown: str) -> list[str]:
    """The result-like numbers a markdown text states, as written (e.g. '91.2%', '-8.6', '306.5M')."""
    found = []
    for m in _NUMBER.finditer(prose_text(markdown)):
        sign, whole, frac, unit = m.groups()
        if frac or unit == "%":
            found.append(f"{sign}{whole}{frac or ''}{unit or ''}")
    return found


def numbers_in(text: str) -> list[float]:
    """Every number printed in a text (thousands separators and the minus sign understood)."""
    return [float(m.group(0).replace(",", "").replace("−", "-")) for m in _OUTPUT_NUMBER.finditer(text)]


def output_numbers(notebook: dict) -> list[float]:
    """Every number printed in the notebook's code-cell outputs (text, plain, markdown or HTML)."""
    values = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            text = "".join(out.get("text", "")) + "".join(out.get("evalue", ""))
            for kind in ("text/plain", "text/markdown", "text/html"):
                text += "\n" + "".join(data.get(kind, ""))
            values += numbers_in(text)
    return values


def backed(claim: str, values: list[float]) -> bool:
    """Whether some printed value, rounded to the claim's precision, is the claimed number."""
    m = re.fullmatch(r"[-−]?([\d,]+)(\.\d+)?\s?(%|[kMB])?", claim)
    if m is None:
        raise ValueError(f"not a claim: {claim!r}")
    whole, frac, unit = m.groups()
    number = float(whole.replace(",", "") + (frac or ""))
    half_unit = 0.5 * 10 ** -(len(frac) - 1 if frac else 0) + 1e-9
    scale = _SCALE.get(unit, 1.0)
    for v in values:
        for candidate in (abs(v) / scale, abs(v) * 100 / scale):
            if abs(candidate - number) <= half_unit:
                return True
    return False


def quoted(cell: dict) -> dict:
    return cell.get("metadata", {}).get("vitlab", {}).get("quoted", {})


def problems(path: "str | Path") -> list[str]:
    """Every claim of a lesson that its outputs do not back and that is not quoted, and every stale quote."""
    notebook = json.loads(Path(path).read_text())
    values = output_numbers(notebook)
    found = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        stated = claims(text)
        sources = quoted(cell)
        for claim in stated:
            if claim not in sources and claim.replace("−", "-") not in sources and not backed(claim, values):
                context = prose_text(text)
                at = context.find(claim.lstrip("-−"))
                snippet = " ".join(context[max(0, at - 60):at + len(claim) + 20].split())
                found.append(f"cell {index}: {claim} is in no output and not quoted (...{snippet}...)")
        for claim, source in sources.items():
            if claim not in stated and claim.replace("-", "−") not in stated:
                found.append(f"cell {index}: quoted {claim} ({source}) no longer occurs in the cell")
            elif not str(source).strip():
                found.append(f"cell {index}: quoted {claim} names no source")
    return found
