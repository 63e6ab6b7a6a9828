// The framework's hot loops in C++, float32 on the CPU, each the twin of a Python path that
// stays the reference (and runs wherever this file does not apply or does not build):
//
// 1. forward_steps / backward_steps: the teacher-forcing node's step loops
//    (assembly/nn/teacher_forcing.py, glue in teacher_forcing_native.py) for built-in LSTM
//    layers with additive (or concat) attention; the equations, the buffer layout
//    (StepRows) and the names are that module's. tests/test_native_teacher_forcing.py.
//    Decoding runs forward_steps one step at a time (assembly/nn/decoder_step_native.py,
//    tests/test_decode_native.py).
// 2. attend: one decoding step's additive/concat attention without gradients, for the
//    decoders the step above does not cover (assembly/nn/attention.py).
// 3. lstm_layer_forward / lstm_layer_backward: the encoder LSTM layer node's step loops
//    (assembly/nn/lstm_node.py). tests/test_lstm_node.py.
// Row loops run on torch's OpenMP threads (at::parallel_for; the build passes -fopenmp,
// without which the header's parallel_for runs serially). dropout.cpp holds the masks.
//
// What this buys: per step, the Python loops make ~20 ATen calls forward and ~25 backward,
// each a few microseconds of interpreter and dispatch around a tiny kernel. Here a step is
// the unavoidable matmuls (ATen, so MKL or oneDNN) plus one hand-written loop per
// pointwise stage, vectorised by the compiler:
//   forward:  per layer [gates = [x; h] W, then + b, i f g o, c, tanh c, h in one pass]
//             q = 2 W_q s; per row: scores over its own source extent, softmax, context
//             (one pass per row: no work on the padding of shorter sources); W_c; + b_c,
//             tanh and the dropout on h~ in one pass.
//   backward: δ[ctx; s] = δu W_c; per row: δa = δctx Vᵀ, δe, then δK, Σ_s δz and δv in one
//             pass (σ recomputed: keeping it costs more in fresh memory than it saves);
//             δs = r (4 diag(v) W_q) + …; per layer one pass for δc and δgates, one
//             matmul for [δx; δh_{t−1}].
// Measured: benchmarks/teacher_forcing.py --native (whole updates), compare_peers.py.
// exp runs as a polynomial the compiler vectorises (Cephes' expf: ~1 ulp on the reduced
// range, |x| clamped to 87, where float's exp under/overflows anyway), σ(x) = 1/(1 + e^−x)
// with the reciprocal by Newton's method (≤ 1.5e-7 relative; a division made the backward
// 1.3× slower) and tanh x = 2σ(2x) − 1; results differ from the Python paths' by float rounding only
// (~1e-7 relative; gradients with cancellation, such as a bias's, a few digits more, and
// no further from float64 than the Python paths' own).
//
// Built on first use by assembly/nn/native/__init__.py (torch.utils.cpp_extension, ~20 s,
// cached); without a compiler the Python paths run.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

using Tensor = at::Tensor;

// Cephes' expf, branch-free so that loops calling it vectorise (no std::floor/fmin calls:
// the flags in __init__.py let the compiler if-convert the compares).
inline float exp_poly(float x) {
  x = x < -87.0f ? -87.0f : (x > 87.0f ? 87.0f : x);
  const float t = x * 1.44269504088896341f + 0.5f;
  const int32_t k = static_cast<int32_t>(t) - (t < 0.0f ? 1 : 0);  // floor
  const float n = static_cast<float>(k);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;  // x − n ln 2, in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return (p * r * r + r + 1.0f) * __builtin_bit_cast(float, (k + 127) << 23);
}
// 1/d for 1 ≤ d ≤ 1 + e^87 without a division (vdivps is the slowest step of a vectorised
// sigmoid): a bit-pattern first guess (within 12 %) and three Newton steps (each squares
// the relative error: 1.4e-2, 2e-4, 4e-8).
inline float reciprocal(float d) {
  float r = __builtin_bit_cast(float, 0x7EF311C3 - __builtin_bit_cast(int32_t, d));
  r = r * (2.0f - d * r);
  r = r * (2.0f - d * r);
  return r * (2.0f - d * r);
}
inline float sigmoid(float x) { return reciprocal(1.0f + exp_poly(-x)); }
inline float tanh_(float x) { return 2.0f * reciprocal(1.0f + exp_poly(-2.0f * x)) - 1.0f; }

// An absent optional tensor comes from Python as an empty one.
inline bool present(const Tensor& t) { return t.defined() && t.numel() > 0; }

// The buffers read and written through raw pointers are dense and row-major.
inline void check_dense(std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    TORCH_CHECK(!present(*t) || (t->is_contiguous() && t->scalar_type() == at::kFloat),
                "teacher_forcing native: a buffer is not contiguous float32");
  }
}
inline void check_dense(const std::vector<Tensor>& tensors) {
  for (const Tensor& t : tensors) check_dense({&t});
}

// One row of the decoder's LSTM step: a (4H) pre-activations without the bias in (the
// bias is added here: addmm's broadcast copy of it costs more), [i f g o] out in place;
// c_t, tanh c_t and h_t written. (Row kernels take restrict pointers and sizes by value:
// inside a parallel_for lambda, captured references keep GCC from vectorising.)
inline void lstm_row(float* __restrict a, const float* __restrict bias,
                     const float* __restrict c_prev, float* __restrict c_next,
                     float* __restrict tanh_c, float* __restrict h, int64_t H) {
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const float i = sigmoid(a[j] + bias[j]), f = sigmoid(a[H + j] + bias[H + j]);
    const float g = tanh_(a[2 * H + j] + bias[2 * H + j]);
    const float o = sigmoid(a[3 * H + j] + bias[3 * H + j]);
    const float c = f * c_prev[j] + i * g;
    const float t = tanh_(c);
    a[j] = i;
    a[H + j] = f;
    a[2 * H + j] = g;
    a[3 * H + j] = o;
    c_next[j] = c;
    tanh_c[j] = t;
    h[j] = o * t;
  }
}

// One row of the encoder's LSTM step (lstm_node's conventions: the cell gate's
// pre-activation is 2z, 2c is kept): g (4H) in, [i f s o] out in place; 2g and tanh c
// into m's first and last quarters; 2c and h written. c_prev is null at a zero state.
inline void lstm_layer_row(float* __restrict g, float* __restrict m,
                           const float* __restrict c_prev, float* __restrict c_next,
                           float* __restrict h, int64_t H) {
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const float i = sigmoid(g[j]), f = sigmoid(g[H + j]);
    const float s = sigmoid(g[2 * H + j]), o = sigmoid(g[3 * H + j]);
    const float g2 = 4.0f * s - 2.0f;  // 2 tanh z = 4σ(2z) − 2
    const float c2 = (c_prev != nullptr ? f * c_prev[j] : 0.0f) + i * g2;  // 2c
    const float tc = 2.0f * sigmoid(c2) - 1.0f;  // tanh c = 2σ(2c) − 1
    g[j] = i;
    g[H + j] = f;
    g[2 * H + j] = s;
    g[3 * H + j] = o;
    m[j] = g2;
    m[3 * H + j] = tc;
    c_next[j] = c2;
    h[j] = o * tc;
  }
}

// h~ = tanh(u + b_c), kept before its dropout (in squashed) and fed after it
inline void feature_row(const float* __restrict u, const float* __restrict bias,
                        float* __restrict squashed, const float* __restrict mask,
                        float* __restrict fed, int64_t F) {
#pragma omp simd
  for (int64_t j = 0; j < F; ++j) {
    const float v = tanh_(u[j] + bias[j]);
    squashed[j] = v;
    fed[j] = v * mask[j];
  }
}
inline void feature_row(const float* __restrict u, const float* __restrict bias,
                        float* __restrict fed, int64_t F) {
#pragma omp simd
  for (int64_t j = 0; j < F; ++j) fed[j] = tanh_(u[j] + bias[j]);
}

// The additive score Σ_a 2v_a σ(k_a + q_a) of one (row, source) pair.
inline float score(const float* __restrict k, const float* __restrict q,
                   const float* __restrict v2, int64_t A) {
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int64_t c = 0; c < A; ++c) acc += v2[c] * sigmoid(k[c] + q[c]);
  return acc;
}

// y += a x
inline void axpy(float* __restrict y, const float* __restrict x, float a, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] += a * x[j];
}

// One row's attention over its own source extent e (the positions up to its last
// unmasked one): scores e_s = blocked_s + Σ_a 2v_a σ(K_sa + q_a) (blocked: 0 or −inf),
// their softmax into w (S; 0 from e on) and the context Σ_s w_s V_s into ctx (M).
inline void attention_row(const float* K, const float* V, const float* blocked,
                          const float* q, const float* v2, int64_t e, int64_t S, int64_t A,
                          int64_t M, float* w, float* ctx) {
  float most = -INFINITY;
  for (int64_t s = 0; s < e; ++s) {
    w[s] = blocked[s] + score(K + s * A, q, v2, A);
    most = w[s] > most ? w[s] : most;
  }
  float total = 0.f;
  for (int64_t s = 0; s < e; ++s) {
    w[s] = std::exp(w[s] - most);  // exactly 0 where masked
    total += w[s];
  }
  const float scale = 1.0f / total;
  for (int64_t s = 0; s < e; ++s) w[s] *= scale;
  for (int64_t s = e; s < S; ++s) w[s] = 0.f;
  for (int64_t m = 0; m < M; ++m) ctx[m] = 0.f;
  for (int64_t s = 0; s < e; ++s) axpy(ctx, V + s * M, w[s], M);
}

// Rows per thread: at least this many, and a per-row loop with fewer than kParallelWork
// elements stays on one thread (OpenMP's fork/join costs more than such a loop saves).
constexpr int64_t kRowGrain = 16;
constexpr int64_t kParallelWork = 4096;
inline int64_t grain(int64_t rows, int64_t width) {
  return rows * width >= kParallelWork ? kRowGrain : rows;
}

}  // namespace

// Forward through time. Fills, for every step: each layer's act [i f g o] (N, 4H), c (its
// state buffer, B + N rows), tanh c (N, H) and h (the columns after its input in xs[l],
// a state buffer), the input of the layer above (dropout applied), the attention queries
// 2 W_q s (N, A), weights (N, S), [ctx; s] (N, M + O), h~ before dropout (N, F; only with
// feature_noise) and h~ fed to the next step (xs[0]'s columns from feed_col).
//   active: rows each step runs (n_0 ≥ n_1 ≥ …); batch: B
//   xs[l] (B + N, I_l + H_l), cs[l] (B + N, H_l): block 0 holds the initial state
//   weights[l] ((I_l + H_l), 4H_l) = [W_ih W_hh]ᵀ, biases[l] (4H_l) = b_ih + b_hh (zeros
//   without bias)
//   noises[l] (N, I_l): the dropout mask on layer l's input (empty for none, and for l = 0)
//   keys (B, S, A), values (B, S, M), blocked (B, S): 0 or −inf, extents (B): one past
//   each row's last unmasked source position (int64)
//   query2 (O, A) = 2 W_qᵀ, vector2 (A) = 2 v, w_c_t (M + O, F) = W_cᵀ, b_c (F)
void forward_steps(const std::vector<int64_t>& active, int64_t batch,
                   const std::vector<Tensor>& xs, const std::vector<Tensor>& cs,
                   const std::vector<Tensor>& acts, const std::vector<Tensor>& tanh_cs,
                   const std::vector<Tensor>& weights, const std::vector<Tensor>& biases,
                   const std::vector<int64_t>& inputs, const std::vector<Tensor>& noises,
                   const Tensor& keys, const Tensor& values, const Tensor& blocked,
                   const Tensor& extents, const Tensor& query2, const Tensor& vector2,
                   const Tensor& queries, const Tensor& attended, const Tensor& joined,
                   const Tensor& w_c_t, const Tensor& b_c, const Tensor& squashed_tanh,
                   const Tensor& feature_noise, int64_t feed_col) {
  check_dense(xs), check_dense(cs), check_dense(acts), check_dense(tanh_cs);
  check_dense(noises);
  check_dense({&keys, &values, &blocked, &query2, &vector2, &queries, &attended, &joined,
               &squashed_tanh, &feature_noise});
  TORCH_CHECK(extents.scalar_type() == at::kLong && extents.is_contiguous());
  const int64_t layers = static_cast<int64_t>(xs.size());
  const int64_t S = keys.size(1), A = keys.size(2), M = values.size(2);
  const int64_t O = query2.size(0), F = w_c_t.size(1), J = M + O;
  const int64_t* ext = extents.data_ptr<int64_t>();
  const float* K = keys.data_ptr<float>();
  const float* V = values.data_ptr<float>();
  const float* blk = blocked.data_ptr<float>();
  const float* v2 = vector2.data_ptr<float>();
  Tensor pre = at::empty({batch, F}, keys.options());  // W_c [ctx; s] + b_c of one step
  int64_t off = 0, read = 0;  // step t's first step row; the first row of block t
  for (const int64_t n : active) {
    const int64_t write = batch + off;  // block t + 1
    for (int64_t l = 0; l < layers; ++l) {
      const int64_t I = inputs[l], H = cs[l].size(1), width = xs[l].size(1);
      Tensor act = acts[l].narrow(0, off, n);  // (n, 4H)
      Tensor xin = xs[l].narrow(0, read, n);  // [x_t; h_{t−1}]
      at::mm_out(act, xin, weights[l]);
      const float* bias = biases[l].data_ptr<float>();
      float* a = act.data_ptr<float>();
      const float* c_prev = cs[l].data_ptr<float>() + read * H;
      float* c_next = cs[l].data_ptr<float>() + write * H;
      float* tc = tanh_cs[l].data_ptr<float>() + off * H;
      float* h = xs[l].data_ptr<float>() + write * width + I;
      float* above = nullptr;  // the next layer's input at step t (block t of its buffer)
      const float* noise = nullptr;
      int64_t above_width = 0;
      if (l + 1 < layers) {
        above_width = xs[l + 1].size(1);
        above = xs[l + 1].data_ptr<float>() + read * above_width;
        if (present(noises[l + 1])) noise = noises[l + 1].data_ptr<float>() + off * H;
      }
      at::parallel_for(0, n, grain(n, 4 * H), [&](int64_t lo, int64_t hi) {
        for (int64_t r = lo; r < hi; ++r) {
          float* hr = h + r * width;
          lstm_row(a + r * 4 * H, bias, c_prev + r * H, c_next + r * H, tc + r * H, hr, H);
          if (above != nullptr) {
            float* ab = above + r * above_width;
            if (noise != nullptr) {
              const float* m = noise + r * H;
#pragma omp simd
              for (int64_t j = 0; j < H; ++j) ab[j] = hr[j] * m[j];
            } else {
              std::memcpy(ab, hr, H * sizeof(float));
            }
          }
        }
      });
    }
    // Attention on the top layer's h_t: q = 2 W_q s, e_s = Σ_a 2 v_a σ(K_sa + q_a) + mask.
    const int64_t top_width = xs[layers - 1].size(1);
    Tensor top = xs[layers - 1].narrow(0, write, n).narrow(1, inputs[layers - 1], O);
    Tensor q = queries.narrow(0, off, n);
    at::mm_out(q, top, query2);
    const float* qp = q.data_ptr<float>();
    const float* tp = top.data_ptr<float>();
    float* ap = attended.data_ptr<float>() + off * S;
    float* jp = joined.data_ptr<float>() + off * J;
    at::parallel_for(0, n, kRowGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        float* ctx = jp + b * J;  // [Σ_s a_s V_s; s_t]
        attention_row(K + b * S * A, V + b * S * M, blk + b * S, qp + b * A, v2, ext[b], S,
                      A, M, ap + b * S, ctx);
        std::memcpy(ctx + M, tp + b * top_width, O * sizeof(float));
      }
    });
    // h~ = tanh(W_c [ctx; s] + b_c), then its dropout, written where step t + 1 reads it.
    Tensor u = pre.narrow(0, 0, n);
    at::mm_out(u, joined.narrow(0, off, n), w_c_t);  // b_c added below
    const float* bc = b_c.data_ptr<float>();
    const float* up = u.data_ptr<float>();
    const int64_t feed_width = xs[0].size(1);
    float* feed = xs[0].data_ptr<float>() + write * feed_width + feed_col;
    const bool dropped = present(feature_noise);
    float* st = dropped ? squashed_tanh.data_ptr<float>() + off * F : nullptr;
    const float* fn = dropped ? feature_noise.data_ptr<float>() + off * F : nullptr;
    at::parallel_for(0, n, grain(n, F), [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        if (dropped) feature_row(up + b * F, bc, st + b * F, fn + b * F, feed + b * feed_width, F);
        else feature_row(up + b * F, bc, feed + b * feed_width, F);
      }
    });
    read = write;
    off += n;
  }
}

// Backward through time, from step T − 1 down to 0. Reads the forward's buffers and
// d_u = ∂h~ ⊙ d_tanh (N, F; the outside share of δu, added to in place), d_tanh = m ⊙ (1 −
// h~²), d_joined (N, M + O) prefilled with [0, ∂s] when has_d_top; fills d_joined
// ([δctx; δs from W_c]), d_scores (N, S), d_gates[l] (N, 4H), d_keys (B, S, A; zeroed by
// the caller, without the factor 2 v), d_q (N, A) = Σ_s δz and dv_part (threads, A;
// zeroed: one partial Σ δe σ per thread). Returns [δh~_{−1}, δh_{−1} per layer, δc_{−1}
// per layer], each (B, ·).
//   factors[l] (N, 4H): [g σ'(i), c_{t−1} σ'(f), i (1 − g²), tanh c σ'(o)],
//   d_cells[l] (N, H): o (1 − tanh² c); acts[l]: [i f g o] (f is read)
//   weights[l] (4H, first_l + H) = [W_in W_hh] (layer 0 without its static columns)
//   noises[l] (N, I_l), d_belows[l] (N, H_l): the outside gradient of layer l's outputs
//   (l below the top; empty for none); d_weights (N, S) the outside gradient of the
//   attention weights (empty for none); query4 (A, O) = 4 diag(v) W_q.
std::vector<Tensor> backward_steps(
    const std::vector<int64_t>& active, int64_t batch, const std::vector<Tensor>& factors,
    const std::vector<Tensor>& d_cells, const std::vector<Tensor>& acts,
    const std::vector<Tensor>& d_gates, const std::vector<Tensor>& weights,
    const std::vector<int64_t>& firsts, const std::vector<Tensor>& noises,
    const std::vector<Tensor>& d_belows, const Tensor& d_u, const Tensor& d_tanh,
    const Tensor& w_c, const Tensor& d_joined, bool has_d_top, const Tensor& values,
    const Tensor& attended, const Tensor& d_weights, const Tensor& d_scores,
    const Tensor& keys, const Tensor& queries, const Tensor& extents, const Tensor& query4,
    const Tensor& d_keys, const Tensor& d_q, const Tensor& dv_part) {
  check_dense(factors), check_dense(d_cells), check_dense(acts), check_dense(d_gates);
  check_dense({&d_joined, &attended, &d_weights, &d_scores, &keys, &values, &queries,
               &d_keys, &d_q, &dv_part});
  TORCH_CHECK(extents.scalar_type() == at::kLong && extents.is_contiguous());
  const int64_t layers = static_cast<int64_t>(factors.size());
  const int64_t S = keys.size(1), A = keys.size(2), M = values.size(2);
  const int64_t J = d_joined.size(1);
  const int64_t steps = static_cast<int64_t>(active.size());
  const int64_t* ext = extents.data_ptr<int64_t>();
  const float* K = keys.data_ptr<float>();
  const float* V = values.data_ptr<float>();
  float* dK = d_keys.data_ptr<float>();
  float* dv_threads = dv_part.data_ptr<float>();
  TORCH_CHECK(dv_part.size(0) >= at::get_num_threads(), "dv_part needs a row per thread");
  std::vector<int64_t> offsets(steps + 1, 0);
  for (int64_t t = 0; t < steps; ++t) offsets[t + 1] = offsets[t] + active[t];
  // What flows into step t from step t + 1: its n_{t+1} rows, a prefix of step t's (the
  // rows that end at step t start from zero).
  Tensor d_feed;
  std::vector<Tensor> d_h(layers), d_c(layers);
  for (int64_t t = steps - 1; t >= 0; --t) {
    const int64_t n = active[t], off = offsets[t];
    Tensor du = d_u.narrow(0, off, n);
    if (present(d_feed)) {
      const int64_t m = d_feed.size(0);
      du.narrow(0, 0, m).addcmul_(d_feed, d_tanh.narrow(0, off, m));
    }
    Tensor dj = d_joined.narrow(0, off, n);  // [δctx; ∂s + δs from W_c]
    if (has_d_top) dj.addmm_(du, w_c);
    else at::mm_out(dj, du, w_c);
    const float* ap = attended.data_ptr<float>() + off * S;
    const float* djp = dj.data_ptr<float>();
    const float* dwp = present(d_weights) ? d_weights.data_ptr<float>() + off * S : nullptr;
    float* de = d_scores.data_ptr<float>() + off * S;
    const float* qp = queries.data_ptr<float>() + off * A;
    float* rp = d_q.data_ptr<float>() + off * A;
    at::parallel_for(0, n, kRowGrain, [&](int64_t lo, int64_t hi) {
      float* dv = dv_threads + at::get_thread_num() * A;
      for (int64_t b = lo; b < hi; ++b) {
        // δa = δctx Vᵀ (+ ∂a), δe = a ⊙ (δa − ⟨a, δa⟩), over the row's source extent
        const float* dctx = djp + b * J;
        const float* a = ap + b * S;
        float* d = de + b * S;
        const int64_t e = ext[b];
        float dot = 0.f;
        for (int64_t s = 0; s < e; ++s) {
          const float* v = V + (b * S + s) * M;
          float acc = 0.f;
#pragma omp simd reduction(+ : acc)
          for (int64_t m = 0; m < M; ++m) acc += dctx[m] * v[m];
          if (dwp != nullptr) acc += dwp[b * S + s];
          d[s] = acc;
          dot += a[s] * acc;
        }
        for (int64_t s = 0; s < e; ++s) d[s] = a[s] * (d[s] - dot);
        for (int64_t s = e; s < S; ++s) d[s] = 0.f;
        // δz = δe σ'(K + q) (σ recomputed): δK += δz, r = Σ_s δz, δv += δe σ
        const float* qb = qp + b * A;
        float* rb = rp + b * A;
        for (int64_t c = 0; c < A; ++c) rb[c] = 0.f;
        for (int64_t s = 0; s < e; ++s) {
          const float g = d[s];
          if (g == 0.f) continue;  // a masked position (a = 0): nothing to add
          const float* k = K + (b * S + s) * A;
          float* dk = dK + (b * S + s) * A;
#pragma omp simd
          for (int64_t c = 0; c < A; ++c) {
            const float y = sigmoid(k[c] + qb[c]);
            const float dz = g * y * (1.f - y);
            dk[c] += dz;
            rb[c] += dz;
            dv[c] += g * y;
          }
        }
      }
    });
    // δs = r 4 diag(v) W_q + δs from W_c (+ ∂s) + δh_t from step t + 1's recurrence
    Tensor dh = at::mm(d_q.narrow(0, off, n), query4);
    dh.add_(dj.narrow(1, M, J - M));
    if (present(d_h[layers - 1])) dh.narrow(0, 0, d_h[layers - 1].size(0)).add_(d_h[layers - 1]);
    for (int64_t l = layers - 1; l >= 0; --l) {
      const int64_t H = d_cells[l].size(1);
      const float* fac = factors[l].data_ptr<float>() + off * 4 * H;
      const float* dcell = d_cells[l].data_ptr<float>() + off * H;
      const float* forget = acts[l].data_ptr<float>() + off * 4 * H + H;
      Tensor dg = d_gates[l].narrow(0, off, n);
      float* dgp = dg.data_ptr<float>();
      const Tensor dh_rows = dh.contiguous();
      const float* dhp = dh_rows.data_ptr<float>();
      Tensor next_dc = at::empty({n, H}, d_u.options());  // δc_{t−1} = δc_t ⊙ f_t
      float* nc = next_dc.data_ptr<float>();
      const int64_t carried = present(d_c[l]) ? d_c[l].size(0) : 0;
      const float* cp = carried ? d_c[l].data_ptr<float>() : nullptr;
      at::parallel_for(0, n, grain(n, 4 * H), [&](int64_t lo, int64_t hi) {
        for (int64_t b = lo; b < hi; ++b) {
          const float* fr = fac + b * 4 * H;
          const float* dr = dhp + b * H;
          const float* cr = dcell + b * H;
          const float* fg = forget + b * 4 * H;
          const float* pr = b < carried ? cp + b * H : nullptr;
          float* gr = dgp + b * 4 * H;
          float* ncr = nc + b * H;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const float dc = dr[j] * cr[j] + (pr != nullptr ? pr[j] : 0.f);
            gr[j] = dc * fr[j];
            gr[H + j] = dc * fr[H + j];
            gr[2 * H + j] = dc * fr[2 * H + j];
            gr[3 * H + j] = dr[j] * fr[3 * H + j];
            ncr[j] = dc * fg[j];
          }
        }
      });
      d_c[l] = next_dc;
      const Tensor dx = at::mm(dg, weights[l]);  // [δinput; δh_{t−1}]
      const int64_t first = firsts[l];
      Tensor below = dx.narrow(1, 0, first);
      d_h[l] = dx.narrow(1, first, dx.size(1) - first);
      if (l == 0) {
        d_feed = below;  // δh~_{t−1}: layer 0's input is [y_t; h~_{t−1}]
        break;
      }
      if (present(noises[l])) below = below * noises[l].narrow(0, off, n);
      if (present(d_belows[l - 1])) below = below + d_belows[l - 1].narrow(0, off, n);
      if (present(d_h[l - 1])) {
        below.narrow(0, 0, d_h[l - 1].size(0)).add_(d_h[l - 1]);
      }
      dh = below;
    }
  }
  auto grow = [batch](const Tensor& g) {  // zero-extended to every row of the batch
    if (!present(g) || g.size(0) == batch) return g;
    Tensor out = at::zeros({batch, g.size(1)}, g.options());
    out.narrow(0, 0, g.size(0)).copy_(g);
    return out;
  };
  std::vector<Tensor> out{grow(d_feed)};
  for (int64_t l = 0; l < layers; ++l) out.push_back(grow(d_h[l]));
  for (int64_t l = 0; l < layers; ++l) out.push_back(grow(d_c[l]));
  return out;
}

// ---------------------------------------------------------------------------------------
// One decoding step's additive (or concat) attention, without gradients
// (assembly/nn/attention.py, Attention.forward): the Python path's (B, S, A) sum, sigmoid,
// matvec, masked softmax and context product as one pass per row over its own extent.
//   keys (B, S, A) = 2 U k (+ 2b), queries2 (B, A) = 2 W q, vector2 (A) = 2v,
//   values (B, S, M), mask (B, S) bool → [context (B, M), weights (B, S)]
std::vector<Tensor> attend(const Tensor& keys, const Tensor& queries2, const Tensor& vector2,
                           const Tensor& values, const Tensor& mask) {
  check_dense({&keys, &queries2, &vector2, &values});
  TORCH_CHECK(mask.scalar_type() == at::kBool && mask.is_contiguous(),
              "attend: the mask is not a contiguous bool tensor");
  const int64_t B = keys.size(0), S = keys.size(1), A = keys.size(2), M = values.size(2);
  Tensor weights = at::empty({B, S}, keys.options());
  Tensor context = at::empty({B, M}, keys.options());
  const float* K = keys.data_ptr<float>();
  const float* V = values.data_ptr<float>();
  const float* q = queries2.data_ptr<float>();
  const float* v2 = vector2.data_ptr<float>();
  const bool* valid = mask.data_ptr<bool>();
  float* w = weights.data_ptr<float>();
  float* ctx = context.data_ptr<float>();
  at::parallel_for(0, B, grain(B, S * A), [&](int64_t lo, int64_t hi) {
    std::vector<float> blocked(S);
    for (int64_t b = lo; b < hi; ++b) {
      int64_t e = 0;
      for (int64_t s = 0; s < S; ++s) {
        blocked[s] = valid[b * S + s] ? 0.f : -INFINITY;
        if (valid[b * S + s]) e = s + 1;
      }
      attention_row(K + b * S * A, V + b * S * M, blocked.data(), q + b * A, v2, e, S, A, M,
                    w + b * S, ctx + b * M);
    }
  });
  return {context, weights};
}

// ---------------------------------------------------------------------------------------
// The encoder's LSTM layer node (assembly/nn/lstm_node.py): its two step loops, same
// buffers and conventions (both directions stacked as D, packed rows, the cell gate's rows
// doubled so that s = σ(2z), 2c kept instead of c). Per step: the recurrent matmul
// (ATen's baddbmm) and one pass for the gates, 2c, tanh c and h.

// Forward. gates (D, N, 4H): the input projections, turned into [i f s o] in place;
// w_hh2 (D, H, 4H); hs, cs (D, B + N, H) state buffers with block 0 filled (h, 2c);
// m (D, N, 4H): writes 2g into [..., :H] and tanh c into [..., 3H:].
void lstm_layer_forward(const std::vector<int64_t>& sizes, const Tensor& gates,
                        const Tensor& w_hh2, const Tensor& hs, const Tensor& cs,
                        const Tensor& m, bool has_h0, bool has_c0) {
  check_dense({&gates, &hs, &cs, &m});
  const int64_t D = gates.size(0), N = gates.size(1), H = hs.size(2);
  const int64_t batch = sizes[0], rows = batch + N;
  float* gp = gates.data_ptr<float>();
  float* hp = hs.data_ptr<float>();
  float* cp = cs.data_ptr<float>();
  float* mp = m.data_ptr<float>();
  int64_t off = 0, read = 0;
  for (size_t k = 0; k < sizes.size(); ++k) {
    const int64_t n = sizes[k], write = batch + off;
    if (k > 0 || has_h0) {
      Tensor step = gates.narrow(1, off, n);
      step.baddbmm_(hs.narrow(1, read, n), w_hh2);
    }
    const bool carry = k > 0 || has_c0;
    at::parallel_for(0, D * n, grain(D * n, 4 * H),
                     [&](int64_t lo, int64_t hi) {
      for (int64_t q = lo; q < hi; ++q) {
        const int64_t d = q / n, r = q % n;
        lstm_layer_row(gp + (d * N + off + r) * 4 * H, mp + (d * N + off + r) * 4 * H,
                       carry ? cp + (d * rows + read + r) * H : nullptr,
                       cp + (d * rows + write + r) * H, hp + (d * rows + write + r) * H, H);
      }
    });
    read = write;
    off += n;
  }
}

// Backward. d_h, d_c (D, B + N, H): the outside gradients of h and 2c at their state rows
// (added to in place as the steps go back); d_cell (D, N, H) = o (1 − tanh² c); factor
// (D, N, 4H): m ⊙ σ'(gates); gates: [i f s o] (f is read); fills d_gates (D, N, 4H).
// Step 0's carries into block 0 (the initial state) only where has_h0 / has_c0.
void lstm_layer_backward(const std::vector<int64_t>& sizes, const Tensor& d_h,
                         const Tensor& d_c, const Tensor& d_cell, const Tensor& factor,
                         const Tensor& gates, const Tensor& d_gates, const Tensor& w_hh,
                         bool has_h0, bool has_c0) {
  check_dense({&d_h, &d_c, &d_cell, &factor, &gates, &d_gates});
  const int64_t D = gates.size(0), N = gates.size(1), H = d_h.size(2);
  const int64_t batch = sizes[0], rows = batch + N, steps = static_cast<int64_t>(sizes.size());
  float* dhp = d_h.data_ptr<float>();
  float* dcp = d_c.data_ptr<float>();
  const float* cell = d_cell.data_ptr<float>();
  const float* fac = factor.data_ptr<float>();
  const float* gp = gates.data_ptr<float>();
  float* dgp = d_gates.data_ptr<float>();
  std::vector<int64_t> offsets(steps + 1, 0);
  for (int64_t k = 0; k < steps; ++k) offsets[k + 1] = offsets[k] + sizes[k];
  for (int64_t k = steps - 1; k >= 0; --k) {
    const int64_t n = sizes[k], off = offsets[k], write = batch + off;
    const int64_t read = k == 0 ? 0 : batch + offsets[k - 1];
    const bool to_c = k > 0 || has_c0;
    at::parallel_for(0, D * n, grain(D * n, 4 * H),
                     [&](int64_t lo, int64_t hi) {
      for (int64_t q = lo; q < hi; ++q) {
        const int64_t d = q / n, r = q % n;
        const int64_t step_row = d * N + off + r;
        const float* dh = dhp + (d * rows + write + r) * H;
        float* dc = dcp + (d * rows + write + r) * H;
        float* dc_prev = dcp + (d * rows + read + r) * H;
        const float* ce = cell + step_row * H;
        const float* fr = fac + step_row * 4 * H;
        const float* forget = gp + step_row * 4 * H + H;
        float* dg = dgp + step_row * 4 * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const float c = dc[j] + 0.5f * dh[j] * ce[j];  // δ(2c)
          dc[j] = c;
          dg[j] = c * fr[j];
          dg[H + j] = c * fr[H + j];
          dg[2 * H + j] = c * fr[2 * H + j];
          dg[3 * H + j] = dh[j] * fr[3 * H + j];
          if (to_c) dc_prev[j] += c * forget[j];
        }
      }
    });
    if (k > 0 || has_h0) {
      Tensor prev = d_h.narrow(1, read, n);
      prev.baddbmm_(d_gates.narrow(1, off, n), w_hh);
    }
  }
}

namespace assembly_native {
bool dropout_mask_(at::Tensor mask, double keep, double scale);  // dropout.cpp
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "assembly's native code: step loops (teacher-forcing node, encoder LSTM layer), "
            "dropout masks";
  m.def("forward_steps", &forward_steps);
  m.def("backward_steps", &backward_steps);
  m.def("lstm_layer_forward", &lstm_layer_forward);
  m.def("lstm_layer_backward", &lstm_layer_backward);
  m.def("attend", &attend);
  m.def("dropout_mask_", &assembly_native::dropout_mask_);
}
