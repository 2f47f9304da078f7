"""One rank of bench-allreduce's gloo reference: PyTorch's torch.distributed all_reduce (gloo backend) on
127.0.0.1. Every rank times each all_reduce; the slowest rank's time counts (as for the ring: the slowest
member's). Rank 0 prints [{"mib", "ms"}] (the median over --rounds, after one warm-up) as one JSON line.

  python3 bench-allreduce-gloo.py --rank R --world N --port P --sizes 0.00390625,16 --rounds 5
"""
import argparse
import datetime
import json
import time

import torch
import torch.distributed as dist

parser = argparse.ArgumentParser()
parser.add_argument('--rank', type=int, required=True)
parser.add_argument('--world', type=int, required=True)
parser.add_argument('--port', type=int, required=True)
parser.add_argument('--sizes', required=True)
parser.add_argument('--rounds', type=int, default=5)
args = parser.parse_args()

torch.set_num_threads(1)
dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{args.port}', rank=args.rank, world_size=args.world,
                        timeout=datetime.timedelta(seconds=120))
rows = []
for mib in [float(s) for s in args.sizes.split(',') if float(s) > 0]:
    tensor = torch.empty(max(1, round(mib * 1024 * 1024 / 4)), dtype=torch.float32)
    times = []
    for i in range(args.rounds + 1):
        tensor.fill_(1.0)
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(tensor)
        ms = torch.tensor([(time.perf_counter() - start) * 1000], dtype=torch.float64)
        dist.all_reduce(ms, op=dist.ReduceOp.MAX)
        if i > 0:
            times.append(ms.item())
        assert tensor[0].item() == args.world
    rows.append({'mib': mib, 'ms': sorted(times)[len(times) // 2]})
if args.rank == 0:
    print(json.dumps(rows), flush=True)
dist.destroy_process_group()
