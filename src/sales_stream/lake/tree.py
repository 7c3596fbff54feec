"""Inspecting the lake: totals of its live files, and a text tree of its directories."""

from __future__ import annotations

from collections.abc import Callable
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


def human_size(
    size: float,
    *,
    units: tuple[str, str, str, str] = ("B", "kB", "MB", "GB"),
    decimal: Callable[[float], str] = lambda value: f"{value:.1f}",
) -> str:
    """A size in bytes for people: ``512 B``, ``52.6 kB``, ``1.2 MB``, ``3.4 GB``.

    Args:
        size: Bytes.
        units: The four unit names (French: ``o``, ``ko``, ``Mo``, ``Go``).
        decimal: Writes a number of kB and above with one decimal.
    """
    for unit in units[:3]:
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == units[0] else f"{decimal(size)} {unit}"
        size /= 1000
    return f"{decimal(size)} {units[3]}"


@dataclass(frozen=True)
class TreeText:
    """The words of `partition_tree` (English for the CLI; notebooks pass a French one).

    Attributes:
        files: ``3`` → ``3 files``.
        size: A size in bytes → ``1.2 MB``.
        more: How many lines were cut → ``… 12 more lines``.
    """

    files: Callable[[int], str]
    size: Callable[[float], str]
    more: Callable[[int], str]


ENGLISH = TreeText(
    files=lambda n: f"{n} file{'s' if n != 1 else ''}",
    size=human_size,
    more=lambda n: f"… {n} more line{'s' if n != 1 else ''}",
)


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

    def summary(self, text: TreeText) -> str:
        count, size = self.totals()
        return f"({text.files(count)}, {text.size(size)})"


def _render(node: _Node, prefix: str, lines: list[str], text: TreeText) -> None:
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
            lines.append(f"{prefix}{branch}{shown}{entry.summary(text)}")
            _render(entry, prefix + ("    " if last else "│   "), lines, text)
        else:
            lines.append(f"{prefix}{branch}{name}  ({text.size(entry.size)})")


def partition_tree(lake_url: LakeLocation, *, max_lines: int = 40, text: TreeText = ENGLISH) -> str:
    """A text tree of the lake's directories and live files, with sizes.

    Percent-encoded region directories are followed by their decoded name.

    Args:
        lake_url: Lake root (see `sales_stream.lake.layout.open_lake`).
        max_lines: Longest output; the rest is counted on a last line.
        text: The words of the tree (`ENGLISH`, or the notebooks' French ones).

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
    lines = [f"{lake.url.rstrip('/')}/  {root.summary(text)}"]
    _render(root, "", lines, text)
    if len(lines) > max_lines:
        hidden = len(lines) - max_lines + 1
        lines = [*lines[: max_lines - 1], text.more(hidden)]
    return "\n".join(lines)
