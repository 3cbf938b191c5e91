"""Chat templates, stage 3: the evaluator walks the parser's tree with the values passed in
(``messages``, ``bos_token``, ...), within budgets of steps, output size and call depth."""

from ._values import (FILTERS, MAX_DEPTH, MAX_OUTPUT, MAX_STEPS, TESTS, Loop, Macro, Namespace,
                      Record, TemplateError, Undefined, allowed_attribute, binop, is_undefined,
                      item_of, to_text, unary)
from ._values import fail as _fail


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


def evaluate(tree, globals_):
    """The text of ``tree`` (from :func:`npgpt.chat.parser.parse`) rendered with ``globals_``.

    >>> from npgpt.chat.parser import parse
    >>> evaluate(parse("{{ greeting | upper }}, {{ name }}"), {"greeting": "hi", "name": "Ada"})
    'HI, Ada'
    """
    renderer = _Renderer(globals_)
    try:
        return renderer.capture(tree)
    except (_Break, _Continue):
        raise TemplateError("'break' or 'continue' outside a loop") from None
    except RecursionError:
        raise TemplateError("the template recursed too deeply") from None
