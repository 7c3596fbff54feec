"""The report is a rendering: every figure in it is read back from the file that produced it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from sales_stream import report

REPO = Path(__file__).resolve().parents[1]

#: Numbers a template may spell out: they are names or definitions, not measurements.
ALLOWED_NUMBERS = re.compile(
    r"^#+ \d+(\.\d+)?\.? "  # section numbers
    r"|§ \d+(\.\d+)?"
    r"|Python 3\.11|[Ee]xercice 1|SHA-256|\bS3\b|13 (régions|noms)|95 %|\bp95\b|x86_64"
    r"|notebooks? 0\d|\(0\d\)|\b0\d_\w+"
    r"|^\d\. |\(\d\)|WSL2",  # enumerations: 1. (1)
    flags=re.MULTILINE,
)


def prose(markdown: str) -> str:
    """``markdown`` without placeholders, code, addresses and the mermaid diagram."""
    text = report.PLACEHOLDER.sub(" ", markdown)
    text = re.sub(r"^```.*?^```", " ", text, flags=re.DOTALL | re.MULTILINE)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return ALLOWED_NUMBERS.sub(" ", text)


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return report.rendered(REPO)


@pytest.mark.parametrize("document", sorted(report.DOCUMENTS))
def test_the_committed_document_is_the_rendering_of_its_sources(rendered, document):
    committed = (REPO / document).read_text(encoding="utf-8")
    assert committed == rendered[document], (
        f"{document} is stale or was edited by hand: run python -m sales_stream.report"
    )


def test_the_body_is_about_three_thousand_words(rendered):
    words = report.body_words(rendered["compte_rendu.md"])
    assert 2500 <= words <= report.MAX_BODY_WORDS, words


@pytest.mark.parametrize("document", sorted(report.DOCUMENTS))
def test_every_linked_image_exists(rendered, document):
    base = (REPO / document).parent
    links = report.image_links(rendered[document])
    assert document != "compte_rendu.md" or links
    for link in links:
        assert (base / link).is_file(), link


@pytest.mark.parametrize("template", sorted(report.DOCUMENTS.values()))
def test_no_figure_is_typed_by_hand_in_a_template(template):
    text = prose((REPO / template).read_text(encoding="utf-8"))
    typed = re.findall(r".{0,30}\d.{0,30}", text)
    assert not typed, f"numbers outside a placeholder: {typed}"


def test_editing_a_source_figure_changes_the_report(tmp_path):
    """A re-run benchmark (or notebook) shows in the rendering: nothing is cached or typed."""
    for name in (*report.DOCUMENTS.values(), *report.NOTEBOOKS, "tableau/README.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "docs" / "bench", tmp_path / "docs" / "bench")
    shutil.copy(REPO / "docs" / "screenshots.py", tmp_path / "docs" / "screenshots.py")
    before = report.rendered(tmp_path)["compte_rendu.md"]
    bench = tmp_path / "docs" / "bench" / "consumer_throughput.txt"
    text = bench.read_text(encoding="utf-8")
    edited = re.sub(r"^(ours / raw\s*=\s*)[\d.]+", r"\g<1>0.42", text, count=1, flags=re.M)
    bench.write_text(edited, encoding="utf-8")
    after = report.rendered(tmp_path)["compte_rendu.md"]
    assert "0,42×" in after
    assert "0,42×" not in before
    assert "non tenus" in after  # the verdict follows the figure
    assert after != before


def test_a_missing_figure_is_an_error_naming_its_file(tmp_path):
    shutil.copytree(REPO / "docs" / "bench", tmp_path / "docs" / "bench")
    (tmp_path / "docs" / "bench" / "soak.txt").write_text("$ bench/soak.py\n", encoding="utf-8")
    with pytest.raises(report.ReportError, match=r"docs/bench/soak\.txt"):
        report.bench_figures(tmp_path)


def test_a_tableau_screen_is_linked_once_captured_and_listed_until_then(tmp_path):
    (tmp_path / "docs" / "img").mkdir(parents=True)
    shutil.copy(REPO / "docs" / "screenshots.py", tmp_path / "docs" / "screenshots.py")
    first, *rest = report.TABLEAU_SCREENS
    (tmp_path / "docs" / "img" / first.file).write_bytes(b"png")
    block = report.capture_figures(tmp_path)["captures_tableau"]
    assert f"](docs/img/{first.file})" in block
    for screen in rest:
        assert f"`docs/img/{screen.file}`" in block
        assert f"](docs/img/{screen.file})" not in block


def test_the_tableau_readme_names_every_screen_the_report_expects():
    readme = (REPO / "tableau" / "README.md").read_text(encoding="utf-8")
    assert "## Ouvrir, capturer, partager" in readme
    for screen in report.TABLEAU_SCREENS:
        assert f"docs/img/{screen.file}" in readme, screen.file


def test_plain_french_without_unexplained_jargon(rendered):
    text = rendered["compte_rendu.md"].lower()
    for word in ("barrière", "puits", "rollup", "incarnation", "la veille"):
        assert word not in text, word


def test_french_formatting():
    assert report.ratio(0.84) == "0,84×"
    assert report.seconds(0.36) == "0,36 s"
    assert report.euros(3525463.8) == "3\u202f525\u202f463,80 €"
    assert report.fr_date("2026-12-01") == "1er décembre 2026"
    assert report.verdict("met") == "tenus"
    assert report.verdict("missed", plural=False) == "non tenu"
