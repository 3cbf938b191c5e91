"""Where the commands' output goes: a terminal, a pipe whose reader may go away, a picture
file; and the threads line of their timing notes."""

from __future__ import annotations

import os
import select
import stat

from ._parsing import CLIError


def is_terminal(stream) -> bool:
    """Whether ``stream`` is a terminal (not a closed stream, nor one without ``isatty``)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):      # no isatty, or closed
        return False


def is_pipe(stream) -> bool:
    """Whether ``stream`` is a pipe or a socket (whose reader may go away), not a terminal,
    a file or an in-memory buffer."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (AttributeError, ValueError, OSError):     # io.UnsupportedOperation is both
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def reader_gone(stream) -> bool:
    """Whether ``stream`` is a pipe whose reading end is closed (poll reports an error on it)."""
    if not is_pipe(stream) or not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(stream.fileno(), select.POLLOUT)
    return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))


def threads_used() -> str:
    """``"1 thread"`` / ``"2 threads"``: the count npgpt's last call ran on."""
    from ..threads import get_num_threads

    n = get_num_threads()
    return f"{n} thread{'s' if n != 1 else ''}"


# ----------------------------------------------------------------------------- pictures
# what matplotlib (>= 3.5, with the Pillow it requires) writes, by the file name's extension
_PICTURE_FORMATS = ("png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp")


def check_picture_path(path: str) -> None:
    """--png PATH must be a file name matplotlib can write, in a folder that exists: checked
    before any work, so that a typo costs nothing.

    >>> check_picture_path("strategies.png")
    >>> check_picture_path("no-such-folder/strategies.png")
    Traceback (most recent call last):
        ...
    npgpt.cli.CLIError: --png 'no-such-folder/strategies.png': there is no folder 'no-such-folder'
    """
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in _PICTURE_FORMATS:
        raise CLIError(f"--png {path!r}: the name must end in .png (or ."
                       f"{', .'.join(f for f in _PICTURE_FORMATS if f != 'png')})")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise CLIError(f"--png {path!r}: there is no folder {folder!r}")
    if os.path.isdir(path):
        raise CLIError(f"--png {path!r} is a folder; give a file name")
    if not os.access(folder, os.W_OK):
        raise CLIError(f"--png {path!r}: the folder {folder!r} is not writable")


def draw(plot, *args, path: str, **kwargs) -> None:
    """Run the viz function ``plot`` that writes ``path``; its failures as one-line errors."""
    try:
        plot(*args, path=path, **kwargs)
    except ImportError as err:
        raise CLIError(str(err)) from None
    except OSError as err:
        raise CLIError(f"--png {path!r}: cannot write it ({err.strerror or err})") from None
