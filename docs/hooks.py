"""MkDocs hook: the record tables' schemas are generated from the code (``sharing_lab.runs.records``), so the
reference cannot drift from what the search writes."""

from __future__ import annotations

MARKER = "<!-- record-schemas -->"


def _rows(columns: dict, required: bool) -> list[str]:
    return [f"| `{name}` | `{kind}` | {'every row' if required else 'some rows'} |" for name, kind in columns.items()]


def on_page_markdown(markdown: str, **_) -> str:
    if MARKER not in markdown:
        return markdown
    from sharing_lab.runs.records import OPTIONAL, SCHEMAS
    from sharing_lab.truth.table import COLUMNS

    parts = []
    for table, columns in SCHEMAS.items():
        parts += [f"## `{table}`", "", "| column | type | present in |", "|---|---|---|",
                  *_rows(columns, True), *_rows(OPTIONAL.get(table, {}), False), ""]
    parts += ["## Ground-truth tables", "", "One row per architecture and seed; the space and the recipe in the "
              "file's metadata (`sharing_lab.truth.table`).", "", "| column | type | present in |", "|---|---|---|",
              *_rows(COLUMNS, True), ""]
    return markdown.replace(MARKER, "\n".join(parts))
