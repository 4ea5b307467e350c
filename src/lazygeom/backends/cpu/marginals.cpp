// lazygeom: both marginals of an entropic transport plan in one pass over its pairs (see
// marginals.py). For rows x_i and columns y_j with scaled potentials U_i = u_i / eps,
// V_j = v_j / eps and weights A_i, B_j, every visited pair gives
//
//     E_ij = exp(U_i + V_j - C(x_i, y_j) / eps),   R_i += B_j E_ij,   S_j += A_i E_ij,
//
// so that one exponential serves the row update (u_i - eps log R_i) and the column update
// (v_j - eps log S_j) of a Jacobi Sinkhorn step: LogSumExp reductions over rows and over columns
// evaluate every pair twice. No max pass: near the fixed point E_ij <= 1 / max(A_i, B_j); the
// caller checks the sums' range and falls back to LogSumExp reductions otherwise.
//
// Pairs are listed by row cluster: cluster c holds rows [rows[2c], rows[2c+1]) and visits the
// column nodes nodes[slices[c-1] .. slices[c]), node J being columns [spans[2J], spans[2J+1]).
// A row skips a node when a bound on its exponents there, U_i + vmax_J - C(x_i, box_J) / eps
// (box_J the node's bounding box), is below floor_z: those terms are below exp(floor_z) B_j.
// mode 0: rows only; 1: rows and columns; 2: a self-interaction given as the pairs I <= J of a
// symmetric set: off-diagonal pairs feed both sums, a cluster's own node its rows only, and the
// caller adds the column sums to the row sums.
// grad 1: each row sum also carries the D moments of the cost's gradient, KR = 1 + D values
// (R_i = [Σ_j B_j E_ij, Σ_j B_j E_ij ∇ₓC(x_i, y_j)]); grad 2: the column sums too (∇ᵧC, KC =
// 1 + D). Divided by the first, they are the soft-min's gradient in its row points (the envelope
// backward of a final step).
#include "lgmath.hpp"

namespace {

constexpr int RB = 64;  // rows per block: their accumulators (RB vecs) stay in L1
constexpr int FLUSH = 8;  // nodes per block between two flushes of the float row sums to double
constexpr int NV = 32;  // vecs per pass over a node (longer nodes are cut): 256 float columns

template <int D, int P>
LG_INLINE scalar box_cost(const scalar* xi, const scalar* lo, const scalar* hi, scalar coef) {
  scalar s = 0;
  for (int d = 0; d < D; ++d) {
    const scalar t = lo[d] > xi[d] ? lo[d] - xi[d] : (xi[d] > hi[d] ? xi[d] - hi[d] : 0);
    s += t * t;
  }
  return coef * (P == 1 ? lg::sqrt(s) : s);
}

template <int D, int P, bool BOTH, bool GR, bool GC>
LG_INLINE void node_tiles(int64_t c0, int64_t c1, const int* act, int na, const scalar* x, const scalar* U,
                          const scalar* A, const scalar* yT, int64_t mp, const scalar* V, const scalar* B,
                          scalar coef, vec* racc, int64_t rb, double* cb) {
  // The node's columns are copied into aligned local tiles first (the last one masked: its lanes
  // past the node get exponent -inf, so E = 0 there); then every row sweeps them with its own
  // data in registers, the column sums accumulating in cacc (in L1).
  constexpr int KR = GR ? D + 1 : 1, KC = GC ? D + 1 : 1;
  constexpr bool G = GR || GC;
  const int nv = (int)((c1 - c0 + W - 1) / W);
  vec yn[NV][D], Vn[NV], Bn[NV], cacc[NV][KC];
  for (int v = 0; v < nv; ++v) {
    const int64_t c = c0 + (int64_t)v * W;
    for (int d = 0; d < D; ++d) yn[v][d] = vload(yT + d * mp + c);  // padded: a full tile is readable
    if (c + W <= c1) {
      Vn[v] = vload(V + c);
      Bn[v] = vload(B + c);
    } else {
      for (int l = 0; l < W; ++l) {
        Vn[v][l] = c + l < c1 ? V[c + l] : -LG_INF;
        Bn[v][l] = c + l < c1 ? B[c + l] : 0;
      }
    }
    for (int q = 0; q < KC; ++q) cacc[v][q] = bc(0);
  }
  for (int k = 0; k < na; ++k) {
    const int64_t i = rb + act[k];
    vec xb[D];
    for (int d = 0; d < D; ++d) xb[d] = bc(x[i * D + d]);
    const vec Ui = bc(U[i]), Ai = bc(A[i]), cf = bc(coef);
    // two passes, as LogSumExp's: the exponents, then their exponentials. Each pass's
    // dependency chains are short enough for the out-of-order window to overlap many vecs
    // (in one pass, a chain of ~20 dependent ops per vec: 3.3 instead of 4+ G pairs/s).
    vec zb[NV], wb[NV];  // wb: 1 / |x - y| (p = 1 gradients only; unused otherwise)
    for (int v = 0; v < nv; ++v) {
      vec s = bc(0);
      for (int d = 0; d < D; ++d) {
        const vec t = yn[v][d] - xb[d];
        s += t * t;
      }
      if (P == 1) s = v_sqrt(s);
      // ∇|x - y| = (x - y) / |x - y|, 0 at x = y (where x - y = 0 too)
      if (G && P == 1) wb[v] = vsel(s > 0, bc(1) / s, bc(0));
      zb[v] = Ui + Vn[v] - cf * s;
    }
    vec ra[KR];
    for (int q = 0; q < KR; ++q) ra[q] = bc(0);
    for (int v = 0; v < nv; ++v) {
      const vec E = v_exp(zb[v]);
      const vec er = E * Bn[v];
      ra[0] += er;
      if (BOTH) cacc[v][0] += E * Ai;
      if constexpr (G) {
        const vec gr = P == 1 ? er * wb[v] : er;
        const vec gc = P == 1 ? E * Ai * wb[v] : E * Ai;
        for (int d = 0; d < D; ++d) {
          const vec t = xb[d] - yn[v][d];
          if constexpr (GR) ra[1 + d] += gr * t;
          if constexpr (BOTH && GC) cacc[v][1 + d] -= gc * t;
        }
      }
    }
    for (int q = 0; q < KR; ++q) racc[act[k] * KR + q] += ra[q];
  }
  if (BOTH)
    for (int v = 0; v < nv; ++v) {
      const int64_t c = c0 + (int64_t)v * W;
      for (int l = 0; l < W && c + l < c1; ++l)
        for (int q = 0; q < KC; ++q) cb[(c + l) * KC + q] += (double)cacc[v][q][l];
    }
}

template <int D, int P, bool GR, bool GC>
void marginals(int64_t cl0, int64_t cl1, const int64_t* rows, const int64_t* slices, const int64_t* nodes, const int64_t* spans,
               const scalar* lo, const scalar* hi, const scalar* vmax, const scalar* x, const scalar* U,
               const scalar* A, const scalar* yT, int64_t mp, const scalar* V, const scalar* B, scalar coef,
               scalar floor_z, int mode, double* R, double* S, int64_t m, int nthreads) {
  constexpr int K = GR ? D + 1 : 1, KC = GC ? D + 1 : 1;
  const bool cull = floor_z > -LG_INF;
  #pragma omp parallel num_threads(nthreads)
  {
    double* cb = mode ? S + (int64_t)__builtin_omp_get_thread_num() * m * KC : nullptr;
    #pragma omp for schedule(dynamic, 1)
    for (int64_t c = cl0; c < cl1; ++c) {
      const int64_t first = c ? slices[c - 1] : 0;
      for (int64_t rb = rows[2 * c]; rb < rows[2 * c + 1]; rb += RB) {
        const int nr = (int)(rows[2 * c + 1] - rb < RB ? rows[2 * c + 1] - rb : RB);
        vec racc[RB * K];
        double rtot[RB * K];
        for (int r = 0; r < nr * K; ++r) { racc[r] = bc(0); rtot[r] = 0; }
        int act[RB];
        for (int64_t e = first; e < slices[c]; ++e) {
          const int64_t J = nodes[e];
          int na = 0;
          for (int r = 0; r < nr; ++r) {
            const int64_t i = rb + r;
            if (!cull || U[i] + vmax[J] - box_cost<D, P>(x + i * D, lo + J * D, hi + J * D, coef) >= floor_z)
              act[na++] = r;
          }
          if (na) {
            const bool both = mode == 1 || (mode == 2 && J != c);
            for (int64_t c0 = spans[2 * J]; c0 < spans[2 * J + 1]; c0 += NV * W) {
              const int64_t c1 = c0 + NV * W < spans[2 * J + 1] ? c0 + NV * W : spans[2 * J + 1];
              if (both)
                node_tiles<D, P, true, GR, GC>(c0, c1, act, na, x, U, A, yT, mp, V, B, coef, racc, rb, cb);
              else
                node_tiles<D, P, false, GR, GC>(c0, c1, act, na, x, U, A, yT, mp, V, B, coef, racc, rb, cb);
            }
          }
          if ((e - first) % FLUSH == FLUSH - 1 || e + 1 == slices[c])
            for (int r = 0; r < nr * K; ++r) { rtot[r] += hsum(racc[r]); racc[r] = bc(0); }
        }
        for (int r = 0; r < nr * K; ++r) R[rb * K + r] = rtot[r];
      }
    }
  }
}

typedef void (*Kernel)(int64_t, int64_t, const int64_t*, const int64_t*, const int64_t*, const int64_t*, const scalar*,
                       const scalar*, const scalar*, const scalar*, const scalar*, const scalar*, const scalar*,
                       int64_t, const scalar*, const scalar*, scalar, scalar, int, double*, double*, int64_t, int);

template <int D, int P> Kernel pick_grad(int grad) {
  return grad == 2 ? marginals<D, P, true, true> : grad == 1 ? marginals<D, P, true, false> : marginals<D, P, false, false>;
}

template <int D> Kernel pick(int p, int grad) { return p == 1 ? pick_grad<D, 1>(grad) : pick_grad<D, 2>(grad); }

}  // namespace

// Returns 0, or -1 for a dimension without a compiled instance (the caller checks MAX_DIM).
// Only the row clusters [cl0, cl1) are visited: their rows of R (n x KR) are written, and their
// terms added to S (nthreads x m x KC, per-thread column sums, zeroed by the caller before the
// first range), so that the caller may cover the clusters in several calls (and handle signals
// in between); KR = 1 + D for grad >= 1, KC = 1 + D for grad 2, else 1.
extern "C" int lg_plan_marginals(int64_t D, int p, int grad, int64_t cl0, int64_t cl1, const int64_t* rows, const int64_t* slices,
                                 const int64_t* nodes, const int64_t* spans, const scalar* lo, const scalar* hi,
                                 const scalar* vmax, const scalar* x, const scalar* U, const scalar* A,
                                 const scalar* yT, int64_t mp, const scalar* V, const scalar* B, scalar coef,
                                 scalar floor_z, int mode, double* R, double* S, int64_t m, int nthreads) {
  Kernel k = nullptr;
  switch (D) {
    case 1: k = pick<1>(p, grad); break;
    case 2: k = pick<2>(p, grad); break;
    case 3: k = pick<3>(p, grad); break;
    case 4: k = pick<4>(p, grad); break;
    default: return -1;
  }
  k(cl0, cl1, rows, slices, nodes, spans, lo, hi, vmax, x, U, A, yT, mp, V, B, coef, floor_z, mode, R, S, m, nthreads);
  return 0;
}
