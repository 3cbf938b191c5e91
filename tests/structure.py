"""The package's structure read from the code (ast): import cycles, private names crossing
modules, long modules and long functions. ``python tests/structure.py`` prints the table;
``tests/test_structure.py`` holds the targets.

An import counts wherever it is written (inside a function too), except the lazy imports of
the ``GPT`` convenience methods (``GPT.generate``, ``GPT.save*``), which reach up on purpose.
"""

import ast
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAZY_ALLOWED = {("npgpt/model.py", name) for name in ("generate", "stream", "save", "save_gpt2", "save_hf")}
LONG_MODULE, LONG_FUNCTION = 700, 80
EXEMPT_FUNCTIONS = {("npgpt/io/torch_pickle.py", "unpickle_state_dict")}   # the pickle opcode reader


def modules():
    """{dotted module name: path relative to the repo} for every module of the package."""
    found = {}
    for folder, _, files in os.walk(os.path.join(REPO, "npgpt")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.relpath(os.path.join(folder, name), REPO).replace(os.sep, "/")
                dotted = path[:-3].replace("/", ".")
                found[dotted[:-len(".__init__")] if dotted.endswith(".__init__") else dotted] = path
    return found


def _target(module, path, node):
    if node.level == 0:
        return node.module
    parts = module.split(".")
    if not path.endswith("__init__.py"):
        parts = parts[:-1]
    parts = parts[:len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def _imports(tree, path):
    """Every Import/ImportFrom node of a file but the allowed lazy ones."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and (path, node.name) in LAZY_ALLOWED:
            skip |= {id(n) for n in ast.walk(node)}
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skip]


def import_graph():
    """({module: set of npgpt modules it imports}, [(importer, module, private name)])."""
    mods = modules()
    edges, private = {m: set() for m in mods}, []
    for module, path in mods.items():
        tree = ast.parse(open(os.path.join(REPO, path), encoding="utf-8").read())
        for node in _imports(tree, path):
            if isinstance(node, ast.Import):
                edges[module] |= {a.name for a in node.names if a.name in mods}
                continue
            target = _target(module, path, node)
            if not target or target.split(".")[0] != "npgpt":
                continue
            for alias in node.names:
                if f"{target}.{alias.name}" in mods:
                    edges[module].add(f"{target}.{alias.name}")
                elif target in mods:
                    edges[module].add(target)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        private.append((module, target, alias.name))
    for module in edges:
        edges[module].discard(module)
    return edges, private


def cycles(edges):
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def long_modules():
    out = []
    for path in sorted(modules().values()):
        n = len(open(os.path.join(REPO, path), encoding="utf-8").read().splitlines())
        if n > LONG_MODULE and path != "npgpt/io/torch_pickle.py":
            out.append((path, n))
    return out


def long_functions():
    out = []
    for path in sorted(modules().values()):
        tree = ast.parse(open(os.path.join(REPO, path), encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > LONG_FUNCTION and (path, node.name) not in EXEMPT_FUNCTIONS:
                    out.append((path, node.name, n))
    return out


def main():
    edges, private = import_graph()
    found = cycles(edges)
    print(f"import cycles: {len(found)}")
    for component in found:
        inside = set(component)
        print("  " + ", ".join(component))
        for m in component:
            for t in sorted(edges[m] & inside):
                print(f"      {m} -> {t}")
    print(f"private names imported from another npgpt module: {len(private)}")
    for importer, module, name in private:
        print(f"  {importer} <- {module}.{name}")
    print(f"modules over {LONG_MODULE} lines (the pickle reader aside): {len(long_modules())}")
    for path, n in long_modules():
        print(f"  {path} {n}")
    print(f"functions over {LONG_FUNCTION} lines (the pickle reader aside): {len(long_functions())}")
    for path, name, n in long_functions():
        print(f"  {path}:{name} {n}")


if __name__ == "__main__":
    main()
