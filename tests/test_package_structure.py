"""The package's structure: no import cycles between the modules of confgf_fast (kernels/ included,
installed as confgf_fast.kernels), and no file that the installed package should not carry.

Cycles are found statically (ast), so imports inside functions count too: a lazy import that
closes a cycle still ties the two modules together (it only hides the cycle from import order).
`if TYPE_CHECKING:` imports are left out: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Where each package's sources live (setup.py's package_dir: kernels/ installs as confgf_fast.kernels).
ROOTS = {"confgf_fast": REPO / "confgf_fast", "confgf_fast.kernels": REPO / "kernels"}


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg, root in ROOTS.items():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([pkg, *parts])
            if name.startswith("confgf_fast.kernels") and pkg == "confgf_fast":
                continue  # a stray confgf_fast/kernels/ would shadow the real one; not ours to read
            mods[name] = path
    return mods


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    """{module: the package modules it imports} for every module of confgf_fast."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                # `from pkg import sub` imports the submodule when there is one
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names]
            else:
                continue
            for t in targets:
                # `import a.b.c` names the deepest module that exists
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    graph = import_graph()
    # The package __init__ imports its submodules; a submodule importing names back from the
    # package root would be a cycle through __init__, and is reported like any other.
    assert "confgf_fast.cli" in graph and "confgf_fast.kernels.segment" in graph, sorted(graph)
    cycles = find_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_cycle():
    """The check above can fail: a two-module and a three-module cycle are both reported."""
    assert find_cycles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}) == [
        ["a", "b"], ["c", "d", "e"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_training_state_in_the_package():
    """The resumable training state belongs to the repository (bench/train_state/), not to the
    installed package: it is several MB that no user of the package needs."""
    assert not list((REPO / "confgf_fast").rglob("train_state")), "train_state/ inside confgf_fast/"
    setup = (REPO / "setup.py").read_text()
    assert "train_state" not in setup
