// Timings of every CUDA op (libmemmamba_cuda, kernels/) at Mamba-130m
// training sizes: D = 768, E = 1536, N = 16, R = 48, K = 4, T = 2048, B = 4
// streams (8192 rows), V = 50280; pool attention S = 64, H = 4, windows of
// w = 32, P = 50 (row t reads min(P, t/w) entries, ~30 on average).
//
// Two probes of the same device in the same run are the ceilings:
//   copy   a 1 GiB device-to-device copy; GB/s counts bytes read + written
//   sgemm  an 8192³ fp32 product through mmc_matmul (cuBLASLt, no TF32)
// Each op: 3 warm-up calls, then `reps` calls each between two CUDA events,
// the median reported. Memory-bound ops report GB/s over the fewest bytes
// the op must move (each input read once, each output written once) and its
// share of the copy probe; products report TFLOP/s and their share of the
// sgemm probe. Inputs are random (never zeros); RMSNorm's inputs (25 MB,
// which L2 would hold) rotate over 4 copies. Pool attention's bytes are the
// gathered key/value rows (served from L1/L2: the tables are small), so its
// GB/s is not a DRAM figure.
//
//   bench_cuda_ops [reps]        (default 20)
#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "memmamba_cuda.h"

namespace {

mmc_context* g_ctx = nullptr;
int g_reps = 20;

[[noreturn]] void Die(const char* what, int status) {
  std::fprintf(stderr, "FATAL: %s: %s (%s)\n", what, mmc_status_string(status),
               g_ctx ? mmc_context_last_error(g_ctx) : "");
  std::exit(1);
}

#define CHECK_MMC(expr)                 \
  do {                                  \
    const int st_ = (expr);             \
    if (st_ != MMC_OK) Die(#expr, st_); \
  } while (0)

// A pool of random host floats in [-1, 1), copied into device buffers.
std::vector<float> g_random;

void FillRandom(float* dst, size_t n, float scale = 1.0f, size_t seed = 0) {
  if (scale != 1.0f) {
    std::vector<float> tmp(std::min(n, g_random.size()));
    size_t done = 0;
    while (done < n) {
      const size_t len = std::min(tmp.size(), n - done);
      const size_t off = (seed * 7919 + done) % (g_random.size() - len + 1);
      for (size_t i = 0; i < len; ++i) tmp[i] = g_random[off + i] * scale;
      CHECK_MMC(mmc_memcpy(g_ctx, dst + done, tmp.data(), len * sizeof(float),
                           MMC_COPY_HOST_TO_DEVICE));
      done += len;
    }
    return;
  }
  size_t done = 0;
  while (done < n) {
    const size_t len = std::min(g_random.size(), n - done);
    const size_t off = (seed * 7919 + done) % (g_random.size() - len + 1);
    CHECK_MMC(mmc_memcpy(g_ctx, dst + done, g_random.data() + off, len * sizeof(float),
                         MMC_COPY_HOST_TO_DEVICE));
    done += len;
  }
}

template <typename T>
T* Alloc(size_t n) {
  void* p = nullptr;
  CHECK_MMC(mmc_malloc(g_ctx, &p, std::max<size_t>(n, 1) * sizeof(T)));
  return static_cast<T*>(p);
}

float* RandomBuffer(size_t n, float scale = 1.0f, size_t seed = 0) {
  float* p = Alloc<float>(n);
  FillRandom(p, n, scale, seed);
  return p;
}

// Median milliseconds of `reps` calls of f (call index passed), after warm-up.
double TimeMs(const std::function<void(int)>& f, int reps = -1) {
  if (reps < 0) reps = g_reps;
  mmc_event *start = nullptr, *stop = nullptr;
  CHECK_MMC(mmc_event_create(g_ctx, &start));
  CHECK_MMC(mmc_event_create(g_ctx, &stop));
  for (int i = 0; i < 3; ++i) f(i);
  CHECK_MMC(mmc_synchronize(g_ctx));
  std::vector<float> ms(reps);
  for (int i = 0; i < reps; ++i) {
    CHECK_MMC(mmc_event_record(g_ctx, start));
    f(i);
    CHECK_MMC(mmc_event_record(g_ctx, stop));
    CHECK_MMC(mmc_event_elapsed_ms(g_ctx, start, stop, &ms[i]));
  }
  CHECK_MMC(mmc_synchronize(g_ctx));
  mmc_event_free(start);
  mmc_event_free(stop);
  std::sort(ms.begin(), ms.end());
  return ms[reps / 2];
}

struct Row {
  std::string op, shape;
  double ms;
  double amount;  // bytes or flops
  bool flops;
};
std::vector<Row> g_rows;
double g_copy_gbs = 0.0, g_sgemm_tflops = 0.0;

void Add(const std::string& op, const std::string& shape, double ms, double amount, bool flops) {
  g_rows.push_back({op, shape, ms, amount, flops});
  const double rate = amount / (ms * 1e-3) / (flops ? 1e12 : 1e9);
  std::printf("%-34s %-40s %10.1f us  %8.1f %s\n", op.c_str(), shape.c_str(), ms * 1e3, rate,
              flops ? "TFLOP/s" : "GB/s");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) g_reps = std::max(1, std::atoi(argv[1]));
  const int st = mmc_context_create(&g_ctx, nullptr);
  if (st == MMC_ERR_NO_DEVICE) {
    std::printf("bench_cuda_ops: no CUDA device: skipped\n");
    return 77;
  }
  if (st != MMC_OK) Die("mmc_context_create", st);
  mmc_device_info info;
  CHECK_MMC(mmc_device_get_info(g_ctx, &info));
  std::printf("device: %s (sm_%d%d, %d SMs, %.1f GiB, L2 %.0f MiB), runtime %d, driver %d\n",
              info.name, info.major, info.minor, info.multiprocessors,
              info.global_memory_bytes / double(1 << 30), info.l2_cache_bytes / double(1 << 20),
              info.runtime_version, info.driver_version);
  g_random.resize(size_t{1} << 24);
  uint64_t s = 0x9e3779b97f4a7c15ull;
  for (auto& x : g_random) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    x = static_cast<float>(static_cast<int64_t>(s >> 40) - (int64_t{1} << 23)) /
        static_cast<float>(int64_t{1} << 23);
  }

  // --- Probes ---------------------------------------------------------------
  {
    const size_t bytes = size_t{1} << 30;
    float* a = RandomBuffer(bytes / 4);
    float* b = Alloc<float>(bytes / 4);
    const double ms = TimeMs([&](int) {
      CHECK_MMC(mmc_memcpy(g_ctx, b, a, bytes, MMC_COPY_DEVICE_TO_DEVICE));
    });
    g_copy_gbs = 2.0 * bytes / (ms * 1e-3) / 1e9;
    std::printf("probe copy: 1 GiB device-to-device, %.3f ms, %.0f GB/s (read + write)\n", ms,
                g_copy_gbs);
    CHECK_MMC(mmc_free(g_ctx, a));
    CHECK_MMC(mmc_free(g_ctx, b));
  }
  {
    const int64_t n = 8192;
    float* x = RandomBuffer(n * n);
    float* w = RandomBuffer(n * n, 0.01f, 1);
    float* y = Alloc<float>(n * n);
    mmc_weight mw{w, nullptr, n, n};
    const double ms = TimeMs([&](int) { CHECK_MMC(mmc_matmul(g_ctx, x, n, n, &mw, y, n, 0)); }, 7);
    g_sgemm_tflops = 2.0 * n * n * n / (ms * 1e-3) / 1e12;
    std::printf("probe sgemm: 8192^3 fp32 through mmc_matmul, %.3f ms, %.1f TFLOP/s\n", ms,
                g_sgemm_tflops);
    CHECK_MMC(mmc_free(g_ctx, x));
    CHECK_MMC(mmc_free(g_ctx, w));
    CHECK_MMC(mmc_free(g_ctx, y));
  }

  const int64_t D = 768, E = 1536, N = 16, R = 48, K = 4, T = 2048, B = 4, V = 50280;
  const int64_t M = B * T;
  char shape[128];

  // --- Matrix products -------------------------------------------------------
  {
    float* x = RandomBuffer(M * D);
    float* w_in = RandomBuffer(2 * E * D, 0.02f, 2);
    float* xz = Alloc<float>(M * 2 * E);
    float* y = RandomBuffer(M * E, 1.0f, 3);
    float* w_out = RandomBuffer(D * E, 0.02f, 4);
    float* out = Alloc<float>(M * D);
    float* w_x = RandomBuffer((R + 2 * N) * E, 0.02f, 5);
    float* xdbl = Alloc<float>(M * (R + 2 * N));
    float* dxz = RandomBuffer(M * 2 * E, 1.0f, 6);
    float* dx = Alloc<float>(M * D);
    float* dw_in = RandomBuffer(2 * E * D, 1.0f, 7);
    mmc_weight in{w_in, nullptr, 2 * E, D}, op{w_out, nullptr, D, E}, xp{w_x, nullptr, R + 2 * N, E};
    std::snprintf(shape, sizeof shape, "in_proj M=%" PRId64 " K=%" PRId64 " N=%" PRId64, M, D, 2 * E);
    Add("matmul", shape,
        TimeMs([&](int) { CHECK_MMC(mmc_matmul(g_ctx, x, M, D, &in, xz, 2 * E, 0)); }),
        2.0 * M * D * 2 * E, true);
    std::snprintf(shape, sizeof shape, "out_proj M=%" PRId64 " K=%" PRId64 " N=%" PRId64, M, E, D);
    Add("matmul", shape,
        TimeMs([&](int) { CHECK_MMC(mmc_matmul(g_ctx, y, M, E, &op, out, D, 0)); }),
        2.0 * M * E * D, true);
    std::snprintf(shape, sizeof shape, "x_proj M=%" PRId64 " K=%" PRId64 " N=%" PRId64, M, E, R + 2 * N);
    Add("matmul", shape,
        TimeMs([&](int) { CHECK_MMC(mmc_matmul(g_ctx, y, M, E, &xp, xdbl, R + 2 * N, 0)); }),
        2.0 * M * E * (R + 2 * N), true);
    std::snprintf(shape, sizeof shape, "in_proj dx M=%" PRId64 " N=%" PRId64 " K=%" PRId64, M, 2 * E, D);
    Add("matmul_backward_input", shape, TimeMs([&](int) {
          CHECK_MMC(mmc_matmul_backward_input(g_ctx, dxz, M, 2 * E, w_in, 2 * E, D, dx, D, 0));
        }),
        2.0 * M * D * 2 * E, true);
    std::snprintf(shape, sizeof shape, "in_proj dW M=%" PRId64 " N=%" PRId64 " K=%" PRId64, M, 2 * E, D);
    Add("matmul_backward_weight", shape, TimeMs([&](int) {
          CHECK_MMC(mmc_matmul_backward_weight(g_ctx, dxz, M, 2 * E, x, D, 2 * E, D, dw_in));
        }),
        2.0 * M * D * 2 * E, true);
    // bf16 weights: the same product after widening W.
    uint16_t* w16 = Alloc<uint16_t>(2 * E * D);
    {
      std::vector<uint16_t> h(2 * E * D);
      for (size_t i = 0; i < h.size(); ++i) {
        uint32_t bits;
        const float f = g_random[i] * 0.02f;
        std::memcpy(&bits, &f, 4);
        h[i] = static_cast<uint16_t>(bits >> 16);
      }
      CHECK_MMC(mmc_memcpy(g_ctx, w16, h.data(), h.size() * 2, MMC_COPY_HOST_TO_DEVICE));
    }
    mmc_weight in16{nullptr, w16, 2 * E, D};
    std::snprintf(shape, sizeof shape, "in_proj bf16 W M=%" PRId64 " K=%" PRId64 " N=%" PRId64, M, D, 2 * E);
    Add("matmul (bf16 W)", shape,
        TimeMs([&](int) { CHECK_MMC(mmc_matmul(g_ctx, x, M, D, &in16, xz, 2 * E, 0)); }),
        2.0 * M * D * 2 * E, true);
    for (float* p : {x, w_in, xz, y, w_out, out, w_x, xdbl, dxz, dx, dw_in}) {
      CHECK_MMC(mmc_free(g_ctx, p));
    }
    CHECK_MMC(mmc_free(g_ctx, w16));
    // The LM head: [M, D]·[V, D]ᵀ.
    float* h = RandomBuffer(M * D);
    float* lm = RandomBuffer(V * D, 0.02f, 8);
    float* logits = Alloc<float>(M * V);
    mmc_weight head{lm, nullptr, V, D};
    std::snprintf(shape, sizeof shape, "lm_head M=%" PRId64 " K=%" PRId64 " N=%" PRId64, M, D, V);
    Add("matmul", shape,
        TimeMs([&](int) { CHECK_MMC(mmc_matmul(g_ctx, h, M, D, &head, logits, V, 0)); }, 7),
        2.0 * M * D * V, true);
    // Softmax cross-entropy in place over those logits (values of a real head).
    int32_t* targets = Alloc<int32_t>(M);
    {
      std::vector<int32_t> t(M);
      for (int64_t m = 0; m < M; ++m) t[m] = static_cast<int32_t>((m * 7919) % V);
      CHECK_MMC(mmc_memcpy(g_ctx, targets, t.data(), M * 4, MMC_COPY_HOST_TO_DEVICE));
    }
    double* loss = Alloc<double>(1);
    CHECK_MMC(mmc_memset(g_ctx, loss, 0, sizeof(double)));
    std::snprintf(shape, sizeof shape, "M=%" PRId64 " V=%" PRId64, M, V);
    Add("softmax_cross_entropy", shape, TimeMs([&](int) {
          CHECK_MMC(mmc_softmax_cross_entropy(g_ctx, logits, M, V, targets, 1.0f / M, loss));
        }),
        2.0 * M * V * 4, false);
    for (void* p : {static_cast<void*>(h), static_cast<void*>(lm), static_cast<void*>(logits),
                    static_cast<void*>(targets), static_cast<void*>(loss)}) {
      CHECK_MMC(mmc_free(g_ctx, p));
    }
  }

  // --- RMSNorm (4 rotating input sets) -------------------------------------
  {
    constexpr int kSets = 4;
    float *x[kSets], *o[kSets], *dy[kSets];
    for (int i = 0; i < kSets; ++i) {
      x[i] = RandomBuffer(M * D, 1.0f, 10 + i);
      o[i] = Alloc<float>(M * D);
      dy[i] = RandomBuffer(M * D, 1.0f, 20 + i);
    }
    float* w = RandomBuffer(D, 1.0f, 30);
    float* dw = RandomBuffer(D, 1.0f, 31);
    std::snprintf(shape, sizeof shape, "M=%" PRId64 " D=%" PRId64, M, D);
    Add("rms_norm", shape, TimeMs([&](int i) {
          CHECK_MMC(mmc_rms_norm(g_ctx, x[i % kSets], M, D, w, 1e-5f, o[i % kSets]));
        }),
        2.0 * M * D * 4, false);
    Add("rms_norm_backward", shape, TimeMs([&](int i) {
          CHECK_MMC(mmc_rms_norm_backward(g_ctx, x[i % kSets], M, D, w, 1e-5f, dy[i % kSets],
                                          o[i % kSets], 0, dw));
        }),
        3.0 * M * D * 4, false);
    for (int i = 0; i < kSets; ++i) {
      CHECK_MMC(mmc_free(g_ctx, x[i]));
      CHECK_MMC(mmc_free(g_ctx, o[i]));
      CHECK_MMC(mmc_free(g_ctx, dy[i]));
    }
    CHECK_MMC(mmc_free(g_ctx, w));
    CHECK_MMC(mmc_free(g_ctx, dw));
  }

  // --- Conv and scan ----------------------------------------------------------
  {
    float* xz = RandomBuffer(M * 2 * E, 1.0f, 40);          // [ξ | z] per row
    float* xc = Alloc<float>(M * E);
    float* cw = RandomBuffer(E * K, 0.5f, 41);
    float* cb = RandomBuffer(E, 0.1f, 42);
    float* cstate = Alloc<float>(B * (K - 1) * E);
    CHECK_MMC(mmc_memset(g_ctx, cstate, 0, B * (K - 1) * E * 4));
    float* dout = RandomBuffer(M * E, 1.0f, 43);
    float* dxz = Alloc<float>(M * 2 * E);
    float* dcw = RandomBuffer(E * K, 1.0f, 44);
    float* dcb = RandomBuffer(E, 1.0f, 45);
    std::vector<mmc_conv_args> ca(B);
    std::vector<mmc_conv_backward_args> cba(B);
    for (int64_t b = 0; b < B; ++b) {
      ca[b] = {T, E, K, xz + b * T * 2 * E, 2 * E, cw, cb, cstate + b * (K - 1) * E, xc + b * T * E};
      cba[b] = {T, E, K, xz + b * T * 2 * E, 2 * E, cw, cb, dout + b * T * E,
                dxz + b * T * 2 * E, 2 * E, dcw, dcb};
    }
    std::snprintf(shape, sizeof shape, "B=%" PRId64 " T=%" PRId64 " E=%" PRId64 " K=%" PRId64, B, T, E, K);
    Add("conv_silu", shape,
        TimeMs([&](int) { CHECK_MMC(mmc_conv_silu(g_ctx, ca.data(), B)); }), 2.0 * M * E * 4,
        false);
    Add("conv_silu_backward", shape,
        TimeMs([&](int) { CHECK_MMC(mmc_conv_silu_backward(g_ctx, cba.data(), B)); }),
        3.0 * M * E * 4, false);

    // Scan inputs: x_proj output [M, R+2N] (B, C at R, R+N), dt [M, E] random.
    const int64_t ld_bc = R + 2 * N;
    float* xdbl = RandomBuffer(M * ld_bc, 1.0f, 50);
    float* dt = RandomBuffer(M * E, 0.5f, 51);
    float* dt_bias = Alloc<float>(E);
    float* A = Alloc<float>(N * E);
    float* Dp = Alloc<float>(E);
    {
      std::vector<float> hb(E), ha(N * E), hd(E, 1.0f);
      for (int64_t e = 0; e < E; ++e) hb[e] = -4.0f + 2.0f * g_random[e] ;
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t e = 0; e < E; ++e) ha[n * E + e] = -static_cast<float>(n + 1);
      }
      CHECK_MMC(mmc_memcpy(g_ctx, dt_bias, hb.data(), E * 4, MMC_COPY_HOST_TO_DEVICE));
      CHECK_MMC(mmc_memcpy(g_ctx, A, ha.data(), N * E * 4, MMC_COPY_HOST_TO_DEVICE));
      CHECK_MMC(mmc_memcpy(g_ctx, Dp, hd.data(), E * 4, MMC_COPY_HOST_TO_DEVICE));
    }
    float* state = Alloc<float>(B * N * E);
    CHECK_MMC(mmc_memset(g_ctx, state, 0, B * N * E * 4));
    float* y = Alloc<float>(M * E);
    const int64_t chunks = (T + 63) / 64;
    float* cps = Alloc<float>(B * chunks * N * E);
    std::vector<mmc_scan_args> sa(B);
    for (int64_t b = 0; b < B; ++b) {
      mmc_scan_args& a = sa[b];
      a = mmc_scan_args{};
      a.T = T; a.E = E; a.N = N; a.xc = xc + b * T * E; a.dt = dt + b * T * E;
      a.dt_bias = dt_bias; a.A = A; a.B = xdbl + b * T * ld_bc + R;
      a.C = xdbl + b * T * ld_bc + R + N; a.ld_bc = ld_bc; a.D = Dp;
      a.z = xz + b * T * 2 * E + E; a.ld_z = 2 * E; a.state = state + b * N * E;
      a.y = y + b * T * E; a.checkpoints = cps + b * chunks * N * E;
    }
    std::snprintf(shape, sizeof shape, "B=%" PRId64 " T=%" PRId64 " E=%" PRId64 " N=%" PRId64 " +checkpoints", B, T, E, N);
    const double scan_fwd_bytes =
        4.0 * M * E * 4 + 2.0 * M * N * 4 + double(B) * chunks * N * E * 4;
    Add("selective_scan", shape,
        TimeMs([&](int) { CHECK_MMC(mmc_selective_scan(g_ctx, sa.data(), B)); }), scan_fwd_bytes,
        false);
    // Backward from those checkpoints.
    float* dy = RandomBuffer(M * E, 1.0f, 52);
    float* dxc = Alloc<float>(M * E);
    float* ddt = Alloc<float>(M * E);
    float* dxdbl = Alloc<float>(M * ld_bc);
    float* dA = RandomBuffer(N * E, 1.0f, 53);
    float* dD = RandomBuffer(E, 1.0f, 54);
    float* ddtb = RandomBuffer(E, 1.0f, 55);
    std::vector<mmc_scan_backward_args> sb(B);
    for (int64_t b = 0; b < B; ++b) {
      mmc_scan_backward_args& g = sb[b];
      g = mmc_scan_backward_args{};
      g.fwd = sa[b];
      g.fwd.checkpoints = nullptr;
      g.checkpoints = cps + b * chunks * N * E;
      g.dy = dy + b * T * E; g.dxc = dxc + b * T * E; g.ddt = ddt + b * T * E;
      g.dB = dxdbl + b * T * ld_bc + R; g.dC = dxdbl + b * T * ld_bc + R + N; g.ld_dbc = ld_bc;
      g.dz = dxz + b * T * 2 * E + E; g.ld_dz = 2 * E;
      g.dA = dA; g.dD = dD; g.ddt_bias = ddtb;
    }
    const double scan_bwd_bytes =
        7.0 * M * E * 4 + 4.0 * M * N * 4 + double(B) * chunks * N * E * 4;
    Add("selective_scan_backward", shape,
        TimeMs([&](int) { CHECK_MMC(mmc_selective_scan_backward(g_ctx, sb.data(), B)); }),
        scan_bwd_bytes, false);
    for (float* p : {xz, xc, cw, cb, cstate, dout, dxz, dcw, dcb, xdbl, dt, dt_bias, A, Dp, state,
                     y, cps, dy, dxc, ddt, dxdbl, dA, dD, ddtb}) {
      CHECK_MMC(mmc_free(g_ctx, p));
    }
  }

  // --- Pool attention ---------------------------------------------------------
  {
    const int64_t S = 64, H = 4, w = 32, P = 50, windows = T / w;
    const int64_t table_rows = B * windows;  // every stream's notes, one table
    std::vector<int32_t> offsets(M + 1, 0), entries;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < T; ++t) {
        const int64_t win = t / w;
        // The pool after window win-1: the last min(P, win) windows (FIFO view).
        for (int64_t j = std::max<int64_t>(0, win - P); j < win; ++j) {
          entries.push_back(static_cast<int32_t>(b * windows + j));
        }
        offsets[b * T + t + 1] = static_cast<int32_t>(entries.size());
      }
    }
    const int64_t nnz = static_cast<int64_t>(entries.size());
    std::vector<int32_t> t_off(table_rows + 1), t_pos(nnz);
    CHECK_MMC(mmc_pool_index_transpose(offsets.data(), M, entries.data(), table_rows,
                                       t_off.data(), t_pos.data()));
    int32_t* d_off = Alloc<int32_t>(M + 1);
    int32_t* d_ent = Alloc<int32_t>(nnz);
    int32_t* d_toff = Alloc<int32_t>(table_rows + 1);
    int32_t* d_tpos = Alloc<int32_t>(nnz);
    CHECK_MMC(mmc_memcpy(g_ctx, d_off, offsets.data(), (M + 1) * 4, MMC_COPY_HOST_TO_DEVICE));
    CHECK_MMC(mmc_memcpy(g_ctx, d_ent, entries.data(), nnz * 4, MMC_COPY_HOST_TO_DEVICE));
    CHECK_MMC(mmc_memcpy(g_ctx, d_toff, t_off.data(), (table_rows + 1) * 4,
                         MMC_COPY_HOST_TO_DEVICE));
    CHECK_MMC(mmc_memcpy(g_ctx, d_tpos, t_pos.data(), nnz * 4, MMC_COPY_HOST_TO_DEVICE));
    float* q = RandomBuffer(M * S, 1.0f, 60);
    float* kv = RandomBuffer(table_rows * 2 * S, 1.0f, 61);
    float* o = Alloc<float>(M * S);
    float* dout = RandomBuffer(M * S, 1.0f, 62);
    float* dq = Alloc<float>(M * S);
    float* dkv = RandomBuffer(table_rows * 2 * S, 1.0f, 63);
    mmc_pool_attend_args a{};
    a.rows = M; a.S = S; a.H = H; a.q = q; a.ld_q = S; a.keys = kv; a.values = kv + S;
    a.ld_kv = 2 * S; a.table_rows = table_rows; a.offsets = d_off; a.entries = d_ent;
    a.nnz = nnz; a.o = o; a.ld_o = S;
    mmc_pool_attend_backward_args g{};
    g.fwd = a;
    g.t_offsets = d_toff; g.t_positions = d_tpos; g.dout = dout; g.ld_dout = S; g.dq = dq;
    g.ld_dq = S; g.dkeys = dkv; g.dvalues = dkv + S; g.ld_dkv = 2 * S;
    std::snprintf(shape, sizeof shape, "rows=%" PRId64 " S=%" PRId64 " H=%" PRId64 " %.1f entries/row", M, S, H,
                  double(nnz) / M);
    Add("pool_attend", shape, TimeMs([&](int) { CHECK_MMC(mmc_pool_attend(g_ctx, &a)); }),
        2.0 * nnz * S * 4 + 2.0 * M * S * 4, false);
    Add("pool_attend_backward", shape,
        TimeMs([&](int) { CHECK_MMC(mmc_pool_attend_backward(g_ctx, &g)); }),
        4.0 * nnz * S * 4 + 3.0 * M * S * 4, false);
    for (void* p : {static_cast<void*>(d_off), static_cast<void*>(d_ent),
                    static_cast<void*>(d_toff), static_cast<void*>(d_tpos),
                    static_cast<void*>(q), static_cast<void*>(kv), static_cast<void*>(o),
                    static_cast<void*>(dout), static_cast<void*>(dq), static_cast<void*>(dkv)}) {
      CHECK_MMC(mmc_free(g_ctx, p));
    }
  }

  // --- Optimizer over the Mamba-130m parameters (L = 24) --------------------
  {
    std::vector<int64_t> sizes = {V * D, D};  // embedding (tied head), norm_f
    for (int l = 0; l < 24; ++l) {
      for (int64_t n : {D, 2 * E * D, E * K, E, (R + 2 * N) * E, E * R, E, E * N, E, D * E}) {
        sizes.push_back(n);
      }
    }
    int64_t total = 0;
    std::vector<int64_t> offs;
    for (int64_t n : sizes) {
      offs.push_back(total);
      total += (n + 15) / 16 * 16;
    }
    float* w = RandomBuffer(total, 1.0f, 70);
    float* g = RandomBuffer(total, 0.01f, 71);
    float* m = RandomBuffer(total, 0.001f, 72);
    float* v = Alloc<float>(total);
    FillRandom(v, total, 1e-4f, 73);
    double* out = Alloc<double>(1);
    std::vector<mmc_tensor_ref> refs;
    std::vector<mmc_adamw_tensor> ts;
    int64_t params = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      refs.push_back({g + offs[i], sizes[i]});
      ts.push_back({w + offs[i], g + offs[i], m + offs[i], v + offs[i], sizes[i], 0.1f});
      params += sizes[i];
    }
    // v must be non-negative: square it once through an AdamW step with β2 = 0.
    std::snprintf(shape, sizeof shape, "%zu tensors, %.1f M params", sizes.size(), params / 1e6);
    Add("sum_squares", shape, TimeMs([&](int) {
          CHECK_MMC(mmc_sum_squares(g_ctx, refs.data(), static_cast<int64_t>(refs.size()), out));
        }),
        4.0 * params, false);
    mmc_adamw_params p{};
    p.lr = 1e-4f; p.beta1 = 0.9f; p.beta2 = 0.0f; p.eps = 1e-8f; p.grad_scale = 1.0f;
    p.step = 1;
    CHECK_MMC(mmc_adamw(g_ctx, ts.data(), static_cast<int64_t>(ts.size()), &p));
    p.beta2 = 0.95f;
    int step = 1;
    Add("adamw", shape, TimeMs([&](int) {
          p.step = ++step;
          CHECK_MMC(mmc_adamw(g_ctx, ts.data(), static_cast<int64_t>(ts.size()), &p));
        }),
        7.0 * 4 * params, false);
    for (void* q : {static_cast<void*>(w), static_cast<void*>(g), static_cast<void*>(m),
                    static_cast<void*>(v), static_cast<void*>(out)}) {
      CHECK_MMC(mmc_free(g_ctx, q));
    }
  }
  CHECK_MMC(mmc_synchronize(g_ctx));

  std::printf("\nprobes: copy %.0f GB/s (read + write), sgemm fp32 %.1f TFLOP/s\n\n", g_copy_gbs,
              g_sgemm_tflops);
  std::printf("| op | shape | median µs | rate | of probe |\n| --- | --- | ---: | ---: | ---: |\n");
  for (const Row& r : g_rows) {
    const double rate = r.amount / (r.ms * 1e-3) / (r.flops ? 1e12 : 1e9);
    const double share = rate / (r.flops ? g_sgemm_tflops : g_copy_gbs);
    std::printf("| %s | %s | %.1f | %.1f %s | %.0f %% |\n", r.op.c_str(), r.shape.c_str(),
                r.ms * 1e3, rate, r.flops ? "TFLOP/s" : "GB/s", 100.0 * share);
  }
  mmc_context_free(g_ctx);
  return 0;
}
