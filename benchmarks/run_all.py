"""Regenerate the README's speed table: run every benchmark script, one after another.

    python benchmarks/run_all.py [--quick]

Each script times npgpt and its reference in the same process and prints a Markdown table;
this runs them in turn (progress on stderr) and prints all the tables, ready to copy into the
README's "Results" section. Scripts whose reference is not installed print npgpt's rows only.
The training results come from ``benchmarks/train_shakespeare.py`` (minutes to an hour), which
this does not run.
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = ["bench_generate.py", "bench_beam.py", "bench_sampling.py", "bench_train_step.py",
           "bench_tokenize.py"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier)")
    args = parser.parse_args(argv)
    failures = 0
    for i, script in enumerate(SCRIPTS, 1):
        sys.stderr.write(f"[{i}/{len(SCRIPTS)}] {script} ...\n")
        sys.stderr.flush()
        cmd = [sys.executable, os.path.join(HERE, script)]
        if args.quick and script != "bench_tokenize.py":     # the tokenizer script takes no options
            cmd += ["--repeats", "3"]
        start = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True)
        print(f"### {script} ({time.perf_counter() - start:.0f} s)\n")
        print(result.stdout.rstrip() + "\n")
        if result.returncode != 0:
            failures += 1
            print(f"(exit code {result.returncode})\n{result.stderr[-2000:]}\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
