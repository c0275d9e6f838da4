"""flatjax's import structure: building blocks, the drivers above them, the CLI on top.

Every ``import`` in the package is read from the source (those inside functions
too; those under ``if TYPE_CHECKING:`` are annotations only and are skipped). A
package may import from its own modules and from packages in lower layers, never
from its own layer or above; and no chain of imports between modules loops.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "flatjax"

# Lowest first. A package (or top-level module) imports only from earlier rows.
LAYERS = [
    ("errors", "files"),
    ("jsonl", "console", "runtime", "metrics", "provenance", "figures", "flags", "kernels"),
    ("data",),
    ("models",),
    ("optim",),
    ("sparsity",),
    ("quant", "sharpness"),
    ("parallel", "export"),
    ("train",),
    ("recipes",),
    ("cli",),
    ("__main__",),
]
RANK = {name: i for i, row in enumerate(LAYERS) for name in row}


def module_files(root: Path = PACKAGE) -> dict[str, Path]:
  """``{"flatjax.train.steps": path, "flatjax.train": .../train/__init__.py, ...}``."""
  out = {}
  for path in root.rglob("*.py"):
    parts = path.relative_to(root.parent).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = path
  return out


def _is_type_checking(node: ast.If) -> bool:
  test = node.test
  return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
      isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
  """Every Import/ImportFrom node, skipping the bodies of ``if TYPE_CHECKING:``."""
  stack = [tree]
  while stack:
    node = stack.pop()
    if isinstance(node, ast.If) and _is_type_checking(node):
      stack.extend(node.orelse)
      continue
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      yield node
    stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
  """The flatjax modules that module ``name`` imports (``from P import M`` of a
  submodule ``M`` counts as importing ``P.M``)."""
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  found = set()
  for node in _import_nodes(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name.split(".")[0] == "flatjax")
      continue
    base = node.module or ""
    if node.level:
      anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
      base = ".".join(anchor + ([base] if base else []))
    if base.split(".")[0] != "flatjax":
      continue
    for alias in node.names:
      sub = f"{base}.{alias.name}"
      found.add(sub if sub in modules else base)
  return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
  modules = module_files(root)
  return {name: imports_of(name, path, modules) for name, path in modules.items()}


def unit(module: str) -> str:
  """The layer unit of a module: its top-level package or module under flatjax."""
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else "flatjax"


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
  bad = []
  for src, targets in graph.items():
    a = unit(src)
    for dst in targets:
      b = unit(dst)
      if a == b or a == "flatjax":  # flatjax/__init__.py re-exports the optax transforms
        continue
      if b == "flatjax" or RANK[b] >= RANK[a]:
        bad.append(f"{src} imports {dst} ({a} is layer {RANK[a]}, {b} is "
                   f"{'the package root' if b == 'flatjax' else f'layer {RANK[b]}'})")
  return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected groups of more than one module (Tarjan), and self-imports."""
  index, low, on_stack, stack, out = {}, {}, set(), [], []

  def visit(v: str) -> None:
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph.get(v, ()):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      group = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        group.append(w)
        if w == v:
          break
      if len(group) > 1 or v in graph.get(v, ()):
        out.append(sorted(group))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


# A package's __init__ re-exporting its own modules, which import siblings by
# their full name, is an edge both ways only through the package object: these
# edges are left out of the cycle check.
def _without_init_reexports(graph: dict[str, set[str]]) -> dict[str, set[str]]:
  return {src: {dst for dst in targets if not (src.startswith(dst + ".") and dst != "flatjax")}
          for src, targets in graph.items()}


def test_every_package_has_a_layer():
  units = {unit(m) for m in module_files()} - {"flatjax"}
  assert units <= set(RANK), f"give these a row in LAYERS: {sorted(units - set(RANK))}"


def test_no_package_imports_its_own_layer_or_above():
  assert upward_imports(import_graph()) == []


def test_no_import_cycles_between_modules():
  assert cycles(_without_init_reexports(import_graph())) == []


# The checks themselves, on a package written for the purpose.

def _write(root: Path, files: dict[str, str]) -> Path:
  pkg = root / "flatjax"
  for rel, text in files.items():
    path = pkg / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
  return pkg


def test_an_upward_import_inside_a_function_is_found(tmp_path):
  pkg = _write(tmp_path, {
      "__init__.py": "",
      "data/__init__.py": "",
      "data/tasks.py": "def f():\n  from flatjax.train import steps\n",
      "train/__init__.py": "",
      "train/steps.py": "from flatjax.data import tasks\n",
  })
  bad = upward_imports(import_graph(pkg))
  assert bad == ["flatjax.data.tasks imports flatjax.train.steps (data is layer 2, train is "
                 "layer 8)"]
  assert cycles(import_graph(pkg)) == [["flatjax.data.tasks", "flatjax.train.steps"]]


def test_type_checking_imports_and_same_package_imports_are_allowed(tmp_path):
  pkg = _write(tmp_path, {
      "__init__.py": "",
      "metrics.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "  from flatjax.data.tasks import TaskSpec\n"),
      "data/__init__.py": "from flatjax.data.tasks import TaskSpec\n",
      "data/tasks.py": "from flatjax import metrics\nfrom . import glue\nTaskSpec = 1\n",
      "data/glue.py": "",
  })
  graph = import_graph(pkg)
  assert graph["flatjax.data.tasks"] == {"flatjax.metrics", "flatjax.data.glue"}
  assert graph["flatjax.metrics"] == set()
  assert upward_imports(graph) == []
  assert cycles(_without_init_reexports(graph)) == []


@pytest.mark.parametrize("target", ["flatjax.quant.int8", "flatjax.sparsity.masks"])
def test_same_layer_and_higher_imports_are_refused(tmp_path, target):
  pkg = _write(tmp_path, {
      "__init__.py": "", "quant/__init__.py": "", "quant/int8.py": "",
      "sharpness/__init__.py": "", "sparsity/__init__.py": "", "sparsity/masks.py": "",
      "sharpness/hessian.py": f"import {target}\n",
  })
  bad = upward_imports(import_graph(pkg))
  assert len(bad) == (1 if "quant" in target else 0)


def test_the_package_holds_no_paper_analysis_and_imports_none():
  """The paper's numbers, claims and report live in paper/ and the experiments in
  experiments/, beside the package: a wheel ships flatjax/ only, and nothing in it
  imports them."""
  import tomllib
  project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
  assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["flatjax*"]
  outside = []
  for path in PACKAGE.rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import)
               else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      outside += [f"{path.name}: {n}" for n in names
                  if n.split(".")[0] in ("paper", "experiments", "benchmarks")]
  assert outside == []
  assert not (PACKAGE / "report").exists()
