"""Time to first token over the turns of a conversation, with the KV cache kept between turns
(what ``npgpt.Chat`` does) and without it (every turn feeds the whole conversation again).

    python benchmarks/bench_chat.py [--model PATH] [--turns 10] [--repeats 3]

The model is SmolLM2-135M-Instruct's GGUF (``tests/fixtures/fetch_models.py`` caches it);
every user message has the same length, answers are greedy and cut at 16 tokens, so turn t's
prompt grows by the same amount each turn. Each figure is the median over ``--repeats``
conversations, run alternately with and without the cache.
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import npgpt  # noqa: E402
from npgpt import threads  # noqa: E402

QUESTIONS = ["Name a colour.", "Name a fruit.", "Name a river.", "Name a metal.", "Name a bird.",
             "Name a month.", "Name a planet.", "Name a flower.", "Name a sport.", "Name a tool.",
             "Name a snack.", "Name a ship."]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cache = os.environ.get("NPGPT_MODEL_CACHE", os.path.expanduser("~/.cache/npgpt"))
    parser.add_argument("--model", default=os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args(argv)
    model = npgpt.load(args.model)
    npgpt.Chat(model, max_new_tokens=args.max_new_tokens).send(QUESTIONS[-1])   # warm-up, untimed
    results = {True: [], False: []}
    prompts = None
    for _ in range(args.repeats):
        for reuse in (True, False):
            time.sleep(0.5)
            chat = npgpt.Chat(model, max_new_tokens=args.max_new_tokens)
            firsts = []
            for question in QUESTIONS[:args.turns]:
                if not reuse:
                    chat._cache, chat._cached = None, []
                chat.send(question)
                firsts.append(chat.turns[-1]["first_token_seconds"])
            results[reuse].append(firsts)
            prompts = [t["prompt_tokens"] for t in chat.turns]
    print(f"{os.path.basename(args.model)}, {args.turns} turns, answers of <= {args.max_new_tokens} tokens; "
          f"load {os.getloadavg()[0]:.1f}, threads {threads.get_num_threads()} (last call), "
          f"medians of {args.repeats}")
    print("| turn | prompt tokens | first token, cache kept (ms) | cache dropped (ms) | kept / turn 1 |")
    print("|---|---|---|---|---|")
    kept = [statistics.median(r[t] for r in results[True]) for t in range(args.turns)]
    dropped = [statistics.median(r[t] for r in results[False]) for t in range(args.turns)]
    for t in range(args.turns):
        print(f"| {t + 1} | {prompts[t]} | {kept[t] * 1000:.0f} | {dropped[t] * 1000:.0f} | "
              f"{kept[t] / kept[0]:.2f} |")


if __name__ == "__main__":
    main()
