"""CheckpointError: the one exception a malformed or hostile checkpoint raises."""


class CheckpointError(ValueError):
    """A checkpoint file or folder is malformed, truncated, hostile or unsupported.

    It subclasses ValueError, so ``except ValueError`` also catches it. The message says
    what is wrong (which tensor, which offset, which pickle global) and, when known, where.
    """
