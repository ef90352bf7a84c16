"""PyTorch's process CPU time (all threads) per call for the cases of bench_conv and bench_unet.

On a shared machine the wall-clock time depends on the other jobs; the CPU time a call consumes
depends much less on them, so it compares the cost of the code itself. Same calls as
../shared/peer-bench/bench_conv.py (NCDHW contiguous) and bench_unet.py; our side reports the
same quantity as the `cpu_ms_all_threads` counter. Run with Debian's interpreter:

    /usr/bin/python3 bench/peer_cpu_time.py --threads 2
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--reps", type=int, default=5)
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)


def cpu_ms(fn):
    fn()  # warm-up
    ts = []
    for _ in range(args.reps):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        ts.append(((time.process_time() - c0) * 1e3, (time.perf_counter() - w0) * 1e3))
    return statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)


def report(label, fn):
    c, w = cpu_ms(fn)
    print(f"{label:45s} cpu_ms_all_threads={c:9.1f}   wall_ms={w:9.1f}", flush=True)


for label, n, cin, cout, sp in [("conv3d N8 8->16 32^3 k3", 8, 8, 16, (32, 32, 32)),
                                 ("conv3d N8 16->16 32^3 k3", 8, 16, 16, (32, 32, 32)),
                                 ("conv3d N8 32->32 32^3 k3", 8, 32, 32, (32, 32, 32)),
                                 ("conv2d N32 32->32 64^2 k3", 32, 32, 32, (64, 64))]:
    conv = F.conv3d if len(sp) == 3 else F.conv2d
    x = torch.randn(n, cin, *sp)
    w = torch.randn(cout, cin, *([3] * len(sp))) * 0.1
    b = torch.zeros(cout)
    gy = torch.randn(n, cout, *sp)
    xg, wg, bg = (t.clone().requires_grad_(True) for t in (x, w, b))

    def fwd():
        with torch.no_grad():
            conv(x, w, b, padding=1)

    def fwdbwd():
        xg.grad = wg.grad = bg.grad = None
        conv(xg, wg, bg, padding=1).backward(gy)

    report(label + " fwd", fwd)
    report(label + " fwd+bwd(dx,dw)", fwdbwd)


class Block(nn.Module):  # the net of ../shared/peer-bench/bench_unet.py
    def __init__(self, cin=1, w=16, ncls=2):
        super().__init__()
        self.c1 = nn.Conv3d(cin, w, 3, padding=1)
        self.c2 = nn.Conv3d(w, w, 3, padding=1)
        self.c3 = nn.Conv3d(w, 2 * w, 3, padding=1)
        self.c4 = nn.Conv3d(3 * w, w, 3, padding=1)
        self.out = nn.Conv3d(w, ncls, 1)

    def forward(self, x):
        c2 = F.relu(self.c2(F.relu(self.c1(x))))
        c3 = F.relu(self.c3(F.max_pool3d(c2, 2)))
        u = F.interpolate(c3, scale_factor=2, mode="nearest")
        return self.out(F.relu(self.c4(torch.cat([u, c2], 1))))


net = Block()
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
x = torch.randn(8, 1, 32, 32, 32)
y = torch.randint(0, 2, (8, 32, 32, 32))


def step():
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    opt.step()


def infer():
    with torch.no_grad():
        net(x)


report("U-Net step N8 32^3 w16 (fwd, CE, bwd, Adam)", step)
report("U-Net forward, no grad", infer)
