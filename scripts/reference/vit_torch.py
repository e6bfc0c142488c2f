#!/usr/bin/python3
"""Independent PyTorch reference of fmfl's "vit-tiny" (early-exit ViT + LoRA).

Model: input [B,1,28,28]; 4x4 patches (49, pixels row-major inside each patch)
-> Linear(16,64); learned CLS + positions [1,50,64] (trunc-normal std 0.02);
4 pre-norm blocks (separate q/k/v/proj Linear(64,64), 4 heads of 16, MLP 128,
exact GELU, LayerNorm eps 1e-5, no dropout); an exit head after every block:
LayerNorm(CLS) -> Linear(64,10). Loss = mean of the 4 exits' cross-entropies.
LoRA rank 8, alpha 16 on q and v: y = xW + b + 2 (x A) B, A [64,8]
kaiming-uniform, B [8,64] zero.

With --cls-last the last block computes its queries, attention output, residual and MLP for the CLS token only
(its exit reads nothing else; keys and values still see every token): the same outputs, as fmfl computes it.
--bench times both forms.

Usage:
  /usr/bin/python3 scripts/reference/vit_torch.py --export /tmp/vit.onnx [--batch 64] [--cls-last]
  /usr/bin/python3 scripts/reference/vit_torch.py --bench [--iters 50]
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

IMG, PATCH, DIM, DEPTH, HEADS, MLP, CLASSES = 28, 4, 64, 4, 4, 128, 10
NPATCH = (IMG // PATCH) ** 2  # 49
HEAD_DIM = DIM // HEADS  # 16


class LoRALinear(nn.Module):
    """y = x W + b + (alpha/r) (x A) B; W, b frozen under LoRA training."""

    def __init__(self, dim_in, dim_out, rank=0, alpha=16.0):
        super().__init__()
        self.base = nn.Linear(dim_in, dim_out)
        self.rank = rank
        if rank > 0:
            self.scale = alpha / rank
            self.A = nn.Parameter(torch.empty(dim_in, rank))
            # kaiming-uniform (a=sqrt(5), as nn.Linear) with fan_in = dim_in
            bound = 1.0 / math.sqrt(dim_in)
            nn.init.uniform_(self.A, -bound, bound)
            self.B = nn.Parameter(torch.zeros(rank, dim_out))

    def forward(self, x):
        y = self.base(x)
        if self.rank > 0:
            y = y + self.scale * ((x @ self.A) @ self.B)
        return y


class Block(nn.Module):
    def __init__(self, rank):
        super().__init__()
        self.ln1 = nn.LayerNorm(DIM, eps=1e-5)
        self.q = LoRALinear(DIM, DIM, rank)
        self.k = nn.Linear(DIM, DIM)
        self.v = LoRALinear(DIM, DIM, rank)
        self.proj = nn.Linear(DIM, DIM)
        self.ln2 = nn.LayerNorm(DIM, eps=1e-5)
        self.fc1 = nn.Linear(DIM, MLP)
        self.fc2 = nn.Linear(MLP, DIM)

    def attn(self, xq, x):
        b, t, _ = x.shape
        tq = xq.shape[1]
        q = self.q(xq).reshape(b, tq, HEADS, HEAD_DIM).transpose(1, 2)  # [b,h,tq,d]
        k = self.k(x).reshape(b, t, HEADS, HEAD_DIM).transpose(1, 2)
        v = self.v(x).reshape(b, t, HEADS, HEAD_DIM).transpose(1, 2)
        s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HEAD_DIM))  # / 4
        o = s.softmax(dim=-1) @ v
        return o.transpose(1, 2).reshape(b, tq, DIM)

    def forward(self, x, cls_only=False):
        h = self.ln1(x)
        xq, hq = (x[:, :1], h[:, :1]) if cls_only else (x, h)
        x = xq + self.proj(self.attn(hq, h))
        x = x + self.fc2(F.gelu(self.fc1(self.ln2(x))))  # exact (erf) GELU
        return x


class ExitHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(DIM, eps=1e-5)
        self.fc = nn.Linear(DIM, CLASSES)

    def forward(self, cls):
        return self.fc(self.ln(cls))


class ViTTiny(nn.Module):
    def __init__(self, lora_rank=8, cls_last=False):
        super().__init__()
        self.cls_last = cls_last
        self.patch = nn.Linear(PATCH * PATCH, DIM)
        self.cls = nn.Parameter(torch.empty(1, 1, DIM))
        self.pos = nn.Parameter(torch.empty(1, NPATCH + 1, DIM))
        nn.init.trunc_normal_(self.cls, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList([Block(lora_rank) for _ in range(DEPTH)])
        self.exits = nn.ModuleList([ExitHead() for _ in range(DEPTH)])

    def patchify(self, img):
        b = img.shape[0]
        g = IMG // PATCH
        # [B,1,28,28] -> [B,7,4,7,4] -> [B,7,7,4,4] -> [B,49,16] (row-major in patch)
        x = img.reshape(b, g, PATCH, g, PATCH).permute(0, 1, 3, 2, 4)
        return x.reshape(b, NPATCH, PATCH * PATCH)

    def forward(self, img):
        b = img.shape[0]
        x = self.patch(self.patchify(img))
        x = torch.cat([self.cls.expand(b, -1, -1), x], dim=1) + self.pos
        outs = []
        for i, (blk, ex) in enumerate(zip(self.blocks, self.exits)):
            x = blk(x, self.cls_last and i == DEPTH - 1)
            outs.append(ex(x[:, 0]))
        return tuple(outs)


def loss_fn(outs, y):
    return sum(F.cross_entropy(o, y) for o in outs) / len(outs)


def set_mode(model, mode):
    """mode 'lora': freeze backbone; train LoRA A/B + exit heads. 'full': all."""
    for name, p in model.named_parameters():
        if mode == 'full':
            p.requires_grad_(True)
        else:
            p.requires_grad_(name.startswith('exits.') or name.endswith('.A') or name.endswith('.B'))
    return [p for p in model.parameters() if p.requires_grad]


def export(path, batch, cls_last=False):
    torch.manual_seed(0)
    model = ViTTiny(cls_last=cls_last).eval()
    # give LoRA B non-zero values so the LoRA path is not trivially zero
    with torch.no_grad():
        for blk in model.blocks:
            blk.q.B.normal_(0, 0.02)
            blk.v.B.normal_(0, 0.02)
    x = torch.randn(batch, 1, IMG, IMG)
    torch.onnx.export(
        model, (x,), path, opset_version=17, do_constant_folding=True,
        input_names=['images'], output_names=[f'exit{i}' for i in range(DEPTH)],
    )
    with torch.no_grad():
        ref = model(x)
    # raw float32 input / reference outputs, for checking the ONNX graph in ORT
    x.numpy().astype('float32').tofile(path + '.in.f32')
    torch.stack(ref, 0).numpy().astype('float32').tofile(path + '.out.f32')
    print(json.dumps({'exported': path, 'batch': batch,
                      'params': sum(p.numel() for p in model.parameters()),
                      'exit3_first_row': ref[3][0].tolist()}))


def median_ms(fn, iters, warmup):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return {'median_ms': round(statistics.median(ts), 3), 'min_ms': round(ts[0], 3),
            'p90_ms': round(ts[int(0.9 * (len(ts) - 1))], 3)}


def bench(iters, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    res = {'torch': torch.__version__, 'threads': torch.get_num_threads(), 'iters': iters}
    x64, x1 = torch.randn(64, 1, IMG, IMG), torch.randn(1, 1, IMG, IMG)
    y64 = torch.randint(0, CLASSES, (64,))
    for cls_last, tag in ((False, ''), (True, '_cls_last')):
        model = ViTTiny(cls_last=cls_last)
        model.eval()
        with torch.no_grad():
            res['forward_b64' + tag] = median_ms(lambda: model(x64), iters, 10)
            res['forward_b1' + tag] = median_ms(lambda: model(x1), iters * 4, 20)

        for mode in ('lora', 'full'):
            m = ViTTiny(cls_last=cls_last)
            m.train()
            params = set_mode(m, mode)
            opt = torch.optim.AdamW(params, lr=1e-3)

            def step():
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(m(x64), y64)
                loss.backward()
                opt.step()

            res[f'{mode}_step_b64{tag}'] = median_ms(step, iters, 10)
            res[f'{mode}_trainable_params'] = sum(p.numel() for p in params)
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--export', metavar='OUT.onnx')
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--bench', action='store_true')
    ap.add_argument('--iters', type=int, default=50)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--cls-last', action='store_true', help='export the last block for the CLS token only')
    a = ap.parse_args()
    if a.export:
        export(a.export, a.batch, a.cls_last)
    if a.bench:
        bench(a.iters, a.threads)
    if not a.export and not a.bench:
        ap.print_help()


if __name__ == '__main__':
    main()
