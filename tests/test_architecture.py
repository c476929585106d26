"""The package's layering (docs/architecture.md), checked on every CI run.

* import-linter's contract in pyproject.toml holds: every layer imports only from the layers
  below it (module-level and function-local imports alike), and it really catches an upward
  import (shown on a copy of the package with one added);
* no private name (``_x``) of one module is used by another module of the package (private
  *modules* such as ``_native``, ``_numba``, ``_triton`` only by their own package);
* docs/architecture.md exists and names every layer of the contract.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: import-linter depends on tomli there
    import tomli as tomllib

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dctnet"


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def _copy_package(dst: Path, name: str) -> Path:
    """The package's sources under another name (the installed dctnet would shadow a copy
    named dctnet), with the same contract."""
    config = (ROOT / "pyproject.toml").read_text()
    config = config.replace('root_package = "dctnet"', f'root_package = "{name}"')
    config = config.replace('containers = ["dctnet"]', f'containers = ["{name}"]')
    (dst / "pyproject.toml").write_text(config)
    shutil.copytree(PACKAGE, dst / name, ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.tsv"))
    return dst / name


def test_layers_contract_is_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    copy = _copy_package(tmp_path, "dctnet_copy")
    layout = copy / "ops" / "layout.py"
    layout.write_text(layout.read_text() + "\n\ndef _upward():\n    from ..classify import Classifier\n"
                                            "    return Classifier\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "dctnet_copy.ops is not allowed to import dctnet_copy.classify" in result.stdout
    assert "dctnet_copy.ops.layout -> dctnet_copy.classify" in result.stdout


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _private_uses(module: str, path: Path) -> list[str]:
    """``from X import _name`` and ``X._name`` (X another dctnet module) in one module."""
    tree = ast.parse(path.read_text(), str(path))
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    bad, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _resolve(module, path.name == "__init__.py", node.level, node.module)
            if not source.startswith("dctnet"):
                continue
            for alias in node.names:
                target = f"{source}.{alias.name}"
                aliases[alias.asname or alias.name] = target
                if not alias.name.startswith("_") or alias.name.startswith("__"):
                    continue
                # A private module may be imported by its own package (codec -> _native, ops -> _numba).
                own_package = source in (package, package.rsplit(".", 1)[0]) and target.rsplit(".", 1)[0] in (
                    package, "dctnet")
                if own_package and (PACKAGE.parent / (target.replace(".", "/") + ".py")).exists():
                    continue
                if target == "dctnet._native" and module == "dctnet.codec":
                    continue
                bad.append(f"{module}:{node.lineno} imports {target}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dctnet"):
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr.startswith("_")
                and not node.attr.startswith("__") and node.value.id in aliases):
            bad.append(f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return bad


def test_no_private_name_crosses_modules():
    bad = []
    for module, path in sorted(_modules().items()):
        bad += _private_uses(module, path)
    assert not bad, "private names used across modules:\n" + "\n".join(bad)


def test_the_private_name_check_catches_one(tmp_path):
    path = tmp_path / "x.py"
    path.write_text("from .. import codec\nfrom ..codec import _batch_arguments\ncodec._build(1)\n")
    bad = _private_uses("dctnet.ops.x", path)
    assert bad == ["dctnet.ops.x:2 imports dctnet.codec._batch_arguments", "dctnet.ops.x:3 uses dctnet.codec._build"]


def test_architecture_doc_names_every_layer():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    layers = config["tool"]["importlinter"]["contracts"][0]["layers"]
    for layer in layers:
        for name in layer.split("|"):
            assert f"dctnet.{name.strip()}" in doc, f"docs/architecture.md does not mention dctnet.{name.strip()}"


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")))
def test_code_cites_docs_in_the_repository_not_design_md(path):
    assert "design.md" not in (ROOT / path).read_text(), f"{path} cites design.md (not in the repository)"
