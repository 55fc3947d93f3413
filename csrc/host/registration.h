// Kernel registration shared by every device file: each op X of the library has its gradient as
// the op X_backward (schemas in csrc/ops.cpp), and a device registers the two together.
#pragma once

#include <torch/library.h>

#include <string>

namespace perceptual_ext {

// Registers `forward` as op `name` and `backward` as op `name`_backward in the library block `m`
// (a TORCH_LIBRARY_IMPL for one dispatch key).
template <typename Forward, typename Backward>
void impl_with_backward(torch::Library& m, const std::string& name, Forward* forward, Backward* backward) {
  m.impl(name.c_str(), forward);
  m.impl((name + "_backward").c_str(), backward);
}

}  // namespace perceptual_ext
