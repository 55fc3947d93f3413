// fp32 accumulation for the half/bfloat16 GEMMs of the CUDA kernels (gram, scnn): cuBLAS may
// otherwise reduce them in reduced precision (split-K partial sums in the input type) or accumulate
// in fp16 where torch allows it.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Context.h>

namespace perceptual_ext {
namespace cuda {

// While alive (and for a float16/bfloat16 tensor t), cuBLAS reduces and accumulates half/bfloat16 GEMMs in fp32
// whatever torch's flags (torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction, ..._bf16_...,
// allow_fp16_accumulation) say; the flags are restored on exit, also when the GEMM throws. They are process-wide:
// another thread's half GEMM that runs at the same moment gets fp32 reductions too.
class Fp32Reductions {
 public:
  explicit Fp32Reductions(const at::Tensor& t)
      : active_(t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16),
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

}  // namespace cuda
}  // namespace perceptual_ext
