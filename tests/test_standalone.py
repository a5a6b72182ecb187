"""The repository stands alone: nothing in it reads or cites material outside it, and it has one version."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import noisesim
import pytest

REPO = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache"}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".cfg", ".json", ".html", ".sh", ""}
# Paths and section marks of the development-only design notes that live beside the repository.
OUTSIDE = re.compile(r"\.\./shared|shared/(DESIGN|STYLE|reference)|DESIGN\.md|DESIGN §")


def _text_files():
    for path in REPO.rglob("*"):
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in path.relative_to(REPO).parts):
            continue
        if path.is_file() and path.suffix in TEXT_SUFFIXES and path.stat().st_size < 2_000_000:
            yield path


def test_no_reference_outside_the_repository():
    hits = []
    for path in _text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line) and path.name != Path(__file__).name:
                hits.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()[:100]}")
    assert not hits, "references to material outside the repository:\n" + "\n".join(hits)


def test_docs_the_code_cites_exist():
    cited = set()
    for path in _text_files():
        if path.suffix in {".py", ".md", ".toml"}:
            cited |= set(re.findall(r"docs/[A-Za-z_]+\.md", path.read_text(encoding="utf-8", errors="replace")))
    missing = sorted(c for c in cited if not (REPO / c).is_file())
    assert cited and not missing, f"cited but missing: {missing}"


def test_one_version_string():
    assert importlib.metadata.version("noisesim") == noisesim.__version__
    assert "version =" not in (REPO / "pyproject.toml").read_text().split("[project.optional-dependencies]")[0]


def test_card_sources_are_in_the_repository():
    sources = REPO / "data_cards" / "sources"
    for name in ("eld_released_camera_params.json", "pmn_released_camera_params.json", "README.md",
                 "build_eld_cards.py"):
        assert (sources / name).is_file(), name


def test_every_package_folder_is_installed():
    """Each folder with an ``__init__.py`` under the three package roots is listed in pyproject's ``packages``.

    The list is explicit (the roots are remapped into the ``noisesim`` namespace), so a new subpackage that
    is not added to it is silently left out of the wheel: ``noisesim.importers`` once was.
    """
    tomllib = pytest.importorskip("tomllib")
    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, roots = set(setup["packages"]), setup["package-dir"]
    found = set()
    for name, folder in roots.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((name, *rel)))
    assert found - listed == set(), f"package folders missing from pyproject's packages: {sorted(found - listed)}"
