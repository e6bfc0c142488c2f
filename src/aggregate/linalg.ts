/**
 * Small dense linear algebra in float64, row-major, for LoRA re-factorization. Sizes are LoRA-scale (a few
 * hundred rows/columns at most); nothing here allocates more than O(m·n).
 */

/** Row-major m×n matrix. */
export interface Mat {
  m: number;
  n: number;
  data: Float64Array;
}

export function mat(m: number, n: number, data?: ArrayLike<number>): Mat {
  const d = new Float64Array(m * n);
  if (data !== undefined) d.set(data);
  return { m, n, data: d };
}

export function matmul(a: Mat, b: Mat): Mat {
  const out = mat(a.m, b.n);
  const { data: A } = a;
  const { data: B } = b;
  const C = out.data;
  for (let i = 0; i < a.m; i++) {
    for (let k = 0; k < a.n; k++) {
      const aik = A[i * a.n + k];
      if (aik === 0) continue;
      const bo = k * b.n;
      const co = i * b.n;
      for (let j = 0; j < b.n; j++) C[co + j] += aik * B[bo + j];
    }
  }
  return out;
}

export function transpose(a: Mat): Mat {
  const out = mat(a.n, a.m);
  for (let i = 0; i < a.m; i++) for (let j = 0; j < a.n; j++) out.data[j * a.m + i] = a.data[i * a.n + j];
  return out;
}

/**
 * Thin Householder QR of an m×n matrix with m ≥ n: Q (m×n, orthonormal columns) and R (n×n, upper triangular).
 * Golub & Van Loan, Matrix Computations, Alg. 5.2.1.
 */
export function qr(a: Mat): { q: Mat; r: Mat } {
  const { m, n } = a;
  if (m < n) throw new RangeError(`qr needs m >= n, got ${m}x${n}`);
  const R = Float64Array.from(a.data);
  const vs: Float64Array[] = [];
  for (let k = 0; k < n; k++) {
    const v = new Float64Array(m - k);
    let norm = 0;
    for (let i = k; i < m; i++) norm += R[i * n + k] ** 2;
    norm = Math.sqrt(norm);
    const x0 = R[k * n + k];
    const alpha = x0 >= 0 ? -norm : norm;
    for (let i = k; i < m; i++) v[i - k] = R[i * n + k];
    v[0] -= alpha;
    let vn = 0;
    for (let i = 0; i < v.length; i++) vn += v[i] * v[i];
    if (vn > 0) {
      for (let j = k; j < n; j++) {
        let s = 0;
        for (let i = k; i < m; i++) s += v[i - k] * R[i * n + j];
        s = (2 * s) / vn;
        for (let i = k; i < m; i++) R[i * n + j] -= s * v[i - k];
      }
    }
    vs.push(vn > 0 ? v.map((x) => x / Math.sqrt(vn)) : v.fill(0));
  }
  const q = mat(m, n);
  for (let j = 0; j < n; j++) q.data[j * n + j] = 1;
  for (let k = n - 1; k >= 0; k--) {
    const v = vs[k];
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let i = k; i < m; i++) s += v[i - k] * q.data[i * n + j];
      s *= 2;
      if (s === 0) continue;
      for (let i = k; i < m; i++) q.data[i * n + j] -= s * v[i - k];
    }
  }
  const r = mat(n, n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) r.data[i * n + j] = R[i * n + j];
  return { q, r };
}

/**
 * Thin SVD by one-sided Jacobi rotations (Hestenes 1958; Demmel & Veselić 1992): a = U·diag(s)·Vᵀ with
 * k = min(m, n) singular values sorted descending. Accurate to working precision; converges in a handful of
 * sweeps for the sizes used here. Zero singular values get zero U columns.
 */
export function svd(a: Mat): { u: Mat; s: Float64Array; v: Mat } {
  if (a.m < a.n) {
    const t = svd(transpose(a));
    return { u: t.v, s: t.s, v: t.u };
  }
  const { m, n } = a;
  // Column-major working copies: the rotations touch two whole columns at a time.
  const W = Array.from({ length: n }, (_, j) => Float64Array.from({ length: m }, (_, i) => a.data[i * n + j]));
  const V = Array.from({ length: n }, (_, j) => { const c = new Float64Array(n); c[j] = 1; return c; });
  const eps = 1e-15;
  for (let sweep = 0; sweep < 60; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      const wp = W[p];
      for (let q = p + 1; q < n; q++) {
        const wq = W[q];
        let alpha = 0, beta = 0, gamma = 0;
        for (let i = 0; i < m; i++) {
          const x = wp[i];
          const y = wq[i];
          alpha += x * x;
          beta += y * y;
          gamma += x * y;
        }
        if (gamma === 0 || Math.abs(gamma) <= eps * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < m; i++) {
          const x = wp[i];
          const y = wq[i];
          wp[i] = c * x - s * y;
          wq[i] = s * x + c * y;
        }
        const vp = V[p];
        const vq = V[q];
        for (let i = 0; i < n; i++) {
          const x = vp[i];
          const y = vq[i];
          vp[i] = c * x - s * y;
          vq[i] = s * x + c * y;
        }
      }
    }
    if (!rotated) break;
  }
  const norms = W.map((col) => Math.sqrt(col.reduce((acc, x) => acc + x * x, 0)));
  const order = Array.from({ length: n }, (_, j) => j).sort((x, y) => norms[y] - norms[x]);
  const u = mat(m, n);
  const v = mat(n, n);
  const s = new Float64Array(n);
  order.forEach((j, k) => {
    s[k] = norms[j];
    for (let i = 0; i < m; i++) u.data[i * n + k] = norms[j] > 0 ? W[j][i] / norms[j] : 0;
    for (let i = 0; i < n; i++) v.data[i * n + k] = V[j][i];
  });
  return { u, s, v };
}

/**
 * Truncated SVD of a sum of low-rank products P = Σ_i A_i·B_i (A_i: m×r_i, B_i: r_i×n) without forming P when
 * the total rank R = Σ r_i is below min(m, n): with U = [A_1 … A_k] (m×R) and W = [B_1; …; B_k] (R×n),
 * P = U·W = Q_u (R_u R_wᵀ) Q_wᵀ from two thin QRs, so an R×R SVD gives P's SVD exactly. Otherwise P is
 * formed and decomposed directly. Returns the top `rank` triplets.
 */
export function lowRankSvd(factors: readonly { a: Mat; b: Mat }[], rank: number): { u: Mat; s: Float64Array; v: Mat } {
  const m = factors[0].a.m;
  const n = factors[0].b.n;
  const R = factors.reduce((s, f) => s + f.a.n, 0);
  let full: { u: Mat; s: Float64Array; v: Mat };
  if (R < Math.min(m, n)) {
    const U = mat(m, R);
    const Wt = mat(n, R);
    let off = 0;
    for (const { a, b } of factors) {
      for (let i = 0; i < m; i++) for (let j = 0; j < a.n; j++) U.data[i * R + off + j] = a.data[i * a.n + j];
      for (let j = 0; j < b.m; j++) for (let i = 0; i < n; i++) Wt.data[i * R + off + j] = b.data[j * n + i];
      off += a.n;
    }
    const qu = qr(U);
    const qw = qr(Wt);
    const core = svd(matmul(qu.r, transpose(qw.r)));
    full = { u: matmul(qu.q, core.u), s: core.s, v: matmul(qw.q, core.v) };
  } else {
    const P = mat(m, n);
    for (const { a, b } of factors) {
      const ab = matmul(a, b);
      for (let i = 0; i < P.data.length; i++) P.data[i] += ab.data[i];
    }
    full = svd(P);
  }
  const k = Math.min(rank, full.s.length);
  const take = (x: Mat): Mat => {
    const out = mat(x.m, k);
    for (let i = 0; i < x.m; i++) for (let j = 0; j < k; j++) out.data[i * k + j] = x.data[i * x.n + j];
    return out;
  };
  return { u: take(full.u), s: full.s.slice(0, k), v: take(full.v) };
}
