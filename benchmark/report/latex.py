"""LaTeX tables (booktabs) from the display tables, best score per column in bold."""

from __future__ import annotations

import re

import pandas as pd

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}
_UNICODE = {"×": r"$\times$", "−": "--", "–": "--", "²": r"$^2$", "·": r"$\cdot$", "★": r"$\star$"}


def escape(text: object) -> str:
    """Text made safe for LaTeX (special characters, the few Unicode signs the tables use)."""
    out = "".join(_SPECIAL.get(c, c) for c in str(text))
    for sign, tex in _UNICODE.items():
        out = out.replace(sign, tex)
    return out


def table(display: pd.DataFrame, caption: str, label: str,
          bold: pd.DataFrame | None = None) -> str:
    """A ``table`` environment with a booktabs ``tabular``; ``bold`` (same shape, booleans)
    marks the cells whose score (their first number) is set in bold."""
    cols = "l" + "r" * len(display.columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{cols}}}",
             r"\toprule",
             " & ".join(escape(c) for c in [display.index.name or "", *display.columns]) + r" \\",
             r"\midrule"]
    for name, row in display.iterrows():
        cells = []
        for col, value in row.items():
            text = escape(value)
            if bold is not None and col in bold.columns and name in bold.index and bold.loc[name, col]:
                text = _NUMBER.sub(lambda m: rf"\textbf{{{m.group(0)}}}", text, count=1)
            cells.append(text)
        if name == "chance":
            lines.append(r"\midrule")
        lines.append(" & ".join([escape(name), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{escape(caption)}}}",
              rf"\label{{{label}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"
