"""``python -m npgpt ...``: the ``npgpt`` command line (see :mod:`npgpt.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
