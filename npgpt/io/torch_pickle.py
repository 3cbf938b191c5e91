"""Read a ``torch.save(state_dict)`` file without PyTorch, and without running its pickle.

Shapes: each tensor is rebuilt from a flat storage (numel,) with a storage offset, a size
(d0, d1, ...) and element strides (s0, s1, ...): element [i0, i1, ...] is
``storage[offset + i0*s0 + i1*s1 + ...]``, exactly ``torch._utils._rebuild_tensor_v2``.

PyTorch's zip layout (``torch.save`` since 1.6), all entries under one top folder::

    <top>/data.pkl        a pickle of the state_dict (an OrderedDict name -> tensor)
    <top>/byteorder       "little" or "big" (absent in old files: little)
    <top>/data/<key>      the raw bytes of storage <key>
    <top>/version, <top>/.format_version, <top>/.storage_alignment, ...

A tensor in ``data.pkl`` is ``REDUCE(torch._utils._rebuild_tensor_v2, (storage, offset,
size, stride, requires_grad, backward_hooks[, metadata]))`` where ``storage`` comes from a
persistent id ``("storage", torch.FloatStorage, key, location, numel)``.

Python's ``pickle.load`` would import and call whatever the file names (``os.system``...).
Here a small pickle machine of our own interprets only the opcodes a state_dict uses; a
global resolves only if it is on the allow-list below, and "calling" one only builds
inert records (``_Storage``, ``_Tensor``) that become NumPy arrays afterwards. Anything
else raises :class:`~npgpt.io.CheckpointError` before any effect.

Memory is bounded by the file's size n (bytes), whatever the file holds. Every object the
pickle machine makes (strings, numbers, tuples, lists, dicts, records, the memo, the stack and
the machine's own bookkeeping) is charged its ``sys.getsizeof`` as it is made, temporary
copies included and nothing refunded, against ``MAX_OBJECT_BYTES_PER_BYTE * n + OBJECT_SLACK``
(4 n + 8 MiB); the pickle's bytes and the storages read count against ``MAX_EXPANSION * n +
1 MiB``; the arrays built from them against as much again. A real state_dict's pickle is a
small part of its file (its tensors' bytes are the rest) and spends little of the first
budget; even GPT-2 or Llama state_dicts of 2x2 tensors, nearly all pickle and zip headers,
are charged about 4 n (and hold about 2 n). A file that is all pickle, of opcodes building
objects ten times their size (8-byte strings of 52 bytes, 1-byte empty lists of 56), is
refused part way, having held about 5 n + 8 MiB.
"""

from __future__ import annotations

import os
import pickletools
import re
import struct
import sys
import zipfile
import zlib

import numpy as np

from .errors import CheckpointError, short_repr
from .files import open_regular
from .safetensors import bfloat16_to_float32

MAX_PICKLE_BYTES = 100 * 1024 * 1024
MAX_MEMO = 10_000_000
MAX_STACK = 1_000_000
# What the pickle builds, counted as if every shared reference were a copy (the size of its
# repr, of a deep copy, of any walk over it), may not exceed this many times the pickle's
# size (plus a little): a few KB referencing one list thousands of times, nested a few
# levels (a "billion laughs"), is refused instead of being walked into gigabytes.
MAX_NODES_PER_BYTE = 4
# What those objects really occupy (shared ones once), in bytes per byte of the file, plus a
# fixed allowance for small files: a file of tiny opcodes (1-byte empty lists, 8-byte
# strings of 52 bytes each) is refused part way instead of growing to ten times its size.
MAX_OBJECT_BYTES_PER_BYTE = 4
OBJECT_SLACK = 8 * 1024 * 1024
# One more entry in a dict keyed by new integers (memo indices, ids), its int key and
# table growth included (~105 bytes measured on CPython 3.11).
_ENTRY_BYTES = 112
_STR_BYTES = sys.getsizeof("")
# The tensors rebuilt from a file may share storage (tied weights), but together they may
# not hold more than this many times the file's size: views cannot blow up memory.
MAX_EXPANSION = 4

# storage class name -> (numpy dtype as stored, without byte order; element size)
STORAGE_DTYPES = {
    "DoubleStorage": ("f8", 8), "FloatStorage": ("f4", 4), "HalfStorage": ("f2", 2),
    "BFloat16Storage": ("u2", 2), "LongStorage": ("i8", 8), "IntStorage": ("i4", 4),
    "ShortStorage": ("i2", 2), "CharStorage": ("i1", 1), "ByteStorage": ("u1", 1),
    "BoolStorage": ("?", 1), "UntypedStorage": ("u1", 1),
}
_REBUILD_TENSOR = ("torch._utils", "_rebuild_tensor_v2")
_REBUILD_PARAMETER = ("torch._utils", "_rebuild_parameter")
_ORDERED_DICT = ("collections", "OrderedDict")
ALLOWED_GLOBALS = frozenset(
    [_REBUILD_TENSOR, _REBUILD_PARAMETER, _ORDERED_DICT]
    + [("torch", name) for name in STORAGE_DTYPES]
    + [("torch.storage", "UntypedStorage")])

_OPNAMES = {op.code.encode("latin-1"): op.name for op in pickletools.opcodes}
_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class _Global:
    """An allow-listed global, inert: only its name is kept."""
    __slots__ = ("module", "name")

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __repr__(self):
        return f"{self.module}.{self.name}"


class _Storage:
    __slots__ = ("key", "kind", "numel")

    def __init__(self, key, kind, numel):
        self.key, self.kind, self.numel = key, kind, numel


class _Tensor:
    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _Mark:
    pass


_MARK = _Mark()


def _int_tuple(value, what):
    if not isinstance(value, tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise CheckpointError(f"torch pickle: {what} must be a tuple of non-negative integers, "
                              f"got {short_repr(value)}")
    if len(value) > 64:
        raise CheckpointError(f"torch pickle: {what} has {len(value)} dimensions (at most 64)")
    return value


def _call(func: _Global, args):
    """Apply an allow-listed callable to ``args`` (a REDUCE), building inert records only."""
    if not isinstance(args, tuple):
        raise CheckpointError(f"torch pickle: arguments of {func!r} are not a tuple")
    key = (func.module, func.name)
    if key == _ORDERED_DICT:
        if args == ():
            return {}
        if len(args) == 1 and isinstance(args[0], list) and all(
                isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], (str, int))
                for p in args[0]):
            out = dict(args[0])
            if len(out) != len(args[0]):
                raise CheckpointError("torch pickle: OrderedDict given one key twice (one "
                                      "value would silently replace the other)")
            return out
        raise CheckpointError("torch pickle: OrderedDict called with unexpected arguments")
    if key == _REBUILD_TENSOR:
        if len(args) not in (6, 7):
            raise CheckpointError(f"torch pickle: _rebuild_tensor_v2 takes 6 or 7 arguments, "
                                  f"got {len(args)}")
        storage, offset, size, stride, requires_grad, hooks = args[:6]
        if not isinstance(storage, _Storage):
            raise CheckpointError("torch pickle: _rebuild_tensor_v2 got no storage")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise CheckpointError(f"torch pickle: storage offset must be a non-negative "
                                  f"integer, got {short_repr(offset)}")
        size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
        if len(size) != len(stride):
            raise CheckpointError(f"torch pickle: size {size} and stride {stride} differ in length")
        if not isinstance(requires_grad, bool) or hooks not in ({}, None):
            raise CheckpointError("torch pickle: unexpected requires_grad or backward hooks")
        if len(args) == 7 and args[6] not in (None, {}):
            raise CheckpointError("torch pickle: tensor metadata is not supported")
        return _Tensor(storage, offset, size, stride)
    if key == _REBUILD_PARAMETER:
        if len(args) != 3 or not isinstance(args[0], _Tensor) or args[2] not in ({}, None):
            raise CheckpointError("torch pickle: unexpected arguments to _rebuild_parameter")
        return args[0]
    raise CheckpointError(f"torch pickle: {func!r} cannot be called")


class _Memory:
    """Bytes the pickle machine has allocated, charged as they are allocated, never refunded
    (so the total bounds what it holds at any moment); a pickle that overspends ``budget``
    is refused."""

    def __init__(self, file_size: int):
        self.file_size = file_size
        self.left = MAX_OBJECT_BYTES_PER_BYTE * file_size + OBJECT_SLACK

    def charge(self, nbytes: int) -> None:
        self.left -= nbytes
        if self.left < 0:
            raise CheckpointError(
                f"torch pickle: the objects it builds would take more than "
                f"{MAX_OBJECT_BYTES_PER_BYTE} times the file's {self.file_size} bytes plus "
                f"{OBJECT_SLACK >> 20} MiB of memory (a state_dict's pickle is a small part of "
                f"its file)")

    def made(self, value):
        """Charge the new object ``value``; return it."""
        self.charge(sys.getsizeof(value))
        return value


class _Reader:
    """A bounded cursor over the pickle bytes."""

    def __init__(self, data: bytes, memory: _Memory):
        self.data, self.pos, self.memory = data, 0, memory

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CheckpointError(f"torch pickle: truncated (wanted {n} bytes at offset "
                                  f"{self.pos} of {len(self.data)})")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def text(self, n: int) -> str:
        chunk = self.take(n)     # and the str made of it: 1 byte a character if ASCII, else <= 4
        self.memory.charge(n + (_STR_BYTES + n if chunk.isascii() else 80 + 4 * n))
        try:
            return chunk.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"torch pickle: string at offset {self.pos - n} is not "
                                  f"valid UTF-8") from None

    def line(self) -> str:
        end = self.data.find(b"\n", self.pos, self.pos + 256)
        if end < 0:
            raise CheckpointError("torch pickle: unterminated or overlong GLOBAL name")
        chunk = self.data[self.pos:end]
        self.pos = end + 1
        try:
            return chunk.decode("ascii")
        except UnicodeDecodeError:
            raise CheckpointError("torch pickle: GLOBAL name is not ASCII") from None


class _Sizes:
    """What the pickle machine has built, counted as if no reference were shared.

    A container's size is 1 plus its items' sizes (anything else counts 1), so a list
    holding one list a thousand times has the size of its ``repr``, not of its memory.
    Building or filling a container spends its items' sizes from ``budget``; a pickle
    that overspends is refused. A list or dict placed in another container is sealed:
    filling it afterwards would grow sizes already counted (``pickle.dumps`` does that only
    for structures that contain themselves, which no state_dict has). Each container
    registered costs ``memory`` one entry; a tuple holding no container (a size, a
    persistent id) is not registered, its size being known from itself: 1 plus its length.
    """

    def __init__(self, budget: int, memory: _Memory):
        self.left, self.memory = budget, memory
        self.size = {}   # id(container) -> its size, negated once sealed
        self.held = []   # the containers registered, held so that their ids stay unique

    def new(self, container, items=()):
        """Register ``container`` built from ``items``; return it."""
        if isinstance(container, tuple) and not any(
                isinstance(item, (tuple, list, dict)) for item in items):
            self.spend(len(items))
            return container
        self.memory.charge(_ENTRY_BYTES + 8 + 32)          # and a slot in held, a size
        self.held.append(container)
        self.size[id(container)] = 1
        self.add(container, items)
        return container

    def add(self, container, items) -> None:
        """Count ``items`` put into ``container`` (new, or not sealed yet)."""
        size = self.size[id(container)]
        if size < 0:
            raise CheckpointError("torch pickle: a list or dict is changed after being put "
                                  "inside another container (not something a state_dict has)")
        total = 0
        for item in items:
            inner = self.size.get(id(item))
            if inner is not None:
                total += abs(inner)
                if inner > 0 and not isinstance(item, tuple):
                    self.size[id(item)] = -inner
            else:
                total += 1 + len(item) if isinstance(item, tuple) else 1
        now = self.size[id(container)]           # negated above if it holds itself now
        self.size[id(container)] = size + total if now > 0 else -(size + total)
        self.spend(total)

    def spend(self, total: int) -> None:
        self.left -= total
        if self.left < 0:
            raise CheckpointError("torch pickle: the objects it builds, counted without "
                                  "sharing, far outnumber its bytes (references to the same "
                                  "objects repeated and nested: a 'billion laughs'?)")


def unpickle_state_dict(data: bytes, persistent_load, file_size: int = 0):
    """Interpret ``data.pkl`` with the allow-list; return its (inert) top-level object.

    ``persistent_load(pid)`` turns a persistent id tuple into a ``_Storage``. The objects
    built may take ``MAX_OBJECT_BYTES_PER_BYTE`` times ``max(len(data), file_size)`` bytes
    plus ``OBJECT_SLACK`` (``file_size``: the file the pickle came from, storages included).

    Examples
    --------
    Plain containers of strings and numbers come back as they were pickled:

    >>> import pickle
    >>> unpickle_state_dict(pickle.dumps({"step": 3, "names": ["w", "b"]}), persistent_load=None)
    {'step': 3, 'names': ['w', 'b']}

    A pickle may name any function for ``pickle.load`` to call; this one refuses it unread:

    >>> unpickle_state_dict(pickle.dumps(eval), persistent_load=None)
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: torch pickle: global 'builtins'.'eval' is not allowed
    """
    memory = _Memory(max(len(data), file_size))
    r = _Reader(data, memory)
    stack, marks, deepest = [], [], 0
    memo, memo_rest = [], {}    # memo entries 0, 1, 2, ... (as pickle numbers them); others
    sizes = _Sizes(MAX_NODES_PER_BYTE * len(data) + 4096, memory)
    made = memory.made

    def pop():
        if not stack or stack[-1] is _MARK:
            raise CheckpointError("torch pickle: stack underflow")
        return stack.pop()

    def pop_mark():
        if not marks:
            raise CheckpointError("torch pickle: no MARK on the stack")
        start = marks.pop()
        items = stack[start + 1:]       # (a copy of the stack's top: see push)
        del stack[start:]
        return items

    def push(value):
        nonlocal deepest
        if len(stack) >= deepest:
            if deepest >= MAX_STACK:
                raise CheckpointError("torch pickle: stack too deep")
            memory.charge(24)       # a slot, one in a copy of the stack's top, a MARK's place
            deepest += 1
        stack.append(value)

    def put(index):
        if not stack or stack[-1] is _MARK:
            raise CheckpointError("torch pickle: nothing to memoize")
        if index < len(memo):
            memo[index] = stack[-1]
            return
        if len(memo) + len(memo_rest) >= MAX_MEMO and index not in memo_rest:
            raise CheckpointError("torch pickle: memo too large")
        if index == len(memo):
            memory.charge(16)                   # a slot, and its share of the list's growth
            memo.append(stack[-1])
        else:
            memory.charge(0 if index in memo_rest else _ENTRY_BYTES)
            memo_rest[index] = stack[-1]

    def get(index):
        if index < len(memo):
            push(memo[index])
        elif index in memo_rest:
            push(memo_rest[index])
        else:
            raise CheckpointError(f"torch pickle: memo entry {index} does not exist")

    def check_key(key):
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise CheckpointError(f"torch pickle: dictionary key of type "
                                  f"{type(key).__name__} is not allowed")
        return key

    def set_item(target, key, value):
        key = check_key(key)
        if key in target:     # torch.save never writes one; the second would replace the first
            raise CheckpointError(f"torch pickle: key {short_repr(key)} is set twice in one "
                                  f"dict (one value would silently replace the other)")
        target[key] = value

    def fill(target, items):
        """Put ``items`` (a list's new items, or a dict's keys and values) into ``target``."""
        sizes.add(target, items)
        before = sys.getsizeof(target)
        if isinstance(target, list):
            target.extend(items)
        else:
            for i in range(0, len(items), 2):
                set_item(target, items[i], items[i + 1])
        memory.charge(2 * (sys.getsizeof(target) - before))   # a resize holds old and new
        return target

    while True:
        op = r.take(1)
        if op == b"\x80":                       # PROTO
            if r.take(1)[0] > 5:
                raise CheckpointError("torch pickle: unsupported pickle protocol")
        elif op == b"\x95":                     # FRAME: a length hint only
            r.take(8)
        elif op == b"c":                        # GLOBAL module\nname\n
            module, name = r.line(), r.line()
            if (module, name) not in ALLOWED_GLOBALS:
                raise CheckpointError(f"torch pickle: global {module}.{name} is not allowed "
                                      f"(a state_dict needs only tensors and storages)")
            memory.charge(sys.getsizeof(module) + sys.getsizeof(name))
            push(made(_Global(module, name)))
        elif op == b"\x93":                     # STACK_GLOBAL
            name, module = pop(), pop()
            if not isinstance(module, str) or not isinstance(name, str) or \
                    (module, name) not in ALLOWED_GLOBALS:
                raise CheckpointError(f"torch pickle: global {short_repr(module)}."
                                      f"{short_repr(name)} is not allowed")
            push(made(_Global(module, name)))
        elif op == b"q":                        # BINPUT
            put(r.take(1)[0])
        elif op == b"r":                        # LONG_BINPUT
            put(struct.unpack("<I", r.take(4))[0])
        elif op == b"\x94":                     # MEMOIZE
            put(len(memo))
        elif op == b"h":                        # BINGET
            get(r.take(1)[0])
        elif op == b"j":                        # LONG_BINGET
            get(struct.unpack("<I", r.take(4))[0])
        elif op == b"(":                        # MARK
            marks.append(len(stack))
            push(_MARK)
        elif op == b")":                        # EMPTY_TUPLE
            push(())
        elif op == b"t":                        # TUPLE
            items = pop_mark()
            push(sizes.new(made(tuple(items)), items))
        elif op in (b"\x85", b"\x86", b"\x87"):  # TUPLE1/2/3
            n = op[0] - 0x84
            items = [pop() for _ in range(n)][::-1]
            push(sizes.new(made(tuple(items)), items))
        elif op == b"]":                        # EMPTY_LIST
            push(sizes.new(made([])))
        elif op == b"l":                        # LIST
            items = pop_mark()
            push(sizes.new(made(items), items))
        elif op == b"a":                        # APPEND
            value = pop()
            target = pop()
            if not isinstance(target, list):
                raise CheckpointError("torch pickle: APPEND to a non-list")
            push(fill(target, [value]))
        elif op == b"e":                        # APPENDS
            items = pop_mark()
            target = pop()
            if not isinstance(target, list):
                raise CheckpointError("torch pickle: APPENDS to a non-list")
            push(fill(target, items))
        elif op == b"}":                        # EMPTY_DICT
            push(sizes.new(made({})))
        elif op == b"d":                        # DICT
            items = pop_mark()
            if len(items) % 2:
                raise CheckpointError("torch pickle: DICT with an odd number of items")
            push(fill(sizes.new(made({})), items))
        elif op == b"s":                        # SETITEM
            value, key = pop(), pop()
            target = pop()
            if not isinstance(target, dict):
                raise CheckpointError("torch pickle: SETITEM on a non-dict")
            push(fill(target, [key, value]))
        elif op == b"u":                        # SETITEMS
            items = pop_mark()
            target = pop()
            if not isinstance(target, dict) or len(items) % 2:
                raise CheckpointError("torch pickle: malformed SETITEMS")
            push(fill(target, items))
        elif op == b"X":                        # BINUNICODE
            n = struct.unpack("<I", r.take(4))[0]
            push(r.text(n))
        elif op == b"\x8c":                     # SHORT_BINUNICODE
            push(r.text(r.take(1)[0]))
        elif op == b"\x8d":                     # BINUNICODE8
            push(r.text(struct.unpack("<Q", r.take(8))[0]))
        elif op == b"K":                        # BININT1
            push(r.take(1)[0])
        elif op == b"M":                        # BININT2
            push(made(struct.unpack("<H", r.take(2))[0]))
        elif op == b"J":                        # BININT
            push(made(struct.unpack("<i", r.take(4))[0]))
        elif op == b"\x8a":                     # LONG1
            push(made(int.from_bytes(r.take(r.take(1)[0]), "little", signed=True)))
        elif op == b"G":                        # BINFLOAT
            push(made(struct.unpack(">d", r.take(8))[0]))
        elif op == b"N":                        # NONE
            push(None)
        elif op == b"\x88":                     # NEWTRUE
            push(True)
        elif op == b"\x89":                     # NEWFALSE
            push(False)
        elif op == b"0":                        # POP
            if stack and stack[-1] is _MARK:
                pop_mark()
            else:
                pop()
        elif op == b"1":                        # POP_MARK
            pop_mark()
        elif op == b"2":                        # DUP
            push(stack[-1] if stack and stack[-1] is not _MARK else pop())
        elif op == b"Q":                        # BINPERSID: a storage, maybe a new one
            memory.charge(_ENTRY_BYTES)
            push(made(persistent_load(pop())))
        elif op == b"R":                        # REDUCE
            args, func = pop(), pop()
            if not isinstance(func, _Global):
                raise CheckpointError("torch pickle: REDUCE of something that is not an "
                                      "allowed global")
            result = made(_call(func, args))
            push(sizes.new(result, [args]) if isinstance(result, dict) else result)
        elif op == b"b":                        # BUILD: only OrderedDict's _metadata, ignored
            state = pop()
            target = pop()
            if not isinstance(target, dict) or not isinstance(state, dict):
                raise CheckpointError("torch pickle: BUILD is only allowed on the state_dict")
            push(target)
        elif op == b".":                        # STOP
            if len(stack) != 1 or stack[0] is _MARK:
                raise CheckpointError("torch pickle: STOP with a malformed stack")
            return stack[0]
        else:
            name = _OPNAMES.get(op, "unknown")
            raise CheckpointError(f"torch pickle: opcode {op!r} ({name}) at offset {r.pos - 1} "
                                  f"is not allowed in a state_dict")


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, expected: int, limit: int) -> bytes:
    """Read exactly ``expected`` bytes of a zip entry, refusing entries that lie about it."""
    if info.file_size != expected:
        raise CheckpointError(f"zip entry {short_repr(info.filename)} holds {info.file_size} "
                              f"bytes, expected {expected}")
    if expected > limit:
        raise CheckpointError(f"zip entry {short_repr(info.filename)} declares {expected} bytes, "
                              f"more than a file of this size can hold (zip bomb?)")
    with zf.open(info) as f:
        data = f.read(expected)
    if len(data) != expected:
        raise CheckpointError(f"zip entry {short_repr(info.filename)} is truncated: {len(data)} of "
                              f"{expected} bytes")
    return data


def read_torch_zip(path) -> dict:
    r"""Read a ``torch.save(state_dict)`` zip into NumPy arrays, without torch.

    Parameters
    ----------
    path : str or os.PathLike, a file written by ``torch.save`` (PyTorch >= 1.6).

    Returns
    -------
    dict name -> ndarray, in the pickle's order. Float/int/bool storages keep their dtype
    (native byte order); bfloat16 becomes float32.

    Raises
    ------
    CheckpointError
        Not a zip, a zip that lies about its entries, a pickle global or opcode outside the
        allow-list, a missing storage, a view outside its storage, non-tensor values.

    Examples
    --------
    ``torch.save({"w": torch.arange(4.0).reshape(2, 2)}, "tiny.pt")``, written by hand: the
    same pickle opcodes (without torch's memo bookkeeping) and the same zip entries, so
    ``torch.load`` reads this file too. Opcodes: ``(`` ... ``t`` a tuple, ``K`` a small
    int, ``\x86`` a pair, ``Q`` a persistent id (here: a storage), ``c`` a global, ``R``
    a call, ``}`` an empty dict, ``s`` set an item, ``.`` stop.

    >>> import struct, zipfile
    >>> def s(text):                                     # a str: X, its length, its UTF-8
    ...     return b"X" + struct.pack("<I", len(text)) + text.encode()
    >>> storage = (b"(" + s("storage") + b"ctorch\nFloatStorage\n" + s("0") + s("cpu")
    ...            + b"K\x04" + b"tQ")                  # storage "0": 4 floats
    >>> w = (b"ctorch._utils\n_rebuild_tensor_v2\n"      # a call of _rebuild_tensor_v2 with
    ...      + b"(" + storage + b"K\x00"                # (the storage, offset 0,
    ...      + b"K\x02K\x02\x86" + b"K\x02K\x01\x86"    #  size (2, 2), stride (2, 1),
    ...      + b"\x89" + b"}" + b"tR")                  #  requires_grad False, no hooks)
    >>> with zipfile.ZipFile("tiny.pt", "w") as zf:
    ...     zf.writestr("archive/data.pkl", b"\x80\x02" + b"}" + s("w") + w + b"s" + b".")
    ...     zf.writestr("archive/data/0", np.arange(4, dtype="<f4").tobytes())
    ...     zf.writestr("archive/version", "3\n")
    >>> read_torch_zip("tiny.pt")
    {'w': array([[0., 1.],
           [2., 3.]], dtype=float32)}
    """
    try:
        return _read_torch_zip(path)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, struct.error,
            UnicodeDecodeError, NotImplementedError, RuntimeError, OverflowError,
            ValueError, KeyError, IndexError, TypeError, OSError) as exc:
        raise CheckpointError(f"{os.fspath(path)}: malformed PyTorch zip file: "
                              f"{type(exc).__name__}: {exc}"[:400]) from None


def _read_torch_zip(path) -> dict:
    with open_regular(path) as raw, zipfile.ZipFile(raw) as zf:
        file_size = os.fstat(raw.fileno()).st_size
        infos = {}
        for info in zf.infolist():
            if info.filename in infos:      # a reader would take one or the other
                raise CheckpointError(f"{os.fspath(path)}: the zip holds two entries named "
                                      f"{short_repr(info.filename)}")
            infos[info.filename] = info
        prefix = _top_folder(infos, path)
        # Everything read (data.pkl + storages) must fit in a few times the file's size:
        # this bounds memory even for deflated entries or entries overlapping in the zip.
        limit = MAX_EXPANSION * file_size + (1 << 20)
        pkl_info = infos[prefix + "data.pkl"]
        if pkl_info.file_size > min(MAX_PICKLE_BYTES, limit):
            raise CheckpointError(f"{os.fspath(path)}: data.pkl declares {pkl_info.file_size} "
                                  f"bytes, above the limit")
        pkl = _read_entry(zf, pkl_info, pkl_info.file_size, limit)
        limit -= len(pkl)
        order = _byte_order(zf, infos, prefix, path)

        storages = {}
        try:
            state = unpickle_state_dict(pkl, _storage_loader(storages), file_size)
        except CheckpointError as exc:
            raise CheckpointError(f"{os.fspath(path)}: {exc}") from None
        if not isinstance(state, dict):
            raise CheckpointError(f"{os.fspath(path)}: data.pkl holds a "
                                  f"{type(state).__name__}, not a state_dict")
        for name, value in state.items():
            if not isinstance(name, str) or not isinstance(value, _Tensor):
                raise CheckpointError(f"{os.fspath(path)}: entry {short_repr(name)} is not a "
                                      f"tensor (only a plain state_dict is supported)")

        flat = {}
        for key, storage in storages.items():
            entry = prefix + "data/" + key
            if entry not in infos:
                raise CheckpointError(f"{os.fspath(path)}: storage {key!r} is missing "
                                      f"(no zip entry {short_repr(entry)})")
            code, itemsize = STORAGE_DTYPES[storage.kind]
            raw = _read_entry(zf, infos[entry], storage.numel * itemsize, limit)
            limit -= len(raw)
            dtype = np.dtype(code).newbyteorder(order) if itemsize > 1 else np.dtype(code)
            flat[key] = np.frombuffer(raw, dtype=dtype)

    budget = MAX_EXPANSION * file_size + (1 << 20)
    out = {}
    for name, t in state.items():
        out[name] = _materialise(name, t, flat[t.storage.key], budget)
        budget -= out[name].nbytes
    return out


def _top_folder(infos: dict, path) -> str:
    """``"<top>/"``, the folder holding the zip's one ``<top>/data.pkl``."""
    pickles = [n for n in infos if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise CheckpointError(f"{os.fspath(path)}: a PyTorch zip has exactly one "
                              f"<folder>/data.pkl, found {len(pickles)}")
    return pickles[0][:-len("data.pkl")]


def _byte_order(zf: zipfile.ZipFile, infos: dict, prefix: str, path) -> str:
    """NumPy's byte-order mark of the storages: ``"<"`` ("little", or no byteorder entry)
    or ``">"`` ("big")."""
    byteorder = "little"
    if prefix + "byteorder" in infos:
        info = infos[prefix + "byteorder"]
        raw = _read_entry(zf, info, info.file_size, 16) if info.file_size <= 16 else b""
        byteorder = raw.decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise CheckpointError(f"{os.fspath(path)}: byteorder must be 'little' or "
                                  f"'big', got {raw[:16]!r}")
    return "<" if byteorder == "little" else ">"


def _storage_loader(storages: dict):
    """The ``persistent_load`` of :func:`unpickle_state_dict`: it checks a persistent id
    ``("storage", storage class, key, location, numel)`` and records its ``_Storage`` in
    ``storages`` (key -> _Storage), the same record each time a key comes back."""
    def persistent_load(pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"torch pickle: unexpected persistent id {short_repr(pid)}")
        _, kind, key, location, numel = pid
        if not isinstance(kind, _Global) or kind.name not in STORAGE_DTYPES:
            what = repr(kind) if isinstance(kind, _Global) else short_repr(kind)
            raise CheckpointError(f"torch pickle: {what} is not a storage class")
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise CheckpointError(f"torch pickle: bad storage key {short_repr(key)}")
        if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"torch pickle: bad storage size {short_repr(numel)}")
        if not isinstance(location, str):
            raise CheckpointError("torch pickle: storage location must be a string")
        if key in storages:
            old = storages[key]
            if old.kind != kind.name or old.numel != numel:
                raise CheckpointError(f"torch pickle: storage {key} is described twice, "
                                      f"differently")
            return old
        storages[key] = _Storage(key, kind.name, numel)
        return storages[key]
    return persistent_load


def _materialise(name, t: _Tensor, storage: np.ndarray, budget: int) -> np.ndarray:
    """storage[offset + Σ i_k s_k] for every index of ``size``, as a fresh contiguous array."""
    numel = 1
    for s in t.size:
        numel *= s
    if numel * storage.itemsize > budget:
        raise CheckpointError(f"tensor {short_repr(name)}: its views would need more memory "
                              f"than the file's size justifies")
    if numel == 0:
        values = np.zeros(t.size, dtype=storage.dtype)
    else:
        last = t.offset + sum((s - 1) * st for s, st in zip(t.size, t.stride))
        if last >= storage.size:
            raise CheckpointError(f"tensor {short_repr(name)}: size {short_repr(t.size)}, "
                                  f"stride {short_repr(t.stride)} and offset "
                                  f"{short_repr(t.offset)} reach element {short_repr(last)} "
                                  f"of a storage with {storage.size}")
        view = np.lib.stride_tricks.as_strided(
            storage[t.offset:], shape=t.size,
            strides=[st * storage.itemsize for st in t.stride], writeable=False)
        values = np.array(view, order="C")
    if not values.dtype.isnative:
        values = values.astype(values.dtype.newbyteorder("="))
    if t.storage.kind == "BFloat16Storage":
        values = bfloat16_to_float32(values)
    return values
