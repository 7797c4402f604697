"""The documentation site (mkdocs.yml, docs/): it builds in strict mode, a broken link fails the
build, and every public name the API reference documents has a docstring.

`make docs` builds the same site into site/. The `test` extra installs mkdocs and its plugins, so
these tests run wherever `make test` does; they skip only where mkdocs is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import spotlake

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"

#: The public packages the API reference must cover (the reference may cover more).
REQUIRED_REFERENCE = {
    "spotlake",
    "spotlake.storage",
    "spotlake.pipeline",
    "spotlake.scoring.plan",
    "spotlake.compute",
    "spotlake.compute.offers",
    "spotlake.compute.policy",
    "spotlake.compute.launch",
    "spotlake.compute.simulate",
}
#: Public packages that need a reference page once they exist.
REFERENCE_WHEN_PRESENT = {"spotlake.analysis"}

_DIRECTIVE = re.compile(r"^:::\s*(?P<module>[\w.]+)\s*$", re.MULTILINE)


def _require_mkdocs() -> None:
    try:
        importlib.import_module("mkdocs")
        importlib.import_module("mkdocstrings")
        importlib.import_module("mkdocstrings_handlers.python")
        importlib.import_module("material")
    except ImportError as exc:
        pytest.skip(f"mkdocs or a plugin is not installed ({exc.name}): install the 'test' or 'docs' extra")


def _build(config_dir: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about MkDocs 2.0
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=config_dir,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _reference_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for page in sorted(REFERENCE.glob("*.md")):
        for match in _DIRECTIVE.finditer(page.read_text(encoding="utf-8")):
            found[match["module"]] = page
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require_mkdocs()
    out = tmp_path_factory.mktemp("site")
    result = _build(ROOT, out)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return out


def test_the_site_builds_strictly_with_every_page_and_the_reference(site: Path) -> None:
    for page in ("index", "concepts", "storage", "analysis", "allocator", "operations", "collectors"):
        path = site / ("index.html" if page == "index" else f"{page}/index.html")
        assert path.is_file(), f"{page} missing from the built site"
    pipeline = (site / "reference" / "pipeline" / "index.html").read_text(encoding="utf-8")
    assert 'id="spotlake.pipeline.run_cycle"' in pipeline  # rendered from the docstrings
    top = (site / "reference" / "spotlake" / "index.html").read_text(encoding="utf-8")
    exported = [n for n in spotlake.__all__ if callable(getattr(spotlake, n))]  # classes and functions
    absent = [n for n in exported if f'id="spotlake.{n}"' not in top]
    assert not absent, f"lazy top-level exports missing from reference/spotlake.md: {absent}"
    # Sphinx roles in docstrings are rendered as code (docs/_griffe_roles.py), not as raw roles.
    assert ":class:" not in top
    assert ":func:" not in pipeline


def test_a_broken_link_or_anchor_fails_the_build(tmp_path: Path) -> None:
    _require_mkdocs()
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    # The reference pages only cost time here (rendering docstrings); links are what is tested.
    for page in (tmp_path / "docs" / "reference").glob("*.md"):
        page.write_text(_DIRECTIVE.sub("", page.read_text(encoding="utf-8")), encoding="utf-8")
    concepts = tmp_path / "docs" / "concepts.md"
    assert _build(tmp_path, tmp_path / "ok").returncode == 0  # the copy builds before the break
    broken = "\nSee [a page](no-such-page.md) and [a section](operations.md#no-such-section).\n"
    concepts.write_text(concepts.read_text(encoding="utf-8") + broken, encoding="utf-8")

    result = _build(tmp_path, tmp_path / "broken")

    assert result.returncode != 0
    log = result.stdout + result.stderr
    assert "no-such-page.md" in log  # strict mode reports every broken link before it aborts
    assert "no-such-section" in log


def test_the_reference_covers_the_public_packages() -> None:
    documented = set(_reference_modules())
    missing = sorted(REQUIRED_REFERENCE - documented)
    assert not missing, f"no reference page for {missing}"
    for name in sorted(REFERENCE_WHEN_PRESENT):
        if importlib.util.find_spec(name) is not None:
            assert name in documented, (
                f"{name} exists: add a docs/reference/ page with '::: {name}' and put it in mkdocs.yml's nav"
            )


def _own_doc(obj: object) -> str:
    # A class's own docstring: inspect.getdoc would inherit one from a base (Enum, Protocol ...).
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    return (doc or "").strip()


def _public_names(module: ModuleType) -> list[str]:
    names = set(getattr(module, "__all__", ()))
    names |= set(getattr(module, "_EXPORTS", {}))  # spotlake's lazy exports
    return sorted(names)


def test_every_public_class_and_function_has_a_docstring() -> None:
    missing = []
    for module_name in sorted(set(_reference_modules()) | REQUIRED_REFERENCE):
        module = importlib.import_module(module_name)
        assert _own_doc(module), f"module {module_name} has no docstring"
        names = _public_names(module)
        assert names, f"{module_name} has no __all__: the reference would not know its public names"
        for name in names:
            obj = getattr(module, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and not _own_doc(obj):
                missing.append(f"{module_name}.{name} ({obj.__module__}.{obj.__qualname__})")
    assert not missing, "public names without a docstring:\n" + "\n".join(missing)


def test_the_docstring_check_sees_a_missing_docstring() -> None:
    class Undocumented:
        pass

    class Documented:
        """Has one."""

    def bare() -> None:
        pass

    assert _own_doc(Undocumented) == ""
    assert _own_doc(bare) == ""
    assert _own_doc(Documented) == "Has one."
