"""Render an executed report notebook to one self-contained HTML file with the ``nexml`` template.

The cover (what, which version, artifact hash, period, when and by what it was made), the
contents (from the notebook's headings) and any alert banner travel to the template in the
notebook's metadata (``metadata.nexml``), so the stored notebook carries them too. Inputs,
prompts, the parameter cells and the summary cell are left out; everything the page needs is
inlined (no script, font or style sheet is fetched from anywhere).
"""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import quote

import nbformat

from .execute import SUMMARY_TAG
from .paths import TEMPLATE_NAME, templates_dir

#: Cells that never reach the HTML: papermill's parameter cells and the summary cell.
HIDDEN_TAGS = frozenset({"parameters", "injected-parameters", SUMMARY_TAG})
_HEADING = re.compile(r"^(#{2,3})\s+(.+?)\s*#*\s*$")


def anchor(title: str) -> str:
    """The id nbconvert gives a Markdown heading (``nbconvert.filters.strings.add_anchor``)."""
    return quote(title.replace(" ", "-"), safe="?/:@!$&'()*+,;=")


def contents(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    """The table of contents: every level-2 and level-3 Markdown heading, in order."""
    entries = []
    for cell in nb.cells:
        if cell.cell_type != "markdown" or HIDDEN_TAGS & set(cell.metadata.get("tags", [])):
            continue
        fenced = False
        for line in cell.source.splitlines():
            if line.lstrip().startswith("```"):
                fenced = not fenced
            match = None if fenced else _HEADING.match(line)
            if match:
                title = match.group(2)
                entries.append(
                    {"level": len(match.group(1)), "title": title, "anchor": anchor(title)}
                )
    return entries


def annotate(
    nb: nbformat.NotebookNode,
    *,
    title: str,
    facts: list[tuple[str, str]],
    alerts: list[dict[str, str]],
) -> nbformat.NotebookNode:
    """A copy of ``nb`` carrying the cover, contents and alerts in ``metadata.nexml``."""
    nb = copy.deepcopy(nb)
    nb.metadata["title"] = title
    nb.metadata["nexml"] = {
        "title": title,
        "facts": [[str(label), str(value)] for label, value in facts],
        "alerts": [{"title": str(a["title"]), "text": str(a["text"])} for a in alerts],
        "toc": contents(nb),
    }
    return nb


def render(nb: nbformat.NotebookNode) -> bytes:
    """The HTML of an annotated notebook, as UTF-8 bytes (the bytes whose SHA-256 is recorded)."""
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    exporter = HTMLExporter(
        template_name=TEMPLATE_NAME,
        extra_template_basedirs=[str(templates_dir())],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        anchor_link_text="",
    )
    exporter.register_preprocessor(
        TagRemovePreprocessor(remove_cell_tags=set(HIDDEN_TAGS), enabled=True), enabled=True
    )
    body, _ = exporter.from_notebook_node(nb)
    return body.encode("utf-8")
