#!/usr/bin/env python3
"""The reference decoders of `posembed bench` (S1, S2) in PyTorch eager, to
measure posembed's training throughput against on the same machine.

Same model as posembed's `Transformer` (src/model/): vocab 64, 4 heads,
pre-LayerNorm blocks (x + attn(ln(x)), x + ff(ln(x))), separate q/k/v/out
projections with biases, ReLU (or tanh-GELU) feed-forward of 4·d_model, a
final LayerNorm and an untied unembedding without bias; GPT-2 init (N(0,
0.02), residual projections N(0, 0.02/sqrt(2·layers)), zero biases), token
embeddings N(0, 1); causal mask; f32. Positions: `none`, `sinusoidal`
(interleaved sin/cos added to the token embeddings), `alibi` (−m_h·(i − j),
slopes 2^(−8h/H)) and `rope` (interleaved pairs, base 10000, all dims).
Training step: mean cross-entropy over every token of a random batch (as
`posembed bench`), backward, global gradient-norm clipping at 1.0, AdamW
(lr 1e-4, betas 0.9/0.98, eps 1e-8, decoupled decay 0.01 on weight matrices
only). Evaluation: a forward under no_grad.

    python3 tests/bench/pytorch_reference.py --model s1 --scheme none --json
    python3 tests/bench/pytorch_reference.py --model s1 --procs 2 --json

`--procs N` runs N processes side by side (one per core) and also prints
their summed training tokens/s, the figure to compare with `posembed bench
--model s1 --jobs N`. Each process uses one thread unless `--threads` says
otherwise: PyTorch's own default is one per core, which for a single run
can be faster or slower than one thread depending on the machine (reports/performance/README.md,
"Against PyTorch eager"). One JSON object per line with --json,
with the same keys as `posembed bench --json`.
"""

import argparse
import json
import math
import multiprocessing as mp
import os
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB = 64
HEADS = 4
MODELS = {
    # d_model, layers, batch, seq
    "s1": (128, 2, 32, 64),
    "s2": (256, 4, 16, 128),
}
INIT_STD = 0.02


def sinusoids(seq, d, base=10000.0):
    """PE(p, 2i) = sin(p / base^(2i/d)), PE(p, 2i+1) = cos(...)."""
    p = torch.arange(seq, dtype=torch.float64)[:, None]
    i = torch.arange(d // 2, dtype=torch.float64)[None, :]
    angle = p / base ** (2 * i / d)
    pe = torch.zeros(seq, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe.float()


def alibi_bias(seq, heads):
    """(heads, seq, seq): −m_h·(i − j) for j ≤ i (the mask handles j > i)."""
    slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / heads) for h in range(heads)])
    i = torch.arange(seq)[:, None]
    j = torch.arange(seq)[None, :]
    distance = (i - j).clamp(min=0).float()
    return -slopes[:, None, None] * distance


def rope_tables(seq, head_dim, base=10000.0):
    """cos and sin of p·θ_i, θ_i = base^(−2i/head_dim), each (seq, head_dim/2)."""
    theta = base ** (-2.0 * torch.arange(head_dim // 2, dtype=torch.float64) / head_dim)
    angle = torch.arange(seq, dtype=torch.float64)[:, None] * theta[None, :]
    return torch.cos(angle).float(), torch.sin(angle).float()


def rotate(x, cos, sin):
    """Rotates interleaved pairs (2i, 2i+1) of x (b, h, s, dh)."""
    even, odd = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


def linear(i, o, std):
    layer = nn.Linear(i, o)
    nn.init.normal_(layer.weight, std=std)
    nn.init.zeros_(layer.bias)
    return layer


class Block(nn.Module):
    def __init__(self, d, layers, activation):
        super().__init__()
        out_std = INIT_STD / math.sqrt(2 * layers)
        self.ln_attn = nn.LayerNorm(d, eps=1e-5)
        self.q, self.k, self.v = (linear(d, d, INIT_STD) for _ in range(3))
        self.out = linear(d, d, out_std)
        self.ln_ff = nn.LayerNorm(d, eps=1e-5)
        self.ff_in = linear(d, 4 * d, INIT_STD)
        self.ff_out = linear(4 * d, d, out_std)
        self.activation = activation

    def forward(self, x, bias, rope):
        b, s, d = x.shape
        h = self.ln_attn(x)
        # (b, s, d) -> (b, H, s, dh)
        q, k, v = (
            proj(h).view(b, s, HEADS, d // HEADS).transpose(1, 2)
            for proj in (self.q, self.k, self.v)
        )
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // HEADS) + bias  # (b, H, s, s)
        mixed = scores.softmax(-1) @ v  # (b, H, s, dh)
        x = x + self.out(mixed.transpose(1, 2).reshape(b, s, d))
        h = self.ff_in(self.ln_ff(x))
        h = F.relu(h) if self.activation == "relu" else F.gelu(h, approximate="tanh")
        return x + self.ff_out(h)


class Decoder(nn.Module):
    def __init__(self, d, layers, seq, scheme, activation):
        super().__init__()
        self.token_embedding = nn.Parameter(torch.randn(VOCAB, d))
        self.blocks = nn.ModuleList(Block(d, layers, activation) for _ in range(layers))
        self.ln_final = nn.LayerNorm(d, eps=1e-5)
        self.unembedding = nn.Parameter(torch.randn(VOCAB, d) * INIT_STD)
        mask = torch.full((seq, seq), -1e9).triu(1)
        bias = mask + (alibi_bias(seq, HEADS) if scheme == "alibi" else 0.0)
        self.register_buffer("bias", bias)
        self.register_buffer("pe", sinusoids(seq, d) if scheme == "sinusoidal" else None)
        self.rope = rope_tables(seq, d // HEADS) if scheme == "rope" else None

    def forward(self, tokens):
        x = self.token_embedding[tokens]  # (b, s, d)
        if self.pe is not None:
            x = x + self.pe
        for block in self.blocks:
            x = block(x, self.bias, self.rope)
        return self.ln_final(x) @ self.unembedding.T  # (b, s, vocab)


def optimizer(model, lr=1e-4):
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "embedding" not in n]
    decay.append(model.unembedding)
    decay_ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in decay_ids]
    groups = [{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-8)


def reference_gflops():
    """A 2048 x 256 by 256 x 256 product repeated for about 0.2 s, as `posembed bench`
    measures its own: PyTorch's sgemm rate at this moment, with this process's threads."""
    a, b = torch.rand(2048, 256) * 2 - 1, torch.rand(256, 256) * 2 - 1
    c = torch.empty(2048, 256)  # written in place each time, as posembed's is
    torch.matmul(a, b, out=c)
    clock, repeats = time.perf_counter(), 0
    while time.perf_counter() - clock < 0.2:
        torch.matmul(a, b, out=c)
        repeats += 1
    return 2 * 2048 * 256 * 256 * repeats / (time.perf_counter() - clock) / 1e9


def measure(model_name, scheme, steps, activation, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    d, layers, batch, seq = MODELS[model_name]
    model = Decoder(d, layers, seq, scheme, activation)
    opt = optimizer(model)
    tokens = torch.randint(0, VOCAB, (batch, seq))
    targets = torch.randint(0, VOCAB, (batch, seq))

    def train_step():
        logits = model(tokens)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    train_step()  # untimed, as in posembed bench
    clock = time.perf_counter()
    for _ in range(steps):
        train_step()
    train = batch * seq * steps / (time.perf_counter() - clock)
    with torch.no_grad():
        model(tokens)
        clock = time.perf_counter()
        for _ in range(steps):
            model(tokens)
        evaluation = batch * seq * steps / (time.perf_counter() - clock)
    return {
        "framework": "pytorch",
        "torch": torch.__version__,
        "model": model_name,
        "scheme": scheme,
        "train_tokens_per_s": train,
        "eval_tokens_per_s": evaluation,
        "reference_gflops": reference_gflops(),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="s1")
    parser.add_argument("--scheme", action="append", choices=["none", "sinusoidal", "alibi", "rope"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--activation", choices=["relu", "gelu"], default="relu")
    parser.add_argument("--procs", type=int, default=1, help="processes side by side")
    parser.add_argument("--threads", type=int, default=1,
                        help="PyTorch's threads per process (its own default is one per core)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.procs * args.threads > os.cpu_count():
        parser.error(f"{args.procs} processes x {args.threads} threads oversubscribe {os.cpu_count()} cores")
    for scheme in args.scheme or ["none", "sinusoidal", "alibi", "rope"]:
        job = (args.model, scheme, args.steps, args.activation, args.threads)
        if args.procs == 1:
            results = [measure(*job)]
        else:
            with mp.get_context("spawn").Pool(args.procs) as pool:
                results = pool.starmap(measure, [job] * args.procs)
        total = sum(r["train_tokens_per_s"] for r in results)
        for r in results:
            if args.json:
                print(json.dumps({**r, "procs": args.procs, "threads": args.threads,
                                  "aggregate_train_tokens_per_s": total}))
            else:
                print(f"{args.model} {scheme:<11} train {r['train_tokens_per_s']:8.0f} tok/s"
                      f"   eval {r['eval_tokens_per_s']:8.0f} tok/s")
        if args.procs > 1 and not args.json:
            print(f"{args.model} {scheme:<11} {args.procs} processes: {total:.0f} training tok/s together")


if __name__ == "__main__":
    main()
