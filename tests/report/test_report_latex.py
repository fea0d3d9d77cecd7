"""critical.report: the LaTeX tables are the Markdown tables (issue 28, item 3): the same
numbers, table by table and cell by cell; at most 10 columns each, the split and the energy
method in every caption; compiled with a TeX engine where one exists."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from report_fixtures import make_fake_sweep

from critical.report import load_runs, summarize, to_latex, to_markdown

_NUM = re.compile(r"\d+(?:\.\d+)?")


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    root = tmp_path_factory.mktemp("latex")
    return summarize(load_runs(make_fake_sweep(root, robustness_data="test")))


def _md_tables(md: str) -> list[list[list[str]]]:
    """Every Markdown table: rows of cells (header first, the rule left out)."""
    tables, cur = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            if not re.fullmatch(r"\|(:?--:?\|)+", line):
                cur.append([c.strip() for c in line.strip("|").split(" | ")])
        elif cur:
            tables.append(cur)
            cur = []
    return tables + ([cur] if cur else [])


def _tex_tables(tex: str) -> list[tuple[str, str, list[list[str]]]]:
    """Every tabular: (column spec, caption, rows of cells, header first)."""
    out = []
    for block in re.findall(r"\\begin\{table\*\}.*?\\end\{table\*\}", tex, re.S):
        caption = re.search(r"\\caption\{(.*)\}\n", block).group(1)
        spec = re.search(r"\\begin\{tabular\}\{([lr]+)\}", block).group(1)
        body = block.split("\\toprule\n")[1].split("\\bottomrule")[0]
        rows = [
            [c.strip() for c in ln.removesuffix(" \\\\").split(" & ")]
            for ln in body.splitlines()
            if ln.endswith("\\\\")
        ]
        out.append((spec, caption, rows))
    return out


def _numbers(cells: list[str]) -> list[str]:
    return [n for c in cells for n in _NUM.findall(c.replace("CO$_2$", "CO").replace("CO2", "CO"))]


def test_latex_has_the_markdown_numbers(summary):
    md_tables = _md_tables(to_markdown(summary))
    tex_tables = _tex_tables(to_latex(summary))
    assert len(tex_tables) == len(md_tables) >= 6  # accuracy, robustness, cost, savings, ...
    for md_rows, (_spec, _, tex_rows) in zip(md_tables, tex_tables):
        assert len(md_rows) == len(tex_rows)
        for md_row, tex_row in zip(md_rows, tex_rows):
            assert _numbers(md_row) == _numbers(tex_row), (md_row, tex_row)


def test_latex_structure(summary):
    tex = to_latex(summary)
    assert tex.count("\\begin{table*}") == tex.count("\\end{table*}") >= 6
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}")
    for spec, caption, rows in _tex_tables(tex):
        assert len(spec) <= 10, spec  # fits a page
        for row in rows:
            assert len(row) == len(spec), (spec, row)
        assert "test split" in caption or "Time:" in caption or "savings" in caption
        if "energy" in caption.lower():
            assert "estimated" in caption  # never "measured" for codecarbon's estimates
    captions = [c for _, c, _ in _tex_tables(tex)]
    assert any("oracle" in c.lower() for c in captions)
    header_cells = [cell for _, _, rows in _tex_tables(tex) for cell in rows[0]]
    for needed in ("Oracle saving (\\%)", "Share of oracle saving (\\%)", "Regret vs best fixed"):
        assert any(needed in h for h in header_cells), needed
    assert any("$\\pm$" in c for _, _, rows in _tex_tables(tex) for r in rows for c in r)


@pytest.mark.skipif(
    not (shutil.which("pdflatex") or shutil.which("lualatex")), reason="no TeX engine here"
)
def test_latex_compiles(summary, tmp_path):
    engine = shutil.which("pdflatex") or shutil.which("lualatex")
    doc = (
        "\\documentclass{article}\n\\usepackage[utf8]{inputenc}\n\\usepackage{booktabs}\n"
        "\\usepackage[margin=2cm]{geometry}\n\\begin{document}\n"
        + to_latex(summary)
        + "\n\\end{document}\n"
    )
    (tmp_path / "t.tex").write_text(doc, encoding="utf-8")
    proc = subprocess.run(
        [engine, "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Overfull \\hbox" not in proc.stdout or "table" not in proc.stdout
