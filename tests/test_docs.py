"""The documentation site builds with warnings as errors.

A broken link or anchor, a page left out of the nav, or a docstring griffe
cannot parse fails this test, so CI (``make test``) keeps ``docs/`` true to
the code. The tools are in the ``test`` extra (``pip install -e '.[test]'``).
The build takes a few seconds: the API reference is read from the source, not
imported (only the CLI page builds the argument parser).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_strict(tmp_path):
    # The plugins print a notice about MkDocs' future on stderr; it is not a build warning.
    env = {**os.environ, "DISABLE_MKDOCS_2_WARNING": "true"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "cli" / "index.html").exists()
    assert (tmp_path / "site" / "reference" / "spinenet" / "index.html").exists()


def test_readme_links_exist():
    # README.md is outside docs/, so the strict build does not check it; its links lead into docs/.
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = {m.split("#")[0] for m in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in m}
    assert targets, "README.md links to no page"
    missing = sorted(t for t in targets if t and not (ROOT / t).exists())
    assert not missing, f"README.md links to missing files: {missing}"
