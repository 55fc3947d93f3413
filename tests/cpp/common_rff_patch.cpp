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
  CHECK(pooled_size(256, 32, 16) == 15);
  CHECK(pooled_size(33, 32, 16) == 1);
  CHECK(pooled_size(31, 32, 16) == 0);
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
        const int64_t windows = pooled_size(length, window, stride);
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

  // The closed form (segment_count, segment_bound, segments_of_window, Axis, tile_of) gives exactly
  // the boundaries segment_bounds builds, and each window's segments are those inside it.
  for (int64_t window = 1; window <= 12; ++window)
    for (int64_t stride = 1; stride <= 13; ++stride)
      for (int64_t windows = 0; windows <= 9; ++windows) {
        std::vector<int64_t> bounds(2 * windows + 1);
        const int64_t count = windows > 0 ? segment_bounds(windows, window, stride, bounds.data()) : 0;
        const int64_t segments = segment_count(windows, window, stride);
        CHECK(segments == (count > 0 ? count - 1 : 0));
        for (int64_t s = 0; s < count; ++s) CHECK(segment_bound(s, windows, window, stride) == bounds[s]);
        for (int64_t a = 0; a < windows; ++a) {
          const WindowRange inside = segments_of_window(a, windows, window, stride);
          for (int64_t s = 0; s < segments; ++s) {
            const WindowRange r = windows_of(bounds[s], bounds[s + 1], windows, window, stride);
            CHECK(segment_in_window(r, a) == (inside.first <= s && s <= inside.last));
          }
        }
      }

  // tile_of: tiles cover every map pixel of every image once, in order, with their windows.
  for (int64_t window = 1; window <= 5; ++window)
    for (int64_t stride = 1; stride <= 6; ++stride) {
      const Axis rows = make_axis(11, 3, window, stride), cols = make_axis(8, 2, window, stride);
      CHECK(rows.map == 11 && cols.map == 9);
      const int64_t tiles = 2 * rows.segments() * cols.segments();
      std::vector<int> seen(2 * rows.map * cols.map, 0);
      for (int64_t index = 0; index < tiles; ++index) {
        const Tile t = tile_of(rows, cols, index);
        CHECK(t.row_windows.first == rows.range(t.row_segment).first);
        CHECK(t.col_windows.last == cols.range(t.col_segment).last);
        for (int64_t p = 0; p < t.pixels(); ++p) ++seen[(t.n * rows.map + t.row_of(p)) * cols.map + t.col_of(p)];
      }
      for (int64_t n = 0; n < 2; ++n)
        for (int64_t i = 0; i < rows.map; ++i)
          for (int64_t j = 0; j < cols.map; ++j) {
            const bool covered = i < rows.begin(rows.segments()) && j < cols.begin(cols.segments());
            CHECK(seen[(n * rows.map + i) * cols.map + j] == (covered ? 1 : 0));
          }
    }
  CHECK(parts_of(0) == 0 && parts_of(1) == 1 && parts_of(kPartPixels) == 1 && parts_of(kPartPixels + 1) == 2);

  // patch_element and gather_patch read the reflect-padded image the same way.
  {
    const int64_t channels = 2, height = 4, width = 5, patch = 3, k_total = channels * patch * patch;
    std::vector<double> image(channels * height * width);
    for (size_t v = 0; v < image.size(); ++v) image[v] = 0.5 * static_cast<double>(v) - 3.0;
    std::vector<double> row(k_total);
    for (int64_t i = 0; i < height; ++i)
      for (int64_t j = 0; j < width; ++j) {
        gather_patch(image.data(), channels, height, width, patch, i, j, row.data());
        for (int64_t c = 0; c < channels; ++c)
          for (int64_t dy = 0; dy < patch; ++dy)
            for (int64_t dx = 0; dx < patch; ++dx) {
              const int64_t k = patch_index(c, dy, dx, patch);
              const double expected =
                  image[(c * height + reflect(i + dy - 1, height)) * width + reflect(j + dx - 1, width)];
              CHECK(row[k] == expected);
              CHECK(patch_element(image.data(), height, width, patch, i, j, k) == expected);
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
  // Strided weights (a column of weight^T [K, F]) and several pixels at once, in pieces of k.
  {
    const double wt[3 * 2] = {1, 9, -2, 9, 0.5, 9};               // [K = 3, F = 2], feature 0 is column 0
    const double patches[2 * 4] = {0.25, 0.5, 2, 7, 1, 1, 1, 7};  // 2 pixels, row stride 4
    CHECK_NEAR(projection(wt, 2, patches, 3, 0.1), 0.1 + 0.25 - 1.0 + 1.0, 1e-15);
    double u[4] = {0.1, 0.2, 0, 0};
    project_pixels<4>(wt, 2, patches, 4, 2, 2, u);              // elements 0, 1
    project_pixels<4>(wt + 2 * 2, 2, patches + 2, 4, 1, 2, u);  // element 2
    CHECK_NEAR(u[0], projection(wt, 2, patches, 3, 0.1), 1e-15);
    CHECK_NEAR(u[1], projection(wt, 2, patches + 4, 3, 0.2), 1e-15);
    CHECK(u[2] == 0 && u[3] == 0);
  }
  CHECK_NEAR(feature(0.3), std::cos(0.3), 1e-15);
  CHECK_NEAR(feature_derivative(0.3f), -std::sin(0.3f), 1e-7);
  return check::finish("common_rff_patch");
}
