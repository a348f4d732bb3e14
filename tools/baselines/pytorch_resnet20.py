#!/usr/bin/env python3
"""PyTorch CPU baselines for `ttaq bench`: the same ResNet-20 and the same steps, timed in PyTorch.

The issues set speed goals as ratios against PyTorch on the same machine. `ttaq bench` runs this
script (when a Python with torch is found: $TTAQ_PYTORCH_PYTHON, else python3) in the same run as
its own measurement, so each ratio compares two figures taken minutes apart on one machine.

  python3 tools/baselines/pytorch_resnet20.py train|infer|tent|recon [--threads 2] [--reps N]

Prints one JSON object per line. Figures are medians over timed repetitions after warm-up steps.
The networks mirror sdk/nn (CIFAR-style ResNet-20 on 1x28x28 inputs, 1x1-conv projection
shortcuts) and the steps mirror ours:
  train  SGD step (momentum 0.9, weight decay 5e-4), cross-entropy, batch 128
  infer  eval-mode forward under inference_mode, batch 1/8/64
  tent   TENT: BN in batch-statistics mode, entropy loss, gradients of the BN affine parameters
         only, SGD step, batch 64 (also 1 and 8)
  recon  one block-reconstruction iteration of layer2.0 at W4A4, batch 32: AdaRound weights (per
         output channel), LSQ activation steps, QDrop's elementwise mix of quantized and FP block
         input (p = 0.5), Adam, squared error summed per sample + rounding regulariser; 'ttaq' adds
         PEM (sum of squared quantized weights) and PCR (KL between the clean and the perturbed
         block output over channels, input noise 0.1 of the per-channel std). This is our own
         re-implementation of the computation, not QDrop's published code, which runs the same
         ops with more Python around them.
Inputs are random: speed does not depend on the values.
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNet20(nn.Module):
    def __init__(self, classes=10, widths=(16, 32, 64), blocks=3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers, cin = [], widths[0]
        for s, w in enumerate(widths):
            for b in range(blocks):
                layers.append(BasicBlock(cin, w, 2 if s > 0 and b == 0 else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(self.layers(self.stem(x)).mean((2, 3)))


def timed(step, warmup, reps):
    for _ in range(warmup):
        step()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts)


def bench_train(a):
    m = ResNet20().train()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(m(x), y).backward()
        opt.step()

    ms = timed(step, 3, a.reps or 10)
    yield {"bench": "train", "batch": 128, "stepMs": ms, "imagesPerSec": 128000 / ms}


def bench_infer(a):
    m = ResNet20().eval()
    for batch in (1, 8, 64):
        x = torch.randn(batch, 1, 28, 28)

        def step():
            with torch.inference_mode():
                m(x)

        ms = timed(step, 3, a.reps or max(5, min(50, round(800 / batch))))
        yield {"bench": "infer", "batch": batch, "msPerBatch": ms, "secondsPer1000": ms / batch}


def bench_tent(a):
    m = ResNet20().train()  # BN normalises with batch statistics, as TENT does
    m.requires_grad_(False)
    params = []
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.weight.requires_grad_(True)
            mod.bias.requires_grad_(True)
            params += [mod.weight, mod.bias]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    for batch in (1, 8, 64):
        x = torch.randn(batch, 1, 28, 28)

        def step():
            logits = m(x)
            p = logits.softmax(1)
            loss = -(p * logits.log_softmax(1)).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return logits  # predictions come from the same pass, as in ours

        ms = timed(step, 3, a.reps or max(5, min(50, round(800 / batch))))
        yield {"bench": "tent", "batch": batch, "msPerStep": ms, "secondsPer1000": ms / batch}


ZETA, GAMMA = 1.1, -0.1


class FakeQuantAct(torch.autograd.Function):
    """x -> s * clip(round(x/s), qmin, qmax) with LSQ's step gradient (no gradient scale)."""

    @staticmethod
    def forward(ctx, x, s, qmin, qmax):
        r = x / s
        q = torch.clamp(torch.round(r), qmin, qmax)
        ctx.save_for_backward(r, q)
        ctx.bounds = (qmin, qmax)
        return q * s

    @staticmethod
    def backward(ctx, g):
        r, q = ctx.saved_tensors
        qmin, qmax = ctx.bounds
        inside = (r >= qmin) & (r <= qmax)
        gx = g * inside
        gs = (g * torch.where(inside, q - r, q)).sum().reshape(())
        return gx, gs, None, None


class AdaRoundConv(nn.Module):
    """AdaRound weights (per output channel) of a Conv2d, or of a Linear layer."""

    def __init__(self, conv, bits=4):
        super().__init__()
        w = conv.weight.detach()
        self.linear = isinstance(conv, nn.Linear)
        self.bias = conv.bias.detach() if self.linear else None
        self.stride, self.padding = (None, None) if self.linear else (conv.stride, conv.padding)
        self.qmin, self.qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        self.scale = (w.abs().amax(tuple(range(1, w.dim())), keepdim=True) / self.qmax).clamp_min(1e-8)
        r = w / self.scale
        self.floor = torch.floor(r)
        frac = (r - self.floor).clamp(1e-4, 1 - 1e-4)
        sig = (frac - GAMMA) / (ZETA - GAMMA)
        self.v = nn.Parameter(torch.log(sig / (1 - sig)))

    def h(self):
        return torch.clamp(torch.sigmoid(self.v) * (ZETA - GAMMA) + GAMMA, 0, 1)

    def weight(self):
        return torch.clamp(self.floor + self.h(), self.qmin, self.qmax) * self.scale

    def forward(self, x):
        if self.linear:
            return F.linear(x, self.weight(), self.bias)
        return F.conv2d(x, self.weight(), None, self.stride, self.padding)


class QuantBlock(nn.Module):
    """A residual block with AdaRound weights, frozen float BN and an LSQ activation quantizer (4 bit)
    after its first ReLU; the shortcut is the identity or a quantized 1x1 projection."""

    def __init__(self, block):
        super().__init__()
        self.conv1, self.conv2 = AdaRoundConv(block.conv1), AdaRoundConv(block.conv2)
        proj = block.shortcut is not None
        self.sc = AdaRoundConv(block.shortcut[0]) if proj else None
        self.bn1, self.bn2 = block.bn1.eval(), block.bn2.eval()
        self.bnsc = block.shortcut[1].eval() if proj else None
        for bn in (self.bn1, self.bn2, self.bnsc):
            if bn is not None:
                bn.requires_grad_(False)
        self.s_mid = nn.Parameter(torch.tensor(0.1))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = FakeQuantAct.apply(y, self.s_mid, 0, 15)
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.sc is None else self.bnsc(self.sc(x))))

    def convs(self):
        return tuple(c for c in (self.conv1, self.conv2, self.sc) if c is not None)

    def steps(self):
        return [self.s_mid]


class QuantStem(nn.Module):
    """The stem (first layer: 8-bit weights), conv, frozen BN, ReLU."""

    def __init__(self, stem):
        super().__init__()
        self.conv, self.bn = AdaRoundConv(stem[0], bits=8), stem[1].eval().requires_grad_(False)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))

    def convs(self):
        return (self.conv,)

    def steps(self):
        return []


class QuantHead(nn.Module):
    """Global average pooling and the classifier (last layer: 8-bit weights)."""

    def __init__(self, fc):
        super().__init__()
        self.fc = AdaRoundConv(fc, bits=8)

    def forward(self, x):
        return self.fc(x.mean((2, 3)))

    def convs(self):
        return (self.fc,)

    def steps(self):
        return []


def recon_step(qb, xfp, yfp, variant, batch, in_range=(0, 15), iterations=1000):
    """One reconstruction iteration of block `qb` on cached FP inputs and targets, as a closure:
    QDrop's elementwise mix of quantized and FP inputs (p = 0.5), squared error summed per sample,
    AdaRound's rounding regulariser with beta annealed from 20 to 2, Adam; 'ttaq' adds PEM and PCR."""
    n = xfp.shape[0]
    s_in = nn.Parameter(torch.tensor(0.1))
    opt = torch.optim.Adam([{"params": [c.v for c in qb.convs()], "lr": 1e-3}, {"params": qb.steps() + [s_in], "lr": 4e-5}])
    it = [0]

    def step():
        i = it[0]
        it[0] += 1
        lo = (i * batch) % n
        x, y = xfp[lo:lo + batch], yfp[lo:lo + batch]
        xq = FakeQuantAct.apply(x, s_in, *in_range)
        mask = torch.rand_like(x) < 0.5
        xin = torch.where(mask, xq, x)
        out = qb(xin)
        loss = (out - y).pow(2).sum() / batch
        beta = 20 - 18 * min(1.0, i / iterations)
        rnd = sum((1 - (2 * c.h() - 1).abs().pow(beta)).sum() for c in qb.convs())
        loss = loss + 0.01 * rnd
        if variant == "ttaq":
            loss = loss + sum(c.weight().pow(2).sum() for c in qb.convs())  # PEM
            std = xin.detach().std((0, 2, 3), keepdim=True, unbiased=False)
            pert = qb(xin + 0.1 * std * torch.randn_like(x))
            logp = out.detach().log_softmax(1)
            kl = (logp.exp() * (logp - pert.log_softmax(1))).sum() / batch
            loss = loss + kl  # PCR
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def bench_recon(a):
    torch.manual_seed(0)
    net = ResNet20().eval()
    block = net.layers[3]  # layer2.0: 16 -> 32 channels, stride 2, projection shortcut
    qb = QuantBlock(block)
    n, batch = 256, 32
    xfp = torch.relu(torch.randn(n, 16, 28, 28))
    with torch.no_grad():
        yfp = block(xfp)  # FP targets cached, as ours
    for variant in ("qdrop", "ttaq"):
        step = recon_step(qb, xfp, yfp, variant, batch)
        reps = a.reps or 100
        t_cpu = time.process_time()
        ms = timed(step, 5, reps)
        yield {"bench": "recon", "variant": variant, "batch": batch, "secondsPer1000": ms,
               "cpuSecondsPer1000": (time.process_time() - t_cpu) / (reps + 5) * 1000}


def bench_recon_net(a):
    """The whole network, block after block (stem, nine residual blocks, head), `--iterations` each
    (default 2,000: the default preset) on 1,024 cached images, as `ttaq quantize --method qdrop`
    does. Only reconstruction is timed: no calibration, export or report."""
    torch.manual_seed(0)
    net = ResNet20().eval()
    iterations, batch, n = a.iterations or 2000, 32, 1024
    x = torch.randn(n, 1, 28, 28)
    stages = [("stem", QuantStem(net.stem), net.stem, (-128, 127))]
    stages += [(f"layer{i // 3 + 1}.{i % 3}", QuantBlock(b), b, (0, 15)) for i, b in enumerate(net.layers)]
    stages.append(("fc", QuantHead(net.fc), lambda t: net.fc(t.mean((2, 3))), (0, 255)))
    blocks, total = [], 0.0
    for name, qb, fp, in_range in stages:
        with torch.no_grad():
            y = fp(x)  # FP targets and inputs cached per block
        step = recon_step(qb, x, y, "qdrop", batch, in_range, iterations)
        t = time.perf_counter()
        for _ in range(iterations):
            step()
        sec = time.perf_counter() - t
        blocks.append({"block": name, "seconds": sec})
        total += sec
        print(f"recon-net {name}: {sec:.1f} s", file=sys.stderr, flush=True)
        x = y
    yield {"bench": "recon-net", "variant": "qdrop", "batch": batch, "iterations": iterations,
           "seconds": total, "blocks": blocks}


BENCHES = {"train": bench_train, "infer": bench_infer, "tent": bench_tent, "recon": bench_recon, "recon-net": bench_recon_net}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bench", nargs="+", choices=sorted(BENCHES))
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2: the issues' baseline)")
    p.add_argument("--reps", type=int, default=0, help="timed repetitions (default per bench)")
    p.add_argument("--iterations", type=int, default=0, help="recon-net: iterations per block (default 2000)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    for name in a.bench:
        for row in BENCHES[name](a):
            row.update({"torch": torch.__version__, "threads": a.threads})
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
