"""GGUF dequantisation speed per tensor type: npgpt's NumPy dequantisers vs the ``gguf``
package's ``quants.dequantize`` on the same random blocks (checked equal bit for bit first),
and the load of the real SmolLM2-135M Q4_1 file (when fetched) by npgpt.load.

    python benchmarks/bench_gguf.py [--weights 4194304] [--repeats 5]

Random blocks carry random float16 scales; to keep inf/NaN out of the timings (they are slow
on some CPUs) every scale is set to a finite value. Millions of weights per second, medians
of interleaved runs with a 0.5 s rest before each timed call.
"""

import argparse
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))

from npgpt.io import gguf_quants as Q  # noqa: E402
from common import has, interleaved_medians, print_table  # noqa: E402
from make_gguf_fixtures import SCALE_OFFSETS  # noqa: E402


def blocks_of(name, n_weights, rng):
    number = next(k for k, v in Q.DEQUANTIZERS.items() if v[0] == name)
    _, per_block, block_bytes, _ = Q.DEQUANTIZERS[number]
    raw = rng.integers(0, 256, (n_weights // per_block, block_bytes), dtype=np.uint8)
    if name in ("F16", "BF16", "F32"):
        values = rng.standard_normal(raw.size // block_bytes).astype(np.float32)
        raw = {"F32": values, "F16": values.astype(np.float16),
               "BF16": (values.view(np.uint32) >> 16).astype(np.uint16)}[name].view(np.uint8)
        raw = raw.reshape(-1, block_bytes)
    for offset in SCALE_OFFSETS[name]:
        scales = rng.uniform(1e-3, 1e-1, len(raw)).astype(np.float16)
        raw[:, offset:offset + 2] = scales.view(np.uint8).reshape(-1, 2)
    return number, raw.reshape(-1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=int, default=1 << 22)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for name in SCALE_OFFSETS:
        number, raw = blocks_of(name, args.weights, rng)
        n = raw.size // Q.DEQUANTIZERS[number][2] * Q.DEQUANTIZERS[number][1]
        runs = {"npgpt": lambda: Q.dequantize(raw, number, (n,))}
        equal = "-"
        if has("gguf"):
            from gguf import GGMLQuantizationType, quants
            kind = GGMLQuantizationType[name]
            runs["gguf"] = lambda: quants.dequantize(raw, kind)
            equal = str(np.array_equal(runs["npgpt"]().view(np.uint32),
                                       np.asarray(runs["gguf"](), np.float32).reshape(-1)
                                       .view(np.uint32)))
        times = interleaved_medians(runs, repeats=args.repeats, pause=0.5)
        ours = n / times["npgpt"] / 1e6
        theirs = n / times["gguf"] / 1e6 if "gguf" in times else float("nan")
        rows.append([name, equal, f"{ours:.0f}", f"{theirs:.0f}", f"{ours / theirs:.2f}"])
    print_table(rows, ["type", "bit-equal to gguf", "npgpt M weights/s", "gguf M weights/s",
                       "ratio"])
    path = os.path.join(os.environ.get("NPGPT_MODEL_CACHE")
                        or os.path.join(os.path.expanduser("~"), ".cache", "npgpt"),
                        "SmolLM2-135M-Instruct.Q4_1.gguf")
    if os.path.exists(path):
        import warnings
        import npgpt
        warnings.simplefilter("ignore")
        loads = []
        for _ in range(3):
            time.sleep(0.5)
            start = time.perf_counter()
            npgpt.load(path)
            loads.append(time.perf_counter() - start)
        print(f"\nnpgpt.load(SmolLM2-135M-Instruct.Q4_1.gguf): median {sorted(loads)[1]:.2f} s "
              f"of 3; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
