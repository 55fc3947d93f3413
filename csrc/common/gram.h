// Gram-matrix arithmetic shared by the CPU and CUDA kernels.
//
// G = psi psi^T * scale with psi = features viewed as [C, L]. Only the block upper triangle
// (block_row <= block_col) is computed by GEMMs; the strict lower triangle is then mirrored.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace perceptual_ext {
namespace gram {

// Johnson et al.'s normalization 1/(C*H*W); 1 for the raw product.
PE_HOST_DEVICE PE_INLINE double scale(int64_t channels, int64_t length, bool normalize) {
  if (!normalize || channels * length == 0) return 1.0;
  return 1.0 / (static_cast<double>(channels) * static_cast<double>(length));
}

// Channel blocking of the triangle. Blocks of `block` rows; the last may be shorter.
struct BlockPlan {
  int64_t channels;
  int64_t block;

  PE_HOST_DEVICE int64_t num_blocks() const { return block > 0 ? (channels + block - 1) / block : 0; }
  PE_HOST_DEVICE int64_t begin(int64_t b) const { return b * block; }
  PE_HOST_DEVICE int64_t size(int64_t b) const {
    const int64_t rest = channels - b * block;
    return rest < block ? rest : block;
  }
  // Entry (row, col) is taken from (col, row) by the mirror pass: the whole strict lower
  // triangle, so the result is exactly symmetric even inside diagonal blocks, where BLAS may
  // round the two halves differently.
  PE_HOST_DEVICE static bool mirrored(int64_t row, int64_t col) { return row > col; }
};

// Flat index of element (col, row) of the same matrix as flat index i = (b, row, col).
PE_HOST_DEVICE PE_INLINE int64_t transposed_index(int64_t i, int64_t row, int64_t col, int64_t channels) {
  return i + (col - row) * channels + (row - col);
}

// Block size for C channels: whole-matrix GEMM for small C (blocking would only add calls),
// otherwise blocks of `preferred` rows so that about half of the C*C products are skipped.
PE_HOST_DEVICE PE_INLINE int64_t choose_block(int64_t channels, int64_t preferred) {
  if (preferred <= 0 || channels <= preferred) return channels > 0 ? channels : 1;
  return preferred;
}

// Number of products psi_i . psi_j the blocked triangle computes, for C channels.
PE_HOST_DEVICE PE_INLINE int64_t triangle_products(int64_t channels, int64_t block) {
  const BlockPlan plan{channels, block};
  int64_t total = 0;
  for (int64_t bi = 0; bi < plan.num_blocks(); ++bi)
    for (int64_t bj = bi; bj < plan.num_blocks(); ++bj) total += plan.size(bi) * plan.size(bj);
  return total;
}

}  // namespace gram
}  // namespace perceptual_ext
