// lazygeom: K smallest values of a squared distance or an inner product at larger D (see
// blas_knn.py). `sign` selects the value: 0 for |x_i - y_j|^2, +1 for <x_i, y_j>, -1 for
// -<x_i, y_j> (the largest inner products).
//
// A register-blocked product: each step computes a 6-row by 2W-column block of <x_i, y_j> in
// twelve vector accumulators (one FMA per pair and coordinate, as in a GEMM micro-kernel), turns
// it into |x_i|^2 + |y_j|^2 - 2 <x_i, y_j> and merges it into the rows' sorted K-lists right away:
// the N x M distance matrix is never written to memory. Most candidates fail the threshold test.
// Both operands are packed by panels, as a GEMM packs them: y by 2W columns (D, 2W) by the caller,
// x by 6 rows (D, 6) here, so that the micro-kernel reads two sequential streams (with one pointer
// per row, the row pointers spilled to the stack and every step reloaded them: 0.42 -> 0.33 s for
// K = 10, D = 50, N = M = 20 000 on 2 AVX2 cores).
#include "lgmath.hpp"

LG_INLINE void lg_insert(scalar* v, int64_t* k, int K, scalar s, int64_t j) {
  int p = K - 1;  // strict comparisons: an equal, later index never displaces an earlier one
  while (p > 0 && v[p - 1] > s) { v[p] = v[p - 1]; k[p] = k[p - 1]; --p; }
  v[p] = s;
  k[p] = j;
}

// Exact re-ranking: the expansion loses accuracy for near points, so the Kc >= K candidates kept
// get their values recomputed as the formula reads (sum (x - y)^2, or +-sum x y), and the K best
// are written sorted by (value, index): values are exact and ties keep the smallest index, as in
// every other backend.
LG_INLINE void lg_rerank(const scalar* xi, const scalar* y, int64_t D, int sign, int Kc, int K, const int64_t* ck,
                         scalar* ov, int64_t* ok) {
  for (int q = 0; q < K; ++q) { ov[q] = LG_INF; ok[q] = 0; }
  for (int c = 0; c < Kc; ++c) {
    const scalar* yj = y + ck[c] * D;
    scalar s = 0;
    if (sign == 0)
      for (int64_t k = 0; k < D; ++k) s += (xi[k] - yj[k]) * (xi[k] - yj[k]);
    else
      for (int64_t k = 0; k < D; ++k) s += xi[k] * yj[k];
    if (sign < 0) s = -s;
    if (s < ov[K - 1] || (s == ov[K - 1] && ck[c] < ok[K - 1])) {
      int p = K - 1;
      while (p > 0 && (ov[p - 1] > s || (ov[p - 1] == s && ok[p - 1] > ck[c]))) {
        ov[p] = ov[p - 1]; ok[p] = ok[p - 1]; --p;
      }
      ov[p] = s;
      ok[p] = ck[c];
    }
  }
}

// x: (n, D), y: (m, D) rows; yT: (mp / 2W, D, 2W) packed column panels, zero-padded; y2: (mp)
// squared norms for sign 0, zeros otherwise, +inf in the padding; bv, bk: (n, Kc) candidate
// buffers; ov, ok: (n, K) outputs.
extern "C" void lg_knn_sqdist(int64_t n, int64_t mp, int64_t D, int sign, const scalar* __restrict x,
                              const scalar* __restrict y, const scalar* __restrict yT,
                              const scalar* __restrict y2, int Kc, int Kout, scalar* __restrict bv,
                              int64_t* __restrict bk, scalar* __restrict ov, int64_t* __restrict ok,
                              int nthreads) {
  const int K = Kc;
  const scalar cxy = sign == 0 ? -2 : sign;  // the coefficient of <x, y>
  constexpr int R = 6;  // 6 rows x 2 vectors: 12 accumulators, 2 y-vectors, 1 broadcast of 16 registers
  // Cache blocking: a thread takes IC rows (their packed panels, IC x D, stay in L2) and sweeps
  // the column panels; each panel (D x 2W, in L1) serves all IC rows before the next is loaded
  // (streaming all of y once per 6-row block made this kernel memory-bound).
  constexpr int64_t IC = 240;
  static_assert(IC % R == 0, "row panels tile the row block");
  #pragma omp parallel num_threads(nthreads)
  {
  // x packed by panels of R rows, (IC / R, D, R): the micro-kernel's broadcasts walk one pointer
  scalar* xp = (scalar*)__builtin_malloc(sizeof(scalar) * IC * D);
  #pragma omp for schedule(dynamic, 1)
  for (int64_t ib = 0; ib < n; ib += IC) {
    const int64_t iend = ib + IC < n ? ib + IC : n;
    scalar x2[IC];
    for (int64_t i = ib; i < iend; ++i) {
      scalar s = 0;  // |x_i|^2 enters squared distances only
      if (sign == 0)
        for (int64_t k = 0; k < D; ++k) s += x[i * D + k] * x[i * D + k];
      x2[i - ib] = s;
      for (int q = 0; q < K; ++q) { bv[i * K + q] = LG_INF; bk[i * K + q] = 0; }
    }
    for (int64_t q = 0; q < IC; ++q) {  // a short block repeats its last row (computed, unwritten)
      const scalar* xi = x + (ib + q < iend ? ib + q : iend - 1) * D;
      scalar* dst = xp + (q / R) * D * R + q % R;
      for (int64_t k = 0; k < D; ++k) dst[k * R] = xi[k];
    }
    for (int64_t j = 0; j < mp; j += 2 * W) {
      const scalar* yp = yT + j * D;  // packed: (mp / 2W, D, 2W); this panel stays in L1
      for (int64_t i0 = ib; i0 < iend; i0 += R) {
        vec acc[R][2];
        for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = bc(0);
        const scalar* yk = yp;
        const scalar* xk = xp + (i0 - ib) * D;
        for (int64_t k = 0; k < D; ++k, yk += 2 * W, xk += R) {
          const vec y0 = vload(yk), y1 = vload(yk + W);
          for (int r = 0; r < R; ++r) {
            const vec b = bc(xk[r]);
            acc[r][0] += b * y0;
            acc[r][1] += b * y1;
          }
        }
        for (int r = 0; r < R && i0 + r < iend; ++r) {
          const int64_t i = i0 + r;
          scalar worst = bv[i * K + K - 1];
          for (int h = 0; h < 2; ++h) {
            const vec d = bc(x2[i - ib]) + vload(y2 + j + h * W) + bc(cxy) * acc[r][h];
            // the lanes under the threshold, in order (the threshold falls as they enter)
            for (unsigned m = lane_bits(d < bc(worst)); m; m &= m - 1) {
              const int l = __builtin_ctz(m);
              if (d[l] < worst) {
                lg_insert(bv + i * K, bk + i * K, K, d[l], j + h * W + l);
                worst = bv[i * K + K - 1];
              }
            }
          }
        }
      }
    }
    for (int64_t i = ib; i < iend; ++i)
      lg_rerank(x + i * D, y, D, sign, Kc, Kout, bk + i * Kc, ov + i * Kout, ok + i * Kout);
  }
  __builtin_free(xp);
  }
}
