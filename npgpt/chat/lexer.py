"""Chat templates, stage 1: the lexer cuts the source into text and tags, applying jinja2's
whitespace rules (``{%-`` / ``-%}``, trim_blocks, lstrip_blocks), and tags into tokens."""

import re

from ._values import TemplateError
from ._values import fail as _fail


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
