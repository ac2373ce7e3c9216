"""The import graph of the `pygqa` package (pygqa/bench left out), read with ast.

    python scripts/import_graph.py [--mermaid | --check] [--root pygqa]

Every `import pygqa...` / `from pygqa... import ...` counts, at module level or
deferred inside a function, and so does a string constant that names a pygqa
module exactly (what `importlib.import_module` is handed, as in
kernels/paths.py; the bare "pygqa" is Keras's serialisation package name, not
an import). Prints the floors (floor 0 imports no pygqa module; a module
stands one floor above the highest it imports), each module's imports, and
every import cycle; `--mermaid` prints a Mermaid `graph BT` instead.

The package's rules (`--check`, and tests/test_import_graph.py): no module
under pygqa/kernels imports a pygqa module outside pygqa/kernels, and there
is no import cycle.
"""

import argparse
import ast
import os
import sys

PACKAGE = "pygqa"
EXCLUDED = ("pygqa.bench",)
# The floor below the dispatcher: its modules import only each other.
KERNELS = "pygqa.kernels"


def module_files(root):
    """{module name: file path} of every module under `root` (a package folder)."""
    base = os.path.dirname(os.path.abspath(root))
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, base)[: -len(".py")].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            module = ".".join(parts)
            if not any(module == e or module.startswith(e + ".") for e in EXCLUDED):
                found[module] = path
    return found


def _resolve(name, modules):
    """The module an imported name refers to: the name itself, or its package."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(path, module, modules):
    """{imported pygqa module: "static" | "deferred" | "dynamic"} of one file."""
    tree = ast.parse(open(path).read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = {}

    def add(target, kind):
        if target and target != module and found.get(target) != "static":
            found[target] = kind

    def walk(node, deferred):
        for child in ast.iter_child_nodes(node):
            inner = deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                   ast.Lambda))
            kind = "deferred" if inner else "static"
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(_resolve(alias.name, modules), kind)
            elif isinstance(child, ast.ImportFrom):
                source = child.module or ""
                if child.level:  # relative import
                    source = ".".join(package.split(".")[: len(package.split(".")) - child.level
                                                        + 1] + ([source] if source else []))
                for alias in child.names:
                    add(_resolve(f"{source}.{alias.name}", modules) or _resolve(source, modules),
                        kind)
            elif (isinstance(child, ast.Constant) and isinstance(child.value, str)
                  and "." in child.value and child.value in modules):
                add(child.value, "dynamic")
            walk(child, inner)

    walk(tree, False)
    return {target: kind for target, kind in found.items() if target.startswith(PACKAGE)}


def read_graph(root=PACKAGE):
    """{module: {imported module: kind}} for the package folder `root`."""
    modules = module_files(root)
    return {m: imports_of(path, m, modules) for m, path in modules.items()}


def cycles(graph):
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(1000, 10 * len(graph)))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def floors(graph):
    """{module: floor}: 0 for a module importing none, else 1 + its highest import.
    The modules of a cycle share one floor."""
    component = {m: (m,) for m in graph}
    for members in cycles(graph):
        for m in members:
            component[m] = tuple(members)
    floor = {}

    def height(node):
        if node in floor:
            return floor[node]
        members = component[node]
        below = [t for m in members for t in graph[m] if t not in members and t in graph]
        value = 1 + max((height(t) for t in below), default=-1)
        for m in members:
            floor[m] = value
        return value

    for node in graph:
        height(node)
    return floor


def upward_imports(graph, floor_package=KERNELS):
    """(module, target) pairs where a module of `floor_package` imports a pygqa
    module outside it: the kernels stand below everything else."""
    inside = floor_package + "."
    return sorted(
        (module, target)
        for module, targets in graph.items()
        if module == floor_package or module.startswith(inside)
        for target in targets
        if target != floor_package and not target.startswith(inside)
    )


def violations(graph):
    """The package's two rules, broken: each upward import and each cycle, in words."""
    found = [f"{short(m)} imports {short(t)}, above the kernels" for m, t in upward_imports(graph)]
    found += ["import cycle: " + " <-> ".join(short(m) for m in c) for c in cycles(graph)]
    return found


def short(module):
    """pygqa.kernels.band -> kernels.band; the package itself -> __init__."""
    return "__init__" if module == PACKAGE else module[len(PACKAGE) + 1:]


def text(graph):
    lines = []
    level = floors(graph)
    for n in range(max(level.values()) + 1):
        names = sorted(short(m) for m in graph if level[m] == n)
        lines.append(f"floor {n}: {', '.join(names)}")
    lines.append("")
    for module in sorted(graph):
        targets = graph[module]
        if targets:
            listed = ", ".join(f"{short(t)}" + ("" if k == "static" else f" ({k})")
                               for t, k in sorted(targets.items()))
            lines.append(f"{short(module)} -> {listed}")
    found = cycles(graph)
    lines.append("")
    lines.append("cycles: " + ("; ".join(" <-> ".join(short(m) for m in c) for c in found)
                               if found else "none"))
    return "\n".join(lines)


def mermaid(graph):
    arrows = {"static": "-->", "deferred": "-.->", "dynamic": "-.->|importlib|"}
    lines = ["graph BT"]
    for module in sorted(graph):
        for target, kind in sorted(graph[module].items()):
            lines.append(f"  {short(module).replace('.', '/')} {arrows[kind]} "
                         f"{short(target).replace('.', '/')}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mermaid", action="store_true", help="print a Mermaid graph")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 (listing them) on an upward import from kernels/ or a cycle")
    parser.add_argument("--root", default=PACKAGE, help="the package folder (default: pygqa)")
    args = parser.parse_args(argv)
    graph = read_graph(args.root)
    if args.check:
        found = violations(graph)
        print("\n".join(found) or "no upward import from kernels/, no cycle")
        return 1 if found else 0
    print(mermaid(graph) if args.mermaid else text(graph))
    return 0


if __name__ == "__main__":
    sys.exit(main())
