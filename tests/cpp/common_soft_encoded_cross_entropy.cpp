// Unit tests of csrc/common/soft_encoded_cross_entropy.h (host build of the __host__ __device__ maths):
// the grid search against a brute-force search over every bin, the soft-encoding weights, the
// log-sum-exp, and the non-finite cases.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "check.h"
#include "common/soft_encoded_cross_entropy.h"

using namespace perceptual_ext::soft_encoded_cross_entropy;

namespace {

// A grid of step 10 with origin (-40, -30), 9 x 8 cells, holes in a disc-like shape: bins where
// a^2 + b^2 <= 45^2 (like the sRGB gamut, the set is not a rectangle).
struct TestGrid {
  std::vector<double> bins;
  std::vector<int32_t> index;
  Grid grid;
  TestGrid() {
    const int64_t rows = 9, cols = 8;
    index.assign(rows * cols, -1);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        const double a = -40 + 10.0 * i, b = -30 + 10.0 * j;
        if (a * a + b * b > 45.0 * 45.0) continue;
        index[i * cols + j] = static_cast<int32_t>(bins.size() / 2);
        bins.push_back(a);
        bins.push_back(b);
      }
    grid = Grid{-40, -30, 10, rows, cols, index.data()};
  }
  int32_t count() const { return static_cast<int32_t>(bins.size() / 2); }
};

// Every bin's distance, sorted by (distance, index): the first k are the answer.
std::vector<std::pair<double, int32_t>> brute_force(const TestGrid& g, double a, double b) {
  std::vector<std::pair<double, int32_t>> all;
  for (int32_t q = 0; q < g.count(); ++q) all.emplace_back(distance2(g.bins.data(), q, a, b), q);
  std::sort(all.begin(), all.end());
  return all;
}

}  // namespace

int main() {
  const TestGrid g;
  CHECK(g.count() > 40);

  // Cells: nearest, clamped to the grid.
  CHECK(Grid::cell(-40.0, -40, 10, 9) == 0);
  CHECK(Grid::cell(-34.9, -40, 10, 9) == 1);
  CHECK(Grid::cell(-1000.0, -40, 10, 9) == 0);
  CHECK(Grid::cell(1e9, -40, 10, 9) == 8);
  CHECK(g.grid.bin(-1, 0) == -1 && g.grid.bin(0, 8) == -1);

  // The grid search finds exactly the k nearest bins (distances and order), inside the set,
  // in its holes and far outside it, for every k.
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> near(-70.0, 70.0), far(-1e4, 1e4);
  for (int trial = 0; trial < 4000; ++trial) {
    const bool outside = trial % 4 == 3;
    const double a = outside ? far(rng) : near(rng), b = outside ? far(rng) : near(rng);
    const auto expected = brute_force(g, a, b);
    for (int k : {1, 2, 5, 10, 32}) {
      Nearest<double> found;
      find_nearest(g.grid, g.bins.data(), a, b, k, found);
      CHECK(found.count == k);
      for (int j = 0; j < k; ++j) {
        CHECK(found.bin[j] == expected[j].second);
        CHECK(found.dist2[j] == expected[j].first);
      }
    }
  }

  // Ties (a point on a bin centre has 4 neighbours at the same distance) go to the lower index.
  {
    Nearest<double> found;
    find_nearest(g.grid, g.bins.data(), 0.0, 0.0, 5, found);
    const auto expected = brute_force(g, 0.0, 0.0);
    for (int j = 0; j < 5; ++j) CHECK(found.bin[j] == expected[j].second);
    CHECK(found.dist2[0] == 0.0 && found.dist2[4] == 100.0);
    CHECK(found.bin[1] < found.bin[2] && found.bin[2] < found.bin[3] && found.bin[3] < found.bin[4]);
  }

  // Gaussian weights: normalized, decreasing with distance, the closed form for two neighbours.
  {
    Nearest<double> n;
    n.offer(4.0, 3, 2);
    n.offer(29.0, 1, 2);
    double z[kMaxNeighbors];
    gaussian_weights(n, 5.0, z);
    const double w0 = std::exp(-4.0 / 50.0), w1 = std::exp(-29.0 / 50.0);
    CHECK_NEAR(z[0], w0 / (w0 + w1), 1e-15);
    CHECK_NEAR(z[0] + z[1], 1.0, 1e-15);
    // Far from every bin, the plain exp(-d^2/2 sigma^2) underflows; the shifted one does not.
    Nearest<double> far_n;
    far_n.offer(1e8, 0, 2);
    far_n.offer(1e8 + 50.0, 1, 2);
    gaussian_weights(far_n, 5.0, z);
    CHECK(std::isfinite(z[0]) && std::isfinite(z[1]));
    CHECK_NEAR(z[0], 1.0 / (1.0 + std::exp(-1.0)), 1e-12);
  }

  // Encoded target: rebalancing weight of the nearest bin, NaN for a non-finite colour.
  {
    std::vector<double> weights(g.count());
    for (int32_t q = 0; q < g.count(); ++q) weights[q] = 1.0 + q;
    Target<double> t;
    encode(g.grid, g.bins.data(), weights.data(), 1.0, 2.0, 5, 5.0, t);
    CHECK(t.nearest.count == 5);
    CHECK(t.v == weights[t.nearest.bin[0]]);
    CHECK_NEAR(g.bins[2 * t.nearest.bin[0]], 0.0, 0.0);
    encode(g.grid, g.bins.data(), static_cast<const double*>(nullptr), 1.0, 2.0, 5, 5.0, t);
    CHECK(t.v == 1.0);
    encode(g.grid, g.bins.data(), weights.data(), double(NAN), 2.0, 5, 5.0, t);
    CHECK(t.nearest.count == 0 && std::isnan(t.v));
    encode(g.grid, g.bins.data(), weights.data(), 1.0, double(INFINITY), 5, 5.0, t);
    CHECK(t.nearest.count == 0 && std::isnan(t.v));
  }

  // Log-sum-exp over a strided row: the naive sum where it does not overflow, stable where it would.
  {
    std::vector<double> x(3 * 7);
    for (int q = 0; q < 7; ++q) x[3 * q] = 0.3 * q - 1.0;
    double naive = 0;
    for (int q = 0; q < 7; ++q) naive += std::exp(x[3 * q]);
    CHECK_NEAR(logsumexp(x.data(), 3, 7), std::log(naive), 1e-14);
    for (int q = 0; q < 7; ++q) x[3 * q] += 1000.0;
    CHECK_NEAR(logsumexp(x.data(), 3, 7), std::log(naive) + 1000.0, 1e-10);
    std::vector<float> inf_row = {1.0f, INFINITY, 2.0f};
    CHECK(logsumexp(inf_row.data(), 1, 3) == INFINITY);
    std::vector<float> nan_row = {1.0f, NAN, 2.0f};
    CHECK(std::isnan(logsumexp(nan_row.data(), 1, 3)));
    std::vector<float> neg_row = {-INFINITY, -INFINITY};
    CHECK(logsumexp(neg_row.data(), 1, 2) == -INFINITY);
  }

  // Loss and gradient terms.
  CHECK_NEAR(pixel_loss(2.0, 3.5, 1.0), 5.0, 1e-15);
  CHECK_NEAR(softmax_grad(2.0, 1.0, 1.0 + std::log(4.0)), 0.5, 1e-15);
  return check::finish("common_soft_encoded_cross_entropy");
}
