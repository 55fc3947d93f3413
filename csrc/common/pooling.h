// Average pooling without padding, shared by every op that pools (rff_patch, scnn): one rule for
// how many W x W windows with stride S fit along an axis.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace perceptual_ext {

// Windows along an axis of `size` pixels (windows start at multiples of `stride` and must fit
// entirely, like avg_pool2d without padding); 0 when the window does not fit.
PE_HOST_DEVICE PE_INLINE int64_t pooled_size(int64_t size, int64_t window, int64_t stride) {
  return size >= window ? (size - window) / stride + 1 : 0;
}

}  // namespace perceptual_ext
