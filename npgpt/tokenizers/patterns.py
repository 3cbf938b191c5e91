"""Pre-tokenisation: GPT-2's regex, which cuts text into the pieces that BPE then encodes.

Shapes: text is a ``str``; a split is a ``list[str]`` of pre-tokens whose concatenation is
the text. BPE never merges across two pre-tokens.

- :data:`GPT2_PATTERN` -- GPT-2's pattern as written for the ``regex`` module and tiktoken
  (``\\p{L}``, ``\\p{N}``), which the standard-library ``re`` cannot compile;
- :func:`gpt2_pattern` -- the same pattern for ``re``: the Unicode classes are built from
  ``unicodedata`` (``_unicode_classes``) and White_Space is spelled out (``WHITE_SPACE``);
- :func:`gpt2_split` -- ``gpt2_pattern().findall``, about five times faster;
- :data:`LLAMA3_PATTERN` and :data:`QWEN2_PATTERN` -- Llama 3's and Qwen2's patterns as their
  ``tokenizer.json`` files write them, with :func:`llama3_split` and :func:`qwen2_split`;
- :data:`LLAMACPP_PUNCTUATION` and :data:`THREE_DIGITS` -- two splits of llama.cpp's
  ``"default"`` GGUF pre-tokenizer (:mod:`npgpt.tokenizers.gguf`); ``re`` reads the first
  through :func:`_punctuation_regex`;
- :data:`PATTERNS` and :func:`register_pattern` -- the patterns a tokenizer *file* may use,
  by name: ``"gpt2"``, ``"llama3"``, ``"qwen2"``, ``"llamacpp-punctuation"``,
  ``"three-digits"``, and those registered in code. A regex
  read from a file is never compiled unasked (``(?:a|a)*b|.`` makes ``encode`` backtrack
  for seconds on 26 characters); :func:`pattern_from_file` enforces this, and so does the
  ``tokenizer.json`` reader (:mod:`npgpt.tokenizers.hf`), which accepts a ``Split`` regex
  only if it is, character for character, one of these;
- ``compile_pattern`` -- a registered name or any ``re`` pattern given in code -> a
  function text -> pre-tokens.

Compiled patterns are kept in ``_PATTERNS`` (GPT-2's) and ``_COMPILED`` (the others), and
the Unicode classes in ``_CLASSES``, all built once, on first use.
"""

from __future__ import annotations

import re
import unicodedata

from ..io.errors import short_repr

#: GPT-2's pre-tokenisation pattern as written for the third-party ``regex`` module (and for
#: tiktoken). :func:`gpt2_pattern` is the same pattern for the standard-library ``re``.
GPT2_PATTERN = (r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"""
                r"""|\s+(?!\S)|\s+""")

#: Llama 3's pattern, as written in its ``tokenizer.json`` (a ``Split`` pre-tokenizer) and in
#: tiktoken's ``cl100k_base``: contractions in any case, a letter run led by at most one
#: other character, numbers cut into runs of 1 to 3 digits, punctuation runs that keep the
#: line breaks after them, then whitespace as GPT-2 does it.
LLAMA3_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
                  r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
#: Qwen2's pattern (Qwen2, Qwen2.5), as written in its ``tokenizer.json``: Llama 3's with one
#: digit per pre-token (``\p{N}`` where Llama 3 has ``\p{N}{1,3}``), so ``"2024"`` is
#: ``["202", "4"]`` for Llama 3 and ``["2", "0", "2", "4"]`` for Qwen2.
QWEN2_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
                 r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")

# Unicode's White_Space property (PropList.txt), the meaning of \s in tiktoken's Rust regex.
# Python's own \s also matches U+001C..U+001F (str.isspace), which GPT-2 does not treat as
# whitespace, so the pattern below spells whitespace out instead of using \s.
WHITE_SPACE = ([(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680),
                 (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F),
                 (0x3000, 0x3000)])

#: llama.cpp's first split for a GGUF file whose pre-tokenizer is ``"default"``: runs of
#: punctuation (``\p{P}``) and of the symbols ``$ + < = > ^ ~ |``
#: (:mod:`npgpt.tokenizers.gguf`).
LLAMACPP_PUNCTUATION = r"[\p{P}\$\+<=>\^~\|]+"
#: llama.cpp's last split for ``"default"``: three ASCII digits at a time.
THREE_DIGITS = "[0-9][0-9][0-9]"

#: The pre-tokenisation patterns a tokenizer file may name: name -> regular expression.
#: Add to it with :func:`register_pattern`, never by hand.
PATTERNS = {"gpt2": GPT2_PATTERN, "llama3": LLAMA3_PATTERN, "qwen2": QWEN2_PATTERN,
            "llamacpp-punctuation": LLAMACPP_PUNCTUATION, "three-digits": THREE_DIGITS}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

_CLASSES = None     # "L", "N", "S", "L_bmp", "N_bmp" -> class body (see _unicode_classes)
_PATTERNS = {}      # "gpt2", "gpt2_bmp", "llama3_bmp", "qwen2_bmp" -> compiled re
_COMPILED = {}      # any other regular expression -> its compiled re


def class_string(ranges):
    """[(lo, hi), ...] -> the body of a regex character class, with \\u/\\U escapes.

    >>> print(class_string([(0x41, 0x5A), (0x1F600, 0x1F600)]))
    \\u0041-\\u005A\\U0001F600
    """
    def esc(c):
        return f"\\u{c:04X}" if c <= 0xFFFF else f"\\U{c:08X}"
    return "".join(esc(lo) if lo == hi else f"{esc(lo)}-{esc(hi)}" for lo, hi in ranges)


def code_point_ranges(code_points):
    """Increasing code points -> [[lo, hi], ...], the runs of consecutive ones.

    >>> code_point_ranges([65, 66, 67, 70])
    [[65, 67], [70, 70]]
    """
    out = []
    for cp in code_points:
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def _unicode_classes():
    """Character-class bodies for \\p{L}, \\p{N} and White_Space, built once from unicodedata.

    \\p{L} = every code point whose general category starts with "L" (Lu Ll Lt Lm Lo),
    \\p{N} = category starts with "N" (Nd Nl No). They follow the running Python's Unicode
    database (``unicodedata.unidata_version``).
    """
    global _CLASSES
    if _CLASSES is None:
        ranges = {"L": [], "N": []}
        category = unicodedata.category
        start = {"L": None, "N": None}
        for cp in range(0x110001):
            major = category(chr(cp))[0] if cp <= 0x10FFFF else ""
            for key in ("L", "N"):
                if major == key:
                    if start[key] is None:
                        start[key] = cp
                elif start[key] is not None:
                    ranges[key].append((start[key], cp - 1))
                    start[key] = None
        bmp = {k: [(lo, min(hi, 0xFFFF)) for lo, hi in r if lo <= 0xFFFF]
               for k, r in ranges.items()}
        _CLASSES = {"L": class_string(ranges["L"]), "N": class_string(ranges["N"]),
                    "S": class_string(WHITE_SPACE),
                    "L_bmp": class_string(bmp["L"]), "N_bmp": class_string(bmp["N"])}
    return _CLASSES


def _gpt2_source(L, N, S):
    return (f"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+"
            f"|[{S}]+(?![^{S}])|[{S}]+")


def gpt2_pattern():
    """GPT-2's pre-tokenisation regex compiled with the standard-library ``re``.

    GPT-2's pattern (:data:`GPT2_PATTERN`) needs ``\\p{L}`` (letters) and ``\\p{N}`` (numbers),
    which ``re`` lacks; here they are explicit character classes derived from
    ``unicodedata`` (built once, on first use, in a fraction of a second). ``\\s`` is spelled
    out as Unicode's White_Space set, as in tiktoken's Rust regex (Python's ``\\s`` would also
    match U+001C..U+001F). The alternatives, in order::

        's|'t|'re|'ve|'m|'ll|'d     English contractions
         ?\\p{L}+                    a word, with its leading space
         ?\\p{N}+                    a number, with its leading space
         ?[^\\s\\p{L}\\p{N}]+          punctuation/symbols, with its leading space
        \\s+(?!\\S)                   whitespace, leaving the last space to the next word
        \\s+                         trailing whitespace

    Examples
    --------
    >>> gpt2_pattern().findall("Hello world's  123!")
    ['Hello', ' world', "'s", ' ', ' 123', '!']
    """
    if "gpt2" not in _PATTERNS:
        c = _unicode_classes()
        _PATTERNS["gpt2"] = re.compile(_gpt2_source(c["L"], c["N"], c["S"]))
    return _PATTERNS["gpt2"]


ASTRAL = re.compile("[\U00010000-\U0010FFFF]")


def _astral_stand_in(match):
    major = unicodedata.category(match.group())[0]
    return "A" if major == "L" else "0" if major == "N" else "!"


def gpt2_split(text):
    """``gpt2_pattern().findall(text)``, about five times faster.

    ``re`` tests the astral (> U+FFFF) ranges of a character class one by one, and every
    character that is not a letter pays for that scan. GPT-2's pattern sees a character only
    through its class (letter, number, whitespace, other) and a few ASCII literals, so the
    split runs a copy of the pattern whose classes stop at U+FFFF, on a copy of the text in
    which each astral character is replaced by a BMP character of the same class ("A", "0"
    or "!"); the spans found cut the original text. Same pieces, exactly.

    Examples
    --------
    >>> gpt2_split("emoji 👍🏽 and 𝐀𝐁 ok")
    ['emoji', ' 👍🏽', ' and', ' 𝐀𝐁', ' ok']
    """
    if "gpt2_bmp" not in _PATTERNS:
        c = _unicode_classes()
        _PATTERNS["gpt2_bmp"] = re.compile(_gpt2_source(c["L_bmp"], c["N_bmp"], c["S"]))
    regex = _PATTERNS["gpt2_bmp"]
    if text.isascii() or not ASTRAL.search(text):
        return regex.findall(text)
    stand_in = ASTRAL.sub(_astral_stand_in, text)
    return [text[m.start():m.end()] for m in regex.finditer(stand_in)]


def _llama3_source(L, N, S, digits):
    """Llama 3's pattern for ``re`` (``digits`` = ``"{1,3}"``), or Qwen2's (``digits`` = ``""``)."""
    return (f"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n{L}{N}]?[{L}]+|[{N}]{digits}"
            f"| ?[^{S}{L}{N}]+[\\r\\n]*|[{S}]*[\\r\\n]+|[{S}]+(?![^{S}])|[{S}]+")


def _stand_in_split(name, digits, text):
    """The pre-tokens of Llama 3's (or Qwen2's) pattern, with :func:`gpt2_split`'s trick.

    These patterns also see a character only through its class (letter, number,
    whitespace, other) and a few ASCII literals (``'``, CR, LF, the contraction
    letters, which no astral character case-folds to), so the same stand-ins work.
    """
    key = name + "_bmp"
    if key not in _PATTERNS:
        c = _unicode_classes()
        _PATTERNS[key] = re.compile(_llama3_source(c["L_bmp"], c["N_bmp"], c["S"], digits))
    regex = _PATTERNS[key]
    if text.isascii() or not ASTRAL.search(text):
        return regex.findall(text)
    stand_in = ASTRAL.sub(_astral_stand_in, text)
    return [text[m.start():m.end()] for m in regex.finditer(stand_in)]


def llama3_split(text):
    r"""Split ``text`` with Llama 3's pre-tokenisation pattern (:data:`LLAMA3_PATTERN`).

    The pattern is rewritten for the standard-library ``re`` as GPT-2's is
    (:func:`gpt2_pattern`): ``\p{L}`` and ``\p{N}`` become explicit classes from
    ``unicodedata``, ``\s`` is Unicode's White_Space; astral characters are handled with
    :func:`gpt2_split`'s stand-ins. The alternatives, in order::

        (?i:'s|'t|'re|'ve|'m|'ll|'d)    contractions, any case
        [^\r\n\p{L}\p{N}]?\p{L}+        a word, led by at most one other character
        \p{N}{1,3}                      numbers, up to 3 digits at a time
         ?[^\s\p{L}\p{N}]+[\r\n]*       punctuation, with the line breaks after it
        \s*[\r\n]+                      whitespace up to the last line break
        \s+(?!\S)|\s+                   other whitespace, as GPT-2

    Examples
    --------
    >>> llama3_split("It'S 2024!\n\n  ok")
    ['It', "'S", ' ', '202', '4', '!\n\n', ' ', ' ok']
    """
    return _stand_in_split("llama3", "{1,3}", text)


def qwen2_split(text):
    """Split ``text`` with Qwen2's pattern (:data:`QWEN2_PATTERN`): :func:`llama3_split` with
    one digit per pre-token.

    Examples
    --------
    >>> qwen2_split("It'S 2024!")
    ['It', "'S", ' ', '2', '0', '2', '4', '!']
    """
    return _stand_in_split("qwen2", "", text)


#: Patterns written for the ``regex`` module that have a split for ``re``: regex -> split.
TRANSLATED = {GPT2_PATTERN: gpt2_split, LLAMA3_PATTERN: llama3_split,
               QWEN2_PATTERN: qwen2_split}


def _punctuation_regex():
    """:data:`LLAMACPP_PUNCTUATION` for ``re``: ``\\p{P}`` as an explicit class built from
    ``unicodedata`` (every category starting with "P"), once.

    Examples
    --------
    >>> _punctuation_regex().findall("a, b...c$+d「e」")
    [',', '...', '$+', '「', '」']
    """
    if "punctuation" not in _PATTERNS:
        ranges = code_point_ranges(cp for cp in range(0x110000)
                                   if unicodedata.category(chr(cp))[0] == "P")
        _PATTERNS["punctuation"] = re.compile(f"[{class_string(ranges)}\\$\\+<=>\\^~\\|]+")
    return _PATTERNS["punctuation"]


#: Patterns written for the ``regex`` module that ``re`` cannot compile, and their rewriting.
_REWRITTEN = {LLAMACPP_PUNCTUATION: _punctuation_regex}


def compile_regex(regex):
    """``re.compile(regex)``, cached; ValueError unless it compiles without capturing groups.

    >>> compile_regex(r"\\d+|\\D+").findall("ab12")
    ['ab', '12']
    >>> compile_regex(r"(\\d)+")
    Traceback (most recent call last):
        ...
    ValueError: pattern '(\\\\d)+' has capturing groups; use (?:...) so that findall returns whole pre-tokens
    """
    if not isinstance(regex, str):
        raise TypeError(f"pattern must be a registered name or a regular-expression str, "
                        f"got {short_repr(regex)}")
    if regex in _REWRITTEN:
        return _REWRITTEN[regex]()
    if regex not in _COMPILED:
        try:
            compiled = re.compile(regex)
        except (re.error, RecursionError, OverflowError) as e:
            raise ValueError(f"pattern {short_repr(regex)} is not a valid Python regular "
                             f"expression: {e}") from None
        if compiled.groups:
            raise ValueError(f"pattern {short_repr(regex)} has capturing groups; use (?:...) "
                             "so that findall returns whole pre-tokens")
        _COMPILED[regex] = compiled
    return _COMPILED[regex]


def compile_pattern(pattern):
    """The pre-tokenizer of ``pattern`` (a registered name, or a regex given in code): a
    function text -> list of pre-tokens. A name wins over a regex spelled the same.

    >>> compile_pattern("gpt2")("Hi there!"), compile_pattern("qwen2")("2024")
    (['Hi', ' there', '!'], ['2', '0', '2', '4'])
    """
    if pattern == "gpt2" or pattern == GPT2_PATTERN:
        return gpt2_split
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a registered name or a regular-expression str, "
                        f"got {short_repr(pattern)}")
    regex = PATTERNS.get(pattern, pattern)
    if regex in TRANSLATED:
        return TRANSLATED[regex]
    return compile_regex(regex).findall


def register_pattern(name, regex):
    r"""Let tokenizer files use the pre-tokenisation ``regex``, by ``name`` or by itself.

    A tokenizer file (``tok.save``, the ``tokenizer`` in a model file, a training
    checkpoint) stores its pattern as written in code: a name such as ``"gpt2"``, or a raw
    regular expression. Loading it accepts only a registered name, or a regex registered
    under some name: a regex from a file could make ``encode`` hang (catastrophic
    backtracking), so it is compiled only once the programmer has vouched for it here.

    Parameters
    ----------
    name : str
        Letters, digits, ``_``, ``.`` and ``-``, at most 64 characters. A name cannot be
        registered again with another regex.
    regex : str
        A Python ``re`` pattern without capturing groups.

    Examples
    --------
    >>> from npgpt.tokenizers import BPETokenizer, tokenizer_from_dict
    >>> words = r"\w+|\s+|[^\w\s]+"
    >>> d = BPETokenizer.train("a small text", vocab_size=258, pattern=words).to_dict()
    >>> d["pattern"]
    '\\w+|\\s+|[^\\w\\s]+'
    >>> register_pattern("words", words)
    >>> tokenizer_from_dict(d).pretokenize("hi, you")     # the file's regex is now trusted
    ['hi', ',', ' ', 'you']
    >>> tokenizer_from_dict({**d, "pattern": "words"}).pattern
    'words'

    Registrations last as long as the process (a test may undo one: ``del PATTERNS[name]``):

    >>> del PATTERNS["words"]
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"a pattern name is 1 to 64 letters, digits, '_', '.' or '-', "
                         f"starting with a letter or digit; got {short_repr(name)}")
    if PATTERNS.get(name, regex) != regex:
        raise ValueError(f"pattern {name!r} is already registered, as "
                         f"{short_repr(PATTERNS[name], 200)}; choose another name")
    if regex not in TRANSLATED:
        compile_regex(regex)
    PATTERNS[name] = regex


def pattern_from_file(value):
    """``value``, the pattern of a tokenizer read from a file, if it is registered.

    Accepted: a name in :data:`PATTERNS`, or a regular expression registered under some
    name (:func:`register_pattern`). Anything else is a ValueError that says how to
    register it.

    Examples
    --------
    >>> pattern_from_file("gpt2")
    'gpt2'
    >>> pattern_from_file("(?:a|a)*b|.")        # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: pre-tokenisation pattern '(?:a|a)*b|.' is neither a registered name ... \
If you trust this one, register it before loading: \
npgpt.tokenizers.register_pattern('some-name', <the regex>)
    """
    if isinstance(value, str) and (value in PATTERNS or value in PATTERNS.values()):
        return value
    names = ", ".join(repr(n) for n in sorted(PATTERNS)[:20])
    raise ValueError(f"pre-tokenisation pattern {short_repr(value, 120)} is neither a "
                     f"registered name (registered: {names}) nor the regex of one; a tokenizer "
                     f"file may only name a pattern, since a regex from a file can make "
                     f"encode hang. If you trust this one, register it before loading: "
                     f"npgpt.tokenizers.register_pattern('some-name', <the regex>)")

