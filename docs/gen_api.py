"""Generate the API reference and the CLI reference while MkDocs builds the site.

Run by the ``gen-files`` plugin (``mkdocs.yml``); nothing it writes is kept in
``docs/``. Every public module of the four packages gets one page under
``reference/``, rendered by mkdocstrings from its docstrings, and
``reference/SUMMARY.md`` lists them for ``literate-nav``, so a module added,
moved or removed needs no edit here or in ``mkdocs.yml``. ``cli.md`` is the
``--help`` of every ``spinenas`` subcommand, taken from the real parser.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nas", "search_spaces", "spinenet", "visualize")
HELP_WIDTH = 100

if str(ROOT) not in sys.path:  # `mkdocs serve` from the console script has no repo root on sys.path
    sys.path.insert(0, str(ROOT))


def module_names(root: Path = ROOT) -> list[tuple[str, ...]]:
    """Dotted names (as tuples) of every public module and package, packages before their modules."""
    names = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if any(part.startswith("_") for part in parts):  # private modules, and __main__
                continue
            if not all((root.joinpath(*parts[:n]) / "__init__.py").exists() for n in range(1, len(parts))):
                continue  # a folder without __init__.py is no package: setuptools' find: would not ship it
            names.append(parts)
    return sorted(names)


def write_api_reference() -> None:
    nav = mkdocs_gen_files.Nav()
    for parts in module_names():
        is_package = (ROOT.joinpath(*parts) / "__init__.py").exists()
        page = Path(*parts, "index.md") if is_package else Path(*parts).with_suffix(".md")
        nav[parts] = page.as_posix()
        with mkdocs_gen_files.open(Path("reference", page), "w") as out:
            out.write(f"# `{'.'.join(parts)}`\n\n::: {'.'.join(parts)}\n")
        source = ROOT.joinpath(*parts) / "__init__.py" if is_package else ROOT.joinpath(*parts).with_suffix(".py")
        mkdocs_gen_files.set_edit_path(Path("reference", page), source.relative_to(ROOT))
    with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as out:
        out.writelines(nav.build_literate_nav())


def _subcommands(parser: argparse.ArgumentParser):
    """(name, parser) of each subcommand, depth first, aliases once."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:
                    continue
                seen.add(id(sub))
                yield name, sub
                for sub_name, subsub in _subcommands(sub):
                    yield f"{name} {sub_name}", subsub


def write_cli_reference() -> None:
    from nas.cli import build_parser

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(HELP_WIDTH)  # argparse wraps at the terminal width: fix it for the page
    try:
        parser = build_parser()
        sections = [("spinenas", parser)] + [(f"spinenas {name}", sub) for name, sub in _subcommands(parser)]
        helps = [(title, sub.format_help()) for title, sub in sections]
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    with mkdocs_gen_files.open("cli.md", "w") as out:
        out.write(
            "# Command-line reference\n\n"
            "The `--help` of every `spinenas` subcommand, taken from the parser when the site is built.\n"
            "Every command accepts `--verbose` (TensorFlow's log lines and every Python warning).\n\n"
            "Exit status: 0 done; 1 a `search` or `worker` whose trials kept failing (five in a row) or\n"
            "whose constraints no sampled genome met, or a `data check` that found data it cannot train on;\n"
            "2 bad input or configuration, printed as one `spinenas: error: ...` line; 130 interrupted\n"
            "(Ctrl-C or SIGTERM).\n\n"
        )
        for title, text in helps:
            out.write(f"## `{title}`\n\n```text\n{text.rstrip()}\n```\n\n")
    mkdocs_gen_files.set_edit_path("cli.md", "nas/cli.py")


write_api_reference()
write_cli_reference()
