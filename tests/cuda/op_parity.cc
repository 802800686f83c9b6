// Op-by-op parity of the CUDA kernels (libmemmamba_cuda, kernels/) with the
// CPU backend, the reference of every op (src/backend/backend.h).
//
// For every op: random inputs on the host, including ragged sizes (T not a
// multiple of 64, E not a multiple of 8 or 32, odd N, S and H, rows with 0 and
// with many pool entries, padded row strides); the CPU op and the CUDA op run
// on the same inputs, and each output is compared by the normalised error
//   ‖gpu − cpu‖₂ / max(‖cpu‖₂, 1e-30)
// against a per-op tolerance (the reasons are beside each constant below).
// Outputs start from the same random values on both sides, so an element the
// GPU fails to write (or writes outside the op's range, such as a padding
// column) shows as an error; NaN never passes. Ops that promise determinism
// run twice and must repeat bit for bit. A table is printed last.
//
//   cuda_op_parity [matmul norm conv scan pool loss optimizer notes status]
// Exit status: 0 all passed, 1 a failure, 77 no CUDA device (CTest: skipped).
#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/bf16.h"
#include "memmamba_cuda.h"

namespace {

using memmamba::Backend;

// --- Tolerances -------------------------------------------------------------
// fp32 sums in another order: the error of a K-term dot product is about
// √K·2^-24 relative (≤ 1e-6 at K = 1536); 1e-5 leaves a margin of 10.
constexpr double kTolMatmul = 1e-5;
// Rows summed in double on both sides; outputs are one or two roundings away.
constexpr double kTolNorm = 1e-5;
// K-term sums in the same order, expf against the CPU's Cephes exp (2e-7).
constexpr double kTolConv = 1e-5;
// The scan's decay uses __expf (relative error ~2^-21·(1+|ΔA|)), compounded
// along the state's memory (~1/|ΔA| steps); Σ_n in a tree. Backward adds sums
// over T (dA, dD, ddt_bias) and over E (dB, dC).
constexpr double kTolScan = 1e-4;
// Softmax and dot products of ≤ 256 terms in another order.
constexpr double kTolPool = 1e-5;
// Softmax over V: the row sum is combined in double.
constexpr double kTolLoss = 1e-5;
// The summed loss: double sums of float-rounded log terms.
constexpr double kTolLossSum = 1e-6;
// Double sums of squares in another order.
constexpr double kTolSumSquares = 1e-12;
// Elementwise, the same formula; FMA contraction and sqrt rounding differ.
constexpr double kTolAdam = 1e-6;
// Note block, gate, fusion, A_log: row sums of ≤ 770 terms in double on the
// GPU against float in order on the CPU (~√D·2^-24), expf against std::exp,
// FMA contraction. Max, arg, gathers, additions and single products are the
// same operations in the same order: compared exactly (tolerance 0).
constexpr double kTolNotes = 1e-5;

struct Result {
  std::string op, shape, output;
  double err, tol;
  bool pass;
};
std::vector<Result> g_results;
mmc_context* g_ctx = nullptr;
std::unique_ptr<Backend> g_cpu;
std::mt19937_64 g_rng(20261123);

[[noreturn]] void Die(const char* what, int status) {
  std::fprintf(stderr, "FATAL: %s: %s (%s)\n", what, mmc_status_string(status),
               g_ctx ? mmc_context_last_error(g_ctx) : "");
  std::exit(1);
}

#define CHECK_MMC(expr)                   \
  do {                                    \
    const int st_ = (expr);               \
    if (st_ != MMC_OK) Die(#expr, st_);   \
  } while (0)

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) { Resize(n); }
  explicit DeviceBuffer(const std::vector<T>& host) { Upload(host); }
  ~DeviceBuffer() {
    if (p_ != nullptr) mmc_free(g_ctx, p_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void Resize(size_t n) {
    if (p_ != nullptr) mmc_free(g_ctx, p_);
    p_ = nullptr;
    n_ = n;
    void* v = nullptr;
    CHECK_MMC(mmc_malloc(g_ctx, &v, std::max<size_t>(n, 1) * sizeof(T)));
    p_ = static_cast<T*>(v);
  }
  void Upload(const std::vector<T>& host) {
    if (host.size() != n_ || p_ == nullptr) Resize(host.size());
    if (!host.empty()) {
      CHECK_MMC(mmc_memcpy(g_ctx, p_, host.data(), host.size() * sizeof(T),
                           MMC_COPY_HOST_TO_DEVICE));
    }
  }
  std::vector<T> Download() const {
    std::vector<T> host(n_);
    CHECK_MMC(mmc_synchronize(g_ctx));
    if (n_ > 0) {
      CHECK_MMC(mmc_memcpy(g_ctx, host.data(), p_, n_ * sizeof(T), MMC_COPY_DEVICE_TO_HOST));
    }
    return host;
  }
  T* get() const { return p_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

std::vector<float> Normal(size_t n, float mean = 0.0f, float stddev = 1.0f) {
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(g_rng);
  return v;
}

float Uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g_rng); }
int64_t UniformInt(int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(g_rng);
}

double NormErr(const std::vector<float>& gpu, const std::vector<float>& cpu) {
  if (gpu.size() != cpu.size()) return INFINITY;
  double diff = 0.0, ref = 0.0;
  for (size_t i = 0; i < gpu.size(); ++i) {
    if (!std::isfinite(gpu[i]) && !(std::isnan(gpu[i]) && std::isnan(cpu[i]))) return NAN;
    const double d = static_cast<double>(gpu[i]) - cpu[i];
    diff += d * d;
    ref += static_cast<double>(cpu[i]) * cpu[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(ref), 1e-30);
}

void Report(const std::string& op, const std::string& shape, const std::string& output,
            double err, double tol) {
  const bool pass = std::isfinite(err) && err <= tol;
  g_results.push_back({op, shape, output, err, tol, pass});
  std::printf("%-28s %-44s %-14s %10.3e  tol %.0e  %s\n", op.c_str(), shape.c_str(),
              output.c_str(), err, tol, pass ? "pass" : "FAIL");
  std::fflush(stdout);
}

void Compare(const std::string& op, const std::string& shape, const std::string& output,
             const std::vector<float>& gpu, const std::vector<float>& cpu, double tol) {
  Report(op, shape, output, NormErr(gpu, cpu), tol);
}

// Bitwise repetition of a deterministic op.
void ReportRepeat(const std::string& op, const std::string& shape,
                  const std::vector<float>& first, const std::vector<float>& second) {
  const bool same = first.size() == second.size() &&
                    std::memcmp(first.data(), second.data(), first.size() * sizeof(float)) == 0;
  Report(op, shape, "bitwise repeat", same ? 0.0 : INFINITY, 0.0);
}

void ReportStatus(const std::string& op, const std::string& what, int got, int want) {
  Report(op, what, mmc_status_string(got), got == want ? 0.0 : INFINITY, 0.0);
}

// Progress on stderr when MMC_PARITY_TRACE is set (to find a hang).
void Trace(const char* what) {
  static const bool on = std::getenv("MMC_PARITY_TRACE") != nullptr;
  if (on) {
    std::fprintf(stderr, "trace: %s\n", what);
    std::fflush(stderr);
  }
}

std::string Fmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string Fmt(const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

// ---------------------------------------------------------------------------
// Matrix products.

void TestMatmul() {
  struct Case {
    int64_t M, K, N, pad_x, pad_y;
    bool accumulate, bf16;
  };
  const Case cases[] = {{1, 7, 5, 0, 0, false, false},     {37, 129, 65, 3, 5, true, false},
                        {300, 768, 100, 0, 2, false, false}, {513, 33, 1000, 1, 0, true, false},
                        {64, 1536, 768, 0, 0, false, false}, {1, 96, 50, 0, 3, false, true},
                        {77, 768, 333, 2, 0, true, true}};
  for (const Case& c : cases) {
    const int64_t ldx = c.K + c.pad_x, ldy = c.N + c.pad_y;
    std::vector<float> x = Normal(c.M * ldx), w = Normal(c.N * c.K, 0.0f, 0.05f),
                       y = Normal(c.M * ldy);
    std::vector<uint16_t> w16;
    if (c.bf16) {
      w16.resize(w.size());
      memmamba::cpu::ConvertF32ToBf16(w.data(), w16.data(), w.size());
    }
    std::vector<float> y_cpu = y;
    memmamba::WeightRef ref;
    ref.rows = c.N;
    ref.cols = c.K;
    if (c.bf16) {
      ref.bf16 = w16.data();
    } else {
      ref.f32 = w.data();
    }
    g_cpu->Matmul(x.data(), c.M, ldx, ref, y_cpu.data(), ldy, c.accumulate);
    DeviceBuffer<float> dx(x), dw(w), dy(y);
    DeviceBuffer<uint16_t> dw16(w16);
    mmc_weight mw{};
    mw.rows = c.N;
    mw.cols = c.K;
    if (c.bf16) {
      mw.bf16 = dw16.get();
    } else {
      mw.f32 = dw.get();
    }
    CHECK_MMC(mmc_matmul(g_ctx, dx.get(), c.M, ldx, &mw, dy.get(), ldy, c.accumulate));
    Compare(c.bf16 ? "matmul (bf16 W)" : "matmul", Fmt("M=%" PRId64 " K=%" PRId64 " N=%" PRId64 " ldx+%" PRId64 " ldy+%" PRId64 "%s", c.M, c.K, c.N, c.pad_x, c.pad_y, c.accumulate ? " acc" : ""), "y", dy.Download(), y_cpu, kTolMatmul);
  }
  // Backward: dx = dy·W, dW += dyᵀ·x.
  const Case bcases[] = {{1, 7, 5, 0, 0, false, false},
                         {37, 129, 65, 3, 5, true, false},
                         {513, 768, 1536, 1, 2, false, false},
                         {2048, 48, 1536, 0, 0, true, false}};
  for (const Case& c : bcases) {
    const int64_t ldx = c.K + c.pad_x, ldy = c.N + c.pad_y;
    std::vector<float> gy = Normal(c.M * ldy), w = Normal(c.N * c.K, 0.0f, 0.05f),
                       gx = Normal(c.M * ldx), x = Normal(c.M * ldx), gw = Normal(c.N * c.K);
    std::vector<float> gx_cpu = gx, gw_cpu = gw;
    g_cpu->MatmulBackwardInput(gy.data(), c.M, ldy, w.data(), c.N, c.K, gx_cpu.data(), ldx,
                               c.accumulate);
    g_cpu->MatmulBackwardWeight(gy.data(), c.M, ldy, x.data(), ldx, c.N, c.K, gw_cpu.data());
    DeviceBuffer<float> d_gy(gy), d_w(w), d_gx(gx), d_x(x), d_gw(gw);
    CHECK_MMC(mmc_matmul_backward_input(g_ctx, d_gy.get(), c.M, ldy, d_w.get(), c.N, c.K,
                                        d_gx.get(), ldx, c.accumulate));
    CHECK_MMC(mmc_matmul_backward_weight(g_ctx, d_gy.get(), c.M, ldy, d_x.get(), ldx, c.N, c.K,
                                         d_gw.get()));
    const std::string shape = Fmt("M=%" PRId64 " K=%" PRId64 " N=%" PRId64 " ldx+%" PRId64 " ldy+%" PRId64 "%s", c.M, c.K, c.N, c.pad_x, c.pad_y, c.accumulate ? " acc" : "");
    Compare("matmul_backward_input", shape, "dx", d_gx.Download(), gx_cpu, kTolMatmul);
    Compare("matmul_backward_weight", shape, "dW (+=)", d_gw.Download(), gw_cpu, kTolMatmul);
  }
}

// Products on bf16 tensor cores (a context with bf16_products): against the
// CPU's product of the same bf16 weights and x rounded to bf16 (so only the
// order of the fp32 sums differs), and away from the product of x unrounded
// (the rounding happened: the option reaches the product).
void TestMatmulBf16Products() {
  mmc_context_options opts;
  mmc_context_options_init(&opts, sizeof opts);
  opts.bf16_products = 1;
  mmc_context* ctx = nullptr;
  CHECK_MMC(mmc_context_create(&ctx, &opts));
  struct Case {
    int64_t M, K, N, pad_x, pad_y;
    bool accumulate;
  };
  const Case cases[] = {{1, 96, 50, 0, 3, false},
                        {77, 768, 333, 2, 0, true},
                        {256, 768, 3072, 0, 0, false},
                        {256, 1536, 80, 0, 0, false},
                        {8, 1536, 768, 0, 0, true}};
  for (const Case& c : cases) {
    const int64_t ldx = c.K + c.pad_x, ldy = c.N + c.pad_y;
    std::vector<float> x = Normal(c.M * ldx), w = Normal(c.N * c.K, 0.0f, 0.05f),
                       y = Normal(c.M * ldy);
    std::vector<uint16_t> w16(w.size()), x16(x.size());
    memmamba::cpu::ConvertF32ToBf16(w.data(), w16.data(), w.size());
    memmamba::cpu::ConvertF32ToBf16(x.data(), x16.data(), x.size());
    std::vector<float> x_rounded(x.size());
    memmamba::cpu::ConvertBf16ToF32(x16.data(), x_rounded.data(), x.size());
    memmamba::WeightRef ref;
    ref.rows = c.N;
    ref.cols = c.K;
    ref.bf16 = w16.data();
    std::vector<float> y_cpu = y, y_unrounded = y;
    g_cpu->Matmul(x_rounded.data(), c.M, ldx, ref, y_cpu.data(), ldy, c.accumulate);
    g_cpu->Matmul(x.data(), c.M, ldx, ref, y_unrounded.data(), ldy, c.accumulate);
    DeviceBuffer<float> dx(x), dy(y);
    DeviceBuffer<uint16_t> dw16(w16);
    mmc_weight mw{};
    mw.rows = c.N;
    mw.cols = c.K;
    mw.bf16 = dw16.get();
    CHECK_MMC(mmc_matmul(ctx, dx.get(), c.M, ldx, &mw, dy.get(), ldy, c.accumulate));
    CHECK_MMC(mmc_synchronize(ctx));
    const std::vector<float> got = dy.Download();
    const std::string shape =
        Fmt("M=%" PRId64 " K=%" PRId64 " N=%" PRId64 " ldx+%" PRId64 " ldy+%" PRId64 "%s", c.M,
            c.K, c.N, c.pad_x, c.pad_y, c.accumulate ? " acc" : "");
    Compare("matmul (bf16 products)", shape, "y", got, y_cpu, kTolMatmul);
    const double off = NormErr(got, y_unrounded);
    Report("matmul (bf16 products)", shape, "x rounded", off > 1e-5 ? 0.0 : INFINITY, 0.0);
  }
  mmc_context_free(ctx);
}

// mmc_decode_linear_bf16 against mmc_decode_linear(_conv) given the same
// weights widened to fp32: the same loads' values in the same order, so the
// same bits.
void TestDecodeLinearBf16() {
  const int64_t K = 768, N = 200, conv_k = 4, n_layer = 2, layer = 1, n_slots = 5;
  for (const int64_t rows : {int64_t{1}, int64_t{3}, int64_t{8}}) {
    std::vector<float> x = Normal(rows * K), w = Normal(N * K, 0.0f, 0.05f), y = Normal(rows * N),
                       norm = Normal(K, 1.0f, 0.1f), conv_w = Normal(N * conv_k, 0.0f, 0.3f),
                       conv_b = Normal(N, 0.0f, 0.1f),
                       conv_state = Normal(n_slots * n_layer * (conv_k - 1) * N);
    std::vector<uint16_t> w16(w.size());
    memmamba::cpu::ConvertF32ToBf16(w.data(), w16.data(), w.size());
    std::vector<float> w_wide(w.size());
    memmamba::cpu::ConvertBf16ToF32(w16.data(), w_wide.data(), w.size());
    std::vector<int32_t> slots(rows);
    for (int64_t r = 0; r < rows; ++r) slots[r] = static_cast<int32_t>((r * 3 + 1) % n_slots);
    DeviceBuffer<float> dx(x), dw(w_wide), dn(norm), dcw(conv_w), dcb(conv_b), dcs(conv_state);
    DeviceBuffer<uint16_t> dw16(w16);
    DeviceBuffer<int32_t> dslots(slots);
    for (const bool in_proj : {false, true}) {
      DeviceBuffer<float> y32(y), y16(y), c32(std::vector<float>(rows * N)),
          c16(std::vector<float>(rows * N));
      mmc_decode_linear_args p{};
      p.rows = rows;
      p.K = K;
      p.N = N;
      p.x = dx.get();
      p.ld_x = K;
      p.y = y32.get();
      p.ld_y = N;
      p.w = dw.get();
      if (in_proj) {  // the in projection: the norm before, the conv after
        p.input = MMC_DECODE_INPUT_RMS_NORM;
        p.norm = dn.get();
        p.eps = 1e-5f;
        p.conv_w = dcw.get();
        p.conv_b = dcb.get();
        p.conv_k = conv_k;
        p.conv_state = dcs.get();
        p.n_layer = n_layer;
        p.layer = layer;
        p.slots = dslots.get();
      } else {
        p.accumulate = 1;
      }
      mmc_decode_linear_bf16_args b{};
      b.op.linear = p;
      b.op.linear.w = nullptr;
      b.op.linear.y = y16.get();
      b.w = dw16.get();
      if (in_proj) {
        mmc_decode_linear_conv_args c{};
        c.linear = p;
        c.conv_n = N;
        c.conv_y = c32.get();
        CHECK_MMC(mmc_decode_linear_conv(g_ctx, &c));
        b.op.conv_n = N;
        b.op.conv_y = c16.get();
      } else {
        CHECK_MMC(mmc_decode_linear(g_ctx, &p));
      }
      CHECK_MMC(mmc_decode_linear_bf16(g_ctx, &b));
      const std::string shape =
          Fmt("rows=%" PRId64 " K=%" PRId64 " N=%" PRId64 "%s", rows, K, N,
              in_proj ? " norm, conv out" : " acc");
      ReportRepeat("decode_linear_bf16", shape + " vs widened", y32.Download(), y16.Download());
      if (in_proj) {
        ReportRepeat("decode_linear_bf16", shape + " conv vs widened", c32.Download(),
                     c16.Download());
      }
    }
  }
  // Refusals: no weight; a weight not aligned to four of them.
  mmc_decode_linear_bf16_args b{};
  b.op.linear.rows = 1;
  b.op.linear.K = 8;
  b.op.linear.N = 4;
  b.op.linear.ld_x = 8;
  b.op.linear.ld_y = 4;
  DeviceBuffer<float> dx(Normal(8)), dy(Normal(4));
  DeviceBuffer<uint16_t> dw(std::vector<uint16_t>(64));
  b.op.linear.x = dx.get();
  b.op.linear.y = dy.get();
  ReportStatus("decode_linear_bf16", "no weight", mmc_decode_linear_bf16(g_ctx, &b),
               MMC_ERR_INVALID_ARGUMENT);
  b.w = dw.get() + 1;
  ReportStatus("decode_linear_bf16", "weight 2-byte aligned", mmc_decode_linear_bf16(g_ctx, &b),
               MMC_ERR_UNSUPPORTED);
  b.w = dw.get();
  ReportStatus("decode_linear_bf16", "aligned", mmc_decode_linear_bf16(g_ctx, &b), MMC_OK);
}

// ---------------------------------------------------------------------------
// RMSNorm.

void TestRmsNorm() {
  struct Case {
    int64_t M, D;
    bool accumulate;
  };
  const Case cases[] = {{1, 1, false}, {7, 33, true}, {513, 768, false}, {64, 1000, true}};
  const float eps = 1e-5f;
  for (const Case& c : cases) {
    std::vector<float> x = Normal(c.M * c.D, 0.3f, 2.0f), w = Normal(c.D, 1.0f, 0.2f),
                       out = Normal(c.M * c.D), gy = Normal(c.M * c.D), gx = Normal(c.M * c.D),
                       gw = Normal(c.D);
    std::vector<float> out_cpu = out, gx_cpu = gx, gw_cpu = gw;
    g_cpu->RmsNorm(x.data(), c.M, c.D, w.data(), eps, out_cpu.data());
    g_cpu->RmsNormBackward(x.data(), c.M, c.D, w.data(), eps, gy.data(), gx_cpu.data(),
                           c.accumulate, gw_cpu.data());
    DeviceBuffer<float> d_x(x), d_w(w), d_out(out), d_gy(gy), d_gx(gx), d_gw(gw);
    CHECK_MMC(mmc_rms_norm(g_ctx, d_x.get(), c.M, c.D, d_w.get(), eps, d_out.get()));
    CHECK_MMC(mmc_rms_norm_backward(g_ctx, d_x.get(), c.M, c.D, d_w.get(), eps, d_gy.get(),
                                    d_gx.get(), c.accumulate, d_gw.get()));
    const std::string shape = Fmt("M=%" PRId64 " D=%" PRId64 "%s", c.M, c.D, c.accumulate ? " acc" : "");
    Compare("rms_norm", shape, "out", d_out.Download(), out_cpu, kTolNorm);
    Compare("rms_norm_backward", shape, "dx", d_gx.Download(), gx_cpu, kTolNorm);
    Compare("rms_norm_backward", shape, "dw (+=)", d_gw.Download(), gw_cpu, kTolNorm);
  }
}

// The _bf16 variants of the ops that feed products (MMC_API_VERSION 8):
// every output equals the fp32 op's rounded to nearest even (bit for bit),
// and mmc_matmul_bf16 equals mmc_matmul of the same bf16 values.
std::vector<uint16_t> RoundedBf16(const std::vector<float>& v) {
  std::vector<uint16_t> r(v.size());
  memmamba::cpu::ConvertF32ToBf16(v.data(), r.data(), v.size());
  return r;
}

void ReportSameBf16(const std::string& op, const std::string& shape,
                    const std::vector<uint16_t>& got, const std::vector<uint16_t>& want) {
  const bool same = got.size() == want.size() &&
                    std::memcmp(got.data(), want.data(), got.size() * sizeof(uint16_t)) == 0;
  Report(op, shape, "= fp32 rounded", same ? 0.0 : INFINITY, 0.0);
}

void TestBf16Outputs() {
  // RMSNorm: the float4 path (D % 4 == 0), the scalar path, an output only
  // 4-byte aligned (scalar path).
  struct NormCase {
    int64_t M, D, offset;
  };
  for (const NormCase& c : {NormCase{5, 768, 0}, NormCase{3, 130, 0}, NormCase{4, 768, 2}}) {
    const std::vector<float> x = Normal(c.M * c.D, 0.3f, 2.0f), w = Normal(c.D, 1.0f, 0.2f);
    DeviceBuffer<float> dx(x), dw(w), out(c.M * c.D);
    DeviceBuffer<uint16_t> out16(c.M * c.D + c.offset);
    CHECK_MMC(mmc_rms_norm(g_ctx, dx.get(), c.M, c.D, dw.get(), 1e-5f, out.get()));
    CHECK_MMC(mmc_rms_norm_bf16(g_ctx, dx.get(), c.M, c.D, dw.get(), 1e-5f,
                                out16.get() + c.offset));
    std::vector<uint16_t> got = out16.Download();
    got.erase(got.begin(), got.begin() + c.offset);
    ReportSameBf16("rms_norm_bf16",
                   Fmt("M=%" PRId64 " D=%" PRId64 " out+%" PRId64, c.M, c.D, c.offset), got,
                   RoundedBf16(out.Download()));
  }
  // The slot scan: a one-token step of many streams, rows of a few, one
  // stream's longer call; both calls from the same states, which end equal.
  struct ScanCase {
    int64_t streams, T, E, N;
  };
  for (const ScanCase& c : {ScanCase{256, 1, 1536, 16}, ScanCase{64, 3, 768, 16},
                            ScanCase{2, 5, 64, 16}, ScanCase{3, 2, 40, 24}}) {
    const int64_t rows = c.streams * c.T, n_layer = 2, n_slots = c.streams + 3;
    const int64_t ld_bc = 2 * c.N + 3, ld_z = c.E + 5;
    std::vector<int32_t> slots(c.streams);
    for (int64_t b = 0; b < c.streams; ++b) slots[b] = static_cast<int32_t>((b * 7 + 2) % n_slots);
    std::sort(slots.begin(), slots.end());
    slots.erase(std::unique(slots.begin(), slots.end()), slots.end());
    if (static_cast<int64_t>(slots.size()) != c.streams) {  // distinct slots, or streams race
      slots.resize(c.streams);
      for (int64_t b = 0; b < c.streams; ++b) slots[b] = static_cast<int32_t>(b);
    }
    std::vector<float> A(c.N * c.E);
    for (auto& v : A) v = -Uniform(0.5f, 8.0f);
    const std::vector<float> xc = Normal(rows * c.E), dt = Normal(rows * c.E, -1.0f, 0.5f),
                             bias = Normal(c.E, 0.0f, 0.3f), bc = Normal(rows * ld_bc),
                             Dv = Normal(c.E), z = Normal(rows * ld_z),
                             state = Normal(n_slots * n_layer * c.N * c.E);
    DeviceBuffer<float> d_xc(xc), d_dt(dt), d_bias(bias), d_A(A), d_bc(bc), d_D(Dv), d_z(z),
        st32(state), st16(state), y(rows * c.E);
    DeviceBuffer<int32_t> d_slots(slots);
    DeviceBuffer<uint16_t> y16(rows * c.E);
    mmc_slot_scan_args a{};
    a.streams = c.streams;
    a.T = c.T;
    a.E = c.E;
    a.N = c.N;
    a.xc = d_xc.get();
    a.dt = d_dt.get();
    a.dt_bias = d_bias.get();
    a.A = d_A.get();
    a.B = d_bc.get() + 1;
    a.C = d_bc.get() + 1 + c.N;
    a.ld_bc = ld_bc;
    a.D = d_D.get();
    a.z = d_z.get();
    a.ld_z = ld_z;
    a.state = st32.get();
    a.n_layer = n_layer;
    a.layer = 1;
    a.slots = d_slots.get();
    a.y = y.get();
    CHECK_MMC(mmc_slots_selective_scan(g_ctx, &a));
    a.state = st16.get();
    a.y = nullptr;
    CHECK_MMC(mmc_slots_selective_scan_bf16(g_ctx, &a, y16.get()));
    const std::string shape = Fmt("streams=%" PRId64 " T=%" PRId64 " E=%" PRId64 " N=%" PRId64,
                                  c.streams, c.T, c.E, c.N);
    ReportSameBf16("slots_selective_scan_bf16", shape, y16.Download(), RoundedBf16(y.Download()));
    ReportRepeat("slots_selective_scan_bf16", shape + " state", st32.Download(), st16.Download());
  }
  // Products of bf16 x: against mmc_matmul in a context with bf16_products
  // given x's bf16 values as floats (its rounding then changes nothing).
  mmc_context_options opts;
  mmc_context_options_init(&opts, sizeof opts);
  opts.bf16_products = 1;
  mmc_context* ctx = nullptr;
  CHECK_MMC(mmc_context_create(&ctx, &opts));
  struct MatCase {
    int64_t M, K, N, pad_x;
    bool accumulate;
  };
  for (const MatCase& c : {MatCase{256, 768, 3072, 0, false}, MatCase{256, 1536, 768, 0, true},
                           MatCase{7, 96, 50, 4, false}}) {
    const int64_t ldx = c.K + c.pad_x;
    const std::vector<uint16_t> x16 = RoundedBf16(Normal(c.M * ldx)),
                                w16 = RoundedBf16(Normal(c.N * c.K, 0.0f, 0.05f));
    std::vector<float> x(x16.size());
    memmamba::cpu::ConvertBf16ToF32(x16.data(), x.data(), x.size());
    const std::vector<float> y0 = Normal(c.M * c.N);
    DeviceBuffer<uint16_t> dx16(x16), dw16(w16);
    DeviceBuffer<float> dx(x), ya(y0), yb(y0);
    mmc_weight mw{};
    mw.rows = c.N;
    mw.cols = c.K;
    mw.bf16 = dw16.get();
    CHECK_MMC(mmc_matmul(ctx, dx.get(), c.M, ldx, &mw, ya.get(), c.N, c.accumulate));
    CHECK_MMC(mmc_synchronize(ctx));
    CHECK_MMC(mmc_matmul_bf16(g_ctx, dx16.get(), c.M, ldx, &mw, yb.get(), c.N, c.accumulate));
    Compare("matmul_bf16",
            Fmt("M=%" PRId64 " K=%" PRId64 " N=%" PRId64 " ldx+%" PRId64 "%s", c.M, c.K, c.N,
                c.pad_x, c.accumulate ? " acc" : ""),
            "y", yb.Download(), ya.Download(), 1e-6);
  }
  mmc_context_free(ctx);
  mmc_weight f32{};
  f32.rows = 4;
  f32.cols = 4;
  DeviceBuffer<float> wf(16), yf(16);
  DeviceBuffer<uint16_t> xf(16);
  f32.f32 = wf.get();
  ReportStatus("matmul_bf16", "f32 weights",
               mmc_matmul_bf16(g_ctx, xf.get(), 4, 4, &f32, yf.get(), 4, 0),
               MMC_ERR_INVALID_ARGUMENT);
}

// ---------------------------------------------------------------------------
// Conv.

void TestConv() {
  struct Case {
    int64_t E, K;
    std::vector<int64_t> T;
    bool shared_grads;
  };
  const std::vector<Case> cases = {{37, 4, {1, 3, 70, 200, 0}, true},
                                   {1536, 4, {300, 2048}, true},
                                   {5, 1, {9, 64}, false},
                                   {64, 7, {2, 130, 65}, false},
                                   {33, 16, {5, 100}, true}};
  for (const Case& c : cases) {
    const int64_t E = c.E, K = c.K, n = static_cast<int64_t>(c.T.size());
    const int64_t ld = 2 * E + 1;  // ξ is the first half of in_proj's output
    std::vector<float> w = Normal(E * K, 0.0f, 0.5f), b = Normal(E, 0.0f, 0.2f);
    DeviceBuffer<float> d_w(w), d_b(b);
    std::vector<std::vector<float>> xi(n), state(n), out(n), dout(n), dxi(n);
    std::vector<std::vector<float>> dw(n), db(n);
    std::vector<memmamba::ConvArgs> cpu_args(n);
    std::vector<memmamba::ConvBackwardArgs> cpu_bargs(n);
    std::vector<std::unique_ptr<DeviceBuffer<float>>> d_xi, d_state, d_out, d_dout, d_dxi, d_dw,
        d_db;
    std::vector<mmc_conv_args> gpu_args(n);
    std::vector<mmc_conv_backward_args> gpu_bargs(n);
    std::vector<float> dw0 = Normal(E * K), db0 = Normal(E);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t T = c.T[i];
      xi[i] = Normal(std::max<int64_t>(T, 1) * ld);
      state[i] = Normal((K - 1) * E);
      out[i] = Normal(T * E);
      dout[i] = Normal(T * E);
      dxi[i] = Normal(std::max<int64_t>(T, 1) * ld);
      dw[i] = c.shared_grads ? dw0 : Normal(E * K);
      db[i] = c.shared_grads ? db0 : Normal(E);
      d_xi.push_back(std::make_unique<DeviceBuffer<float>>(xi[i]));
      d_state.push_back(std::make_unique<DeviceBuffer<float>>(state[i]));
      d_out.push_back(std::make_unique<DeviceBuffer<float>>(out[i]));
      d_dout.push_back(std::make_unique<DeviceBuffer<float>>(dout[i]));
      d_dxi.push_back(std::make_unique<DeviceBuffer<float>>(dxi[i]));
      d_dw.push_back(std::make_unique<DeviceBuffer<float>>(dw[i]));
      d_db.push_back(std::make_unique<DeviceBuffer<float>>(db[i]));
    }
    for (int64_t i = 0; i < n; ++i) {
      const int64_t T = c.T[i];
      memmamba::ConvArgs& a = cpu_args[i];
      a.T = T; a.E = E; a.K = K; a.xi = xi[i].data(); a.ld_xi = ld; a.w = w.data();
      a.b = b.data(); a.state = state[i].data(); a.out = out[i].data();
      mmc_conv_args& g = gpu_args[i];
      g.T = T; g.E = E; g.K = K; g.xi = d_xi[i]->get(); g.ld_xi = ld; g.w = d_w.get();
      g.b = d_b.get(); g.state = d_state[i]->get(); g.out = d_out[i]->get();
      memmamba::ConvBackwardArgs& ab = cpu_bargs[i];
      const int64_t owner = c.shared_grads ? 0 : i;
      ab.T = T; ab.E = E; ab.K = K; ab.xi = xi[i].data(); ab.ld_xi = ld; ab.w = w.data();
      ab.b = b.data(); ab.dout = dout[i].data(); ab.dxi = dxi[i].data(); ab.ld_dxi = ld;
      ab.dw = dw[owner].data(); ab.db = db[owner].data();
      mmc_conv_backward_args& gb = gpu_bargs[i];
      gb.T = T; gb.E = E; gb.K = K; gb.xi = d_xi[i]->get(); gb.ld_xi = ld; gb.w = d_w.get();
      gb.b = d_b.get(); gb.dout = d_dout[i]->get(); gb.dxi = d_dxi[i]->get(); gb.ld_dxi = ld;
      gb.dw = d_dw[owner]->get(); gb.db = d_db[owner]->get();
    }
    // The backward reads the pre-update inputs only; run it first on both.
    g_cpu->ConvSiluBackward(cpu_bargs.data(), n);
    CHECK_MMC(mmc_conv_silu_backward(g_ctx, gpu_bargs.data(), n));
    g_cpu->ConvSilu(cpu_args.data(), n);
    CHECK_MMC(mmc_conv_silu(g_ctx, gpu_args.data(), n));
    std::string ts;
    for (int64_t T : c.T) ts += (ts.empty() ? "" : ",") + std::to_string(T);
    const std::string shape = Fmt("E=%" PRId64 " K=%" PRId64 " T={%s}%s", E, K, ts.c_str(),
                                  c.shared_grads ? " shared dW" : "");
    std::vector<float> g_out, c_out, g_state, c_state, g_dxi, c_dxi, g_dw, c_dw, g_db, c_db;
    for (int64_t i = 0; i < n; ++i) {
      auto append = [](std::vector<float>& to, const std::vector<float>& from) {
        to.insert(to.end(), from.begin(), from.end());
      };
      append(g_out, d_out[i]->Download());
      append(c_out, out[i]);
      append(g_state, d_state[i]->Download());
      append(c_state, state[i]);
      append(g_dxi, d_dxi[i]->Download());
      append(c_dxi, dxi[i]);
      if (!c.shared_grads || i == 0) {
        append(g_dw, d_dw[i]->Download());
        append(c_dw, dw[i]);
        append(g_db, d_db[i]->Download());
        append(c_db, db[i]);
      }
    }
    Compare("conv_silu", shape, "out", g_out, c_out, kTolConv);
    Compare("conv_silu", shape, "state", g_state, c_state, kTolConv);
    Compare("conv_silu_backward", shape, "dxi", g_dxi, c_dxi, kTolConv);
    Compare("conv_silu_backward", shape, "dw (+=)", g_dw, c_dw, kTolConv);
    Compare("conv_silu_backward", shape, "db (+=)", g_db, c_db, kTolConv);
  }
}

// ---------------------------------------------------------------------------
// Selective scan.

struct ScanStream {
  int64_t T;
  std::vector<float> xc, dt, xdbl, xz, state, y, cp;               // forward
  std::vector<float> dy, dxc, ddt, dxdbl, dxz;                     // backward
  std::unique_ptr<DeviceBuffer<float>> d_xc, d_dt, d_xdbl, d_xz, d_state, d_y, d_cp, d_dy, d_dxc,
      d_ddt, d_dxdbl, d_dxz;
};

void TestScan() {
  struct Case {
    int64_t E, N;
    std::vector<int64_t> T;
    bool shared_grads;
  };
  const std::vector<Case> cases = {{37, 16, {1, 64, 65, 130}, true},
                                   {1536, 16, {257, 2048}, true},
                                   {100, 5, {200}, false},
                                   {20, 33, {70, 3}, false},
                                   {24, 64, {129}, true},
                                   {8, 1, {10, 64}, true}};
  const int64_t R = 3;  // dt_rank columns before B and C in x_proj's output
  for (const Case& c : cases) {
    const int64_t E = c.E, N = c.N, n = static_cast<int64_t>(c.T.size());
    const int64_t ld_bc = R + 2 * N, ld_z = 2 * E;
    // Parameters: dt_bias = softplus⁻¹(dt), dt log-uniform in [1e-3, 0.1];
    // A = -exp(A_log) with A_log = log(1..N) jittered; D ≈ 1.
    std::vector<float> dt_bias(E), A(N * E), D = Normal(E, 1.0f, 0.1f);
    for (int64_t e = 0; e < E; ++e) {
      const float dt = std::exp(Uniform(std::log(1e-3f), std::log(0.1f)));
      dt_bias[e] = dt + std::log(-std::expm1(-dt));
    }
    for (int64_t k = 0; k < N; ++k) {
      for (int64_t e = 0; e < E; ++e) A[k * E + e] = -(k + 1) * Uniform(0.7f, 1.3f);
    }
    std::vector<float> dA = Normal(N * E), dD = Normal(E), ddtb = Normal(E);
    std::vector<std::vector<float>> dA_s(n, dA), dD_s(n, dD), ddtb_s(n, ddtb);
    if (!c.shared_grads) {
      for (int64_t i = 0; i < n; ++i) {
        dA_s[i] = Normal(N * E);
        dD_s[i] = Normal(E);
        ddtb_s[i] = Normal(E);
      }
    }
    DeviceBuffer<float> d_dt_bias(dt_bias), d_A(A), d_D(D);
    std::vector<std::unique_ptr<DeviceBuffer<float>>> d_dA, d_dD, d_ddtb;
    for (int64_t i = 0; i < n; ++i) {
      d_dA.push_back(std::make_unique<DeviceBuffer<float>>(dA_s[i]));
      d_dD.push_back(std::make_unique<DeviceBuffer<float>>(dD_s[i]));
      d_ddtb.push_back(std::make_unique<DeviceBuffer<float>>(ddtb_s[i]));
    }
    std::vector<ScanStream> s(n);
    std::vector<memmamba::ScanArgs> cpu_args(n);
    std::vector<mmc_scan_args> gpu_args(n);
    for (int64_t i = 0; i < n; ++i) {
      ScanStream& st = s[i];
      st.T = c.T[i];
      const int64_t T = st.T, chunks = (T + 63) / 64;
      st.xc = Normal(T * E);
      st.dt = Normal(T * E, 0.0f, 0.5f);
      st.xdbl = Normal(T * ld_bc);
      st.xz = Normal(T * ld_z);
      st.state = Normal(N * E, 0.0f, 0.5f);
      st.y = Normal(T * E);
      st.cp = Normal(chunks * N * E);
      st.d_xc = std::make_unique<DeviceBuffer<float>>(st.xc);
      st.d_dt = std::make_unique<DeviceBuffer<float>>(st.dt);
      st.d_xdbl = std::make_unique<DeviceBuffer<float>>(st.xdbl);
      st.d_xz = std::make_unique<DeviceBuffer<float>>(st.xz);
      st.d_state = std::make_unique<DeviceBuffer<float>>(st.state);
      st.d_y = std::make_unique<DeviceBuffer<float>>(st.y);
      st.d_cp = std::make_unique<DeviceBuffer<float>>(st.cp);
      memmamba::ScanArgs& a = cpu_args[i];
      a.T = T; a.E = E; a.N = N; a.xc = st.xc.data(); a.dt = st.dt.data();
      a.dt_bias = dt_bias.data(); a.A = A.data(); a.B = st.xdbl.data() + R;
      a.C = st.xdbl.data() + R + N; a.ld_bc = ld_bc; a.D = D.data(); a.z = st.xz.data() + E;
      a.ld_z = ld_z; a.state = st.state.data(); a.y = st.y.data(); a.checkpoints = st.cp.data();
      mmc_scan_args& g = gpu_args[i];
      g.T = T; g.E = E; g.N = N; g.xc = st.d_xc->get(); g.dt = st.d_dt->get();
      g.dt_bias = d_dt_bias.get(); g.A = d_A.get(); g.B = st.d_xdbl->get() + R;
      g.C = st.d_xdbl->get() + R + N; g.ld_bc = ld_bc; g.D = d_D.get();
      g.z = st.d_xz->get() + E; g.ld_z = ld_z; g.state = st.d_state->get(); g.y = st.d_y->get();
      g.checkpoints = st.d_cp->get();
    }
    Trace("scan forward: cpu");
    g_cpu->SelectiveScan(cpu_args.data(), n);
    Trace("scan forward: gpu");
    CHECK_MMC(mmc_selective_scan(g_ctx, gpu_args.data(), n));
    std::string ts;
    for (int64_t T : c.T) ts += (ts.empty() ? "" : ",") + std::to_string(T);
    const std::string shape = Fmt("E=%" PRId64 " N=%" PRId64 " T={%s}%s", E, N, ts.c_str(),
                                  c.shared_grads ? " shared dA" : "");
    std::vector<float> gy, cy, gs, cs, gc, cc;
    for (auto& st : s) {
      auto v = st.d_y->Download();
      gy.insert(gy.end(), v.begin(), v.end());
      cy.insert(cy.end(), st.y.begin(), st.y.end());
      v = st.d_state->Download();
      gs.insert(gs.end(), v.begin(), v.end());
      cs.insert(cs.end(), st.state.begin(), st.state.end());
      v = st.d_cp->Download();
      gc.insert(gc.end(), v.begin(), v.end());
      cc.insert(cc.end(), st.cp.begin(), st.cp.end());
    }
    Compare("selective_scan", shape, "y", gy, cy, kTolScan);
    Compare("selective_scan", shape, "state", gs, cs, kTolScan);
    Compare("selective_scan", shape, "checkpoints", gc, cc, kTolScan);

    // Backward from the CPU's checkpoints (the same bits on both sides).
    std::vector<memmamba::ScanBackwardArgs> cpu_b(n);
    std::vector<mmc_scan_backward_args> gpu_b(n);
    for (int64_t i = 0; i < n; ++i) {
      ScanStream& st = s[i];
      const int64_t T = st.T;
      st.d_cp->Upload(st.cp);
      st.dy = Normal(T * E);
      st.dxc = Normal(T * E);
      st.ddt = Normal(T * E);
      st.dxdbl = Normal(T * ld_bc);
      st.dxz = Normal(T * ld_z);
      st.d_dy = std::make_unique<DeviceBuffer<float>>(st.dy);
      st.d_dxc = std::make_unique<DeviceBuffer<float>>(st.dxc);
      st.d_ddt = std::make_unique<DeviceBuffer<float>>(st.ddt);
      st.d_dxdbl = std::make_unique<DeviceBuffer<float>>(st.dxdbl);
      st.d_dxz = std::make_unique<DeviceBuffer<float>>(st.dxz);
      const int64_t owner = c.shared_grads ? 0 : i;
      memmamba::ScanBackwardArgs& a = cpu_b[i];
      a.fwd = cpu_args[i];
      a.fwd.checkpoints = nullptr;
      a.checkpoints = st.cp.data(); a.dy = st.dy.data(); a.dxc = st.dxc.data();
      a.ddt = st.ddt.data(); a.dB = st.dxdbl.data() + R; a.dC = st.dxdbl.data() + R + N;
      a.ld_dbc = ld_bc; a.dz = st.dxz.data() + E; a.ld_dz = ld_z;
      a.dA = dA_s[owner].data(); a.dD = dD_s[owner].data(); a.ddt_bias = ddtb_s[owner].data();
      mmc_scan_backward_args& g = gpu_b[i];
      g.fwd = gpu_args[i];
      g.fwd.checkpoints = nullptr;
      g.checkpoints = st.d_cp->get(); g.dy = st.d_dy->get(); g.dxc = st.d_dxc->get();
      g.ddt = st.d_ddt->get(); g.dB = st.d_dxdbl->get() + R; g.dC = st.d_dxdbl->get() + R + N;
      g.ld_dbc = ld_bc; g.dz = st.d_dxz->get() + E; g.ld_dz = ld_z;
      g.dA = d_dA[owner]->get(); g.dD = d_dD[owner]->get(); g.ddt_bias = d_ddtb[owner]->get();
    }
    // The CPU op sizes its dB/dC partials by the first stream's T (all
    // streams of a training batch have one T), so it runs stream by stream
    // here, in order: the same accumulation into shared dA / dD / ddt_bias.
    Trace("scan backward: cpu");
    for (int64_t i = 0; i < n; ++i) g_cpu->SelectiveScanBackward(&cpu_b[i], 1);
    Trace("scan backward: gpu");
    CHECK_MMC(mmc_selective_scan_backward(g_ctx, gpu_b.data(), n));
    CHECK_MMC(mmc_synchronize(g_ctx));
    Trace("scan backward: done");
    std::vector<float> g_dxc, c_dxc, g_ddt, c_ddt, g_dbc, c_dbc, g_dz, c_dz, g_dA, c_dA, g_dD,
        c_dD, g_db, c_db;
    auto append = [](std::vector<float>& to, const std::vector<float>& from) {
      to.insert(to.end(), from.begin(), from.end());
    };
    for (int64_t i = 0; i < n; ++i) {
      ScanStream& st = s[i];
      append(g_dxc, st.d_dxc->Download());
      append(c_dxc, st.dxc);
      append(g_ddt, st.d_ddt->Download());
      append(c_ddt, st.ddt);
      append(g_dbc, st.d_dxdbl->Download());
      append(c_dbc, st.dxdbl);
      append(g_dz, st.d_dxz->Download());
      append(c_dz, st.dxz);
      if (!c.shared_grads || i == 0) {
        append(g_dA, d_dA[i]->Download());
        append(c_dA, dA_s[i]);
        append(g_dD, d_dD[i]->Download());
        append(c_dD, dD_s[i]);
        append(g_db, d_ddtb[i]->Download());
        append(c_db, ddtb_s[i]);
      }
    }
    Compare("selective_scan_backward", shape, "dxc", g_dxc, c_dxc, kTolScan);
    Compare("selective_scan_backward", shape, "ddt", g_ddt, c_ddt, kTolScan);
    Compare("selective_scan_backward", shape, "dB,dC (ld)", g_dbc, c_dbc, kTolScan);
    Compare("selective_scan_backward", shape, "dz (ld)", g_dz, c_dz, kTolScan);
    Compare("selective_scan_backward", shape, "dA (+=)", g_dA, c_dA, kTolScan);
    Compare("selective_scan_backward", shape, "dD (+=)", g_dD, c_dD, kTolScan);
    Compare("selective_scan_backward", shape, "ddt_bias (+=)", g_db, c_db, kTolScan);
    if (&c == &cases[1]) {
      // Determinism: from the same initial gradients, the same call gives the
      // same bits (dB/dC and dA are cross-block / cross-stream reductions).
      d_dA[0]->Upload(dA);
      d_dD[0]->Upload(dD);
      d_ddtb[0]->Upload(ddtb);
      CHECK_MMC(mmc_selective_scan_backward(g_ctx, gpu_b.data(), n));
      std::vector<float> again_bc;
      for (int64_t i = 0; i < n; ++i) append(again_bc, s[i].d_dxdbl->Download());
      ReportRepeat("selective_scan_backward", shape + " dB,dC", g_dbc, again_bc);
      ReportRepeat("selective_scan_backward", shape + " dA", g_dA, d_dA[0]->Download());
    }
  }
  // Unsupported state sizes are refused, not run.
  mmc_scan_args big{};
  big.T = 1; big.E = 1; big.N = 65;
  ReportStatus("selective_scan", "N=65", mmc_selective_scan(g_ctx, &big, 1), MMC_ERR_UNSUPPORTED);
}

// ---------------------------------------------------------------------------
// Pool attention.

void TestPool() {
  struct Case {
    int64_t S, H, rows, table;
  };
  const Case cases[] = {{64, 4, 60, 300}, {24, 3, 40, 80}, {20, 5, 33, 260},
                        {7, 1, 20, 40},   {256, 8, 12, 300}};
  const int64_t counts[] = {0, 1, 2, 3, 31, 32, 33, 50, 100, 250};
  for (const Case& c : cases) {
    const int64_t S = c.S, H = c.H, rows = c.rows, P = c.table, ld_kv = 2 * S + 1;
    std::vector<int32_t> offsets(rows + 1, 0), entries;
    for (int64_t r = 0; r < rows; ++r) {
      int64_t m = counts[r % (sizeof counts / sizeof counts[0])];
      if (r == 1) m = 0;
      m = std::min(m, P);
      std::vector<int32_t> pick(P);
      for (int64_t i = 0; i < P; ++i) pick[i] = static_cast<int32_t>(i);
      std::shuffle(pick.begin(), pick.end(), g_rng);
      std::sort(pick.begin(), pick.begin() + m);  // pool order: ascending windows
      entries.insert(entries.end(), pick.begin(), pick.begin() + m);
      offsets[r + 1] = static_cast<int32_t>(entries.size());
    }
    const int64_t nnz = static_cast<int64_t>(entries.size());
    std::vector<float> q = Normal(rows * S), table = Normal(P * ld_kv), o = Normal(rows * S),
                       dout = Normal(rows * S), dq = Normal(rows * S),
                       dtable = Normal(P * ld_kv);
    std::vector<float> o_cpu = o, dq_cpu = dq, dtable_cpu = dtable;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t m = offsets[r + 1] - offsets[r];
      if (m == 0) {
        std::fill(o_cpu.begin() + r * S, o_cpu.begin() + (r + 1) * S, 0.0f);
        std::fill(dq_cpu.begin() + r * S, dq_cpu.begin() + (r + 1) * S, 0.0f);
        continue;
      }
      std::vector<const float*> keys(m), values(m);
      std::vector<float*> dkeys(m), dvalues(m);
      for (int64_t j = 0; j < m; ++j) {
        const int64_t i = entries[offsets[r] + j];
        keys[j] = table.data() + i * ld_kv;
        values[j] = table.data() + i * ld_kv + S;
        dkeys[j] = dtable_cpu.data() + i * ld_kv;
        dvalues[j] = dtable_cpu.data() + i * ld_kv + S;
      }
      g_cpu->PoolAttend(q.data() + r * S, m, keys.data(), values.data(), S, H,
                        o_cpu.data() + r * S);
      g_cpu->PoolAttendBackward(q.data() + r * S, m, keys.data(), values.data(), S, H,
                                dout.data() + r * S, dq_cpu.data() + r * S, dkeys.data(),
                                dvalues.data());
    }
    std::vector<int32_t> t_offsets(P + 1), t_positions(std::max<int64_t>(nnz, 1));
    CHECK_MMC(mmc_pool_index_transpose(offsets.data(), rows, entries.data(), P, t_offsets.data(),
                                       t_positions.data()));
    DeviceBuffer<int32_t> d_off(offsets), d_ent(entries), d_toff(t_offsets), d_tpos(t_positions);
    DeviceBuffer<float> d_q(q), d_table(table), d_o(o), d_dout(dout), d_dq(dq), d_dtable(dtable);
    mmc_pool_attend_args a{};
    a.rows = rows; a.S = S; a.H = H; a.q = d_q.get(); a.ld_q = S; a.keys = d_table.get();
    a.values = d_table.get() + S; a.ld_kv = ld_kv; a.table_rows = P; a.offsets = d_off.get();
    a.entries = d_ent.get(); a.nnz = nnz; a.o = d_o.get(); a.ld_o = S;
    CHECK_MMC(mmc_pool_attend(g_ctx, &a));
    mmc_pool_attend_backward_args g{};
    g.fwd = a;
    g.t_offsets = d_toff.get(); g.t_positions = d_tpos.get(); g.dout = d_dout.get();
    g.ld_dout = S; g.dq = d_dq.get(); g.ld_dq = S; g.dkeys = d_dtable.get();
    g.dvalues = d_dtable.get() + S; g.ld_dkv = ld_kv;
    CHECK_MMC(mmc_pool_attend_backward(g_ctx, &g));
    const std::string shape = Fmt("S=%" PRId64 " H=%" PRId64 " rows=%" PRId64 " table=%" PRId64 " m=0..%" PRId64, S, H, rows, P, std::min<int64_t>(250, P));
    Compare("pool_attend", shape, "o", d_o.Download(), o_cpu, kTolPool);
    Compare("pool_attend_backward", shape, "dq", d_dq.Download(), dq_cpu, kTolPool);
    const std::vector<float> dtable_gpu = d_dtable.Download();
    Compare("pool_attend_backward", shape, "dk,dv (+=)", dtable_gpu, dtable_cpu, kTolPool);
    if (&c == &cases[0]) {
      d_dtable.Upload(dtable);
      CHECK_MMC(mmc_pool_attend_backward(g_ctx, &g));
      ReportRepeat("pool_attend_backward", shape + " dk,dv", dtable_gpu, d_dtable.Download());
    }
  }
}

// ---------------------------------------------------------------------------
// Loss.

void TestLoss() {
  struct Case {
    int64_t M, V;
  };
  const Case cases[] = {{37, 1000}, {5, 50280}, {3, 1}, {64, 333}};
  for (const Case& c : cases) {
    std::vector<float> logits = Normal(c.M * c.V, 0.0f, 3.0f);
    std::vector<int32_t> targets(c.M);
    int64_t counted = 0;
    for (int64_t m = 0; m < c.M; ++m) {
      targets[m] = (m % 7 == 3) ? -1 : static_cast<int32_t>(UniformInt(0, c.V - 1));
      counted += targets[m] >= 0;
    }
    const float scale = 1.0f / std::max<int64_t>(counted, 1);
    std::vector<float> cpu = logits;
    double loss_cpu = 1.25;
    g_cpu->SoftmaxCrossEntropy(cpu.data(), c.M, c.V, targets.data(), scale, &loss_cpu);
    DeviceBuffer<float> d_logits(logits);
    DeviceBuffer<int32_t> d_targets(targets);
    DeviceBuffer<double> d_loss(std::vector<double>{1.25});
    CHECK_MMC(mmc_softmax_cross_entropy(g_ctx, d_logits.get(), c.M, c.V, d_targets.get(), scale,
                                        d_loss.get()));
    const std::string shape = Fmt("M=%" PRId64 " V=%" PRId64 " (some targets -1)", c.M, c.V);
    Compare("softmax_cross_entropy", shape, "grad", d_logits.Download(), cpu, kTolLoss);
    const double loss_gpu = d_loss.Download()[0];
    Report("softmax_cross_entropy", shape, "loss_sum (+=)",
           std::fabs(loss_gpu - loss_cpu) / std::max(std::fabs(loss_cpu), 1e-30), kTolLossSum);
  }
}

// ---------------------------------------------------------------------------
// Optimizer.

void TestOptimizer() {
  const int64_t sizes[] = {0, 1, 7, 65536, 65537, 300001, 5};
  std::vector<std::vector<float>> xs;
  std::vector<std::unique_ptr<DeviceBuffer<float>>> dxs;
  std::vector<mmc_tensor_ref> refs;
  double cpu_total = 0.0;
  for (int64_t n : sizes) {
    xs.push_back(Normal(n, 0.0f, 0.1f));
    cpu_total += g_cpu->SumSquares(xs.back().data(), n);
    dxs.push_back(std::make_unique<DeviceBuffer<float>>(xs.back()));
    refs.push_back({dxs.back()->get(), n});
  }
  DeviceBuffer<double> d_total(1);
  CHECK_MMC(mmc_sum_squares(g_ctx, refs.data(), static_cast<int64_t>(refs.size()),
                            d_total.get()));
  const double gpu_total = d_total.Download()[0];
  Report("sum_squares", "7 tensors, 0..300001", "total", std::fabs(gpu_total - cpu_total) / cpu_total,
         kTolSumSquares);

  // AdamW: some tensors start one float past an aligned address (the scalar path).
  const int64_t adam_sizes[] = {1, 5, 1000, 65537, 200003, 4096};
  const int64_t misalign[] = {0, 1, 0, 1, 0, 3};
  const float wds[] = {0.0f, 0.1f, 0.01f, 0.0f, 0.1f, 0.05f};
  for (int pass = 0; pass < 2; ++pass) {
    const int64_t step = pass == 0 ? 1 : 10;
    const float gs = 0.7f, dev_scale = 0.5f;
    const bool use_device_scale = pass == 1;
    std::vector<std::vector<float>> w, g, m, v, wc, mc, vc;
    std::vector<std::unique_ptr<DeviceBuffer<float>>> dw, dg, dm, dv;
    std::vector<mmc_adamw_tensor> ts;
    const size_t count = sizeof adam_sizes / sizeof adam_sizes[0];
    for (size_t i = 0; i < count; ++i) {
      const int64_t n = adam_sizes[i], off = misalign[i];
      w.push_back(Normal(n + off));
      g.push_back(Normal(n + off, 0.0f, 0.01f));
      m.push_back(Normal(n + off, 0.0f, 0.001f));
      std::vector<float> vv = Normal(n + off, 0.0f, 1e-4f);
      for (auto& x : vv) x = x * x;
      v.push_back(vv);
      wc.push_back(w.back());
      mc.push_back(m.back());
      vc.push_back(v.back());
      g_cpu->AdamW(wc.back().data() + off, g.back().data() + off, mc.back().data() + off,
                   vc.back().data() + off, n, use_device_scale ? gs * dev_scale : gs, 1e-3f,
                   0.9f, 0.95f, 1e-8f, wds[i], step);
      dw.push_back(std::make_unique<DeviceBuffer<float>>(w.back()));
      dg.push_back(std::make_unique<DeviceBuffer<float>>(g.back()));
      dm.push_back(std::make_unique<DeviceBuffer<float>>(m.back()));
      dv.push_back(std::make_unique<DeviceBuffer<float>>(v.back()));
      ts.push_back({dw.back()->get() + off, dg.back()->get() + off, dm.back()->get() + off,
                    dv.back()->get() + off, n, wds[i]});
    }
    DeviceBuffer<float> d_scale(std::vector<float>{dev_scale});
    mmc_adamw_params p{};
    p.lr = 1e-3f; p.beta1 = 0.9f; p.beta2 = 0.95f; p.eps = 1e-8f; p.grad_scale = gs;
    p.grad_scale_device = use_device_scale ? d_scale.get() : nullptr;
    p.step = step;
    CHECK_MMC(mmc_adamw(g_ctx, ts.data(), static_cast<int64_t>(ts.size()), &p));
    std::vector<float> gw, cw, gm, cm, gv, cv;
    for (size_t i = 0; i < count; ++i) {
      auto x = dw[i]->Download();
      gw.insert(gw.end(), x.begin(), x.end());
      cw.insert(cw.end(), wc[i].begin(), wc[i].end());
      x = dm[i]->Download();
      gm.insert(gm.end(), x.begin(), x.end());
      cm.insert(cm.end(), mc[i].begin(), mc[i].end());
      x = dv[i]->Download();
      gv.insert(gv.end(), x.begin(), x.end());
      cv.insert(cv.end(), vc[i].begin(), vc[i].end());
    }
    // w moves by ~lr per step: compare the update, not w itself, so the
    // error is relative to what the op changed.
    std::vector<float> gdw(gw.size()), cdw(cw.size());
    size_t k = 0;
    for (size_t i = 0; i < count; ++i) {
      for (size_t j = 0; j < w[i].size(); ++j, ++k) {
        gdw[k] = gw[k] - w[i][j];
        cdw[k] = cw[k] - w[i][j];
      }
    }
    const std::string shape = Fmt("6 tensors, 1..200003, step %" PRId64 "%s", step,
                                  use_device_scale ? ", device gs" : "");
    Compare("adamw", shape, "w", gw, cw, kTolAdam);
    // The update alone (w − w0, ~lr): one rounding of w (2^-24·|w| ≈ 6e-8)
    // against an update of 1e-3 is ~1e-4 of it where the roundings differ.
    Compare("adamw", shape, "w − w0", gdw, cdw, 2e-4);
    Compare("adamw", shape, "m", gm, cm, kTolAdam);
    Compare("adamw", shape, "v", gv, cv, kTolAdam);
  }
}

// ---------------------------------------------------------------------------
// Rows, note block, pool-read gate and fusion, A_log (rows.cu, notes.cu).
// The references are plain loops transcribing memmamba_cuda.h (the host
// originals: TakeNotes, ReadForward / ReadBackward's gate and fusion loops,
// NotesBackward and LayerBackward's A_log loop in src/train/gradients.cc).

float HostSigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

std::vector<float> AsFloat(const std::vector<int32_t>& v) {
  return std::vector<float>(v.begin(), v.end());
}

// A scalar summed over many rows (a bias gradient): the terms have both signs
// and may cancel, so its error is measured against the size of what was
// summed, |initial| + Σ|terms| (a sum cannot be more exact than its terms'
// roundings), and the reference sums in double.
struct ScalarSum {
  double sum, magnitude;
  explicit ScalarSum(float initial) : sum(initial), magnitude(std::fabs(initial)) {}
  void Add(float term) {
    sum += term;
    magnitude += std::fabs(term);
  }
};

void CompareSum(const std::string& op, const std::string& shape, const std::string& output,
                float gpu, const ScalarSum& cpu, double tol) {
  Report(op, shape, output, std::fabs(gpu - cpu.sum) / std::max(cpu.magnitude, 1e-30), tol);
}

void TestRows() {
  // gather_rows: an embedding lookup (src_rows, one row each), an embedding
  // gradient (rows grouped by token: offsets with empty groups, out_rows
  // shuffled, accumulating), offsets without src_rows, and a plain copy.
  struct Case {
    const char* what;
    int64_t n, D, table, pad_src, pad_dst;
    bool src_rows, offsets, out_rows, accumulate;
  };
  const Case cases[] = {{"lookup", 300, 37, 50, 3, 0, true, false, false, false},
                        {"grouped", 61, 770, 500, 0, 1, true, true, true, true},
                        {"ranges", 40, 33, 200, 1, 2, false, true, false, false},
                        {"copy", 513, 768, 513, 0, 0, false, false, false, true},
                        {"lookup", 8192, 768, 5000, 0, 0, true, false, false, false}};
  for (const Case& c : cases) {
    const int64_t ld_src = c.D + c.pad_src, ld_dst = c.D + c.pad_dst;
    std::vector<int32_t> offsets, src_rows, out_rows;
    int64_t n_src = c.n;  // the range of j
    if (c.offsets) {
      offsets.assign(c.n + 1, 0);
      for (int64_t i = 0; i < c.n; ++i) {
        const int64_t len = (i % 5 == 2) ? 0 : UniformInt(1, 12);
        offsets[i + 1] = static_cast<int32_t>(offsets[i] + len);
      }
      n_src = offsets[c.n];
    }
    if (c.src_rows) {
      src_rows.resize(n_src);
      for (auto& r : src_rows) r = static_cast<int32_t>(UniformInt(0, c.table - 1));
    }
    const int64_t table = c.src_rows ? c.table : std::max(c.table, n_src);
    std::vector<float> src = Normal(table * ld_src);
    int64_t dst_rows = c.n;
    if (c.out_rows) {
      dst_rows = c.n + 7;
      std::vector<int32_t> perm(dst_rows);
      for (int64_t i = 0; i < dst_rows; ++i) perm[i] = static_cast<int32_t>(i);
      std::shuffle(perm.begin(), perm.end(), g_rng);
      out_rows.assign(perm.begin(), perm.begin() + c.n);
    }
    std::vector<float> dst = Normal(dst_rows * ld_dst);
    std::vector<float> cpu = dst;
    for (int64_t i = 0; i < c.n; ++i) {
      const int64_t j0 = c.offsets ? offsets[i] : i, j1 = c.offsets ? offsets[i + 1] : i + 1;
      float* o = cpu.data() + (c.out_rows ? out_rows[i] : i) * ld_dst;
      for (int64_t d = 0; d < c.D; ++d) {
        float acc = c.accumulate ? o[d] : 0.0f;
        for (int64_t j = j0; j < j1; ++j) acc += src[(c.src_rows ? src_rows[j] : j) * ld_src + d];
        o[d] = acc;
      }
    }
    DeviceBuffer<float> d_src(src), d_dst(dst);
    DeviceBuffer<int32_t> d_off(offsets), d_sr(src_rows), d_or(out_rows);
    CHECK_MMC(mmc_gather_rows(g_ctx, d_src.get(), ld_src, c.src_rows ? d_sr.get() : nullptr,
                              c.offsets ? d_off.get() : nullptr,
                              c.out_rows ? d_or.get() : nullptr, c.n, c.D, d_dst.get(), ld_dst,
                              c.accumulate));
    Compare("gather_rows",
            Fmt("%s n=%" PRId64 " D=%" PRId64 " ld+%" PRId64 "/+%" PRId64 "%s", c.what, c.n,
                c.D, c.pad_src, c.pad_dst, c.accumulate ? " acc" : ""),
            "dst (exact)", d_dst.Download(), cpu, 0.0);
  }
  // add, aligned (float4) and one float off (scalar).
  const int64_t sizes[] = {1000003, 77};
  const int64_t shift[] = {0, 1};
  for (int k = 0; k < 2; ++k) {
    const int64_t n = sizes[k], off = shift[k];
    std::vector<float> x = Normal(n), y = Normal(n + off);
    std::vector<float> cpu = y;
    for (int64_t i = 0; i < n; ++i) cpu[off + i] += x[i];
    DeviceBuffer<float> d_x(x), d_y(y);
    CHECK_MMC(mmc_add(g_ctx, d_x.get(), n, d_y.get() + off));
    Compare("add", Fmt("n=%" PRId64 "%s", n, off ? " y misaligned" : ""), "y (+=, exact)",
            d_y.Download(), cpu, 0.0);
  }
}

void TestNotes() {
  TestRows();
  // --- note_windows, note_max_backward --------------------------------------
  struct WinCase {
    int64_t B, T, D, w;
  };
  const WinCase wcases[] = {{3, 100, 37, 16}, {2, 70, 770, 7}, {4, 2048, 768, 32}, {2, 5, 9, 8}};
  for (const WinCase& c : wcases) {
    const int64_t B = c.B, T = c.T, D = c.D, w = c.w, nw = T / w, rows = B * nw;
    std::vector<float> a = Normal(B * T * D), sw = Normal(D, 0.0f, 0.1f);
    const float sb = Uniform(-0.5f, 0.5f);
    if (nw > 1) {
      // Ties for the max: the first position must win.
      const int64_t b = B - 1, k = 1;
      a[(b * T + k * w + 3) * D + 5] = 50.0f;
      a[(b * T + k * w + w - 1) * D + 5] = 50.0f;
      a[(b * T + k * w) * D + 0] = 60.0f;
      a[(b * T + k * w + 2) * D + 0] = 60.0f;
    }
    std::vector<float> m(rows * D), score(rows);
    std::vector<int32_t> arg(rows * D);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t k = 0; k < nw; ++k) {
        const int64_t r = b * nw + k;
        float* mr = &m[r * D];
        int32_t* ar = &arg[r * D];
        std::fill(mr, mr + D, -INFINITY);
        for (int64_t t = k * w; t < (k + 1) * w; ++t) {
          for (int64_t d = 0; d < D; ++d) {
            const float v = a[(b * T + t) * D + d];
            if (v > mr[d]) {
              mr[d] = v;
              ar[d] = static_cast<int32_t>(t);
            }
          }
        }
        float mean = 0.0f;
        for (int64_t d = 0; d < D; ++d) mean += mr[d];
        mean /= static_cast<float>(D);
        float dot = 0.0f;
        for (int64_t d = 0; d < D; ++d) dot += sw[d] * (mr[d] - mean);
        score[r] = HostSigmoid(dot + sb);
      }
    }
    const std::string shape =
        Fmt("B=%" PRId64 " T=%" PRId64 " D=%" PRId64 " w=%" PRId64 " (%" PRId64 " windows)", B,
            T, D, w, rows);
    DeviceBuffer<float> d_a(a), d_sw(sw), d_sb(std::vector<float>{sb}), d_m(Normal(rows * D)),
        d_score(Normal(rows));
    DeviceBuffer<int32_t> d_arg(std::vector<int32_t>(rows * D, -7));
    CHECK_MMC(mmc_note_windows(g_ctx, d_a.get(), B, T, D, w, d_sw.get(), d_sb.get(), d_m.get(),
                               d_arg.get(), d_score.get()));
    if (rows == 0) {
      ReportStatus("note_windows", shape, mmc_synchronize(g_ctx), MMC_OK);
      continue;
    }
    Compare("note_windows", shape, "m (exact)", d_m.Download(), m, 0.0);
    Compare("note_windows", shape, "arg (exact)", AsFloat(d_arg.Download()), AsFloat(arg), 0.0);
    Compare("note_windows", shape, "score", d_score.Download(), score, kTolNotes);
    if (nw > 1) {
      const int64_t r = (B - 1) * nw + 1;
      const bool ok = arg[r * D + 5] == w + 3 && arg[r * D] == w;
      Report("note_windows", shape, "ties: first t", ok ? 0.0 : INFINITY, 0.0);
    }
    // The max's backward into a ([B·T, D]), from the reference arg.
    std::vector<float> dm = Normal(rows * D), da = Normal(B * T * D);
    std::vector<float> da_cpu = da;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t b = r / nw;
      for (int64_t d = 0; d < D; ++d) da_cpu[(b * T + arg[r * D + d]) * D + d] += dm[r * D + d];
    }
    DeviceBuffer<float> d_dm(dm), d_da(da);
    DeviceBuffer<int32_t> d_arg_ref(arg);
    CHECK_MMC(mmc_note_max_backward(g_ctx, d_dm.get(), d_arg_ref.get(), B, nw, T, D, d_da.get()));
    Compare("note_max_backward", shape, "da (+=, exact)", d_da.Download(), da_cpu, 0.0);
  }

  // --- note_scale, note_scale_backward, note_score_backward ------------------
  struct NoteCase {
    int64_t rows, S, D;
    bool extra;
  };
  const NoteCase ncases[] = {{18, 64, 37, true}, {300, 33, 770, false}, {256, 64, 768, true},
                             {1, 1, 1, false}};
  for (const NoteCase& c : ncases) {
    const int64_t rows = c.rows, S = c.S, D = c.D;
    std::vector<float> raw = Normal(rows * S), score(rows), ds = Normal(rows * S),
                       extra = Normal(rows, 0.0f, 0.3f);
    for (auto& s : score) s = Uniform(0.01f, 0.99f);
    const std::string shape = Fmt("rows=%" PRId64 " S=%" PRId64 " D=%" PRId64 "%s", rows, S, D,
                                  c.extra ? " extra" : "");
    std::vector<float> s_cpu(rows * S), draw_cpu(rows * S), dscore_cpu(rows);
    for (int64_t r = 0; r < rows; ++r) {
      dscore_cpu[r] = c.extra ? extra[r] : 0.0f;
      for (int64_t j = 0; j < S; ++j) {
        s_cpu[r * S + j] = score[r] * raw[r * S + j];
        draw_cpu[r * S + j] = score[r] * ds[r * S + j];
        dscore_cpu[r] += ds[r * S + j] * raw[r * S + j];
      }
    }
    DeviceBuffer<float> d_raw(raw), d_score(score), d_ds(ds), d_extra(extra),
        d_s(Normal(rows * S)), d_draw(Normal(rows * S)), d_dscore(Normal(rows));
    CHECK_MMC(mmc_note_scale(g_ctx, d_raw.get(), d_score.get(), rows, S, d_s.get()));
    CHECK_MMC(mmc_note_scale_backward(g_ctx, d_raw.get(), d_score.get(), d_ds.get(),
                                      c.extra ? d_extra.get() : nullptr, rows, S, d_draw.get(),
                                      d_dscore.get()));
    Compare("note_scale", shape, "s (exact)", d_s.Download(), s_cpu, 0.0);
    Compare("note_scale_backward", shape, "draw (exact)", d_draw.Download(), draw_cpu, 0.0);
    Compare("note_scale_backward", shape, "dscore", d_dscore.Download(), dscore_cpu, kTolNotes);

    // The score's backward; every fourth row has dscore 0 (adds nothing).
    std::vector<float> m = Normal(rows * D, 0.5f, 1.0f), sw = Normal(D, 0.0f, 0.1f),
                       dscore = Normal(rows), dm = Normal(rows * D), dsw = Normal(D);
    for (int64_t r = 0; r < rows; r += 4) dscore[r] = 0.0f;
    const float dsb = 3.0f;
    std::vector<float> dm_cpu = dm, dsw_cpu = dsw;
    ScalarSum dsb_cpu(dsb);
    float w_mean = 0.0f;
    for (int64_t d = 0; d < D; ++d) w_mean += sw[d];
    w_mean /= static_cast<float>(D);
    for (int64_t r = 0; r < rows; ++r) {
      const float s = score[r];
      const float g = dscore[r] * s * (1.0f - s);
      if (g == 0.0f) continue;
      const float* mr = &m[r * D];
      float m_mean = 0.0f;
      for (int64_t d = 0; d < D; ++d) m_mean += mr[d];
      m_mean /= static_cast<float>(D);
      for (int64_t d = 0; d < D; ++d) {
        dsw_cpu[d] += g * (mr[d] - m_mean);
        dm_cpu[r * D + d] += g * (sw[d] - w_mean);
      }
      dsb_cpu.Add(g);
    }
    DeviceBuffer<float> d_m(m), d_sw(sw), d_dscore2(dscore), d_dm(dm), d_dsw(dsw),
        d_dsb(std::vector<float>{dsb});
    CHECK_MMC(mmc_note_score_backward(g_ctx, d_m.get(), d_score.get(), d_dscore2.get(), rows, D,
                                      d_sw.get(), d_dm.get(), d_dsw.get(), d_dsb.get()));
    Compare("note_score_backward", shape, "dm (+=)", d_dm.Download(), dm_cpu, kTolNotes);
    const std::vector<float> dsw_gpu = d_dsw.Download(), dsb_gpu = d_dsb.Download();
    Compare("note_score_backward", shape, "dsw (+=)", dsw_gpu, dsw_cpu, kTolNotes);
    CompareSum("note_score_backward", shape, "dsb (+=) /Σ|g|", dsb_gpu[0], dsb_cpu, kTolNotes);
    if (&c == &ncases[1]) {
      d_dsw.Upload(dsw);
      d_dsb.Upload(std::vector<float>{dsb});
      CHECK_MMC(mmc_note_score_backward(g_ctx, d_m.get(), d_score.get(), d_dscore2.get(), rows,
                                        D, d_sw.get(), d_dm.get(), d_dsw.get(), d_dsb.get()));
      ReportRepeat("note_score_backward", shape + " dsw", dsw_gpu, d_dsw.Download());
      ReportRepeat("note_score_backward", shape + " dsb", dsb_gpu, d_dsb.Download());
    }
  }

  // --- read_gate, read_fuse, read_fuse_backward ------------------------------
  struct ReadCase {
    int64_t M, D;
    float threshold;
  };
  const ReadCase rcases[] = {{300, 37, 0.5f}, {513, 770, 0.0f}, {8192, 768, 0.5f}};
  const int modes[] = {MMC_FUSION_WEIGHTED, MMC_FUSION_RESIDUAL, MMC_FUSION_GATED};
  const char* mode_names[] = {"weighted", "residual", "gated"};
  for (const ReadCase& c : rcases) {
    const int64_t M = c.M, D = c.D;
    std::vector<float> a = Normal(M * D), gw = Normal(D, 0.0f, 1.0f / std::sqrt(float(D)));
    const float gb = Uniform(-0.3f, 0.3f);
    // The reference gate. A row whose γ lies within 1e-5 of the threshold
    // could flip with the order of the dot product's sum: its CSR range is
    // made empty (gate 0 on both sides) instead. Every third row is empty.
    std::vector<float> gamma(M), gate(M);
    std::vector<int32_t> offsets(M + 1, 0);
    for (int64_t r = 0; r < M; ++r) {
      float g = gb;
      for (int64_t d = 0; d < D; ++d) g += gw[d] * a[r * D + d];
      gamma[r] = HostSigmoid(g);
      const bool empty = r % 3 == 1 || std::fabs(gamma[r] - c.threshold) < 1e-5f;
      offsets[r + 1] = offsets[r] + (empty ? 0 : static_cast<int32_t>(UniformInt(1, 4)));
      gate[r] = offsets[r + 1] > offsets[r] && gamma[r] > c.threshold ? gamma[r] : 0.0f;
    }
    const std::string gshape =
        Fmt("M=%" PRId64 " D=%" PRId64 " threshold %.1f", M, D, c.threshold);
    DeviceBuffer<float> d_a(a), d_gw(gw), d_gb(std::vector<float>{gb}), d_gate(Normal(M));
    DeviceBuffer<int32_t> d_off(offsets);
    CHECK_MMC(mmc_read_gate(g_ctx, d_a.get(), M, D, d_gw.get(), d_gb.get(), c.threshold,
                            d_off.get(), d_gate.get()));
    const std::vector<float> gate_gpu = d_gate.Download();
    Compare("read_gate", gshape, "gate", gate_gpu, gate, kTolNotes);
    int64_t zeros_differ = 0;
    for (int64_t r = 0; r < M; ++r) zeros_differ += (gate_gpu[r] == 0.0f) != (gate[r] == 0.0f);
    Report("read_gate", gshape, "closed rows", zeros_differ == 0 ? 0.0 : INFINITY, 0.0);
    // Fusion: the reference gate is the gate of both sides.
    const DeviceBuffer<float> d_gate_ref(gate);
    for (int k = 0; k < 3; ++k) {
      const int mode = modes[k];
      std::vector<float> co = Normal(M * D), x = Normal(M * D), dx = Normal(M * D),
                         alpha = Normal(D, 0.5f, 0.2f), fuse = Normal(D),
                         da = Normal(M * D), dalpha = Normal(D), dfuse = Normal(D),
                         dgw = Normal(D);
      const float dgb = 2.0f;
      std::vector<float> x_cpu = x, da_cpu = da, dalpha_cpu = dalpha, dfuse_cpu = dfuse,
                         dgw_cpu = dgw, dco_cpu(M * D, 0.0f);
      ScalarSum dgb_cpu(dgb);
      for (int64_t r = 0; r < M; ++r) {
        const float g = gate[r];
        if (g == 0.0f) continue;
        float* xr = &x_cpu[r * D];
        const float* cr = &co[r * D];
        const float* ar = &a[r * D];
        const float* dxr = &dx[r * D];
        float* dc = &dco_cpu[r * D];
        float* dar = &da_cpu[r * D];
        for (int64_t d = 0; d < D; ++d) {
          const float f = mode == MMC_FUSION_WEIGHTED ? alpha[d]
                          : mode == MMC_FUSION_GATED  ? HostSigmoid(fuse[d] * ar[d])
                                                      : 1.0f;
          xr[d] += f * (g * cr[d]);
          dc[d] = f * dxr[d];
          if (mode == MMC_FUSION_WEIGHTED) dalpha_cpu[d] += dxr[d] * g * cr[d];
          if (mode == MMC_FUSION_GATED) {
            const float p = dxr[d] * g * cr[d] * f * (1.0f - f);
            dfuse_cpu[d] += p * ar[d];
            dar[d] += p * fuse[d];
          }
        }
        float dgamma = 0.0f;
        for (int64_t d = 0; d < D; ++d) {
          dgamma += dc[d] * cr[d];
          dc[d] *= g;
        }
        const float q = dgamma * g * (1.0f - g);
        for (int64_t d = 0; d < D; ++d) {
          dgw_cpu[d] += q * ar[d];
          dar[d] += q * gw[d];
        }
        dgb_cpu.Add(q);
      }
      const bool weighted = mode == MMC_FUSION_WEIGHTED, gated = mode == MMC_FUSION_GATED;
      DeviceBuffer<float> d_co(co), d_x(x), d_dx(dx), d_alpha(alpha), d_fuse(fuse), d_da(da),
          d_dalpha(dalpha), d_dfuse(dfuse), d_dgw(dgw), d_dgb(std::vector<float>{dgb}),
          d_dco(Normal(M * D));
      CHECK_MMC(mmc_read_fuse(g_ctx, mode, gated ? d_a.get() : nullptr, d_co.get(),
                              d_gate_ref.get(), M, D, weighted ? d_alpha.get() : nullptr,
                              gated ? d_fuse.get() : nullptr, d_x.get()));
      auto backward = [&] {
        CHECK_MMC(mmc_read_fuse_backward(
            g_ctx, mode, d_a.get(), d_co.get(), d_gate_ref.get(), d_dx.get(), M, D,
            weighted ? d_alpha.get() : nullptr, gated ? d_fuse.get() : nullptr, d_gw.get(),
            d_dco.get(), d_da.get(), weighted ? d_dalpha.get() : nullptr,
            gated ? d_dfuse.get() : nullptr, d_dgw.get(), d_dgb.get()));
      };
      backward();
      const int64_t open = std::count_if(gate.begin(), gate.end(), [](float g) { return g != 0; });
      const std::string shape = Fmt("%s M=%" PRId64 " D=%" PRId64 " (%" PRId64 " open)",
                                    mode_names[k], M, D, open);
      Compare("read_fuse", shape, "x (+=)", d_x.Download(), x_cpu, kTolNotes);
      Compare("read_fuse_backward", shape, "dco", d_dco.Download(), dco_cpu, kTolNotes);
      Compare("read_fuse_backward", shape, "da (+=)", d_da.Download(), da_cpu, kTolNotes);
      const std::vector<float> dgw_gpu = d_dgw.Download(), dgb_gpu = d_dgb.Download();
      Compare("read_fuse_backward", shape, "dgw (+=)", dgw_gpu, dgw_cpu, kTolNotes);
      CompareSum("read_fuse_backward", shape, "dgb (+=) /Σ|q|", dgb_gpu[0], dgb_cpu, kTolNotes);
      if (weighted) {
        Compare("read_fuse_backward", shape, "dalpha (+=)", d_dalpha.Download(), dalpha_cpu,
                kTolNotes);
      }
      if (gated) {
        Compare("read_fuse_backward", shape, "dfuse (+=)", d_dfuse.Download(), dfuse_cpu,
                kTolNotes);
      }
      if (&c == &rcases[2] && gated) {
        // The same call from the same gradients gives the same bits.
        const std::vector<float> dfuse_gpu = d_dfuse.Download();
        d_da.Upload(da);
        d_dgw.Upload(dgw);
        d_dgb.Upload(std::vector<float>{dgb});
        d_dfuse.Upload(dfuse);
        backward();
        ReportRepeat("read_fuse_backward", shape + " dgw", dgw_gpu, d_dgw.Download());
        ReportRepeat("read_fuse_backward", shape + " dgb", dgb_gpu, d_dgb.Download());
        ReportRepeat("read_fuse_backward", shape + " dfuse", dfuse_gpu, d_dfuse.Download());
      }
    }
  }

  // --- A = −exp(A_log)ᵀ and its backward --------------------------------------
  struct ACase {
    int64_t E, N;
  };
  const ACase acases[] = {{37, 5}, {1536, 16}, {3, 64}};
  for (const ACase& c : acases) {
    const int64_t E = c.E, N = c.N;
    std::vector<float> A_log(E * N), dA = Normal(N * E), dA_log = Normal(E * N);
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t n = 0; n < N; ++n) {
        A_log[e * N + n] = std::log(static_cast<float>(n + 1)) + Uniform(-0.1f, 0.1f);
      }
    }
    std::vector<float> A(N * E), dA_log_cpu = dA_log;
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t n = 0; n < N; ++n) A[n * E + e] = -std::exp(A_log[e * N + n]);
    }
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t n = 0; n < N; ++n) dA_log_cpu[e * N + n] += dA[n * E + e] * A[n * E + e];
    }
    DeviceBuffer<float> d_A_log(A_log), d_A(Normal(N * E)), d_A_ref(A), d_dA(dA),
        d_dA_log(dA_log);
    CHECK_MMC(mmc_a_from_log(g_ctx, d_A_log.get(), E, N, d_A.get()));
    CHECK_MMC(mmc_a_log_backward(g_ctx, d_dA.get(), d_A_ref.get(), E, N, d_dA_log.get()));
    const std::string shape = Fmt("E=%" PRId64 " N=%" PRId64, E, N);
    Compare("a_from_log", shape, "A", d_A.Download(), A, kTolNotes);
    Compare("a_log_backward", shape, "dA_log (+=)", d_dA_log.Download(), dA_log_cpu, kTolNotes);
  }

  // --- Arguments --------------------------------------------------------------
  ReportStatus("gather_rows", "n < 0",
               mmc_gather_rows(g_ctx, nullptr, 4, nullptr, nullptr, nullptr, -1, 4, nullptr, 4,
                               0),
               MMC_ERR_INVALID_ARGUMENT);
  ReportStatus("gather_rows", "n = 0, no pointers",
               mmc_gather_rows(g_ctx, nullptr, 4, nullptr, nullptr, nullptr, 0, 4, nullptr, 4,
                               0),
               MMC_OK);
  ReportStatus("gather_rows", "ld_dst < D",
               mmc_gather_rows(g_ctx, nullptr, 4, nullptr, nullptr, nullptr, 1, 4, nullptr, 3,
                               0),
               MMC_ERR_INVALID_ARGUMENT);
  ReportStatus("add", "no x", mmc_add(g_ctx, nullptr, 5, nullptr), MMC_ERR_INVALID_ARGUMENT);
  ReportStatus("note_windows", "w = 0",
               mmc_note_windows(g_ctx, nullptr, 1, 4, 4, 0, nullptr, nullptr, nullptr, nullptr,
                                nullptr),
               MMC_ERR_INVALID_ARGUMENT);
  ReportStatus("note_windows", "T < w: no window",
               mmc_note_windows(g_ctx, nullptr, 2, 3, 4, 4, nullptr, nullptr, nullptr, nullptr,
                                nullptr),
               MMC_OK);
  ReportStatus("note_score_backward", "rows < 0",
               mmc_note_score_backward(g_ctx, nullptr, nullptr, nullptr, -1, 4, nullptr,
                                       nullptr, nullptr, nullptr),
               MMC_ERR_INVALID_ARGUMENT);
  ReportStatus("read_fuse", "mode 3",
               mmc_read_fuse(g_ctx, 3, nullptr, nullptr, nullptr, 0, 0, nullptr, nullptr,
                             nullptr),
               MMC_ERR_INVALID_ARGUMENT);
  {
    DeviceBuffer<float> one(std::vector<float>(4, 0.0f));
    ReportStatus("read_fuse_backward", "gated without dfuse",
                 mmc_read_fuse_backward(g_ctx, MMC_FUSION_GATED, one.get(), one.get(), one.get(),
                                        one.get(), 1, 4, nullptr, one.get(), one.get(),
                                        one.get(), one.get(), nullptr, nullptr, one.get(),
                                        one.get()),
                 MMC_ERR_INVALID_ARGUMENT);
  }
  ReportStatus("a_log_backward", "E = 0, no pointers",
               mmc_a_log_backward(g_ctx, nullptr, nullptr, 0, 16, nullptr), MMC_OK);
}

// ---------------------------------------------------------------------------
// Statuses: device OOM is its own code and leaves the context usable.

void TestStatuses() {
  void* p = nullptr;
  const int st = mmc_malloc(g_ctx, &p, size_t{1} << 50);
  ReportStatus("malloc", "1 PiB", st, MMC_ERR_OUT_OF_MEMORY);
  ReportStatus("synchronize", "after the failed malloc", mmc_synchronize(g_ctx), MMC_OK);
  mmc_weight w{};
  w.rows = 4;
  w.cols = 4;
  ReportStatus("matmul", "no weight pointer", mmc_matmul(g_ctx, nullptr, 1, 4, &w, nullptr, 4, 0),
               MMC_ERR_INVALID_ARGUMENT);
  mmc_op_table table;
  ReportStatus("get_op_table", "struct_size = sizeof", mmc_get_op_table(&table, sizeof table),
               MMC_OK);
  Report("get_op_table", "version", "MMC_API_VERSION",
         table.version == MMC_API_VERSION && table.adamw == mmc_adamw &&
                 table.decode_linear_conv == mmc_decode_linear_conv &&
                 table.decode_linear_bf16 == mmc_decode_linear_bf16 &&
                 table.slots_selective_scan_bf16 == mmc_slots_selective_scan_bf16
             ? 0.0
             : INFINITY,
         0.0);
  // The conv on the way out: at least one channel, and not after a conv input.
  mmc_decode_linear_conv_args lc{};
  lc.linear.rows = 1;
  lc.linear.K = 4;
  lc.linear.N = 4;
  lc.linear.ld_x = 4;
  lc.linear.ld_y = 4;
  ReportStatus("decode_linear_conv", "conv_n = 0", mmc_decode_linear_conv(g_ctx, &lc),
               MMC_ERR_INVALID_ARGUMENT);
  lc.conv_n = 2;
  lc.linear.input = MMC_DECODE_INPUT_CONV;
  ReportStatus("decode_linear_conv", "a conv input", mmc_decode_linear_conv(g_ctx, &lc),
               MMC_ERR_INVALID_ARGUMENT);
}

}  // namespace

int main(int argc, char** argv) {
  // Optional arguments name the families to run (default: all), so that a
  // device fault in one family cannot hide the results of the others.
  auto want = [&](const char* family) {
    if (argc < 2) return true;
    for (int i = 1; i < argc; ++i) {
      if (std::strcmp(argv[i], family) == 0) return true;
    }
    return false;
  };
  mmc_context_options opts;
  mmc_context_options_init(&opts, sizeof opts);
  const int st = mmc_context_create(&g_ctx, &opts);
  if (st == MMC_ERR_NO_DEVICE) {
    std::printf("cuda_op_parity: no CUDA device (%s): skipped\n", mmc_status_string(st));
    return 77;
  }
  if (st != MMC_OK) {
    std::fprintf(stderr, "cuda_op_parity: context: %s\n", mmc_status_string(st));
    return 1;
  }
  mmc_device_info info;
  CHECK_MMC(mmc_device_get_info(g_ctx, &info));
  std::printf("device: %s (sm_%d%d, %d SMs, %.1f GiB), runtime %d, driver %d\n", info.name,
              info.major, info.minor, info.multiprocessors,
              info.global_memory_bytes / double(1 << 30), info.runtime_version,
              info.driver_version);
  g_cpu = memmamba::CreateCpuBackend(1);

  if (want("matmul")) TestMatmul();
  if (want("matmul")) TestMatmulBf16Products();
  if (want("decode")) TestDecodeLinearBf16();
  if (want("bf16")) TestBf16Outputs();
  if (want("norm")) TestRmsNorm();
  if (want("conv")) TestConv();
  if (want("scan")) TestScan();
  if (want("pool")) TestPool();
  if (want("loss")) TestLoss();
  if (want("optimizer")) TestOptimizer();
  if (want("notes")) TestNotes();
  if (want("status")) TestStatuses();
  const int sync = mmc_synchronize(g_ctx);
  if (sync != MMC_OK) Die("final synchronize", sync);

  int failed = 0;
  std::printf("\n| op | shape | output | ‖gpu−cpu‖/‖cpu‖ | tol | result |\n");
  std::printf("| --- | --- | --- | ---: | ---: | --- |\n");
  for (const Result& r : g_results) {
    std::printf("| %s | %s | %s | %.2e | %.0e | %s |\n", r.op.c_str(), r.shape.c_str(),
                r.output.c_str(), r.err, r.tol, r.pass ? "pass" : "**FAIL**");
    failed += !r.pass;
  }
  std::printf("\n%zu checks, %d failed\n", g_results.size(), failed);
  g_cpu.reset();
  mmc_context_free(g_ctx);
  return failed == 0 ? 0 : 1;
}
