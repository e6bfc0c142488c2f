#!/usr/bin/python3
"""PyTorch exports and autograd references for fmfl's ONNX importer (scripts/reference/compare-import.ts).

Four models (three architectures), seeded, in eval mode, exported by torch.onnx.export at opset 17 (the highest opset
torch 1.13 exports) with a symbolic batch dimension:
  vit-qkv   a timm-style ViT written in plain torch: Conv2d patch embedding (patch 4), CLS token + learned
            positions, 4 pre-norm blocks with one fused qkv Linear (qkv[0], qkv[1], qkv[2] as timm <= 0.5 wrote it),
            exact GELU MLP, final LayerNorm and a Linear head on the CLS token. Input [B, 1, 28, 28], dim 64, 4 heads.
  vit-unbind the same with timm >= 0.6's `q, k, v = qkv.unbind(0)` (exported as Split + Squeeze).
  resnet    a ResNet-18-style CNN: 3x3 stem + BatchNorm + ReLU + MaxPool, 4 stages of 2 BasicBlocks (BatchNorm,
            strided 1x1 downsample), widths 8/16/32/32, global average pool, Linear head. Input [B, 3, 32, 32].
            Exported with TrainingMode.PRESERVE (model in eval mode) so BatchNormalization stays in the graph;
            exits on layer3.1, layer4.0 and the model's own fc (--keep-head), LoRA on fc.
  vit-ref   the reference early-exit ViT of scripts/reference/vit_torch.py (separate q/k/v, its own 4 exit heads),
            exported without LoRA.
For each, on one seeded batch: the exported model's outputs, and the loss and gradients fmfl's training graph
computes with LoRA + fresh exit heads: each exit tensor (a block output) -> token 0 ([B, n, d]) or spatial
mean ([B, C, H, W]) -> LayerNorm(eps 1e-5) -> Linear; loss = mean over exits of the softmax cross-entropy;
LoRA y = x W + b + (alpha / r) (x A) B on the listed Linear modules. A and B are seeded random (B non-zero, so
A's gradient is not trivially zero); the same values go into the JSON for fmfl. With keep_head the model's own
classifier (the last Linear, LoRA included when targeted) is the last exit instead of a fresh head.

Usage: /usr/bin/python3 scripts/reference/export_models.py --out DIR [--models vit-qkv,vit-unbind,resnet,vit-ref]
       /usr/bin/python3 scripts/reference/export_models.py --bench --rank 8 --alpha 16 [--iters 30] [--threads 2]
       /usr/bin/python3 scripts/reference/export_models.py --serve --models resnet ...   (scripts/bench-import-torch.ts)
Writes DIR/<model>.onnx and DIR/<model>.json (inputs, labels, outputs, LoRA / head values and gradients).
"""
import argparse
import json
import math
import os
import sys

import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vit_torch  # noqa: E402

OPSET = 17


class Attention(nn.Module):
    def __init__(self, dim, heads, unbind=False):
        super().__init__()
        self.heads = heads
        self.unbind = unbind
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0) if self.unbind else (qkv[0], qkv[1], qkv[2])
        a = (q @ k.transpose(-2, -1)) * self.scale
        a = a.softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, hidden, unbind=False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, unbind)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, chans, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(chans, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class TimmViT(nn.Module):
    def __init__(self, img=28, chans=1, patch=4, dim=64, depth=4, heads=4, mlp=128, classes=10, unbind=False):
        super().__init__()
        self.patch_embed = PatchEmbed(chans, patch, dim)
        n = (img // patch) ** 2
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp, unbind) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x)[:, 0])


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, widths=(8, 16, 32, 32), chans=3, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(chans, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            layers.append(nn.Sequential(BasicBlock(cin, w, 1 if i == 0 else 2), BasicBlock(w, w, 1)))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def randomize_bn(m, g):
    """Give BatchNorm non-trivial running statistics and affine parameters (as after training)."""
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) * 0.5 + 0.75)
                mod.weight.copy_(torch.rand(mod.num_features, generator=g) * 0.5 + 0.75)
                mod.bias.copy_(torch.randn(mod.num_features, generator=g) * 0.1)


def make(name):
    """(model, input shape, exit modules, LoRA module names, fmfl --lora-targets, exits, keep_head); exits is
    'auto' or the exit modules' paths (compare-import.ts finds each one's output tensor in the ONNX graph)."""
    torch.manual_seed(0)
    if name in ('vit-qkv', 'vit-unbind'):
        m = TimmViT(unbind=name == 'vit-unbind')
        return m, (1, 28, 28), list(m.blocks), ['blocks.%d.attn.qkv' % i for i in range(4)], 'attn/qkv/', 'auto', False
    if name == 'resnet':
        m = ResNet()
        randomize_bn(m, torch.Generator().manual_seed(1))
        return m, (3, 32, 32), [m.layer3[1], m.layer4[0], m.layer4[1]], ['fc'], '^/fc/', ['layer3.1', 'layer4.0', 'layer4.1'], True
    if name == 'vit-ref':
        m = vit_torch.ViTTiny(lora_rank=0)
        return m, (1, 28, 28), list(m.blocks), ['blocks.%d.%s.base' % (i, p) for i in range(4) for p in 'qv'], 'blocks\\.\\d+/(q|v)/', 'auto', False
    raise SystemExit('unknown model ' + name)


def flat(t):
    """float32 values as JSON numbers (9 significant digits round-trip a float32 exactly)."""
    return [float('%.9g' % v) for v in t.detach().reshape(-1).tolist()]


def reference(name, out_dir, batch, rank, alpha):
    model, shape, exit_mods, lora_names, lora_targets, exits, keep_head = make(name)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(7)
    x = torch.rand((batch,) + shape, generator=g) * 2 - 1
    y = torch.randint(0, 10, (batch,), generator=g)
    path = os.path.join(out_dir, name + '.onnx')
    names = ['logits'] if not isinstance(model, vit_torch.ViTTiny) else ['exit%d' % i for i in range(4)]
    # The default (TrainingMode.EVAL) fuses BatchNorm into the Conv weights; PRESERVE on the eval-mode model keeps
    # the BatchNormalization nodes (inference form) so the import maps them.
    mode = torch.onnx.TrainingMode.PRESERVE if name == 'resnet' else torch.onnx.TrainingMode.EVAL
    torch.onnx.export(model, (x,), path, opset_version=OPSET, do_constant_folding=True, input_names=['images'], training=mode,
                      output_names=names, dynamic_axes={'images': {0: 'batch'}, **{k: {0: 'batch'} for k in names}})
    if exits != 'auto':
        nodes = onnx.load(path).graph.node
        exits = [[n for n in nodes if '/%s/' % e in n.name][-1].output[0] for e in exits]
    with torch.no_grad():
        outs = model(x)
    outs = outs if isinstance(outs, tuple) else (outs,)

    # LoRA factors (seeded, B non-zero) on the listed Linear modules, as forward hooks.
    modules = dict(model.named_modules())
    scale = alpha / rank
    lora = {}
    for ln in lora_names:
        lin = modules[ln]
        a = (torch.rand(lin.in_features, rank, generator=g) * 2 - 1) / math.sqrt(lin.in_features)
        b = (torch.rand(rank, lin.out_features, generator=g) * 2 - 1) * 0.1
        lora[ln] = (a.requires_grad_(True), b.requires_grad_(True))
        lin.register_forward_hook(lambda mod, inp, out, ab=lora[ln]: out + scale * ((inp[0] @ ab[0]) @ ab[1]))
    captured = []
    for mod in exit_mods:
        mod.register_forward_hook(lambda mod, inp, out: captured.append(out))
    fresh = len(exit_mods) - (1 if keep_head else 0)
    heads = [None] * fresh
    final = model(x)
    final = final[-1] if isinstance(final, tuple) else final
    width = captured[0].shape[2] if captured[0].dim() == 3 else captured[0].shape[1]
    for i in range(fresh):
        heads[i] = {
            'norm.weight': (1 + 0.1 * torch.randn(width, generator=g)).requires_grad_(True),
            'norm.bias': (0.1 * torch.randn(width, generator=g)).requires_grad_(True),
            'head.weight': (torch.randn(width, 10, generator=g) / math.sqrt(width)).requires_grad_(True),
            'head.bias': (0.1 * torch.randn(10, generator=g)).requires_grad_(True),
        }
    logits = []
    for i in range(fresh):
        h = captured[i]
        z = h[:, 0] if h.dim() == 3 else h.mean(dim=(2, 3))
        z = F.layer_norm(z, (width,), heads[i]['norm.weight'], heads[i]['norm.bias'], 1e-5)
        logits.append(z @ heads[i]['head.weight'] + heads[i]['head.bias'])
    if keep_head:
        logits.append(final)
    loss = sum(F.cross_entropy(z, y) for z in logits) / len(logits)
    params = {}
    for ln, (a, b) in lora.items():
        params[ln + '.lora_a'] = a
        params[ln + '.lora_b'] = b
    for i, h in enumerate(heads):
        for k, v in h.items():
            params['exits.%d.%s' % (i, k)] = v
    grads = torch.autograd.grad(loss, list(params.values()))
    doc = {
        'model': name, 'torch': torch.__version__, 'opset': OPSET, 'input': list((batch,) + shape),
        'images': flat(x), 'labels': [int(v) for v in y.tolist()],
        'outputs': {n: flat(o) for n, o in zip(names, outs)},
        'loraTargets': lora_targets, 'exits': exits, 'keepHead': keep_head, 'lora': {'rank': rank, 'alpha': alpha},
        'loss': float(loss),
        'params': {k: {'shape': list(v.shape), 'value': flat(v)} for k, v in params.items()},
        'grads': {k: flat(gv) for k, gv in zip(params.keys(), grads)},
    }
    with open(os.path.join(out_dir, name + '.json'), 'w') as f:
        json.dump(doc, f)
    return {'model': name, 'onnx': path, 'bytes': os.path.getsize(path), 'loss': float(loss), 'params': len(params)}


def bench(name, batch, iters, threads, rank, alpha):
    """PyTorch's LoRA + heads train step (AdamW) on the architecture as fmfl trains its import: LoRA (rank, alpha)
    on the same Linear modules, fresh LayerNorm + Linear heads on the exit modules (the kept classifier for the
    ResNet), loss = mean of the exits' cross-entropies. Median ms over `iters` steps after 5 warm-up steps."""
    import statistics
    import time
    step = bench_step(name, batch, threads, rank, alpha)
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        ts.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(ts)
    return {'model': name, 'torch': torch.__version__, 'threads': torch.get_num_threads(), 'batch': batch,
            'loraStepMs': round(ms, 2), 'samplesPerSec': round(batch * 1000 / ms), 'trainable': step.trainable}


def serve(name, batch, threads, rank, alpha):
    """The bench step kept warm in one process (scripts/bench-import-torch.ts interleaves it with fmfl's): prints
    one JSON line of settings, then for each stdin line `N` runs N steps and prints their times in ms."""
    import time
    step = bench_step(name, batch, threads, rank, alpha)
    print(json.dumps({'model': name, 'torch': torch.__version__, 'threads': torch.get_num_threads(),
                      'interopThreads': torch.get_num_interop_threads(), 'batch': batch, 'trainable': step.trainable,
                      'env': {k: os.environ.get(k) for k in ('OMP_NUM_THREADS', 'OMP_WAIT_POLICY', 'GOMP_SPINCOUNT', 'OPENBLAS_NUM_THREADS')},
                      'parallel': torch.__config__.parallel_info().splitlines()[-1].strip()}), flush=True)
    for line in sys.stdin:
        n = int(line.strip() or 0)
        if n <= 0:
            break
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            step()
            ts.append((time.perf_counter() - t0) * 1e3)
        print(json.dumps({'ms': ts}), flush=True)


def bench_step(name, batch, threads, rank, alpha):
    """The bench's train step as a closure (model, LoRA, heads and AdamW built; 5 warm-up steps done)."""
    torch.set_num_threads(threads)
    model, shape, exit_mods, lora_names, _, _, keep_head = make(name)
    model.train()
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.eval()  # frozen BatchNorm (running statistics), as the import uses it
    for p in model.parameters():
        p.requires_grad_(False)
    modules = dict(model.named_modules())
    scale = alpha / rank
    params = []
    for ln in lora_names:
        lin = modules[ln]
        a = nn.Parameter(torch.empty(lin.in_features, rank).uniform_(-1, 1) / math.sqrt(lin.in_features))
        b = nn.Parameter(torch.zeros(rank, lin.out_features))
        params += [a, b]
        lin.register_forward_hook(lambda mod, inp, out, a=a, b=b: out + scale * ((inp[0] @ a) @ b))
    captured = []
    for mod in exit_mods:
        mod.register_forward_hook(lambda mod, inp, out: captured.append(out))
    fresh = len(exit_mods) - (1 if keep_head else 0)
    x = torch.rand((batch,) + shape) * 2 - 1
    y = torch.randint(0, 10, (batch,))
    with torch.no_grad():
        model(x)
    width = captured[0].shape[2] if captured[0].dim() == 3 else captured[0].shape[1]
    heads = nn.ModuleList([nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 10)) for _ in range(fresh)])
    params += list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)

    def step():
        captured.clear()
        out = model(x)
        out = out[-1] if isinstance(out, tuple) else out
        logits = [h(c[:, 0] if c.dim() == 3 else c.mean(dim=(2, 3))) for h, c in zip(heads, captured)]
        if keep_head:
            logits.append(out)
        loss = sum(F.cross_entropy(z, y) for z in logits) / len(logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    step.trainable = sum(p.numel() for p in params)
    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', help='folder for the exports and references (required unless --bench)')
    ap.add_argument('--models', default='vit-qkv,vit-unbind,resnet,vit-ref')
    ap.add_argument('--batch', type=int, default=4)
    ap.add_argument('--rank', type=int, default=4)
    ap.add_argument('--alpha', type=float, default=8.0)
    ap.add_argument('--bench', action='store_true', help='time the LoRA train step instead (batch 64 unless --batch)')
    ap.add_argument('--serve', action='store_true', help='keep the bench step of the first model warm and run N steps per stdin line')
    ap.add_argument('--iters', type=int, default=30)
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    if a.serve:
        serve(a.models.split(',')[0], a.batch if a.batch != 4 else 64, a.threads, a.rank, a.alpha)
        return
    if a.bench:
        for name in a.models.split(','):
            print(json.dumps(bench(name, a.batch if a.batch != 4 else 64, a.iters, a.threads, a.rank, a.alpha)))
        return
    if not a.out:
        ap.error('--out DIR is required (or --bench)')
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(1)
    for name in a.models.split(','):
        print(json.dumps(reference(name, a.out, a.batch, a.rank, a.alpha)))


if __name__ == '__main__':
    main()
