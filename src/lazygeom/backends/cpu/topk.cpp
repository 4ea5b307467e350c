// lazygeom: merge a block of scores into running sorted K-lists (the selection half of the
// BLAS k-nearest-neighbour path, see blas_knn.py). Most candidates fail the threshold test, so
// the insertion sort is rarely entered; OpenMP over rows.
#include "lgmath.hpp"

extern "C" void lg_topk_merge(int64_t rows, int64_t cols, const scalar* d, int64_t ldd, int64_t j0, int K,
                              scalar* __restrict bv, int64_t* __restrict bk, int nthreads) {
  #pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t r = 0; r < rows; ++r) {
    const scalar* __restrict row = d + r * ldd;
    scalar* v = bv + r * K;
    int64_t* k = bk + r * K;
    scalar worst = v[K - 1];
    int64_t c = 0;
    for (; c + W <= cols; c += W) {
      const vec x = vload(row + c);
      const ivec hit = x < bc(worst);
      iscalar any = 0;
      for (int l = 0; l < W; ++l) any |= hit[l];
      if (!any) continue;
      for (int l = 0; l < W; ++l) {
        const scalar s = x[l];
        if (s < worst) {  // strict: an equal later index never displaces an earlier one
          int p = K - 1;
          while (p > 0 && v[p - 1] > s) { v[p] = v[p - 1]; k[p] = k[p - 1]; --p; }
          v[p] = s; k[p] = j0 + c + l;
          worst = v[K - 1];
        }
      }
    }
    for (; c < cols; ++c) {
      const scalar s = row[c];
      if (s < worst) {
        int p = K - 1;
        while (p > 0 && v[p - 1] > s) { v[p] = v[p - 1]; k[p] = k[p - 1]; --p; }
        v[p] = s; k[p] = j0 + c;
        worst = v[K - 1];
      }
    }
  }
}
