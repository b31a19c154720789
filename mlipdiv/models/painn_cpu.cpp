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
#include <tuple>
#include <type_traits>

#include "kernel_checks.h"

namespace {

using mlipdiv_kernels::check_pairs;
using mlipdiv_kernels::check_rows;

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

// The fused forms of PaiNN's message step: the pair filter of block k (of 7, F columns each) is w[p, c(k)] * g[p, e(k)],
// with w (n_pairs, 3F) the radial filters and g (n_pairs, 4) the envelope and the envelope times the unit vector,
// expanded on the fly instead of as an (n_pairs, 7F) tensor.
constexpr int64_t kC[7] = {0, 1, 1, 1, 2, 2, 2};
constexpr int64_t kE[7] = {0, 0, 0, 0, 1, 2, 3};

template <typename T>
inline void convg_columns(const T* x, const T* w, const T* g, const T* s, const int64_t* a, const int64_t* b, T* out,
                          int64_t n_pairs, int64_t F, int64_t j0, int64_t j1) {
  const int64_t F7 = 7 * F, F3 = 3 * F;
  for (int64_t p = 0; p < n_pairs; ++p) {
    const T* __restrict__ xa = x + a[p] * F7;
    const T* __restrict__ xb = x + b[p] * F7;
    T* __restrict__ oa = out + a[p] * F7;
    T* __restrict__ ob = out + b[p] * F7;
    for (int64_t k = j0 / F; k < 7 && k * F < j1; ++k) {
      const int64_t lo = std::max(j0, k * F), hi = std::min(j1, (k + 1) * F);
      const T gk = g[p * 4 + kE[k]];
      const T* __restrict__ wk = w + p * F3 + kC[k] * F - k * F;  // indexed by the column j of the 7F
      for (int64_t j = lo; j < hi; ++j) {
        const T wj = wk[j] * gk;
        ob[j] += xa[j] * wj;
        oa[j] += s[j] * xb[j] * wj;
      }
    }
  }
}

template <typename T>
inline void pairg_rows(const T* u, const T* v, const T* w, const T* g, const T* s, const int64_t* a,
                       const int64_t* b, T* gw, T* gg, int64_t F, int64_t p0, int64_t p1) {
  const int64_t F7 = 7 * F, F3 = 3 * F;
  for (int64_t p = p0; p < p1; ++p) {
    const T* __restrict__ ua = u + a[p] * F7;
    const T* __restrict__ ub = u + b[p] * F7;
    const T* __restrict__ va = v + a[p] * F7;
    const T* __restrict__ vb = v + b[p] * F7;
    const T* __restrict__ wp = w + p * F3;
    const T* __restrict__ gp = g + p * 4;
    T* __restrict__ ow = gw + p * F3;
    T* __restrict__ og = gg + p * 4;
    for (int64_t f = 0; f < F3; ++f) ow[f] = T(0);
    for (int e = 0; e < 4; ++e) og[e] = T(0);
    for (int k = 0; k < 7; ++k) {
      const int64_t o = k * F;
      const T gk = gp[kE[k]];
      T* __restrict__ owk = ow + kC[k] * F;
      const T* __restrict__ wk = wp + kC[k] * F;
      T acc[8] = {T(0), T(0), T(0), T(0), T(0), T(0), T(0), T(0)};  // fixed order: no dependence on threads
      int64_t f = 0;
      for (; f + 8 <= F; f += 8) {
        for (int l = 0; l < 8; ++l) {
          const int64_t j = o + f + l;
          const T val = ub[j] * va[j] + s[j] * ua[j] * vb[j];
          owk[f + l] += val * gk;
          acc[l] += val * wk[f + l];
        }
      }
      for (; f < F; ++f) {
        const int64_t j = o + f;
        const T val = ub[j] * va[j] + s[j] * ua[j] * vb[j];
        owk[f] += val * gk;
        acc[0] += val * wk[f];
      }
      og[kE[k]] += ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
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

MLIPDIV_CLONES void convg_f(const float* x, const float* w, const float* g, const float* s, const int64_t* a,
                            const int64_t* b, float* out, int64_t n_pairs, int64_t F, int64_t j0, int64_t j1) {
  convg_columns(x, w, g, s, a, b, out, n_pairs, F, j0, j1);
}
MLIPDIV_CLONES void convg_d(const double* x, const double* w, const double* g, const double* s, const int64_t* a,
                            const int64_t* b, double* out, int64_t n_pairs, int64_t F, int64_t j0, int64_t j1) {
  convg_columns(x, w, g, s, a, b, out, n_pairs, F, j0, j1);
}
MLIPDIV_CLONES void pairg_f(const float* u, const float* v, const float* w, const float* g, const float* s,
                            const int64_t* a, const int64_t* b, float* gw, float* gg, int64_t F, int64_t p0,
                            int64_t p1) {
  pairg_rows(u, v, w, g, s, a, b, gw, gg, F, p0, p1);
}
MLIPDIV_CLONES void pairg_d(const double* u, const double* v, const double* w, const double* g, const double* s,
                            const int64_t* a, const int64_t* b, double* gw, double* gg, int64_t F, int64_t p0,
                            int64_t p1) {
  pairg_rows(u, v, w, g, s, a, b, gw, gg, F, p0, p1);
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

template <typename T>
T* ptr(const at::Tensor& t) {
  return const_cast<T*>(t.data_ptr<T>());
}

void check_fused(const at::Tensor& x, const at::Tensor& w, const at::Tensor& g, int64_t n_pairs) {
  TORCH_CHECK(x.size(1) % 7 == 0, "the atom operand must have 7F columns");
  check_rows(w, w, n_pairs, "w");
  TORCH_CHECK(w.scalar_type() == x.scalar_type() && w.size(1) * 7 == x.size(1) * 3, "w must be (n_pairs, 3F)");
  check_rows(g, g, n_pairs, "g");
  TORCH_CHECK(g.scalar_type() == x.scalar_type() && g.size(1) == 4, "g must be (n_pairs, 4) of the operands' dtype");
}

at::Tensor convg(const at::Tensor& x, const at::Tensor& w, const at::Tensor& g, const at::Tensor& s,
                 const at::Tensor& a, const at::Tensor& b) {
  check_rows(x, x, -1, "x");
  check_fused(x, w, g, a.numel());
  check_signs(s, x);
  check_pairs(a, b, x.size(0));
  auto out = at::zeros_like(x);
  const int64_t F = x.size(1) / 7, n_pairs = a.numel();
  const int64_t* ap = a.data_ptr<int64_t>();
  const int64_t* bp = b.data_ptr<int64_t>();
  at::parallel_for(0, 7 * F, 16, [&](int64_t j0, int64_t j1) {
    if (x.scalar_type() == at::kFloat)
      convg_f(ptr<float>(x), ptr<float>(w), ptr<float>(g), ptr<float>(s), ap, bp, out.data_ptr<float>(), n_pairs, F,
              j0, j1);
    else
      convg_d(ptr<double>(x), ptr<double>(w), ptr<double>(g), ptr<double>(s), ap, bp, out.data_ptr<double>(), n_pairs,
              F, j0, j1);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> pairg(const at::Tensor& u, const at::Tensor& v, const at::Tensor& w,
                                         const at::Tensor& g, const at::Tensor& s, const at::Tensor& a,
                                         const at::Tensor& b) {
  check_rows(u, u, -1, "u");
  check_rows(v, u, u.size(0), "v");
  check_fused(u, w, g, a.numel());
  check_signs(s, u);
  check_pairs(a, b, u.size(0));
  auto gw = at::empty_like(w);
  auto gg = at::empty_like(g);
  const int64_t F = u.size(1) / 7;
  const int64_t* ap = a.data_ptr<int64_t>();
  const int64_t* bp = b.data_ptr<int64_t>();
  at::parallel_for(0, a.numel(), 64, [&](int64_t p0, int64_t p1) {
    if (u.scalar_type() == at::kFloat)
      pairg_f(ptr<float>(u), ptr<float>(v), ptr<float>(w), ptr<float>(g), ptr<float>(s), ap, bp,
              gw.data_ptr<float>(), gg.data_ptr<float>(), F, p0, p1);
    else
      pairg_d(ptr<double>(u), ptr<double>(v), ptr<double>(w), ptr<double>(g), ptr<double>(s), ap, bp,
              gw.data_ptr<double>(), gg.data_ptr<double>(), F, p0, p1);
  });
  return {gw, gg};
}

}  // namespace

TORCH_LIBRARY(mlipdiv_painn, m) {
  m.def("conv(Tensor x, Tensor w, Tensor s, Tensor a, Tensor b) -> Tensor", &conv);
  m.def("pair(Tensor u, Tensor v, Tensor s, Tensor a, Tensor b) -> Tensor", &pair);
  m.def("convg(Tensor x, Tensor w, Tensor g, Tensor s, Tensor a, Tensor b) -> Tensor", &convg);
  m.def("pairg(Tensor u, Tensor v, Tensor w, Tensor g, Tensor s, Tensor a, Tensor b) -> (Tensor, Tensor)", &pairg);
}
