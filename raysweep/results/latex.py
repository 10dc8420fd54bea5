"""LaTeX tables that fit a page.

A table keeps its main columns (`Table.latex`; the others stay in the CSV and
Markdown files, and the notes say which), wraps long text in fixed-width ragged-right
columns, and is scaled down to the line width only when it is still wider than that.
The notes go below the tabular in \\footnotesize. A document needs
`\\usepackage{booktabs,graphicx,array}`.
"""
from __future__ import annotations

import re
from typing import Any

import pandas as pd

from raysweep.results.table import Table

PACKAGES = r"\usepackage{booktabs,graphicx,array}"

_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
        # an underscore may end a line: model names like improved_resnet20_convnext are long
        "_": r"\_\allowbreak{}",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "±": r"$\pm$", "Δ": r"$\Delta$", "×": r"$\times$", "≥": r"$\geq$", "≤": r"$\leq$",
        "α": r"$\alpha$", "Φ": r"$\Phi$", "−": "-", "–": "--", "—": "---", "<": r"\textless{}",
        ">": r"\textgreater{}", "|": r"$|$"}


def slug(name: str) -> str:
    """A file-name-safe form of a group or model name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "_"


def tex_escape(text: Any) -> str:
    return "".join(_TEX.get(c, c) for c in str(text))


def _align(column: pd.Series) -> str:
    cells = [c for c in column if c]
    numeric = cells and all(re.match(r"^[+\-<]?\s?\d", c) for c in cells)
    return "r" if numeric else "l"


def column_type(kind: str) -> str:
    """"l" / "r" as they are; a width ("2.4cm") becomes a wrapped ragged-right column."""
    if kind in ("l", "r", "c"):
        return kind
    return rf">{{\raggedright\arraybackslash}}p{{{kind}}}"


def cell(text: Any, kind: str, head: bool = False) -> str:
    """An escaped cell; its "\n" line breaks become \newline in a wrapped column and a
    one-column tabular elsewhere (aligned at the bottom in the header, at the top below)."""
    lines = [tex_escape(line) for line in str(text).split("\n")]
    if len(lines) == 1:
        return lines[0]
    if kind not in ("l", "r", "c"):
        return r" \newline ".join(lines)
    return (rf"\begin{{tabular}}[{'b' if head else 't'}]{{@{{}}{kind}@{{}}}}"
            # \relax: a line starting with "[" is not read as \\[length]
            + r" \\\relax ".join(lines) + r"\end{tabular}")


def to_latex(table: Table) -> str:
    frame = table.latex if table.latex is not None else table.display
    types = {c: table.latex_types.get(c) or _align(frame[c]) for c in frame.columns}
    shown = {c.replace("\n", " ") for c in frame.columns}
    left_out = [c for c in table.display.columns if c not in shown]
    spec = "".join(column_type(types[c]) for c in frame.columns)
    head = " & ".join(cell(c, types[c], head=True) for c in frame.columns) + r" \\"
    body = [" & ".join(cell(v, types[c]) for c, v in zip(frame.columns, row)) + r" \\"
            for row in frame.itertuples(index=False)]
    notes = list(table.notes)
    if left_out:
        notes.append(f"Not shown here: {', '.join(left_out)} (in the .csv and .md files).")
    return "\n".join([
        f"% {tex_escape(table.title)}: written by raysweep report; needs {PACKAGES}",
        r"\begin{table}[htbp]",
        r"\centering",
        r"\footnotesize",
        r"\setlength{\tabcolsep}{3pt}",
        f"\\caption{{{tex_escape(table.title)}}}",
        f"\\label{{tab:{slug(table.name)}}}",
        # Scaled to the line width only if wider than it (\width: the tabular's own width).
        r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
        f"\\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        head,
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}}",
        r"\par\smallskip",
        r"{\footnotesize\raggedright",
        *[tex_escape(n) + r"\par" for n in notes],
        "}",
        r"\end{table}",
        "",
    ])
