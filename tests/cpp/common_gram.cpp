// Unit tests of csrc/common/gram.h (host build of the __host__ __device__ helpers).
#include <initializer_list>

#include "check.h"
#include "common/gram.h"

using namespace perceptual_ext::gram;

int main() {
  CHECK_NEAR(scale(4, 25, true), 0.01, 1e-15);
  CHECK(scale(4, 25, false) == 1.0);
  CHECK(scale(0, 25, true) == 1.0);  // empty: no division by zero

  // The blocks tile [0, C) exactly, for every C and block size.
  for (int64_t c = 1; c <= 300; ++c) {
    for (int64_t preferred : {1, 7, 64, 128}) {
      const BlockPlan plan{c, choose_block(c, preferred)};
      int64_t covered = 0;
      for (int64_t b = 0; b < plan.num_blocks(); ++b) {
        CHECK(plan.begin(b) == covered);
        CHECK(plan.size(b) > 0);
        covered += plan.size(b);
      }
      CHECK(covered == c);
      // The triangle computes at least every pair i <= j once and never more than the full C*C.
      const int64_t products = triangle_products(c, plan.block);
      CHECK(products >= c * (c + 1) / 2);
      CHECK(products <= c * c);
    }
  }
  // 512 channels in 128-row blocks: 62.5% of the full product.
  CHECK(triangle_products(512, 128) * 8 == 512 * 512 * 5);

  // transposed_index maps (b, row, col) to (b, col, row).
  const int64_t c = 5;
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t row = 0; row < c; ++row)
      for (int64_t col = 0; col < c; ++col) {
        const int64_t i = (b * c + row) * c + col;
        CHECK(transposed_index(i, row, col, c) == (b * c + col) * c + row);
      }
  CHECK(BlockPlan::mirrored(3, 1));
  CHECK(!BlockPlan::mirrored(1, 1));
  CHECK(!BlockPlan::mirrored(1, 3));
  return check::finish("common_gram");
}
