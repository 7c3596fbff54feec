"""The report (``compte_rendu.md``) and its annex, rendered: no figure in them is typed by hand.

Each document is a template (``docs/*.template.md``) with named placeholders ``{{ name }}``,
filled with figures read from the files the project produced:

* ``docs/bench/*.txt``: the benchmark outputs (the first, latest run of each file);
* the committed notebooks ``0*_*.ipynb``: the numbers each one records with
  ``notebooks.report`` (cell or output metadata ``sales_stream.result``);
* ``tableau/README.md``: the snapshot workbook's row count and period (itself checked against
  ``tableau/ventes.twbx`` by ``tests/test_snapshot.py``);
* ``docs/img/``: which pictures exist (a Tableau screen not captured yet is listed as « à
  fournir » instead of being linked), and ``docs/img/captures.json`` (the dashboard's status line
  at each capture, written by ``docs/screenshots.py``) when present.

``python -m sales_stream.report`` rewrites the documents; ``--check`` only says whether they
are up to date. ``tests/test_report.py`` asserts that the committed files equal the rendering.
A figure that cannot be read is an error naming its file, never a silent blank.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sales_stream.notebooks import NOTEBOOKS
from sales_stream.ui.format import fr_float, fr_int

REPO = Path(__file__).resolve().parents[2]

#: Rendered document → its template (paths relative to the repository).
DOCUMENTS = {
    "compte_rendu.md": "docs/compte_rendu.template.md",
    "docs/annexe_mesures.md": "docs/annexe_mesures.template.md",
}
#: The report's body may not exceed this many words (`body_words`).
MAX_BODY_WORDS = 3500

RESULT_KEY = "sales_stream"  # notebooks.RESULT_KEY (not imported: that module needs nbformat)


@dataclass(frozen=True)
class Screen:
    """A Tableau screen the course asks for, captured by the student under ``docs/img/``."""

    file: str
    what: str


#: The Tableau screens the report shows once captured (see tableau/README.md, « Ouvrir,
#: capturer, partager »).
TABLEAU_SCREENS = (
    Screen("tableau_ca_dans_le_temps.png", "la feuille « CA dans le temps »"),
    Screen("tableau_carte_regions.png", "la feuille « Ventes par région » (carte remplie)"),
    Screen("tableau_top_produits.png", "la feuille « Top produits »"),
    Screen("tableau_tableau_de_bord.png", "le tableau de bord, sans filtre"),
    Screen("tableau_filtre_periode.png", "le tableau de bord filtré sur une période"),
    Screen("tableau_filtre_region.png", "le tableau de bord filtré sur une région"),
    Screen("tableau_filtre_produit.png", "le tableau de bord filtré sur un produit"),
    Screen("tableau_temps_reel_1.png", "le tableau de bord en direct (PostgreSQL), avant"),
    Screen("tableau_temps_reel_2.png", "le même, actualisé pendant que les ventes arrivent"),
    Screen("tableau_partage.png", "le classeur publié et partagé (Tableau Cloud)"),
)

PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class ReportError(Exception):
    """A source file is missing or does not hold the figure the report cites."""


# --------------------------------------------------------------------------- formatting


def ratio(value: float, digits: int = 2) -> str:
    """``0.84`` → ``0,84×``."""
    return f"{fr_float(value, digits)}×"


def seconds(value: float, digits: int = 2) -> str:
    """``0.36`` → ``0,36 s``."""
    return f"{fr_float(value, digits)} s"


def euros(value: float) -> str:
    """``3525463.8`` → ``3 525 463,80 €``."""
    return f"{fr_float(value, 2)} €"


def fr_date(iso: str) -> str:
    """``2026-12-02`` → ``2 décembre 2026``."""
    months = (
        "janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
        "septembre", "octobre", "novembre", "décembre",
    )  # fmt: skip
    year, month, day = (int(part) for part in iso.split("-"))
    return f"{'1er' if day == 1 else day} {months[month - 1]} {year}"


def verdict(word: str, *, plural: bool = True) -> str:
    """A benchmark's ``met``/``missed`` as « tenus » / « non tenus »."""
    met = word.strip().lower() == "met"
    return ("tenus" if plural else "tenu") if met else ("non tenus" if plural else "non tenu")


def _listed(items: Sequence[str]) -> str:
    """``["a", "b", "c"]`` → ``a, b et c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} et {items[-1]}"


def _number(text: str) -> float:
    return float(text.replace(",", ""))


# --------------------------------------------------------------------------- sources


class Source:
    """One file's text, with `find` naming the file and the pattern when a figure is absent."""

    def __init__(self, root: Path, relative: str, text: str | None = None) -> None:
        self.path = relative
        if text is None:
            try:
                text = (root / relative).read_text(encoding="utf-8")
            except OSError as exc:
                raise ReportError(f"{relative}: cannot be read ({exc})") from None
        self.text = text

    def find(self, pattern: str, flags: int = re.MULTILINE) -> tuple[str, ...]:
        """The groups of ``pattern``'s first match; `ReportError` naming the file if none."""
        match = re.search(pattern, self.text, flags)
        if match is None:
            raise ReportError(f"{self.path}: no match for /{pattern}/")
        return match.groups()

    def find_all(self, pattern: str, flags: int = re.MULTILINE) -> list[tuple[str, ...]]:
        """The groups of every match of ``pattern`` (at least one)."""
        found = [m.groups() for m in re.finditer(pattern, self.text, flags)]
        if not found:
            raise ReportError(f"{self.path}: no match for /{pattern}/")
        return found


def bench(root: Path, name: str) -> Source:
    """``docs/bench/NAME.txt``, cut to its first run (the latest: runs are prepended)."""
    source = Source(root, f"docs/bench/{name}.txt")
    runs = re.split(r"^(?=\$ )", source.text, flags=re.MULTILINE)
    first = next((run for run in runs if run.startswith("$ ")), None)
    if first is None:
        raise ReportError(f"{source.path}: no run (a line starting with '$ ')")
    return Source(root, source.path, first)


def bench_date(source: Source) -> str:
    """The date in a run's command line (``# 2026-12-02 13:31 UTC``), in French."""
    (day,) = source.find(r"^\$ .*#\s*(\d{4}-\d{2}-\d{2})")
    return fr_date(day)


def notebook_results(root: Path, name: str) -> dict[str, object]:
    """The values notebook ``name`` recorded with ``notebooks.report``."""
    path = root / name
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"{name}: cannot be read ({exc})") from None
    merged: dict[str, object] = {}
    for cell in nb.get("cells", []):
        merged.update(cell.get("metadata", {}).get(RESULT_KEY, {}).get("result", {}))
        for out in cell.get("outputs", []):
            merged.update((out.get("metadata") or {}).get(RESULT_KEY, {}).get("result", {}))
    return merged


def _result(results: dict[str, dict[str, object]], notebook: str, key: str) -> object:
    value = results[notebook].get(key)
    if value is None:
        raise ReportError(f"{notebook}: no reported value {key!r} (run make notebooks)")
    return value


# --------------------------------------------------------------------------- figures


def bench_figures(root: Path) -> dict[str, str]:
    """The benchmark figures, from ``docs/bench/*.txt``."""
    f: dict[str, str] = {}

    ct = bench(root, "consumer_throughput")
    f["conso_date"] = bench_date(ct)
    (f["conso_evenements"],) = (fr_int(int(_number(ct.find(r"events: ([\d,]+)")[0]))),)
    f["conso_debit"] = fr_int(int(_number(ct.find(r"^ours:\s+([\d,]+) events/s")[0])))
    f["conso_brut"] = fr_int(int(_number(ct.find(r"^raw insert_many:\s+([\d,]+)")[0])))
    f["conso_naif"] = fr_int(int(_number(ct.find(r"^naive:\s+([\d,]+)")[0])))
    f["conso_seul_debit"] = fr_int(int(_number(ct.find(r"^consumer alone:\s+([\d,]+)")[0])))
    naive_ratio, naive_target = ct.find(r"^ours / naive =\s*([\d.]+)\s+\(target >= ([\d.]+)")
    raw_ratio, raw_target = ct.find(r"^ours / raw\s*=\s*([\d.]+)\s+\(target >= ([\d.]+)")
    f["conso_x_naif"] = ratio(float(naive_ratio), 1)
    f["conso_x_brut"] = ratio(float(raw_ratio))
    f["conso_cible_naif"] = ratio(float(naive_target), 0)
    f["conso_cible_brut"] = ratio(float(raw_target), 1)
    met = float(naive_ratio) >= float(naive_target) and float(raw_ratio) >= float(raw_target)
    f["conso_verdict"] = verdict("met" if met else "missed")

    cm = bench(root, "consumer_marginal")
    f["marge_date"] = bench_date(cm)
    n1, n2 = cm.find(r"; ([\d,]+) and ([\d,]+) events")
    f["marge_n1"], f["marge_n2"] = fr_int(int(_number(n1))), fr_int(int(_number(n2)))
    rounds = cm.find_all(r"^round \d+: .* = ([\d.]+)x raw")
    f["marge_tours"] = ", ".join(ratio(float(r)) for (r,) in rounds)
    x, count, target, word = cm.find(
        r"^marginal / raw\s*= ([\d.]+)\s+\(median of (\d+), lowest [\d.]+; "
        r"target >= ([\d.]+) in every round\): (\w+)"
    )
    f["marge_x_brut"], f["marge_cible"] = ratio(float(x)), ratio(float(target), 1)
    f["marge_n_tours"] = fr_int(int(count))
    f["marge_verdict"] = verdict(word, plural=False)

    ee = bench(root, "end_to_end")
    f["e2e_date"] = bench_date(ee)
    rate, secs = ee.find(r"== (\d+) sales/s for (\d+) s")
    f["e2e_debit"], f["e2e_duree"] = fr_int(int(rate)), fr_int(int(secs))
    (sent,) = ee.find(r"^sent\s*: (\d+) sales")
    f["e2e_envoyees"] = fr_int(int(sent))
    stored = ee.find(r"^stored\s*: (\d+) in MongoDB, (\d+) in the rollups, (\d+) in the extract")
    f["e2e_toutes_stockees"] = (
        "toutes stockées" if all(int(n) == int(sent) for n in stored) else "pas toutes stockées"
    )
    for key, label in (("mongo", "MongoDB"), ("extrait", "Hyper extract")):
        (p95,) = ee.find(rf"^event -> {label}\s*: p50 [\d.]+ s, p95 ([\d.]+)")
        f[f"e2e_p95_{key}"] = seconds(float(p95))
    f["e2e_resorbe"] = seconds(float(ee.find(r"^backlog drained in\s*: ([\d.]+) s")[0]))
    cible_m, cible_x, word = ee.find(
        r"^targets p95 MongoDB <= ([\d.]+) s, extract <= ([\d.]+) s: (\w+)"
    )
    f["e2e_cible_mongo"], f["e2e_cible_extrait"] = (
        seconds(float(cible_m), 0),
        seconds(float(cible_x), 0),
    )
    f["e2e_verdict"] = verdict(word)

    soak = bench(root, "soak")
    f["soak_date"] = bench_date(soak)
    rate, minutes = soak.find(r"== soak: (\d+) sales/s for (\d+) min")
    f["soak_debit"], f["soak_minutes"] = fr_int(int(rate)), fr_int(int(minutes))
    counts = soak.find(r"^sent (\d+), stored (\d+), rollups (\d+), extract (\d+), lake (\d+)")
    f["soak_envoyees"] = fr_int(int(counts[0]))
    f["soak_perte"] = (
        "aucune vente perdue ni doublée (MongoDB, agrégats, extrait et lac)"
        if len(set(counts)) == 1
        else f"{fr_int(int(counts[1]))} enregistrées dans MongoDB à l'arrêt du producteur : "
        "les consommateurs avaient pris du retard, le reste attendait dans Kafka"
    )
    first, last = soak.find(
        r"^p95 event -> MongoDB: first minute ([\d.]+) s, last full minute \(\d+\) ([\d.]+) s"
    )
    f["soak_p95_debut"], f["soak_p95_fin"] = seconds(float(first)), seconds(float(last))
    for store, key in (("MongoDB", "mongo"), ("extract", "extrait")):
        met, target, worst = soak.find(
            rf"^\s*(met|NOT met): p95 -> {store} <= ([\d.]+) s every minute \(worst ([\d.]+) s\)"
        )
        f[f"soak_{key}_pire"] = seconds(float(worst))
        f[f"soak_{key}_cible"] = seconds(float(target), 0)
        f[f"soak_{key}_verdict"] = verdict(met, plural=False)
    growth = re.findall(
        r"^\s*(met|NOT met): (\w+) p95, last 10 min / minutes 5-15: ([\d.]+)x", soak.text, re.M
    )  # none in a run under 25 minutes
    names = {"MongoDB": "MongoDB", "extract": "extrait", "lake": "lac", "rollups": "agrégats",
             "produce": "envoi"}  # fmt: skip
    f["soak_derives"] = (
        ", ".join(f"{names[n]} {ratio(float(x))}" for _, n, x in growth)
        or "non mesurée (essai de moins de 25 minutes)"
    )
    flat = all(w == "met" for w, _, _ in growth)
    f["soak_derive_verdict"] = (
        verdict("met" if flat else "missed", plural=False) if growth else "non mesuré"
    )
    (dashboard,) = soak.find(r"^dashboard refresh on the final data: max ([\d.]+) s over \d+")
    f["soak_tableau_de_bord"] = seconds(float(dashboard))
    word, target = soak.find(r"^\s*(met|NOT met): dashboard refresh [\d.]+ s \(<= ([\d.]+) s\)")
    f["soak_tableau_de_bord_cible"] = seconds(float(target), 0)
    f["soak_tableau_de_bord_verdict"] = verdict(word, plural=False)
    rss = soak.find_all(r"^  (.+?)\s+\d+ /\s+\d+ /\s+(\d+) MB\s+CPU")
    kinds = {
        "pipeline (producer, 3 runtimes)": "pipeline (producteur et 3 moteurs)",
        "extract observer": "observateur de l'extrait",
        "supervisor": "superviseur",
    }
    f["soak_rss"] = ", ".join(
        f"{kinds.get(k, k)} {fr_int(int(mb))} Mo" for k, mb in rss if k != "other"
    )

    dash = bench(root, "dashboard")
    sections = re.split(r"^(?=[\d,]+ sales,)", dash.text, flags=re.MULTILINE)[1:]
    if not sections:
        raise ReportError(f"{dash.path}: no '<N> sales,' section")
    largest = max(sections, key=lambda s: _number(s.split(" ", 1)[0]))
    big = Source(root, dash.path, largest)
    f["dash_ventes"] = fr_int(int(_number(big.find(r"^([\d,]+) sales,")[0])))
    for key, label in (("base", "baseline"), ("rafraichi", "refresh"), ("filtre", "filter change")):
        (p95,) = big.find(rf"{label} \(.*?\)\s+[\d.]+\s+([\d.]+)")
        f[f"dash_{key}_p95"] = seconds(float(p95), 3)
    target, word = big.find(r"target p95 <= ([\d.]+) s .*: (\w+)")
    f["dash_cible"], f["dash_verdict"] = seconds(float(target), 0), verdict(word, plural=False)
    f["dash_date"] = bench_date(dash)

    hs = bench(root, "hyper_sink")
    sizes = hs.find_all(r"^\s*([\d,]+) rows \(\d+ MB\): ours (\d+) ms")
    f["hyper_tailles"] = " / ".join(fr_int(int(_number(n))) for n, _ in sizes)
    f["hyper_ms"] = " / ".join(ms for _, ms in sizes)
    pub_ms, x, target, word = hs.find(
        r"^publication per batch: at most ([\d.]+) ms at any size, the previous copy ([\d,]+)x "
        r"that at .* \(target <= ([\d.]+) ms at every size\): (\w+)"
    )
    f["hyper_publication_ms"] = fr_float(float(pub_ms), 2)
    (growth,) = hs.find(r"^ours per batch, .*: ([\d.]+)x")
    f["hyper_croissance"] = ratio(float(growth))
    f["hyper_x"] = ratio(_number(x), 0)
    f["hyper_cible"] = f"{fr_float(float(target), 0)} ms"
    f["hyper_verdict"] = verdict(word, plural=False)
    f["hyper_date"] = bench_date(hs)

    cli = bench(root, "cli_startup")
    f["cli_help"] = seconds(float(cli.find(r"--help\s+([\d.]+) s")[0]), 3)
    f["cli_status"] = seconds(float(cli.find(r"sales_stream status\s+([\d.]+) s")[0]), 3)
    f["cli_down"] = seconds(float(cli.find(r"sales_stream down\s+([\d.]+) s")[0]), 3)
    f["cli_date"] = bench_date(cli)

    pr = bench(root, "producer_rate")
    rows = pr.find_all(r"^\s*([\d,]+)\s+[\d,.]+\s+(\d\.\d{3})$")
    f["prod_cibles"] = " / ".join(fr_int(int(_number(t))) for t, _ in rows)
    f["prod_ratios"] = " / ".join(fr_float(float(r), 3) for _, r in rows)
    raw_send = pr.find(r"^raw send loop.*?\s([\d,]+)\s+1\.00")[0]
    thread, thread_x = pr.find(r"^ProducerThread.*?\s([\d,]+)\s+([\d.]+)$")
    f["prod_brut"], f["prod_max"] = fr_int(int(_number(raw_send))), fr_int(int(_number(thread)))
    f["prod_x"] = ratio(float(thread_x))
    f["prod_date"] = bench_date(pr)
    (f["machine_coeurs"],) = ct.find(r"^\$ .*#.*?(\d+) cores")

    so = bench(root, "scale_out")
    f["echelle_date"] = bench_date(so)
    sent, partitions = so.find(r"; ([\d,]+) sales produced once on (\d+) partitions")
    f["echelle_ventes"], f["echelle_partitions"] = fr_int(int(_number(sent))), partitions
    rows = so.find_all(
        r"^(\d+) process(?:es)?\s+([\d,]+) sales/s \(median of (\d+)\)\s+([\d.]+)x 1 process"
        r"\s+\(range-assignor bound ([\d.]+)x\)"
    )
    counts = [fr_int(int(k)) for k, *_ in rows]
    f["echelle_processus"] = _listed(counts)
    f["echelle_debits"] = " / ".join(fr_int(int(_number(rate))) for _, rate, *_ in rows)
    f["echelle_tours"] = fr_int(int(rows[0][2]))
    f["echelle_x"] = _listed([f"{ratio(float(x))} à {k}" for k, _, _, x, _ in rows[1:]])
    f["echelle_bornes"] = _listed([f"{ratio(float(b))} à {k}" for k, *_, b in rows[1:]])

    dec = bench(root, "decode_speed")
    f["decode_debit"] = fr_int(int(_number(dec.find(r"^decode \(valid\):\s+([\d,]+)")[0])))
    f["decode_json"] = fr_int(int(_number(dec.find(r"^json.loads baseline:\s+([\d,]+)")[0])))
    f["decode_x"] = ratio(float(dec.find(r"ratio vs json.loads ([\d.]+)")[0]))
    f["decode_date"] = bench_date(dec)

    lake = bench(root, "lake_throughput")
    f["lac_debit"] = fr_int(int(_number(lake.find(r"^lake sink .*?:\s+([\d,]+) events/s")[0])))
    f["lac_production"] = fr_int(int(_number(lake.find(r"^produce .*?:\s+([\d,]+) events/s")[0])))
    f["lac_date"] = bench_date(lake)

    sql = bench(root, "sql_live")
    f["sql_ventes"] = fr_int(int(_number(sql.find(r"^([\d,]+) sales;")[0])))
    mongo_s, sql_s, sql_x = sql.find(r"^\s*all three\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)")
    f["sql_mongo_s"], f["sql_sql_s"] = seconds(float(mongo_s)), seconds(float(sql_s))
    f["sql_x"] = ratio(float(sql_x))
    f["sql_date"] = bench_date(sql)

    he = bench(root, "hyper_export")
    a_ours, a_base, a_x = he.find(r"^\(a\).*?ours ([\d.]+) s .*? ([\d.]+) s -> ([\d.]+)x")
    b_ours, b_base, b_x = he.find(r"^\(b\).*?ours ([\d.]+) s .*? ([\d.]+) s -> ([\d.]+)x")
    c_ms, c_share = he.find(r"^\(c\).*?median (\d+) ms .*?= ([\d.]+)%")
    f["export_hyper_s"], f["export_pantab_s"] = seconds(float(a_ours), 3), seconds(float(a_base), 3)
    f["export_hyper_x"] = ratio(float(a_x))
    f["export_total_s"], f["export_find_s"] = seconds(float(b_ours)), seconds(float(b_base))
    f["export_total_x"] = ratio(float(b_x))
    f["export_maj_ms"], f["export_maj_part"] = c_ms, f"{fr_float(float(c_share), 1)} %"
    f["export_lignes"] = fr_int(int(_number(he.find(r"best of \d+ runs; ([\d,]+) documents")[0])))
    f["export_date"] = bench_date(he)
    return f


def notebook_figures(root: Path) -> dict[str, str]:
    """The figures of the run whose outputs the committed notebooks carry."""
    results = {name: notebook_results(root, name) for name in NOTEBOOKS}

    def count(notebook: str, key: str) -> str:
        return fr_int(int(str(_result(results, notebook, key))))

    f: dict[str, str] = {
        "nb_ventes": count("03_consumer.ipynb", "total_sales"),
        "nb_ca": euros(float(str(_result(results, "03_consumer.ipynb", "total_revenue")))),
        "nb_direct": count("02_producer.ipynb", "live_sent"),
        "nb_direct_invalides": count("02_producer.ipynb", "live_bad"),
        "nb_mongo": count("04_export_tableau.ipynb", "mongo_sales"),
        "nb_extrait": count("04_export_tableau.ipynb", "extract_rows"),
        "nb_lac": count("05_data_lake.ipynb", "lake_rows"),
        "nb_lettres_mortes": count("05_data_lake.ipynb", "lake_dead_letters"),
        "nb_partitions": count("01_setup.ipynb", "partitions"),
    }

    def agree(notebook: str, key: str) -> str:
        return "concordent" if _result(results, notebook, key) is True else "ne concordent pas"

    f["nb_sql_concorde"] = agree("04_export_tableau.ipynb", "sql_matches_mongo")
    f["nb_lac_concorde"] = agree("05_data_lake.ipynb", "revenue_matches_mongo")
    kept = _result(results, "05_data_lake.ipynb", "rows_kept_by_compaction") is True
    f["nb_compaction"] = "garde toutes ses lignes" if kept else "a changé le nombre de lignes"
    return f


def tableau_figures(root: Path) -> dict[str, str]:
    """The snapshot workbook's figures, from ``tableau/README.md`` (checked by test_snapshot)."""
    readme = Source(root, "tableau/README.md")
    (count,) = readme.find(r"\*\*Extract\*\*: (\d+) ventes")
    days, start, end = readme.find(
        r"(\d+) days from (\d{4}-\d{2}-\d{2}) [\d:]+ to\s+(\d{4}-\d{2}-\d{2})"
    )
    return {
        "instantane_ventes": fr_int(int(count)),
        "instantane_jours": fr_int(int(days)),
        "instantane_debut": fr_date(start),
        "instantane_fin": fr_date(end),
    }


def capture_figures(root: Path) -> dict[str, str]:
    """What the pictures say: captions from ``docs/img/captures.json``, Tableau screens."""
    f: dict[str, str] = {}
    captured: dict[str, str] = {}
    path = root / "docs" / "img" / "captures.json"
    if path.exists():
        try:
            captured = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ReportError(f"docs/img/captures.json: {exc}") from None
    for image in (
        "dashboard_sans_filtre",
        "dashboard_filtre_periode",
        "dashboard_filtre_region",
        "dashboard_filtre_produit",
        "temps_reel_1",
        "temps_reel_2",
        "temps_reel_3",
    ):
        line = captured.get(f"{image}.png")
        f[f"bandeau_{image}"] = f" Bandeau affiché : « {line.strip()} »." if line else ""

    (step,) = Source(root, "docs/screenshots.py").find(r"^STEP_S = (\d+)")
    f["capture_intervalle"] = fr_int(int(step))

    present = [s for s in TABLEAU_SCREENS if (root / "docs" / "img" / s.file).exists()]
    missing = [s for s in TABLEAU_SCREENS if s not in present]
    lines = [f"![{s.what}](docs/img/{s.file})\n\n*Tableau : {s.what}.*\n" for s in present]
    if missing:
        lines.append(
            "À fournir par l'étudiant, sur un poste équipé de Tableau (marche à suivre dans "
            "[`tableau/README.md`](tableau/README.md#ouvrir-capturer-partager)) :\n"
        )
        lines += [f"* `docs/img/{s.file}` : {s.what} ;" for s in missing]
        lines[-1] = lines[-1].removesuffix(" ;") + "."
    f["captures_tableau"] = "\n".join(lines).rstrip("\n")
    f["captures_tableau_faites"] = fr_int(len(present))
    f["captures_tableau_total"] = fr_int(len(TABLEAU_SCREENS))
    return f


SOURCES: tuple[Callable[[Path], dict[str, str]], ...] = (
    bench_figures,
    notebook_figures,
    tableau_figures,
    capture_figures,
)


def figures(root: Path = REPO) -> dict[str, str]:
    """Every placeholder's value, formatted in French."""
    merged: dict[str, str] = {}
    for source in SOURCES:
        merged.update(source(root))
    return merged


# --------------------------------------------------------------------------- rendering


def render(template: str, values: dict[str, str], *, name: str = "template") -> str:
    """Fill ``{{ name }}`` placeholders; an unknown one is an error."""
    unknown = sorted({m.group(1) for m in PLACEHOLDER.finditer(template)} - values.keys())
    if unknown:
        raise ReportError(f"{name}: unknown placeholders {', '.join(unknown)}")
    notice = (
        f"<!-- Généré par « python -m sales_stream.report » depuis {name} : ne pas modifier "
        "à la main (les chiffres sont relus dans leurs fichiers sources). -->\n"
    )
    return notice + PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def rendered(root: Path = REPO) -> dict[str, str]:
    """Every document of `DOCUMENTS`, rendered from its template."""
    values = figures(root)
    out = {}
    for document, template in DOCUMENTS.items():
        text = Source(root, template).text
        out[document] = render(text, values, name=template)
    return out


def body_words(markdown: str) -> int:
    """Words of a report's body: everything but the notice, code blocks and image addresses.

    Counted like a word processor: whitespace-separated tokens that hold a letter or a digit,
    in the prose, titles, tables and captions.
    """
    text = re.sub(r"<!--.*?-->", " ", markdown, flags=re.DOTALL)
    text = re.sub(r"^```.*?^```", " ", text, flags=re.DOTALL | re.MULTILINE)
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return sum(1 for token in text.split() if re.search(r"\w", token))


def image_links(markdown: str) -> list[str]:
    """The local images a document links (``![…](path)``)."""
    return [m.group(1) for m in re.finditer(r"!\[[^\]]*\]\(([^)\s]+)\)", markdown)]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sales_stream.report [--check]``."""
    parser = argparse.ArgumentParser(description="Render compte_rendu.md and its annex.")
    parser.add_argument("--check", action="store_true", help="only say whether they are current")
    parser.add_argument("--root", type=Path, default=REPO, help="repository (default: this one)")
    args = parser.parse_args(argv)
    try:
        documents = rendered(args.root)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = []
    for document, text in documents.items():
        path = args.root / document
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(document)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    words = body_words(documents["compte_rendu.md"])
    verb = "stale" if args.check else "written"
    print(f"{verb}: {', '.join(stale) or 'none'}; body of compte_rendu.md: {words} words")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
