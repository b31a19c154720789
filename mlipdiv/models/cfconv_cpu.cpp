// CPU kernels for the two primitives of mlipdiv/models/cfconv.py, built on first use by torch.utils.cpp_extension.
//
// Over the pairs p = (a[p], b[p]) of a batch, with F features per row:
//   conv(x, w)[i] = sum over pairs with b == i of x[a] * w[p]  +  sum over pairs with a == i of x[b] * w[p]
//   pair(u, v)[p] = u[b] * v[a] + u[a] * v[b]
// PyTorch evaluates them as gathers, products and a scatter, each writing a (pairs x F) temporary; here each is one
// pass that reads every pair's row once. conv splits the feature columns between threads and pair splits the pairs,
// so no two threads write the same element and every sum runs in pair order: results do not depend on thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>

#include "kernel_checks.h"

namespace {

using mlipdiv_kernels::check_pairs;
using mlipdiv_kernels::check_rows;

template <typename T>
inline void conv_columns(const T* x, const T* w, const int64_t* a, const int64_t* b, T* out, int64_t n_pairs, int64_t F,
                         int64_t f0, int64_t f1) {
  for (int64_t p = 0; p < n_pairs; ++p) {
    const T* __restrict__ wp = w + p * F;
    const T* __restrict__ xa = x + a[p] * F;
    const T* __restrict__ xb = x + b[p] * F;
    T* __restrict__ oa = out + a[p] * F;
    T* __restrict__ ob = out + b[p] * F;
    for (int64_t f = f0; f < f1; ++f) {
      ob[f] += xa[f] * wp[f];
      oa[f] += xb[f] * wp[f];
    }
  }
}

template <typename T>
inline void pair_rows(const T* u, const T* v, const int64_t* a, const int64_t* b, T* out, int64_t F, int64_t p0,
                      int64_t p1) {
  for (int64_t p = p0; p < p1; ++p) {
    const T* __restrict__ ua = u + a[p] * F;
    const T* __restrict__ ub = u + b[p] * F;
    const T* __restrict__ va = v + a[p] * F;
    const T* __restrict__ vb = v + b[p] * F;
    T* __restrict__ o = out + p * F;
    for (int64_t f = 0; f < F; ++f) o[f] = ub[f] * va[f] + ua[f] * vb[f];
  }
}

// The instances, each compiled twice (MLIPDIV_CLONES).
MLIPDIV_CLONES void conv_f(const float* x, const float* w, const int64_t* a, const int64_t* b, float* out,
                           int64_t n_pairs, int64_t F, int64_t f0, int64_t f1) {
  conv_columns(x, w, a, b, out, n_pairs, F, f0, f1);
}
MLIPDIV_CLONES void conv_d(const double* x, const double* w, const int64_t* a, const int64_t* b, double* out,
                           int64_t n_pairs, int64_t F, int64_t f0, int64_t f1) {
  conv_columns(x, w, a, b, out, n_pairs, F, f0, f1);
}
MLIPDIV_CLONES void pair_f(const float* u, const float* v, const int64_t* a, const int64_t* b, float* out, int64_t F,
                           int64_t p0, int64_t p1) {
  pair_rows(u, v, a, b, out, F, p0, p1);
}
MLIPDIV_CLONES void pair_d(const double* u, const double* v, const int64_t* a, const int64_t* b, double* out,
                           int64_t F, int64_t p0, int64_t p1) {
  pair_rows(u, v, a, b, out, F, p0, p1);
}

template <typename T>
void conv_into(const at::Tensor& x, const at::Tensor& w, const at::Tensor& a, const at::Tensor& b, at::Tensor& out) {
  const int64_t F = x.size(1), n_pairs = a.numel();
  const T* xp = x.data_ptr<T>();
  const T* wp = w.data_ptr<T>();
  const int64_t* ap = a.data_ptr<int64_t>();
  const int64_t* bp = b.data_ptr<int64_t>();
  T* op = out.data_ptr<T>();
  at::parallel_for(0, F, 16, [&](int64_t f0, int64_t f1) {
    if constexpr (std::is_same_v<T, float>) conv_f(xp, wp, ap, bp, op, n_pairs, F, f0, f1);
    else conv_d(xp, wp, ap, bp, op, n_pairs, F, f0, f1);
  });
}

template <typename T>
void pair_into(const at::Tensor& u, const at::Tensor& v, const at::Tensor& a, const at::Tensor& b, at::Tensor& out) {
  const int64_t F = u.size(1);
  const T* up = u.data_ptr<T>();
  const T* vp = v.data_ptr<T>();
  const int64_t* ap = a.data_ptr<int64_t>();
  const int64_t* bp = b.data_ptr<int64_t>();
  T* op = out.data_ptr<T>();
  at::parallel_for(0, a.numel(), 256, [&](int64_t p0, int64_t p1) {
    if constexpr (std::is_same_v<T, float>) pair_f(up, vp, ap, bp, op, F, p0, p1);
    else pair_d(up, vp, ap, bp, op, F, p0, p1);
  });
}

at::Tensor conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& a, const at::Tensor& b) {
  check_rows(x, x, -1, "x");
  check_rows(w, x, a.numel(), "w");
  check_pairs(a, b, x.size(0));
  auto out = at::zeros_like(x);
  if (x.scalar_type() == at::kFloat) conv_into<float>(x, w, a, b, out);
  else conv_into<double>(x, w, a, b, out);
  return out;
}

at::Tensor pair(const at::Tensor& u, const at::Tensor& v, const at::Tensor& a, const at::Tensor& b) {
  check_rows(u, u, -1, "u");
  check_rows(v, u, u.size(0), "v");
  check_pairs(a, b, u.size(0));
  auto out = at::empty({a.numel(), u.size(1)}, u.options());
  if (u.scalar_type() == at::kFloat) pair_into<float>(u, v, a, b, out);
  else pair_into<double>(u, v, a, b, out);
  return out;
}

}  // namespace

TORCH_LIBRARY(mlipdiv_cfconv, m) {
  m.def("conv(Tensor x, Tensor w, Tensor a, Tensor b) -> Tensor", &conv);
  m.def("pair(Tensor u, Tensor v, Tensor a, Tensor b) -> Tensor", &pair);
}
