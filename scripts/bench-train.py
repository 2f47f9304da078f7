"""PyTorch side of `npm run bench:train` (scripts/bench-train.ts runs it).

Reads a JSON spec as its first line on stdin: {"batch", "lr", "warmup", "cases":
[...]}, each case {"name", "kind": "mlp" | "cnn" | "gpt", "steps",
...architecture}; then, for each further line naming a case, times one round of
`steps` training steps (after `warmup` steps the first time) and prints
{"name", "rate"}: samples/s (mlp, cnn) or tokens/s (gpt). The architectures
mirror node/trainer/model.ts (mlp, cnn) and node/trainer/gpt.ts (gpt): same
layers, Adam, mean softmax cross-entropy, float32. Threads: one per CPU this
process may run on (so `taskset -c 0` gives one).
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp(case):
    widths = [case["features"], *case["hidden"], case["classes"]]
    layers = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Cnn(nn.Module):
    """Valid convolutions with ReLU, each followed by a 2x2 max-pool, then dense layers (model.ts's cnn preset)."""

    def __init__(self, case):
        super().__init__()
        h, w, c = case["inputShape"]
        convs = []
        for conv in case["convs"]:
            convs.append(nn.Conv2d(c, conv["filters"], conv["kernel"]))
            h = (h - conv["kernel"] + 1) // 2
            w = (w - conv["kernel"] + 1) // 2
            c = conv["filters"]
        self.convs = nn.ModuleList(convs)
        self.shape = case["inputShape"]
        self.dense = mlp({"features": h * w * c, "hidden": case["hidden"], "classes": case["classes"]})

    def forward(self, x):
        h, w, c = self.shape
        x = x.view(-1, h, w, c).permute(0, 3, 1, 2)
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2)
        return self.dense(x.permute(0, 2, 3, 1).flatten(1))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 4 * dim)
        self.out = nn.Linear(4 * dim, dim)

    def forward(self, x, mask):
        b, t, d = x.shape
        hd = d // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, hd).transpose(1, 2) for z in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd)) + mask
        att = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(att)
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class Gpt(nn.Module):
    """node/trainer/gpt.ts: byte tokens, learned positions, pre-LN blocks, tied output head."""

    def __init__(self, case):
        super().__init__()
        dim, context = case["dim"], case["context"]
        self.wte = nn.Embedding(256, dim)
        self.wpe = nn.Embedding(context, dim)
        self.blocks = nn.ModuleList(Block(dim, case["heads"]) for _ in range(case["layers"]))
        self.lnf = nn.LayerNorm(dim)
        self.register_buffer("mask", torch.triu(torch.full((context, context), -1e9), diagonal=1))

    def forward(self, ids):
        t = ids.shape[1]
        x = self.wte(ids) + self.wpe.weight[:t]
        for blk in self.blocks:
            x = blk(x, self.mask[:t, :t])
        return self.lnf(x) @ self.wte.weight.t()


def runner(case, batch, lr):
    """A training step on fixed random data (throughput does not depend on the values) and the units one step does."""
    kind = case["kind"]
    if kind == "gpt":
        model = Gpt(case)
        tokens = torch.randint(0, 256, (batch, case["context"] + 1))
        x, y = tokens[:, :-1], tokens[:, 1:].reshape(-1)
        loss_of = lambda: F.cross_entropy(model(x).reshape(-1, 256), y)
        units = batch * case["context"]
    else:
        model = mlp(case) if kind == "mlp" else Cnn(case)
        x = torch.rand(batch, case["features"])
        y = torch.randint(0, case["classes"], (batch,))
        loss_of = lambda: F.cross_entropy(model(x), y)
        units = batch
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step, units


def main():
    """Line protocol: the first line is the spec; then each line names a case, and
    the answer is one timed round of it (warmed up on first use), so that the
    caller can alternate PyTorch's rounds with its own."""
    spec = json.loads(sys.stdin.readline())
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(1)
    cases = {case["name"]: case for case in spec["cases"]}
    steps = {}
    for line in sys.stdin:
        name = line.strip()
        if not name:
            continue
        case = cases[name]
        if name not in steps:
            step, units = runner(case, case.get("batch", spec["batch"]), spec["lr"])
            for _ in range(spec["warmup"]):
                step()
            steps[name] = (step, units)
        step, units = steps[name]
        t0 = time.perf_counter()
        for _ in range(case["steps"]):
            step()
        rate = case["steps"] * units / (time.perf_counter() - t0)
        print(json.dumps({"name": name, "rate": rate, "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
