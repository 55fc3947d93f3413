// Include first, before any ATen header, in CPU kernels that use at::vec::Vectorized.
//
// at::vec picks its SIMD implementation from CPU_CAPABILITY_* macros, which ATen sets only for
// its own per-ISA builds; in an extension Vectorized is otherwise a scalar loop (and cos/sin are
// std::cos instead of Sleef). Select the widest one the translation unit is compiled for
// (-march=native), or the portable generic one (PERCEPTUAL_EXT_PORTABLE=1).
#pragma once

#if !defined(CPU_CAPABILITY)
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && defined(__FMA__)
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#elif defined(__AVX2__) && defined(__FMA__)
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#endif
#endif
