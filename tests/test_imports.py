"""Importing auxtrain has no side effects, --help imports nothing heavy, and imports form no cycle."""

from __future__ import annotations

import ast
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import auxtrain

ROOT = Path(auxtrain.__file__).resolve().parent.parent
HEAVY = ("torch", "torchvision", "numpy", "pandas")
COMMANDS = ["fit", "eval", "make-c", "list-models", "list-corruptions"]


def _python(code: str, *, drop_env: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in drop_env}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result


def test_import_sets_no_environment_variable():
    _python("import os, sys; before = dict(os.environ); import auxtrain\n"
            "assert 'OMP_WAIT_POLICY' not in os.environ and dict(os.environ) == before",
            drop_env=("OMP_WAIT_POLICY",))
    # The dependencies first: importing torchvision sets TORCHINDUCTOR_CACHE_DIR itself.
    _python("import os, torch, torchvision, numpy, pandas; before = dict(os.environ); import auxtrain\n"
            "auxtrain.AuxiliaryModel, auxtrain.create_model, auxtrain.load_model, auxtrain.list_models()\n"
            "import auxtrain.training, auxtrain.data, auxtrain.evaluation\n"
            "assert 'OMP_WAIT_POLICY' not in os.environ and dict(os.environ) == before",
            drop_env=("OMP_WAIT_POLICY",))


def test_import_sets_no_thread_count():
    _python("import torch; torch.set_num_threads(2); n = torch.get_num_threads()\n"
            "import auxtrain, auxtrain.training, auxtrain.data, auxtrain.models\n"
            "auxtrain.list_models(); auxtrain.create_model('resnet20', 10)\n"
            "from auxtrain.data import generate_shapes; generate_shapes(20)\n"
            "assert torch.get_num_threads() == n, torch.get_num_threads()")


def test_console_entry_point_sets_omp_wait_policy_unless_set(monkeypatch):
    from auxtrain import cli

    for preset, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        if preset is None:
            monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        else:
            monkeypatch.setenv("OMP_WAIT_POLICY", preset)
        monkeypatch.setattr(sys, "argv", ["auxtrain", "--version"])
        with pytest.raises(SystemExit):
            cli.main_exit()
        assert os.environ["OMP_WAIT_POLICY"] == expected


@pytest.mark.parametrize("argv", [[], *([c] for c in COMMANDS)], ids=["auxtrain", *COMMANDS])
def test_help_imports_nothing_heavy(argv):
    _python("import sys\nfrom auxtrain.cli import main\n"
            f"assert main({[*argv, '--help']!r}) == 0\n"
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "assert not heavy, heavy")


def test_python_dash_m_help_does_not_import_torch():
    _python("import runpy, sys\nsys.argv = ['auxtrain', 'fit', '--help']\n"
            "try:\n    runpy.run_module('auxtrain', run_name='__main__')\nexcept SystemExit as e:\n"
            "    assert e.code in (0, None)\nassert 'torch' not in sys.modules")


def test_public_names_are_lazy_and_listed():
    assert set(auxtrain.__all__) <= set(dir(auxtrain))
    for name in auxtrain.__all__:
        assert getattr(auxtrain, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        auxtrain.nope  # noqa: B018
    _python("import sys, auxtrain; assert 'torch' not in sys.modules and auxtrain.__version__")


def test_models_import_does_not_scan_torchvision():
    _python("import sys, auxtrain.models as m\nassert 'torchvision' not in sys.modules\n"
            "m.create_model('resnet20', 10); assert m.is_model('resnet20')\n"
            "assert 'torchvision' not in sys.modules and not any(n.startswith('tv_') for n in m._registry."
            "_MODEL_ENTRYPOINTS)\n"
            "assert m.is_model('tv_resnet18') and 'tv_resnet18' in m.list_models('tv_*')")


def _modules() -> list[str]:
    return ["auxtrain", *(m.name for m in pkgutil.walk_packages(auxtrain.__path__, "auxtrain."))]


def test_every_module_imports_in_a_fresh_process():
    _python(f"import importlib\nfor name in {_modules()!r}:\n    importlib.import_module(name)")


# ---------------------------------------------------------------- static import graph


def _module_files() -> dict[str, Path]:
    base = ROOT / "auxtrain"
    files = {}
    for path in base.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Import nodes anywhere in the module (functions included: lazy imports count), except under
    ``if TYPE_CHECKING:``, which never runs."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    """auxtrain module -> the auxtrain modules it imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    files = _module_files()
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_import_graph_sees_relative_and_lazy_imports():
    graph = import_graph()
    assert "auxtrain.models._registry" in graph["auxtrain.models.cifar_resnet"]  # from ._registry import
    assert "auxtrain.training" in graph["auxtrain.cli"]  # imported inside _run_fit
    assert "auxtrain.distributed" in graph["auxtrain.training"]  # from auxtrain import distributed
    assert not graph["auxtrain"]  # the package imports its public names lazily, by name


def test_no_import_cycles():
    cycles = [sorted(c) for c in import_cycles(import_graph())]
    assert not cycles, f"import cycles: {cycles}"
