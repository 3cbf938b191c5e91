"""The seed tutorial's PyTorch model, for parity tests and fixture generation (needs torch).

``TransformerBlock`` and ``GPTModel`` are the seed's code with two switches added:
``residual="seed"`` keeps the seed's wiring (x = ln1(x); x = x + attn(x); ...), and
``residual="pre_norm"`` is the obvious pre-norm variant (x = x + attn(ln1(x)); ...);
``gelu="tanh"`` swaps in ``nn.GELU(approximate="tanh")``. With the defaults this is the
seed's model line for line, and its ``state_dict()`` keys are the seed's.
"""

import torch
import torch.nn as nn


class TransformerBlock(nn.Module):
    def __init__(self, d_model, num_heads, dropout, context_length, residual="seed", gelu="exact"):
        super().__init__()
        self.context_length = context_length
        self.residual = residual
        self.ln1 = nn.LayerNorm(d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(embed_dim=d_model, num_heads=num_heads, dropout=dropout,
                                          batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, d_model * 4),
            nn.GELU(approximate="none" if gelu == "exact" else "tanh"),
            nn.Linear(d_model * 4, d_model),
            nn.Dropout(dropout),
        )
        self.register_buffer("causal_mask", self._create_causal_mask(context_length))

    def _create_causal_mask(self, seq_length):
        mask = torch.triu(torch.ones(seq_length, seq_length), diagonal=1)
        mask = mask.masked_fill(mask == 1, float("-inf"))
        return mask

    def forward(self, x, mask=None):
        seq_length = x.size(1)
        if mask is None:
            mask = self._create_causal_mask(seq_length).to(x.device)
        if self.residual == "seed":
            x = self.ln1(x)
            attn_out, _ = self.attn(x, x, x, attn_mask=mask, need_weights=False)
            x = x + attn_out
            x = self.ln2(x)
            x = x + self.ffn(x)
        else:
            h = self.ln1(x)
            attn_out, _ = self.attn(h, h, h, attn_mask=mask, need_weights=False)
            x = x + attn_out
            x = x + self.ffn(self.ln2(x))
        return x


class GPTModel(nn.Module):
    def __init__(self, vocab_size, d_model, num_heads, num_layers, dropout, context_length,
                 residual="seed", gelu="exact"):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_encoding = nn.Embedding(context_length, d_model)
        self.blocks = nn.ModuleList([
            TransformerBlock(d_model, num_heads, dropout, context_length, residual, gelu)
            for _ in range(num_layers)
        ])
        self.ln_final = nn.LayerNorm(d_model)
        self.output_layer = nn.Linear(d_model, vocab_size)

    def forward(self, input_ids, mask=None):
        token_embeds = self.token_embedding(input_ids)
        pos_embeds = self.position_encoding(torch.arange(input_ids.shape[1], device=input_ids.device))
        x = token_embeds + pos_embeds
        for block in self.blocks:
            x = block(x, mask)
        x = self.ln_final(x)
        return self.output_layer(x)


def seed_model(config, seed=0):
    """A torch GPTModel matching an npgpt GPTConfig (untied, with output bias)."""
    torch.manual_seed(seed)
    model = GPTModel(config.vocab_size, config.d_model, config.num_heads, config.num_layers,
                     config.dropout, config.context_length, config.residual, config.gelu)
    with torch.no_grad():   # randomise LayerNorm and attention biases too, so they are tested
        for name, p in model.named_parameters():
            if name.endswith(("ln1.weight", "ln2.weight", "ln_final.weight")):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return model.eval()


def state_dict_numpy(model):
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
