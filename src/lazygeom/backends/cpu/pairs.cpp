// Block-sparse bookkeeping over lists of cluster pairs, in single passes over int64 arrays.
//
// The multiscale solver keeps millions of (row cluster, column cluster) pairs; sorting them,
// merging their column ranges and decoding per-range results through torch costs several
// full-array passes and temporaries each (and comparison sorts of 64-bit keys). Here: a check
// that usually finds the pairs in order already, a counting sort by row (the keys are cluster
// indices) with short per-row sorts, and one loop per task.
#include <algorithm>
#include <cstdint>
#include <vector>

extern "C" {

// 1 if the pairs are sorted by row, then column (and, with unique != 0, distinct): the caller
// keeps them as they are, without allocating; else 0.
int lg_pairs_in_order(int64_t n, const int64_t* rows, const int64_t* cols, int unique) {
  for (int64_t k = 1; k < n; ++k) {
    if (rows[k - 1] > rows[k] || (rows[k - 1] == rows[k] && (cols[k - 1] > cols[k] || (unique && cols[k - 1] == cols[k]))))
      return 0;
  }
  return 1;
}

// The pairs (rows[k], cols[k]) sorted by row, then column; unique != 0 drops repeated pairs.
// Writes out_rows, out_cols (room for n); returns their count, or -1 if a row is not in [0, n_rows).
int64_t lg_sort_pairs(int64_t n, const int64_t* rows, const int64_t* cols, int64_t n_rows, int unique,
                      int64_t* out_rows, int64_t* out_cols) {
  // stably by row into the outputs, then each row's columns in place: no n-sized temporaries
  // (fresh memory costs page faults, more than the sort on virtual machines), and the rows'
  // segments are short and cache-resident
  for (int64_t k = 0; k < n; ++k)
    if (rows[k] < 0 || rows[k] >= n_rows) return -1;  // an index out of range: the caller raises
  std::vector<int64_t> start(n_rows + 1, 0);
  for (int64_t k = 0; k < n; ++k) ++start[rows[k] + 1];
  for (int64_t r = 0; r < n_rows; ++r) start[r + 1] += start[r];
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t p = next[rows[k]]++;
    out_rows[p] = rows[k];
    out_cols[p] = cols[k];
  }
  for (int64_t r = 0; r < n_rows; ++r) {
    int64_t* b = out_cols + start[r];
    int64_t* e = out_cols + start[r + 1];
    if (!std::is_sorted(b, e)) std::sort(b, e);
  }
  if (!unique) return n;
  int64_t m = 0;
  for (int64_t k = 0; k < n; ++k) {
    if (m > 0 && out_rows[m - 1] == out_rows[k] && out_cols[m - 1] == out_cols[k]) continue;
    out_rows[m] = out_rows[k];
    out_cols[m] = out_cols[k];
    ++m;
  }
  return m;
}

// Every pair (rows[k], cols[k]) in [0, n_rows) x [0, n_cols): checked before any write they index.
static bool lg_pairs_in_range(int64_t n, const int64_t* rows, const int64_t* cols, int64_t n_rows,
                              int64_t n_cols) {
  for (int64_t k = 0; k < n; ++k)
    if (rows[k] < 0 || rows[k] >= n_rows || cols[k] < 0 || cols[k] >= n_cols) return false;
  return true;
}

// The distinct pairs sorted by row, then column, through a bitmap of the n_rows x n_cols grid
// (the caller checks that it is small): one pass to mark, one scan of the set bits in order; no
// comparison sort. Writes out_rows, out_cols (room for n); returns their count, or -1 if an index
// is out of range.
int64_t lg_unique_pairs_bitmap(int64_t n, const int64_t* rows, const int64_t* cols, int64_t n_rows,
                               int64_t n_cols, int64_t* out_rows, int64_t* out_cols) {
  if (!lg_pairs_in_range(n, rows, cols, n_rows, n_cols)) return -1;
  const int64_t words = (n_cols + 63) / 64;  // per row
  std::vector<uint64_t> bits(n_rows * words, 0);
  for (int64_t k = 0; k < n; ++k) bits[rows[k] * words + cols[k] / 64] |= uint64_t(1) << (cols[k] % 64);
  int64_t m = 0;
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t w = 0; w < words; ++w)
      for (uint64_t b = bits[r * words + w]; b; b &= b - 1) {
        out_rows[m] = r;
        out_cols[m] = w * 64 + __builtin_ctzll(b);
        ++m;
      }
  return m;
}

// One half of the ranges 6-tuple from pairs sorted by row, then column: slices (n_row_clusters
// cumulative ends) and the column ranges (room for n; returns their count). merge != 0 fuses a
// range that starts where the previous one of the same row ends. -1: an index out of range.
int64_t lg_pair_slices(int64_t n, const int64_t* rows, const int64_t* cols, const int64_t* ranges_cols,
                       int64_t n_row_clusters, int64_t n_col_clusters, int merge, int64_t* slices, int64_t* red) {
  if (!lg_pairs_in_range(n, rows, cols, n_row_clusters, n_col_clusters)) return -1;
  for (int64_t c = 0; c < n_row_clusters; ++c) slices[c] = 0;
  int64_t m = 0;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t r = rows[k], s = ranges_cols[2 * cols[k]], e = ranges_cols[2 * cols[k] + 1];
    if (merge && k > 0 && rows[k - 1] == r && red[2 * (m - 1) + 1] == s) {
      red[2 * (m - 1) + 1] = e;
      continue;
    }
    red[2 * m] = s;
    red[2 * m + 1] = e;
    ++m;
    ++slices[r];
  }
  for (int64_t c = 1; c < n_row_clusters; ++c) slices[c] += slices[c - 1];
  return m;
}

// The kept results of a per-range reduction: row r lists counts[r] results, stored from
// offsets[r], whose column nodes are J[start[r] + t]. Writes (row, J) of every result with
// keep != 0 in order; returns their count.
int64_t lg_kept_results(int64_t n_rows, const int64_t* start, const int64_t* counts, const int64_t* offsets,
                        const int64_t* J, const uint8_t* keep, int64_t* out_rows, int64_t* out_cols) {
  int64_t m = 0;
  for (int64_t r = 0; r < n_rows; ++r) {
    const uint8_t* kr = keep + offsets[r];
    const int64_t* jr = J + start[r];
    for (int64_t t = 0; t < counts[r]; ++t) {
      if (kr[t]) {
        out_rows[m] = r;
        out_cols[m] = jr[t];
        ++m;
      }
    }
  }
  return m;
}

}  // extern "C"
