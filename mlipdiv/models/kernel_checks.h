// What the CPU kernel libraries (cfconv_cpu.cpp, painn_cpu.cpp) share: the per-CPU build of their inner loops and
// the checks of their operands. Included by both; mlipdiv/models/kernels.py keys each build by its source and this
// header, so a change here rebuilds both.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
// An AVX2 build beside the baseline one, picked at load time for the CPU at hand, so the cached library runs anywhere.
#define MLIPDIV_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MLIPDIV_CLONES
#endif

namespace mlipdiv_kernels {

// A contiguous 2-D float32/float64 CPU tensor of `like`'s dtype and width, with `rows` rows (any when negative).
inline void check_rows(const at::Tensor& t, const at::Tensor& like, int64_t rows, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.dim() == 2, name, " must be a contiguous 2-D CPU tensor");
  TORCH_CHECK(t.scalar_type() == like.scalar_type() && t.size(1) == like.size(1) && (rows < 0 || t.size(0) == rows),
              name, " does not match the other operand's dtype or shape");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name, " must be float32 or float64");
}

// Two int64 index vectors of one length, every index an atom of the operands (the kernels read and write through them).
inline void check_pairs(const at::Tensor& a, const at::Tensor& b, int64_t n_atoms) {
  TORCH_CHECK(a.device().is_cpu() && b.device().is_cpu() && a.scalar_type() == at::kLong &&
                  b.scalar_type() == at::kLong && a.is_contiguous() && b.is_contiguous() && a.dim() == 1 &&
                  a.sizes() == b.sizes(),
              "pair indices must be two contiguous int64 CPU vectors of one length");
  const int64_t* ap = a.data_ptr<int64_t>();
  const int64_t* bp = b.data_ptr<int64_t>();
  const auto [a_lo, a_hi] = std::minmax_element(ap, ap + a.numel());
  const auto [b_lo, b_hi] = std::minmax_element(bp, bp + b.numel());
  TORCH_CHECK(a.numel() == 0 || (std::min(*a_lo, *b_lo) >= 0 && std::max(*a_hi, *b_hi) < n_atoms),
              "pair index out of range");
}

}  // namespace mlipdiv_kernels
