// Gram matrix, CUDA: block-triangle GEMMs through cuBLAS, then a mirror kernel copies the upper
// triangle into the lower one. Half/bfloat16 GEMMs accumulate in fp32: cuBLAS's reduced-precision
// reductions and fp16 accumulation, which torch may allow, are switched off around them.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Context.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "host/checks.h"
#include "common/gram.h"
#include "cuda/helpers.h"
#include "host/gram_gemm.h"

namespace perceptual_ext {
namespace {

constexpr int64_t kBlock = 256;
using cuda::kThreads;

// While alive, cuBLAS reduces and accumulates half/bfloat16 GEMMs in fp32 whatever torch's flags
// (torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction, ..._bf16_..., allow_fp16_accumulation)
// say; the flags are restored on exit, also when the GEMM throws. They are process-wide: another
// thread's half GEMM that runs at the same moment gets fp32 reductions too.
class Fp32Reductions {
 public:
  explicit Fp32Reductions(bool active)
      : active_(active),
        fp16_(context().allowFP16ReductionCuBLAS()),
        bf16_(context().allowBF16ReductionCuBLAS()),
        fp16_accumulation_(context().allowFP16AccumulationCuBLAS()) {
    if (!active_) return;
    // Split-K stays as allowed: with reduced precision off, its partial sums are fp32.
    context().setAllowFP16ReductionCuBLAS(false, allows_split_k(fp16_));
    context().setAllowBF16ReductionCuBLAS(false, allows_split_k(bf16_));
    context().setAllowFP16AccumulationCuBLAS(false);
  }
  ~Fp32Reductions() {
    if (!active_) return;
    context().setAllowFP16ReductionCuBLAS(allows_reduced(fp16_), allows_split_k(fp16_));
    context().setAllowBF16ReductionCuBLAS(allows_reduced(bf16_), allows_split_k(bf16_));
    context().setAllowFP16AccumulationCuBLAS(fp16_accumulation_);
  }
  Fp32Reductions(const Fp32Reductions&) = delete;
  Fp32Reductions& operator=(const Fp32Reductions&) = delete;

 private:
  using Option = at::CuBLASReductionOption;
  static at::Context& context() { return at::globalContext(); }
  static bool allows_reduced(Option o) { return o == Option::AllowReducedPrecisionWithSplitK; }
  static bool allows_split_k(Option o) { return o != Option::DisallowReducedPrecisionDisallowSplitK; }
  bool active_;
  Option fp16_, bf16_;
  bool fp16_accumulation_;
};

bool reduced_type(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

template <typename scalar_t>
__global__ void mirror_kernel(scalar_t* __restrict__ g, int64_t batch, int64_t channels) {
  const int64_t total = batch * channels * channels;
  PE_GRID_STRIDE_LOOP(i, total) {
    const int64_t col = i % channels;
    const int64_t row = (i / channels) % channels;
    if (gram::BlockPlan::mirrored(row, col)) g[i] = g[gram::transposed_index(i, row, col, channels)];
  }
}

void check_inputs(const at::Tensor& features) {
  check_rank(features, 3, "gram", "features", "[N, C, L]");
  check_dtype(features, {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}, "gram", "features");
}

at::Tensor gram_cuda(const at::Tensor& features, bool normalize) {
  check_inputs(features);
  const c10::cuda::CUDAGuard guard(features.device());
  const int64_t n = features.size(0), c = features.size(1), l = features.size(2);
  auto out = at::empty({n, c, c}, features.options());
  if (out.numel() == 0) return out;
  if (l == 0) return out.zero_();
  const gram::BlockPlan plan{c, gram::choose_block(c, kBlock)};
  {
    const Fp32Reductions fp32(reduced_type(features));
    gram::upper_block_triangle(out, features, plan, gram::scale(c, l, normalize));
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "gram_mirror_cuda", [&] {
    mirror_kernel<scalar_t>
        <<<cuda::grid_size(out.numel()), kThreads, 0, cuda::current_stream()>>>(out.data_ptr<scalar_t>(), n, c);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor gram_backward_cuda(const at::Tensor& grad, const at::Tensor& features, bool normalize) {
  check_inputs(features);
  check_rank(grad, 3, "gram_backward", "grad", "[N, C, C]");
  check_same(grad, features, "gram_backward", "grad", "features");
  const c10::cuda::CUDAGuard guard(features.device());
  const Fp32Reductions fp32(reduced_type(features));
  return gram::backward(grad, features, normalize);
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CUDA, m) {
  m.impl("gram", &gram_cuda);
  m.impl("gram_backward", &gram_backward_cuda);
}

}  // namespace perceptual_ext
