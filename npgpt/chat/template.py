"""Chat templates: the small part of Jinja that models' chat templates use, rendered by hand.

An instruct model only behaves when its prompt follows its own chat template, which it ships as
Jinja source (``tokenizer.chat_template`` in a GGUF file, ``chat_template`` in
``tokenizer_config.json``). transformers renders it with jinja2's sandbox and
``trim_blocks=True, lstrip_blocks=True``; this module renders the same subset with nothing but
the standard library, in three stages, a module each:

1. the **lexer** (:mod:`npgpt.chat.lexer`) cuts the source into text and tags, applying the
   whitespace rules (``{%-`` / ``-%}``, trim_blocks, lstrip_blocks), and tags into tokens;
2. the **parser** (:mod:`npgpt.chat.parser`) builds a tree of statement and expression nodes
   (plain tuples);
3. the **evaluator** (:mod:`npgpt.chat.evaluate`) walks the tree with the values passed in
   (``messages``, ``bos_token``, ...).

A template is data from a file, so it is treated as hostile: it reaches only the values passed
in, calls only the functions, filters and methods listed in :mod:`npgpt.chat._values` (no
``__class__``, no ``str.format``), and stops with a :class:`TemplateError` past a budget of
steps, output size or nesting. Anything outside the subset is a :class:`TemplateError` naming
the construct, its line and column; no other exception escapes :func:`render`.

>>> render("{% for m in messages %}<{{ m.role }}>{{ m['content'] | trim }}\\n{% endfor %}",
...        messages=[{"role": "user", "content": " Hi "}])
'<user>Hi\\n'
"""

from datetime import datetime

from ._values import MAX_DEPTH, MAX_OUTPUT  # noqa: F401  (the budgets, named here too)
from ._values import MAX_STEPS, Namespace, TemplateError, template_callable
from .evaluate import evaluate
from .lexer import lex  # noqa: F401  (stage 1, named here too)
from .parser import parse

__all__ = ["TemplateError", "Template", "render"]


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
        return evaluate(self.tree, globals_)


def render(source, **values):
    """Render the chat template ``source`` with ``values`` (see :class:`Template`).

    >>> render("{{ raise_exception('roles must alternate') }}")
    Traceback (most recent call last):
    ...
    npgpt.chat._values.TemplateError: the template raised an error: roles must alternate (line 1, column 4)
    """
    return Template(source).render(**values)
