"""Chat templates: the small part of Jinja that models' chat templates use, rendered by hand.

An instruct model only behaves when its prompt follows its own chat template, which it ships as
Jinja source (``tokenizer.chat_template`` in a GGUF file, ``chat_template`` in
``tokenizer_config.json``). transformers renders it with jinja2's sandbox and
``trim_blocks=True, lstrip_blocks=True``; this module renders the same subset with nothing but
the standard library, in three stages read top to bottom:

1. the **lexer** cuts the source into text and tags, applying the whitespace rules
   (``{%-`` / ``-%}``, trim_blocks, lstrip_blocks), and tags into tokens;
2. the **parser** builds a tree of statement and expression nodes (plain tuples);
3. the **evaluator** walks the tree with the values passed in (``messages``, ``bos_token``, ...).

A template is data from a file, so it is treated as hostile: it reaches only the values passed
in, calls only the functions, filters and methods listed below (no ``__class__``, no
``str.format``), and stops with a :class:`TemplateError` past a budget of steps, output size or
nesting. Anything outside the subset is a :class:`TemplateError` naming the construct, its line
and column; no other exception escapes :func:`render`.

>>> render("{% for m in messages %}<{{ m.role }}>{{ m['content'] | trim }}\\n{% endfor %}",
...        messages=[{"role": "user", "content": " Hi "}])
'<user>Hi\\n'
"""

import re
from datetime import datetime

__all__ = ["TemplateError", "Template", "render"]

MAX_OUTPUT = 1 << 20        # characters a rendering may produce
MAX_STEPS = 2_000_000       # nodes a rendering may evaluate (loops count every iteration)
MAX_DEPTH = 40              # nesting of blocks, brackets and macro calls


from ._values import (FILTERS, TESTS, Loop, Macro, Namespace, Record, TemplateError, Undefined,
                      allowed_attribute, binop, is_undefined, item_of, template_callable, to_text,
                      unary)
from ._values import fail as _fail


# ---------------------------------------------------------------------------------------------
# 1. Lexer: text and tags, then the tokens inside a tag
# ---------------------------------------------------------------------------------------------

_TAG_START = re.compile(r"\{([{%#])([-+]?)")
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<float>\d[\d_]*\.\d[\d_]*(?:[eE][+-]?\d+)?|\d[\d_]*[eE][+-]?\d+)
  | (?P<int>\d[\d_]*)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<op>//|\*\*|==|!=|>=|<=|[-+*/%~<>=.,:|()\[\]{}])
""", re.VERBOSE | re.DOTALL)
_END = {"{": "}}", "%": "%}"}


def _position(source, index):
    line = source.count("\n", 0, index) + 1
    return line, index - (source.rfind("\n", 0, index) + 1) + 1


def lex(source):
    """Cut ``source`` into ``("text", str, pos)``, ``("output", tokens, pos)`` and
    ``("block", tokens, pos)`` items, whitespace rules applied.

    A token is ``(kind, value, pos)`` with kind ``name``, ``int``, ``float``, ``string`` or ``op``.

    >>> [(kind, pos) for kind, _, pos in lex("a\\n  {% if x %}\\nb{{ y }}")]   # the tag's line is cut
    [('text', (1, 1)), ('block', (2, 3)), ('text', (3, 1)), ('output', (3, 2))]
    """
    if not isinstance(source, str):
        raise TemplateError(f"a chat template must be a string, got {type(source).__name__}")
    source = re.sub(r"\r\n|\r", "\n", source)
    if source.endswith("\n"):                       # jinja2's keep_trailing_newline=False
        source = source[:-1]
    items, index, line_start, strip_next = [], 0, True, False
    while index < len(source):
        match = _TAG_START.search(source, index)
        text = source[index:match.start() if match else len(source)]
        if match:
            kind, sign = match.group(1), match.group(2)
            if sign == "-":
                text = text.rstrip()
            elif sign != "+" and kind in "%#":      # lstrip_blocks: a tag alone on its line
                cut = text.rfind("\n") + 1
                if (cut or line_start) and not text[cut:].strip(" \t"):
                    text = text[:cut]
        if strip_next:                              # the tag before ended with -%} or -}}
            text, strip_next = text.lstrip(), False
        if text:
            items.append(("text", text, _position(source, index)))
        if not match:
            break
        pos = _position(source, match.start())
        if kind == "#":
            end = source.find("#}", match.end())
            if end < 0:
                _fail("a comment opened here is never closed with '#}'", pos)
            close_sign, index = source[end - 1] if end > match.end() else "", end + 2
        else:
            tokens, index, close_sign = _lex_tag(source, match.end(), _END[kind], pos)
            if kind == "%" and tokens and tokens[0][1] == "raw" and len(tokens) == 1:
                index, raw = _lex_raw(source, index, pos)
                items.append(("text", raw, pos))
            else:
                items.append(("output" if kind == "{" else "block", tokens, pos))
        if close_sign == "-":
            strip_next = True
        elif kind in "%#" and close_sign != "+" and source.startswith("\n", index):
            index += 1                              # trim_blocks: the newline after a block tag
        line_start = source[index - 1:index] == "\n"
    return items


def _lex_tag(source, index, end, pos):
    """The tokens of one tag from ``index`` to its closing ``end`` (outside strings)."""
    tokens = []
    while True:
        for close in ("-" + end, "+" + end, end):
            if source.startswith(close, index):
                return tokens, index + len(close), close[0] if len(close) == 3 else ""
        match = _TOKEN.match(source, index)
        if match is None:
            if index >= len(source):
                _fail(f"a tag opened here is never closed with {end!r}", pos)
            _fail(f"unexpected character {source[index]!r}", _position(source, index))
        kind = match.lastgroup
        if kind != "ws":
            value = match.group()
            if kind == "string":
                value = _unescape(value[1:-1], _position(source, index))
            elif kind in ("int", "float"):
                value = (int if kind == "int" else float)(value.replace("_", ""))
            tokens.append((kind, value, _position(source, index)))
        index = match.end()


def _unescape(body, pos):
    try:
        return body.encode("ascii", "backslashreplace").decode("unicode-escape")
    except UnicodeDecodeError as error:
        _fail(f"bad escape in a string: {error.reason}", pos)


def _lex_raw(source, index, pos):
    match = re.compile(r"\{%-?\s*endraw\s*-?%\}").search(source, index)
    if match is None:
        _fail("'raw' is never closed with '{% endraw %}'", pos)
    return match.end(), source[index:match.start()]


# ---------------------------------------------------------------------------------------------
# 2. Parser: statements and expressions as tuples ("kind", pos, ...)
# ---------------------------------------------------------------------------------------------

_STATEMENTS = {"if", "for", "set", "macro", "call", "filter", "break", "continue", "generation"}
_ENDS = {"if": ("elif", "else", "endif"), "for": ("else", "endfor"), "set": ("endset",),
         "macro": ("endmacro",), "call": ("endcall",), "filter": ("endfilter",),
         "generation": ("endgeneration",)}
_COMPARE = {"==", "!=", "<", ">", "<=", ">="}


class _Tokens:
    """A cursor over one tag's tokens."""

    def __init__(self, tokens, pos):
        self.tokens, self.i, self.pos = tokens, 0, pos

    def peek(self, offset=0):
        i = self.i + offset
        return self.tokens[i] if i < len(self.tokens) else ("end", None, self.pos)

    def next(self):
        token = self.peek()
        self.i += 1
        return token

    def at(self, value, kind=None):
        token = self.peek()
        return token[1] == value and token[0] in ((kind,) if kind else ("op", "name"))

    def take(self, value):
        if self.at(value):
            self.i += 1
            return True
        return False

    def expect(self, value):
        token = self.next()
        if token[1] != value or token[0] not in ("op", "name"):
            _fail(f"expected {value!r}, found {_describe(token)}", token[2])

    def name(self):
        token = self.next()
        if token[0] != "name":
            _fail(f"expected a name, found {_describe(token)}", token[2])
        return token[1]

    def done(self):
        token = self.peek()
        if token[0] != "end":
            _fail(f"unexpected {_describe(token)}", token[2])


def _describe(token):
    return "the end of the tag" if token[0] == "end" else repr(token[1])


class _Parser:
    def __init__(self, items):
        self.items, self.i, self.depth = items, 0, 0

    def parse(self):
        body, end = self.body(())
        if end is not None:
            _fail(f"unexpected '{end[0]}'", end[1].pos)
        return body

    def body(self, ends):
        """Nodes up to a block tag whose first word is in ``ends``: (nodes, (word, cursor))."""
        nodes = []
        while self.i < len(self.items):
            kind, value, pos = self.items[self.i]
            self.i += 1
            if kind == "text":
                nodes.append(("text", pos, value))
            elif kind == "output":
                tokens = _Tokens(value, pos)
                node = self.expression(tokens)
                tokens.done()
                nodes.append(("output", pos, node))
            else:
                tokens = _Tokens(value, pos)
                word = tokens.peek()
                if word[0] != "name":
                    _fail(f"a tag must start with a name, found {_describe(word)}", word[2])
                if word[1] in ends:
                    tokens.next()
                    return nodes, (word[1], tokens)
                if word[1] not in _STATEMENTS:
                    _fail(f"unsupported tag '{word[1]}'", word[2])
                tokens.next()
                nodes.append(self.statement(word[1], tokens, pos))
        if ends:
            _fail(f"missing '{ends[-1]}'", self.items[-1][2] if self.items else (1, 1))
        return nodes, None

    def block(self, word, pos):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            _fail(f"blocks nested more than {MAX_DEPTH} deep", pos)
        body, end = self.body(_ENDS[word])
        self.depth -= 1
        return body, end

    def statement(self, word, tokens, pos):
        if word in ("break", "continue"):
            tokens.done()
            return (word, pos)
        if word == "if":
            branches, default = [], []
            test = self.expression(tokens)
            tokens.done()
            while True:
                body, (end, tokens) = self.block("if", pos)
                branches.append((test, body))
                if end == "elif":
                    test = self.expression(tokens)
                    tokens.done()
                    continue
                tokens.done()
                if end == "else":
                    default, (end, tokens) = self.block("if", pos)
                    if end != "endif":
                        _fail(f"expected 'endif', found '{end}'", tokens.pos)
                    tokens.done()
                return ("if", pos, branches, default)
        if word == "for":
            target = self.target(tokens)
            tokens.expect("in")
            iterable = self.expression(tokens, conditional=False)
            condition = self.expression(tokens) if tokens.take("if") else None
            if tokens.at("recursive"):
                _fail("unsupported 'recursive' loop", tokens.peek()[2])
            tokens.done()
            body, (end, end_tokens) = self.block("for", pos)
            default = []
            if end == "else":
                end_tokens.done()
                default, (end, end_tokens) = self.block("for", pos)
            end_tokens.done()
            return ("for", pos, target, iterable, condition, body, default)
        if word == "set":
            target = self.target(tokens, attribute=True)
            if tokens.take("="):
                value = self.expression(tokens)
                tokens.done()
                return ("set", pos, target, value)
            filters = self.filters(tokens)
            tokens.done()
            body, (_, end_tokens) = self.block("set", pos)
            end_tokens.done()
            return ("setblock", pos, target, body, filters)
        if word == "macro":
            name = tokens.name()
            params = self.params(tokens)
            tokens.done()
            body, (_, end_tokens) = self.block("macro", pos)
            end_tokens.done()
            return ("macro", pos, name, params, body)
        if word == "call":
            caller_params = self.params(tokens) if tokens.at("(") else []
            call = self.expression(tokens)
            if call[0] != "call":
                _fail("'call' needs a macro call", pos)
            tokens.done()
            body, (_, end_tokens) = self.block("call", pos)
            end_tokens.done()
            return ("callblock", pos, call, caller_params, body)
        if word == "filter":
            filters = self.filters(tokens, first=True)
            tokens.done()
            body, (_, end_tokens) = self.block("filter", pos)
            end_tokens.done()
            return ("filterblock", pos, filters, body)
        tokens.done()                                           # generation (transformers' tag)
        body, (_, end_tokens) = self.block("generation", pos)
        end_tokens.done()
        return ("block", pos, body)

    def target(self, tokens, attribute=False):
        names = []
        while True:
            pos = tokens.peek()[2]
            name = tokens.name()
            if attribute and tokens.take("."):
                return ("attrtarget", pos, name, tokens.name())
            names.append(name)
            if not tokens.take(","):
                break
        return ("names", pos, names)

    def params(self, tokens):
        tokens.expect("(")
        params = []
        while not tokens.take(")"):
            if params:
                tokens.expect(",")
            name = tokens.name()
            params.append((name, self.expression(tokens) if tokens.take("=") else None))
        return params

    def filters(self, tokens, first=False):
        filters = []
        while first or tokens.take("|"):
            first = False
            pos = tokens.peek()[2]
            name = tokens.name()
            args, kwargs = self.arguments(tokens) if tokens.at("(") else ([], [])
            filters.append((name, pos, args, kwargs))
        return filters

    # Expressions, loosest first, as jinja2 binds them: a if b else c; or; and; not; comparisons
    # and 'in'; + -; ~; * / // %; **; unary - +; then postfix . [] () with | filters and 'is' tests.

    def expression(self, tokens, conditional=True):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            _fail(f"expressions nested more than {MAX_DEPTH} deep", tokens.peek()[2])
        node = self.or_(tokens)
        if conditional and tokens.at("if"):
            pos = tokens.next()[2]
            test = self.or_(tokens)
            other = self.expression(tokens) if tokens.take("else") else None
            node = ("cond", pos, test, node, other)
        self.depth -= 1
        return node

    def or_(self, tokens):
        node = self.and_(tokens)
        while tokens.at("or"):
            node = ("or", tokens.next()[2], node, self.and_(tokens))
        return node

    def and_(self, tokens):
        node = self.not_(tokens)
        while tokens.at("and"):
            node = ("and", tokens.next()[2], node, self.not_(tokens))
        return node

    def not_(self, tokens):
        if tokens.at("not"):
            return ("not", tokens.next()[2], self.not_(tokens))
        return self.compare(tokens)

    def compare(self, tokens):
        node = self.sum(tokens)
        while True:
            token = tokens.peek()
            if token[0] == "op" and token[1] in _COMPARE:
                tokens.next()
                node = ("binop", token[2], token[1], node, self.sum(tokens))
            elif tokens.at("in"):
                tokens.next()
                node = ("binop", token[2], "in", node, self.sum(tokens))
            elif tokens.at("not") and tokens.peek(1)[1] == "in":
                tokens.next(), tokens.next()
                node = ("not", token[2], ("binop", token[2], "in", node, self.sum(tokens)))
            else:
                return node

    def binary(self, tokens, operators, operand):
        """``operand (op operand)*`` for ``op`` in ``operators``, grouped from the left."""
        node = operand(tokens)
        while tokens.peek()[0] == "op" and tokens.peek()[1] in operators:
            _, op, pos = tokens.next()
            node = ("binop", pos, op, node, operand(tokens))
        return node

    def sum(self, tokens):
        return self.binary(tokens, ("+", "-"), self.concat)

    def concat(self, tokens):
        return self.binary(tokens, ("~",), self.product)

    def product(self, tokens):
        return self.binary(tokens, ("*", "/", "//", "%"), self.power)

    def power(self, tokens):
        return self.binary(tokens, ("**",), self.unary)

    def unary(self, tokens, with_filters=True):
        token = tokens.peek()
        if token[0] == "op" and token[1] in ("-", "+"):
            tokens.next()
            node = ("neg" if token[1] == "-" else "pos", token[2], self.unary(tokens, False))
        else:
            node = self.postfix(tokens, self.primary(tokens))
        return self.filter_tests(tokens, node) if with_filters else node

    def primary(self, tokens):
        kind, value, pos = tokens.next()
        if kind == "name":
            constants = {"true": True, "false": False, "none": None,
                         "True": True, "False": False, "None": None}
            return ("const", pos, constants[value]) if value in constants else ("name", pos, value)
        if kind == "string":
            while tokens.peek()[0] == "string":             # adjacent strings join
                value += tokens.next()[1]
            return ("const", pos, value)
        if kind in ("int", "float"):
            return ("const", pos, value)
        if value == "(" and kind == "op":
            if tokens.take(")"):
                return ("tuple", pos, [])
            node = self.expression(tokens)
            if tokens.at(","):
                items = [node]
                while tokens.take(",") and not tokens.at(")"):
                    items.append(self.expression(tokens))
                node = ("tuple", pos, items)
            tokens.expect(")")
            return node
        if value == "[" and kind == "op":
            return ("list", pos, self.sequence(tokens, "]"))
        if value == "{" and kind == "op":
            pairs = []
            while not tokens.take("}"):
                if pairs:
                    tokens.expect(",")
                    if tokens.take("}"):
                        break
                key = self.expression(tokens)
                tokens.expect(":")
                pairs.append((key, self.expression(tokens)))
            return ("dict", pos, pairs)
        _fail(f"unexpected {_describe((kind, value, pos))}", pos)

    def sequence(self, tokens, close):
        items = []
        while not tokens.take(close):
            if items:
                tokens.expect(",")
                if tokens.take(close):
                    break
            items.append(self.expression(tokens))
        return items

    def postfix(self, tokens, node):
        while True:
            token = tokens.peek()
            if tokens.at(".", "op"):
                tokens.next()
                attr = tokens.next()
                if attr[0] not in ("name", "int"):
                    _fail(f"expected an attribute name, found {_describe(attr)}", attr[2])
                node = (("getattr", token[2], node, attr[1]) if attr[0] == "name"
                        else ("getitem", token[2], node, ("const", attr[2], attr[1])))
            elif tokens.at("[", "op"):
                tokens.next()
                node = ("getitem", token[2], node, self.subscript(tokens))
                tokens.expect("]")
            elif tokens.at("(", "op"):
                args, kwargs = self.arguments(tokens)
                node = ("call", node[1], node, args, kwargs)          # at the callee's position
            else:
                return node

    def subscript(self, tokens):
        """``[key]`` or a slice ``[start:stop:step]`` (each part optional)."""
        pos = tokens.peek()[2]
        start = None if tokens.at(":", "op") else self.expression(tokens)
        if not tokens.take(":"):
            return start
        stop = None if tokens.at(":", "op") or tokens.at("]", "op") else self.expression(tokens)
        step = None
        if tokens.take(":") and not tokens.at("]", "op"):
            step = self.expression(tokens)
        return ("slice", pos, start, stop, step)

    def arguments(self, tokens):
        tokens.expect("(")
        args, kwargs = [], []
        while not tokens.take(")"):
            if args or kwargs:
                tokens.expect(",")
                if tokens.take(")"):
                    break
            if tokens.peek()[0] == "name" and tokens.peek(1)[1] == "=" and tokens.peek(1)[0] == "op":
                name = tokens.next()[1]
                tokens.next()
                kwargs.append((name, self.expression(tokens)))
            else:
                args.append(self.expression(tokens))
        return args, kwargs

    def filter_tests(self, tokens, node):
        while True:
            if tokens.at("|", "op"):
                tokens.next()
                for name, pos, args, kwargs in self.filters(tokens, first=True):
                    node = ("filter", pos, name, node, args, kwargs)
            elif tokens.at("is", "name"):
                pos = tokens.next()[2]
                negate = tokens.take("not")
                name = tokens.name()
                args, kwargs = [], []
                if tokens.at("(", "op"):
                    args, kwargs = self.arguments(tokens)
                elif tokens.peek()[0] in ("string", "int", "float") or (
                        tokens.peek()[0] == "name" and tokens.peek()[1] not in ("else", "or", "and", "if")):
                    args = [self.postfix(tokens, self.primary(tokens))]
                node = ("test", pos, name, node, args, kwargs)
                if negate:
                    node = ("not", pos, node)
            else:
                return node


def parse(source):
    """The tree of ``source`` (a list of statement nodes).

    >>> parse("{{ x | upper }}")
    [('output', (1, 1), ('filter', (1, 8), 'upper', ('name', (1, 4), 'x'), [], []))]
    """
    try:
        return _Parser(lex(source)).parse()
    except RecursionError:
        raise TemplateError("the template is nested too deeply") from None


# ---------------------------------------------------------------------------------------------
# 3. Evaluator
# ---------------------------------------------------------------------------------------------

_DICT_VIEWS = (type({}.items()), type({}.keys()), type({}.values()))


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Renderer:
    def __init__(self, globals_):
        self.scopes = [globals_]
        self.steps = 0
        self.size = 0
        self.calls = 0

    # scope -----------------------------------------------------------------------------------
    def lookup(self, name):
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return Undefined(name)

    def tick(self, pos):
        self.steps += 1
        if self.steps > MAX_STEPS:
            _fail(f"the template ran more than {MAX_STEPS:,} steps (a loop without end?)", pos)

    # statements ------------------------------------------------------------------------------
    def run(self, nodes, out):
        for node in nodes:
            self.tick(node[1])
            kind = node[0]
            if kind == "text":
                self.emit(out, node[2], node[1])
            elif kind == "output":
                self.emit(out, to_text(self.eval(node[2]), node[1]), node[1])
            elif kind == "if":
                for test, body in node[2]:
                    if self.truth(self.eval(test), test[1]):
                        self.run(body, out)
                        break
                else:
                    self.run(node[3], out)
            elif kind == "for":
                self.run_for(node, out)
            elif kind == "set":
                self.assign(node[2], self.eval(node[3]))
            elif kind == "setblock":
                self.assign(node[2], self.filtered(node[3], node[4]))
            elif kind == "macro":
                self.scopes[-1][node[2]] = Macro(node[2], node[3], node[4], self)
            elif kind == "callblock":
                call = node[2]
                caller = Macro("caller", node[3], node[4], self)
                self.emit(out, to_text(self.call(call, extra={"caller": caller}), node[1]), node[1])
            elif kind == "filterblock":
                self.emit(out, to_text(self.filtered(node[3], node[2]), node[1]), node[1])
            elif kind == "block":
                self.run(node[2], out)
            elif kind == "break":
                raise _Break
            else:
                raise _Continue

    def emit(self, out, text, pos):
        self.size += len(text)
        if self.size > MAX_OUTPUT:
            _fail(f"the rendering is longer than {MAX_OUTPUT:,} characters", pos)
        out.append(text)

    def capture(self, body):
        out = []
        self.run(body, out)
        return "".join(out)

    def filtered(self, body, filters):
        """The text ``body`` renders, through ``filters`` (a set block's or a filter block's)."""
        text = self.capture(body)
        for name, pos, args, kwargs in filters:
            text = self.apply_filter(name, pos, text, args, kwargs)
        return text

    def run_for(self, node, out):
        _, pos, target, iterable, condition, body, default = node
        items = self.iterate(self.eval(iterable), pos)
        if condition is not None:
            kept = []
            for item in items:
                self.tick(pos)
                self.scopes.append({})
                self.assign(target, item, local=True)
                keep = self.truth(self.eval(condition), pos)
                self.scopes.pop()
                if keep:
                    kept.append(item)
            items = kept
        if not items:
            self.run(default, out)
            return
        loop = Loop(items)
        for index, item in enumerate(items):
            self.tick(pos)
            self.scopes.append({"loop": loop.at(index)})
            self.assign(target, item, local=True)
            try:
                self.run(body, out)
            except _Continue:
                pass
            except _Break:
                break
            finally:
                self.scopes.pop()

    def iterate(self, value, pos):
        if is_undefined(value):
            return []
        if isinstance(value, dict):
            return list(value)
        if isinstance(value, (list, tuple, str, range, _DICT_VIEWS)):
            if len(value) > MAX_STEPS:
                _fail(f"cannot loop over {len(value):,} items", pos)
            return list(value)
        _fail(f"cannot loop over a {type(value).__name__}", pos)

    def assign(self, target, value, local=False):
        if target[0] == "attrtarget":
            namespace = self.lookup(target[2])
            if not isinstance(namespace, Namespace):
                _fail(f"'{target[2]}' is not a namespace(); cannot set '{target[2]}.{target[3]}'", target[1])
            namespace.set(target[3], value, target[1])
            return
        names = target[2]
        if len(names) == 1:
            values = [value]
        else:
            values = self.iterate(value, target[1])
            if len(values) != len(names):
                _fail(f"cannot unpack {len(values)} values into {len(names)} names", target[1])
        for name, item in zip(names, values):
            self.scopes[-1][name] = item

    # expressions -----------------------------------------------------------------------------
    def truth(self, value, pos):
        try:
            return bool(value)
        except TemplateError:
            raise
        except Exception as error:
            _fail(f"cannot test the truth of {type(value).__name__}: {error}", pos)

    def eval(self, node):
        self.tick(node[1])
        kind, pos = node[0], node[1]
        if kind == "const":
            return node[2]
        if kind == "name":
            return self.lookup(node[2])
        if kind in ("list", "tuple"):
            items = [self.eval(item) for item in node[2]]
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            result = {}
            for key, value in node[2]:
                key = self.eval(key)
                try:
                    result[key] = self.eval(value)
                except TypeError:
                    _fail(f"a {type(key).__name__} cannot be a dict key", pos)
            return result
        if kind == "and":
            left = self.eval(node[2])
            return self.eval(node[3]) if self.truth(left, pos) else left
        if kind == "or":
            left = self.eval(node[2])
            return left if self.truth(left, pos) else self.eval(node[3])
        if kind == "not":
            return not self.truth(self.eval(node[2]), pos)
        if kind == "cond":
            if self.truth(self.eval(node[2]), pos):
                return self.eval(node[3])
            return self.eval(node[4]) if node[4] is not None else Undefined("the else branch")
        if kind == "binop":
            return binop(node[2], self.eval(node[3]), self.eval(node[4]), pos)
        if kind in ("neg", "pos"):
            return unary(kind, self.eval(node[2]), pos)
        if kind == "getattr":
            return self.get(self.eval(node[2]), node[3], pos, attribute_first=True)
        if kind == "getitem":
            key = node[3]
            if key[0] == "slice":
                value = self.eval(node[2])
                bounds = [None if part is None else self.eval(part) for part in key[2:]]
                return self.slice(value, bounds, pos)
            return self.get(self.eval(node[2]), self.eval(key), pos, attribute_first=False)
        if kind == "call":
            return self.call(node)
        if kind == "filter":
            return self.apply_filter(node[2], pos, self.eval(node[3]), node[4], node[5])
        if kind == "test":
            test = TESTS.get(node[2])
            if test is None:
                _fail(f"unsupported test '{node[2]}'", pos)
            args = [self.eval(arg) for arg in node[4]]
            return self.guard(test, pos, f"test '{node[2]}'", self.eval(node[3]), *args)
        _fail(f"unsupported expression '{kind}'", pos)

    def get(self, value, key, pos, attribute_first):
        """``value.key`` (a listed method first, then the item) or ``value[key]`` (the other way)."""
        if is_undefined(value):
            _fail(f"{value.name} is undefined, so it has no {key!r}", pos)
        if isinstance(value, Record):
            return value.get(key)
        if attribute_first and isinstance(key, str):
            method = allowed_attribute(value, key, pos)
            if method is not None:
                return method
        found, item = item_of(value, key)
        if found:
            return item
        if not attribute_first and isinstance(key, str):
            method = allowed_attribute(value, key, pos)
            if method is not None:
                return method
        return Undefined(repr(key))

    def slice(self, value, bounds, pos):
        if not isinstance(value, (list, tuple, str)):
            _fail(f"cannot slice a {type(value).__name__}", pos)
        for bound in bounds:
            if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool)):
                _fail(f"slice bounds must be integers, got {bound!r}", pos)
        if bounds[2] == 0:
            _fail("a slice step cannot be zero", pos)
        return value[slice(*bounds)]

    def call(self, node, extra=None):
        _, pos, function, arg_nodes, kwarg_nodes = node
        function = self.eval(function)
        args = [self.eval(arg) for arg in arg_nodes]
        kwargs = {name: self.eval(value) for name, value in kwarg_nodes}
        if extra:
            kwargs.update(extra)
        if isinstance(function, Macro):
            self.calls += 1
            if self.calls > MAX_DEPTH:
                _fail(f"macros call each other more than {MAX_DEPTH} deep", pos)
            try:
                return function.call(args, kwargs, pos)
            finally:
                self.calls -= 1
        if not getattr(function, "_template_callable", False):
            _fail(f"{to_text(function, pos)[:40]!r} is not callable", pos)
        return self.guard(function, pos, getattr(function, "__name__", "the call"), *args, **kwargs)

    def apply_filter(self, name, pos, value, arg_nodes, kwarg_nodes):
        function = FILTERS.get(name)
        if function is None:
            _fail(f"unsupported filter '{name}'", pos)
        args = [self.eval(arg) for arg in arg_nodes]
        kwargs = {key: self.eval(arg) for key, arg in kwarg_nodes}
        return self.guard(function, pos, f"filter '{name}'", value, *args, **kwargs)

    @staticmethod
    def guard(function, pos, what, *args, **kwargs):
        """``function(*args, **kwargs)``; any error it raises becomes a TemplateError at ``pos``."""
        try:
            return function(*args, **kwargs)
        except TemplateError as error:
            if "(line " in str(error):
                raise
            message = str(error)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
                ZeroDivisionError, RecursionError) as error:
            message = f"{what} failed: {type(error).__name__}: {error}"
        _fail(message, pos)


class Template:
    """A parsed chat template; :meth:`render` it with the conversation.

    Parameters
    ----------
    source : str
        The Jinja source, as a model ships it.

    >>> Template("{{ bos_token }}{{ messages[0].content | upper }}").render(
    ...     messages=[{"role": "user", "content": "hi"}], bos_token="<s>")
    '<s>HI'
    """

    def __init__(self, source):
        self.source = source
        self.tree = parse(source)

    def render(self, **values):
        """The text for ``values`` (``messages``, ``add_generation_prompt``, special tokens...).

        >>> Template("{% if add_generation_prompt %}<assistant>{% endif %}").render(add_generation_prompt=True)
        '<assistant>'
        """
        def raise_exception(message):
            raise TemplateError(f"the template raised an error: {message}")

        def strftime_now(format):
            if not isinstance(format, str):
                raise TemplateError(f"strftime_now needs a format string, got {format!r}")
            return datetime.now().strftime(format)

        def namespace(*args, **kwargs):
            return Namespace(dict(*args, **kwargs))

        def range_(*args):
            if not all(isinstance(a, int) and not isinstance(a, bool) for a in args) or not 1 <= len(args) <= 3:
                raise TemplateError(f"range needs 1 to 3 integers, got {args!r}")
            result = range(*args)
            if len(result) > MAX_STEPS:
                raise TemplateError(f"range of {len(result):,} items is too long")
            return result

        def dict_(*args, **kwargs):
            return dict(*args, **kwargs)

        globals_ = {name: template_callable(function, name) for name, function in (
            ("raise_exception", raise_exception), ("strftime_now", strftime_now),
            ("namespace", namespace), ("range", range_), ("dict", dict_))}
        for name, value in values.items():       # the caller's own functions (not the data's)
            globals_[name] = template_callable(value, name) if callable(value) else value
        renderer = _Renderer(globals_)
        try:
            return renderer.capture(self.tree)
        except (_Break, _Continue):
            raise TemplateError("'break' or 'continue' outside a loop") from None
        except RecursionError:
            raise TemplateError("the template recursed too deeply") from None


def render(source, **values):
    """Render the chat template ``source`` with ``values`` (see :class:`Template`).

    >>> render("{{ raise_exception('roles must alternate') }}")
    Traceback (most recent call last):
    ...
    npgpt.chat._values.TemplateError: the template raised an error: roles must alternate (line 1, column 4)
    """
    return Template(source).render(**values)

