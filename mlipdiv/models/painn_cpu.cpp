// CPU kernels for the two signed primitives of mlipdiv/models/painn_ops.py (PaiNN's message step), built on first use
// by torch.utils.cpp_extension, like cfconv_cpu.cpp (whose kernels these are, with one sign s[f] per feature column):
//   conv(x, w, s)[i] = sum over pairs with b == i of x[a] * w[p]  +  s * sum over pairs with a == i of x[b] * w[p]
//   pair(u, v, s)[p] = u[b] * v[a] + s * u[a] * v[b]
// Each is one pass that reads every pair's row once. conv splits the feature columns between threads and pair splits
// the pairs, so no two threads write the same element and every sum runs in pair order: results do not depend on
// thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
// An AVX2 build beside the baseline one, picked at load time for the CPU at hand, so the cached library runs anywhere.
#define MLIPDIV_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MLIPDIV_CLONES
#endif

namespace {

template <typename T>
inline void conv_columns(const T* x, const T* w, const T* s, const int64_t* a, const int64_t* b, T* out,
                         int64_t n_pairs, int64_t F, int64_t f0, int64_t f1) {
  for (int64_t p = 0; p < n_pairs; ++p) {
    const T* __restrict__ wp = w + p * F;
    const T* __restrict__ xa = x + a[p] * F;
    const T* __restrict__ xb = x + b[p] * F;
    T* __restrict__ oa = out + a[p] * F;
    T* __restrict__ ob = out + b[p] * F;
    for (int64_t f = f0; f < f1; ++f) {
      ob[f] += xa[f] * wp[f];
      oa[f] += s[f] * xb[f] * wp[f];
    }
  }
}

template <typename T>
inline void pair_rows(const T* u, const T* v, const T* s, const int64_t* a, const int64_t* b, T* out, int64_t F,
                      int64_t p0, int64_t p1) {
  for (int64_t p = p0; p < p1; ++p) {
    const T* __restrict__ ua = u + a[p] * F;
    const T* __restrict__ ub = u + b[p] * F;
    const T* __restrict__ va = v + a[p] * F;
    const T* __restrict__ vb = v + b[p] * F;
    T* __restrict__ o = out + p * F;
    for (int64_t f = 0; f < F; ++f) o[f] = ub[f] * va[f] + s[f] * ua[f] * vb[f];
  }
}

// The instances, each compiled twice (MLIPDIV_CLONES).
MLIPDIV_CLONES void conv_f(const float* x, const float* w, const float* s, const int64_t* a, const int64_t* b, float* out,
                           int64_t n_pairs, int64_t F, int64_t f0, int64_t f1) {
  conv_columns(x, w, s, a, b, out, n_pairs, F, f0, f1);
}
MLIPDIV_CLONES void conv_d(const double* x, const double* w, const double* s, const int64_t* a, const int64_t* b, double* out,
                           int64_t n_pairs, int64_t F, int64_t f0, int64_t f1) {
  conv_columns(x, w, s, a, b, out, n_pairs, F, f0, f1);
}
MLIPDIV_CLONES void pair_f(const float* u, const float* v, const float* s, const int64_t* a, const int64_t* b, float* out, int64_t F,
                           int64_t p0, int64_t p1) {
  pair_rows(u, v, s, a, b, out, F, p0, p1);
}
MLIPDIV_CLONES void pair_d(const double* u, const double* v, const double* s, const int64_t* a, const int64_t* b, double* out,
                           int64_t F, int64_t p0, int64_t p1) {
  pair_rows(u, v, s, a, b, out, F, p0, p1);
}

void check_rows(const at::Tensor& t, const at::Tensor& like, int64_t rows, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.dim() == 2, name, " must be a contiguous 2-D CPU tensor");
  TORCH_CHECK(t.scalar_type() == like.scalar_type() && t.size(1) == like.size(1) && (rows < 0 || t.size(0) == rows),
              name, " does not match the other operand's dtype or shape");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name, " must be float32 or float64");
}

void check_pairs(const at::Tensor& a, const at::Tensor& b, int64_t n_atoms) {
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

template <typename T>
void conv_into(const at::Tensor& x, const at::Tensor& w, const at::Tensor& s, const at::Tensor& a, const at::Tensor& b,
               at::Tensor& out) {
  const int64_t F = x.size(1), n_pairs = a.numel();
  const T* xp = x.data_ptr<T>();
  const T* wp = w.data_ptr<T>();
  const T* sp = s.data_ptr<T>();
  const int64_t* ap = a.data_ptr<int64_t>();
  const int64_t* bp = b.data_ptr<int64_t>();
  T* op = out.data_ptr<T>();
  at::parallel_for(0, F, 16, [&](int64_t f0, int64_t f1) {
    if constexpr (std::is_same_v<T, float>) conv_f(xp, wp, sp, ap, bp, op, n_pairs, F, f0, f1);
    else conv_d(xp, wp, sp, ap, bp, op, n_pairs, F, f0, f1);
  });
}

template <typename T>
void pair_into(const at::Tensor& u, const at::Tensor& v, const at::Tensor& s, const at::Tensor& a, const at::Tensor& b,
               at::Tensor& out) {
  const int64_t F = u.size(1);
  const T* up = u.data_ptr<T>();
  const T* vp = v.data_ptr<T>();
  const T* sp = s.data_ptr<T>();
  const int64_t* ap = a.data_ptr<int64_t>();
  const int64_t* bp = b.data_ptr<int64_t>();
  T* op = out.data_ptr<T>();
  at::parallel_for(0, a.numel(), 256, [&](int64_t p0, int64_t p1) {
    if constexpr (std::is_same_v<T, float>) pair_f(up, vp, sp, ap, bp, op, F, p0, p1);
    else pair_d(up, vp, sp, ap, bp, op, F, p0, p1);
  });
}

void check_signs(const at::Tensor& s, const at::Tensor& like) {
  TORCH_CHECK(s.device().is_cpu() && s.is_contiguous() && s.dim() == 1 && s.size(0) == like.size(1) &&
                  s.scalar_type() == like.scalar_type(),
              "s must be a contiguous CPU vector, one sign per column, of the operands' dtype");
}

at::Tensor conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& s, const at::Tensor& a, const at::Tensor& b) {
  check_rows(x, x, -1, "x");
  check_rows(w, x, a.numel(), "w");
  check_signs(s, x);
  check_pairs(a, b, x.size(0));
  auto out = at::zeros_like(x);
  if (x.scalar_type() == at::kFloat) conv_into<float>(x, w, s, a, b, out);
  else conv_into<double>(x, w, s, a, b, out);
  return out;
}

at::Tensor pair(const at::Tensor& u, const at::Tensor& v, const at::Tensor& s, const at::Tensor& a, const at::Tensor& b) {
  check_rows(u, u, -1, "u");
  check_rows(v, u, u.size(0), "v");
  check_signs(s, u);
  check_pairs(a, b, u.size(0));
  auto out = at::empty({a.numel(), u.size(1)}, u.options());
  if (u.scalar_type() == at::kFloat) pair_into<float>(u, v, s, a, b, out);
  else pair_into<double>(u, v, s, a, b, out);
  return out;
}

}  // namespace

TORCH_LIBRARY(mlipdiv_painn, m) {
  m.def("conv(Tensor x, Tensor w, Tensor s, Tensor a, Tensor b) -> Tensor", &conv);
  m.def("pair(Tensor u, Tensor v, Tensor s, Tensor a, Tensor b) -> Tensor", &pair);
}
