"""The layers of sda/ (DESIGN.md, README's layout): a module imports only from its own layer or lower ones.

Every import counts, at the top of a module or inside a function, so a lazy import cannot hide an
upward dependency. kernels/ (installed as sda.kernels) imports nothing from the rest of sda.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. Within a layer, imports go either way; sda.cli may start sda.ui's server.
LAYERS = [
    ("foundation", {"sda.config", "sda.errors", "sda.text", "sda.kernels", "sda._sdafile"}),
    ("data", {"sda.data"}),
    ("model", {"sda.model"}),
    ("format", {"sda.format", "sda.codes"}),
    ("train", {"sda.train"}),
    ("report", {"sda.report"}),
    ("frontends", {"sda.cli", "sda.ui", "sda.__main__"}),
]


def layer_of(module: str) -> int:
    """The index in LAYERS of a dotted sda module name (a package or anything inside one)."""
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to README's layout)")


def module_name(path: Path) -> str:
    if path.is_relative_to(ROOT / "kernels"):
        parts = ("sda", "kernels", *path.relative_to(ROOT / "kernels").with_suffix("").parts)
    else:
        parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sda_imports(path: Path, module: str) -> set[str]:
    """Every sda module that path imports, relative imports resolved; `from a import b` counts as a.b."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "sda" or name.startswith("sda.")}


SOURCES = sorted([*ROOT.glob("sda/**/*.py"), *ROOT.glob("kernels/*.py")])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_import_goes_down_or_sideways(path):
    module = module_name(path)
    if module == "sda":
        return
    here = layer_of(module)
    upward = sorted(f"{name} ({LAYERS[layer_of(name)][0]})" for name in sda_imports(path, module)
                    if name != "sda" and layer_of(name) > here)
    assert not upward, f"{module} ({LAYERS[here][0]}) imports from a higher layer: {', '.join(upward)}"


def test_kernels_import_nothing_else_from_sda():
    for path in ROOT.glob("kernels/*.py"):
        others = {name for name in sda_imports(path, module_name(path)) if not name.startswith("sda.kernels")}
        assert not others, f"{path.name} imports {sorted(others)}"


def test_the_check_sees_an_upward_import(tmp_path):
    """The rule itself, on a module written here: a codebook that imports the run layer is refused."""
    fake = ROOT / "sda" / "model" / "codebook.py"
    source = tmp_path / "codebook.py"
    source.write_text("def sync():\n    from sda.train import distributed\n")
    imports = sda_imports(source, module_name(fake))
    assert imports == {"sda.train.distributed"}
    assert layer_of("sda.train.distributed") > layer_of(module_name(fake))
