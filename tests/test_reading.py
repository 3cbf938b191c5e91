"""READING.md stays true: every function it lists exists with the line counts it gives, every
npgpt function a listed function calls (its decorators included) is listed on the same route
(or on the route it builds on),
and the one-token route stays within its budget (≤ 160 lines of math in ≤ 8 files) and holds
math only (no input checks, no raise) apart from the checks it names (``CHECKERS``).

Counts: "lines" runs from the ``def`` line to the function's last line; "code" leaves out
blank lines, comment lines and the docstring. ``python tests/test_reading.py`` prints every
route's rows as READING.md should have them; ``--write`` puts the counts into READING.md.
"""

import ast
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READING = os.path.join(REPO, "READING.md")
ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*`([\w/.]+\.py):([\w.]+)`\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|")
# functions whose job is a check (the decorator that checks a sampling transform's inputs,
# draw's source of uniforms, an error message's shortened value): listed, but the checks
# they call are not on the route
CHECKERS = {"npgpt/_checks.py:transform", "npgpt/sampling.py:_uniforms", "npgpt/_repr.py:short_repr"}
CHECKERS.add("npgpt/_run.py:Run.__init__")          # generate's checks of a call's inputs
# a special function, like np.exp: READING.md says where it is, a reader need not open it
SPECIAL = {"npgpt/nn/erf.py:erf"}
# the routes held closed over their callees, and the route each one builds on
CLOSED = {"Route 1": None,
          "Route 2": "Route 1",                    # training runs route 1's forward pass
          "Route 3": None,                         # beam search
          "Route 4": "Route 1",                    # GPT-2 -> Llama: route 1's other parts
          "Route 5": "Route 1"}                    # what generate runs
CHECKS = re.compile(r"\b(as_logits|as_history|check_option|positive_int|_?as_ids|_?as_mask|isinstance)\b")


def find(path, qualname):
    """The AST node of ``qualname`` ("f" or "Class.method") in a file of the repository."""
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        source = f.read()
    node = ast.parse(source)
    for part in qualname.split("."):
        node = next(n for n in node.body
                    if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part)
    return node, source.splitlines()


def counts(path, qualname):
    """(lines, code lines) of a function."""
    node, lines = find(path, qualname)
    body = lines[node.lineno - 1:node.end_lineno]
    skip = set()
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        skip = set(range(first.lineno, first.end_lineno + 1))
    code = [text for number, text in enumerate(body, node.lineno)
            if number not in skip and text.strip() and not text.strip().startswith("#")]
    return len(body), len(code)


def _module_file(importer, module, level):
    """The repository path of ``from {'.' * level}{module} import ...`` written in file
    ``importer``, or None outside npgpt."""
    if level == 0:
        if not (module or "").startswith("npgpt"):
            return None
        parts = module.split(".")
    else:
        parts = importer[:-3].split("/")[:-level] + (module.split(".") if module else [])
    for candidate in ("/".join(parts) + ".py", "/".join(parts) + "/__init__.py"):
        if os.path.exists(os.path.join(REPO, candidate)):
            return candidate
    return None


def resolve(path, name, depth=0):
    """``path:name`` of the module-level function that ``name`` means in file ``path`` (its
    own def, or one imported from an npgpt module, followed through re-exports), else None."""
    tree = ast.parse(open(os.path.join(REPO, path), encoding="utf-8").read())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return f"{path}:{name}"
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and depth < 5:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = _module_file(path, node.module, node.level)
                    return source and resolve(source, alias.name, depth + 1)
    return None


def callees(path, qualname):
    """Every npgpt function that function ``path:qualname`` calls by name (decorators too),
    as ``path:name``; calls of local helpers, methods and NumPy are not npgpt functions."""
    node, _ = find(path, qualname)
    found = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name):
            target = resolve(path, call.func.id)
            if target and target != f"{path}:{qualname}":
                found.add(target)
    return found


def routes():
    """{route title: [(step, path, qualname, lines, code)]} from READING.md's tables."""
    out, title = {}, None
    with open(READING, encoding="utf-8") as f:
        for line in f:
            if line.startswith("## "):
                title = line[3:].strip()
            match = ROW.match(line)
            if match:
                step, path, name, n_lines, n_code = match.groups()
                out.setdefault(title, []).append((int(step), path, name, int(n_lines), int(n_code)))
    return out


def test_readme_links_to_the_reading_routes():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        assert "(READING.md)" in f.read()


def test_there_are_five_routes_each_held_closed_over_its_callees():
    titles = [t.split(":")[0] for t in routes()]
    assert titles == ["Route 1", "Route 2", "Route 3", "Route 4", "Route 5"]
    assert set(CLOSED) == set(titles)


def test_every_listed_function_exists_with_the_counts_given():
    wrong = []
    for title, rows in routes().items():
        for step, path, name, n_lines, n_code in rows:
            actual = counts(path, name)
            if actual != (n_lines, n_code):
                wrong.append(f"{title} step {step} `{path}:{name}`: READING.md says "
                             f"{n_lines} / {n_code}, the code has {actual[0]} / {actual[1]}")
    assert not wrong, "\n".join(wrong)


def listed(rows):
    return {f"{path}:{name}" for _, path, name, _, _ in rows}


def test_every_route_lists_every_npgpt_function_its_functions_call():
    by_number = {title.split(":")[0]: rows for title, rows in routes().items()}
    missing = []
    for number, base in CLOSED.items():
        known = listed(by_number[number]) | SPECIAL | (listed(by_number[base]) if base else set())
        for step, path, name, _, _ in by_number[number]:
            if f"{path}:{name}" in CHECKERS:
                continue
            missing += [f"{number} step {step} `{path}:{name}` calls `{callee}`, not listed"
                        for callee in sorted(callees(path, name) - known)]
    assert not missing, "\n".join(missing)


def test_callees_are_found_through_imports_decorators_and_re_exports():
    assert "npgpt/_checks.py:transform" in callees("npgpt/sampling.py", "top_p")
    assert "npgpt/nn/layers.py:linear_forward" in callees("npgpt/model.py", "gpt_forward")
    assert "npgpt/nn/rope.py:rope_tables" in callees("npgpt/model.py", "embed_rotary")
    assert resolve("npgpt/model.py", "KVCache") is None                  # a class, not a function
    assert resolve("npgpt/model.py", "parameter_shapes") == "npgpt/params.py:parameter_shapes"


def test_the_one_token_route_is_short_and_holds_math_only():
    rows = next(iter(routes().values()))
    files = {path for _, path, _, _, _ in rows}
    math = sum(n_code for _, path, name, _, n_code in rows if f"{path}:{name}" not in CHECKERS)
    assert len(files) <= 8, sorted(files)
    assert math <= 160, math
    with open(READING, encoding="utf-8") as f:
        assert f"the math is {math} lines" in f.read(), f"READING.md should say: the math is {math} lines"
    for _, path, name, _, _ in rows:
        if f"{path}:{name}" in CHECKERS:
            continue
        node, lines = find(path, name)
        assert not any(isinstance(n, ast.Raise) for n in ast.walk(node)), f"{name} raises"
        body = "\n".join(lines[node.body[0].end_lineno:node.end_lineno])
        assert not CHECKS.search(body), f"{name} checks its inputs: {CHECKS.search(body).group()}"


def test_the_totals_stated_match_the_tables():
    with open(READING, encoding="utf-8") as f:
        text = f.read()
    for title, rows in routes().items():
        files = len({path for _, path, _, _, _ in rows})
        code = sum(r[4] for r in rows)
        total = sum(r[3] for r in rows)
        stated = f"{len(rows)} functions in {files} file{'s' if files > 1 else ''}: {total} lines, {code} of code"
        assert stated in text, f"{title}: expected the sentence '{stated}'"


def rewrite_counts():
    """READING.md with every row's counts and every route's totals taken from the code."""
    with open(READING, encoding="utf-8") as f:
        lines = f.read().splitlines()
    totals, title = {}, None
    for i, line in enumerate(lines):
        if line.startswith("## "):
            title = line[3:].strip()
        match = ROW.match(line)
        if match:
            path, name = match.group(2), match.group(3)
            n_lines, n_code = counts(path, name)
            cells = line.split("|")
            cells[3], cells[4] = f" {n_lines} ", f" {n_code} "
            lines[i] = "|".join(cells)
            totals.setdefault(title, []).append((path, n_lines, n_code))
    text = "\n".join(lines) + "\n"
    for title, rows in totals.items():
        files = len({path for path, _, _ in rows})
        sentence = (f"{len(rows)} functions in {files} file{'s' if files > 1 else ''}: "
                    f"{sum(r[1] for r in rows)} lines, {sum(r[2] for r in rows)} of code")
        found = SUMMARY.search(text, text.index("## " + title))
        text = text[:found.start()] + sentence + text[found.end():]
    return text


SUMMARY = re.compile(r"\d+ functions in \d+ files?: \d+ lines, \d+ of code")

if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        text = rewrite_counts()
        with open(READING, "w", encoding="utf-8") as f:
            f.write(text)
    for title, rows in routes().items():
        print(f"## {title}")
        for step, path, name, _, _ in rows:
            n_lines, n_code = counts(path, name)
            print(f"| {step} | `{path}:{name}` | {n_lines} | {n_code} |")
        files = len({r[1] for r in rows})
        total = sum(counts(r[1], r[2])[0] for r in rows)
        code = sum(counts(r[1], r[2])[1] for r in rows)
        print(f"{len(rows)} functions in {files} file{'s' if files > 1 else ''}: {total} lines, {code} of code\n")
