"""The layers, checked from the source: interfaces → services → selectors → models.

Every module under ``biobank/`` (migrations aside) is parsed, not imported, and each import
that runs against the direction fails the test naming its file and line. Imports inside
functions count as well: a lazy import is the same dependency, only hidden.
"""

from __future__ import annotations

import ast
from pathlib import Path

import biobank

ROOT = Path(biobank.__file__).resolve().parent

# What people (or other programs) talk to: they may import anything below them.
INTERFACES = (
    "biobank.api",
    "biobank.admin",
    "biobank.admin_site",
    "biobank.scanning",
    "biobank.templatetags",
    "biobank.management",
    "biobank.middleware",
)
SERVICES = ("biobank.services",)
SELECTORS = ("biobank.selectors",)
DOMAIN = ("biobank.models", "biobank.visibility")
# Pure libraries: no database, usable from every layer (services/printing renders labels).
PURE = (
    "biobank.errors",
    "biobank.identifiers",
    "biobank.scan_input",
    "biobank.rack_csv",
    "biobank.logger_csv",
    "biobank.moments",
    "biobank.labels",
    "biobank.terms",
)

# Layer -> what it must not import.
FORBIDDEN: dict[tuple[str, ...], tuple[str, ...]] = {
    SERVICES: INTERFACES,
    SELECTORS: INTERFACES + SERVICES,
    DOMAIN: INTERFACES + SERVICES + SELECTORS,
    PURE: INTERFACES + SERVICES + SELECTORS + DOMAIN,
}


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str, root: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of the file, relative ones resolved."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            for alias in node.names:
                # ``from biobank.services import doses`` imports the module services.doses.
                sub = root.parent.joinpath(*f"{name}.{alias.name}".split("."))
                is_module = sub.with_suffix(".py").is_file() or sub.is_dir()
                found.append((node.lineno, f"{name}.{alias.name}" if is_module else name))
    return sorted(set(found))


def layer_violations(root: Path = ROOT) -> list[str]:
    """``file:line: importer imports imported`` for each import against the layers."""
    out = []
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.relative_to(root).parts:
            continue
        module = _module_name(path, root)
        for layer, forbidden in FORBIDDEN.items():
            if not _within(module, layer):
                continue
            for line, imported in _imports(path, module, root):
                if _within(imported, forbidden):
                    where = path.relative_to(root.parent).as_posix()
                    out.append(f"{where}:{line}: {module} imports {imported}")
    return out


def test_no_import_runs_against_the_layers() -> None:
    violations = layer_violations()
    assert violations == [], "Imports against the layers:\n" + "\n".join(violations)


def test_every_layer_is_read() -> None:
    # A wrong root or prefix would make the check above pass on nothing.
    modules = [_module_name(p, ROOT) for p in ROOT.rglob("*.py")]
    for layer in FORBIDDEN:
        for prefix in layer:
            assert any(_within(m, (prefix,)) for m in modules), prefix


def test_the_check_names_file_and_line_of_each_wrong_import(tmp_path: Path) -> None:
    root = tmp_path / "biobank"
    files = {
        "__init__.py": "",
        "services/__init__.py": "",
        "services/doses.py": (
            "from biobank.models import Dose\n"
            "from biobank.selectors.scan import scan_resolve\n"
            "\n"
            "def f():\n"
            "    from biobank.scanning.views import DosePage\n"
        ),
        "selectors/__init__.py": "",
        "services/errors.py": "",
        "selectors/scan.py": "from ..services import errors\nfrom biobank import services\n",
        "models/__init__.py": "import biobank.selectors.storage\n",
        "labels/content.py": "from biobank.models import Dose\nfrom . import render\n",
        "api/views.py": "from biobank.services import doses\n",
        "migrations/0001_initial.py": "from biobank.services import seeding\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)

    assert layer_violations(root) == [
        "biobank/labels/content.py:1: biobank.labels.content imports biobank.models",
        "biobank/models/__init__.py:1: biobank.models imports biobank.selectors.storage",
        "biobank/selectors/scan.py:1: biobank.selectors.scan imports biobank.services.errors",
        "biobank/selectors/scan.py:2: biobank.selectors.scan imports biobank.services",
        "biobank/services/doses.py:5: biobank.services.doses imports biobank.scanning.views",
    ]
