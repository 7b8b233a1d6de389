"""The package's layer rule, read from the imports of every module (ast; nothing is imported).

Layers, bottom up: crypto <- backends <- schemes <- learning <- bench, deploy <- cli. A module may import
its own layer and the layers below it, never one above; bench and deploy are siblings and import neither
each other. ``dphe_bench.errors`` and ``dphe_bench.files`` sit under every layer and import only each
other. The package root (``dphe_bench/__init__.py``, the public API) re-exports crypto, backends and
schemes names, so importing it counts as importing the schemes layer.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Each layer's rank; two layers of the same rank are siblings and may not import each other.
RANKS = {"common": 0, "crypto": 1, "backends": 2, "schemes": 3, "learning": 4, "bench": 5, "deploy": 5, "cli": 6}
ROOT_API_LAYER = "schemes"


def package_sources(root: Path) -> dict[str, str]:
    """Module name -> source text for every module of the package under ``root`` (backends/ mapped in)."""
    sources = {}
    for folder, package in ((root / "dphe_bench", "dphe_bench"), (root / "backends", "dphe_bench.backends")):
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            sources[".".join([package, *parts])] = path.read_text()
    return sources


def layer_of(module: str) -> str:
    """The layer a module of the package belongs to (``module`` is a dotted name under dphe_bench)."""
    parts = module.split(".")
    if len(parts) == 1:
        return ROOT_API_LAYER
    head = parts[1]
    if head in ("errors", "files"):
        return "common"
    if head not in RANKS:
        raise AssertionError(f"{module} is in no layer: put it in a layer's folder or add the layer here")
    return head


def imported_modules(module: str, source: str, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) for every dphe_bench module that ``source`` imports, wherever the import statement is.

    ``from package import name`` counts as importing ``package.name`` when that is a module of the package;
    ``importlib.import_module("...")`` and ``__import__("...")`` with a literal name count as imports too.
    """
    is_package = f"{module}.__init__" in known
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((node.lineno, candidate if candidate in known else base))
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            name = node.args[0]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                found.append((node.lineno, name.value))
    return [(line, name) for line, name in found if name == "dphe_bench" or name.startswith("dphe_bench.")]


def _is_dynamic_import(function: ast.expr) -> bool:
    """``importlib.import_module``, a bare ``import_module`` or ``__import__``."""
    if isinstance(function, ast.Attribute):
        return function.attr == "import_module"
    return isinstance(function, ast.Name) and function.id in ("import_module", "__import__")


def layer_violations(sources: dict[str, str]) -> list[str]:
    """One line per import that breaks the layer rule, as ``importer:line imports target (layer -> layer)``."""
    known = set(sources)
    packages = {name + ".__init__" for name in sources if any(other.startswith(name + ".") for other in sources)}
    violations = []
    for module, source in sorted(sources.items()):
        source_layer = layer_of(module)
        for line, target in imported_modules(module, source, known | packages):
            target_layer = layer_of(target)
            if target_layer == source_layer:
                continue
            if RANKS[target_layer] >= RANKS[source_layer]:
                violations.append(f"{module}:{line} imports {target} ({source_layer} -> {target_layer})")
    return violations


def test_every_module_of_the_package_keeps_the_layer_rule():
    sources = package_sources(ROOT)
    assert {"dphe_bench.crypto.paillier", "dphe_bench.backends.base", "dphe_bench.cli"} <= set(sources)
    assert layer_violations(sources) == []


def test_the_top_level_holds_only_the_api_the_cli_and_the_common_modules():
    loose = sorted(path.name for path in (ROOT / "dphe_bench").glob("*.py"))
    assert loose == ["__init__.py", "cli.py", "errors.py", "files.py"]


@pytest.mark.parametrize(
    ("module", "code", "expected"),
    [
        # an upward import at the top of a module
        ("dphe_bench.crypto.injected", "from dphe_bench.schemes import SCHEMES\n", "(crypto -> schemes)"),
        # a lazy import inside a function counts the same
        (
            "dphe_bench.backends.injected",
            "def f():\n    from dphe_bench.learning.config import Config\n",
            "(backends -> learning)",
        ),
        # the package root re-exports the schemes layer, so a backend may not import it
        ("dphe_bench.backends.injected", "import dphe_bench\n", "(backends -> schemes)"),
        # siblings: bench and deploy import neither each other
        ("dphe_bench.bench.injected", "from dphe_bench.deploy import local\n", "(bench -> deploy)"),
        # the common modules import no layer
        ("dphe_bench.errors", "from dphe_bench.crypto.limbs import LIMB_BITS\n", "(common -> crypto)"),
        # nothing but the CLI imports the CLI
        ("dphe_bench.deploy.injected", "from dphe_bench.cli import main\n", "(deploy -> cli)"),
        # a relative import resolves like an absolute one
        ("dphe_bench.schemes.injected", "from ..learning import trainer\n", "(schemes -> learning)"),
        # so do dynamic imports with a literal name
        (
            "dphe_bench.crypto.injected",
            "import importlib\ndef f():\n    importlib.import_module('dphe_bench.learning.config')\n",
            "(crypto -> learning)",
        ),
        ("dphe_bench.backends.injected", "def f():\n    __import__('dphe_bench.cli')\n", "(backends -> cli)"),
    ],
)
def test_an_upward_import_is_reported(module, code, expected):
    sources = package_sources(ROOT)
    sources[module] = code
    violations = layer_violations(sources)
    assert len(violations) == 1
    assert violations[0].startswith(f"{module}:") and violations[0].endswith(expected)


def test_downward_and_same_layer_imports_are_allowed():
    sources = package_sources(ROOT)
    sources["dphe_bench.bench.injected"] = (
        "import dphe_bench\n"
        "from dphe_bench.bench import report_figures\n"
        "from dphe_bench.learning import trainer\n"
        "from dphe_bench.crypto.paillier import generate_keypair\n"
        "from dphe_bench.errors import DpheError\n"
    )
    assert layer_violations(sources) == []
