"""Chat templates, stage 2: the parser builds a tree of statement and expression nodes, plain
tuples ``("kind", pos, ...)``, from the lexer's items."""

from ._values import MAX_DEPTH, TemplateError
from ._values import fail as _fail
from .lexer import lex


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
