"""``npgpt bench``: :mod:`npgpt.bench`'s table of npgpt's own timings on this machine."""

from __future__ import annotations

import sys

from ._parsing import POSITIVE_INT, Command, arg


def _bench(args) -> int:
    from ..bench import conditions, format_table, load_average, run

    def progress(name):
        sys.stderr.write(f"running: {name}\n")
        sys.stderr.flush()

    load = load_average()
    rows = run(repeats=args.repeats, progress=progress)
    print(format_table(rows))
    print("\n".join(conditions(load)))
    print("(npgpt alone; the comparisons against PyTorch, transformers and tiktoken are the "
          "scripts in the repository's benchmarks/ folder)")
    return 0


COMMAND = Command(
    name="bench", help="time npgpt on this machine (NumPy only)",
    description="Run the benchmarks that need no optional package and print a table.",
    examples=("npgpt bench", "npgpt bench --repeats 9"),
    arguments=(arg("--repeats", type=POSITIVE_INT, default=5),),
    handler=_bench)
