"""The lake in French for notebook 05: its tree, its totals and a compaction's outcome.

`sales_stream.lake.tree` speaks English (the CLI's ``lake tree``); the notebooks use these
French variants, each label written here once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict

import pandas as pd
from pandas.io.formats.style import Styler

from sales_stream.lake.compaction import CompactionResult
from sales_stream.lake.layout import LakeLocation
from sales_stream.lake.tree import TreeText, human_size, lake_stats, partition_tree
from sales_stream.ui.format import fr_float, fr_int, fr_plural
from sales_stream.ui.tables import french_table


def fr_size(size: float) -> str:
    """A size in bytes, in French units: ``512 o``, ``52,6 ko``, ``1,2 Mo``, ``3,4 Go``."""
    return human_size(size, units=("o", "ko", "Mo", "Go"), decimal=fr_float)


#: The words of the lake's tree in French: « (158 fichiers, 1,2 Mo) », « … 244 lignes de plus ».
FRENCH_TREE = TreeText(
    files=lambda n: fr_plural(n, "fichier"),
    size=fr_size,
    more=lambda n: f"… {fr_plural(n, 'ligne')} de plus",
)

#: `lake_stats` keys → French row labels.
STATS_LABELS = {
    "files": "fichiers de ventes",
    "rows": "ventes (lignes)",
    "bytes": "taille",
    "partitions": "dossiers date/région",
    "dead_letters": "lettres mortes",
}

#: `CompactionResult` fields → French column labels.
COMPACTION_LABELS = {
    "date": "jour",
    "region": "région",
    "files_before": "fichiers avant",
    "files_after": "fichiers après",
    "rows": "lignes",
}


def lake_tree(lake: LakeLocation, *, max_lines: int = 40) -> str:
    """The lake's directory tree with French counts and sizes (`partition_tree`)."""
    return partition_tree(lake, max_lines=max_lines, text=FRENCH_TREE)


def lake_stats_table(lake: LakeLocation) -> Styler:
    """The lake's totals (`lake_stats`) as a two-column French table, the size in ko/Mo."""
    stats = lake_stats(lake)
    values = [fr_size(v) if k == "bytes" else fr_int(v) for k, v in stats.items()]
    frame = pd.DataFrame({"mesure": [STATS_LABELS[k] for k in stats], "valeur": values})
    return french_table(frame)


def compaction_table(results: Iterable[CompactionResult], *, n: int = 10) -> object:
    """The first ``n`` compacted partitions, French column labels."""
    frame = pd.DataFrame([asdict(r) for r in results], columns=list(COMPACTION_LABELS))
    frame["date"] = [f"{day:%d/%m/%Y}" for day in frame["date"]]
    return french_table(
        frame.head(n), labels=COMPACTION_LABELS, empty="aucune journée close à compacter"
    )
