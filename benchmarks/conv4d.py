"""Conv4d forward + backward against the per-time-offset conv3d loop, and the matmul peak.

    python -P benchmarks/conv4d.py [--repeats 5] [--device cpu|cuda]

The comparison is the algorithm of the public Conv4d implementations, written here: for each
output frame, a sum over the kernel's time offsets of ``conv3d`` calls (bias added once, so both
compute the same function — checked before timing). Layers: the first (batch 8, 1 → 16
channels, T = 4, B = 8 bands, 64 × 64, kernel 3⁴, padding 1) and a hidden one (16 → 16, same
shape). Times are medians of ``repeats`` forward + backward passes after a warm-up; GFLOP/s
counts 2 · MACs of the forward pass × 3 (forward + the two backward products; × 2 on the first
layer, whose input needs no gradient); the fp32 matmul peak is measured in the same run (4096²
matrices). On CUDA, TF32 is switched off so that both sides and the peak are plain fp32.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from torch.nn import functional as F

from qpebench.baselines.conv4d import Conv4d


def loop_conv4d(x: torch.Tensor, conv: Conv4d) -> torch.Tensor:
    """The public implementations' algorithm: one conv3d per output frame and time offset."""
    p = conv.padding
    x = F.pad(x, [v for q in reversed(p) for v in (q, q)])
    kt = conv.kernel_size[0]
    t_out = x.shape[2] - kt + 1
    frames = []
    for t in range(t_out):
        acc = None
        for i in range(kt):
            y = F.conv3d(x[:, :, t + i], conv.weight[:, :, i])
            acc = y if acc is None else acc + y
        assert acc is not None
        frames.append(acc + conv.bias.view(1, -1, 1, 1, 1))  # type: ignore[union-attr]
    return torch.stack(frames, dim=2)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _median(fn: Callable[[], None], repeats: int, device: str) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _step(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, conv: Conv4d) -> None:
    conv.zero_grad(set_to_none=True)
    x.grad = None
    fn(x).sum().backward()


def matmul_peak(device: str, repeats: int) -> float:
    a = torch.randn(4096, 4096, device=device)
    b = torch.randn(4096, 4096, device=device)
    seconds = _median(lambda: (a @ b, None)[1], repeats, device)
    return 2 * 4096**3 / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    peak = matmul_peak(args.device, args.repeats)
    threads = torch.get_num_threads()
    print(f"device {args.device}, {threads} threads; fp32 matmul peak {peak:.1f} GFLOP/s")
    print(
        f"{'layer':<10} {'loop s':>8} {'Conv4d s':>9} {'speed-up':>8} {'GFLOP/s':>8} {'of peak':>8}"
    )
    for name, cin in (("first", 1), ("hidden", 16)):
        conv = Conv4d(cin, 16, 3, padding=1).to(args.device)
        x = torch.randn(8, cin, 4, 8, 64, 64, device=args.device, requires_grad=cin > 1)
        torch.testing.assert_close(conv(x), loop_conv4d(x, conv), rtol=1e-4, atol=1e-4)

        ours = _median(partial(_step, conv.forward, x, conv), args.repeats, args.device)
        loop = _median(
            partial(_step, partial(loop_conv4d, conv=conv), x, conv), args.repeats, args.device
        )
        macs = 8 * 16 * 4 * 8 * 64 * 64 * cin * 3**4
        # forward + weight gradient (+ input gradient where the input needs one: not at 1 → 16)
        passes = 3 if x.requires_grad else 2
        gflops = passes * 2 * macs / ours / 1e9
        print(
            f"{name:<10} {loop:>8.3f} {ours:>9.3f} {loop / ours:>7.2f}× {gflops:>8.1f} "
            f"{gflops / peak:>8.2f}"
        )


if __name__ == "__main__":
    main()
