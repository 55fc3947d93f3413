// Every operator schema of the library, in one place. Kernels register beside themselves
// (csrc/cpu/<op>.cpp, csrc/cuda/<op>.cu); autograd and fake kernels live in perceptual_ext/ops/.
#include <torch/library.h>

TORCH_LIBRARY(perceptual_ext, m) {
  // features [N, C, L] -> [N, C, C]
  m.def("gram(Tensor features, bool normalize) -> Tensor");
  // grad [N, C, C], features [N, C, L] -> [N, C, L]
  m.def("gram_backward(Tensor grad, Tensor features, bool normalize) -> Tensor");
}
