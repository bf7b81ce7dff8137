// The "cpu" backend: the time loop of every cell variant in compiled code.
//
// Per step: the recurrent product (no Python: BLAS, Panels below 8 rows per thread, or oneDNN
// for large weights through the dispatcher), then one fused, vectorised element-wise pass over
// the batch rows. The input projections of all steps and the weight gradients are large GEMMs
// done by the caller (gatedrnn/kernels/cpu.py).
// The math is gatedrnn/cells.py's, transcribed; tests tie both to the NumPy reference.
//
// Dimension letters:
//   T time steps, B batch, H hidden units, G gate blocks, S blocks a step saves.
// Buffers (row-major, contiguous):
//   xp (T, B, G*H) input projections     R (G*H, H) recurrent weights, gate blocks stacked
//   SA, SC (T+1, B, H) the initial state and the state after each step (carried through
//         masked steps): forwards SA[0] = a0 and SA[t+1] after step t; backwards SA[T] = a0
//         and SA[t] after step t (gatedrnn/kernels/states.py)
//   saved (T, B, S*H) gate activations, exactly as Variant.step saves them
//   mask (T, B) bool, true inside a sequence; b_hh (H) reset-after b_cc; p (3, H) peepholes

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <memory>
#include <optional>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif
#include <vector>

namespace {

using at::vec::Vectorized;

// ---- the recurrent product --------------------------------------------------------------
// C (M, N) = A (M, K) · op(W) + beta · C, row-major with leading dimensions.
// op(W) = W^T for W stored (N, K) (transposed = true), W for W stored (K, N).

#ifdef GATEDRNN_BLAS_SYMBOLS
// The Fortran BLAS that libtorch_cpu exports (MKL): no tensor objects, no dispatch per call.
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*,
            const float*, const int*, const float*, const int*, const float*, float*, const int*);
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*,
            const double*, const int*, const double*, const int*, const double*, double*,
            const int*);
}

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* W, int64_t ldw,
          bool transposed, T beta, T* C, int64_t ldc) {
  // Row-major C = A·op(W) is column-major C^T = op(W)^T · A^T.
  const int m = N, n = M, k = K, la = ldw, lb = lda, lc = ldc;
  const T one = 1;
  const char* ta = transposed ? "T" : "N";
  if constexpr (std::is_same_v<T, float>) {
    sgemm_(ta, "N", &m, &n, &k, &one, W, &la, A, &lb, &beta, C, &lc);
  } else {
    dgemm_(ta, "N", &m, &n, &k, &one, W, &la, A, &lb, &beta, C, &lc);
  }
}
#else
// Portable fallback: the same product through ATen on tensor views of the buffers.
template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* W, int64_t ldw,
          bool transposed, T beta, T* C, int64_t ldc) {
  auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  auto a = at::from_blob(const_cast<T*>(A), {M, K}, {lda, 1}, opts);
  auto w = transposed ? at::from_blob(const_cast<T*>(W), {N, K}, {ldw, 1}, opts).t()
                      : at::from_blob(const_cast<T*>(W), {K, N}, {ldw, 1}, opts);
  auto c = at::from_blob(C, {M, N}, {ldc, 1}, opts);
  if (beta == T(0)) {
    at::mm_out(c, a, w);
  } else {
    at::addmm_out(c, c, a, w, beta, 1);
  }
}
#endif

// The recurrent weights of one product, used at every step: MKL packs them once into its
// internal layout (cblas_sgemm_pack) where it can, which makes the per-step GEMMs 1.6-4x
// faster than plain sgemm at batch 32-64. Not below kPackMinRows rows: MKL's packed copy is
// then 10-35x the size of the matrix, and packing it costs more than it saves (Panels,
// below, take those).
#ifdef GATEDRNN_MKL_PACKED
extern "C" {
size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k);
void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n, int k, float alpha,
                      const float* src, int ld, float* dest);
void cblas_sgemm_compute(int layout, int transa, int transb, int m, int n, int k, const float* a,
                         int lda, const float* b, int ldb, float beta, float* c, int ldc);
}
enum { kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151, kBMatrix = 162 };
#endif

// A few rows against the whole of W: C (M, N) = A (M, K) · op(W) + beta · C, for the batch
// rows of one thread below kPackMinRows, where BLAS's general kernels spend more on setting up
// than on the product. op(W) is copied once per call into panels of kPanel columns, each K
// rows of kPanel contiguous values (zero past N: lanes computed, never stored), so that a
// product streams W front to back: read in place, W's rows lie a whole row apart, and the
// prefetcher does not follow. Each group of ROWS rows of A streams the panels once, every A
// value broadcast against a panel row's kUnroll vectors (ROWS × kUnroll accumulators in
// registers, no horizontal sums).
constexpr int kUnroll = 4;
template <typename T>
constexpr int64_t kPanel = kUnroll * Vectorized<T>::size();

template <typename T>
struct Panels {
  at::Tensor values;   // (panels, K, kPanel); torch's allocator aligns it to 64 bytes
  int64_t N = 0, K = 0;

  Panels(const T* W, int64_t ldw, bool transposed, int64_t N_, int64_t K_) : N(N_), K(K_) {
    const int64_t count = (N + kPanel<T> - 1) / kPanel<T>;
    values = at::empty({count, K, kPanel<T>}, c10::CppTypeToScalarType<T>::value);
    T* v = values.data_ptr<T>();
    // Written in order; read transposed, a panel's kPanel rows of W are read 64 bytes at a
    // time across its K steps, so each line of W is fetched once.
    for (int64_t panel = 0; panel < count; ++panel) {
      const int64_t n0 = panel * kPanel<T>, width = std::min(kPanel<T>, N - n0);
      for (int64_t k = 0; k < K; ++k, v += kPanel<T>) {
        if (transposed) {   // op(W)[k, n] = W[n, k]
          for (int64_t j = 0; j < width; ++j) v[j] = W[(n0 + j) * ldw + k];
        } else {
          std::copy_n(W + k * ldw + n0, width, v);
        }
        std::fill(v + width, v + kPanel<T>, T(0));
      }
    }
  }

  template <int ROWS>
  void rows_times(int64_t first, int64_t last, const T* A, int64_t lda, T beta, T* C,
                  int64_t ldc) const {
    using Vec = Vectorized<T>;
    constexpr int64_t V = Vec::size();
    for (int64_t panel = first; panel < last; ++panel) {
      const int64_t n0 = panel * kPanel<T>;
      const T* w = values.data_ptr<T>() + panel * K * kPanel<T>;
      int64_t width[kUnroll];   // columns of C in each vector: V, then N's tail, then none
      for (int u = 0; u < kUnroll; ++u) width[u] = std::clamp<int64_t>(N - n0 - u * V, 0, V);
      Vec acc[ROWS][kUnroll];
      for (int r = 0; r < ROWS; ++r) {
        for (int u = 0; u < kUnroll; ++u) {
          // beta is 0 (C may be garbage, so not read) or 1 (accumulate).
          acc[r][u] = beta == T(0) || width[u] == 0
                          ? Vec(T(0))
                          : Vec(beta) * Vec::loadu(C + r * ldc + n0 + u * V, width[u]);
        }
      }
      for (int64_t k = 0; k < K; ++k, w += kPanel<T>) {
        Vec row[kUnroll];
        for (int u = 0; u < kUnroll; ++u) row[u] = Vec::loadu(w + u * V);
        for (int r = 0; r < ROWS; ++r) {
          const Vec a(A[r * lda + k]);
          for (int u = 0; u < kUnroll; ++u) acc[r][u] = at::vec::fmadd(a, row[u], acc[r][u]);
        }
      }
      for (int r = 0; r < ROWS; ++r) {
        for (int u = 0; u < kUnroll; ++u) {
          if (width[u] > 0) acc[r][u].store(C + r * ldc + n0 + u * V, width[u]);
        }
      }
    }
  }

  // Rows in groups: 4 × kUnroll accumulators need AVX-512's 32 vector registers; with 16
  // (AVX2) groups of 4 would spill, so rows go one at a time.
  static constexpr int kGroup = Vectorized<T>::size() * sizeof(T) >= 64 ? 4 : 1;

  void times(int64_t first, int64_t last, int64_t M, const T* A, int64_t lda, T beta, T* C,
             int64_t ldc) const {
    int64_t m = 0;
    for (; m + kGroup <= M; m += kGroup) {
      rows_times<kGroup>(first, last, A + m * lda, lda, beta, C + m * ldc, ldc);
    }
    if constexpr (kGroup == 4) {
      const T* a = A + m * lda;
      T* c = C + m * ldc;
      switch (M - m) {
        case 3: return rows_times<3>(first, last, a, lda, beta, c, ldc);
        case 2: return rows_times<2>(first, last, a, lda, beta, c, ldc);
        case 1: return rows_times<1>(first, last, a, lda, beta, c, ldc);
      }
    }
  }

  // The panels split over the threads where each gets kMinMacsPerThread multiply-adds (a few
  // µs of work): a batch too small to split over threads by rows (for_row_blocks) still uses
  // them, as BLAS did. Smaller products run in the calling thread, where a fork and join would
  // cost more than the share of work it hands out.
  static constexpr int64_t kMinMacsPerThread = 1 << 17;

  void apply(int64_t M, const T* A, int64_t lda, T beta, T* C, int64_t ldc) const {
    const int64_t count = values.size(0);
    const int64_t grain = std::max<int64_t>(1, kMinMacsPerThread / (M * K * kPanel<T>));
    at::parallel_for(0, count, grain, [&](int64_t first, int64_t last) {
      times(first, last, M, A, lda, beta, C, ldc);
    });
  }
};

// oneDNN's product, through the operators ATen registers for Inductor (mkldnn::
// _reorder_linear_weight packs W once, mkldnn::_linear_pointwise multiplies): libtorch_cpu
// exports no oneDNN symbols to call directly. On an AMD CPU it beats MKL's packed GEMM for
// large weights, but each call costs ~12-15 us more, so the caller passes the size from which it
// takes over (gatedrnn/kernels/onednn.py, with what was measured); a negative one, or a torch
// built without oneDNN, leaves every product to MKL.
using LinearOp = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                            c10::string_view, c10::List<std::optional<at::Scalar>>,
                            std::optional<c10::string_view>);
using ReorderOp = at::Tensor(const at::Tensor&, std::optional<int64_t>);

struct OneDnn {
  std::optional<c10::TypedOperatorHandle<LinearOp>> linear;
  std::optional<c10::TypedOperatorHandle<ReorderOp>> reorder;

  static const OneDnn& get() {
    static const OneDnn found;   // thread-safe initialisation, once per process
    return found;
  }

 private:
  OneDnn() {
    auto& dispatcher = c10::Dispatcher::singleton();
    auto l = dispatcher.findSchema({"mkldnn::_linear_pointwise", ""});
    auto r = dispatcher.findSchema({"mkldnn::_reorder_linear_weight", ""});
    if (!l || !r) return;
    try {   // a schema that has changed since: no oneDNN, rather than a wrong call
      linear = l->typed<LinearOp>();
      reorder = r->typed<ReorderOp>();
    } catch (const c10::Error&) {
      linear.reset();
      reorder.reset();
    }
  }
};

// From kPackMinRows rows MKL's packed GEMM is faster than the panels, whatever their slicing
// (benchmarks/results/cpu-kernel-ab-2026-11-27.txt).
constexpr int64_t kPackMinRows = 8;

// Copying R into panels takes as long as tens of steps gain, so only a call of kPanelMinSteps
// steps or more makes them, and only of at most kPanelMaxBytes: past that MKL's product is as
// fast. Otherwise BLAS or oneDNN (Weight) multiplies R where it lies, as for a stream fed a
// step at a time (Stream, sample_text).
constexpr int64_t kPanelMinSteps = 64;
constexpr int64_t kPanelMaxBytes = 1024 * 1024;

// oneDNN's packing of R costs as much as 15-30 steps of its products gain over MKL's, so
// shorter calls, a stream's steps above all, do not pack it
// (benchmarks/results/cpu-kernel-ab-onednn-short-calls-2026-11-27.txt).
constexpr int64_t kOneDnnMinSteps = 32;

template <typename T>
struct Weight {
  // op(W) as the right operand of C (M, N) = A (M, K) · op(W); see gemm.
  const T* W;
  int64_t ldw, N, K;
  bool transposed;
  std::unique_ptr<float[]> packed;   // uninitialised on purpose: MKL writes all of it
  std::optional<Panels<T>> panels;   // below kPackMinRows rows, if worth the copy
  at::Tensor onednn;                 // op(W)^T for oneDNN (OneDnn): packed, or W in place

  Weight(int64_t M, int64_t steps, const T* W_, int64_t ldw_, bool transposed_, int64_t N_,
         int64_t K_, int64_t onednn_min_values)
      : W(W_), ldw(ldw_), N(N_), K(K_), transposed(transposed_) {
    const bool few_rows = M < kPackMinRows, long_call = steps >= kPanelMinSteps;
    if (few_rows && long_call && N * K * int64_t(sizeof(T)) <= kPanelMaxBytes) {
      panels.emplace(W, ldw, transposed, N, K);
      return;
    }
    if constexpr (std::is_same_v<T, float>) {
      const auto& dnn = OneDnn::get();
      const bool large = onednn_min_values >= 0 && N * K >= onednn_min_values && dnn.linear;
      // oneDNN, packed, in calls of kOneDnnMinSteps or more: from kPackMinRows rows, and below
      // them where R is too large for panels (BLAS then repacks all of R at every step).
      if (large && steps >= kOneDnnMinSteps && (!few_rows || long_call)) {
        // oneDNN's linear takes its weight as (N, K): W itself where transposed, else W^T.
        auto opts = at::TensorOptions().dtype(at::kFloat);
        auto w = transposed
                     ? at::from_blob(const_cast<T*>(W), {N, K}, {ldw, 1}, opts)
                     : at::from_blob(const_cast<T*>(W), {K, N}, {ldw, 1}, opts).t();
        onednn = dnn.reorder->call(w.contiguous(), M);
        return;
      }
      // A few rows in a short call (a stream's step): oneDNN multiplies R where it lies,
      // unpacked, if R is larger than panels take (BLAS would repack it at every step). The
      // backward's products would need R^T copied.
      if (large && few_rows && transposed && ldw == K &&
          N * K * int64_t(sizeof(T)) > kPanelMaxBytes) {
        onednn = at::from_blob(const_cast<T*>(W), {N, K}, at::kFloat);
        return;
      }
    }
    if (few_rows) return;   // BLAS multiplies R where it lies
#ifdef GATEDRNN_MKL_PACKED
    if constexpr (std::is_same_v<T, float>) {
      packed.reset(new float[cblas_sgemm_pack_get_size(kBMatrix, M, N, K) / sizeof(float) + 1]);
      cblas_sgemm_pack(kRowMajor, kBMatrix, transposed ? kTrans : kNoTrans, M, N, K, 1.0f, W,
                       ldw, packed.get());
    }
#endif
  }

  void apply(int64_t M, const T* A, int64_t lda, T beta, T* C, int64_t ldc) const {
    if (panels) return panels->apply(M, A, lda, beta, C, ldc);
    if constexpr (std::is_same_v<T, float>) {
      if (onednn.defined()) return onednn_apply(M, A, lda, beta, C, ldc);
    }
#ifdef GATEDRNN_MKL_PACKED
    if constexpr (std::is_same_v<T, float>) {
      if (packed) {
        return cblas_sgemm_compute(kRowMajor, kNoTrans, kPacked, M, N, K, A, lda, packed.get(),
                                   N, beta, C, ldc);
      }
    }
#endif
    gemm<T>(M, N, K, A, lda, W, ldw, transposed, beta, C, ldc);
  }

  void onednn_apply(int64_t M, const float* A, int64_t lda, float beta, float* C,
                    int64_t ldc) const {
    // The operator returns a new (M, N) tensor: copied into C, or added for beta = 1 (C may
    // be garbage for beta = 0, so it is not read then).
    const at::AutoDispatchBelowADInplaceOrView no_autograd;   // plain tensors: skip that layer
    auto a = at::from_blob(const_cast<float*>(A), {M, K}, {lda, 1}, at::kFloat);
    const auto y = OneDnn::get().linear->call(a, onednn, std::nullopt, "none",
                                                c10::List<std::optional<at::Scalar>>(),
                                                std::nullopt);
    const float* product = y.data_ptr<float>();
    for (int64_t m = 0; m < M; ++m, product += N, C += ldc) {
      if (beta == 0.0f) {
        std::copy_n(product, N, C);
      } else {
        for (int64_t n = 0; n < N; ++n) C[n] = beta * C[n] + product[n];
      }
    }
  }
};

// ---- element-wise helpers -----------------------------------------------------------------

// ATen's polynomial exp (float: within 20 ulp, ~1e-6 relative; double: the exact exp). The
// 1-ulp Sleef exp and tanh cost about as much as the per-step GEMM at moderate batch. The
// polynomial clamps its argument, which turns NaN into a finite number: NaN is put back, so
// a NaN anywhere propagates as through torch.nn.
template <typename T>
inline Vectorized<T> exp(const Vectorized<T>& z) {
  return Vectorized<T>::blendv(z.exp_u20(), z, z.isnan());
}

template <typename T>
inline Vectorized<T> sigmoid(const Vectorized<T>& z) {
  const Vectorized<T> one(1);
  return one / (one + exp(z.neg()));
}

// tanh through one exp: 1 − 2 / (1 + e^{2z}); saturates cleanly at ±1.
template <typename T>
inline Vectorized<T> tanh(const Vectorized<T>& z) {
  const Vectorized<T> one(1), two(2);
  return one - two / (one + exp(z + z));
}

// Runs body(row) for every row of a step (the threads already split the batch, see
// for_row_blocks).
template <typename F>
inline void for_rows(int64_t B, const F& body) {
  for (int64_t b = 0; b < B; ++b) body(b);
}

// Calls body(j, n) over the H units of a row in vector-wide chunks (n < width at the tail).
template <typename T, typename F>
inline void for_units(int64_t H, const F& body) {
  constexpr int64_t V = Vectorized<T>::size();
  for (int64_t j = 0; j < H; j += V) body(j, std::min<int64_t>(V, H - j));
}

template <typename T>
inline Vectorized<T> load(const T* p, int64_t n) { return Vectorized<T>::loadu(p, n); }

template <typename T>
inline void copy_row(T* dst, const T* src, int64_t H) { std::copy(src, src + H, dst); }

// A masked row: the state passes through unchanged and its saved gates are zero (the weight
// gradients multiply them by a zero d_xp, and 0 · garbage could be NaN).
template <typename T>
inline void carry(T* saved, int64_t saved_width, T* state, const T* state_prev, int64_t H) {
  std::fill(saved, saved + saved_width, T(0));
  copy_row(state, state_prev, H);
}

// The GRU family's c<t> = Γ_u ⊙ c~<t> + (1 − Γ_u) ⊙ c<t-1>, with one multiply.
template <typename T>
inline Vectorized<T> gru_update(const Vectorized<T>& gamma_u, const Vectorized<T>& c_tilde,
                                const Vectorized<T>& c_prev) {
  return c_prev + gamma_u * (c_tilde - c_prev);
}

// ---- one step's view of the buffers -------------------------------------------------------

enum Variant { RNN = 0, GRU_SIMPLE = 1, GRU = 2, GRU_RESET_AFTER = 3, LSTM = 4, LSTM_PEEPHOLE = 5,
               RNN_RELU = 6 };

template <typename T>
struct Step {
  int64_t B, H;
  const T* xp;       // (B, G*H)
  const Weight<T>* W;  // the step's recurrent products (see forward_weights)
  const T* b_hh;     // (H) or null
  const T* p;        // (3, H) or null
  const bool* valid; // (B) or null: all valid
  const T* a_prev;   // (B, H)
  const T* c_prev;   // (B, H) or null
  T* a;              // (B, H)
  T* c;              // (B, H) or null
  T* saved;          // (B, S*H)
  T* hp;             // scratch (B, G*H): recurrent products
  T* rc;             // scratch (B, H)
  bool ok(int64_t b) const { return valid == nullptr || valid[b]; }
};

// ---- forward steps, one per variant -------------------------------------------------------

// relu(z) keeps a NaN z, as torch.relu does: only z < 0 becomes 0.
template <typename T>
inline Vectorized<T> relu(const Vectorized<T>& z) {
  return Vectorized<T>::blendv(z, Vectorized<T>(0), z < Vectorized<T>(0));
}

template <typename T, bool RELU>
void rnn_forward(const Step<T>& s) {
  const int64_t H = s.H;
  s.W[0].apply(s.B, s.a_prev, H, 0, s.hp, H);
  for_rows(s.B, [&](int64_t b) {
    if (!s.ok(b)) return copy_row(s.a + b * H, s.a_prev + b * H, H);
    for_units<T>(H, [&](int64_t j, int64_t n) {
      const auto pre = load(s.xp + b * H + j, n) + load(s.hp + b * H + j, n);
      (RELU ? relu(pre) : tanh(pre)).store(s.a + b * H + j, n);
    });
  });
}

template <typename T>
void gru_simple_forward(const Step<T>& s) {
  const int64_t H = s.H, GH = 2 * H;
  s.W[0].apply(s.B, s.a_prev, H, 0, s.hp, GH);
  for_rows(s.B, [&](int64_t b) {
    const T *xp = s.xp + b * GH, *hp = s.hp + b * GH, *c_prev = s.a_prev + b * H;
    T *saved = s.saved + b * GH, *c = s.a + b * H;
    if (!s.ok(b)) return carry(saved, GH, c, c_prev, H);
    for_units<T>(H, [&](int64_t j, int64_t n) {
      auto gamma_u = sigmoid(load(xp + j, n) + load(hp + j, n));
      auto c_tilde = tanh(load(xp + H + j, n) + load(hp + H + j, n));
      auto cp = load(c_prev + j, n);
      gru_update(gamma_u, c_tilde, cp).store(c + j, n);
      gamma_u.store(saved + j, n);
      c_tilde.store(saved + H + j, n);
    });
  });
}

template <typename T>
void gru_forward(const Step<T>& s) {
  const int64_t H = s.H, GH = 3 * H;
  // Γ_u, Γ_r first; Γ_r ⊙ c<t-1> then feeds the candidate's own recurrent product.
  s.W[0].apply(s.B, s.a_prev, H, 0, s.hp, GH);
  for_rows(s.B, [&](int64_t b) {
    const T *xp = s.xp + b * GH, *hp = s.hp + b * GH, *c_prev = s.a_prev + b * H;
    T* saved = s.saved + b * GH;
    for_units<T>(H, [&](int64_t j, int64_t n) {
      auto gamma_u = sigmoid(load(xp + j, n) + load(hp + j, n));
      auto gamma_r = sigmoid(load(xp + H + j, n) + load(hp + H + j, n));
      gamma_u.store(saved + j, n);
      gamma_r.store(saved + H + j, n);
      (gamma_r * load(c_prev + j, n)).store(s.rc + b * H + j, n);
    });
  });
  s.W[1].apply(s.B, s.rc, H, 0, s.hp + 2 * H, GH);
  for_rows(s.B, [&](int64_t b) {
    const T *xp = s.xp + b * GH, *hp = s.hp + b * GH, *c_prev = s.a_prev + b * H;
    T *saved = s.saved + b * GH, *c = s.a + b * H;
    if (!s.ok(b)) return carry(saved, GH, c, c_prev, H);
    for_units<T>(H, [&](int64_t j, int64_t n) {
      auto c_tilde = tanh(load(xp + 2 * H + j, n) + load(hp + 2 * H + j, n));
      auto gamma_u = load(saved + j, n);
      auto cp = load(c_prev + j, n);
      gru_update(gamma_u, c_tilde, cp).store(c + j, n);
      c_tilde.store(saved + 2 * H + j, n);
    });
  });
}

template <typename T>
void gru_reset_after_forward(const Step<T>& s) {
  const int64_t H = s.H, GH = 3 * H, SH = 4 * H;
  s.W[0].apply(s.B, s.a_prev, H, 0, s.hp, GH);
  for_rows(s.B, [&](int64_t b) {
    const T *xp = s.xp + b * GH, *hp = s.hp + b * GH, *c_prev = s.a_prev + b * H;
    T *saved = s.saved + b * SH, *c = s.a + b * H;
    if (!s.ok(b)) return carry(saved, SH, c, c_prev, H);
    for_units<T>(H, [&](int64_t j, int64_t n) {
      auto gamma_u = sigmoid(load(xp + j, n) + load(hp + j, n));
      auto gamma_r = sigmoid(load(xp + H + j, n) + load(hp + H + j, n));
      auto hp_c = load(hp + 2 * H + j, n);
      if (s.b_hh) hp_c = hp_c + load(s.b_hh + j, n);
      auto c_tilde = tanh(load(xp + 2 * H + j, n) + gamma_r * hp_c);
      auto cp = load(c_prev + j, n);
      gru_update(gamma_u, c_tilde, cp).store(c + j, n);
      gamma_u.store(saved + j, n);
      gamma_r.store(saved + H + j, n);
      c_tilde.store(saved + 2 * H + j, n);
      hp_c.store(saved + 3 * H + j, n);
    });
  });
}

template <typename T>
void lstm_forward(const Step<T>& s) {
  const int64_t H = s.H, GH = 4 * H;
  s.W[0].apply(s.B, s.a_prev, H, 0, s.hp, GH);
  for_rows(s.B, [&](int64_t b) {
    const T *xp = s.xp + b * GH, *hp = s.hp + b * GH, *c_prev = s.c_prev + b * H;
    T *saved = s.saved + b * GH, *a = s.a + b * H, *c = s.c + b * H;
    if (!s.ok(b)) {
      carry(saved, GH, a, s.a_prev + b * H, H);
      return copy_row(c, c_prev, H);
    }
    for_units<T>(H, [&](int64_t j, int64_t n) {
      auto pre = [&](int k) { return load(xp + k * H + j, n) + load(hp + k * H + j, n); };
      auto cp = load(c_prev + j, n);
      auto pre_u = pre(0), pre_f = pre(1), pre_o = pre(2);
      if (s.p) {  // peepholes: unit k of c reaches only unit k of a gate
        pre_u = pre_u + load(s.p + j, n) * cp;
        pre_f = pre_f + load(s.p + H + j, n) * cp;
      }
      auto gamma_u = sigmoid(pre_u), gamma_f = sigmoid(pre_f);
      auto c_tilde = tanh(pre(3));
      auto c_new = gamma_u * c_tilde + gamma_f * cp;
      if (s.p) pre_o = pre_o + load(s.p + 2 * H + j, n) * c_new;
      auto gamma_o = sigmoid(pre_o);
      (gamma_o * tanh(c_new)).store(a + j, n);
      c_new.store(c + j, n);
      gamma_u.store(saved + j, n);
      gamma_f.store(saved + H + j, n);
      gamma_o.store(saved + 2 * H + j, n);
      c_tilde.store(saved + 3 * H + j, n);
    });
  });
}

// ---- backward steps -------------------------------------------------------------------------
// Given d_a (and d_c) w.r.t. this step's outputs, write d_xp for the step and the gradients
// w.r.t. the previous state. Masked rows get d_xp = 0 and pass d_a, d_c through unchanged.

template <typename T>
struct BackStep {
  int64_t B, H;
  const Weight<T>* W;  // see backward_weights
  const T* p;
  const bool* valid;
  const T* a_prev;   // (B, H)
  const T* c_prev;   // (B, H) LSTM
  const T* a;        // (B, H) this step's output
  const T* c;        // (B, H) LSTM
  const T* saved;    // (B, S*H)
  const T* d_a;      // (B, H) total gradient w.r.t. a<t>
  const T* d_c;      // (B, H) LSTM: w.r.t. c<t>
  T* d_xp;           // (B, G*H)
  T* d_a_prev;       // (B, H)
  T* d_c_prev;       // (B, H) LSTM
  T* scratch;        // (B, G*H)
  bool ok(int64_t b) const { return valid == nullptr || valid[b]; }
};

template <typename T>
inline void zero_row(T* p, int64_t n) { std::fill(p, p + n, T(0)); }

template <typename T>
inline Vectorized<T> dsigmoid(const Vectorized<T>& g) { return g * (Vectorized<T>(1) - g); }

template <typename T>
inline Vectorized<T> dtanh(const Vectorized<T>& t) { return Vectorized<T>(1) - t * t; }

template <typename T, bool RELU>
void rnn_backward(const BackStep<T>& s) {
  const int64_t H = s.H;
  for_rows(s.B, [&](int64_t b) {
    T *d_xp = s.d_xp + b * H, *d_prev = s.d_a_prev + b * H;
    if (!s.ok(b)) {
      zero_row(d_xp, H);
      return copy_row(d_prev, s.d_a + b * H, H);
    }
    zero_row(d_prev, H);
    for_units<T>(H, [&](int64_t j, int64_t n) {
      const auto d_a = load(s.d_a + b * H + j, n), a = load(s.a + b * H + j, n);
      const auto zero = Vectorized<T>(0);
      (RELU ? Vectorized<T>::blendv(zero, d_a, a > zero) : d_a * dtanh(a)).store(d_xp + j, n);
    });
  });
  s.W[0].apply(s.B, s.d_xp, H, 1, s.d_a_prev, H);
}

template <typename T>
void gru_simple_backward(const BackStep<T>& s) {
  const int64_t H = s.H, GH = 2 * H;
  for_rows(s.B, [&](int64_t b) {
    T *d_xp = s.d_xp + b * GH, *d_prev = s.d_a_prev + b * H;
    const T* d_c = s.d_a + b * H;
    if (!s.ok(b)) {
      zero_row(d_xp, GH);
      return copy_row(d_prev, d_c, H);
    }
    const T *saved = s.saved + b * GH, *c_prev = s.a_prev + b * H;
    for_units<T>(H, [&](int64_t j, int64_t n) {
      auto gamma_u = load(saved + j, n), c_tilde = load(saved + H + j, n);
      auto dc = load(d_c + j, n);
      (dc * (c_tilde - load(c_prev + j, n)) * dsigmoid(gamma_u)).store(d_xp + j, n);
      (dc * gamma_u * dtanh(c_tilde)).store(d_xp + H + j, n);
      (dc * (Vectorized<T>(1) - gamma_u)).store(d_prev + j, n);
    });
  });
  s.W[0].apply(s.B, s.d_xp, GH, 1, s.d_a_prev, H);
}

template <typename T>
void gru_backward(const BackStep<T>& s) {
  const int64_t H = s.H, GH = 3 * H;
  T* d_reset_c = s.scratch;  // (B, H): gradient of Γ_r ⊙ c<t-1>
  for_rows(s.B, [&](int64_t b) {
    T* d_xp = s.d_xp + b * GH;
    if (!s.ok(b)) return zero_row(d_xp, GH);
    const T *saved = s.saved + b * GH, *c_prev = s.a_prev + b * H, *d_c = s.d_a + b * H;
    for_units<T>(H, [&](int64_t j, int64_t n) {
      auto gamma_u = load(saved + j, n), c_tilde = load(saved + 2 * H + j, n);
      auto dc = load(d_c + j, n);
      (dc * (c_tilde - load(c_prev + j, n)) * dsigmoid(gamma_u)).store(d_xp + j, n);
      (dc * gamma_u * dtanh(c_tilde)).store(d_xp + 2 * H + j, n);
    });
  });
  s.W[1].apply(s.B, s.d_xp + 2 * H, GH, 0, d_reset_c, H);
  for_rows(s.B, [&](int64_t b) {
    T *d_xp = s.d_xp + b * GH, *d_prev = s.d_a_prev + b * H;
    const T* d_c = s.d_a + b * H;
    if (!s.ok(b)) return copy_row(d_prev, d_c, H);
    const T *saved = s.saved + b * GH, *c_prev = s.a_prev + b * H;
    for_units<T>(H, [&](int64_t j, int64_t n) {
      auto gamma_u = load(saved + j, n), gamma_r = load(saved + H + j, n);
      auto d_rc = load(d_reset_c + b * H + j, n);
      (d_rc * load(c_prev + j, n) * dsigmoid(gamma_r)).store(d_xp + H + j, n);
      (load(d_c + j, n) * (Vectorized<T>(1) - gamma_u) + d_rc * gamma_r).store(d_prev + j, n);
    });
  });
  s.W[0].apply(s.B, s.d_xp, GH, 1, s.d_a_prev, H);
}

template <typename T>
void gru_reset_after_backward(const BackStep<T>& s) {
  const int64_t H = s.H, GH = 3 * H, SH = 4 * H;
  T* d_hp = s.scratch;  // (B, 3H): gradient of the recurrent products
  for_rows(s.B, [&](int64_t b) {
    T *d_xp = s.d_xp + b * GH, *d_prev = s.d_a_prev + b * H, *dh = d_hp + b * GH;
    const T* d_c = s.d_a + b * H;
    if (!s.ok(b)) {
      zero_row(d_xp, GH);
      zero_row(dh, GH);
      return copy_row(d_prev, d_c, H);
    }
    const T *saved = s.saved + b * SH, *c_prev = s.a_prev + b * H;
    for_units<T>(H, [&](int64_t j, int64_t n) {
      auto gamma_u = load(saved + j, n), gamma_r = load(saved + H + j, n);
      auto c_tilde = load(saved + 2 * H + j, n), hp_c = load(saved + 3 * H + j, n);
      auto dc = load(d_c + j, n);
      auto d_pre_u = dc * (c_tilde - load(c_prev + j, n)) * dsigmoid(gamma_u);
      auto d_pre_c = dc * gamma_u * dtanh(c_tilde);
      auto d_pre_r = d_pre_c * hp_c * dsigmoid(gamma_r);
      d_pre_u.store(d_xp + j, n);
      d_pre_r.store(d_xp + H + j, n);
      d_pre_c.store(d_xp + 2 * H + j, n);
      d_pre_u.store(dh + j, n);
      d_pre_r.store(dh + H + j, n);
      (d_pre_c * gamma_r).store(dh + 2 * H + j, n);
      (dc * (Vectorized<T>(1) - gamma_u)).store(d_prev + j, n);
    });
  });
  s.W[0].apply(s.B, d_hp, GH, 1, s.d_a_prev, H);
}

template <typename T>
void lstm_backward(const BackStep<T>& s) {
  const int64_t H = s.H, GH = 4 * H;
  for_rows(s.B, [&](int64_t b) {
    T *d_xp = s.d_xp + b * GH, *d_a_prev = s.d_a_prev + b * H, *d_c_prev = s.d_c_prev + b * H;
    if (!s.ok(b)) {
      zero_row(d_xp, GH);
      copy_row(d_a_prev, s.d_a + b * H, H);
      return copy_row(d_c_prev, s.d_c + b * H, H);
    }
    zero_row(d_a_prev, H);
    const T *saved = s.saved + b * GH, *c_prev = s.c_prev + b * H, *c = s.c + b * H;
    for_units<T>(H, [&](int64_t j, int64_t n) {
      auto gamma_u = load(saved + j, n), gamma_f = load(saved + H + j, n);
      auto gamma_o = load(saved + 2 * H + j, n), c_tilde = load(saved + 3 * H + j, n);
      auto tanh_c = tanh(load(c + j, n));
      auto da = load(s.d_a + b * H + j, n);
      auto d_pre_o = da * tanh_c * dsigmoid(gamma_o);
      auto dc = load(s.d_c + b * H + j, n) + da * gamma_o * dtanh(tanh_c);
      if (s.p) dc = dc + d_pre_o * load(s.p + 2 * H + j, n);
      auto cp = load(c_prev + j, n);
      auto d_pre_u = dc * c_tilde * dsigmoid(gamma_u);
      auto d_pre_f = dc * cp * dsigmoid(gamma_f);
      auto d_cp = dc * gamma_f;
      if (s.p) d_cp = d_cp + d_pre_u * load(s.p + j, n) + d_pre_f * load(s.p + H + j, n);
      d_pre_u.store(d_xp + j, n);
      d_pre_f.store(d_xp + H + j, n);
      d_pre_o.store(d_xp + 2 * H + j, n);
      (dc * gamma_u * dtanh(c_tilde)).store(d_xp + 3 * H + j, n);
      d_cp.store(d_c_prev + j, n);
    });
  });
  s.W[0].apply(s.B, s.d_xp, GH, 1, s.d_a_prev, H);
}

// ---- the time loops -----------------------------------------------------------------------

struct Shape {
  int64_t G, S;
  bool cell;
};

Shape shape_of(int64_t variant) {
  switch (variant) {
    case RNN: case RNN_RELU: return {1, 0, false};
    case GRU_SIMPLE: return {2, 2, false};
    case GRU: return {3, 3, false};
    case GRU_RESET_AFTER: return {3, 4, false};
    case LSTM: case LSTM_PEEPHOLE: return {4, 4, true};
  }
  TORCH_CHECK(false, "gatedrnn cpu backend: unknown variant id ", variant);
}

// Forward products: a<t-1> · R^T, or for the GRU c<t-1> · R_ur^T then (Γ_r ⊙ c<t-1>) · R_c^T.
template <typename T>
std::vector<Weight<T>> forward_weights(int64_t variant, const T* R, int64_t B, int64_t steps,
                                       int64_t H, int64_t G, int64_t onednn_min) {
  std::vector<Weight<T>> w;
  if (variant == GRU) {
    w.emplace_back(B, steps, R, H, true, 2 * H, H, onednn_min);
    w.emplace_back(B, steps, R + 2 * H * H, H, true, H, H, onednn_min);
  } else {
    w.emplace_back(B, steps, R, H, true, G * H, H, onednn_min);
  }
  return w;
}

// Backward products: d_pre · R, or for the GRU d_pre_c · R_c then [d_pre_u, d_pre_r] · R_ur.
template <typename T>
std::vector<Weight<T>> backward_weights(int64_t variant, const T* R, int64_t B, int64_t steps,
                                        int64_t H, int64_t G, int64_t onednn_min) {
  std::vector<Weight<T>> w;
  if (variant == GRU) {
    w.emplace_back(B, steps, R, H, false, H, 2 * H, onednn_min);
    w.emplace_back(B, steps, R + 2 * H * H, H, false, H, H, onednn_min);
  } else {
    w.emplace_back(B, steps, R, H, false, H, G * H, onednn_min);
  }
  return w;
}

template <typename T>
const T* ptr_or_null(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr<T>() : nullptr;
}

// Batch rows never interact, so the whole time loop splits over row blocks: one block per
// thread, each running every step for its rows (MKL runs single-threaded inside an OpenMP
// parallel region). No synchronisation per step: a fork/join per step costs more than the
// element-wise work it would share out. But every block streams all of R at every step, so a
// block needs at least kMinRowsPerBlock rows, and at most kMaxBytesPerRow of R per row;
// otherwise one block runs and the products are split over the threads instead (Panels by
// columns, BLAS its own way): past kMaxBytesPerRow the blocks' streams of R cost more than
// the split saves.
constexpr int64_t kMinRowsPerBlock = 4;
constexpr int64_t kMaxBytesPerRow = 128 * 1024;

template <typename F>
void for_row_blocks(int64_t B, const at::Tensor& R, const F& body) {
  const int64_t weight_bytes = R.numel() * R.element_size();
  int64_t blocks = std::min<int64_t>(at::get_num_threads(), B / kMinRowsPerBlock);
  while (blocks > 1 && weight_bytes / (B / blocks) > kMaxBytesPerRow) --blocks;
  if (blocks <= 1) return body(0, B);
  at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
    for (int64_t k = first; k < last; ++k) body(k * B / blocks, (k + 1) * B / blocks);
  });
}

// Over hundreds of steps gradients can shrink into the subnormal range, where x86 arithmetic
// is about a hundred times slower. Inside the loops values below the smallest normal (1.2e-38 float, 2.2e-308
// double) count as zero; the thread's previous floating-point mode comes back afterwards.
struct FlushSubnormals {
#if defined(__SSE__) || defined(__x86_64__)
  unsigned int saved = _mm_getcsr();
  FlushSubnormals() { _mm_setcsr(saved | 0x8040); }   // flush-to-zero | denormals-are-zero
  ~FlushSubnormals() { _mm_setcsr(saved); }
#endif
};

template <typename T>
T* rows_of(const at::Tensor& t, int64_t step, int64_t B, int64_t r0) {
  // Row r0 of time step `step` in a (T, B, W) buffer (step 0 for a (B, W) one).
  const int64_t W = t.size(-1);
  return t.data_ptr<T>() + (step * B + r0) * W;
}

template <typename T>
T* rows_of(const std::optional<at::Tensor>& t, int64_t step, int64_t B, int64_t r0) {
  return t.has_value() && t->defined() ? rows_of<T>(*t, step, B, r0) : nullptr;
}

struct Problem {
  int64_t variant, T, B, H;
  Shape sh;
  bool reverse;
  const bool* valid;   // (T, B) or null
  int64_t onednn_min;  // oneDNN multiplies weights of at least this many values (OneDnn)
  int64_t step(int64_t i) const { return reverse ? T - 1 - i : i; }
  // Indices into the (T+1, B, H) state sequences.
  int64_t after(int64_t t) const { return reverse ? t : t + 1; }
  int64_t before(int64_t t) const { return reverse ? t + 1 : t; }
};

template <typename T>
void forward_rows(const Problem& pb, int64_t r0, int64_t r1, const at::Tensor& xp,
                  const at::Tensor& R, const std::optional<at::Tensor>& b_hh,
                  const std::optional<at::Tensor>& p, bool keep_saved, at::Tensor& SA,
                  at::Tensor& SC, at::Tensor& saved) {
  const FlushSubnormals flush;
  const int64_t M = r1 - r0, H = pb.H, G = pb.sh.G;
  auto scratch = at::empty({M, G * H + H}, xp.options());
  const auto weights = forward_weights<T>(pb.variant, R.data_ptr<T>(), M, pb.T, H, G,
                                            pb.onednn_min);
  Step<T> s{M, H, nullptr, weights.data(), ptr_or_null<T>(b_hh), ptr_or_null<T>(p), nullptr,
            nullptr, nullptr, nullptr, nullptr, nullptr,
            scratch.data_ptr<T>(), scratch.data_ptr<T>() + M * G * H};
  for (int64_t i = 0; i < pb.T; ++i) {
    const int64_t t = pb.step(i);
    s.xp = rows_of<T>(xp, t, pb.B, r0);
    s.valid = pb.valid ? pb.valid + t * pb.B + r0 : nullptr;
    s.a_prev = rows_of<T>(SA, pb.before(t), pb.B, r0);
    s.a = rows_of<T>(SA, pb.after(t), pb.B, r0);
    if (pb.sh.cell) {
      s.c_prev = rows_of<T>(SC, pb.before(t), pb.B, r0);
      s.c = rows_of<T>(SC, pb.after(t), pb.B, r0);
    }
    s.saved = rows_of<T>(saved, keep_saved ? t : 0, pb.B, r0);
    switch (pb.variant) {
      case RNN: rnn_forward<T, false>(s); break;
      case RNN_RELU: rnn_forward<T, true>(s); break;
      case GRU_SIMPLE: gru_simple_forward(s); break;
      case GRU: gru_forward(s); break;
      case GRU_RESET_AFTER: gru_reset_after_forward(s); break;
      default: lstm_forward(s);
    }
  }
}

const bool* valid_or_null(const std::optional<at::Tensor>& mask) {
  return mask.has_value() && mask->defined() ? mask->data_ptr<bool>() : nullptr;
}

std::vector<at::Tensor> forward(int64_t variant, const at::Tensor& xp, const at::Tensor& R,
                                const std::optional<at::Tensor>& b_hh,
                                const std::optional<at::Tensor>& p, const at::Tensor& a0,
                                const std::optional<at::Tensor>& c0,
                                const std::optional<at::Tensor>& mask, bool reverse,
                                bool keep_saved, int64_t onednn_min) {
  const Problem pb{variant, xp.size(0), xp.size(1), R.size(1), shape_of(variant), reverse,
                   valid_or_null(mask), onednn_min};
  const int64_t first = pb.reverse ? pb.T : 0;
  auto SA = at::empty({pb.T + 1, pb.B, pb.H}, xp.options());
  SA[first].copy_(a0);
  at::Tensor SC;
  if (pb.sh.cell) {
    SC = at::empty({pb.T + 1, pb.B, pb.H}, xp.options());
    SC[first].copy_(*c0);
  }
  auto saved = at::empty({keep_saved ? pb.T : 1, pb.B, pb.sh.S * pb.H}, xp.options());
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "gatedrnn_cpu_forward", [&] {
    for_row_blocks(pb.B, R, [&](int64_t r0, int64_t r1) {
      forward_rows<scalar_t>(pb, r0, r1, xp, R, b_hh, p, keep_saved, SA, SC, saved);
    });
  });
  return {SA, SC, saved};
}

template <typename T>
void backward_rows(const Problem& pb, int64_t r0, int64_t r1, const at::Tensor& d_A,
                   const at::Tensor& d_a_n, const std::optional<at::Tensor>& d_c_n,
                   const at::Tensor& R, const std::optional<at::Tensor>& p, const at::Tensor& SA,
                   const std::optional<at::Tensor>& SC, const at::Tensor& saved,
                   at::Tensor& d_xp, at::Tensor& d_a0, at::Tensor& d_c0) {
  const FlushSubnormals flush;
  const int64_t M = r1 - r0, H = pb.H, G = pb.sh.G, B = pb.B;
  // Two carry buffers per state, swapped each step: the gradient w.r.t. the state entering
  // the step just processed, and the one being computed for the step before it.
  auto buffers = at::empty({5, M, H}, d_A.options());
  T* carry_a = buffers[0].data_ptr<T>();
  T* next_a = buffers[1].data_ptr<T>();
  T* carry_c = buffers[2].data_ptr<T>();
  T* next_c = buffers[3].data_ptr<T>();
  T* total_a = buffers[4].data_ptr<T>();
  auto scratch = at::empty({M, G * H}, d_A.options());
  std::copy_n(rows_of<T>(d_a_n, 0, B, r0), M * H, carry_a);
  if (pb.sh.cell) std::copy_n(rows_of<T>(d_c_n, 0, B, r0), M * H, carry_c);
  const auto weights = backward_weights<T>(pb.variant, R.data_ptr<T>(), M, pb.T, H, G,
                                             pb.onednn_min);
  BackStep<T> s{M, H, weights.data(), ptr_or_null<T>(p)};
  s.scratch = scratch.data_ptr<T>();
  for (int64_t i = pb.T - 1; i >= 0; --i) {
    const int64_t t = pb.step(i);
    s.valid = pb.valid ? pb.valid + t * B + r0 : nullptr;
    s.a_prev = rows_of<T>(SA, pb.before(t), B, r0);
    s.a = rows_of<T>(SA, pb.after(t), B, r0);
    if (pb.sh.cell) {
      s.c_prev = rows_of<T>(SC, pb.before(t), B, r0);
      s.c = rows_of<T>(SC, pb.after(t), B, r0);
    }
    s.saved = rows_of<T>(saved, t, B, r0);
    const T* dA_t = rows_of<T>(d_A, t, B, r0);
    for (int64_t k = 0; k < M * H; ++k) total_a[k] = carry_a[k] + dA_t[k];
    s.d_a = total_a;
    s.d_c = carry_c;
    s.d_xp = rows_of<T>(d_xp, t, B, r0);
    s.d_a_prev = next_a;
    s.d_c_prev = next_c;
    switch (pb.variant) {
      case RNN: rnn_backward<T, false>(s); break;
      case RNN_RELU: rnn_backward<T, true>(s); break;
      case GRU_SIMPLE: gru_simple_backward(s); break;
      case GRU: gru_backward(s); break;
      case GRU_RESET_AFTER: gru_reset_after_backward(s); break;
      default: lstm_backward(s);
    }
    std::swap(carry_a, next_a);
    std::swap(carry_c, next_c);
  }
  std::copy_n(carry_a, M * H, rows_of<T>(d_a0, 0, B, r0));
  if (pb.sh.cell) std::copy_n(carry_c, M * H, rows_of<T>(d_c0, 0, B, r0));
}

std::vector<at::Tensor> backward(int64_t variant, const at::Tensor& d_A, const at::Tensor& d_a_n,
                                 const std::optional<at::Tensor>& d_c_n, const at::Tensor& R,
                                 const std::optional<at::Tensor>& p, const at::Tensor& SA,
                                 const std::optional<at::Tensor>& SC, const at::Tensor& saved,
                                 const std::optional<at::Tensor>& mask, bool reverse,
                                 int64_t onednn_min) {
  const Problem pb{variant, d_A.size(0), d_A.size(1), d_A.size(2), shape_of(variant), reverse,
                   valid_or_null(mask), onednn_min};
  auto d_xp = at::empty({pb.T, pb.B, pb.sh.G * pb.H}, d_A.options());
  auto d_a0 = at::empty({pb.B, pb.H}, d_A.options());
  auto d_c0 = pb.sh.cell ? at::empty({pb.B, pb.H}, d_A.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(d_A.scalar_type(), "gatedrnn_cpu_backward", [&] {
    for_row_blocks(pb.B, R, [&](int64_t r0, int64_t r1) {
      backward_rows<scalar_t>(pb, r0, r1, d_A, d_a_n, d_c_n, R, p, SA, SC, saved, d_xp, d_a0,
                              d_c0);
    });
  });
  return {d_xp, d_a0, d_c0};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "time loop forward of one layer-direction");
  m.def("backward", &backward, "time loop backward: d_xp and the initial states' gradients");
  m.def("onednn_available", [] { return OneDnn::get().linear.has_value(); },
        "whether large float32 products can go to oneDNN (see OneDnn)");
}
