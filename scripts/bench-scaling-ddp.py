"""PyTorch side of `npm run bench:scaling` (scripts/bench-scaling.ts runs it): the reference for the swarm's
ratio to one peer alone. One process of `--world` W trains the default job's model the way PyTorch users scale
it: W = 1 a plain training loop, W > 1 DistributedDataParallel over gloo (torchrun's default CPU backend; the
gradients all-reduced in buckets as the backward pass produces them), each rank its own batch of `--batch`.
The model mirrors node/trainer/model.ts's mlp preset (dense layers with ReLU, mean softmax cross-entropy,
Adam, float32). Inputs are random numbers of MNIST's shape: the work of a step does not depend on the values.
One thread per process (the script that runs it pins each to a core of its own).

After `--warmup-steps`, rank 0 times the warm-up and picks a step count that lasts about `--seconds`; every rank
runs exactly that many (DDP needs the same count everywhere); rank 0 prints one JSON line:
{"world", "steps", "seconds", "samplesPerSec", "stepMs"}, seconds being the slowest rank's.
"""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--rank", type=int, default=0)
p.add_argument("--world", type=int, default=1)
p.add_argument("--port", type=int, default=29500)
p.add_argument("--seconds", type=float, default=15)
p.add_argument("--warmup-steps", type=int, default=200)
p.add_argument("--features", type=int, default=784)
p.add_argument("--hidden", default="256,128")
p.add_argument("--classes", type=int, default=10)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--lr", type=float, default=0.001)
a = p.parse_args()

torch.set_num_threads(1)
torch.manual_seed(a.rank)
widths = [a.features, *[int(h) for h in a.hidden.split(",") if h], a.classes]
layers = []
for i in range(len(widths) - 1):
    layers.append(nn.Linear(widths[i], widths[i + 1]))
    if i < len(widths) - 2:
        layers.append(nn.ReLU())
model = nn.Sequential(*layers)
if a.world > 1:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{a.port}", rank=a.rank, world_size=a.world)
    model = nn.parallel.DistributedDataParallel(model)
opt = torch.optim.Adam(model.parameters(), lr=a.lr)
batches = [(torch.rand(a.batch, a.features), torch.randint(0, a.classes, (a.batch,))) for _ in range(32)]


def steps(n, start=0):
    for i in range(n):
        x, y = batches[(start + i) % len(batches)]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()


t = time.perf_counter()
steps(a.warmup_steps)
warm = time.perf_counter() - t
count = torch.tensor([max(50, int(a.seconds / (warm / a.warmup_steps)))])
if a.world > 1:
    dist.broadcast(count, 0)
n = int(count.item())
t = time.perf_counter()
steps(n, a.warmup_steps)
elapsed = torch.tensor([time.perf_counter() - t], dtype=torch.float64)
if a.world > 1:
    dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
    dist.destroy_process_group()
s = float(elapsed.item())
if a.rank == 0:
    print(json.dumps({"world": a.world, "steps": n, "seconds": s, "samplesPerSec": n * a.batch * a.world / s, "stepMs": s / n * 1000}), flush=True)
