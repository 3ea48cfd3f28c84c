"""RESULTS.md sections, each owned by one results script and delimited by HTML-comment markers::

    <!-- section: <name> (<source>) -->
    ...
    <!-- end section: <name> -->

A script rewrites only its own section, so the other scripts' sections and the hand-written ones stay as they are.
"""

from __future__ import annotations

import re
from pathlib import Path


def write_section(path: Path, name: str, body: str, source: str = "") -> None:
    """Replace section ``name`` of ``path`` with ``body`` (or append it, creating the file if need be)."""
    start = f"<!-- section: {name}{f' ({source})' if source else ''} -->"
    end = f"<!-- end section: {name} -->"
    section = f"{start}\n{body.strip()}\n{end}\n"
    text = path.read_text() if path.exists() else "# vivarl results\n\n"
    pattern = re.compile(
        rf"<!-- section: {re.escape(name)}(?: \([^)]*\))? -->.*?{re.escape(end)}\n?", re.DOTALL
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)
