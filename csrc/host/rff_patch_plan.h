// Host-side plan of the patch-RFF op shared by the CPU and CUDA kernels: argument checks and
// the sizes of the segment tiling (the tiling itself is closed-form maths in common/rff_patch.h).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>

#include "host/checks.h"
#include "common/rff_patch.h"

namespace perceptual_ext {
namespace rff_patch {

struct Plan {
  int64_t batch, channels, features, patch, window, stride;
  Axis rows, cols;  // the segment tiling of each axis, in closed form (common/rff_patch.h)

  Plan(const at::Tensor& x, const at::Tensor& weight, int64_t window_, int64_t stride_)
      : batch(x.size(0)),
        channels(x.size(1)),
        features(weight.size(0)),
        patch(weight.size(2)),
        window(window_),
        stride(stride_),
        rows(make_axis(x.size(2), weight.size(2), window_, stride_)),
        cols(make_axis(x.size(3), weight.size(2), window_, stride_)) {}

  int64_t patch_elements() const { return channels * patch * patch; }
  int64_t tiles() const { return batch * rows.segments() * cols.segments(); }
  // Pixels of the largest tile (sizes the parts a device splits tiles into).
  int64_t max_tile_pixels() const { return longest(rows) * longest(cols); }

 private:
  static int64_t longest(const Axis& axis) {
    int64_t best = 0;
    for (int64_t s = 0; s < axis.segments(); ++s) best = std::max(best, axis.size(s));
    return best;
  }
};

// Shared validation of x [N, C, H, W], weight [F, C, P, P], bias [F]; the Python wrapper raises
// friendlier errors first, these guard direct torch.ops calls.
inline void check_inputs(const char* op, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                         int64_t window, int64_t stride) {
  check_rank(x, 4, op, "x", "[N, C, H, W]");
  check_rank(weight, 4, op, "weight", "[F, C, P, P]");
  check_rank(bias, 1, op, "bias", "[F]");
  check_same(x, weight, op, "x", "weight");
  check_same(x, bias, op, "x", "bias");
  TORCH_CHECK(weight.size(1) == x.size(1) && weight.size(2) == weight.size(3) && weight.size(2) >= 1, op,
              ": weight must be [F, C, P, P] with C = ", x.size(1), " channels, got shape ", weight.sizes());
  TORCH_CHECK(bias.size(0) == weight.size(0), op, ": bias must be [F] with F = ", weight.size(0), ", got shape ",
              bias.sizes());
  TORCH_CHECK(window >= 1 && stride >= 1, op, ": window and stride must be >= 1, got ", window, " and ", stride);
  const int64_t patch = weight.size(2);
  TORCH_CHECK(padding(patch) < x.size(2) && padding(patch) < x.size(3), op, ": reflect padding ", padding(patch),
              " needs an image larger than that, got ", x.size(2), "x", x.size(3));
  const int64_t map_h = map_size(x.size(2), patch), map_w = map_size(x.size(3), patch);
  TORCH_CHECK(window <= map_h && window <= map_w, op, ": window ", window, " is larger than the feature map ", map_h,
              "x", map_w);
}

}  // namespace rff_patch
}  // namespace perceptual_ext
