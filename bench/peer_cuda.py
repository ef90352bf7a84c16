"""PyTorch-on-GPU side of bench/bench_cuda.cpp: the same cases, the same shapes, the same card.

  python3 bench/peer_cuda.py            # prints one line per case: median ms and GFLOP/s
  python3 bench/peer_cuda.py --json peer_cuda.json   # ... and writes them as JSON (card, versions, cases)

Cases: conv3d forward and forward+backward (dx, dw, db) at batch 8, 32^3, k3 p1 for 8->16, 16->16,
32->32; conv2d forward+backward at batch 32, 64^2, 32->32; the benchmark U-Net training step (forward,
cross-entropy, backward, Adam; ../shared/peer-bench/bench_unet.py's network) at batch 8 and 64. Each with
TF32 on and off. cudnn.benchmark is on (algorithms timed once per shape, as bench_cuda does).
Then bench_gather's CUDA cases: grid_sample of 4096 affine 32^3 patches from a 512^3 volume (nearest,
trilinear) and a 1 GiB device copy.
"""
import argparse
import json
import os
import signal
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def timeit(fn, reps=20, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


class Block(nn.Module):
    def __init__(self, w=16):
        super().__init__()
        self.c1 = nn.Conv3d(1, w, 3, padding=1)
        self.c2 = nn.Conv3d(w, w, 3, padding=1)
        self.c3 = nn.Conv3d(w, 2 * w, 3, padding=1)
        self.c4 = nn.Conv3d(3 * w, w, 3, padding=1)
        self.out = nn.Conv3d(w, 2, 1)

    def forward(self, x):
        c2 = F.relu(self.c2(F.relu(self.c1(x))))
        c3 = F.relu(self.c3(F.max_pool3d(c2, 2)))
        u = F.interpolate(c3, scale_factor=2, mode="nearest")
        return self.out(F.relu(self.c4(torch.cat([u, c2], 1))))


RESULTS = []


def report(name, tf32, sec, gflop):
    print(f"{name:45s} tf32={int(tf32)}  {sec * 1e3:8.3f} ms  {gflop / sec:8.1f} GFLOP/s", flush=True)
    RESULTS.append({"name": name, "tf32": bool(tf32), "median_ms": sec * 1e3, "gflop_per_s": gflop / sec})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("peer_cuda.py: PyTorch sees no CUDA GPU (torch " + torch.__version__ + "); nothing to measure")
        return
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    info = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version(), "cuda": torch.version.cuda}
    print(info["device"], "torch", info["torch"], "cuDNN", info["cudnn"], "CUDA", info["cuda"])

    def save():
        if args.json:
            with open(args.json + ".tmp", "w") as f:
                json.dump({"context": info, "results": RESULTS}, f, indent=1)
            os.replace(args.json + ".tmp", args.json)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout`: still write what was measured
    try:
        run_cases(dev)
    finally:
        save()  # what was measured, also when a later case fails or the run is stopped


def set_tf32(tf32):
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32


def run_cases(dev):
    # The training step first (as in bench_cuda): what a time-limited run must not lose.
    for tf32 in (True, False):
        set_tf32(tf32)
        for n in (8, 64):
            s, w = 32, 16
            torch.manual_seed(0)
            net = Block(w).to(dev)
            opt = torch.optim.Adam(net.parameters(), lr=1e-3)
            x = torch.randn(n, 1, s, s, s, device=dev)
            y = torch.randint(0, 2, (n, s, s, s), device=dev)
            vox, half = s ** 3, s ** 3 / 8
            fwd = 2.0 * n * (w * 27 * vox + w * w * 27 * vox + w * 2 * w * 27 * half + 3 * w * w * 27 * vox +
                             w * 2 * vox) / 1e9

            def step():
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(net(x), y).backward()
                opt.step()

            report(f"unet_train_step batch {n}", tf32, timeit(step), 3 * fwd)
    for tf32 in (True, False):
        set_tf32(tf32)
        for cin, cout in ((8, 16), (16, 16), (32, 32)):
            n, s = 8, 32
            x = torch.randn(n, cin, s, s, s, device=dev, requires_grad=True)
            conv = nn.Conv3d(cin, cout, 3, padding=1).to(dev)
            g = torch.randn(n, cout, s, s, s, device=dev)
            gflop = 2.0 * n * cin * cout * 27 * s ** 3 / 1e9
            with torch.no_grad():
                report(f"conv3d_forward {cin}->{cout}", tf32, timeit(lambda: conv(x)), gflop)

            def fwd_bwd():
                x.grad = None
                conv.zero_grad(set_to_none=True)
                conv(x).backward(g)

            report(f"conv3d_forward_backward {cin}->{cout}", tf32, timeit(fwd_bwd), 3 * gflop)
        n, c, s = 32, 32, 64
        x = torch.randn(n, c, s, s, device=dev, requires_grad=True)
        conv = nn.Conv2d(c, c, 3, padding=1, bias=False).to(dev)
        g = torch.randn(n, c, s, s, device=dev)

        def fwd_bwd2():
            x.grad = None
            conv.zero_grad(set_to_none=True)
            conv(x).backward(g)

        report("conv2d_forward_backward 32->32", tf32, timeit(fwd_bwd2), 3 * 2.0 * n * c * c * 9 * s * s / 1e9)
    run_gather(dev)


def run_gather(dev, V=512, S=32, P=4096):
    """bench_gather's BM_cuda_* cases: 4096 affine patches of 32^3 from a 512^3 volume by grid_sample
    (align_corners=True, the sample coordinates precomputed, as in ../shared/peer-bench/bench_gather.py),
    and a 1 GiB device-to-device copy. Rates: output Mvox/s and GB/s (bytes per output voxel as in
    bench_gather: copy 8, nearest 8, trilinear 36)."""
    g = torch.Generator(device="cpu").manual_seed(1)
    vol = torch.randn(1, 1, V, V, V, generator=g).to(dev)
    q, r = torch.linalg.qr(torch.randn(P, 3, 3, generator=g))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]  # uniform random rotations
    a = q @ torch.diag_embed(0.8 + 0.45 * torch.rand(P, 3, generator=g))
    c = 48 + (V - 96) * torch.rand(P, 3, generator=g)
    u = torch.stack(torch.meshgrid(*[torch.arange(S, dtype=torch.float32)] * 3, indexing="ij"), -1)
    u = u.reshape(-1, 3) - (S - 1) / 2
    a, c, u = a.to(dev), c.to(dev), u.to(dev)
    pts = torch.baddbmm(c[:, None, :], u.expand(P, -1, -1), a.transpose(1, 2))  # (P, S^3, 3) z,y,x
    grid = pts.flip(-1).mul_(2.0 / (V - 1)).sub_(1.0).reshape(1, P * S, S, S, 3).contiguous()
    del pts
    nvox = P * S ** 3

    def rate(name, sec, vox, bytes_per_vox):
        print(f"{name:45s}         {sec * 1e3:8.3f} ms  {vox / sec / 1e6:8.1f} Mvox/s  "
              f"{vox * bytes_per_vox / sec / 1e9:7.1f} GB/s", flush=True)
        RESULTS.append({"name": name, "median_ms": sec * 1e3, "mvox_per_s": vox / sec / 1e6,
                        "gb_per_s": vox * bytes_per_vox / sec / 1e9})

    src = torch.zeros(V ** 3 * 2, device=dev)  # 1 GiB at V = 512
    dst = torch.empty_like(src)
    rate("cuda_copy 1 GiB", timeit(lambda: dst.copy_(src)), src.numel(), 8)
    del src, dst
    with torch.no_grad():
        for mode, bpv in (("nearest", 8), ("bilinear", 36)):  # 'bilinear' on 5-D input = trilinear
            rate(f"cuda_gather_{'trilinear' if mode == 'bilinear' else mode} 4096x32^3 from 512^3",
                 timeit(lambda: F.grid_sample(vol, grid, mode=mode, align_corners=True), reps=10), nvox, bpv)


if __name__ == "__main__":
    main()
