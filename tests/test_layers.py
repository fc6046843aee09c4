"""The layering ARCHITECTURE.md promises: a module never imports a higher layer, lazily or not."""
import ast
from pathlib import Path

import souk

# Lowest first; a module may import its own layer and any layer below it.
LAYERS = [
    ["souk.errors", "souk.version", "souk.types", "souk.progress", "souk.files", "souk.limits", "souk.plugins"],
    ["souk.analysis"],
    ["souk.models", "souk.schema", "souk.catalogs"],
    ["souk.index"],
    ["souk.query"],
    ["souk.retrieval"],
    ["souk.ranking"],
    ["souk.evaluation"],
    ["souk.events"],
    ["souk.training"],
    ["souk.config", "souk.engine", "souk.indexing"],
    ["souk.bench", "souk.serving"],
    ["souk.cli", "souk.__main__", "souk"],
]
ROOT = Path(souk.__file__).parent


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, rank = len(name), i
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS (and to ARCHITECTURE.md)"
    return rank


def imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("souk")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("souk") and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def test_no_module_imports_a_higher_layer():
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        here = layer_of(module)
        for line, target in imports(path):
            if layer_of(target) > here:
                problems.append(f"{rel}.py:{line} imports {target} (layer {layer_of(target)} above {here})")
    assert not problems, "\n".join(problems)


def test_the_cli_writes_and_opens_indexes_through_the_facade():
    """Commands reach the index layer only through `souk.engine` / `souk.indexing` (one write path)."""
    problems = [f"{path.relative_to(ROOT.parent)}:{line} imports {target}"
                for path in sorted((ROOT / "cli").rglob("*.py")) for line, target in imports(path)
                if target == "souk.index" or target.startswith("souk.index.")]
    assert not problems, "\n".join(problems)


def test_layer_check_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from souk.ranking.pipeline import build_pipeline\n")
    [(line, target)] = imports(bad)
    assert layer_of(target) > layer_of("souk.index.searcher") and line == 2
