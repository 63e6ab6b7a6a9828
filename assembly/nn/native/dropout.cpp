// nn.Dropout's mask, bit for bit, about 15x faster: `mask.bernoulli_(keep).div_(keep)` on a
// contiguous float32 CPU tensor, drawn from torch's default CPU generator, which it leaves in
// the state torch's own call would.
//
// Why: torch's CPU bernoulli_(p) is a serial loop that draws one double per element through
// a function call into its Mersenne Twister (two 32-bit words, ~6 ns per element here); the
// reference model's dropout masks were ~7 % of a training update. Here the Twister's state is
// advanced 624 words at a time in loops the compiler vectorises (the same recurrence, so the
// same words), and the tempering, the comparison and the scaling run as one vectorised pass.
//
// What it reproduces (ATen, torch 2.x, OSS builds): bernoulli_scalar_kernel_default →
// templates::cpu::bernoulli_kernel: per element in memory order,
// bernoulli_distribution<double>(keep): u = (random64() & (2^53 − 1)) · 2^−53, value u < keep,
// where random64() = (word₁ << 32) | word₂ of at::mt19937; then div_(keep) in float.
// Because this depends on torch internals, assembly/nn/dropout.py checks it against torch
// once per process (several sizes, crossing the 624-word refills) and uses torch's own call
// if they ever differ. tests/test_dropout.py.

#include <torch/extension.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <vector>

namespace {

constexpr int kWords = 624;  // MERSENNE_STATE_N
constexpr int kShift = 397;  // MERSENNE_STATE_M

inline uint32_t twist(uint32_t u, uint32_t v) {
  return (((u & 0x80000000u) | (v & 0x7fffffffu)) >> 1) ^ ((0u - (v & 1u)) & 0x9908b0dfu);
}

// at::mt19937's next_state(): the same recurrence; each loop's dependences are ≥ 227 words
// apart (or reads ahead of the writes), so it vectorises.
void next_state(uint32_t* __restrict s) {
  for (int i = 0; i < kWords - kShift; ++i) s[i] = s[i + kShift] ^ twist(s[i], s[i + 1]);
  for (int i = kWords - kShift; i < kWords - 1; ++i)
    s[i] = s[i + kShift - kWords] ^ twist(s[i], s[i + 1]);
  s[kWords - 1] = s[kShift - 1] ^ twist(s[kWords - 1], s[0]);
}

inline uint32_t temper(uint32_t y) {
  y ^= (y >> 11);
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= (y >> 18);
  return y;
}

// `count` words as at::mt19937::operator() would return them, one after another.
// The engine's counters: a draw decrements left_ and refills the state when it reaches 0
// (left_ = 624, next_ = 0), then returns state_[next_++]; so left_ − 1 words are ready.
void draw_words(at::mt19937_data_pod& d, uint32_t* __restrict out, int64_t count) {
  while (count > 0) {
    if (d.left_ == 1) {
      next_state(d.state_.data());
      d.left_ = kWords + 1;
      d.next_ = 0;
    }
    const int64_t ready = std::min<int64_t>(d.left_ - 1, count);
    const uint32_t* __restrict from = d.state_.data() + d.next_;
    for (int64_t k = 0; k < ready; ++k) out[k] = temper(from[k]);
    d.next_ += static_cast<uint32_t>(ready);
    d.left_ -= static_cast<int>(ready);
    out += ready;
    count -= ready;
  }
}

}  // namespace

namespace assembly_native {

// Fills `mask` (contiguous float32, CPU) with nn.Dropout's mask for keep probability
// `keep`: `scale` (torch's float 1 / keep, computed by the caller) where kept, 0 elsewhere.
// Returns false, touching nothing, where the generator's state is not one this code
// follows (torch's own call should run then).
bool dropout_mask_(at::Tensor mask, double keep, double scale) {
  TORCH_CHECK(mask.is_contiguous() && mask.scalar_type() == at::kFloat && mask.is_cpu(),
              "dropout_mask_: a contiguous float32 CPU tensor is needed");
  auto* generator = at::check_generator<at::CPUGeneratorImpl>(
      at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(generator->mutex_);
  at::mt19937 engine = generator->engine();
  at::mt19937_data_pod state = engine.data();
  if (state.left_ < 1 || state.left_ > kWords ||
      static_cast<int64_t>(state.next_) + state.left_ - 1 > kWords) {
    return false;
  }
  const float kept = static_cast<float>(scale);
  const uint64_t low53 = (uint64_t{1} << 53) - 1;
  const double unit = 1.0 / static_cast<double>(uint64_t{1} << 53);
  float* __restrict out = mask.data_ptr<float>();
  const int64_t total = mask.numel();
  constexpr int64_t kChunk = 2048;  // elements per pass (two words each)
  std::vector<uint32_t> words(2 * kChunk);
  for (int64_t begin = 0; begin < total; begin += kChunk) {
    const int64_t n = std::min(kChunk, total - begin);
    draw_words(state, words.data(), 2 * n);
    const uint32_t* __restrict w = words.data();
    float* __restrict o = out + begin;
    for (int64_t k = 0; k < n; ++k) {
      const uint64_t bits = ((static_cast<uint64_t>(w[2 * k]) << 32) | w[2 * k + 1]) & low53;
      o[k] = static_cast<double>(bits) * unit < keep ? kept : 0.0f;
    }
  }
  engine.set_data(state);
  generator->set_engine(engine);
  return true;
}

}  // namespace assembly_native
