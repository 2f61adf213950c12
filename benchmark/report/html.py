"""One self-contained static HTML page: sortable tables, embedded plots, run provenance.

No server and no external files: CSS and the sorting script are inline, the figures are
embedded as base64 PNG. It opens from the file system.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#1b1b1b;background:#fff}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
thead th{background:#1f4e79;color:#fff;cursor:pointer;user-select:none}
thead th:after{content:" \\2195";opacity:.5}
tbody tr:nth-child(even){background:#f3f6fa}
td.best{font-weight:bold;background:#e3f1e3}
div.scroll{overflow-x:auto}
p.caption{font-size:.85rem;color:#555;max-width:900px}
figure{display:inline-block;margin:.5rem}figure img{max-width:560px;border:1px solid #eee}
"""

SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('thead th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var body=t.tBodies[0],rows=Array.from(body.rows),asc=th.dataset.dir!=='asc';
      var key=function(r){var c=r.cells[i];var v=c.dataset.value;
        return (v!==undefined&&v!=='')?parseFloat(v):c.textContent.trim().toLowerCase();};
      rows.sort(function(a,b){var x=key(a),y=key(b);
        if(typeof x==='number'&&typeof y==='number'){return asc?x-y:y-x;}
        return asc?String(x).localeCompare(String(y)):String(y).localeCompare(String(x));});
      rows.forEach(function(r){body.appendChild(r);});
      t.querySelectorAll('thead th').forEach(function(h){delete h.dataset.dir;});
      th.dataset.dir=asc?'asc':'desc';
    });
  });
});
"""


def sort_value(text: str) -> str:
    """The number a cell sorts by: its first number (the score), else empty (text sort)."""
    m = _NUMBER.search(str(text))
    return m.group(0) if m else ""


def table(display: pd.DataFrame, *, caption: str = "", best: pd.DataFrame | None = None,
          table_id: str = "") -> str:
    """A sortable HTML table of a string frame; ``best`` marks cells to highlight."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [display.index.name or "", *display.columns])
    rows = []
    for name, row in display.iterrows():
        cells = [f'<td data-value="">{html.escape(str(name))}</td>']
        for col, value in row.items():
            mark = (best is not None and col in best.columns and name in best.index
                    and bool(best.loc[name, col]))
            cls = ' class="best"' if mark else ""
            cells.append(f'<td{cls} data-value="{sort_value(value)}">{html.escape(str(value))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    return (f'<div class="scroll"><table class="sortable"{ident}><thead><tr>{head}</tr></thead>'
            "<tbody>" + "\n".join(rows) + "</tbody></table></div>"
            + (f'<p class="caption">{html.escape(caption)}</p>' if caption else ""))


def figure(path: Path, caption: str) -> str:
    """An embedded PNG figure."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """The whole page: ``sections`` are (heading, HTML body) pairs."""
    body = "\n".join(f"<section><h2>{html.escape(h)}</h2>\n{content}</section>" for h, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>\n{body}\n<script>{SCRIPT}</script></body></html>\n")
