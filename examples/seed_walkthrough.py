"""The seed tutorial, step by step, in npgpt.

"[LLM] 15. From token input to word prediction" (토큰 입력 부터 단어 예측까지) shows, with a
small PyTorch GPTModel: greedy decoding, temperature scaling, top-k and top-p (nucleus)
sampling with probability heatmaps, embedding heatmaps, next-word prediction with a
ten-word vocabulary, a multi-token generation loop, and describes beam search. This script
runs every one of those code blocks, in order, with npgpt (NumPy only; matplotlib for the
figures), and adds beam search, a side-by-side view of every strategy and attention maps.

Run it::

    python examples/seed_walkthrough.py --out walkthrough_figures

It prints what the seed prints (in English) and writes these figures to ``--out``:

    01_greedy.png                    greedy decoding: softmax probabilities, argmax boxed
    02_temperature.png               temperature 0.8: probabilities and the sampled word
    02b_temperature_compare.png      T = 0.5, 1.0, 2.0 on the same logits (box: most probable)
    03_top_k.png                     top-k (k = 5): the five survivors, renormalised
    04_top_p.png                     top-p (nucleus threshold top_p = 0.9): the nucleus,
                                     renormalised; grey: removed words
    05_embeddings.png                token embedding, positional encoding, their sum
    06_strategies.png                every strategy side by side (what `npgpt inspect --png` draws)
    07_attention.png                 attention maps of the ten-word model, per layer and head

Like the seed's, the models here are untrained (random weights): the predicted words are
arbitrary, the mechanics are the point.
"""

import argparse
import os
import sys

import numpy as np

try:
    import npgpt
except ImportError:      # running from a source checkout without installing: use ../npgpt
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import npgpt
from npgpt import sampling, viz
from npgpt.generation import generate        # npgpt.generate; also model.generate(...)
from npgpt.tokenizers import WordTokenizer   # npgpt.WordTokenizer


def section(title):
    print()
    print("=" * 72)
    print(title)
    print("=" * 72)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="walkthrough_figures",
                        help="folder for the figures (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the weights and the draws")
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")      # bars and emoji on any terminal

    try:
        import matplotlib  # noqa: F401  (viz imports it lazily; we only check it is there)
        plots = True
        os.makedirs(args.out, exist_ok=True)
    except ImportError:
        plots = False
        print('matplotlib is not installed: printing only (pip install "npgpt[plot]" for the figures)')

    def figure(name):
        return os.path.join(args.out, name)

    rng = np.random.default_rng(args.seed)

    # ------------------------------------------------------------------------------------
    # The logits we decode. The seed's decoding blocks start from `logits`: the next-word
    # scores of its GPTModel for a sentence. We build that model now (the seed builds it in
    # "예측해보기" below): the ten-word vocabulary and "hello world this is".
    # ------------------------------------------------------------------------------------
    section("Setup: next-word logits for 'hello world this is'")
    # 어휘집 (vocabulary)
    vocabulary = ["hello", "world", "this", "is", "a", "test", "model", "GPT", "language", "AI"]
    tokenizer = WordTokenizer(vocabulary)     # encode(str) -> ids, decode(ids) -> str

    # The seed's GPTModel: blocks do x = ln(x); x = x + f(x) (residual="seed"), exact GELU,
    # context_length = vocabulary size; init="torch" draws weights like nn.Embedding/nn.Linear.
    config = npgpt.GPTConfig(vocab_size=len(vocabulary), d_model=128, num_heads=4, num_layers=4,
                             dropout=0.1, context_length=len(vocabulary), residual="seed",
                             gelu="exact")
    model = npgpt.GPT(config, seed=args.seed, init="torch")
    input_text = "hello world this is"
    input_ids = np.array(tokenizer.encode(input_text))          # (T,) = (4,)
    logits = model(input_ids)[-1]                               # (T, V) -> (V,): last position
    print(f"input: {input_text!r} -> ids {input_ids.tolist()}")
    print("logits:", np.array2string(logits, precision=3))

    # ------------------------------------------------------------------------------------
    # 1. Greedy Decoding (탐욕적 선택): always the most probable word.
    # ------------------------------------------------------------------------------------
    section("1. Greedy decoding")
    probs = sampling.softmax(logits)                            # F.softmax(logits, dim=-1)
    greedy_idx = int(np.argmax(probs))                          # torch.argmax(probs).item()
    print(viz.bar_chart(probs, labels=vocabulary, chosen=greedy_idx))
    print(f"greedy choice: {vocabulary[greedy_idx]}")
    if plots:
        viz.plot_heatmap(probs, title="Greedy Decoding - Softmax Probabilities",
                         selected_idx=greedy_idx, labels=vocabulary, path=figure("01_greedy.png"))

    # ------------------------------------------------------------------------------------
    # 2. Temperature Scaling: scaled_logits = logits / T, then sample.
    #    T < 1 sharpens the distribution, T = 1 keeps it, T > 1 flattens it (more random).
    # ------------------------------------------------------------------------------------
    section("2. Temperature scaling (T = 0.8)")
    temperature = 0.8
    scaled_logits = logits / temperature          # = sampling.temperature(logits, temperature)
    probs_temp = sampling.softmax(scaled_logits)
    # torch.multinomial(probs_temp, num_samples=1): sampling.sample draws from exactly probs_temp
    temp_selected_idx = int(sampling.sample(logits, rng, temperature=temperature))
    print(viz.bar_chart(probs_temp, labels=vocabulary, chosen=temp_selected_idx, before=probs))
    print(f"sampled word: {vocabulary[temp_selected_idx]}")
    if plots:
        viz.plot_heatmap(probs_temp, title=f"Temperature Scaling (T={temperature})",
                         selected_idx=temp_selected_idx, labels=vocabulary,
                         path=figure("02_temperature.png"))
        # The same logits at three temperatures, one heatmap each (plot_heatmap(..., ax=)).
        from matplotlib.figure import Figure
        fig = Figure(figsize=(10, 7), layout="constrained")
        axes = fig.subplots(3, 1)
        temps = (0.5, 1.0, 2.0)
        p_ts = [sampling.softmax(sampling.temperature(logits, t)) for t in temps]
        shared = max(float(p_t.max()) for p_t in p_ts)        # one colour scale for all three
        for ax, t, p_t in zip(axes, temps, p_ts):
            viz.plot_heatmap(p_t, title=f"T = {t}", selected_idx=int(np.argmax(p_t)),
                             labels=vocabulary, ax=ax, vmax=shared, selected_as="most probable")
        fig.colorbar(ax.images[0], ax=list(axes), label="probability q", fraction=0.03)
        fig.suptitle("Temperature: low T sharpens, high T flattens (box: the most probable "
                     "word, the same at every T)")
        fig.savefig(figure("02b_temperature_compare.png"), dpi=110)

    # ------------------------------------------------------------------------------------
    # 3. Top-k Sampling: keep the k most probable words, renormalise, sample among them.
    # ------------------------------------------------------------------------------------
    section("3. Top-k sampling (k = 5)")
    k = 5
    topk_logits = sampling.top_k(logits, k)        # the others become -inf
    probs_topk = sampling.softmax(topk_logits)     # -inf -> probability 0
    topk_selected_idx = int(sampling.sample(logits, rng, top_k=k))
    print(viz.bar_chart(probs_topk, labels=vocabulary, chosen=topk_selected_idx, before=probs))
    print(f"sampled word: {vocabulary[topk_selected_idx]}")
    if plots:
        viz.plot_heatmap(probs_topk, title=f"Top-k Sampling (k={k})",
                         selected_idx=topk_selected_idx, labels=vocabulary,
                         path=figure("03_top_k.png"))

    # ------------------------------------------------------------------------------------
    # 4. Nucleus Sampling (Top-p): keep the most probable words until their mass reaches top_p.
    # ------------------------------------------------------------------------------------
    # top_p is the nucleus threshold (a mass); q names a token's probability.
    section("4. Nucleus (top-p) sampling (nucleus threshold top_p = 0.9)")
    top_p = 0.9
    topp_logits = sampling.top_p(logits, top_p)
    probs_topp = sampling.softmax(topp_logits)
    topp_selected_idx = int(sampling.sample(logits, rng, top_p=top_p))
    print(viz.bar_chart(probs_topp, labels=vocabulary, chosen=topp_selected_idx, before=probs))
    print(f"kept {int((probs_topp > 0).sum())} of {len(vocabulary)} words; "
          f"sampled word: {vocabulary[topp_selected_idx]}")
    if plots:
        viz.plot_heatmap(probs_topp, title=f"Nucleus Sampling (nucleus threshold top_p = {top_p})",
                         selected_idx=topp_selected_idx, labels=vocabulary,
                         path=figure("04_top_p.png"))

    # ------------------------------------------------------------------------------------
    # 토큰 임베딩 코드 / 시각화 해서 확인: the embeddings that enter the first block.
    # GPTModel(vocab_size=100, d_model=128, num_heads=4, num_layers=4, dropout=0.1,
    #          context_length=20) is npgpt.GPT with this config.
    # ------------------------------------------------------------------------------------
    section("5. Token embedding + positional encoding")
    vocab_size = 100       # 단어 개수 (number of words)
    d_model = 128          # 임베딩 차원 (embedding size)
    context_length = 20    # 최대 문장 길이 (longest sentence)
    emb_model = npgpt.GPT(npgpt.GPTConfig(vocab_size=vocab_size, d_model=d_model, num_heads=4,
                                          num_layers=4, dropout=0.1,
                                          context_length=context_length, residual="seed",
                                          gelu="exact"),
                          seed=args.seed, init="torch")
    print(emb_model)
    # 가짜 데이터 (fake data): torch.randint(0, vocab_size, (1, context_length))
    fake_ids = rng.integers(0, vocab_size, size=(1, context_length))
    token_embeds = emb_model.params["token_embedding.weight"][fake_ids[0]]      # (T, C)
    pos_embeds = emb_model.params["position_encoding.weight"][:context_length]  # (T, C)
    combined_embeds = token_embeds + pos_embeds    # 최종 Transformer 입력 (the blocks' input)
    print(f"token_embeds {token_embeds.shape}, pos_embeds {pos_embeds.shape}, "
          f"combined {combined_embeds.shape}")
    if plots:
        # 히트맵 시각화: the seed's three seaborn panels, drawn by viz.plot_embeddings
        viz.plot_embeddings(emb_model, fake_ids, path=figure("05_embeddings.png"))

    # ------------------------------------------------------------------------------------
    # 예측해보기: predict the next word (greedy) for "hello world this is".
    # ------------------------------------------------------------------------------------
    section("6. Next-word prediction")
    encode, decode = tokenizer.encode, tokenizer.decode    # the seed's encode() / decode()
    logits_all = model(np.array(encode(input_text)))       # model.eval(): npgpt has no dropout at inference
    next_token_logits = logits_all[-1]                     # logits[:, -1, :]
    next_token = int(np.argmax(sampling.softmax(next_token_logits)))
    print(f"Input sentence: {input_text}")                 # 입력 문장
    print(f"Predicted next word: {vocabulary[next_token]}")   # 예측된 다음 단어

    # ------------------------------------------------------------------------------------
    # 여러개 예측하기: the seed's generation loop, three ways.
    # ------------------------------------------------------------------------------------
    section("7. Generating several words")

    def generate_loop(model, start_text, max_new_tokens):
        """The seed's loop: run the whole sentence again for every new word."""
        input_ids = np.array(encode(start_text))
        for _ in range(max_new_tokens):
            logits = model(input_ids)                        # (T, V)
            next_token_logits = logits[-1]
            next_token = int(np.argmax(sampling.softmax(next_token_logits)))
            input_ids = np.append(input_ids, next_token)     # 입력에 추가 (append to the input)
        return decode(input_ids)

    def generate_cached(model, start_text, max_new_tokens):
        """The same loop with a KV cache: each step feeds only the new word."""
        input_ids = encode(start_text)
        cache = model.new_cache(batch_size=1)
        logits = model(np.array([input_ids]), cache=cache, last_only=True)   # (1, V)
        for _ in range(max_new_tokens):
            next_token = int(np.argmax(logits[0]))
            input_ids.append(next_token)
            logits = model(np.array([[next_token]]), cache=cache, last_only=True)
        return decode(input_ids)

    generated_text = generate_loop(model, "hello world this is", max_new_tokens=5)
    print("🔥 Generated sentence:", generated_text)          # 생성된 문장
    cached_text = generate_cached(model, "hello world this is", max_new_tokens=5)
    print("   with the KV cache:   ", cached_text)
    out = generate(model, encode("hello world this is"), max_new_tokens=5)   # greedy
    library_text = decode(out.sequences[0])
    print("   npgpt.generate:      ", library_text, f"(sum log p = {out.scores[0]:.3f})")
    if not generated_text == cached_text == library_text:
        raise RuntimeError("the three greedy generations differ")
    sampled = generate(model, encode("hello world this is"), max_new_tokens=5, do_sample=True,
                       temperature=0.8, top_k=5, seed=args.seed)
    print("   sampled (T=0.8, top-k=5):", decode(sampled.sequences[0]))

    # ------------------------------------------------------------------------------------
    # 5. Beam Search: keep the num_beams best sentences at each step (by total log-prob)
    #    and return the best ones. Score = sum log p / (new tokens) ** length_penalty.
    # ------------------------------------------------------------------------------------
    section("8. Beam search (3 beams)")
    beams = generate(model, encode("hello world this is"), max_new_tokens=5, num_beams=3,
                     num_return_sequences=3)
    for rank, (seq, score) in enumerate(zip(beams.sequences, beams.scores), start=1):
        print(f"{rank}. {decode(seq)}   (score {score:.3f})")

    # ------------------------------------------------------------------------------------
    # Every strategy on the same next-word distribution (what `npgpt inspect` shows).
    # ------------------------------------------------------------------------------------
    section("9. All strategies side by side")
    report = viz.strategy_report(logits, seed=args.seed, temperature=0.8, top_k=5, top_p=0.9,
                                 min_p=0.5, typical_p=0.9)
    print(viz.strategy_table(report, labels=vocabulary))
    if plots:
        viz.plot_strategies(report, labels=vocabulary, path=figure("06_strategies.png"))
        # and where each position of the sentence looks, layer by layer, head by head
        viz.plot_attention(model, input_ids, labels=vocabulary, path=figure("07_attention.png"))
        print()
        print(f"figures written to {args.out}/: " + ", ".join(sorted(
            f for f in os.listdir(args.out) if f.endswith(".png"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
