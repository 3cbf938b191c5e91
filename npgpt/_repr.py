"""``short_repr``: ``repr(value)`` cut to a limit without ever building more, for every error
message that shows a value read from a file or given by a caller.

A message must stay short whatever the value holds: a pickle can reference one list from
thousands of places (a few KB whose ``repr`` is gigabytes), and JSON can hold integers
too large to print. It imports nothing from npgpt, so the option rules (``_checks``) and the
file readers (``npgpt.io.errors``) both use it.
"""

from __future__ import annotations

SHOWN_ITEMS = 6      # items of a container shown before "..."
SHOWN_DEPTH = 4      # nesting levels shown before "[...]"
BIG_INT_BITS = 256   # larger integers are described by their size, not printed


class _Text:
    """Pieces of text with a budget of characters left (``room``)."""

    def __init__(self, room: int):
        self.parts, self.room = [], room

    def write(self, text: str) -> None:
        text = text[:max(self.room, 0)]
        self.parts.append(text)
        self.room -= len(text)


def short_repr(value, limit: int = 80) -> str:
    """``repr(value)`` cut to at most ``limit`` characters, never building more.

    Strings and bytes are cut before their ``repr`` is taken; a list, tuple, set or dict
    shows its first few items and nesting levels only (so shared or cyclic structures
    cost nothing); an integer of more than 256 bits is described by its size; other
    objects by their type. A cut result ends with ``"..."``.

    Examples
    --------
    >>> short_repr("a" * 1000, limit=12)
    "'aaaaaaaa..."
    >>> laughs = ["lol"]
    >>> for _ in range(30):                 # 2**30 strings if printed in full
    ...     laughs = [laughs, laughs]
    >>> short_repr(laughs)
    '[[[[[...], [...]], [[...], [...]]], [[[...], [...]], [[...], [...]]]], [[[[.....'
    >>> short_repr(10 ** 400), short_repr({"n_embd": 64.5}), short_repr(object())
    ('<int of 1329 bits>', "{'n_embd': 64.5}", '<object>')
    """
    text = _Text(limit + 1)            # one character more tells whether it was cut
    _write(value, text, 0)
    out = "".join(text.parts)
    return out if len(out) <= limit else (out[:max(limit - 3, 0)] + "...")[:limit]


def _write(value, text: _Text, depth: int) -> None:
    if text.room <= 0:
        return
    if value is None or isinstance(value, (bool, float)):
        text.write(repr(value))
    elif isinstance(value, int):
        bits = value.bit_length()
        text.write(repr(value) if bits <= BIG_INT_BITS else f"<int of {bits} bits>")
    elif isinstance(value, (str, bytes, bytearray)):
        text.write(repr(value[:text.room]))
    elif isinstance(value, (list, tuple, dict, set, frozenset)):
        _write_container(value, text, depth)
    else:
        text.write(f"<{type(value).__name__}>")


def _write_container(value, text: _Text, depth: int) -> None:
    if isinstance(value, list):
        opening, closing = "[", "]"
    elif isinstance(value, tuple):
        opening, closing = "(", ",)" if len(value) == 1 else ")"
    elif isinstance(value, (set, frozenset)) and not value:
        opening, closing = f"{type(value).__name__}(", ")"
    else:
        opening, closing = "{", "}"
    if depth >= SHOWN_DEPTH and value:
        text.write(opening + "..." + closing)
        return
    text.write(opening)
    items = value.items() if isinstance(value, dict) else value
    for i, item in enumerate(items):
        if i:
            text.write(", ")
        if i == SHOWN_ITEMS or text.room <= 0:
            text.write("...")
            break
        if isinstance(value, dict):
            _write(item[0], text, depth + 1)
            text.write(": ")
            _write(item[1], text, depth + 1)
        else:
            _write(item, text, depth + 1)
    text.write(closing)
