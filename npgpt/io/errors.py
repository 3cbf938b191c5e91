"""CheckpointError: the one exception a malformed or hostile checkpoint raises."""


class CheckpointError(ValueError):
    """A checkpoint file or folder is malformed, truncated, hostile or unsupported.

    It subclasses ValueError, so ``except ValueError`` also catches it. The message says
    what is wrong (which tensor, which offset, which pickle global) and, when known, where.

    Examples
    --------
    >>> from npgpt.io import read_safetensors
    >>> with open("notes.txt", "w") as f:
    ...     _ = f.write("hello")
    >>> try:
    ...     read_safetensors("notes.txt")
    ... except CheckpointError as err:                  # `except ValueError` catches it too
    ...     print(err)
    notes.txt: file of 5 bytes is too short for safetensors (needs an 8-byte header length)
    """
