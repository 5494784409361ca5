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


def _from_module(node: ast.ImportFrom, package: str) -> str:
    """The absolute name of the module a `from ... import` reads, in `package`."""
    if not node.level:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


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
                mod = _from_module(node, package)
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


# ---- layers --------------------------------------------------------------------------------------
#
# The package is layered along its data flow (SMILES / RDKit Mol in -> graph -> model -> sampler ->
# SDF / tensors out), one subpackage per layer where a layer has several modules. Each module has a
# layer (its subpackage's); a module may import from its own layer and the layers below it, never
# from a higher one. Lazy imports inside functions count (they still tie the lower module to the
# higher one); `if TYPE_CHECKING:` imports do not (they never run). Subpackage __init__ files
# import nothing, so every import edge names the module it really depends on.
#
#   0 base      config (constants, schedules, settings), seeds, threads: no package imports at all
#   1 graph     the tensor graph types (MolGraph, GraphBatch, PackedGraphs, extended_graph): what
#               chem featurises into and what ops and the model read
#   2 ops       the registered torch ops (ops/) and their Triton kernels (kernels/ ->
#               confgf_fast.kernels)
#   3 chem/     RDKit and xTB in and out: featurising (molecule), stereo constraints and checks
#               (stereo), conformer quality (quality), diverse subsets (diversity), the xTB engine
#               (xtb), the optional relaxation of finished conformers (relax)
#   4 model/    the score network (network), the loaded-model type (loaded), its element vocabulary
#               (elements), checkpoints (checkpoint) and the official weights (official)
#   5 sampling/ the samplers (sampler, planarity), batch sampling (batch), preparing inputs for them
#               (prepare), and the tensor-level API (tensors)
#   6 pipeline/ a generate request (request), the Mol-level pipeline (generate), reading inputs /
#               writing outputs (io)
#   7 tasks     what is built on generation and the data: evaluation/ (evaluate, properties,
#               distance_mmd), training (train) and the datasets (data/)
#   8 front     the command line, multi-process sharding, and the package root's public API
LAYER_NAMES = ("base", "graph", "ops", "chem", "model", "sampling", "pipeline", "tasks", "front")
LAYERS: dict[str, int] = {
    **dict.fromkeys(["config", "seeds", "threads"], 0),
    "graph": 1,
    "ops": 2, "kernels": 2,
    "chem": 3,
    "model": 4,
    "sampling": 5,
    "pipeline": 6,
    **dict.fromkeys(["evaluation", "train", "data"], 7),
    **dict.fromkeys(["cli", "distributed", ""], 8),  # "": the package root, confgf_fast/__init__.py
}


def layer_of(module: str, layers: dict[str, int] = LAYERS) -> int | None:
    """The layer of a module: its own entry, else its nearest enclosing package's (a subpackage's
    modules share its layer). None when it is in no layer."""
    rel = module.removeprefix("confgf_fast").removeprefix(".")
    while True:
        if rel in layers:
            return layers[rel]
        if not rel:
            return None
        rel = rel.rpartition(".")[0]


def layering_violations(graph: dict[str, set[str]], layers: dict[str, int] = LAYERS) -> list[str]:
    """Every import edge that goes up a layer, as "a (layer i) imports b (layer j)"."""
    out = []
    for a in sorted(graph):
        la = layer_of(a, layers)
        for b in sorted(graph[a]):
            lb = layer_of(b, layers)
            if la is not None and lb is not None and lb > la:
                out.append(f"{a} (layer {la}) imports {b} (layer {lb})")
    return out


def _exact_layer(module: str) -> bool:
    rel = module.removeprefix("confgf_fast").removeprefix(".")
    # a module is placed by its own entry or by its top-level subpackage's (chem.*, ops.*, data.*, ...)
    return rel in LAYERS or (rel.partition(".")[0] in LAYERS and "." in rel)


def test_every_module_has_a_layer():
    """A new module must be placed in LAYERS (its subpackage's entry places it too)."""
    missing = sorted(m for m in import_graph() if not _exact_layer(m))
    assert not missing, f"modules without a layer in LAYERS: {missing}"
    stale = sorted(k for k in LAYERS if k and f"confgf_fast.{k}" not in import_graph())
    assert not stale, f"LAYERS names modules that do not exist: {stale}"


def test_no_import_goes_up_a_layer():
    bad = layering_violations(import_graph())
    assert not bad, "imports up a layer:\n" + "\n".join(bad)


# The layer subpackages' __init__ files hold a docstring only: a re-export there would make every
# importer of the subpackage depend on all its modules (and close cycles through the __init__).
DOCSTRING_ONLY = ("chem", "model", "sampling", "pipeline", "evaluation")


def test_layer_subpackages_import_nothing():
    mods = _modules()
    for pkg in DOCSTRING_ONLY:
        path = mods[f"confgf_fast.{pkg}"]
        assert path.name == "__init__.py", path
        tree = ast.parse(path.read_text(encoding="utf-8"))
        body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        assert not body and ast.get_docstring(tree), f"{path} must hold only a docstring"


def test_layer_checker_reports_an_upward_import():
    """The check above can fail: a planted sampler -> cli edge (and chem -> evaluate) is reported."""
    graph = {"confgf_fast.sampling.sampler": {"confgf_fast.cli", "confgf_fast.graph"},
             "confgf_fast.chem.molecule": {"confgf_fast.evaluation.evaluate"},
             "confgf_fast.cli": {"confgf_fast.sampling.sampler"},
             "confgf_fast.data.qm9": {"confgf_fast.chem.molecule"}}
    assert layering_violations(graph) == [
        "confgf_fast.chem.molecule (layer 3) imports confgf_fast.evaluation.evaluate (layer 7)",
        "confgf_fast.sampling.sampler (layer 5) imports confgf_fast.cli (layer 8)"]
    assert layering_violations(import_graph() | graph)[-1].startswith("confgf_fast.sampling.sampler (layer 5)")


# ---- calls back up from cmd_generate -----------------------------------------------------------
#
# With every import going down a layer, a direct call can only go down too; code of a lower layer
# runs code of a higher one only through a callable handed down to it (a function, a bound method
# of a higher-layer object, a lambda or a nested def passed as an argument). Following generate's
# arguments from cli.cmd_generate: every package function reachable by calls resolved through the
# module's names (its defs, `from x import f`, `import x as m` + `m.f(...)`, lazy imports included;
# a class reached counts as running all its methods, `self.f(...)` resolves to its method),
# and at each call into a lower layer, every callable of the caller's layer or above passed to it,
# which the callee can call back. Calls through instances (obj.method()) are not resolved, so the
# walk is a lower bound on what is reachable; it is checked to reach the sampler.

MAX_CALLS_BACK_UP = 8


def _names(graph_mods: dict[str, Path]) -> tuple[dict, dict]:
    """({module: {local name: ("mod", module) | ("obj", module, name)}}, {(module, name): def node})"""
    names: dict[str, dict] = {}
    defs: dict[tuple[str, str], ast.AST] = {}
    for name, path in graph_mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        table: dict = {}
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                table[node.name] = ("obj", name, node.name)
                defs[(name, node.name)] = node
                if isinstance(node, ast.ClassDef):
                    for meth in node.body:
                        if isinstance(meth, (ast.FunctionDef, ast.AsyncFunctionDef)):
                            defs[(name, f"{node.name}.{meth.name}")] = meth
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                mod = _from_module(node, package)
                if not mod.startswith("confgf_fast"):
                    continue
                for a in node.names:
                    sub = f"{mod}.{a.name}"
                    table.setdefault(a.asname or a.name, ("mod", sub) if sub in graph_mods else ("obj", mod, a.name))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("confgf_fast") and a.asname:
                        table.setdefault(a.asname, ("mod", a.name))
        names[name] = table
    return names, defs


def calls_back_up(start: tuple[str, str] = ("confgf_fast.cli", "cmd_generate")):
    """(reachable functions {(module, name)}, [each call back up as text])."""
    mods = _modules()
    names, defs = _names(mods)

    def resolve(module: str, expr: ast.AST, depth: int = 0):
        """(module, name) of the package def an expression names, or None."""
        if depth > 8:
            return None
        entry = None
        if isinstance(expr, ast.Name):
            entry = names.get(module, {}).get(expr.id)
        elif isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
            base = names.get(module, {}).get(expr.value.id)
            if base and base[0] == "mod":
                entry = ("obj", base[1], expr.attr)
        if not entry or entry[0] != "obj":
            return None
        _, m, n = entry
        if (m, n) in defs:
            return (m, n)
        if n in names.get(m, {}):  # re-exported: follow the name into the module it came from
            return resolve(m, ast.Name(id=n), depth + 1)
        return None

    seen: set[tuple[str, str]] = set()
    todo = [start]
    up: list[str] = []
    while todo:
        key = todo.pop()
        if key in seen or key not in defs:
            continue
        seen.add(key)
        module, fn = key
        node = defs[key]
        if isinstance(node, ast.ClassDef):
            # a class reached is taken to run all its methods (through its instances)
            todo.extend(k for k in defs if k[0] == module and k[1].startswith(f"{fn}."))
            continue
        cls = fn.partition(".")[0] if "." in fn else None
        local_defs = {n.name for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and n is not node}
        mine = layer_of(module)
        for call in ast.walk(node):
            if not isinstance(call, ast.Call):
                continue
            callee = resolve(module, call.func)
            f = call.func
            if (callee is None and cls and isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                    and f.value.id in ("self", "cls") and (module, f"{cls}.{f.attr}") in defs):
                callee = (module, f"{cls}.{f.attr}")
            if callee is None:
                continue
            todo.append(callee)
            theirs = layer_of(callee[0])
            where = f"{module}.{fn} -> {callee[0]}.{callee[1]}"
            if theirs > mine:
                up.append(f"{where}: a call up (layer {mine} -> {theirs})")
            if theirs >= mine:
                continue
            for arg in [*call.args, *(k.value for k in call.keywords)]:
                called = {id(c.func) for c in ast.walk(arg) if isinstance(c, ast.Call)}
                for sub in ast.walk(arg):
                    if id(sub) in called:
                        continue  # called right there (its result is handed down), not handed down
                    what = None
                    if isinstance(sub, ast.Lambda):
                        what = "a lambda"
                    elif isinstance(sub, ast.Name) and sub.id in local_defs:
                        what = f"nested def {sub.id}"
                    elif isinstance(sub, (ast.Name, ast.Attribute)):
                        target = resolve(module, sub)
                        if (target and isinstance(defs[target], (ast.FunctionDef, ast.AsyncFunctionDef))
                                and layer_of(target[0]) >= mine and target != callee):
                            what = f"{target[0]}.{target[1]}"
                            todo.append(target)
                    if what:
                        up.append(f"{where} is handed {what} (layer {mine}), which it can call back")
    return seen, up


def test_cmd_generate_reaches_the_sampler_with_few_calls_back_up():
    reached, up = calls_back_up()
    modules = {m for m, _ in reached}
    assert "confgf_fast.sampling.sampler" in modules, sorted(reached)
    print(f"{len(up)} calls back up from cmd_generate:\n" + "\n".join(up))
    assert len(up) <= MAX_CALLS_BACK_UP, "\n".join(up)
