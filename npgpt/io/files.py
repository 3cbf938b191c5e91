"""Files on disk: read only regular files, write atomically, clean up after killed writers.

- :func:`open_regular` opens a file for reading without ever blocking on a FIFO or a
  device, and refuses anything that is not a regular file.
- :func:`atomic_write` writes a file next to its destination under a temporary name, then
  renames it over the destination: a reader sees the old file or the new one, never half.
- :func:`atomic_folder` does the same for a model folder (``save_gpt2``, ``save_hf``): a
  folder of the model's files only is rebuilt beside the old one and swapped in with one
  atomic exchange where the system has one (Linux's ``renameat2(RENAME_EXCHANGE)``), else
  with two renames; a folder that also holds other files keeps them, untouched, and has the
  model's files replaced inside it one by one.
- :func:`clean_stale_temporaries` removes the temporaries that killed writers left behind.

Temporary names: ``.<name>.<pid>.<12 hex digits>.part`` beside the destination ``<name>``,
where ``<pid>`` is the writing process (``.old`` instead of ``.part``: an old folder moved
aside during a swap). Such an entry is stale once no process with that pid exists. npgpt
0.1.0 wrote ``.<name>.<12 hex digits>.part`` without a pid; those are stale once untouched
for :data:`LEGACY_STALE_SECONDS`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import stat
import sys
import time

from .errors import CheckpointError, short_repr

TEMPORARY_RE = re.compile(
    r"^\.(?P<name>.+)\.(?P<pid>[0-9]{1,10})\.[0-9a-f]{12}\.(?P<kind>part|old)$")
LEGACY_TEMPORARY_RE = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{12}\.part$")
LEGACY_STALE_SECONDS = 600     # a writer touches its file far more often than this
_STARTED = time.time()         # this process writes temporaries only after this moment
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def kind_of(mode: int) -> str:
    """What a ``st_mode`` describes, for messages: ``"a regular file"``, ``"a FIFO (named
    pipe)"``, ``"a folder"``, ...

    Examples
    --------
    >>> kind_of(os.stat(".").st_mode)
    'a folder'
    """
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular(path):
    """Open ``path`` for reading in binary, refusing anything but a regular file.

    The file is opened with ``O_NONBLOCK`` and checked with ``fstat`` on the open
    descriptor, so a FIFO or a device never blocks the caller (not even one swapped in
    after a check by path) and is refused with a :class:`CheckpointError` (a
    ``ValueError``) naming the path and what it is. A missing file raises
    ``FileNotFoundError`` as ``open`` does.

    Examples
    --------
    >>> with open("notes.txt", "w") as f:
    ...     _ = f.write("hello")
    >>> with open_regular("notes.txt") as f:
    ...     f.read()
    b'hello'
    >>> open_regular("/dev/zero")
    Traceback (most recent call last):
        ...
    npgpt.io.errors.CheckpointError: /dev/zero: a character device, not a regular file; \
refusing to read it
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise CheckpointError(f"{os.fspath(path)}: {kind_of(mode)}, not a regular file; "
                                  f"refusing to read it")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (another user's counts).

    >>> process_alive(os.getpid()), process_alive(2 ** 40)
    (True, False)
    """
    if pid <= 0:
        return False                     # no process has such a pid (0 would ask the group)
    if os.name == "nt":                  # os.kill(pid, 0) would end the process there
        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)            # query limited information
        if not handle:
            return kernel32.GetLastError() == 5                      # access denied: it exists
        code = ctypes.c_ulong()
        found = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return bool(found) and code.value == 259                     # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except OSError:                      # it exists (e.g. another user's: EPERM)
        return True
    return True


def _writer_gone(name: str, mtime: float) -> bool:
    """Whether the temporary ``name`` was left by a writer that no longer runs."""
    match = TEMPORARY_RE.match(name)
    if match is None:
        return time.time() - mtime > LEGACY_STALE_SECONDS       # a legacy name, no pid
    pid = int(match["pid"])
    if pid == os.getpid():               # this process (another thread's write in progress),
        return mtime < _STARTED - 2      # unless written before it began: a restarted
                                         # container's earlier process with the same pid
    return not process_alive(pid)


def clean_stale_temporaries(folder) -> list:
    """Remove npgpt's temporaries in ``folder`` whose writer was killed; return their names.

    Only entries named like npgpt's temporaries (``.<name>.<pid>.<hex>.part``) are
    considered, and of those only the ones whose writing process no longer exists (for
    the pid-less names of npgpt 0.1.0: untouched for ten minutes; with this process's own
    pid: older than this process, as after a container restart brings the same pid back).
    A save in progress, in this process or another, is never disturbed, and no other file
    is ever touched. Temporary folders (from :func:`atomic_folder`) are removed with their content,
    except an old folder moved aside (``.old``) by a swap killed before the new folder
    took its place: that one is put back as ``<name>``, as if the swap had not begun.
    :func:`atomic_write` and :func:`atomic_folder` call this before they write.

    Examples
    --------
    >>> os.makedirs("run")
    >>> for name in ("notes.txt", ".ckpt.npz.999999999.0123456789ab.part"):
    ...     with open(os.path.join("run", name), "w") as f:
    ...         _ = f.write("x")
    >>> clean_stale_temporaries("run")          # pid 999999999 does not exist
    ['.ckpt.npz.999999999.0123456789ab.part']
    >>> os.listdir("run")
    ['notes.txt']
    """
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in sorted(names):
        match = TEMPORARY_RE.match(name) or LEGACY_TEMPORARY_RE.match(name)
        if match is None:
            continue
        path = os.path.join(folder, name)
        target = os.path.join(folder, match["name"])
        try:
            info = os.lstat(path)
            if not _writer_gone(name, info.st_mtime):
                continue
            if name.endswith(".old") and not os.path.lexists(target):
                os.rename(path, target)  # the old folder, whose replacement never came
            elif stat.S_ISDIR(info.st_mode):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError:
            continue                     # gone already, or not ours to remove
        removed.append(name)
    return removed


def temporary_path(path, kind: str = "part") -> str:
    """A fresh temporary name beside ``path``: ``<folder>/.<name>.<pid>.<hex>.<kind>``.

    Examples
    --------
    >>> tmp = temporary_path("run/model.safetensors")
    >>> os.path.dirname(tmp) == os.path.abspath("run")
    True
    >>> bool(TEMPORARY_RE.match(os.path.basename(tmp)))     # .model.safetensors.<pid>.<hex>.part
    True
    """
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(6)}.{kind}")


def _fsync_path(path, flags=os.O_RDONLY) -> None:
    """Flush ``path`` (a file or a folder) to disk, where the system allows it."""
    try:
        fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, content) -> None:
    """Write ``content`` to ``path`` atomically: a temporary file beside it, then a rename.

    A reader sees the old file or the new one, never a mixture; a ``path`` that names a
    folder (or a link to one) raises IsADirectoryError before anything is written; a writer
    killed midway leaves the old file untouched and a temporary ``.<name>.<pid>.<hex>.part``
    that the next write into the same folder removes (:func:`clean_stale_temporaries`). The new
    file has the mode of any new file (``0o666`` less the process umask), is flushed to
    disk before the rename, and so is the folder after it.

    Parameters
    ----------
    path : str or os.PathLike
    content : bytes-like, iterable of bytes-like chunks, or callable
        A callable is called with the open binary file and writes to it, e.g.
        ``lambda f: np.savez(f, **arrays)``.

    Examples
    --------
    >>> atomic_write("hello.txt", b"hello\\n")
    >>> atomic_write("table.npz", lambda f: np.savez(f, x=np.arange(3)))
    >>> open("hello.txt", "rb").read(), np.load("table.npz")["x"]
    (b'hello\\n', array([0, 1, 2]))
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "a folder, not a file: refusing to replace it "
                                "(give a file name)", path)
    folder = os.path.dirname(os.path.abspath(path))
    clean_stale_temporaries(folder)
    tmp = temporary_path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        with open(os.open(tmp, flags | getattr(os, "O_CLOEXEC", 0), 0o666), "wb") as f:
            if callable(content):
                content(f)
            elif isinstance(content, (bytes, bytearray, memoryview)):
                f.write(content)
            else:
                for chunk in content:
                    f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_path(folder)


# ------------------------------------------------------------------------ whole folders
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_renameat2 = None        # libc's renameat2 once looked up; False where there is none


def _libc_renameat2():
    global _renameat2
    if _renameat2 is None:
        _renameat2 = False
        if sys.platform.startswith("linux"):
            try:
                fn = ctypes.CDLL(None, use_errno=True).renameat2      # glibc >= 2.28
            except (OSError, AttributeError):
                fn = None
            if fn is not None:
                fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                               ctypes.c_uint]
                fn.restype = ctypes.c_int
                _renameat2 = fn
    return _renameat2


def exchange_paths(a, b) -> bool:
    """Atomically exchange two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False, changing nothing, where the system or the file system has no such
    call; raises OSError for any other failure.

    Examples
    --------
    >>> os.makedirs("left"); os.makedirs("right")
    >>> open("left/l.txt", "w").close()
    >>> if exchange_paths("left", "right"):       # Linux: one atomic step
    ...     print(os.listdir("right"))
    ... else:                                      # elsewhere: nothing happened
    ...     print(["l.txt"])
    ['l.txt']
    """
    fn = _libc_renameat2()
    if not fn:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), os.fspath(b))


def _rescue(old: str, new: str, owns) -> None:
    """Move into folder ``new`` every entry of folder ``old`` that ``owns`` does not claim
    (one that appeared in ``old`` while the new folder was being built), unless ``new``
    already has that name."""
    for name in sorted(os.listdir(old)):
        if not owns(name) and not os.path.lexists(os.path.join(new, name)):
            try:
                os.rename(os.path.join(old, name), os.path.join(new, name))
            except OSError:
                pass


def _foreign_entries(folder: str, owns) -> list:
    """The names in ``folder`` that are not the content's own: not claimed by ``owns``, or
    claimed but a folder (a file of the content never is one)."""
    out = []
    for name in sorted(os.listdir(folder)):
        if not owns(name) or os.path.isdir(os.path.join(folder, name)):
            out.append(name)
    return out


def _swap_in(new: str, folder: str, owns) -> None:
    """Make the complete folder ``new`` appear at ``folder``, replacing any old one (whose
    entries that ``owns`` does not claim, if any appeared meanwhile, are moved across)."""
    if not os.path.lexists(folder):
        os.rename(new, folder)
    elif exchange_paths(new, folder):
        _rescue(new, folder, owns)                      # ``new`` is now the old folder
        shutil.rmtree(new, ignore_errors=True)
    else:
        aside = temporary_path(folder, "old")
        os.rename(folder, aside)
        try:
            os.rename(new, folder)
        except BaseException:
            os.rename(aside, folder)
            raise
        _rescue(aside, folder, owns)
        shutil.rmtree(aside, ignore_errors=True)
    _fsync_path(os.path.dirname(folder))


def _replace_in_place(folder: str, fill, owns) -> None:
    """Replace the content's files inside ``folder`` one by one, touching nothing else:
    ``fill`` writes into a temporary folder inside ``folder``, then each new file is renamed
    over its old version (``config.json`` last) and the content's files that the new
    version lacks are removed."""
    work = temporary_path(os.path.join(folder, "save"))
    os.mkdir(work)
    try:
        fill(work)
        names = sorted(os.listdir(work), key=lambda name: (name == "config.json", name))
        for name in names:
            _fsync_path(os.path.join(work, name))
        for name in names:
            os.replace(os.path.join(work, name), os.path.join(folder, name))
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if owns(name) and name not in names and not os.path.isdir(path):
                os.unlink(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _fsync_path(folder)


def _refuse_subfolder_clashes(folder, owns) -> None:
    """A ValueError when ``folder`` holds a subfolder where a file of the content belongs."""
    clashes = [name for name in sorted(os.listdir(folder))
               if owns(name) and os.path.isdir(os.path.join(folder, name))]
    if clashes:
        raise ValueError(f"{short_repr(os.path.join(folder, clashes[0]), 200)} is a "
                         f"folder where a file of the saved content belongs; "
                         f"refusing to replace it")


def atomic_folder(folder, fill, owned) -> str:
    """Replace the content of ``folder`` (a model: its config, weights, tokenizer) by a new
    version built by ``fill(tmp)``, never touching anything else the folder holds.

    ``fill`` writes the new files into an empty temporary folder. ``owned`` (a set of names,
    or a function name -> bool) says which names are the content's: the files ``fill`` may
    write, and the old version's files to remove when the new one lacks them. How the new
    version arrives depends on what the folder holds:

    - no folder yet: the temporary folder, complete, is renamed to ``folder``;
    - a folder of the content's files only (a model saved there before): the temporary
      folder is built beside it and the two swapped at once, on Linux (glibc >= 2.28, a file
      system that supports it) with one ``renameat2(RENAME_EXCHANGE)`` — a reader sees the
      old version or the new one — and elsewhere with two renames (old aside, new in), where
      for that instant a reader may find no folder at all but never a mixture. A process
      killed between the two leaves the old folder aside as ``.<name>.<pid>.<hex>.old``;
      the next call (through :func:`clean_stale_temporaries`) puts it back first. The new
      folder keeps the old one's permission bits;
    - a folder that also holds anything else (a user's notes or data, a subfolder, files of
      other tools): the folder itself and every other entry stay exactly as they are
      (same inodes, same permissions); the new files are written inside it to a temporary
      folder, then each is renamed over its old version, ``config.json`` last, and the
      content's old files that the new version lacks are removed. Each file is atomic, the
      set is not: a process killed between two renames leaves some new files beside old
      ones (a reader such as :func:`npgpt.load` that notices the folder change reads again).

    If ``fill`` fails, or the process is interrupted before the swap or the renames, the old
    version is untouched; a killed process leaves a temporary that the next call removes
    (:func:`clean_stale_temporaries`). Returns how the folder was written: ``"new"``,
    ``"swapped"`` or ``"in place"``.

    Examples
    --------
    >>> def fill(tmp):
    ...     with open(os.path.join(tmp, "weights.bin"), "wb") as f:
    ...         _ = f.write(b"v2")
    >>> atomic_folder("model", fill, owned={"weights.bin", "vocab.txt"})
    'new'
    >>> atomic_folder("model", fill, owned={"weights.bin", "vocab.txt"})   # only its files
    'swapped'
    >>> for name, text in (("vocab.txt", "old"), ("README.md", "mine")):
    ...     with open(os.path.join("model", name), "w") as f:
    ...         _ = f.write(text)
    >>> atomic_folder("model", fill, owned={"weights.bin", "vocab.txt"})   # and a user's file
    'in place'
    >>> sorted(os.listdir("model")), open("model/weights.bin").read()
    (['README.md', 'weights.bin'], 'v2')
    """
    owns = owned if callable(owned) else frozenset(owned).__contains__
    folder = os.path.realpath(os.fspath(folder))     # a symlinked folder: its target
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise ValueError(f"{short_repr(folder, 200)} exists and is not a folder")
    clean_stale_temporaries(parent)
    if os.path.isdir(folder):
        clean_stale_temporaries(folder)
        if _foreign_entries(folder, owns):
            _refuse_subfolder_clashes(folder, owns)
            _replace_in_place(folder, fill, owns)
            return "in place"
    tmp = temporary_path(folder)
    os.mkdir(tmp)
    try:
        fill(tmp)
        for name in os.listdir(tmp):
            _fsync_path(os.path.join(tmp, name))
        existed = os.path.isdir(folder)
        if existed:
            os.chmod(tmp, stat.S_IMODE(os.stat(folder).st_mode))
        _fsync_path(tmp)
        _swap_in(tmp, folder, owns)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return "swapped" if existed else "new"
