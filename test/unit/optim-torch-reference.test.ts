import test from 'ava';
import { AdamW, SGD, type Optimizer } from '../../src/train/optim.ts';

/*
 * Reference trajectories printed by PyTorch 1.13.1 (Debian python3-torch) for p0 and three gradients:
 *   p = torch.nn.Parameter(torch.tensor(P0)); opt = <optimizer>([p])
 *   for g in GS: p.grad = torch.tensor(g); [torch.nn.utils.clip_grad_norm_([p], clip)]; opt.step()
 */
const P0 = [0.3, -1.2, 2.5, 0.0];
const GS = [
  [0.1, -0.4, 2.0, 1e-3],
  [-0.2, 0.3, 1.5, -1e-3],
  [0.05, 0.1, -3.0, 0.0],
];
const TORCH: Record<string, number[][]> = {
  // torch.optim.AdamW(lr=0.01, weight_decay=0.1)
  adamw: [
    [0.2897000312805176, -1.1888000965118408, 2.487499952316284, -0.009999900124967098],
    [0.29307135939598083, -1.1867181062698364, 2.475186824798584, -0.009463589638471603],
    [0.2941451966762543, -1.186108112335205, 2.4727606773376465, -0.00904728751629591],
  ],
  // torch.optim.AdamW() defaults, clip_grad_norm_ 1.0
  adamwDefaultClip: [
    [0.29899701476097107, -1.1989879608154297, 2.4989750385284424, -0.0009999795584008098],
    [0.2994535267353058, -1.1990249156951904, 2.497950315475464, -0.0008098972029983997],
    [0.2997269034385681, -1.1991270780563354, 2.4976742267608643, -0.0006629631971009076],
  ],
  // torch.optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
  sgdNesterov: [
    [0.28043001890182495, -1.1217200756072998, 2.1152498722076416, -0.0001900000061141327],
    [0.30955421924591064, -1.143216848373413, 1.6622059345245361, -8.063899440458044e-5],
    [0.30793023109436035, -1.1534013748168945, 1.958211898803711, -7.223188003990799e-5],
  ],
  // torch.optim.SGD(lr=0.1, momentum=0.8, dampening=0.3, weight_decay=0.05), clip_grad_norm_ 0.5
  sgdDampClip: [
    [0.2960515022277832, -1.1842060089111328, 2.4385297298431396, -2.4485094400006346e-5],
    [0.2963939309120178, -1.1742322444915771, 2.346788167953491, -2.1300358639564365e-5],
    [0.2950475811958313, -1.1633092164993286, 2.300156831741333, -1.8678018022910692e-5],
  ],
};

const CASES: [string, (p: Record<string, Float32Array>) => Optimizer][] = [
  ['adamw', (p) => new AdamW(p, { lr: 0.01, weightDecay: 0.1 })],
  ['adamwDefaultClip', (p) => new AdamW(p, { maxGradNorm: 1 })],
  ['sgdNesterov', (p) => new SGD(p, { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01 })],
  ['sgdDampClip', (p) => new SGD(p, { lr: 0.1, momentum: 0.8, dampening: 0.3, weightDecay: 0.05, maxGradNorm: 0.5 })],
];

for (const [name, make] of CASES) {
  test(`${name} matches PyTorch 1.13.1 over 3 steps`, (t) => {
    const p = Float32Array.from(P0);
    const opt = make({ p });
    GS.forEach((g, s) => {
      opt.step({ p: Float32Array.from(g) });
      TORCH[name][s].forEach((want, j) => {
        const tol = 2e-7 * Math.max(1, Math.abs(want)) + 1e-9;
        t.true(Math.abs(p[j] - want) <= tol, `step ${s + 1} [${j}]: ${p[j]} vs torch ${want}`);
      });
    });
  });
}
