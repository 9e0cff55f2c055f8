"""A command's report on disk: ``<stem>.md`` for people, ``<stem>.json`` for programs."""

import json
from pathlib import Path

__all__ = ["write_report"]


def write_report(out, stem, lines, result):
    """Write ``lines`` to ``out/<stem>.md`` and ``result`` to ``out/<stem>.json``, then print them.

    Parameters
    ----------
    out : str or Path
        Folder, made if missing.
    stem : str
        File name without the suffix.
    lines : list of str
        Markdown lines.
    result : dict
        JSON-serialisable result.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(lines))
