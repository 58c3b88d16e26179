"""The import layers of setup.cfg's [importlinter] contracts hold (lint-imports, as CI runs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lint_imports() -> list[str]:
    tool = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")
    assert tool, "lint-imports is missing: pip install -e '.[test]'"
    return [tool, "--no-cache"]


def test_every_import_runs_down_the_layers():
    result = subprocess.run(_lint_imports(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    # The contract bites: a copy of the vocabulary that imports the search driver is refused.
    for package in ("nas", "search_spaces", "spinenet", "visualize"):
        shutil.copytree(os.path.join(ROOT, package), tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, "setup.cfg"), tmp_path / "setup.cfg")
    genome = tmp_path / "search_spaces" / "features.py"
    genome.write_text(genome.read_text() + "\n\ndef _late():\n    from nas.search.driver import run_search\n")
    result = subprocess.run(_lint_imports(), cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode != 0
    assert "search_spaces.features is not allowed to import nas.search" in result.stdout, result.stdout[-3000:]


def test_what_the_reports_import_loads_no_search_driver():
    # import-linter counts the import lines, not what importing runs: a package's __init__ that
    # imported its driver would load it for a report that reads one harmless module of that package.
    import configparser

    import grimp

    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    contract = config["importlinter:contract:presentation"]
    forbidden = contract["forbidden_modules"].split()
    graph = grimp.build_graph("nas", "search_spaces", "spinenet", "visualize")
    imported = sorted({target for source in graph.find_descendants("visualize") | {"visualize"}
                       for target in graph.find_modules_directly_imported_by(source)
                       if target.split(".")[0] in ("nas", "search_spaces", "spinenet")})
    assert "nas.search.proxy_check" in imported  # the report's in-search proxy check, read lazily
    code = ("import importlib, sys\n"
            f"for name in {imported!r}:\n"
            "    importlib.import_module(name)\n"
            f"print(sorted(set(sys.modules) & set({forbidden!r})))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]", f"importing what visualize imports loads {result.stdout.strip()}"
