// Sessions on a CUDA device; see device_sessions.h. The forward below is
// runtime/forward.cc's, op for op, with the note block and the pool reads
// done by the slot kernels of kernels/sessions.cu.
#include "runtime/device_sessions.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "backend/cpu/bf16.h"
#include "backend/cuda/cuda_library.h"
#include "model/model.h"

namespace memmamba {

#define MMC_CALL(op, ...) MM_RETURN_IF_ERROR(ctx->Check(ops->op(ctx->get(), __VA_ARGS__), #op))

namespace {

template <typename T>
using DA = DeviceArray<T>;

// A device weight matrix, f32 or (MM_MATH_BF16) bf16, as the matmul op
// takes it.
struct DevMatrix {
  const float* f32 = nullptr;
  const uint16_t* bf16 = nullptr;
  int64_t rows = 0, cols = 0;
  mmc_weight ref() const {
    mmc_weight w{};
    w.f32 = bf16 != nullptr ? nullptr : f32;
    w.bf16 = bf16;
    w.rows = rows;
    w.cols = cols;
    return w;
  }
};

struct DevRead {
  DevMatrix q, o;
  const float *k = nullptr, *v = nullptr, *gate = nullptr, *alpha = nullptr, *fuse = nullptr;
  float gate_bias = 0.0f;
};

struct DevLayer {
  const float *norm = nullptr, *conv_w = nullptr, *conv_b = nullptr, *dt_bias = nullptr,
              *A = nullptr, *D = nullptr, *note_norm = nullptr, *note_score = nullptr;
  float note_score_bias = 0.0f;
  DevMatrix in_proj, x_proj, dt_proj, out_proj, note_summary;
  DevRead tok, lay;
};

}  // namespace

struct DeviceSessions::Impl {
  const Model* model = nullptr;
  std::unique_ptr<CudaContext> ctx_holder;
  CudaContext* ctx = nullptr;
  const mmc_op_table* ops = nullptr;

  // Weights: one device buffer, and one of the bf16 matrices (MM_MATH_BF16);
  // pointers into them.
  DA<float> weights;
  DA<uint16_t> weights_bf16;
  std::vector<DevLayer> layers;
  DevMatrix embedding, head;
  const float* norm_f = nullptr;

  // Slots: state arrays of `capacity` slots, slot-major.
  int capacity = 0;
  std::vector<int> free_slots;
  int64_t conv_per_slot = 0, ssm_per_slot = 0, win_per_slot = 0, notes_per_slot = 0;
  DA<float> conv, ssm, win, summary, score;
  DA<int64_t> window;
  DA<int32_t> count;
  int64_t read_m_max = 0;  // the most notes one read sees

  // One call's buffers.
  DA<uint8_t> step;  // tokens, slots, windows, last rows
  DA<float> x, a, h, xz, xc, dbc, dt, y, q, o, co, gate, m, raw, note_score, rows, logits_dev;
  DA<uint16_t> act16;  // MM_MATH_BF16: a product's input in bf16
  // A call of one stream over several windows: the new notes of every layer
  // and each layer's pool versions (mmc_chunk_pool_versions).
  DA<float> new_notes;
  DA<int32_t> ver_ids, ver_count;
  // mm_sessions_step_sample: the rows' positions and the chosen ids.
  DA<int64_t> sample_positions;
  DA<int32_t> sample_out;

  // Recorded calls (CUDA graphs) of up to kSlotKernelRows rows per stream
  // that read no pool versions (one-token steps of any number of streams;
  // short feeds of a model without memory), by (streams, rows, logits mode,
  // whether a window closes). A shape's first call runs eagerly (the
  // products' plans are made then), its second is recorded. A graph holds
  // the buffers' addresses, so any reallocation (generation) drops them all.
  struct GraphKey {
    int64_t B, T;
    int mode;
    bool closes;
    bool operator<(const GraphKey& o) const {
      return std::tie(B, T, mode, closes) < std::tie(o.B, o.T, o.mode, o.closes);
    }
  };
  std::map<GraphKey, mmc_graph*> graphs;
  std::set<GraphKey> seen;
  int64_t generation = 0, graphs_generation = 0;
  bool graphs_off = std::getenv("MM_CUDA_GRAPHS") != nullptr &&
                    std::string(std::getenv("MM_CUDA_GRAPHS")) == "0";
  // One-token steps of a few streams through the decode kernels
  // (kernels/decode.cu); MM_CUDA_DECODE=0 keeps them on the general ops.
  bool decode_off = std::getenv("MM_CUDA_DECODE") != nullptr &&
                    std::string(std::getenv("MM_CUDA_DECODE")) == "0";

  ~Impl() { DropGraphs(); }

  void DropGraphs() {
    for (auto& [key, g] : graphs) ops->graph_free(g);
    graphs.clear();
    seen.clear();
  }

  template <typename T>
  absl::Status Fit(DA<T>* arr, int64_t n) {
    const T* before = arr->get();
    MM_RETURN_IF_ERROR(arr->Reserve(ctx, std::max<int64_t>(n, 1)));
    if (arr->get() != before) ++generation;
    return absl::OkStatus();
  }

  mmc_slot_pools Pools() const {
    const ModelConfig& c = model->config();
    mmc_slot_pools p{};
    p.n_layer = c.n_layer;
    p.capacity = c.pool_capacity;
    p.S = c.summary_dim;
    p.summary = summary.get();
    p.score = score.get();
    p.window = window.get();
    p.count = count.get();
    return p;
  }

  absl::Status UploadWeights();
  absl::Status Grow();
  // One stream's call over several windows (B = 1): what its reads and
  // note block need beyond the step buffer.
  struct Chunk {
    int64_t n_new = 0;                     // windows the call closes
    const int32_t* row_version = nullptr;  // device [T]
    const int64_t* new_window = nullptr;   // device [n_new]
    int64_t p0 = 0;                        // the stream's position
  };
  absl::Status Read(int64_t l, bool cross, const int32_t* slots_dev, int64_t B, int64_t T,
                    const Chunk* chunk);
  // Queues a call's device work (the step buffer already up).
  // Calls of at most kSlotKernelRows rows per stream take the slot kernels
  // (one launch for all streams, indices read on the device, so they can be
  // recorded); longer ones the chunked conv and scan (kernels/conv.cu,
  // scan.cu), given each stream's state (host_slots).
  absl::Status Enqueue(int64_t B, int64_t T, LogitsMode mode, bool any_close,
                       const int* host_slots, const Chunk* chunk);
  // Whether a one-token step of B streams takes the decode kernels.
  bool UseDecode(int64_t B) const;
  absl::Status EnqueueDecode(int64_t B, LogitsMode mode, bool any_close);
  absl::Status DecodeRead(int64_t l, int64_t B);
  // Whether a one-token step of B streams takes mmc_decode_read for the
  // note block and the reads (the mixer may still take the general ops).
  // It recomputes a row's norm and queries in each head's block, which pays
  // up to a few dozen rows (H100, 130m shape: 16 rows +11 %, 64 rows +8 %);
  // beyond, the general ops' products and per-head reads are faster (256
  // rows: 61 k against 54 k tokens/s).
  static constexpr int64_t kDecodeReadMaxRows = 64;
  bool UseDecodeRead(int64_t B) const {
    return !decode_off && B <= kDecodeReadMaxRows && model->config().memory_enabled() &&
           model->config().d_model % 4 == 0;
  }
  mmc_decode_linear_args Linear(int64_t rows, const float* x, int64_t ld_x, const DevMatrix& w,
                                float* y, int64_t ld_y) const;
  // mmc_decode_linear (conv_n 0) or mmc_decode_linear_conv of p with weight
  // w, f32 or bf16 (p.w is set here).
  absl::Status DecodeLinear(mmc_decode_linear_args p, const DevMatrix& w, int64_t conv_n = 0,
                            float* conv_y = nullptr);
  // sample != nullptr: the logits stay on the device and next [B] receives
  // each row's chosen token instead.
  absl::Status Run(const int* slots, const int64_t* positions, int64_t B, int64_t T,
                   const int32_t* tokens, LogitsMode mode, float* logits,
                   const SampleOptions* sample = nullptr, int32_t* next = nullptr);
};

absl::Status DeviceSessions::Impl::UploadWeights() {
  const ModelConfig& c = model->config();
  const ModelWeights& W = model->weights();
  // Everything goes into one host image first (matrices widened to f32,
  // each tensor 256-byte aligned), then up in one copy; with MM_MATH_BF16
  // the mixers' matrices and the head go into a bf16 image instead.
  std::vector<float> image;
  std::vector<std::pair<const float**, size_t>> fix;  // pointer to set, offset
  std::vector<uint16_t> image16;
  std::vector<std::pair<const uint16_t**, size_t>> fix16;
  auto place = [&](size_t n) {
    const size_t at = image.size();
    image.resize(at + (n + 63) / 64 * 64, 0.0f);
    return at;
  };
  const bool bf16 = model->options().bf16_products;
  auto vec = [&](const std::vector<float>& v, const float** out) {
    if (v.empty()) return;
    const size_t at = place(v.size());
    std::memcpy(image.data() + at, v.data(), v.size() * sizeof(float));
    fix.emplace_back(out, at);
  };
  auto raw = [&](const float* p, size_t n, const float** out) {
    const size_t at = place(n);
    std::memcpy(image.data() + at, p, n * sizeof(float));
    fix.emplace_back(out, at);
  };
  auto mat = [&](const Matrix& m, DevMatrix* out) {
    out->rows = m.rows;
    out->cols = m.cols;
    const size_t n = static_cast<size_t>(m.rows * m.cols);
    if (n == 0) return;
    const size_t at = place(n);
    if (m.is_bf16()) {
      cpu::ConvertBf16ToF32(m.bf16.data(), image.data() + at, n);
    } else {
      std::memcpy(image.data() + at, m.f32.data(), n * sizeof(float));
    }
    fix.emplace_back(&out->f32, at);
  };
  // MM_MATH_BF16's matrices: bf16 as stored, or rounded to nearest even.
  auto mat16 = [&](const Matrix& m, DevMatrix* out) {
    if (!bf16) return mat(m, out);
    out->rows = m.rows;
    out->cols = m.cols;
    const size_t n = static_cast<size_t>(m.rows * m.cols);
    if (n == 0) return;
    const size_t at = image16.size();
    image16.resize(at + (n + 127) / 128 * 128, 0);
    if (m.is_bf16()) {
      std::memcpy(image16.data() + at, m.bf16.data(), n * sizeof(uint16_t));
    } else {
      cpu::ConvertF32ToBf16(m.f32.data(), image16.data() + at, n);
    }
    fix16.emplace_back(&out->bf16, at);
  };
  auto read = [&](const ReadWeights& rw, DevRead* out) {
    mat(rw.q, &out->q);
    mat(rw.o, &out->o);
    const size_t SS = static_cast<size_t>(c.summary_dim * c.summary_dim);
    raw(rw.k_f32(), SS, &out->k);
    raw(rw.v_f32(), SS, &out->v);
    vec(rw.gate, &out->gate);
    vec(rw.alpha, &out->alpha);
    vec(rw.fuse, &out->fuse);
    out->gate_bias = rw.gate_bias;
  };
  layers.assign(c.n_layer, DevLayer{});
  mat(W.embedding, &embedding);
  if (W.lm_head.size()) mat16(W.lm_head, &head);
  if (!W.lm_head.size() && bf16) mat16(W.embedding, &head);  // a bf16 copy
  vec(W.norm_f, &norm_f);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerWeights& LW = W.layers[l];
    DevLayer& L = layers[l];
    vec(LW.norm, &L.norm);
    mat16(LW.in_proj, &L.in_proj);
    vec(LW.conv_w, &L.conv_w);
    vec(LW.conv_b, &L.conv_b);
    mat(LW.x_proj, &L.x_proj);
    mat(LW.dt_proj, &L.dt_proj);
    vec(LW.dt_bias, &L.dt_bias);
    vec(LW.A, &L.A);
    vec(LW.D, &L.D);
    mat16(LW.out_proj, &L.out_proj);
    if (c.memory_enabled()) {
      vec(LW.note_norm, &L.note_norm);
      mat(LW.note_summary, &L.note_summary);
      vec(LW.note_score, &L.note_score);
      L.note_score_bias = LW.note_score_bias;
      read(LW.tok, &L.tok);
      if (LW.has_lay) read(LW.lay, &L.lay);
    }
  }
  MM_RETURN_IF_ERROR(Fit(&weights, static_cast<int64_t>(image.size())));
  MM_RETURN_IF_ERROR(ctx->Upload(weights.get(), image.data(), image.size() * sizeof(float)));
  for (auto& [ptr, at] : fix) *ptr = weights.get() + at;
  if (!image16.empty()) {
    MM_RETURN_IF_ERROR(Fit(&weights_bf16, static_cast<int64_t>(image16.size())));
    MM_RETURN_IF_ERROR(ctx->Upload(weights_bf16.get(), image16.data(),
                                   image16.size() * sizeof(uint16_t)));
    for (auto& [ptr, at] : fix16) *ptr = weights_bf16.get() + at;
  }
  if (!W.lm_head.size() && !bf16) head = embedding;

  return absl::OkStatus();
}

// Doubles the slot arrays, keeping every slot's contents.
absl::Status DeviceSessions::Impl::Grow() {
  const ModelConfig& c = model->config();
  const int grown = std::max(4, 2 * capacity);
  const int64_t S = c.summary_dim, L = c.n_layer;
  DA<float> conv2, ssm2, win2, summary2, score2;
  DA<int64_t> window2;
  DA<int32_t> count2;
  MM_RETURN_IF_ERROR(Fit(&conv2, grown * conv_per_slot));
  MM_RETURN_IF_ERROR(Fit(&ssm2, grown * ssm_per_slot));
  MM_RETURN_IF_ERROR(Fit(&win2, grown * win_per_slot));
  MM_RETURN_IF_ERROR(Fit(&summary2, grown * notes_per_slot * S));
  MM_RETURN_IF_ERROR(Fit(&score2, grown * notes_per_slot));
  MM_RETURN_IF_ERROR(Fit(&window2, grown * notes_per_slot));
  MM_RETURN_IF_ERROR(Fit(&count2, grown * L));
  if (capacity > 0) {
    auto copy = [&](void* dst, const void* src, int64_t bytes) -> absl::Status {
      if (bytes == 0) return absl::OkStatus();
      return ctx->Check(ops->memcpy_(ctx->get(), dst, src, static_cast<size_t>(bytes),
                                     MMC_COPY_DEVICE_TO_DEVICE),
                        "memcpy");
    };
    const int64_t n = capacity;
    MM_RETURN_IF_ERROR(copy(conv2.get(), conv.get(), n * conv_per_slot * 4));
    MM_RETURN_IF_ERROR(copy(ssm2.get(), ssm.get(), n * ssm_per_slot * 4));
    MM_RETURN_IF_ERROR(copy(win2.get(), win.get(), n * win_per_slot * 4));
    MM_RETURN_IF_ERROR(copy(summary2.get(), summary.get(), n * notes_per_slot * S * 4));
    MM_RETURN_IF_ERROR(copy(score2.get(), score.get(), n * notes_per_slot * 4));
    MM_RETURN_IF_ERROR(copy(window2.get(), window.get(), n * notes_per_slot * 8));
    MM_RETURN_IF_ERROR(copy(count2.get(), count.get(), n * L * 4));
    MM_RETURN_IF_ERROR(ctx->Synchronize());
  }
  conv = std::move(conv2);
  ssm = std::move(ssm2);
  win = std::move(win2);
  summary = std::move(summary2);
  score = std::move(score2);
  window = std::move(window2);
  count = std::move(count2);
  for (int s = grown - 1; s >= capacity; --s) free_slots.push_back(s);
  capacity = grown;
  ++generation;
  return absl::OkStatus();
}

// One pool read of layer l (ReadAndFuse in forward.cc): x += fusion of the
// gated, projected attention over the pools of the read's sources.
absl::Status DeviceSessions::Impl::Read(int64_t l, bool cross, const int32_t* slots_dev,
                                        int64_t B, int64_t T, const Chunk* chunk) {
  const ModelConfig& c = model->config();
  const DevRead& rw = cross ? layers[l].lay : layers[l].tok;
  const int64_t M = B * T, D = c.d_model, S = c.summary_dim;
  const mmc_weight wq = rw.q.ref(), wo = rw.o.ref();
  MMC_CALL(matmul, a.get(), M, D, &wq, q.get(), S, 0);
  mmc_slot_read_args r{};
  r.B = B;
  r.T = T;
  r.D = D;
  r.H = c.attn_heads;
  r.src_begin = cross ? c.CrossLayerBegin(l) : l;
  r.src_end = cross ? l : l + 1;
  r.m_max = read_m_max;
  r.a = a.get();
  r.gw = rw.gate;
  r.gb = rw.gate_bias;
  r.threshold = c.gate_threshold;
  r.q = q.get();
  r.k = rw.k;
  r.v = rw.v;
  r.slots = slots_dev;
  r.gate = gate.get();
  r.o = o.get();
  if (chunk != nullptr) {
    r.ver_ids = ver_ids.get();
    r.ver_count = ver_count.get();
    r.n_versions = chunk->n_new + 1;
    r.row_version = chunk->row_version;
    r.new_notes = new_notes.get();
    r.n_new = chunk->n_new;
  }
  const mmc_slot_pools pools = Pools();
  MMC_CALL(slots_pool_read, &pools, &r);
  MMC_CALL(matmul, o.get(), M, S, &wo, co.get(), D, 0);
  MMC_CALL(read_fuse, MmcFusionMode(c.fusion), a.get(), co.get(), gate.get(), M, D, rw.alpha,
           rw.fuse, x.get());
  return absl::OkStatus();
}

// Offsets of a call's indices in the step buffer: tokens and slots
// (int32), the window each stream closes (int64, −1: none), the rows whose
// logits are asked (int32); for a chunk (one stream over several windows)
// each row's pool version (int32) and the windows it closes (int64).
constexpr int64_t kSlotKernelRows = 64;

struct StepLayout {
  size_t tokens, slots, windows, last, row_version, new_window, bytes;
  StepLayout(int64_t B, int64_t T, int64_t n_new) {
    auto up8 = [](size_t n) { return (n + 7) / 8 * 8; };
    tokens = 0;
    slots = up8(static_cast<size_t>(B * T * 4));
    windows = slots + up8(static_cast<size_t>(B * 4));
    last = windows + static_cast<size_t>(B) * 8;
    row_version = last + up8(static_cast<size_t>(B) * 4);
    new_window = row_version + up8(static_cast<size_t>(B * T) * 4);
    bytes = new_window + static_cast<size_t>(n_new) * 8;
  }
};

absl::Status DeviceSessions::Impl::Enqueue(int64_t B, int64_t T, LogitsMode mode,
                                           bool any_close, const int* host_slots,
                                           const Chunk* chunk) {
  const ModelConfig& c = model->config();
  const int64_t M = B * T, D = c.d_model, E = c.d_inner(), N = c.d_state, R = c.dt_rank,
                K = c.d_conv, V = c.vocab_size, S = c.summary_dim, L = c.n_layer;
  const int64_t ld_dbc = R + 2 * N;
  const StepLayout at(B, T, chunk != nullptr ? chunk->n_new : 0);
  const int32_t* tokens_dev = reinterpret_cast<const int32_t*>(step.get() + at.tokens);
  const int32_t* slots_dev = reinterpret_cast<const int32_t*>(step.get() + at.slots);
  const int64_t* windows_dev = reinterpret_cast<const int64_t*>(step.get() + at.windows);
  const int32_t* last_dev = reinterpret_cast<const int32_t*>(step.get() + at.last);
  if (chunk == nullptr && T == 1 && UseDecode(B)) return EnqueueDecode(B, mode, any_close);

  MMC_CALL(gather_rows, embedding.f32, D, tokens_dev, nullptr, nullptr, M, D, x.get(), D, 0);
  for (int64_t l = 0; l < L; ++l) {
    const DevLayer& LW = layers[l];
    if (c.memory_enabled() && chunk == nullptr && T == 1 && UseDecodeRead(B)) {
      // One-token steps of more streams than the decode products take, up
      // to kDecodeReadMaxRows: the decode reads beside the general mixer.
      MM_RETURN_IF_ERROR(DecodeRead(l, B));
      if (any_close) {
        const mmc_weight ws = LW.note_summary.ref();
        MMC_CALL(matmul, m.get(), B, D, &ws, raw.get() + l * B * S, S, 0);
      }
    } else if (c.memory_enabled()) {
      MMC_CALL(rms_norm, x.get(), M, D, LW.note_norm, c.norm_eps, a.get());
      const mmc_weight ws = LW.note_summary.ref();
      if (chunk == nullptr) {
        MMC_CALL(slots_note_window, a.get(), B, T, D, slots_dev, windows_dev, win.get(), L, l,
                 LW.note_score, LW.note_score_bias, m.get(), note_score.get() + l * B);
        if (any_close) MMC_CALL(matmul, m.get(), B, D, &ws, raw.get() + l * B * S, S, 0);
      } else {
        // The windows this call closes, their notes (ŝ = score · summary)
        // and the pool's version after each of them.
        const int64_t n = chunk->n_new, P = c.pool_capacity;
        float* score_l = note_score.get() + l * n;
        MMC_CALL(chunk_note_windows, a.get(), T, D, chunk->p0, c.note_window,
                 win.get() + (host_slots[0] * L + l) * D, LW.note_score, LW.note_score_bias,
                 m.get(), score_l);
        if (n > 0) {
          MMC_CALL(matmul, m.get(), n, D, &ws, raw.get(), S, 0);
          MMC_CALL(note_scale, raw.get(), score_l, n, S, new_notes.get() + l * n * S);
        }
        const mmc_slot_pools pools = Pools();
        MMC_CALL(chunk_pool_versions, &pools,
                 c.pool_policy == PoolPolicy::kFifo ? MMC_POOL_FIFO : MMC_POOL_PRIORITY,
                 c.note_threshold, host_slots[0], l, n, score_l,
                 ver_ids.get() + l * (n + 1) * P, ver_count.get() + l * (n + 1));
      }
      MM_RETURN_IF_ERROR(Read(l, /*cross=*/false, slots_dev, B, T, chunk));
      if (model->weights().layers[l].has_lay) {
        MM_RETURN_IF_ERROR(Read(l, /*cross=*/true, slots_dev, B, T, chunk));
      }
    }
    // Mamba mixer on x̄; its output is added into x.
    // MM_MATH_BF16: the norm writes the in projection's input in bf16, and
    // the slot scan the out projection's (one buffer, used in turn).
    const mmc_weight w_in = LW.in_proj.ref(), w_x = LW.x_proj.ref(), w_dt = LW.dt_proj.ref(),
                     w_out = LW.out_proj.ref();
    if (w_in.bf16 != nullptr) {
      MMC_CALL(rms_norm_bf16, x.get(), M, D, LW.norm, c.norm_eps, act16.get());
      MMC_CALL(matmul_bf16, act16.get(), M, D, &w_in, xz.get(), 2 * E, 0);
    } else {
      MMC_CALL(rms_norm, x.get(), M, D, LW.norm, c.norm_eps, h.get());
      MMC_CALL(matmul, h.get(), M, D, &w_in, xz.get(), 2 * E, 0);
    }
    const bool y16 = w_out.bf16 != nullptr && T <= kSlotKernelRows;
    if (T <= kSlotKernelRows) {
      MMC_CALL(slots_conv_silu, B, T, E, K, xz.get(), 2 * E, LW.conv_w, LW.conv_b, conv.get(),
               L, l, slots_dev, xc.get());
    } else {
      std::vector<mmc_conv_args> args(B);
      for (int64_t b = 0; b < B; ++b) {
        mmc_conv_args& ca = args[b];
        ca.T = T;
        ca.E = E;
        ca.K = K;
        ca.xi = xz.get() + b * T * 2 * E;
        ca.ld_xi = 2 * E;
        ca.w = LW.conv_w;
        ca.b = LW.conv_b;
        ca.state = conv.get() + (host_slots[b] * L + l) * (K - 1) * E;
        ca.out = xc.get() + b * T * E;
      }
      MMC_CALL(conv_silu, args.data(), B);
    }
    MMC_CALL(matmul, xc.get(), M, E, &w_x, dbc.get(), ld_dbc, 0);
    MMC_CALL(matmul, dbc.get(), M, ld_dbc, &w_dt, dt.get(), E, 0);
    if (T <= kSlotKernelRows) {
      mmc_slot_scan_args sa{};
      sa.streams = B;
      sa.T = T;
      sa.E = E;
      sa.N = N;
      sa.xc = xc.get();
      sa.dt = dt.get();
      sa.dt_bias = LW.dt_bias;
      sa.A = LW.A;
      sa.B = dbc.get() + R;
      sa.C = dbc.get() + R + N;
      sa.ld_bc = ld_dbc;
      sa.D = LW.D;
      sa.z = xz.get() + E;
      sa.ld_z = 2 * E;
      sa.state = ssm.get();
      sa.n_layer = L;
      sa.layer = l;
      sa.slots = slots_dev;
      sa.y = y.get();
      if (y16) {
        MMC_CALL(slots_selective_scan_bf16, &sa, act16.get());
      } else {
        MMC_CALL(slots_selective_scan, &sa);
      }
    } else {
      std::vector<mmc_scan_args> args(B);
      for (int64_t b = 0; b < B; ++b) {
        mmc_scan_args& sa = args[b];
        sa.T = T;
        sa.E = E;
        sa.N = N;
        sa.xc = xc.get() + b * T * E;
        sa.dt = dt.get() + b * T * E;
        sa.dt_bias = LW.dt_bias;
        sa.A = LW.A;
        sa.B = dbc.get() + b * T * ld_dbc + R;
        sa.C = dbc.get() + b * T * ld_dbc + R + N;
        sa.ld_bc = ld_dbc;
        sa.D = LW.D;
        sa.z = xz.get() + b * T * 2 * E + E;
        sa.ld_z = 2 * E;
        sa.state = ssm.get() + (host_slots[b] * L + l) * N * E;
        sa.y = y.get() + b * T * E;
        sa.checkpoints = nullptr;
      }
      MMC_CALL(selective_scan, args.data(), B);
    }
    if (y16) {
      MMC_CALL(matmul_bf16, act16.get(), M, E, &w_out, x.get(), D, 1);
    } else {
      MMC_CALL(matmul, y.get(), M, E, &w_out, x.get(), D, 1);
    }
  }
  // The notes of the windows this call closed, now that every layer has read.
  if (chunk != nullptr) {
    if (chunk->n_new > 0) {
      const mmc_slot_pools pools = Pools();
      MMC_CALL(chunk_pool_commit, &pools, host_slots[0], chunk->n_new, ver_ids.get(),
               ver_count.get(), new_notes.get(), note_score.get(), chunk->new_window);
    }
  } else if (c.memory_enabled() && any_close) {
    const mmc_slot_pools pools = Pools();
    MMC_CALL(slots_pool_insert, &pools,
             c.pool_policy == PoolPolicy::kFifo ? MMC_POOL_FIFO : MMC_POOL_PRIORITY,
             c.note_threshold, B, slots_dev, windows_dev, raw.get(), note_score.get());
  }
  if (mode == LogitsMode::kNone) return absl::OkStatus();
  const int64_t n_rows = mode == LogitsMode::kAll ? M : B;
  const float* src = x.get();
  if (mode == LogitsMode::kLast) {
    MMC_CALL(gather_rows, x.get(), D, last_dev, nullptr, nullptr, B, D, rows.get(), D, 0);
    src = rows.get();
  }
  const mmc_weight wh = head.ref();
  if (wh.bf16 != nullptr) {
    MMC_CALL(rms_norm_bf16, src, n_rows, D, norm_f, c.norm_eps, act16.get());
    MMC_CALL(matmul_bf16, act16.get(), n_rows, D, &wh, logits_dev.get(), V, 0);
  } else {
    MMC_CALL(rms_norm, src, n_rows, D, norm_f, c.norm_eps, h.get());
    MMC_CALL(matmul, h.get(), n_rows, D, &wh, logits_dev.get(), V, 0);
  }
  return absl::OkStatus();
}

bool DeviceSessions::Impl::UseDecode(int64_t B) const {
  const ModelConfig& c = model->config();
  return !decode_off && B <= MMC_DECODE_MAX_ROWS && c.d_model % 4 == 0 &&
         c.d_inner() % 4 == 0 &&
         MMC_DECODE_ROWS_ROUNDED(B) * std::max(c.d_model, c.d_inner()) <=
             MMC_DECODE_MAX_INPUT_FLOATS;
}

mmc_decode_linear_args DeviceSessions::Impl::Linear(int64_t rows, const float* x_in, int64_t ld_x,
                                                    const DevMatrix& w, float* y_out,
                                                    int64_t ld_y) const {
  mmc_decode_linear_args p{};
  p.rows = rows;
  p.K = w.cols;
  p.N = w.rows;
  p.input = MMC_DECODE_INPUT_PLAIN;
  p.x = x_in;
  p.ld_x = ld_x;
  p.w = w.f32;
  p.y = y_out;
  p.ld_y = ld_y;
  return p;
}

absl::Status DeviceSessions::Impl::DecodeLinear(mmc_decode_linear_args p, const DevMatrix& w,
                                                int64_t conv_n, float* conv_y) {
  if (w.bf16 != nullptr) {
    mmc_decode_linear_bf16_args b{};
    b.op.linear = p;
    b.op.linear.w = nullptr;
    b.op.conv_n = conv_n;
    b.op.conv_y = conv_y;
    b.w = w.bf16;
    MMC_CALL(decode_linear_bf16, &b);
  } else if (conv_n > 0) {
    mmc_decode_linear_conv_args c{};
    c.linear = p;
    c.linear.w = w.f32;
    c.conv_n = conv_n;
    c.conv_y = conv_y;
    MMC_CALL(decode_linear_conv, &c);
  } else {
    p.w = w.f32;
    MMC_CALL(decode_linear, &p);
  }
  return absl::OkStatus();
}

// Layer l's note block and pool reads for a one-token step of B streams
// through mmc_decode_read (any B: the mixer may take the general ops).
absl::Status DeviceSessions::Impl::DecodeRead(int64_t l, int64_t B) {
  const ModelConfig& c = model->config();
  const int64_t D = c.d_model, L = c.n_layer;
  const DevLayer& LW = layers[l];
  const StepLayout at(B, 1, 0);
  const int32_t* slots_dev = reinterpret_cast<const int32_t*>(step.get() + at.slots);
  const int64_t* windows_dev = reinterpret_cast<const int64_t*>(step.get() + at.windows);
  const mmc_slot_pools pools = Pools();
  const bool cross = model->weights().layers[l].has_lay;
  mmc_decode_read_args r{};
  r.rows = B;
  r.D = D;
  r.note_norm = LW.note_norm;
  r.eps = c.norm_eps;
  r.a = a.get();
  r.slots = slots_dev;
  r.n_reads = cross ? 2 : 1;
  for (int i = 0; i < r.n_reads; ++i) {
    const DevRead& rw = i == 0 ? LW.tok : LW.lay;
    mmc_slot_read_args& ri = r.read[i];
    ri.B = B;
    ri.T = 1;
    ri.D = D;
    ri.H = c.attn_heads;
    ri.src_begin = i == 1 ? c.CrossLayerBegin(l) : l;
    ri.src_end = i == 1 ? l : l + 1;
    ri.m_max = read_m_max;
    ri.a = a.get();
    ri.gw = rw.gate;
    ri.gb = rw.gate_bias;
    ri.threshold = c.gate_threshold;
    ri.k = rw.k;
    ri.v = rw.v;
    ri.slots = slots_dev;
    r.wq[i] = rw.q.f32;
    r.wo[i] = rw.o.f32;
    r.alpha[i] = rw.alpha;
    r.fuse[i] = rw.fuse;
  }
  r.fusion = MmcFusionMode(c.fusion);
  r.o = o.get();
  r.x = x.get();
  r.windows = windows_dev;
  r.win_max = win.get();
  r.n_layer = L;
  r.layer = l;
  r.sw = LW.note_score;
  r.sb = LW.note_score_bias;
  r.m = m.get();
  r.score = note_score.get() + l * B;
  MMC_CALL(decode_read, &pools, &r);
  return absl::OkStatus();
}

// Enqueue's one-token step of B <= MMC_DECODE_MAX_ROWS streams through the
// decode kernels: per layer the reads (the note norm and the queries in
// them) with their projections, fusion and the note window, the in
// projection (the norm before it, the conv after it), the x projection, the
// scan (Δ's product in it) and the out projection added into x.
absl::Status DeviceSessions::Impl::EnqueueDecode(int64_t B, LogitsMode mode, bool any_close) {
  const ModelConfig& c = model->config();
  const int64_t D = c.d_model, E = c.d_inner(), N = c.d_state, R = c.dt_rank, K = c.d_conv,
                V = c.vocab_size, S = c.summary_dim, L = c.n_layer;
  const int64_t ld_dbc = R + 2 * N;
  const StepLayout at(B, 1, 0);
  const int32_t* tokens_dev = reinterpret_cast<const int32_t*>(step.get() + at.tokens);
  const int32_t* slots_dev = reinterpret_cast<const int32_t*>(step.get() + at.slots);
  const int64_t* windows_dev = reinterpret_cast<const int64_t*>(step.get() + at.windows);
  const mmc_slot_pools pools = Pools();

  MMC_CALL(gather_rows, embedding.f32, D, tokens_dev, nullptr, nullptr, B, D, x.get(), D, 0);
  for (int64_t l = 0; l < L; ++l) {
    const DevLayer& LW = layers[l];
    if (c.memory_enabled()) {
      MM_RETURN_IF_ERROR(DecodeRead(l, B));
      if (any_close) {
        MM_RETURN_IF_ERROR(DecodeLinear(
            Linear(B, m.get(), D, LW.note_summary, raw.get() + l * B * S, S), LW.note_summary));
      }
    }
    // The in projection also runs the conv on its ξ half, so the x
    // projection reads ξc as it is (no conv in each of its blocks).
    mmc_decode_linear_args pin = Linear(B, x.get(), D, LW.in_proj, xz.get(), 2 * E);
    pin.input = MMC_DECODE_INPUT_RMS_NORM;
    pin.norm = LW.norm;
    pin.eps = c.norm_eps;
    pin.conv_w = LW.conv_w;
    pin.conv_b = LW.conv_b;
    pin.conv_k = K;
    pin.conv_state = conv.get();
    pin.n_layer = L;
    pin.layer = l;
    pin.slots = slots_dev;
    MM_RETURN_IF_ERROR(DecodeLinear(pin, LW.in_proj, /*conv_n=*/E, xc.get()));
    MM_RETURN_IF_ERROR(
        DecodeLinear(Linear(B, xc.get(), E, LW.x_proj, dbc.get(), ld_dbc), LW.x_proj));
    mmc_decode_scan_args sa{};
    sa.rows = B;
    sa.E = E;
    sa.N = N;
    sa.R = R;
    sa.xc = xc.get();
    sa.dbc = dbc.get();
    sa.ld_dbc = ld_dbc;
    sa.dt_w = LW.dt_proj.f32;
    sa.dt_bias = LW.dt_bias;
    sa.A = LW.A;
    sa.D = LW.D;
    sa.z = xz.get() + E;
    sa.ld_z = 2 * E;
    sa.state = ssm.get();
    sa.n_layer = L;
    sa.layer = l;
    sa.slots = slots_dev;
    sa.xi = xz.get();
    sa.ld_xi = 2 * E;
    sa.conv_state = conv.get();
    sa.conv_k = K;
    sa.y = y.get();
    MMC_CALL(decode_scan, &sa);
    mmc_decode_linear_args po = Linear(B, y.get(), E, LW.out_proj, x.get(), D);
    po.accumulate = 1;
    MM_RETURN_IF_ERROR(DecodeLinear(po, LW.out_proj));
  }
  if (c.memory_enabled() && any_close) {
    MMC_CALL(slots_pool_insert, &pools,
             c.pool_policy == PoolPolicy::kFifo ? MMC_POOL_FIFO : MMC_POOL_PRIORITY,
             c.note_threshold, B, slots_dev, windows_dev, raw.get(), note_score.get());
  }
  if (mode == LogitsMode::kNone) return absl::OkStatus();
  // One row per stream: the last row is every row.
  mmc_decode_linear_args ph = Linear(B, x.get(), D, head, logits_dev.get(), V);
  ph.input = MMC_DECODE_INPUT_RMS_NORM;
  ph.norm = norm_f;
  ph.eps = c.norm_eps;
  MM_RETURN_IF_ERROR(DecodeLinear(ph, head));
  return absl::OkStatus();
}

absl::Status DeviceSessions::Impl::Run(const int* slots, const int64_t* positions, int64_t B,
                                       int64_t T, const int32_t* tokens, LogitsMode mode,
                                       float* logits, const SampleOptions* sample,
                                       int32_t* next) {
  const ModelConfig& c = model->config();
  const int64_t M = B * T, D = c.d_model, E = c.d_inner(), N = c.d_state, R = c.dt_rank,
                V = c.vocab_size, S = c.summary_dim, L = c.n_layer, w = c.note_window;
  const bool memory = c.memory_enabled();
  if (M == 0) return absl::OkStatus();

  // One stream over more than one row with memory: a chunk, which may close
  // several windows (each row reads its window's pool version).
  const bool is_chunk = memory && B == 1 && T > 1;
  std::vector<int32_t> row_version;
  std::vector<int64_t> new_window;
  if (is_chunk) {
    row_version.resize(T);
    for (int64_t t = 0; t < T; ++t) {
      row_version[t] = static_cast<int32_t>(new_window.size());
      const int64_t p = positions[0] + t;
      if (p % w == w - 1) new_window.push_back(p / w);
    }
  }
  const int64_t n_new = static_cast<int64_t>(new_window.size());
  const StepLayout at(B, T, n_new);
  std::vector<uint8_t> pack(at.bytes);
  std::memcpy(pack.data() + at.tokens, tokens, M * 4);
  if (is_chunk) {
    std::memcpy(pack.data() + at.row_version, row_version.data(), T * 4);
    if (n_new > 0) std::memcpy(pack.data() + at.new_window, new_window.data(), n_new * 8);
  }
  bool any_close = false;
  for (int64_t b = 0; b < B; ++b) {
    const int32_t s = slots[b];
    const int64_t end = positions[b] + T;
    const int64_t closes = memory && end % w == 0 ? end / w - 1 : -1;
    const int32_t last = static_cast<int32_t>(b * T + T - 1);
    any_close = any_close || closes >= 0;
    std::memcpy(pack.data() + at.slots + b * 4, &s, 4);
    std::memcpy(pack.data() + at.windows + b * 8, &closes, 8);
    std::memcpy(pack.data() + at.last + b * 4, &last, 4);
  }
  const int64_t n_rows = mode == LogitsMode::kAll ? M : B;
  MM_RETURN_IF_ERROR(Fit(&step, static_cast<int64_t>(at.bytes)));
  MM_RETURN_IF_ERROR(Fit(&x, M * D));
  MM_RETURN_IF_ERROR(Fit(&a, M * D));
  MM_RETURN_IF_ERROR(Fit(&h, M * D));
  MM_RETURN_IF_ERROR(Fit(&xz, M * 2 * E));
  MM_RETURN_IF_ERROR(Fit(&xc, M * E));
  MM_RETURN_IF_ERROR(Fit(&dbc, M * (R + 2 * N)));
  MM_RETURN_IF_ERROR(Fit(&dt, M * E));
  MM_RETURN_IF_ERROR(Fit(&y, M * E));
  if (model->options().bf16_products) MM_RETURN_IF_ERROR(Fit(&act16, M * std::max(D, E)));
  if (memory) {
    MM_RETURN_IF_ERROR(Fit(&q, M * S));
    MM_RETURN_IF_ERROR(Fit(&o, M * 2 * S));  // the decode read's two outputs a row
    MM_RETURN_IF_ERROR(Fit(&co, M * D));
    MM_RETURN_IF_ERROR(Fit(&gate, M));
    MM_RETURN_IF_ERROR(Fit(&m, std::max(B, n_new) * D));
    MM_RETURN_IF_ERROR(Fit(&raw, L * std::max(B, n_new) * S));
    MM_RETURN_IF_ERROR(Fit(&note_score, L * std::max(B, n_new)));
    if (is_chunk) {
      MM_RETURN_IF_ERROR(Fit(&new_notes, L * n_new * S));
      MM_RETURN_IF_ERROR(Fit(&ver_ids, L * (n_new + 1) * c.pool_capacity));
      MM_RETURN_IF_ERROR(Fit(&ver_count, L * (n_new + 1)));
    }
  }
  if (mode != LogitsMode::kNone) {
    MM_RETURN_IF_ERROR(Fit(&rows, B * D));
    MM_RETURN_IF_ERROR(Fit(&logits_dev, n_rows * V));
  }
  MM_RETURN_IF_ERROR(ctx->Upload(step.get(), pack.data(), at.bytes));

  // Short calls run as recorded graphs (one submission for the whole call);
  // others, and a shape's first call, queue their ops one by one.
  if (generation != graphs_generation) {
    DropGraphs();
    graphs_generation = generation;
  }
  Chunk chunk;
  if (is_chunk) {
    chunk.n_new = n_new;
    chunk.row_version = reinterpret_cast<const int32_t*>(step.get() + at.row_version);
    chunk.new_window = reinterpret_cast<const int64_t*>(step.get() + at.new_window);
    chunk.p0 = positions[0];
  }
  const Chunk* chunk_ptr = is_chunk ? &chunk : nullptr;
  bool done = false;
  if (T <= kSlotKernelRows && !graphs_off && !is_chunk) {
    const GraphKey key{B, T, static_cast<int>(mode), any_close};
    auto it = graphs.find(key);
    if (it == graphs.end() && seen.count(key) > 0) {
      MM_RETURN_IF_ERROR(ctx->Check(ops->graph_begin(ctx->get()), "graph_begin"));
      const absl::Status recorded = Enqueue(B, T, mode, any_close, slots, nullptr);
      mmc_graph* g = nullptr;
      const int ended = ops->graph_end(ctx->get(), &g);
      if (recorded.ok() && ended == MMC_OK && g != nullptr) {
        it = graphs.emplace(key, g).first;
      } else {
        ops->graph_free(g);
        graphs_off = true;  // this device or build cannot record: stay eager
      }
    }
    if (it != graphs.end()) {
      MMC_CALL(graph_launch, it->second);
      done = true;
    }
    seen.insert(key);
  }
  if (!done) MM_RETURN_IF_ERROR(Enqueue(B, T, mode, any_close, slots, chunk_ptr));
  if (mode == LogitsMode::kNone) return ctx->Synchronize();
  if (sample != nullptr) {
    // After the step (not recorded with it): the choice; B ids come back
    // instead of B·V logits.
    // After the step: each row's position and, where given, its seed.
    const bool per_row = sample->seeds != nullptr;
    std::vector<int64_t> after(per_row ? 2 * B : B);
    for (int64_t b = 0; b < B; ++b) after[b] = positions[b] + T;
    if (per_row) std::memcpy(after.data() + B, sample->seeds, B * sizeof(uint64_t));
    // Reserve, not Fit: no graph holds these buffers, so moving them must
    // not drop the recorded steps.
    MM_RETURN_IF_ERROR(sample_positions.Reserve(ctx, static_cast<int64_t>(after.size())));
    MM_RETURN_IF_ERROR(sample_out.Reserve(ctx, B));
    MM_RETURN_IF_ERROR(
        ctx->Upload(sample_positions.get(), after.data(), after.size() * sizeof(int64_t)));
    const uint64_t* seeds_dev =
        per_row ? reinterpret_cast<const uint64_t*>(sample_positions.get() + B) : nullptr;
    MMC_CALL(sample_rows, logits_dev.get(), B, V, V, sample->temperature, sample->seed,
             seeds_dev, sample_positions.get(), sample_out.get());
    return ctx->Download(next, sample_out.get(), static_cast<size_t>(B) * sizeof(int32_t));
  }
  return ctx->Download(logits, logits_dev.get(), static_cast<size_t>(n_rows * V) * sizeof(float));
}

DeviceSessions::DeviceSessions(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DeviceSessions::~DeviceSessions() = default;

absl::StatusOr<std::unique_ptr<DeviceSessions>> DeviceSessions::Create(const Model& model) {
  const ModelConfig& c = model.config();
  auto impl = std::make_unique<Impl>();
  impl->model = &model;
  MM_ASSIGN_OR_RETURN(impl->ctx_holder,
                      CudaContext::Create(0, model.options().tf32, model.options().bf16_products));
  impl->ctx = impl->ctx_holder.get();
  impl->ops = &impl->ctx->ops();
  if (c.d_conv > 16 || c.d_state > 64) {
    return Errorf(ErrorCode::kUnsupported, "MM_DEVICE_CUDA sessions: d_conv ", c.d_conv,
                  " > 16 or d_state ", c.d_state, " > 64");
  }
  const int64_t E = c.d_inner(), L = c.n_layer;
  impl->conv_per_slot = L * (c.d_conv - 1) * E;
  impl->ssm_per_slot = L * c.d_state * E;
  impl->win_per_slot = c.memory_enabled() ? L * c.d_model : 0;
  impl->notes_per_slot = L * c.pool_capacity;
  for (int64_t l = 0; l < L; ++l) {
    int64_t sources = 1;
    if (c.HasCrossLayerRead(l)) sources = std::max<int64_t>(sources, l - c.CrossLayerBegin(l));
    impl->read_m_max = std::max(impl->read_m_max, sources * c.pool_capacity);
  }
  MM_RETURN_IF_ERROR(impl->UploadWeights());
  MM_RETURN_IF_ERROR(impl->ctx->Synchronize());
  return std::unique_ptr<DeviceSessions>(new DeviceSessions(std::move(impl)));
}

const std::string& DeviceSessions::device_name() const { return impl_->ctx->device_name(); }

int64_t DeviceSessions::MaxRowsPerCall() const {
  constexpr int64_t kMaxRows = 16384;
  constexpr int64_t kMaxVersionIds = int64_t{1} << 22;  // 16 MiB of int32
  const ModelConfig& c = impl_->model->config();
  if (!c.memory_enabled()) return kMaxRows;
  const int64_t windows =
      std::max<int64_t>(1, kMaxVersionIds / (c.n_layer * c.pool_capacity) - 2);
  return std::min(kMaxRows, windows * c.note_window);
}

absl::StatusOr<int> DeviceSessions::Acquire() {
  Impl& I = *impl_;
  if (I.free_slots.empty()) MM_RETURN_IF_ERROR(I.Grow());
  const int slot = I.free_slots.back();
  MM_RETURN_IF_ERROR(Reset(slot));
  I.free_slots.pop_back();
  return slot;
}

void DeviceSessions::Release(int slot) {
  if (slot >= 0) impl_->free_slots.push_back(slot);
}

absl::Status DeviceSessions::Reset(int slot) {
  StreamState fresh;
  fresh.Reset(impl_->model->config());
  return Upload(slot, fresh);
}

absl::Status DeviceSessions::Upload(int slot, const StreamState& state) {
  Impl& I = *impl_;
  const ModelConfig& c = I.model->config();
  const int64_t L = c.n_layer, P = c.pool_capacity, S = c.summary_dim;
  if (static_cast<int64_t>(state.layers.size()) != L) {
    return Errorf(ErrorCode::kInternal, "device sessions: a state of ", state.layers.size(),
                  " layers for a model of ", L);
  }
  std::vector<float> conv(I.conv_per_slot), ssm(I.ssm_per_slot), win(I.win_per_slot),
      summary(I.notes_per_slot * S, 0.0f), score(I.notes_per_slot, 0.0f);
  std::vector<int64_t> window(I.notes_per_slot, 0);
  std::vector<int32_t> count(L, 0);
  const int64_t conv_l = I.conv_per_slot / L, ssm_l = I.ssm_per_slot / L;
  const int64_t win_l = I.win_per_slot / L;
  for (int64_t l = 0; l < L; ++l) {
    const LayerState& ls = state.layers[l];
    if (static_cast<int64_t>(ls.conv.size()) != conv_l ||
        static_cast<int64_t>(ls.ssm.size()) != ssm_l ||
        static_cast<int64_t>(ls.win_max.size()) != win_l ||
        static_cast<int64_t>(ls.pool.size()) > P) {
      return Errorf(ErrorCode::kInternal, "device sessions: layer ", l,
                    " of the state is not sized for the model");
    }
    std::copy(ls.conv.begin(), ls.conv.end(), conv.begin() + l * conv_l);
    std::copy(ls.ssm.begin(), ls.ssm.end(), ssm.begin() + l * ssm_l);
    std::copy(ls.win_max.begin(), ls.win_max.end(), win.begin() + l * win_l);
    count[l] = static_cast<int32_t>(ls.pool.size());
    for (size_t i = 0; i < ls.pool.size(); ++i) {
      const PoolEntry& e = *ls.pool[i];
      const int64_t at = l * P + static_cast<int64_t>(i);
      window[at] = e.window;
      score[at] = e.score;
      std::memcpy(summary.data() + at * S, e.summary, S * sizeof(float));
    }
  }
  // Each host array to its part of the slot (which starts at slot · its size).
  auto up = [&](auto* dev, const auto& host) {
    return I.ctx->Upload(dev + slot * static_cast<int64_t>(host.size()), host.data(),
                         host.size() * sizeof(host[0]));
  };
  MM_RETURN_IF_ERROR(up(I.conv.get(), conv));
  MM_RETURN_IF_ERROR(up(I.ssm.get(), ssm));
  MM_RETURN_IF_ERROR(up(I.win.get(), win));
  MM_RETURN_IF_ERROR(up(I.summary.get(), summary));
  MM_RETURN_IF_ERROR(up(I.score.get(), score));
  MM_RETURN_IF_ERROR(up(I.window.get(), window));
  MM_RETURN_IF_ERROR(up(I.count.get(), count));
  return I.ctx->Synchronize();
}

absl::Status DeviceSessions::PoolSizes(int slot, std::vector<int32_t>* sizes) {
  Impl& I = *impl_;
  const int64_t L = I.model->config().n_layer;
  sizes->assign(L, 0);
  return I.ctx->Download(sizes->data(), I.count.get() + slot * L, L * 4);
}

absl::Status DeviceSessions::Download(int slot, StreamState* state) {
  Impl& I = *impl_;
  const ModelConfig& c = I.model->config();
  const int64_t L = c.n_layer, P = c.pool_capacity, S = c.summary_dim;
  std::vector<float> conv(I.conv_per_slot), ssm(I.ssm_per_slot), win(I.win_per_slot),
      summary(I.notes_per_slot * S), score(I.notes_per_slot);
  std::vector<int64_t> window(I.notes_per_slot);
  std::vector<int32_t> count(L);
  // Each part of the slot (which starts at slot · its size) to its host array.
  auto down = [&](const auto* dev, auto& host) {
    return I.ctx->Download(host.data(), dev + slot * static_cast<int64_t>(host.size()),
                           host.size() * sizeof(host[0]));
  };
  MM_RETURN_IF_ERROR(down(I.conv.get(), conv));
  MM_RETURN_IF_ERROR(down(I.ssm.get(), ssm));
  MM_RETURN_IF_ERROR(down(I.win.get(), win));
  MM_RETURN_IF_ERROR(down(I.summary.get(), summary));
  MM_RETURN_IF_ERROR(down(I.score.get(), score));
  MM_RETURN_IF_ERROR(down(I.window.get(), window));
  MM_RETURN_IF_ERROR(down(I.count.get(), count));
  const int64_t conv_l = I.conv_per_slot / L, ssm_l = I.ssm_per_slot / L;
  const int64_t win_l = I.win_per_slot / L;
  state->summary_dim = S;
  state->layers.resize(L);
  for (int64_t l = 0; l < L; ++l) {
    LayerState& ls = state->layers[l];
    ls.conv.assign(conv.begin() + l * conv_l, conv.begin() + (l + 1) * conv_l);
    ls.ssm.assign(ssm.begin() + l * ssm_l, ssm.begin() + (l + 1) * ssm_l);
    ls.win_max.assign(win.begin() + l * win_l, win.begin() + (l + 1) * win_l);
    ls.pool.clear();
    const int64_t n = count[l];
    if (n < 0 || n > P) {
      return Errorf(ErrorCode::kInternal, "device sessions: layer ", l, " holds ", n, " notes");
    }
    if (n == 0) continue;
    std::shared_ptr<NoteBlock> block = MakeNoteBlock(n, S);
    ls.pool.reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      PoolEntry& e = block->entries[i];
      e.window = window[l * P + i];
      e.score = score[l * P + i];
      std::memcpy(block->summaries.get() + i * S, summary.data() + (l * P + i) * S,
                  S * sizeof(float));
      ls.pool.push_back(ShareNote(block, i));
    }
  }
  return absl::OkStatus();
}

absl::Status DeviceSessions::Forward(const int* slots, const int64_t* positions, int64_t B,
                                     int64_t T, const int32_t* tokens, LogitsMode mode,
                                     float* logits) {
  if (B > 1 && T > 1) {
    return Errorf(ErrorCode::kInternal, "device sessions: ", B, " streams of ", T,
                  " tokens in one call (one stream, or one token each)");
  }
  return impl_->Run(slots, positions, B, T, tokens, mode, logits);
}

absl::Status DeviceSessions::StepSample(const int* slots, const int64_t* positions, int64_t B,
                                        const int32_t* tokens, const SampleOptions& options,
                                        int32_t* next) {
  return impl_->Run(slots, positions, B, 1, tokens, LogitsMode::kLast, nullptr, &options, next);
}

}  // namespace memmamba
