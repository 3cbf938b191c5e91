"""The values a chat template works with: undefined names, namespaces, loops and macros, the
operators, and the filters, tests and methods a template may call (nothing else is reachable).

Each rule follows jinja2 (3.1) as transformers configures it; where a result could grow without
bound (``'a' * n``, ``replace``, ``indent``, ``%`` widths, ``**``) it is checked first and a
:class:`~npgpt.chat.template.TemplateError` comes out instead.
"""

import json
import re
from collections.abc import Mapping

MAX_SIZE = 1 << 22          # characters or items one value may hold
MAX_OUTPUT = 1 << 20        # characters a rendering may produce
MAX_STEPS = 2_000_000       # nodes a rendering may evaluate (loops count every iteration)
MAX_DEPTH = 40              # nesting of blocks, brackets and macro calls


class TemplateError(ValueError):
    """The template is outside the supported subset, is broken, or raised an error itself."""


def fail(message, pos):
    """Raise a TemplateError for ``message`` at ``pos`` = (line, column)."""
    line, col = pos
    raise TemplateError(f"{message} (line {line}, column {col})")


def _error(message):
    return TemplateError(message)


class Undefined:
    """A name or key that is not there: prints as '', is false, iterates as empty; anything
    else done with it (arithmetic, attributes, calls) is an error naming it, as in jinja2."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __str__(self):
        return ""

    def __iter__(self):
        return iter(())

    def __bool__(self):
        return False

    def __len__(self):
        return 0

    def __eq__(self, other):
        return type(other) is Undefined

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return 0


class Markup(str):
    """Text marked safe (``|safe``, ``|escape``): what is added to it is HTML-escaped first, as
    jinja2's markupsafe does even when autoescaping is off (a few real templates rely on it)."""

    def __add__(self, other):
        return Markup(str.__add__(self, escape(other))) if isinstance(other, str) else NotImplemented

    def __radd__(self, other):
        return Markup(str.__add__(escape(other), self)) if isinstance(other, str) else NotImplemented

    def __mul__(self, count):
        return Markup(str.__mul__(self, count))


def escape(value):
    """HTML-escape ``& < > ' "`` (markupsafe's entities); marked-safe text is left alone."""
    if isinstance(value, Markup):
        return value
    return Markup(to_text(value).replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")
                  .replace("'", "&#39;").replace('"', "&#34;"))


def is_undefined(value):
    return type(value) is Undefined


class Record:
    """Named values a template reads with ``.name`` (a loop's state, a namespace)."""

    def __init__(self, values):
        self.values = values

    def get(self, key):
        return self.values.get(key, Undefined(repr(key))) if isinstance(key, str) else Undefined(repr(key))

    def __str__(self):
        return f"<{type(self).__name__} {self.values!r}>"


class Namespace(Record):
    """``namespace(a=1)``: the one value whose attributes ``{% set ns.a = ... %}`` may change."""

    def set(self, key, value, pos):
        if key.startswith("_"):
            fail(f"a namespace cannot hold the underscore name {key!r}", pos)
        self.values[key] = value


class Loop:
    """``loop`` inside ``{% for %}``: index, index0, first, last, length, revindex... of each item."""

    def __init__(self, items):
        self.items = items

    def at(self, i):
        n, items = len(self.items), self.items

        def cycle(*values):
            if not values:
                raise _error("loop.cycle needs at least one value")
            return values[i % len(values)]

        return Record({"index0": i, "index": i + 1, "revindex0": n - 1 - i, "revindex": n - i,
                       "first": i == 0, "last": i == n - 1, "length": n, "depth": 1, "depth0": 0,
                       "previtem": items[i - 1] if i else Undefined("loop.previtem"),
                       "nextitem": items[i + 1] if i + 1 < n else Undefined("loop.nextitem"),
                       "cycle": template_callable(cycle, "loop.cycle")})


class Macro:
    """``{% macro name(a, b=1) %}...{% endmacro %}``: called, it renders its body with the
    arguments bound, seeing the template's top-level names."""

    def __init__(self, name, params, body, renderer):
        self.name, self.params, self.body, self.renderer = name, params, body, renderer

    def call(self, args, kwargs, pos):
        renderer = self.renderer
        if len(args) > len(self.params):
            fail(f"macro '{self.name}' takes {len(self.params)} arguments, got {len(args)}", pos)
        names = {name for name, _ in self.params}
        unknown = [key for key in kwargs if key not in names and key != "caller"]
        if unknown:
            fail(f"macro '{self.name}' has no argument {unknown[0]!r}", pos)
        frame = {"caller": kwargs.get("caller", Undefined("caller"))}
        saved, renderer.scopes = renderer.scopes, [renderer.scopes[0], frame]
        try:
            for index, (name, default) in enumerate(self.params):
                if index < len(args):
                    frame[name] = args[index]
                elif name in kwargs:
                    frame[name] = kwargs[name]
                else:
                    frame[name] = renderer.eval(default) if default is not None else Undefined(name)
            return renderer.capture(self.body)
        finally:
            renderer.scopes = saved

    def __str__(self):
        return f"<Macro {self.name!r}>"


class _Callable:
    """A function a template may call (the globals, filters' helpers, listed methods)."""

    _template_callable = True

    def __init__(self, function, name):
        self.function, self.__name__ = function, name

    def __call__(self, *args, **kwargs):
        return self.function(*args, **kwargs)

    def __str__(self):
        return f"<function {self.__name__}>"


def template_callable(function, name):
    return _Callable(function, name)


# Methods a template may call on the values passed in: reading ones only (jinja2's immutable
# sandbox forbids the mutating ones); str.format only without attribute or index access.
_METHODS = {
    str: {"strip", "lstrip", "rstrip", "startswith", "endswith", "split", "rsplit", "splitlines",
          "upper", "lower", "title", "capitalize", "find", "rfind", "count", "isdigit", "isalpha",
          "isalnum", "isspace", "islower", "isupper", "replace", "join", "removeprefix",
          "removesuffix", "format"},
    dict: {"items", "keys", "values", "get"},
    list: {"index", "count"},
    tuple: {"index", "count"},
}


def allowed_attribute(value, name, pos):
    """The bound method ``value.name`` if it is listed, None if not; underscore names are errors."""
    if name.startswith("_"):
        fail(f"attribute {name!r} is not allowed in a template", pos)
    for kind, names in _METHODS.items():
        if isinstance(value, kind) and name in names:
            method = getattr(value, name)
            if name == "format":
                method = _safe_format(value)
            elif name in ("replace", "join"):
                method = _bounded(method, name)
            return template_callable(method, f"{kind.__name__}.{name}")
    return None


def _bounded(method, name):
    def call(*args, **kwargs):
        result = method(*args, **kwargs)
        _check_size(result, f"str.{name}")
        return result
    return call


def _safe_format(text):
    """``str.format`` without attribute or index access in the fields (the sandbox's rule)."""
    from string import Formatter

    def call(*args, **kwargs):
        for _, field, spec, _ in Formatter().parse(text):
            if field and ("." in field or "[" in field):
                raise _error(f"str.format field {{{field}}} reaches into a value, which is not allowed")
            if spec and ("{" in spec or any(int(n) > 1000 for n in re.findall(r"\d+", spec))):
                raise _error(f"str.format spec {spec!r} is not allowed")
        result = text.format(*args, **kwargs)
        _check_size(result, "str.format")
        return result
    return call


def item_of(value, key):
    """(True, value[key]) when the item exists, else (False, None)."""
    if isinstance(value, Mapping):
        try:
            return (True, value[key]) if key in value else (False, None)
        except TypeError:
            return False, None
    if isinstance(value, (list, tuple, str, range)) and isinstance(key, int):
        return (True, value[key]) if -len(value) <= key < len(value) else (False, None)
    return False, None


def to_text(value, pos=None):
    """What ``{{ value }}`` prints: str(value), '' for undefined."""
    if isinstance(value, str):
        return value
    try:
        text = str(value)
    except (ValueError, RecursionError) as error:
        raise _error(f"cannot print a {type(value).__name__}: {error}") from None
    _check_size(text, "printing a value")
    return text


def _check_size(value, what):
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_SIZE:
        raise _error(f"{what} made a value of {len(value):,} items (at most {MAX_SIZE:,})")


# ---------------------------------------------------------------------------------------------
# operators
# ---------------------------------------------------------------------------------------------

_COMPARISONS = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
                ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}
_PRINTF_WIDTH = re.compile(r"%[-+ #0]*(\d+)?(?:\.(\d+))?")


def _number(value):
    return isinstance(value, (int, float))


def binop(op, left, right, pos):
    """``left op right`` with jinja2's meaning; errors name the operator and the operand types."""
    try:
        if op == "~":
            result = to_text(left) + to_text(right)
        elif op in _COMPARISONS:
            if op not in ("==", "!=") and (is_undefined(left) or is_undefined(right)):
                raise TypeError("an undefined value cannot be ordered")
            return _COMPARISONS[op](left, right)
        elif op == "in":
            if is_undefined(right):
                return False
            if isinstance(right, str) and not isinstance(left, str):
                raise TypeError(f"'in <string>' needs a string on the left, not {type(left).__name__}")
            if not isinstance(right, (str, list, tuple, Mapping, range)):
                raise TypeError(f"'in' needs a string, list or mapping on the right, not {type(right).__name__}")
            return left in right
        else:
            for side in (left, right):
                if is_undefined(side):
                    raise TypeError(f"{side.name} is undefined")
            result = _arithmetic(op, left, right)
    except (TypeError, ValueError, OverflowError, ZeroDivisionError, RecursionError) as error:
        fail(f"cannot compute {type(left).__name__} {op} {type(right).__name__}: {error}", pos)
    _check_size(result, f"'{op}'")
    return result


def _arithmetic(op, left, right):
    if op == "+":
        if isinstance(left, (str, list, tuple)) and isinstance(right, type(left)):
            if len(left) + len(right) > MAX_SIZE:
                raise ValueError("the result would be too long")
        return left + right
    if op == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(count, int):
                if len(seq) * max(count, 0) > MAX_SIZE:
                    raise ValueError("the result would be too long")
        return left * right
    if op == "**":
        if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 4096:
            raise ValueError(f"the power {right} is too large")
        return left ** right
    if op == "%" and isinstance(left, str):
        for match in _PRINTF_WIDTH.finditer(left):
            if any(part and int(part) > 1000 for part in match.groups()):
                raise ValueError(f"the width in {match.group()!r} is too large")
        return left % right
    if not (_number(left) and _number(right)):
        raise TypeError("both sides must be numbers")
    return {"/": lambda: left / right, "//": lambda: left // right, "%": lambda: left % right,
            "-": lambda: left - right}[op]()


def unary(kind, value, pos):
    if not _number(value):
        fail(f"unary {'-' if kind == 'neg' else '+'} needs a number, got {type(value).__name__}", pos)
    return -value if kind == "neg" else +value


# ---------------------------------------------------------------------------------------------
# filters
# ---------------------------------------------------------------------------------------------

def _attribute_path(value, path):
    """``attribute='a.b'`` of selectattr / map / sort: items (or list indices) along the path."""
    for part in str(path).split(".") if isinstance(path, str) else [path]:
        key = int(part) if isinstance(part, str) and part.isdigit() else part
        found, value = item_of(value, key)
        if not found:
            return Undefined(repr(part))
    return value


def _default(value, default_value="", boolean=False):
    return default_value if is_undefined(value) or (boolean and not value) else value


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    if isinstance(indent, int) and indent > 100:
        raise ValueError(f"indent {indent} is too large")
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _title(value):
    return "".join(part[:1].upper() + part[1:].lower()
                   for part in re.split(r"([-\s({\[<]+)", to_text(value)) if part)


def _indent(value, width=4, first=False, blank=False):
    prefix = width if isinstance(width, str) else " " * min(int(width), 1000)
    text = to_text(value) + "\n"
    lines = text.splitlines()
    if blank:
        result = ("\n" + prefix).join(lines)
    else:
        result = lines.pop(0) if lines else ""
        if lines:
            result += "\n" + "\n".join(prefix + line if line else line for line in lines)
    result = prefix + result if first else result
    _check_size(result, "indent")
    return result


def _replace(value, old, new, count=None):
    text, old, new = to_text(value), to_text(old), to_text(new)
    hits = text.count(old) if old else len(text) + 1
    if len(text) + hits * max(len(new) - len(old), 0) > MAX_SIZE:
        raise ValueError("the result would be too long")
    return text.replace(old, new) if count is None else text.replace(old, new, count)


def _join(value, d="", attribute=None):
    items = [_attribute_path(item, attribute) if attribute is not None else item for item in value]
    return to_text(d).join(to_text(item) for item in items)


def _select(value, test, args, attribute=None, keep=True):
    if not value:                                   # jinja2 selects nothing from a false value
        return []
    if test is None:
        check = bool
    else:
        function = TESTS.get(test)
        if function is None:
            raise _error(f"unsupported test {test!r}")
        check = lambda item: function(item, *args)  # noqa: E731
    result = []
    for item in value:
        subject = _attribute_path(item, attribute) if attribute is not None else item
        if bool(check(subject)) == keep:
            result.append(item)
    return result


def _map(value, *args, attribute=None, default=None):
    if not value:
        return []
    if attribute is not None:
        results = [_attribute_path(item, attribute) for item in value]
        return [default if default is not None and is_undefined(r) else r for r in results]
    if not args:
        raise _error("map needs a filter name or attribute=")
    function = FILTERS.get(args[0])
    if function is None:
        raise _error(f"unsupported filter {args[0]!r}")
    return [function(item, *args[1:]) for item in value]


def _sort(value, reverse=False, case_sensitive=False, attribute=None):
    def key(item):
        item = _attribute_path(item, attribute) if attribute is not None else item
        return item.lower() if isinstance(item, str) and not case_sensitive else item
    return sorted(value, key=key, reverse=reverse)


def _dictsort(value, case_sensitive=False, by="key", reverse=False):
    position = {"key": 0, "value": 1}[by]

    def key(pair):
        item = pair[position]
        return item.lower() if isinstance(item, str) and not case_sensitive else item
    return sorted(value.items(), key=key, reverse=reverse)


def _int(value, default=0, base=10):
    try:
        if isinstance(value, str):
            return int(value, base)
        return int(value)
    except (TypeError, ValueError, OverflowError):
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            return default


def _float(value, default=0.0):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _first(value):
    for item in value:
        return item
    return Undefined("first of an empty sequence")


def _last(value):
    items = list(value)
    return items[-1] if items else Undefined("last of an empty sequence")


def _unique(value, case_sensitive=False, attribute=None):
    seen, result = set(), []
    for item in value:
        key = _attribute_path(item, attribute) if attribute is not None else item
        key = key.lower() if isinstance(key, str) and not case_sensitive else key
        if key not in seen:
            seen.add(key)
            result.append(item)
    return result


def _center(value, width=80):
    return to_text(value).center(min(int(width), 10_000))


def _round(value, precision=0, method="common"):
    if method == "common":
        return round(value, precision)
    import math
    scale = 10 ** precision
    return (math.ceil if method == "ceil" else math.floor)(value * scale) / scale


def _format(value, *args, **kwargs):
    if args and kwargs:
        raise ValueError("format takes positional or keyword arguments, not both")
    return _arithmetic("%", to_text(value), kwargs or args)


FILTERS = {
    "abs": abs, "capitalize": lambda v: to_text(v).capitalize(), "center": _center,
    "count": len, "length": len, "d": _default, "default": _default, "dictsort": _dictsort,
    "e": escape, "escape": escape,
    "first": _first, "last": _last, "float": _float, "int": _int, "format": _format,
    "indent": _indent, "items": lambda v: [] if is_undefined(v) else list(v.items()),
    "join": _join, "list": list, "lower": lambda v: to_text(v).lower(), "map": _map,
    "max": lambda v, **k: max(v), "min": lambda v, **k: min(v),
    "reject": lambda v, test=None, *a: _select(v, test, a, keep=False),
    "rejectattr": lambda v, attr, test=None, *a: _select(v, test, a, attribute=attr, keep=False),
    "replace": _replace, "reverse": lambda v: v[::-1] if isinstance(v, (str, list, tuple)) else list(v)[::-1],
    "round": _round, "safe": lambda v: v if isinstance(v, Markup) else Markup(to_text(v)), "select": lambda v, test=None, *a: _select(v, test, a),
    "selectattr": lambda v, attr, test=None, *a: _select(v, test, a, attribute=attr),
    "sort": _sort, "string": to_text, "sum": lambda v, attribute=None, start=0: sum(
        (_attribute_path(i, attribute) if attribute is not None else i for i in v), start),
    "title": _title, "tojson": _tojson, "trim": lambda v, chars=None: to_text(v).strip(chars),
    "unique": _unique, "upper": lambda v: to_text(v).upper(),
    "wordcount": lambda v: len(re.findall(r"\w+", to_text(v))),
}


# ---------------------------------------------------------------------------------------------
# tests (``value is name(args)``)
# ---------------------------------------------------------------------------------------------

def _is_sequence(value):
    try:
        len(value)
        value.__getitem__  # noqa: B018
    except (TypeError, AttributeError):
        return False
    return True


TESTS = {
    "defined": lambda v: not is_undefined(v), "undefined": is_undefined,
    "none": lambda v: v is None, "boolean": lambda v: v is True or v is False,
    "true": lambda v: v is True, "false": lambda v: v is False,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, float), "number": _number,
    "string": lambda v: isinstance(v, str), "mapping": lambda v: isinstance(v, Mapping),
    "sequence": _is_sequence, "iterable": lambda v: isinstance(v, (str, list, tuple, Mapping, range, Undefined)),
    "callable": lambda v: isinstance(v, (Macro, _Callable)),
    "sameas": lambda v, other: v is other,
    "odd": lambda v: v % 2 == 1, "even": lambda v: v % 2 == 0,
    "divisibleby": lambda v, n: v % n == 0,
    "lower": lambda v: to_text(v).islower(), "upper": lambda v: to_text(v).isupper(),
    "in": lambda v, seq: v in seq,
}
for _names, _op in ((("eq", "equalto", "=="), "=="), (("ne", "!="), "!="), (("lt", "lessthan", "<"), "<"),
                    (("le", "<="), "<="), (("gt", "greaterthan", ">"), ">"), (("ge", ">="), ">=")):
    for _name in _names:
        TESTS[_name] = _COMPARISONS[_op]
