"""The NumPy forward pass against the seed's PyTorch GPTModel.

Recorded fixtures (tests/fixtures/make_fixtures.py) run everywhere; the live comparison on
random configurations runs when torch imports.
"""

import numpy as np
import pytest

import npgpt

from helpers import load_model_fixture, skip_without


@pytest.mark.parametrize("name", ["seed_model", "prenorm_model", "prenorm_tanh_model"])
def test_logits_match_recorded_pytorch_logits(name):
    model, ids, logits, _ = load_model_fixture(name)
    np.testing.assert_allclose(model(ids), logits, rtol=0, atol=1e-5)
    np.testing.assert_allclose(model.astype(np.float64)(ids), logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["seed_model", "prenorm_model"])
def test_fixture_logits_also_match_one_row_and_one_prefix_at_a_time(name):
    model, ids, logits, _ = load_model_fixture(name)
    for b in range(ids.shape[0]):
        for t in (1, ids.shape[1] // 2):
            np.testing.assert_allclose(model(ids[b, :t]), logits[b, :t], atol=1e-5)


@pytest.mark.torch
@skip_without("torch")
@pytest.mark.parametrize("trial", range(6))
def test_live_random_configs_match_pytorch(trial):
    import torch

    from torch_reference import seed_model, state_dict_numpy

    rng = np.random.default_rng(trial)
    heads = int(rng.integers(1, 5))
    cfg = npgpt.GPTConfig(vocab_size=int(rng.integers(2, 40)), context_length=int(rng.integers(2, 20)),
                          d_model=heads * int(rng.integers(1, 9)), num_heads=heads,
                          num_layers=int(rng.integers(1, 4)), dropout=float(rng.uniform(0, 0.5)),
                          gelu=["exact", "tanh"][trial % 2], residual=["seed", "pre_norm"][(trial // 2) % 2])
    reference = seed_model(cfg, seed=trial)
    model = npgpt.GPT(cfg)
    model.load_state_dict(state_dict_numpy(reference))
    ids = rng.integers(0, cfg.vocab_size, (int(rng.integers(1, 4)), int(rng.integers(1, cfg.context_length + 1))))
    with torch.no_grad():
        expected = reference(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(model(ids), expected, rtol=0, atol=1e-5)
