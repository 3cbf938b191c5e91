"""What surrounds a run: its output folder (what it holds, and whether a state may train into
it), the folder's lock, the temporaries of saves killed midway, and Ctrl-C's request to stop
at the next step boundary (a signal handler)."""

from __future__ import annotations

import os
import re
import signal
import time

from ..io.files import process_alive
from .checkpoint import checkpoint_meta
from .errors import TrainingError
from .state import TrainState

try:
    import fcntl
except ImportError:                     # Windows: the lock falls back to a file holding the pid
    fcntl = None

LOCK_NAME = ".lock"
#: The files a run writes into its output folder; a folder holding either holds a run.
RUN_FILES = ("ckpt.npz", "model.safetensors")


# The checkpoint is written with npgpt.io's atomic_write: a temporary .ckpt.npz.PID.HEX.part
# renamed over it; clean_stale_temporaries removes those whose writer PID is gone. npgpt
# 0.1.0 saved checkpoints through .tmp-XXXXXXXX.npz instead: removed once an hour old.
_LEGACY_TEMPORARY = re.compile(r"^\.tmp-[a-z0-9_]{8}\.npz$")
_LEGACY_AGE = 3600.0                                              # seconds


def remove_stale_temporaries(folder: str) -> list:
    """Delete what saves killed midway left in ``folder``: npgpt's temporaries whose writer
    is gone (:func:`npgpt.io.clean_stale_temporaries`, for checkpoints and models alike),
    and the ``.tmp-XXXXXXXX.npz`` of older versions once an hour old. Nothing else is
    touched. Returns the names removed.

    Examples
    --------
    >>> os.makedirs("run")
    >>> for name in (".ckpt.npz.999999999.0123456789ab.part", "notes.txt", ".tmp-notes"):
    ...     open(os.path.join("run", name), "w").close()
    >>> remove_stale_temporaries("run")             # no process 999999999: its writer is gone
    ['.ckpt.npz.999999999.0123456789ab.part']
    >>> sorted(os.listdir("run"))
    ['.tmp-notes', 'notes.txt']
    """
    from ..io import clean_stale_temporaries

    removed = clean_stale_temporaries(folder)
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return removed
    for name in names:
        path = os.path.join(folder, name)
        try:
            if (_LEGACY_TEMPORARY.match(name) and os.path.isfile(path)
                    and time.time() - os.path.getmtime(path) > _LEGACY_AGE):
                os.unlink(path)
                removed.append(name)
        except OSError:                     # gone meanwhile, or not ours to remove
            continue
    return removed


def run_in_folder(folder: str) -> str | None:
    """What of a training run ``folder`` holds, in a few words, or None when it holds
    none of :data:`RUN_FILES` (an absent or empty folder, or one of other files only).

    Examples
    --------
    >>> from npgpt import GPT, GPTConfig
    >>> from npgpt.train import TrainConfig, TrainState, save_checkpoint
    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> os.makedirs("notes")
    >>> run_in_folder("notes") is None
    True
    >>> save_checkpoint("notes/ckpt.npz", TrainState.new(model, TrainConfig(steps=400)))
    >>> run_in_folder("notes")
    'a training run (ckpt.npz at step 0 of 400, not yet evaluated)'
    """
    present = [name for name in RUN_FILES if os.path.lexists(os.path.join(folder, name))]
    if not present:
        return None
    if "ckpt.npz" not in present:
        return "a model.safetensors (and no ckpt.npz to continue it from)"
    meta = checkpoint_meta(os.path.join(folder, "ckpt.npz"))
    if meta is None:
        return "a ckpt.npz that is not a readable training checkpoint"
    best, tc = meta.get("best_val"), meta.get("train_config")
    steps = tc.get("steps") if isinstance(tc, dict) else None
    where = f"step {meta.get('step')}" + (f" of {steps}" if steps is not None else "")
    quality = (f"best validation loss {best:.4f}" if isinstance(best, (int, float))
               else "not yet evaluated")
    model = ", and its model.safetensors" if "model.safetensors" in present else ""
    return f"a training run (ckpt.npz at {where}, {quality}{model})"


def _continues(state: TrainState, meta: dict) -> bool:
    """Whether ``state`` continues the run whose checkpoint metadata is ``meta``: the same
    run id (both None for checkpoints older than run ids), at its step or later, its
    evaluations as the first of the state's."""
    step, history = meta.get("step"), meta.get("history")
    return (isinstance(step, int) and isinstance(history, list)
            and meta.get("run_id") == state.run_id and step <= state.step
            and state.history[:len(history)] == history)


def check_out_dir(state: TrainState, out_dir: str, overwrite: bool) -> None:
    """A TrainingError unless training ``state`` into ``out_dir`` replaces no other run
    (see :func:`train`); a run file that is a folder is refused even with ``overwrite``.

    Examples
    --------
    >>> from npgpt import GPT, GPTConfig
    >>> from npgpt.train import TrainConfig, save_checkpoint
    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> state = TrainState.new(model, TrainConfig())
    >>> save_checkpoint("run/ckpt.npz", state)
    >>> check_out_dir(state, "run", overwrite=False)                  # the same run goes on
    >>> check_out_dir(TrainState.new(model, TrainConfig()), "run", overwrite=True)
    >>> check_out_dir(TrainState.new(model, TrainConfig()), "run", overwrite=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    npgpt.train.errors.TrainingError: out_dir 'run' holds a training run (ckpt.npz at step 0 of 2000, not yet evaluated), which this state does not continue; ...
    """
    for name in RUN_FILES:
        path = os.path.join(out_dir, name)
        if os.path.isdir(path):
            raise TrainingError(f"{path!r} is a folder where the run's {name} belongs; the run "
                                f"will not replace it: move it, or choose another out_dir")
    found = run_in_folder(out_dir)
    if found is None or overwrite:
        return
    checkpoint = os.path.join(out_dir, "ckpt.npz")
    meta = checkpoint_meta(checkpoint)
    if meta is not None and _continues(state, meta):
        return
    saved_step = meta.get("step") if meta is not None else None
    if isinstance(saved_step, int) and meta.get("run_id") == state.run_id and saved_step > state.step:
        why = (f"holds step {saved_step} of this same run and the state is at step "
               f"{state.step}: training would replace the later steps")
    else:
        why = f"holds {found}, which this state does not continue"
    raise TrainingError(f"out_dir {out_dir!r} {why}; continue the folder's run with the state "
                        f"load_checkpoint({checkpoint!r}) gives, pass overwrite=True to replace its "
                        f"ckpt.npz and model.safetensors (other files are kept), or choose "
                        f"another out_dir")


class StopRequest:
    """While a run is on, the first SIGINT (Ctrl-C) only sets ``requested``: the loop stops at
    the next step boundary. A second one raises KeyboardInterrupt at once. Outside the main
    thread, where no handler can be installed, or when SIGINT is ignored, it does nothing.

    Examples
    --------
    >>> previous = signal.signal(signal.SIGINT, signal.default_int_handler)   # Python's Ctrl-C
    >>> with StopRequest() as stop:
    ...     signal.raise_signal(signal.SIGINT)         # the first Ctrl-C: noted, nothing raised
    ...     stop.requested
    True
    >>> signal.getsignal(signal.SIGINT) is signal.default_int_handler         # put back
    True
    >>> _ = signal.signal(signal.SIGINT, previous)
    """

    def __init__(self):
        self.requested = False
        self._previous = None
        self._installed = False

    def __enter__(self) -> "StopRequest":
        try:
            if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
                self._previous = signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        except ValueError:                         # not the main thread
            pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._installed:
            previous = self._previous if self._previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, previous)
            self._installed = False


class FolderLock:
    """``folder/.lock`` held for a run: flock where there is fcntl, else a file created
    exclusively that holds the pid (and is taken over when that process is gone). A second
    run on the same folder gets a TrainingError. The file is removed on release.

    Examples
    --------
    >>> with FolderLock("run"):                          # doctest: +ELLIPSIS
    ...     with FolderLock("run"):
    ...         pass
    Traceback (most recent call last):
        ...
    npgpt.train.errors.TrainingError: another training run (process ...) is using the output folder 'run'; wait for it to end or choose another (--out)
    >>> os.listdir("run")                                # released: the lock file is gone
    []
    """

    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_NAME)
        self.fd = None

    def __enter__(self) -> "FolderLock":
        try:
            os.makedirs(self.folder, exist_ok=True)
            for _ in range(10):                    # retried when the file went away meanwhile
                self.fd = self._flock() if fcntl is not None else self._create()
                if self.fd is not None:
                    return self
        except TrainingError:
            raise
        except OSError as err:
            raise TrainingError(f"cannot use the output folder {self.folder!r}: {err.strerror or err}") from None
        raise TrainingError(self._busy(None))

    def _busy(self, pid) -> str:
        holder = "another training run" + (f" (process {pid})" if pid else "")
        return f"{holder} is using the output folder {self.folder!r}; wait for it to end or choose another (--out)"

    def _flock(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise TrainingError(self._busy(pid)) from None
        except OSError:
            os.close(fd)
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if not same:                               # its last holder removed it as we locked it
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def _create(self):
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            try:
                with open(self.path, "rb") as f:
                    pid = _read_pid(f.fileno())
                young = time.time() - os.path.getmtime(self.path) < 10.0  # its pid may be on its way
            except FileNotFoundError:              # released meanwhile: try again
                return None
            if (process_alive(pid) if pid else young):
                raise TrainingError(self._busy(pid)) from None
            _unlink_quietly(self.path)             # its run is gone
            return None
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def __exit__(self, *exc) -> None:
        if fcntl is not None:                      # remove it while still holding the lock
            _unlink_quietly(self.path)
            os.close(self.fd)
        else:
            os.close(self.fd)
            _unlink_quietly(self.path)


def _read_pid(fd: int):
    """The pid written in a lock file, or None."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
