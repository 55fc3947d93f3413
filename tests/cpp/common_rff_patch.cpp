// Unit tests of csrc/common/rff_patch.h (host build of the __host__ __device__ helpers).
#include <cmath>
#include <vector>

#include "check.h"
#include "common/rff_patch.h"

using namespace perceptual_ext::rff_patch;

int main() {
  // reflect: F.pad(mode='reflect') indexing, no repeated edge.
  CHECK(reflect(-1, 5) == 1);
  CHECK(reflect(-2, 5) == 2);
  CHECK(reflect(0, 5) == 0);
  CHECK(reflect(4, 5) == 4);
  CHECK(reflect(5, 5) == 3);
  CHECK(reflect(6, 5) == 2);
  CHECK(map_size(10, 3) == 10);
  CHECK(map_size(10, 2) == 11);
  CHECK(map_size(10, 5) == 10);
  CHECK(num_windows(256, 32, 16) == 15);
  CHECK(num_windows(33, 32, 16) == 1);
  CHECK(num_windows(31, 32, 16) == 0);
  CHECK(patch_index(2, 1, 0, 3) == 21);

  // sources_of inverts source(): for every image pixel y and offset d, the map pixels it lists
  // are exactly those whose patch offset d reads y.
  for (int64_t n = 1; n <= 9; ++n)
    for (int64_t patch = 1; patch <= 7; ++patch) {
      if (padding(patch) >= n) continue;
      const int64_t map_len = map_size(n, patch);
      for (int64_t d = 0; d < patch; ++d)
        for (int64_t y = 0; y < n; ++y) {
          int64_t found[3];
          const int count = sources_of(y, d, patch, n, map_len, found);
          int expected = 0;
          for (int64_t i = 0; i < map_len; ++i) {
            if (source(i, d, patch, n) != y) continue;
            ++expected;
            bool listed = false;
            for (int q = 0; q < count; ++q) listed = listed || found[q] == i;
            CHECK(listed);
          }
          CHECK(count == expected);
        }
    }

  // Segments tile the windows' span; every pixel of a segment lies in exactly the windows of its range.
  for (int64_t window = 1; window <= 9; ++window)
    for (int64_t stride = 1; stride <= 11; ++stride)
      for (int64_t length = window; length <= 40; length += 3) {
        const int64_t windows = num_windows(length, window, stride);
        std::vector<int64_t> bounds(2 * windows);
        const int64_t count = segment_bounds(windows, window, stride, bounds.data());
        CHECK(count >= 2 && count <= 2 * windows);
        CHECK(bounds[0] == 0);
        CHECK(bounds[count - 1] == (windows - 1) * stride + window);
        for (int64_t s = 0; s + 1 < count; ++s) {
          CHECK(bounds[s] < bounds[s + 1]);
          const WindowRange r = windows_of(bounds[s], bounds[s + 1], windows, window, stride);
          for (int64_t i = bounds[s]; i < bounds[s + 1]; ++i)
            for (int64_t a = 0; a < windows; ++a) {
              const bool inside = a * stride <= i && i < a * stride + window;
              CHECK(inside == segment_in_window(r, a));
            }
        }
      }

  // Window 32 / stride 16: 16-pixel segments, each in two windows except at the ends.
  {
    std::vector<int64_t> bounds(30);
    CHECK(segment_bounds(15, 32, 16, bounds.data()) == 17);
    const WindowRange first = windows_of(0, 16, 15, 32, 16), middle = windows_of(16, 32, 15, 32, 16);
    CHECK(first.first == 0 && first.last == 0);
    CHECK(middle.first == 0 && middle.last == 1);
    CHECK(windows_of(5, 10, 2, 5, 10).empty());  // the gap between windows when S > W
    CHECK(!windows_of(10, 12, 2, 5, 10).empty());
  }

  // Window mean and tile gradient: plain sums scaled by 1/W^2.
  {
    const double sums[2 * 3 * 1] = {1, 2, 3, 4, 5, 6};  // [row segments 2, col segments 3, F 1]
    CHECK_NEAR(window_mean(sums, 3, 1, 0, 1, 1, 2, 2), (2 + 3 + 5 + 6) / 4.0, 1e-15);
    const double grad[2 * 2] = {1, 10, 100, 1000};
    CHECK_NEAR(tile_gradient(grad, 2, WindowRange{0, 1}, WindowRange{1, 1}, 2), (10 + 1000) / 4.0, 1e-12);
    CHECK_NEAR(pool_weight(32), 1.0 / 1024, 1e-18);
  }

  // input_gradient: a 1-channel 3x3 image, P = 3, dpatches all ones: dx counts the reads of each pixel.
  {
    const int64_t n = 3, patch = 3, k_total = 9;
    std::vector<double> ones(n * n * k_total, 1.0);
    for (int64_t y = 0; y < n; ++y)
      for (int64_t x = 0; x < n; ++x) {
        int reads = 0;
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < n; ++j)
            for (int64_t dy = 0; dy < patch; ++dy)
              for (int64_t dx = 0; dx < patch; ++dx)
                reads += source(i, dy, patch, n) == y && source(j, dx, patch, n) == x;
        CHECK_NEAR(input_gradient(ones.data(), 0, y, x, patch, n, n, n, n, k_total), static_cast<double>(reads), 0);
      }
  }

  const float w[3] = {1.f, -2.f, 0.5f}, p[3] = {0.25f, 0.5f, 2.f};
  CHECK_NEAR(projection(w, p, 3, 0.1f), 0.1f + 0.25f - 1.f + 1.f, 1e-6);
  CHECK_NEAR(feature(0.3), std::cos(0.3), 1e-15);
  CHECK_NEAR(feature_derivative(0.3f), -std::sin(0.3f), 1e-7);
  return check::finish("common_rff_patch");
}
