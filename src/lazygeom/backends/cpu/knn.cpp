// lazygeom: K nearest neighbours for squared Euclidean distances at larger D (see blas_knn.py).
//
// A register-blocked product: each step computes a 4-row by 2W-column block of <x_i, y_j> in
// eight vector accumulators (one FMA per pair and coordinate, as in a GEMM micro-kernel), turns
// it into |x_i|^2 + |y_j|^2 - 2 <x_i, y_j> and merges it into the rows' sorted K-lists right away:
// the N x M distance matrix is never written to memory. Most candidates fail the threshold test.
#include "lgmath.hpp"

LG_INLINE void lg_insert(scalar* v, int64_t* k, int K, scalar s, int64_t j) {
  int p = K - 1;  // strict comparisons: an equal, later index never displaces an earlier one
  while (p > 0 && v[p - 1] > s) { v[p] = v[p - 1]; k[p] = k[p - 1]; --p; }
  v[p] = s;
  k[p] = j;
}

// x: (n, D) rows; yT: (D, mp) transposed, zero-padded; y2: (mp) squared norms, +inf in the padding;
// Exact re-ranking: the expansion loses accuracy for near points, so the Kc >= K candidates kept
// get their distances recomputed as sum (x - y)^2, and the K best are written sorted by (value,
// index): values are exact and ties keep the smallest index, as in every other backend.
LG_INLINE void lg_rerank(const scalar* xi, const scalar* y, int64_t D, int Kc, int K, const int64_t* ck,
                         scalar* ov, int64_t* ok) {
  for (int q = 0; q < K; ++q) { ov[q] = LG_INF; ok[q] = 0; }
  for (int c = 0; c < Kc; ++c) {
    const scalar* yj = y + ck[c] * D;
    scalar s = 0;
    for (int64_t k = 0; k < D; ++k) s += (xi[k] - yj[k]) * (xi[k] - yj[k]);
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

// x: (n, D), y: (m, D) rows; yT: (D, mp) transposed, zero-padded; y2: (mp) squared norms, +inf in
// the padding; bv, bk: (n, Kc) candidate buffers; ov, ok: (n, K) outputs.
extern "C" void lg_knn_sqdist(int64_t n, int64_t mp, int64_t D, const scalar* __restrict x,
                              const scalar* __restrict y, const scalar* __restrict yT,
                              const scalar* __restrict y2, int Kc, int Kout, scalar* __restrict bv,
                              int64_t* __restrict bk, scalar* __restrict ov, int64_t* __restrict ok,
                              int nthreads) {
  const int K = Kc;
  constexpr int R = 6;  // 6 rows x 2 vectors: 12 accumulators, 2 y-vectors, 1 broadcast of 16 registers
  // Cache blocking: a thread takes IC rows and sweeps the columns JC at a time, so that the
  // D x JC slice of y stays in L2 while every row block of the IC rows uses it (streaming all of
  // y once per row block made this kernel memory-bound).
  constexpr int64_t IC = 240, JC = 512;
  #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int64_t ib = 0; ib < n; ib += IC) {
    const int64_t iend = ib + IC < n ? ib + IC : n;
    scalar x2[IC];
    for (int64_t i = ib; i < iend; ++i) {
      scalar s = 0;
      for (int64_t k = 0; k < D; ++k) s += x[i * D + k] * x[i * D + k];
      x2[i - ib] = s;
      for (int q = 0; q < K; ++q) { bv[i * K + q] = LG_INF; bk[i * K + q] = 0; }
    }
    for (int64_t jb = 0; jb < mp; jb += JC) {
      const int64_t jend = jb + JC < mp ? jb + JC : mp;
      for (int64_t i0 = ib; i0 < iend; i0 += R) {
        int64_t rows[R];
        scalar worst[R];
        const scalar* xr[R];
        for (int r = 0; r < R; ++r) {
          rows[r] = i0 + r < iend ? i0 + r : iend - 1;  // a short block recomputes its last row, unwritten
          worst[r] = bv[rows[r] * K + K - 1];
          xr[r] = x + rows[r] * D;
        }
        for (int64_t j = jb; j < jend; j += 2 * W) {
          vec acc[R][2];
          for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = bc(0);
          const scalar* yk = yT + j;
          for (int64_t k = 0; k < D; ++k, yk += mp) {
            const vec y0 = vload(yk), y1 = vload(yk + W);
            for (int r = 0; r < R; ++r) {
              const vec b = bc(xr[r][k]);
              acc[r][0] += b * y0;
              acc[r][1] += b * y1;
            }
          }
          for (int r = 0; r < R; ++r) {
            if (i0 + r >= iend) break;
            for (int h = 0; h < 2; ++h) {
              const vec d = bc(x2[rows[r] - ib]) + vload(y2 + j + h * W) - bc(2) * acc[r][h];
              const ivec hit = d < bc(worst[r]);
              iscalar any = 0;
              for (int l = 0; l < W; ++l) any |= hit[l];
              if (!any) continue;
              for (int l = 0; l < W; ++l)
                if (d[l] < worst[r]) {
                  lg_insert(bv + rows[r] * K, bk + rows[r] * K, K, d[l], j + h * W + l);
                  worst[r] = bv[rows[r] * K + K - 1];
                }
            }
          }
        }
      }
    }
    for (int64_t i = ib; i < iend; ++i)
      lg_rerank(x + i * D, y, D, Kc, Kout, bk + i * Kc, ov + i * Kout, ok + i * Kout);
  }
}
