"""Pixel edit success per edit type, as a Markdown or HTML table (one row per run, one column per type).

A summary carries ``summary["edit_success"]`` = ``rm_edit.metrics.edit_success_rates`` of its scored rows;
a cell reads ``rate (successes/n)``, e.g. ``0.75 (3/4)``; ``n/a`` where a run judged no edit of that type.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

Named = Sequence[tuple[str, Mapping[str, Any]]]


def _cell(rate: Mapping[str, Any] | None) -> str:
    if not rate or not rate.get("n"):
        return "n/a"
    return f"{rate['rate']:.3g} ({rate['successes']}/{rate['n']})"


def success_grid(named: Named) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(column names: "all" then the edit types, rows: (run name, cells)); no rows when nothing was judged."""
    judged = [(name, s["edit_success"]) for name, s in named if (s.get("edit_success") or {}).get("overall", {}).get("n")]
    types = sorted({t for _, r in judged for t in r["by_edit_type"]})
    rows = [(name, [_cell(r["overall"]), *[_cell(r["by_edit_type"].get(t)) for t in types]]) for name, r in judged]
    return ["all", *types], rows


def success_by_type_markdown(named: Named) -> str:
    """The table in Markdown, or "" when no run judged an edit (no targets)."""
    head, rows = success_grid(named)
    if not rows:
        return ""
    lines = ["| Edit success | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    return "\n".join(lines)


def success_by_type_html(named: Named) -> str:
    """The table in HTML (class ``success``), or "" when no run judged an edit."""
    head, rows = success_grid(named)
    if not rows:
        return ""
    esc = lambda x: html.escape(str(x), quote=True)  # noqa: E731
    thead = "<tr><th class='t'>edit success</th>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
    body = "".join(f"<tr><td class='t'>{esc(name)}</td>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>"
                   for name, cells in rows)
    return f"<table class='success'><thead>{thead}</thead><tbody>{body}</tbody></table>"
