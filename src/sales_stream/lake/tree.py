"""Inspecting the lake: totals of its live files, and a text tree of its directories."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

from sales_stream.lake.files import num_rows
from sales_stream.lake.layout import (
    DEAD_LETTERS_DIR,
    SALES_DIR,
    LakeLocation,
    PartFile,
    list_parts,
    live_parts,
    open_lake,
)


def lake_stats(lake_url: LakeLocation) -> dict[str, int]:
    """Totals of the lake's live files.

    Returns:
        ``files``, ``rows``, ``bytes`` and ``partitions`` of the events, and the number of
        ``dead_letters``.
    """
    lake = open_lake(lake_url)
    parts = live_parts(list_parts(lake, SALES_DIR))
    letters = live_parts(list_parts(lake, DEAD_LETTERS_DIR))
    return {
        "files": len(parts),
        "rows": sum(num_rows(lake, p) for p in parts),
        "bytes": sum(p.size for p in parts),
        "partitions": len({p.directory for p in parts}),
        "dead_letters": sum(num_rows(lake, p) for p in letters),
    }


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


@dataclass
class _Node:
    dirs: dict[str, _Node] = field(default_factory=dict)
    files: list[PartFile] = field(default_factory=list)

    def totals(self) -> tuple[int, int]:
        count, size = len(self.files), sum(f.size for f in self.files)
        for child in self.dirs.values():
            c, s = child.totals()
            count, size = count + c, size + s
        return count, size

    def summary(self) -> str:
        count, size = self.totals()
        return f"({count} file{'s' if count != 1 else ''}, {_human(size)})"


def _render(node: _Node, prefix: str, lines: list[str]) -> None:
    dirs = sorted(node.dirs.items(), key=lambda item: unquote(item[0]))
    entries: list[tuple[str, _Node | PartFile]] = [*dirs]
    files = sorted(node.files, key=lambda f: (f.topic, f.partition, f.first))
    entries += [(f.name, f) for f in files]
    for i, (name, entry) in enumerate(entries):
        last = i == len(entries) - 1
        branch = "└── " if last else "├── "
        if isinstance(entry, _Node):
            decoded = unquote(name)
            shown = (
                f"{name}/  = {decoded.partition('=')[2]!r} " if decoded != name else f"{name}/  "
            )
            lines.append(f"{prefix}{branch}{shown}{entry.summary()}")
            _render(entry, prefix + ("    " if last else "│   "), lines)
        else:
            lines.append(f"{prefix}{branch}{name}  ({_human(entry.size)})")


def partition_tree(lake_url: LakeLocation, *, max_lines: int = 40) -> str:
    """A text tree of the lake's directories and live files, with sizes.

    Percent-encoded region directories are followed by their decoded name.

    Args:
        lake_url: Lake root (see `sales_stream.lake.layout.open_lake`).
        max_lines: Longest output; the rest is counted on a last line.

    Raises:
        ValueError: ``max_lines`` is below 2.
    """
    if max_lines < 2:
        raise ValueError(f"max_lines must be >= 2, got {max_lines}")
    lake = open_lake(lake_url)
    root = _Node()
    for part in live_parts(list_parts(lake)):
        node = root
        for name in part.directory.split("/"):
            node = node.dirs.setdefault(name, _Node())
        node.files.append(part)
    lines = [f"{lake.url.rstrip('/')}/  {root.summary()}"]
    _render(root, "", lines)
    if len(lines) > max_lines:
        hidden = len(lines) - max_lines + 1
        lines = [*lines[: max_lines - 1], f"… {hidden} more lines"]
    return "\n".join(lines)
