// The gradient pass on a CUDA device. It follows gradients.cc step by step
// (the comments there give the math); the differences are where data lives:
//   - parameters, gradients and moments are three flat device buffers in
//     ListParams order; a host tensor's address maps to its device twin;
//   - the note scores of each layer come back to the host (a few floats per
//     window) so that pool membership is decided by the runtime's InsertNote,
//     and each read's index (which notes every token reads, CSR) goes up;
//   - the straight-through estimator is not implemented here yet.
// Per-op parity with the CPU backend is tests/cuda/op_parity.cc; the whole
// pass against ComputeGradients is tests/cuda/train_parity.cc.
#include "train/cuda_train.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "backend/cuda/cuda_library.h"
#include "runtime/pool.h"

namespace memmamba {

#define MMC_CALL(op, ...) MM_RETURN_IF_ERROR(ctx_->Check(ops_->op(ctx_->get(), __VA_ARGS__), #op))

namespace {

template <typename T>
using DA = DeviceArray<T>;

}  // namespace

struct CudaTrainState::Impl {
  // --- Set at creation.
  const Model* model = nullptr;
  std::vector<ParamRef> params;
  std::vector<int64_t> offset;  // of each tensor in the flat buffers
  int64_t total = 0;
  bool accumulate = false;
  std::unique_ptr<CudaContext> ctx_holder;
  CudaContext* ctx_ = nullptr;
  const mmc_op_table* ops_ = nullptr;
  DA<float> w, g, m, v, acc;
  std::vector<DA<float>> A;  // per layer, [N, E]
  std::unordered_map<const void*, int64_t> index;  // host tensor → its offset

  // --- One pass (sizes of the current batch).
  struct Notes {
    int64_t nw = 0;
    DA<float> m, score, raw, s, ds;
    DA<int32_t> arg;
    std::vector<float> host_score;
    PoolVersions versions;  // [b][k]: the windows read
    int64_t kept = 0;
    bool done = false;
  };
  struct Read {
    DA<float> q, o, co, gate, kv, dkv;
    DA<int32_t> offsets, entries, t_offsets, t_positions;
    int64_t table_rows = 0, nnz = 0;
    int64_t src_begin = 0, src_end = 0;
  };
  struct LayerCache {
    DA<float> a, xbar, h, xz, xc, dbc, dt, y, checkpoints, state;
    Read tok, lay;
  };
  int64_t B = 0, T = 0, M = 0;
  const Batch* batch = nullptr;
  std::vector<DA<float>> x;  // layer inputs
  std::vector<Notes> notes;
  std::vector<LayerCache> caches;
  LayerCache* cur = nullptr;
  bool keep_all = false;
  // Backward temporaries.
  DA<float> dx, dxbar, dy, dxz, dxc, ddt, ddbc, dA, dh, da, dco, dout, dq, draw, dscore, dm,
      out_tmp;
  // Loss.
  DA<float> xr, hf, dhf, dxr, logits;
  DA<int32_t> tokens_dev, rows_dev, targets_dev, emb_rows, emb_offsets, emb_ids;
  DA<double> loss_dev, sq_dev;
  // Data-parallel group (JoinGroup).
  mmc_comm* comm = nullptr;
  int world_size = 1, rank = 0;
  DA<double> reduce_dev;

  ~Impl() {
    if (comm != nullptr) ops_->comm_free(ctx_->get(), comm);
  }

  // Device twins of host tensors.
  float* W(const void* host) const { return w.get() + index.at(host); }
  float* G(const void* host) const { return g.get() + index.at(host); }
  float* W(const std::vector<float>& t) const { return W(t.data()); }
  float* G(const std::vector<float>& t) const { return G(t.data()); }
  float* W(const Matrix& t) const { return W(t.f32.data()); }
  float* G(const Matrix& t) const { return G(t.f32.data()); }
  mmc_weight Ref(const Matrix& t) const {
    mmc_weight r{};
    r.f32 = W(t);
    r.rows = t.rows;
    r.cols = t.cols;
    return r;
  }

  template <typename T>
  absl::Status Fit(DA<T>* a, int64_t n) {
    return a->Reserve(ctx_, std::max<int64_t>(n, 1));
  }

  absl::Status Matmul(const float* xp, int64_t rows, int64_t ldx, const Matrix& wt, float* y,
                      int64_t ldy, bool accum) {
    if (rows == 0) return absl::OkStatus();
    const mmc_weight r = Ref(wt);
    MMC_CALL(matmul, xp, rows, ldx, &r, y, ldy, accum ? 1 : 0);
    return absl::OkStatus();
  }
  absl::Status BackInput(const float* dyp, int64_t rows, int64_t ldy, const Matrix& wt,
                         float* dxp, int64_t ldx, bool accum) {
    if (rows == 0) return absl::OkStatus();
    MMC_CALL(matmul_backward_input, dyp, rows, ldy, W(wt), wt.rows, wt.cols, dxp, ldx,
             accum ? 1 : 0);
    return absl::OkStatus();
  }
  absl::Status BackWeight(const float* dyp, int64_t rows, int64_t ldy, const float* xp,
                          int64_t ldx, const Matrix& wt) {
    if (rows == 0) return absl::OkStatus();
    MMC_CALL(matmul_backward_weight, dyp, rows, ldy, xp, ldx, wt.rows, wt.cols, G(wt));
    return absl::OkStatus();
  }
  absl::Status Copy(float* dst, const float* src, int64_t n) {
    MMC_CALL(memcpy_, dst, src, static_cast<size_t>(n) * sizeof(float),
             MMC_COPY_DEVICE_TO_DEVICE);
    return absl::OkStatus();
  }

  absl::Status RefreshA() {
    const ModelConfig& c = model->config();
    for (int64_t l = 0; l < c.n_layer; ++l) {
      MMC_CALL(a_from_log, W(model->weights().layers[l].A_log), c.d_inner(), c.d_state,
               A[l].get());
    }
    return absl::OkStatus();
  }

  // The scan's inputs for stream b of layer l (as MixerScanArgs on the CPU);
  // state, y and checkpoints are left to the caller.
  mmc_scan_args ScanArgs(int64_t l, int64_t b, const LayerCache& lc) const {
    const ModelConfig& c = model->config();
    const LayerWeights& LW = model->weights().layers[l];
    const int64_t E = c.d_inner(), N = c.d_state, R = c.dt_rank, ld_dbc = R + 2 * N;
    mmc_scan_args sa{};
    sa.T = T;
    sa.E = E;
    sa.N = N;
    sa.xc = lc.xc.get() + b * T * E;
    sa.dt = lc.dt.get() + b * T * E;
    sa.dt_bias = W(LW.dt_bias);
    sa.A = A[l].get();
    sa.B = lc.dbc.get() + b * T * ld_dbc + R;
    sa.C = lc.dbc.get() + b * T * ld_dbc + R + N;
    sa.ld_bc = ld_dbc;
    sa.D = W(LW.D);
    sa.z = lc.xz.get() + b * T * 2 * E + E;
    sa.ld_z = 2 * E;
    return sa;
  }

  absl::Status Run(const Batch& b, const GradientOptions& options, BatchStats* stats);
  absl::Status TakeNotes(int64_t l);
  absl::Status ReadForward(int64_t l, bool cross, float* xbar);
  absl::Status ReadBackward(int64_t l, bool cross, const float* dxbar, float* dap);
  absl::Status NotesBackward(int64_t l, float* dap);
  absl::Status LayerForward(int64_t l, const float* u, float* out);
  absl::Status LayerBackward(int64_t l, const float* u, float* dxp);
  absl::Status LossAndHeadBackward(const float* x_last, float* dxp, int64_t n_targets,
                                   double* loss_sum);
};

absl::Status CudaTrainState::Impl::TakeNotes(int64_t l) {
  const ModelConfig& c = model->config();
  const LayerWeights& LW = model->weights().layers[l];
  const int64_t D = c.d_model, S = c.summary_dim, w = c.note_window;
  Notes& nt = notes[l];
  nt.nw = T / w;
  const int64_t rows = B * nt.nw;
  MM_RETURN_IF_ERROR(Fit(&nt.m, rows * D));
  MM_RETURN_IF_ERROR(Fit(&nt.arg, rows * D));
  MM_RETURN_IF_ERROR(Fit(&nt.score, rows));
  MM_RETURN_IF_ERROR(Fit(&nt.raw, rows * S));
  MM_RETURN_IF_ERROR(Fit(&nt.s, rows * S));
  MM_RETURN_IF_ERROR(Fit(&nt.ds, rows * S));
  nt.host_score.assign(rows, 0.0f);
  if (rows > 0) {
    MMC_CALL(note_windows, cur->a.get(), B, T, D, w, W(LW.note_score), W(&LW.note_score_bias),
             nt.m.get(), nt.arg.get(), nt.score.get());
    MM_RETURN_IF_ERROR(Matmul(nt.m.get(), rows, D, LW.note_summary, nt.raw.get(), S, false));
    MMC_CALL(note_scale, nt.raw.get(), nt.score.get(), rows, S, nt.s.get());
    MM_RETURN_IF_ERROR(ctx_->Zero(nt.ds.get(), rows * S * sizeof(float)));
    MM_RETURN_IF_ERROR(
        ctx_->Download(nt.host_score.data(), nt.score.get(), rows * sizeof(float)));
  }
  // Pool membership, as gradients.cc: InsertNote on window and score.
  nt.kept = 0;
  nt.versions =
      ComputePoolVersions(c, nt.host_score.data(), B, nt.nw, (T - 1) / w + 1, nullptr, &nt.kept);
  nt.done = true;
  return absl::OkStatus();
}

absl::Status CudaTrainState::Impl::ReadForward(int64_t l, bool cross, float* xbar) {
  const ModelConfig& c = model->config();
  const ReadWeights& rw = cross ? model->weights().layers[l].lay : model->weights().layers[l].tok;
  Read& rc = cross ? cur->lay : cur->tok;
  const int64_t D = c.d_model, S = c.summary_dim, w = c.note_window;
  const float* a = cur->a.get();
  rc.src_begin = cross ? c.CrossLayerBegin(l) : l;
  rc.src_end = cross ? l : l + 1;
  const int64_t n_src = rc.src_end - rc.src_begin;
  const int64_t nw = T / w;  // the same for every layer
  const int64_t per_src = B * nw;
  rc.table_rows = n_src * per_src;

  // The index: row (b, t) reads, for each source in order, the windows of
  // the pool version of its window k (the order gradients.cc gathers them).
  std::vector<int32_t> offsets(M + 1, 0), entries;
  std::vector<int32_t> window_list;
  for (int64_t b = 0; b < B; ++b) {
    int64_t built = -1;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t k = t / w;
      if (k != built) {
        window_list.clear();
        for (int64_t src = rc.src_begin; src < rc.src_end; ++src) {
          const int64_t i = src - rc.src_begin;
          for (int32_t win : notes[src].versions[b][k]) {
            window_list.push_back(static_cast<int32_t>(i * per_src + b * nw + win));
          }
        }
        built = k;
      }
      entries.insert(entries.end(), window_list.begin(), window_list.end());
      if (entries.size() > static_cast<size_t>(INT32_MAX)) {
        return Error(ErrorCode::kUnsupported, "CUDA training: the batch reads more than 2^31 "
                                              "notes in one layer; use a smaller batch");
      }
      offsets[b * T + t + 1] = static_cast<int32_t>(entries.size());
    }
  }
  rc.nnz = static_cast<int64_t>(entries.size());
  if (rc.nnz == 0) return absl::OkStatus();  // no token reads anything: x̄ = u

  MM_RETURN_IF_ERROR(Fit(&rc.kv, rc.table_rows * 2 * S));
  MM_RETURN_IF_ERROR(Fit(&rc.dkv, rc.table_rows * 2 * S));
  for (int64_t i = 0; i < n_src; ++i) {
    const Notes& nt = notes[rc.src_begin + i];
    float* kv = rc.kv.get() + i * per_src * 2 * S;
    MM_RETURN_IF_ERROR(Matmul(nt.s.get(), per_src, S, rw.k, kv, 2 * S, false));
    MM_RETURN_IF_ERROR(Matmul(nt.s.get(), per_src, S, rw.v, kv + S, 2 * S, false));
  }
  std::vector<int32_t> t_offsets(rc.table_rows + 1), t_positions(rc.nnz);
  {
    const int st = ops_->pool_index_transpose(offsets.data(), M, entries.data(), rc.table_rows,
                                              t_offsets.data(), t_positions.data());
    if (st != MMC_OK) return ctx_->Check(st, "pool_index_transpose");
  }
  MM_RETURN_IF_ERROR(Fit(&rc.offsets, M + 1));
  MM_RETURN_IF_ERROR(Fit(&rc.entries, rc.nnz));
  MM_RETURN_IF_ERROR(Fit(&rc.t_offsets, rc.table_rows + 1));
  MM_RETURN_IF_ERROR(Fit(&rc.t_positions, rc.nnz));
  MM_RETURN_IF_ERROR(ctx_->Upload(rc.offsets.get(), offsets.data(), (M + 1) * 4));
  MM_RETURN_IF_ERROR(ctx_->Upload(rc.entries.get(), entries.data(), rc.nnz * 4));
  MM_RETURN_IF_ERROR(
      ctx_->Upload(rc.t_offsets.get(), t_offsets.data(), (rc.table_rows + 1) * 4));
  MM_RETURN_IF_ERROR(ctx_->Upload(rc.t_positions.get(), t_positions.data(), rc.nnz * 4));

  MM_RETURN_IF_ERROR(Fit(&rc.q, M * S));
  MM_RETURN_IF_ERROR(Fit(&rc.o, M * S));
  MM_RETURN_IF_ERROR(Fit(&rc.co, M * D));
  MM_RETURN_IF_ERROR(Fit(&rc.gate, M));
  MM_RETURN_IF_ERROR(Matmul(a, M, D, rw.q, rc.q.get(), S, false));
  MMC_CALL(read_gate, a, M, D, W(rw.gate), W(&rw.gate_bias), c.gate_threshold,
           rc.offsets.get(), rc.gate.get());
  mmc_pool_attend_args pa{};
  pa.rows = M;
  pa.S = S;
  pa.H = c.attn_heads;
  pa.q = rc.q.get();
  pa.ld_q = S;
  pa.keys = rc.kv.get();
  pa.values = rc.kv.get() + S;
  pa.ld_kv = 2 * S;
  pa.table_rows = rc.table_rows;
  pa.offsets = rc.offsets.get();
  pa.entries = rc.entries.get();
  pa.nnz = rc.nnz;
  pa.o = rc.o.get();
  pa.ld_o = S;
  MMC_CALL(pool_attend, &pa);
  MM_RETURN_IF_ERROR(Matmul(rc.o.get(), M, S, rw.o, rc.co.get(), D, false));
  MMC_CALL(read_fuse, MmcFusionMode(c.fusion), a, rc.co.get(), rc.gate.get(), M, D,
           c.fusion == Fusion::kWeighted ? W(rw.alpha) : nullptr,
           c.fusion == Fusion::kGated ? W(rw.fuse) : nullptr, xbar);
  return absl::OkStatus();
}

absl::Status CudaTrainState::Impl::LayerForward(int64_t l, const float* u, float* out) {
  const ModelConfig& c = model->config();
  const LayerWeights& LW = model->weights().layers[l];
  const int64_t D = c.d_model, E = c.d_inner(), N = c.d_state, R = c.dt_rank, K = c.d_conv;
  const int64_t ld_dbc = R + 2 * N;
  cur = &caches[keep_all ? l : 0];
  LayerCache& lc = *cur;
  MM_RETURN_IF_ERROR(Fit(&lc.xbar, M * D));
  MM_RETURN_IF_ERROR(Copy(lc.xbar.get(), u, M * D));
  if (c.memory_enabled()) {
    MM_RETURN_IF_ERROR(Fit(&lc.a, M * D));
    MMC_CALL(rms_norm, u, M, D, W(LW.note_norm), c.norm_eps, lc.a.get());
    if (!notes[l].done) MM_RETURN_IF_ERROR(TakeNotes(l));
    MM_RETURN_IF_ERROR(ReadForward(l, /*cross=*/false, lc.xbar.get()));
    if (LW.has_lay) MM_RETURN_IF_ERROR(ReadForward(l, /*cross=*/true, lc.xbar.get()));
  }
  MM_RETURN_IF_ERROR(Fit(&lc.h, M * D));
  MM_RETURN_IF_ERROR(Fit(&lc.xz, M * 2 * E));
  MM_RETURN_IF_ERROR(Fit(&lc.xc, M * E));
  MM_RETURN_IF_ERROR(Fit(&lc.dbc, M * ld_dbc));
  MM_RETURN_IF_ERROR(Fit(&lc.dt, M * E));
  MM_RETURN_IF_ERROR(Fit(&lc.y, M * E));
  const int64_t n_chunks = (T + MMC_SCAN_CHUNK - 1) / MMC_SCAN_CHUNK;
  MM_RETURN_IF_ERROR(Fit(&lc.checkpoints, B * n_chunks * N * E));
  MM_RETURN_IF_ERROR(Fit(&lc.state, B * (N + K) * E));
  MM_RETURN_IF_ERROR(ctx_->Zero(lc.state.get(), B * (N + K) * E * sizeof(float)));

  MMC_CALL(rms_norm, lc.xbar.get(), M, D, W(LW.norm), c.norm_eps, lc.h.get());
  MM_RETURN_IF_ERROR(Matmul(lc.h.get(), M, D, LW.in_proj, lc.xz.get(), 2 * E, false));
  std::vector<mmc_conv_args> conv(B);
  std::vector<mmc_scan_args> scan(B);
  for (int64_t b = 0; b < B; ++b) {
    mmc_conv_args& ca = conv[b];
    ca.T = T;
    ca.E = E;
    ca.K = K;
    ca.xi = lc.xz.get() + b * T * 2 * E;
    ca.ld_xi = 2 * E;
    ca.w = W(LW.conv_w);
    ca.b = W(LW.conv_b);
    ca.state = lc.state.get() + b * (N + K) * E + N * E;
    ca.out = lc.xc.get() + b * T * E;
  }
  MMC_CALL(conv_silu, conv.data(), B);
  MM_RETURN_IF_ERROR(Matmul(lc.xc.get(), M, E, LW.x_proj, lc.dbc.get(), ld_dbc, false));
  MM_RETURN_IF_ERROR(Matmul(lc.dbc.get(), M, ld_dbc, LW.dt_proj, lc.dt.get(), E, false));
  for (int64_t b = 0; b < B; ++b) {
    mmc_scan_args& sa = scan[b];
    sa = ScanArgs(l, b, lc);
    sa.state = lc.state.get() + b * (N + K) * E;
    sa.y = lc.y.get() + b * T * E;
    sa.checkpoints = lc.checkpoints.get() + b * n_chunks * N * E;
  }
  MMC_CALL(selective_scan, scan.data(), B);
  MM_RETURN_IF_ERROR(Copy(out, lc.xbar.get(), M * D));
  return Matmul(lc.y.get(), M, E, LW.out_proj, out, D, true);
}

absl::Status CudaTrainState::Impl::ReadBackward(int64_t l, bool cross, const float* dxbar,
                                                float* dap) {
  const ModelConfig& c = model->config();
  const ReadWeights& rw = cross ? model->weights().layers[l].lay : model->weights().layers[l].tok;
  Read& rc = cross ? cur->lay : cur->tok;
  if (rc.nnz == 0) return absl::OkStatus();  // nothing was read: no gradient
  const int64_t D = c.d_model, S = c.summary_dim;
  const float* a = cur->a.get();
  MM_RETURN_IF_ERROR(Fit(&dco, M * D));
  MM_RETURN_IF_ERROR(Fit(&dout, M * S));
  MM_RETURN_IF_ERROR(Fit(&dq, M * S));
  MMC_CALL(read_fuse_backward, MmcFusionMode(c.fusion), a, rc.co.get(), rc.gate.get(), dxbar, M, D,
           c.fusion == Fusion::kWeighted ? W(rw.alpha) : nullptr,
           c.fusion == Fusion::kGated ? W(rw.fuse) : nullptr, W(rw.gate), dco.get(), dap,
           c.fusion == Fusion::kWeighted ? G(rw.alpha) : nullptr,
           c.fusion == Fusion::kGated ? G(rw.fuse) : nullptr, G(rw.gate), G(&rw.gate_bias));
  MM_RETURN_IF_ERROR(BackWeight(dco.get(), M, D, rc.o.get(), S, rw.o));
  MM_RETURN_IF_ERROR(BackInput(dco.get(), M, D, rw.o, dout.get(), S, false));
  MM_RETURN_IF_ERROR(ctx_->Zero(rc.dkv.get(), rc.table_rows * 2 * S * sizeof(float)));
  mmc_pool_attend_backward_args pb{};
  pb.fwd.rows = M;
  pb.fwd.S = S;
  pb.fwd.H = c.attn_heads;
  pb.fwd.q = rc.q.get();
  pb.fwd.ld_q = S;
  pb.fwd.keys = rc.kv.get();
  pb.fwd.values = rc.kv.get() + S;
  pb.fwd.ld_kv = 2 * S;
  pb.fwd.table_rows = rc.table_rows;
  pb.fwd.offsets = rc.offsets.get();
  pb.fwd.entries = rc.entries.get();
  pb.fwd.nnz = rc.nnz;
  pb.fwd.o = rc.o.get();
  pb.fwd.ld_o = S;
  pb.t_offsets = rc.t_offsets.get();
  pb.t_positions = rc.t_positions.get();
  pb.dout = dout.get();
  pb.ld_dout = S;
  pb.dq = dq.get();
  pb.ld_dq = S;
  pb.dkeys = rc.dkv.get();
  pb.dvalues = rc.dkv.get() + S;
  pb.ld_dkv = 2 * S;
  MMC_CALL(pool_attend_backward, &pb);
  MM_RETURN_IF_ERROR(BackWeight(dq.get(), M, S, a, D, rw.q));
  MM_RETURN_IF_ERROR(BackInput(dq.get(), M, S, rw.q, dap, D, true));
  const int64_t per_src = rc.table_rows / (rc.src_end - rc.src_begin);
  for (int64_t i = 0; i < rc.src_end - rc.src_begin; ++i) {
    Notes& nt = notes[rc.src_begin + i];
    const float* dk = rc.dkv.get() + i * per_src * 2 * S;
    const float* dv = dk + S;
    MM_RETURN_IF_ERROR(BackWeight(dk, per_src, 2 * S, nt.s.get(), S, rw.k));
    MM_RETURN_IF_ERROR(BackWeight(dv, per_src, 2 * S, nt.s.get(), S, rw.v));
    MM_RETURN_IF_ERROR(BackInput(dk, per_src, 2 * S, rw.k, nt.ds.get(), S, true));
    MM_RETURN_IF_ERROR(BackInput(dv, per_src, 2 * S, rw.v, nt.ds.get(), S, true));
  }
  return absl::OkStatus();
}

absl::Status CudaTrainState::Impl::NotesBackward(int64_t l, float* dap) {
  const ModelConfig& c = model->config();
  const LayerWeights& LW = model->weights().layers[l];
  const int64_t D = c.d_model, S = c.summary_dim;
  Notes& nt = notes[l];
  const int64_t rows = B * nt.nw;
  if (rows == 0) return absl::OkStatus();
  MM_RETURN_IF_ERROR(Fit(&draw, rows * S));
  MM_RETURN_IF_ERROR(Fit(&dscore, rows));
  MM_RETURN_IF_ERROR(Fit(&dm, rows * D));
  MMC_CALL(note_scale_backward, nt.raw.get(), nt.score.get(), nt.ds.get(), nullptr, rows, S,
           draw.get(), dscore.get());
  MM_RETURN_IF_ERROR(BackWeight(draw.get(), rows, S, nt.m.get(), D, LW.note_summary));
  MM_RETURN_IF_ERROR(BackInput(draw.get(), rows, S, LW.note_summary, dm.get(), D, false));
  MMC_CALL(note_score_backward, nt.m.get(), nt.score.get(), dscore.get(), rows, D,
           W(LW.note_score), dm.get(), G(LW.note_score), G(&LW.note_score_bias));
  MMC_CALL(note_max_backward, dm.get(), nt.arg.get(), B, nt.nw, T, D, dap);
  return absl::OkStatus();
}

absl::Status CudaTrainState::Impl::LayerBackward(int64_t l, const float* u, float* dxp) {
  const ModelConfig& c = model->config();
  const LayerWeights& LW = model->weights().layers[l];
  const int64_t D = c.d_model, E = c.d_inner(), N = c.d_state, R = c.dt_rank, K = c.d_conv;
  const int64_t ld_dbc = R + 2 * N;
  if (keep_all) {
    cur = &caches[l];
  } else {
    MM_RETURN_IF_ERROR(Fit(&out_tmp, M * D));
    MM_RETURN_IF_ERROR(LayerForward(l, u, out_tmp.get()));  // recompute
  }
  LayerCache& lc = *cur;
  MM_RETURN_IF_ERROR(Fit(&dxbar, M * D));
  MM_RETURN_IF_ERROR(Copy(dxbar.get(), dxp, M * D));
  MM_RETURN_IF_ERROR(Fit(&dy, M * E));
  MM_RETURN_IF_ERROR(BackWeight(dxp, M, D, lc.y.get(), E, LW.out_proj));
  MM_RETURN_IF_ERROR(BackInput(dxp, M, D, LW.out_proj, dy.get(), E, false));
  MM_RETURN_IF_ERROR(Fit(&dxz, M * 2 * E));
  MM_RETURN_IF_ERROR(Fit(&dxc, M * E));
  MM_RETURN_IF_ERROR(Fit(&ddt, M * E));
  MM_RETURN_IF_ERROR(Fit(&ddbc, M * ld_dbc));
  MM_RETURN_IF_ERROR(Fit(&dA, N * E));
  MM_RETURN_IF_ERROR(ctx_->Zero(dA.get(), N * E * sizeof(float)));
  const int64_t n_chunks = (T + MMC_SCAN_CHUNK - 1) / MMC_SCAN_CHUNK;
  std::vector<mmc_scan_backward_args> sb(B);
  for (int64_t b = 0; b < B; ++b) {
    mmc_scan_backward_args& s = sb[b];
    s.fwd = ScanArgs(l, b, lc);
    s.checkpoints = lc.checkpoints.get() + b * n_chunks * N * E;
    s.dy = dy.get() + b * T * E;
    s.dxc = dxc.get() + b * T * E;
    s.ddt = ddt.get() + b * T * E;
    s.dB = ddbc.get() + b * T * ld_dbc + R;
    s.dC = ddbc.get() + b * T * ld_dbc + R + N;
    s.ld_dbc = ld_dbc;
    s.dz = dxz.get() + b * T * 2 * E + E;
    s.ld_dz = 2 * E;
    s.dA = dA.get();
    s.dD = G(LW.D);
    s.ddt_bias = G(LW.dt_bias);
  }
  MMC_CALL(selective_scan_backward, sb.data(), B);
  MMC_CALL(a_log_backward, dA.get(), A[l].get(), E, N, G(LW.A_log));
  MM_RETURN_IF_ERROR(BackWeight(ddt.get(), M, E, lc.dbc.get(), ld_dbc, LW.dt_proj));
  MM_RETURN_IF_ERROR(BackInput(ddt.get(), M, E, LW.dt_proj, ddbc.get(), ld_dbc, false));
  MM_RETURN_IF_ERROR(BackWeight(ddbc.get(), M, ld_dbc, lc.xc.get(), E, LW.x_proj));
  MM_RETURN_IF_ERROR(BackInput(ddbc.get(), M, ld_dbc, LW.x_proj, dxc.get(), E, true));
  std::vector<mmc_conv_backward_args> cb(B);
  for (int64_t b = 0; b < B; ++b) {
    mmc_conv_backward_args& g = cb[b];
    g.T = T;
    g.E = E;
    g.K = K;
    g.xi = lc.xz.get() + b * T * 2 * E;
    g.ld_xi = 2 * E;
    g.w = W(LW.conv_w);
    g.b = W(LW.conv_b);
    g.dout = dxc.get() + b * T * E;
    g.dxi = dxz.get() + b * T * 2 * E;
    g.ld_dxi = 2 * E;
    g.dw = G(LW.conv_w);
    g.db = G(LW.conv_b);
  }
  MMC_CALL(conv_silu_backward, cb.data(), B);
  MM_RETURN_IF_ERROR(Fit(&dh, M * D));
  MM_RETURN_IF_ERROR(BackWeight(dxz.get(), M, 2 * E, lc.h.get(), D, LW.in_proj));
  MM_RETURN_IF_ERROR(BackInput(dxz.get(), M, 2 * E, LW.in_proj, dh.get(), D, false));
  MMC_CALL(rms_norm_backward, lc.xbar.get(), M, D, W(LW.norm), c.norm_eps, dh.get(),
           dxbar.get(), 1, G(LW.norm));
  MM_RETURN_IF_ERROR(Copy(dxp, dxbar.get(), M * D));
  if (!c.memory_enabled()) return absl::OkStatus();
  MM_RETURN_IF_ERROR(Fit(&da, M * D));
  MM_RETURN_IF_ERROR(ctx_->Zero(da.get(), M * D * sizeof(float)));
  MM_RETURN_IF_ERROR(ReadBackward(l, /*cross=*/false, dxbar.get(), da.get()));
  if (LW.has_lay) MM_RETURN_IF_ERROR(ReadBackward(l, /*cross=*/true, dxbar.get(), da.get()));
  MM_RETURN_IF_ERROR(NotesBackward(l, da.get()));
  MMC_CALL(rms_norm_backward, u, M, D, W(LW.note_norm), c.norm_eps, da.get(), dxp, 1,
           G(LW.note_norm));
  return absl::OkStatus();
}

absl::Status CudaTrainState::Impl::LossAndHeadBackward(const float* x_last, float* dxp,
                                                       int64_t n_targets, double* loss_sum) {
  const ModelConfig& c = model->config();
  const ModelWeights& Wt = model->weights();
  const int64_t D = c.d_model, V = c.vocab_size;
  std::vector<int32_t> rows, targets;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t + 1 < T; ++t) {
      const int64_t next = b * T + t + 1;
      if (batch->mask && !batch->mask[next]) continue;
      rows.push_back(static_cast<int32_t>(b * T + t));
      targets.push_back(batch->tokens[next]);
    }
  }
  const int64_t n = static_cast<int64_t>(rows.size());
  MM_RETURN_IF_ERROR(Fit(&rows_dev, n));
  MM_RETURN_IF_ERROR(Fit(&targets_dev, n));
  MM_RETURN_IF_ERROR(ctx_->Upload(rows_dev.get(), rows.data(), n * 4));
  MM_RETURN_IF_ERROR(ctx_->Upload(targets_dev.get(), targets.data(), n * 4));
  MM_RETURN_IF_ERROR(Fit(&xr, n * D));
  MM_RETURN_IF_ERROR(Fit(&hf, n * D));
  MM_RETURN_IF_ERROR(Fit(&dhf, n * D));
  MM_RETURN_IF_ERROR(Fit(&dxr, n * D));
  MMC_CALL(gather_rows, x_last, D, rows_dev.get(), nullptr, nullptr, n, D, xr.get(), D, 0);
  MMC_CALL(rms_norm, xr.get(), n, D, W(Wt.norm_f), c.norm_eps, hf.get());
  const Matrix& head = Wt.head();
  // Logits a block of rows at a time: at most 64 Mi floats live.
  const int64_t block = std::max<int64_t>(1, std::min<int64_t>(n, (int64_t{1} << 26) / V));
  MM_RETURN_IF_ERROR(Fit(&logits, block * V));
  MM_RETURN_IF_ERROR(Fit(&loss_dev, 1));
  MM_RETURN_IF_ERROR(ctx_->Zero(loss_dev.get(), sizeof(double)));
  const float scale = 1.0f / static_cast<float>(n_targets);
  for (int64_t r0 = 0; r0 < n; r0 += block) {
    const int64_t nr = std::min(block, n - r0);
    MM_RETURN_IF_ERROR(Matmul(hf.get() + r0 * D, nr, D, head, logits.get(), V, false));
    MMC_CALL(softmax_cross_entropy, logits.get(), nr, V, targets_dev.get() + r0, scale,
             loss_dev.get());
    MM_RETURN_IF_ERROR(BackWeight(logits.get(), nr, V, hf.get() + r0 * D, D, head));
    MM_RETURN_IF_ERROR(BackInput(logits.get(), nr, V, head, dhf.get() + r0 * D, D, false));
  }
  MMC_CALL(rms_norm_backward, xr.get(), n, D, W(Wt.norm_f), c.norm_eps, dhf.get(), dxr.get(), 0,
           G(Wt.norm_f));
  MM_RETURN_IF_ERROR(ctx_->Zero(dxp, M * D * sizeof(float)));
  MMC_CALL(gather_rows, dxr.get(), D, nullptr, nullptr, rows_dev.get(), n, D, dxp, D, 0);
  return ctx_->Download(loss_sum, loss_dev.get(), sizeof(double));
}

absl::Status CudaTrainState::Impl::Run(const Batch& bt, const GradientOptions& options,
                                       BatchStats* stats) {
  const ModelConfig& c = model->config();
  const ModelWeights& Wt = model->weights();
  if (options.straight_through) {
    return Error(ErrorCode::kUnsupported,
                 "the straight-through note estimator runs on the CPU only in this version");
  }
  batch = &bt;
  B = bt.B;
  T = bt.T;
  M = B * T;
  const int64_t D = c.d_model, E = c.d_inner(), N = c.d_state, S = c.summary_dim;
  int64_t n_targets = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 1; t < T; ++t) {
      if (!bt.mask || bt.mask[b * T + t]) ++n_targets;
    }
  }
  if (n_targets == 0) {
    return Error(ErrorCode::kInvalidArgument, "the batch has no target (every loss mask byte "
                                              "at t >= 1 is zero, or seq_len is 1)");
  }
  if (M > INT32_MAX) return Error(ErrorCode::kUnsupported, "batch * seq_len >= 2^31");
  {
    // Keep every layer's activations when they fit (by default in 40 % of
    // the device's memory); else one layer's, recomputed in the backward.
    const int64_t ld_dbc = c.dt_rank + 2 * N;
    const double per_layer =
        4.0 * M * (4 * D + 6 * E + ld_dbc + 4 * S) +
        4.0 * B * ((T + MMC_SCAN_CHUNK - 1) / MMC_SCAN_CHUNK + 1) * N * E +
        4.0 * 4 * B * (T / c.note_window + 1) * 2 * S * (1 + c.cross_layer_span);
    const double budget = options.device_keep_activations_bytes >= 0.0
                              ? options.device_keep_activations_bytes
                              : 0.4 * static_cast<double>(ctx_->total_memory());
    const bool fits = per_layer * c.n_layer <= budget;
    if (fits != keep_all || caches.empty()) caches.clear();
    keep_all = fits;
    caches.resize(keep_all ? c.n_layer : 1);
  }
  notes.resize(c.n_layer);
  for (Notes& nt : notes) nt.done = false;
  x.resize(c.n_layer + 1);
  MM_RETURN_IF_ERROR(ctx_->Zero(g.get(), total * sizeof(float)));

  // Forward.
  MM_RETURN_IF_ERROR(Fit(&tokens_dev, M));
  MM_RETURN_IF_ERROR(ctx_->Upload(tokens_dev.get(), bt.tokens, M * 4));
  MM_RETURN_IF_ERROR(Fit(&x[0], M * D));
  MMC_CALL(gather_rows, W(Wt.embedding), D, tokens_dev.get(), nullptr, nullptr, M, D,
           x[0].get(), D, 0);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    MM_RETURN_IF_ERROR(Fit(&x[l + 1], M * D));
    MM_RETURN_IF_ERROR(LayerForward(l, x[l].get(), x[l + 1].get()));
  }
  // Loss, then backward layer by layer.
  MM_RETURN_IF_ERROR(Fit(&dx, M * D));
  double loss_sum = 0.0;
  MM_RETURN_IF_ERROR(LossAndHeadBackward(x[c.n_layer].get(), dx.get(), n_targets, &loss_sum));
  for (int64_t l = c.n_layer - 1; l >= 0; --l) {
    MM_RETURN_IF_ERROR(LayerBackward(l, x[l].get(), dx.get()));
  }
  // Embedding gradient: the rows of each token summed in position order.
  {
    std::vector<int32_t> count(c.vocab_size + 1, 0);
    for (int64_t m = 0; m < M; ++m) ++count[bt.tokens[m] + 1];
    std::vector<int32_t> ids, offsets{0};
    for (int64_t v = 0; v < c.vocab_size; ++v) {
      if (count[v + 1] == 0) continue;
      ids.push_back(static_cast<int32_t>(v));
      offsets.push_back(offsets.back() + count[v + 1]);
    }
    for (int64_t v = 0; v < c.vocab_size; ++v) count[v + 1] += count[v];  // starts
    std::vector<int32_t> positions(M);
    for (int64_t m = 0; m < M; ++m) positions[count[bt.tokens[m]]++] = static_cast<int32_t>(m);
    const int64_t n_ids = static_cast<int64_t>(ids.size());
    MM_RETURN_IF_ERROR(Fit(&emb_ids, n_ids));
    MM_RETURN_IF_ERROR(Fit(&emb_offsets, n_ids + 1));
    MM_RETURN_IF_ERROR(Fit(&emb_rows, M));
    MM_RETURN_IF_ERROR(ctx_->Upload(emb_ids.get(), ids.data(), n_ids * 4));
    MM_RETURN_IF_ERROR(ctx_->Upload(emb_offsets.get(), offsets.data(), (n_ids + 1) * 4));
    MM_RETURN_IF_ERROR(ctx_->Upload(emb_rows.get(), positions.data(), M * 4));
    MMC_CALL(gather_rows, dx.get(), D, emb_rows.get(), emb_offsets.get(), emb_ids.get(), n_ids,
             D, G(Wt.embedding), D, 1);
  }
  MM_RETURN_IF_ERROR(ctx_->Synchronize());

  stats->loss_sum = loss_sum;
  stats->targets = n_targets;
  stats->keep_fraction.assign(c.n_layer, 0.0f);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const int64_t closed = B * notes[l].nw;
    stats->keep_fraction[l] =
        closed ? static_cast<float>(notes[l].kept) / static_cast<float>(closed) : 0.0f;
  }
  return absl::OkStatus();
}

// --- CudaTrainState ---------------------------------------------------------

CudaTrainState::CudaTrainState(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaTrainState::~CudaTrainState() = default;

const std::string& CudaTrainState::device_name() const { return impl_->ctx_->device_name(); }
int CudaTrainState::device() const { return impl_->ctx_->device(); }
bool CudaTrainState::in_group() const { return impl_->comm != nullptr; }
int CudaTrainState::world_size() const { return impl_->world_size; }

absl::Status CudaTrainState::JoinGroup(int world_size, int rank, const uint8_t* nccl_id) {
  Impl& I = *impl_;
  CudaContext* ctx = I.ctx_;
  if (I.comm != nullptr) {
    return Error(ErrorCode::kInvalidArgument, "the trainer is already in a data-parallel group");
  }
  MM_RETURN_IF_ERROR(I.reduce_dev.Reserve(ctx, 16));
  mmc_comm* comm = nullptr;
  MM_RETURN_IF_ERROR(ctx->Check(I.ops_->comm_create(ctx->get(), world_size, rank, nccl_id, &comm),
                                "joining the data-parallel group (ncclCommInitRank)"));
  I.comm = comm;
  I.world_size = world_size;
  I.rank = rank;
  // Every rank starts from rank 0's weights and moments.
  for (DA<float>* d : {&I.w, &I.m, &I.v}) {
    MM_RETURN_IF_ERROR(ctx->Check(
        I.ops_->comm_broadcast(ctx->get(), comm, d->get(),
                               static_cast<int64_t>(I.total * sizeof(float)), 0),
        "broadcasting rank 0's state"));
  }
  MM_RETURN_IF_ERROR(I.RefreshA());
  return ctx->Synchronize();
}

absl::Status CudaTrainState::AllReduceGradient(double scale) {
  Impl& I = *impl_;
  return I.ctx_->Check(I.ops_->comm_all_reduce(I.ctx_->get(), I.comm, I.g.get(), I.total,
                                               MMC_DTYPE_F32, scale),
                       "gradient all-reduce");
}

absl::Status CudaTrainState::AllReduce(double* values, int n) {
  Impl& I = *impl_;
  CudaContext* ctx = I.ctx_;
  if (n < 1 || n > 16) return Error(ErrorCode::kInternal, "AllReduce of more than 16 values");
  MM_RETURN_IF_ERROR(ctx->Upload(I.reduce_dev.get(), values, n * sizeof(double)));
  MM_RETURN_IF_ERROR(ctx->Check(
      I.ops_->comm_all_reduce(ctx->get(), I.comm, I.reduce_dev.get(), n, MMC_DTYPE_F64, 1.0),
      "all-reduce"));
  MM_RETURN_IF_ERROR(ctx->Download(values, I.reduce_dev.get(), n * sizeof(double)));
  return ctx->Synchronize();
}

absl::StatusOr<std::unique_ptr<CudaTrainState>> CudaTrainState::Create(
    const Model* model, std::vector<ParamRef> params, bool accumulate, int device, bool tf32) {
  auto impl = std::make_unique<Impl>();
  MM_ASSIGN_OR_RETURN(impl->ctx_holder, CudaContext::Create(device, tf32));
  impl->ctx_ = impl->ctx_holder.get();
  impl->ops_ = &impl->ctx_->ops();
  impl->model = model;
  impl->params = std::move(params);
  impl->accumulate = accumulate;
  for (const ParamRef& p : impl->params) {
    const void* host = p.matrix ? static_cast<const void*>(p.matrix->f32.data())
                       : p.vector ? static_cast<const void*>(p.vector->data())
                                  : static_cast<const void*>(p.scalar);
    impl->offset.push_back(impl->total);
    impl->index[host] = impl->total;
    // Each tensor starts on a 16-float boundary (vector loads, alignment).
    impl->total += (p.numel() + 15) / 16 * 16;
  }
  CudaContext* ctx = impl->ctx_;
  MM_RETURN_IF_ERROR(impl->w.Reserve(ctx, impl->total));
  MM_RETURN_IF_ERROR(impl->g.Reserve(ctx, impl->total));
  MM_RETURN_IF_ERROR(impl->m.Reserve(ctx, impl->total));
  MM_RETURN_IF_ERROR(impl->v.Reserve(ctx, impl->total));
  if (accumulate) MM_RETURN_IF_ERROR(impl->acc.Reserve(ctx, impl->total));
  for (DA<float>* d : {&impl->w, &impl->g, &impl->m, &impl->v, &impl->acc}) {
    if (d->get()) MM_RETURN_IF_ERROR(ctx->Zero(d->get(), impl->total * sizeof(float)));
  }
  const ModelConfig& c = model->config();
  impl->A.resize(c.n_layer);
  for (auto& a : impl->A) MM_RETURN_IF_ERROR(a.Reserve(ctx, c.d_state * c.d_inner()));
  return std::unique_ptr<CudaTrainState>(new CudaTrainState(std::move(impl)));
}

absl::Status CudaTrainState::Upload(const std::vector<std::vector<float>>& m,
                                    const std::vector<std::vector<float>>& v,
                                    const std::vector<std::vector<float>>& accum) {
  Impl& I = *impl_;
  for (size_t i = 0; i < I.params.size(); ++i) {
    const ParamRef& p = I.params[i];
    const float* host = p.matrix ? p.matrix->f32.data() : p.vector ? p.vector->data() : p.scalar;
    const size_t bytes = p.numel() * sizeof(float);
    MM_RETURN_IF_ERROR(I.ctx_->Upload(I.w.get() + I.offset[i], host, bytes));
    MM_RETURN_IF_ERROR(I.ctx_->Upload(I.m.get() + I.offset[i], m[i].data(), bytes));
    MM_RETURN_IF_ERROR(I.ctx_->Upload(I.v.get() + I.offset[i], v[i].data(), bytes));
    if (I.accumulate) {
      MM_RETURN_IF_ERROR(I.ctx_->Upload(I.acc.get() + I.offset[i], accum[i].data(), bytes));
    }
  }
  MM_RETURN_IF_ERROR(I.RefreshA());
  return I.ctx_->Synchronize();
}

absl::Status CudaTrainState::Download(ModelWeights* weights, std::vector<std::vector<float>>* m,
                                      std::vector<std::vector<float>>* v,
                                      std::vector<std::vector<float>>* accum) {
  Impl& I = *impl_;
  // Into copies first: a failure leaves the host as it was.
  std::vector<std::vector<float>> wv(I.params.size()), mv(I.params.size()), vv(I.params.size()),
      av(I.params.size());
  for (size_t i = 0; i < I.params.size(); ++i) {
    const int64_t n = I.params[i].numel();
    wv[i].resize(n);
    mv[i].resize(n);
    vv[i].resize(n);
    MM_RETURN_IF_ERROR(I.ctx_->Download(wv[i].data(), I.w.get() + I.offset[i], n * 4));
    MM_RETURN_IF_ERROR(I.ctx_->Download(mv[i].data(), I.m.get() + I.offset[i], n * 4));
    MM_RETURN_IF_ERROR(I.ctx_->Download(vv[i].data(), I.v.get() + I.offset[i], n * 4));
    if (I.accumulate) {
      av[i].resize(n);
      MM_RETURN_IF_ERROR(I.ctx_->Download(av[i].data(), I.acc.get() + I.offset[i], n * 4));
    }
  }
  std::vector<ParamRef> host = ListParams(I.model->config(), weights);
  for (size_t i = 0; i < host.size(); ++i) {
    const ParamRef& p = host[i];
    float* dst = p.matrix ? p.matrix->f32.data() : p.vector ? p.vector->data() : p.scalar;
    std::memcpy(dst, wv[i].data(), wv[i].size() * sizeof(float));
  }
  *m = std::move(mv);
  *v = std::move(vv);
  if (I.accumulate) *accum = std::move(av);
  PrepareWeights(I.model->config(), weights);
  return absl::OkStatus();
}

absl::Status CudaTrainState::ComputeGradients(const Batch& batch, const GradientOptions& options,
                                              BatchStats* stats) {
  return impl_->Run(batch, options, stats);
}

absl::Status CudaTrainState::DownloadGradients(Gradients* out) {
  Impl& I = *impl_;
  out->assign(I.params.size(), {});
  for (size_t i = 0; i < I.params.size(); ++i) {
    (*out)[i].resize(I.params[i].numel());
    MM_RETURN_IF_ERROR(I.ctx_->Download((*out)[i].data(), I.g.get() + I.offset[i],
                                        (*out)[i].size() * sizeof(float)));
  }
  return absl::OkStatus();
}

absl::Status CudaTrainState::SumSquares(bool of_accum, double* total,
                                        std::vector<double>* per_tensor) {
  Impl& I = *impl_;
  const float* base = of_accum ? I.acc.get() : I.g.get();
  MM_RETURN_IF_ERROR(I.Fit(&I.sq_dev, 1));
  mmc_tensor_ref all{base, I.total};  // padding is zero
  MM_RETURN_IF_ERROR(I.ctx_->Check(I.ops_->sum_squares(I.ctx_->get(), &all, 1, I.sq_dev.get()),
                                   "sum_squares"));
  MM_RETURN_IF_ERROR(I.ctx_->Download(total, I.sq_dev.get(), sizeof(double)));
  if (per_tensor) {
    per_tensor->assign(I.params.size(), 0.0);
    for (size_t i = 0; i < I.params.size(); ++i) {
      mmc_tensor_ref t{base + I.offset[i], I.params[i].numel()};
      MM_RETURN_IF_ERROR(I.ctx_->Check(I.ops_->sum_squares(I.ctx_->get(), &t, 1, I.sq_dev.get()),
                                       "sum_squares"));
      MM_RETURN_IF_ERROR(I.ctx_->Download(&(*per_tensor)[i], I.sq_dev.get(), sizeof(double)));
    }
  }
  return absl::OkStatus();
}

absl::Status CudaTrainState::Accumulate() {
  Impl& I = *impl_;
  return I.ctx_->Check(I.ops_->add(I.ctx_->get(), I.g.get(), I.total, I.acc.get()), "add");
}

absl::Status CudaTrainState::ZeroAccum() {
  return impl_->ctx_->Zero(impl_->acc.get(), impl_->total * sizeof(float));
}

absl::Status CudaTrainState::AdamW(bool of_accum, float gs, float lr, float beta1, float beta2,
                                   float eps, float weight_decay, int64_t step) {
  Impl& I = *impl_;
  const float* grad = of_accum ? I.acc.get() : I.g.get();
  std::vector<mmc_adamw_tensor> ts(I.params.size());
  for (size_t i = 0; i < I.params.size(); ++i) {
    mmc_adamw_tensor& t = ts[i];
    t.w = I.w.get() + I.offset[i];
    t.g = grad + I.offset[i];
    t.m = I.m.get() + I.offset[i];
    t.v = I.v.get() + I.offset[i];
    t.n = I.params[i].numel();
    t.weight_decay = I.params[i].weight_decay ? weight_decay : 0.0f;
  }
  mmc_adamw_params p{};
  p.lr = lr;
  p.beta1 = beta1;
  p.beta2 = beta2;
  p.eps = eps;
  p.grad_scale = gs;
  p.grad_scale_device = nullptr;
  p.step = step;
  MM_RETURN_IF_ERROR(I.ctx_->Check(
      I.ops_->adamw(I.ctx_->get(), ts.data(), static_cast<int64_t>(ts.size()), &p), "adamw"));
  MM_RETURN_IF_ERROR(I.RefreshA());
  return I.ctx_->Synchronize();
}

}  // namespace memmamba
