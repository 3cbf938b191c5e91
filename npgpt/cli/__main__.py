"""``python -m npgpt.cli ...``: the ``npgpt`` command line, as ``python -m npgpt``."""

import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main())
