// Host-side plan of the patch-RFF op shared by the CPU and CUDA kernels: argument checks and
// the segment tiling of each axis (see common/rff_patch.h).
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "host/checks.h"
#include "common/rff_patch.h"

namespace perceptual_ext {
namespace rff_patch {

// Segments of one axis of the feature map, and the windows each lies in.
struct AxisPlan {
  int64_t image = 0;    // image side
  int64_t map = 0;      // feature-map side
  int64_t windows = 0;  // pooled side
  std::vector<int64_t> bounds;     // segments + 1 boundaries
  std::vector<WindowRange> ranges;  // per segment

  AxisPlan(int64_t image_side, int64_t patch, int64_t window, int64_t stride)
      : image(image_side), map(map_size(image_side, patch)), windows(num_windows(map, window, stride)) {
    bounds.resize(2 * windows);
    bounds.resize(segment_bounds(windows, window, stride, bounds.data()));
    for (size_t s = 0; s + 1 < bounds.size(); ++s)
      ranges.push_back(windows_of(bounds[s], bounds[s + 1], windows, window, stride));
  }
  int64_t segments() const { return static_cast<int64_t>(ranges.size()); }
  // Segments [first, last] inside window a: the inverse of `ranges`.
  std::vector<int64_t> window_segments() const {
    std::vector<int64_t> out(2 * windows);
    for (int64_t a = 0; a < windows; ++a) {
      int64_t first = segments(), last = -1;
      for (int64_t s = 0; s < segments(); ++s)
        if (segment_in_window(ranges[s], a)) {
          first = s < first ? s : first;
          last = s;
        }
      out[2 * a] = first;
      out[2 * a + 1] = last;
    }
    return out;
  }
  int64_t begin(int64_t s) const { return bounds[s]; }
  int64_t size(int64_t s) const { return bounds[s + 1] - bounds[s]; }

  // Device copies for the CUDA kernels: bounds [segments + 1] and ranges [segments, 2].
  at::Tensor bounds_tensor() const {
    return at::tensor(at::ArrayRef<int64_t>(bounds), at::TensorOptions().dtype(at::kLong));
  }
  at::Tensor window_segments_tensor() const {
    const auto flat = window_segments();
    return at::tensor(at::ArrayRef<int64_t>(flat), at::TensorOptions().dtype(at::kLong)).view({-1, 2});
  }
  at::Tensor ranges_tensor() const {
    std::vector<int64_t> flat;
    for (const auto& r : ranges) {
      flat.push_back(r.first);
      flat.push_back(r.last);
    }
    return at::tensor(at::ArrayRef<int64_t>(flat), at::TensorOptions().dtype(at::kLong)).view({-1, 2});
  }
};

struct Plan {
  int64_t batch, channels, features, patch, window, stride;
  AxisPlan rows, cols;

  Plan(const at::Tensor& x, const at::Tensor& weight, int64_t window_, int64_t stride_)
      : batch(x.size(0)), channels(x.size(1)), features(weight.size(0)), patch(weight.size(2)),
        window(window_), stride(stride_), rows(x.size(2), weight.size(2), window_, stride_),
        cols(x.size(3), weight.size(2), window_, stride_) {}

  int64_t patch_elements() const { return channels * patch * patch; }
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
