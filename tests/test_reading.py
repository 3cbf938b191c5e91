"""READING.md stays true: every function it lists exists with the line counts it gives, the
one-token route stays within its budget (≤ 160 lines of code in ≤ 6 files) and holds math
only (no input checks, no raise).

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
CHECKS = re.compile(r"\b(as_logits|as_history|check_option|positive_int|_as_ids|_as_mask|isinstance)\b")


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


def test_there_are_three_routes_one_token_training_and_beam_search():
    titles = list(routes())
    assert len(titles) >= 3
    assert [t.split(":")[0] for t in titles[:3]] == ["Route 1", "Route 2", "Route 3"]


def test_every_listed_function_exists_with_the_counts_given():
    wrong = []
    for title, rows in routes().items():
        for step, path, name, n_lines, n_code in rows:
            actual = counts(path, name)
            if actual != (n_lines, n_code):
                wrong.append(f"{title} step {step} `{path}:{name}`: READING.md says "
                             f"{n_lines} / {n_code}, the code has {actual[0]} / {actual[1]}")
    assert not wrong, "\n".join(wrong)


def test_the_one_token_route_is_short_and_holds_math_only():
    rows = next(iter(routes().values()))
    files = {path for _, path, _, _, _ in rows}
    code = sum(n_code for *_, n_code in rows)
    assert len(files) <= 6, sorted(files)
    assert code <= 160, code
    for _, path, name, _, _ in rows:
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
