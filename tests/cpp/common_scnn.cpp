// Unit tests of csrc/common/scnn.h (host build of the __host__ __device__ helpers), each against
// a brute-force statement of the same rule.
#include <cmath>
#include <cstdint>
#include <vector>

#include "check.h"
#include "common/scnn.h"

using namespace perceptual_ext::scnn;

int main() {
  // Pooled and covered sizes: avg-pool without padding.
  CHECK(pooled_size(256, 32, 16) == 15);
  CHECK(pooled_size(32, 32, 16) == 1);
  CHECK(pooled_size(31, 32, 16) == 0);
  CHECK(pooled_size(47, 32, 16) == 1);
  CHECK(covered_size(15, 32, 16) == 256);
  CHECK(covered_size(1, 32, 16) == 32);
  CHECK(covered_size(0, 32, 16) == 0);

  // first/last_window enumerate exactly the windows containing a position (brute force).
  for (int64_t window : {1, 3, 8, 32})
    for (int64_t stride : {1, 2, 5, 16, 40})
      for (int64_t size = window; size < window + 70; size += 7) {
        const int64_t pooled = pooled_size(size, window, stride);
        for (int64_t pos = 0; pos < covered_size(pooled, window, stride); ++pos) {
          int64_t lo = -1, hi = -2;
          for (int64_t i = 0; i < pooled; ++i)
            if (i * stride <= pos && pos < i * stride + window) {
              if (lo < 0) lo = i;
              hi = i;
            }
          CHECK(first_window(pos, window, stride) == lo ||
                (lo < 0 && first_window(pos, window, stride) > last_window(pos, stride, pooled)));
          if (lo >= 0) CHECK(last_window(pos, stride, pooled) == hi);
        }
      }

  // tile_span_in_row intersects window columns with a flat tile.
  {
    const int64_t width = 10;
    const auto s = tile_span_in_row(2, width, 4, 5, 23, 27);  // row 2 = flat 20..29; tile 23..26
    CHECK(s.begin == 4 && s.end == 7);
    const auto whole = tile_span_in_row(1, width, 2, 3, 0, 100);
    CHECK(whole.begin == 2 && whole.end == 5);
    const auto none = tile_span_in_row(0, width, 0, 5, 10, 20);
    CHECK(none.begin >= none.end);
  }

  // gather_patch: zero padding P//2, column order (c, ky, kx).
  {
    const int64_t channels = 2, height = 4, width = 5, patch = 3;
    std::vector<double> image(channels * height * width);
    for (size_t k = 0; k < image.size(); ++k) image[k] = 1.0 + static_cast<double>(k);
    std::vector<double> column(channels * patch * patch);
    gather_patch(image.data(), channels, height, width, 0, 0, patch, column.data());
    CHECK(column[0] == 0.0);                        // (c0, y-1, x-1) outside
    CHECK(column[4] == image[0]);                   // centre
    CHECK(column[8] == image[1 * width + 1]);       // (y+1, x+1)
    CHECK(column[9 + 4] == image[height * width]);  // channel 1 centre
    gather_patch(image.data(), channels, height, width, 3, 4, patch, column.data());
    CHECK(column[0] == image[2 * width + 3]);
    CHECK(column[8] == 0.0);  // below-right of the corner
  }

  // patch_normalize gives unit norm; its backward matches central differences.
  {
    std::vector<double> p = {0.3, -0.2, 0.9, 0.1, 0.0, -0.4};
    std::vector<double> y = p;
    patch_normalize(y.data(), 6);
    CHECK_NEAR(sum_squares(y.data(), 6), 1.0, 1e-14);
    const std::vector<double> dy = {0.5, 1.0, -0.3, 0.2, 0.7, -1.1};
    std::vector<double> grad = dy;
    patch_normalize_backward(p.data(), grad.data(), 6);
    for (int k = 0; k < 6; ++k) {
      const double h = 1e-6;
      std::vector<double> plus = p, minus = p;
      plus[k] += h;
      minus[k] -= h;
      patch_normalize(plus.data(), 6);
      patch_normalize(minus.data(), 6);
      double numeric = 0;
      for (int m = 0; m < 6; ++m) numeric += dy[m] * (plus[m] - minus[m]) / (2 * h);
      CHECK_NEAR(grad[k], numeric, 1e-7);
    }
    // A flat black patch maps to 0 with the clamped (bounded) scale.
    std::vector<double> zero(6, 0.0), g0(6, 1.0);
    patch_normalize(zero.data(), 6);
    CHECK(zero[0] == 0.0);
    patch_normalize_backward(zero.data(), g0.data(), 6);
    CHECK_NEAR(g0[0], 1.0 / kPatchNormEps, 1e-6);
  }

  // patch_grad_at is the adjoint of gather_patch: <gather(x), d> == <x, col2im(d)>.
  {
    const int64_t channels = 2, height = 6, width = 7, patch = 3, length = channels * patch * patch;
    const int64_t covered_h = 5, covered_w = 6, p0 = 4, p1 = 17;
    std::vector<double> image(channels * height * width), dcols((p1 - p0) * length);
    for (size_t k = 0; k < image.size(); ++k) image[k] = std::sin(0.7 * static_cast<double>(k) + 0.1);
    for (size_t k = 0; k < dcols.size(); ++k) dcols[k] = std::cos(1.3 * static_cast<double>(k));
    double lhs = 0;
    std::vector<double> column(length);
    for (int64_t p = p0; p < p1; ++p) {
      gather_patch(image.data(), channels, height, width, p / covered_w, p % covered_w, patch, column.data());
      for (int64_t k = 0; k < length; ++k) lhs += column[k] * dcols[(p - p0) * length + k];
    }
    double rhs = 0;
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t yy = 0; yy < height; ++yy)
        for (int64_t xx = 0; xx < width; ++xx)
          rhs += image[(c * height + yy) * width + xx] *
                 patch_grad_at(dcols.data(), c, yy, xx, patch, covered_h, covered_w, p0, p1, channels);
    CHECK_NEAR(lhs, rhs, 1e-12);
  }

  // Masks: 32 channels per word, ReLU in place, bit k = value k > 0.
  CHECK(mask_words(1) == 1);
  CHECK(mask_words(32) == 1);
  CHECK(mask_words(33) == 2);
  CHECK(mask_words(1024) == 32);
  {
    std::vector<float> v = {1.0f, -2.0f, 0.0f, 3.5f, -0.0f};
    const uint32_t bits = relu_and_pack(v.data(), 5);
    CHECK(bits == 0b01001u);
    CHECK(v[1] == 0.0f && v[2] == 0.0f && v[3] == 3.5f);
    std::vector<float> g = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
    apply_mask(g.data(), 5, bits);
    CHECK(g[0] == 1.0f && g[1] == 0.0f && g[2] == 0.0f && g[3] == 1.0f && g[4] == 0.0f);
    std::vector<float> all(32, 1.0f);
    CHECK(relu_and_pack(all.data(), 32) == 0xFFFFFFFFu);
  }

  // Geometry accessors.
  Geometry g{};
  g.in_channels = 3;
  g.patch = 3;
  g.channels = 1024;
  g.covered_h = 256;
  g.covered_w = 240;
  CHECK(g.column_length() == 27);
  CHECK(g.covered_pixels() == 256 * 240);
  CHECK(g.words() == 32);
  return check::finish("common_scnn");
}
