// The loss and gradient of a batch (DESIGN 2.4, 6), written against the
// backend ops and their backward twins (src/backend/backend.h).
//
// Forward, per layer, for all B·T rows at once (every sequence from empty
// state, or from the state Batch::initial gives: its conv and SSM state
// start the mixer, its pools' notes are older than the sequence's windows;
// all of it constant):
//   a  = RMSNorm(u; note.norm)
//   notes: per complete window k of each sequence, m_k = max of a over the
//          window (argmax kept: its gradient goes to the first position
//          attaining it), score_k = NoteScore(m_k), ŝ_k = score_k·(Wsum·m_k);
//          pool membership by a scan over windows with InsertNote (the
//          runtime's own code: the same keep/evict decisions, which are
//          constants for the gradient)
//   reads: token t of window k attends to the pool after windows < k
//          (tok: this layer's pool; lay: the union of layers l-g … l-1)
//   x̄  = u + α_tok ⊙ c_tok + α_lay ⊙ c_lay
//   mixer: x̄ + out_proj·scan(conv(in_proj·RMSNorm(x̄)))
// Loss: mean next-token cross-entropy over the targets; logits are formed
// only for target rows, a block of rows at a time.
//
// A pass (GradientPass) takes a batch or a group of its sequences
// (GradientOptions::group_rows); ComputeGradients runs the groups' passes
// side by side and adds their gradients in group order.
//
// Memory: the forward keeps each layer's input (B·T·D floats per layer) and
// the notes (a few floats per window); the backward recomputes one layer's
// activations at a time, and the scan keeps its state every kScanChunk
// positions and recomputes the rest (checkpointing where it pays: the scan's
// per-position state would be B·T·E·N floats per layer).
#include "train/gradients.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <system_error>
#include <thread>

#include "backend/backend.h"
#include "backend/cpu/vec_math.h"
#include "runtime/forward.h"
#include "runtime/pool.h"

namespace memmamba {
namespace {

using cpu::Sigmoid;

WeightRef Ref(const Matrix& m) {
  WeightRef r;
  r.rows = m.rows;
  r.cols = m.cols;
  r.f32 = m.f32.data();
  return r;
}

// The notes of one layer over the batch.
struct Notes {
  int64_t nw = 0;             // complete windows per sequence
  std::vector<float> m;       // [B·nw, D] window maxima
  std::vector<int32_t> arg;   // [B·nw, D] position in the sequence of the max
  std::vector<float> score;   // [B·nw]
  std::vector<float> raw;     // [B·nw, S] note.summary·m
  std::vector<float> s;       // [B·nw, S] ŝ = score·raw
  std::vector<float> ds;      // [B·nw, S] gradient of ŝ, added by every reader
  std::vector<float> dscore_st;  // [B·nw] straight-through gradient of the score
  // The initial pools' notes ŝ (Batch::initial): [B·P, S], row b·P + i note i
  // of sequence b's initial pool (zeros past its end); empty without.
  std::vector<float> s0;
  // versions[b][k]: the notes in the pool read by tokens of window k of
  // sequence b, in pool order: window j as j, initial note i as −1 − i.
  PoolVersions versions;
  int64_t kept = 0;
  bool done = false;
};

// One pool read (tok or lay) of a layer, as the backward needs it.
struct ReadCache {
  std::vector<float> q;       // [M, S]
  std::vector<float> o;       // [M, S] attention output
  std::vector<float> co;      // [M, D] = read.o · o
  std::vector<float> gate;    // [M]: γ where active, else 0
  // Keys and values of every note of each source layer, with this read's
  // projections: kv[src - src_begin] is [B·nw, 2S] (key then value).
  std::vector<std::vector<float>> kv;
  std::vector<std::vector<float>> dkv;
  // The same for the initial pools' notes (Notes::s0): [B·P, 2S] a source.
  std::vector<std::vector<float>> kv0;
  std::vector<std::vector<float>> dkv0;
  int64_t src_begin = 0, src_end = 0;
};

// A stretch [t0, t0 + len) of sequence b that the conv and the scan run
// through without a reset (Batch::resets cut a sequence into several).
// `carried`: it starts from the initial stream's recurrent state (t0 = 0,
// with Batch::initial, and no reset at 0); else from zeros. `checkpoint`:
// offset of its scan checkpoints, in states of N·E floats.
struct Segment {
  int64_t b = 0, t0 = 0, len = 0, checkpoint = 0;
  bool carried = false;
};

// Targets of a batch: row (b, t) for t >= 1 where the mask (if any) is set.
int64_t CountTargets(const Batch& batch) {
  int64_t n = 0;
  for (int64_t b = 0; b < batch.B; ++b) {
    for (int64_t t = 1; t < batch.T; ++t) {
      if (!batch.mask || batch.mask[b * batch.T + t]) ++n;
    }
  }
  return n;
}

// One layer's activations, recomputed in the backward.
struct LayerCache {
  std::vector<float> a, xbar, h, xz, xc, dbc, dt, y, checkpoints, state;
  ReadCache tok, lay;
};

}  // namespace

struct GradientWorkspace {
  std::vector<std::vector<float>> x;  // GradientPass::x_
  std::vector<Notes> notes;           // GradientPass::notes_
  std::vector<LayerCache> caches;     // GradientPass::caches_
  // LayerBackward's gradients of the layer's activations.
  std::vector<float> dxbar, dy, dxz, dxc, ddt, ddbc, dh, da;
  // One per group of a batch split into groups (ComputeGradients).
  std::vector<std::unique_ptr<GradientWorkspace>> groups;
};

void GradientWorkspaceDeleter::operator()(GradientWorkspace* w) const { delete w; }

GradientWorkspacePtr MakeGradientWorkspace() { return GradientWorkspacePtr(new GradientWorkspace); }

namespace {

class GradientPass {
 public:
  // `workspace`: NULL for buffers of its own. The pass runs its ops on `be`
  // and its own loops on `n_threads` threads; `n_targets` (> 0) divides the
  // loss sum (the batch's whole target count when `batch` is part of one).
  GradientPass(const Model& model, const Batch& batch, const GradientOptions& options,
               GradientWorkspace* workspace, Backend& be, int n_threads, int64_t n_targets)
      : ws_(workspace != nullptr ? *workspace : own_),
        persistent_(workspace != nullptr),
        x_(ws_.x),
        notes_(ws_.notes),
        caches_(ws_.caches),
        n_threads_(n_threads),
        n_targets_(n_targets),
        straight_through_(options.straight_through),
        keep_bytes_(options.keep_activations_bytes),
        c_(model.config()),
        W_(model.weights()),
        be_(be),
        batch_(batch),
        B_(batch.B),
        T_(batch.T),
        M_(batch.B * batch.T),
        D_(c_.d_model),
        E_(c_.d_inner()),
        N_(c_.d_state),
        R_(c_.dt_rank),
        S_(c_.summary_dim),
        ld_dbc_(c_.dt_rank + 2 * c_.d_state),
        P_(batch.initial != nullptr ? c_.pool_capacity : 0) {
    for (int64_t b = 0; b < B_; ++b) {
      const bool from_stream = batch.initial != nullptr && batch.initial[b] != nullptr;
      int64_t t0 = 0;
      for (int64_t t = 1; t <= T_; ++t) {
        if (t < T_ && !(batch.resets != nullptr && batch.resets[b * T_ + t])) continue;
        Segment g;
        g.b = b;
        g.t0 = t0;
        g.len = t - t0;
        g.carried = t0 == 0 && from_stream && !(batch.resets && batch.resets[b * T_]);
        g.checkpoint = checkpoints_;
        checkpoints_ += (g.len + kScanChunk - 1) / kScanChunk;
        segments_.push_back(g);
        t0 = t;
      }
    }
  }

  // The forward and the backward: Σ over this batch's targets of -log p
  // goes to `loss_sum`, kept / closed windows per layer to `kept` and
  // `closed`.
  absl::Status Run(double* loss_sum, std::vector<int64_t>* kept, std::vector<int64_t>* closed);
  // Adds the gradients (`add`) or writes them into `grads`, flat in
  // ListParams() order.
  void Collect(Gradients* grads, bool add);

 private:
  // Forward of layer l from its input u: out = the layer's output. Fills
  // its cache (and the layer's notes the first time).
  void LayerForward(int64_t l, const float* u, float* out);
  // MixerScanArgs of segment g: its rows of the layer's arrays (y may be NULL).
  ScanArgs SegmentScanArgs(const Segment& g, int64_t l, const float* xz, const float* xc,
                           const float* dbc, const float* dt, float* y) const;
  void LayerBackward(int64_t l, const float* u, float* dx);
  void TakeNotes(int64_t l);
  void ReadForward(int64_t l, bool cross, float* xbar);
  void ReadBackward(int64_t l, bool cross, const float* dxbar, float* da);
  void NotesBackward(int64_t l, float* da);
  // The entries row (b, t) of read `rc` sees, as pointers into kv (or dkv).
  void Gather(const ReadCache& rc, int64_t l, int64_t b, int64_t t, bool grad,
              std::vector<const float*>* keys, std::vector<const float*>* values,
              std::vector<float*>* dkeys, std::vector<float*>* dvalues) const;
  // Straight-through κ of row (b, t) of read `rc`, whose pool entries Gather
  // gave as keys and values: every entry and every earlier window left out
  // of the pools is a candidate; fills where each candidate's dκ goes
  // (targets) and the dκ themselves. Only reads.
  void KappaRow(const ReadCache& rc, int64_t b, int64_t t,
                const std::vector<const float*>& keys,
                const std::vector<const float*>& values, const float* dout,
                float* constant_sink, std::vector<float*>* targets,
                std::vector<float>* dkappa) const;
  double LossAndHeadBackward(const float* x_last, float* dx, int64_t n_targets);
  // Threads for the attention loops: none for small blocks. The backward's
  // loop is per sequence (rows of one sequence share their notes' dk, dv).
  int ReadThreads() const { return M_ * S_ >= 65536 ? n_threads_ : 1; }
  int SequenceThreads() const { return B_ > 1 ? ReadThreads() : 1; }

  GradientWorkspace own_;  // without options.workspace
  GradientWorkspace& ws_;
  const bool persistent_;  // ws_ outlives the pass: keep its buffers
  std::vector<std::vector<float>>& x_;  // x_[l]: input of layer l, [M, D]
  std::vector<Notes>& notes_;
  // The activations of the layer being worked on: caches_[l] when every
  // layer's fit in keep_bytes_ (the backward then recomputes nothing),
  // else caches_[0], refilled by a recomputation in the backward.
  std::vector<LayerCache>& caches_;

  const int n_threads_;
  const int64_t n_targets_;
  const bool straight_through_;
  const double keep_bytes_;
  const ModelConfig& c_;
  const ModelWeights& W_;
  Backend& be_;
  const Batch& batch_;
  const int64_t B_, T_, M_, D_, E_, N_, R_, S_, ld_dbc_;
  const int64_t P_;  // rows per sequence of Notes::s0: P with Batch::initial, else 0
  std::vector<Segment> segments_;  // in (b, t0) order; one per sequence without resets
  int64_t checkpoints_ = 0;        // scan checkpoints of all segments

  ModelWeights G_;  // gradients, shaped like the weights
  LayerCache* cur_ = nullptr;
  bool keep_all_ = false;
};

ScanArgs GradientPass::SegmentScanArgs(const Segment& g, int64_t l, const float* xz,
                                       const float* xc, const float* dbc, const float* dt,
                                       float* y) const {
  ScanArgs sa = MixerScanArgs(c_, W_.layers[l], T_, g.b, xz, xc, dbc, dt, nullptr, y);
  sa.T = g.len;
  sa.xc += g.t0 * E_;
  sa.dt += g.t0 * E_;
  sa.B += g.t0 * sa.ld_bc;
  sa.C += g.t0 * sa.ld_bc;
  sa.z += g.t0 * sa.ld_z;
  if (sa.y != nullptr) sa.y += g.t0 * E_;
  return sa;
}

float* Fit(std::vector<float>* v, int64_t n) {
  if (v->size() < static_cast<size_t>(n)) v->resize(n);
  return v->data();
}

void GradientPass::TakeNotes(int64_t l) {
  Notes& nt = notes_[l];
  const LayerWeights& LW = W_.layers[l];
  const int64_t w = c_.note_window;
  nt.nw = T_ / w;
  const int64_t rows = B_ * nt.nw;
  nt.m.assign(rows * D_, 0.0f);
  nt.arg.assign(rows * D_, 0);
  nt.score.assign(rows, 0.0f);
  nt.raw.assign(rows * S_, 0.0f);
  nt.s.assign(rows * S_, 0.0f);
  nt.ds.assign(rows * S_, 0.0f);
  nt.dscore_st.assign(rows, 0.0f);
  const float* a = cur_->a.data();
  for (int64_t b = 0; b < B_; ++b) {
    for (int64_t k = 0; k < nt.nw; ++k) {
      float* m = &nt.m[(b * nt.nw + k) * D_];
      int32_t* arg = &nt.arg[(b * nt.nw + k) * D_];
      std::fill(m, m + D_, -std::numeric_limits<float>::infinity());
      for (int64_t t = k * w; t < (k + 1) * w; ++t) {
        const float* row = a + (b * T_ + t) * D_;
        for (int64_t d = 0; d < D_; ++d) {
          if (row[d] > m[d]) {  // strict: the first position attaining the max
            m[d] = row[d];
            arg[d] = static_cast<int32_t>(t);
          }
        }
      }
      nt.score[b * nt.nw + k] = NoteScore(m, D_, LW.note_score.data(), LW.note_score_bias);
    }
  }
  if (rows > 0) be_.Matmul(nt.m.data(), rows, D_, Ref(LW.note_summary), nt.raw.data(), S_, false);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < S_; ++j) nt.s[r * S_ + j] = nt.score[r] * nt.raw[r * S_ + j];
  }
  // The initial pools' notes, then pool membership: the runtime's InsertNote
  // on entries carrying only an id and the score.
  std::vector<const Pool*> initial;
  if (P_ > 0) {
    nt.s0.assign(B_ * P_ * S_, 0.0f);
    initial.assign(B_, nullptr);
    for (int64_t b = 0; b < B_; ++b) {
      if (batch_.initial[b] == nullptr) continue;
      const Pool& pool = batch_.initial[b]->layers[l].pool;
      initial[b] = &pool;
      for (size_t i = 0; i < pool.size(); ++i) {
        std::memcpy(&nt.s0[(b * P_ + i) * S_], pool[i]->summary, S_ * sizeof(float));
      }
    }
  }
  nt.kept = 0;
  nt.versions = ComputePoolVersions(c_, nt.score.data(), B_, nt.nw, (T_ - 1) / w + 1,
                                    P_ > 0 ? initial.data() : nullptr, &nt.kept);
  nt.done = true;
}

void GradientPass::Gather(const ReadCache& rc, int64_t l, int64_t b, int64_t t, bool grad,
                          std::vector<const float*>* keys, std::vector<const float*>* values,
                          std::vector<float*>* dkeys, std::vector<float*>* dvalues) const {
  keys->clear();
  values->clear();
  if (grad) {
    dkeys->clear();
    dvalues->clear();
  }
  const int64_t k = t / c_.note_window;
  for (int64_t src = rc.src_begin; src < rc.src_end; ++src) {
    const Notes& nt = notes_[src];
    const int64_t i = src - rc.src_begin;
    for (int32_t id : nt.versions[b][k]) {
      // id >= 0: the sequence's window id; else note −1 − id of its initial pool.
      const bool initial = id < 0;
      const int64_t r = (initial ? b * P_ - 1 - id : b * nt.nw + id) * 2 * S_;
      const std::vector<float>& kv = initial ? rc.kv0[i] : rc.kv[i];
      keys->push_back(&kv[r]);
      values->push_back(&kv[r + S_]);
      if (grad) {
        float* dkv = const_cast<float*>((initial ? rc.dkv0[i] : rc.dkv[i]).data());
        dkeys->push_back(dkv + r);
        dvalues->push_back(dkv + r + S_);
      }
    }
  }
}

void GradientPass::KappaRow(const ReadCache& rc, int64_t b, int64_t t,
                            const std::vector<const float*>& keys,
                            const std::vector<const float*>& values, const float* dout,
                            float* constant_sink, std::vector<float*>* targets,
                            std::vector<float>* dkappa) const {
  thread_local std::vector<const float*> ckeys, cvalues;
  thread_local std::vector<char> in_pool;  // per window of a source
  // κ = keep + score − stopgrad(score): κ's gradient goes to the score.
  const int64_t k = t / c_.note_window;
  targets->clear();
  ckeys.clear();
  cvalues.clear();
  for (int64_t src = rc.src_begin; src < rc.src_end; ++src) {  // pool entries first
    Notes& nt = notes_[src];
    for (int32_t id : nt.versions[b][k]) {
      targets->push_back(id < 0 ? constant_sink : &nt.dscore_st[b * nt.nw + id]);
    }
  }
  for (int64_t src = rc.src_begin; src < rc.src_end; ++src) {
    Notes& nt = notes_[src];
    const int64_t i = src - rc.src_begin, wins = std::min(k, nt.nw);
    in_pool.assign(wins, 0);
    for (int32_t id : nt.versions[b][k]) {
      if (id >= 0 && id < wins) in_pool[id] = 1;
    }
    for (int64_t win = 0; win < wins; ++win) {
      if (in_pool[win]) continue;
      const int64_t r = (b * nt.nw + win) * 2 * S_;
      ckeys.push_back(&rc.kv[i][r]);
      cvalues.push_back(&rc.kv[i][r + S_]);
      targets->push_back(&nt.dscore_st[b * nt.nw + win]);
    }
  }
  dkappa->resize(targets->size());
  const int64_t row = b * T_ + t;
  be_.PoolAttendKappaGrad(&rc.q[row * S_], static_cast<int64_t>(keys.size()), keys.data(),
                          values.data(), static_cast<int64_t>(ckeys.size()), ckeys.data(),
                          cvalues.data(), S_, c_.attn_heads, dout + row * S_, dkappa->data());
}

void GradientPass::ReadForward(int64_t l, bool cross, float* xbar) {
  const ReadWeights& rw = cross ? W_.layers[l].lay : W_.layers[l].tok;
  ReadCache& rc = cross ? cur_->lay : cur_->tok;
  const float* a = cur_->a.data();
  rc.src_begin = cross ? c_.CrossLayerBegin(l) : l;
  rc.src_end = cross ? l : l + 1;
  const int64_t n_src = rc.src_end - rc.src_begin;
  rc.kv.resize(n_src);
  rc.dkv.resize(n_src);
  rc.kv0.resize(n_src);
  rc.dkv0.resize(n_src);
  // Keys and values [rows, 2S] of the notes s [rows, S].
  auto project = [&](const std::vector<float>& s, int64_t rows, std::vector<float>* kv,
                     std::vector<float>* dkv) {
    kv->assign(rows * 2 * S_, 0.0f);
    dkv->assign(rows * 2 * S_, 0.0f);
    if (rows == 0) return;
    be_.Matmul(s.data(), rows, S_, Ref(rw.k), kv->data(), 2 * S_, false);
    be_.Matmul(s.data(), rows, S_, Ref(rw.v), kv->data() + S_, 2 * S_, false);
  };
  for (int64_t i = 0; i < n_src; ++i) {
    const Notes& nt = notes_[rc.src_begin + i];
    project(nt.s, B_ * nt.nw, &rc.kv[i], &rc.dkv[i]);
    project(nt.s0, B_ * P_, &rc.kv0[i], &rc.dkv0[i]);
  }
  float* q = Fit(&rc.q, M_ * S_);
  float* o = Fit(&rc.o, M_ * S_);
  float* co = Fit(&rc.co, M_ * D_);
  float* gate = Fit(&rc.gate, M_);
  be_.Matmul(a, M_, D_, Ref(rw.q), q, S_, false);
  std::fill(o, o + M_ * S_, 0.0f);
  // Row by row: each row's read is its own (the same bits on any thread).
#pragma omp parallel num_threads(ReadThreads())
  {
    std::vector<const float*> keys, values;
#pragma omp for schedule(static)
    for (int64_t row = 0; row < M_; ++row) {
      Gather(rc, l, row / T_, row % T_, false, &keys, &values, nullptr, nullptr);
      const float* ar = a + row * D_;
      float g = rw.gate_bias;
      for (int64_t d = 0; d < D_; ++d) g += rw.gate[d] * ar[d];
      g = Sigmoid(g);
      const bool active = !keys.empty() && g > c_.gate_threshold;
      gate[row] = active ? g : 0.0f;
      if (!active) continue;
      be_.PoolAttend(q + row * S_, static_cast<int64_t>(keys.size()), keys.data(),
                     values.data(), S_, c_.attn_heads, o + row * S_);
    }
  }
  be_.Matmul(o, M_, S_, Ref(rw.o), co, D_, false);
  for (int64_t row = 0; row < M_; ++row) {
    const float g = gate[row];
    if (g == 0.0f) continue;
    float* xr = xbar + row * D_;
    const float* cr = co + row * D_;
    const float* ar = a + row * D_;
    switch (c_.fusion) {
      case Fusion::kWeighted:
        for (int64_t d = 0; d < D_; ++d) xr[d] += rw.alpha[d] * (g * cr[d]);
        break;
      case Fusion::kResidual:
        for (int64_t d = 0; d < D_; ++d) xr[d] += g * cr[d];
        break;
      case Fusion::kGated:
        for (int64_t d = 0; d < D_; ++d) xr[d] += Sigmoid(rw.fuse[d] * ar[d]) * (g * cr[d]);
        break;
    }
  }
}

void GradientPass::LayerForward(int64_t l, const float* u, float* out) {
  const LayerWeights& LW = W_.layers[l];
  cur_ = &caches_[keep_all_ ? l : 0];
  LayerCache& lc = *cur_;
  const int64_t K = c_.d_conv;
  float* xbar = Fit(&lc.xbar, M_ * D_);
  std::memcpy(xbar, u, M_ * D_ * sizeof(float));
  if (c_.memory_enabled()) {
    float* a = Fit(&lc.a, M_ * D_);
    be_.RmsNorm(u, M_, D_, LW.note_norm.data(), c_.norm_eps, a);
    if (!notes_[l].done) TakeNotes(l);
    ReadForward(l, /*cross=*/false, xbar);
    if (LW.has_lay) ReadForward(l, /*cross=*/true, xbar);
  }
  float* h = Fit(&lc.h, M_ * D_);
  float* xz = Fit(&lc.xz, M_ * 2 * E_);
  float* xc = Fit(&lc.xc, M_ * E_);
  float* dbc = Fit(&lc.dbc, M_ * ld_dbc_);
  float* dt = Fit(&lc.dt, M_ * E_);
  float* y = Fit(&lc.y, M_ * E_);
  const int64_t n_seg = static_cast<int64_t>(segments_.size());
  float* cps = Fit(&lc.checkpoints, checkpoints_ * N_ * E_);
  float* state = Fit(&lc.state, n_seg * (N_ + K) * E_);
  std::fill(state, state + n_seg * (N_ + K) * E_, 0.0f);
  for (int64_t i = 0; i < n_seg; ++i) {  // [N·E ssm][(K-1)·E conv] a segment
    if (!segments_[i].carried) continue;
    const LayerState& ls = batch_.initial[segments_[i].b]->layers[l];
    std::copy(ls.ssm.begin(), ls.ssm.end(), state + i * (N_ + K) * E_);
    std::copy(ls.conv.begin(), ls.conv.end(), state + i * (N_ + K) * E_ + N_ * E_);
  }

  be_.RmsNorm(xbar, M_, D_, LW.norm.data(), c_.norm_eps, h);
  be_.Matmul(h, M_, D_, Ref(LW.in_proj), xz, 2 * E_, false);
  // Each segment runs as a stream of its own: its rows of the sequence's arrays.
  std::vector<ConvArgs> conv(n_seg);
  std::vector<ScanArgs> scan(n_seg);
  for (int64_t i = 0; i < n_seg; ++i) {
    const Segment& g = segments_[i];
    conv[i] = MixerConvArgs(c_, LW, T_, g.b, xz, xc, state + i * (N_ + K) * E_ + N_ * E_);
    conv[i].T = g.len;
    conv[i].xi += g.t0 * conv[i].ld_xi;
    conv[i].out += g.t0 * E_;
  }
  be_.ConvSilu(conv.data(), n_seg);
  be_.Matmul(xc, M_, E_, Ref(LW.x_proj), dbc, ld_dbc_, false);
  be_.Matmul(dbc, M_, ld_dbc_, Ref(LW.dt_proj), dt, E_, false);
  for (int64_t i = 0; i < n_seg; ++i) {
    const Segment& g = segments_[i];
    scan[i] = SegmentScanArgs(g, l, xz, xc, dbc, dt, y);
    scan[i].state = state + i * (N_ + K) * E_;
    scan[i].checkpoints = cps + g.checkpoint * N_ * E_;
  }
  be_.SelectiveScan(scan.data(), n_seg);
  std::memcpy(out, xbar, M_ * D_ * sizeof(float));
  be_.Matmul(y, M_, E_, Ref(LW.out_proj), out, D_, true);
}

void GradientPass::ReadBackward(int64_t l, bool cross, const float* dxbar, float* da) {
  const ReadWeights& rw = cross ? W_.layers[l].lay : W_.layers[l].tok;
  ReadWeights& gw = cross ? G_.layers[l].lay : G_.layers[l].tok;
  ReadCache& rc = cross ? cur_->lay : cur_->tok;
  const float* a = cur_->a.data();
  std::vector<float> dco(M_ * D_, 0.0f);
  // Fusion and gate, row by row (the parameter sums in row order).
  for (int64_t row = 0; row < M_; ++row) {
    const float g = rc.gate[row];
    if (g == 0.0f) continue;
    const float* dx = dxbar + row * D_;
    const float* cr = &rc.co[row * D_];
    const float* ar = a + row * D_;
    float* dc = &dco[row * D_];
    float* dar = da + row * D_;
    switch (c_.fusion) {
      case Fusion::kWeighted:
        for (int64_t d = 0; d < D_; ++d) {
          dc[d] = rw.alpha[d] * dx[d];
          gw.alpha[d] += dx[d] * g * cr[d];
        }
        break;
      case Fusion::kResidual:
        for (int64_t d = 0; d < D_; ++d) dc[d] = dx[d];
        break;
      case Fusion::kGated:
        for (int64_t d = 0; d < D_; ++d) {
          const float f = Sigmoid(rw.fuse[d] * ar[d]);
          dc[d] = f * dx[d];
          const float dpre = dx[d] * g * cr[d] * f * (1.0f - f);
          gw.fuse[d] += dpre * ar[d];
          dar[d] += dpre * rw.fuse[d];
        }
        break;
    }
    // c = γ·co: dγ = dc·co, dco = γ·dc; γ = σ(gate·a + bias).
    float dgamma = 0.0f;
    for (int64_t d = 0; d < D_; ++d) {
      dgamma += dc[d] * cr[d];
      dc[d] *= g;
    }
    const float dgl = dgamma * g * (1.0f - g);
    for (int64_t d = 0; d < D_; ++d) {
      gw.gate[d] += dgl * ar[d];
      dar[d] += dgl * rw.gate[d];
    }
    gw.gate_bias += dgl;
  }
  // co = read.o · o.
  be_.MatmulBackwardWeight(dco.data(), M_, D_, rc.o.data(), S_, D_, S_, gw.o.f32.data());
  std::vector<float> dout(M_ * S_);
  be_.MatmulBackwardInput(dco.data(), M_, D_, rw.o.f32.data(), D_, S_, dout.data(), S_, false);
  // Attention, per sequence: rows of one sequence add to their notes' dk,
  // dv and to their windows' dκ, in row order. With fewer sequences than
  // threads, the κ gradients (rows that only read) of a block of rows are
  // computed in parallel and added in row order after: the same sums.
  std::vector<float> dq(M_ * S_, 0.0f);
  const int seq_threads = SequenceThreads();
  const bool block_kappa = straight_through_ && seq_threads < ReadThreads();
  const int64_t block = block_kappa ? std::min<int64_t>(T_, 256) : 1;
  std::vector<std::vector<float*>> block_targets(block);
  std::vector<std::vector<float>> block_dkappa(block);
  auto sequence = [&](int64_t b) {
    std::vector<const float*> keys, values;
    std::vector<float*> dkeys, dvalues;
    std::vector<float*> targets;  // where each candidate's dκ goes
    std::vector<float> dkappa;
    float constant_sink = 0.0f;    // the dκ of an initial pool's note (a constant)
    for (int64_t t0 = 0; t0 < T_; t0 += block) {
      const int64_t t1 = std::min(T_, t0 + block);
      if (block_kappa) {
#pragma omp parallel num_threads(ReadThreads())
        {
          std::vector<const float*> row_keys, row_values;
#pragma omp for schedule(dynamic, 8)
          for (int64_t t = t0; t < t1; ++t) {
            block_targets[t - t0].clear();
            if (rc.gate[b * T_ + t] == 0.0f) continue;
            Gather(rc, l, b, t, false, &row_keys, &row_values, nullptr, nullptr);
            KappaRow(rc, b, t, row_keys, row_values, dout.data(), &constant_sink,
                     &block_targets[t - t0], &block_dkappa[t - t0]);
          }
        }
      }
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t row = b * T_ + t;
        if (rc.gate[row] == 0.0f) continue;
        Gather(rc, l, b, t, true, &keys, &values, &dkeys, &dvalues);
        be_.PoolAttendBackward(&rc.q[row * S_], static_cast<int64_t>(keys.size()), keys.data(),
                               values.data(), S_, c_.attn_heads, &dout[row * S_],
                               &dq[row * S_], dkeys.data(), dvalues.data());
        if (!straight_through_) continue;
        if (!block_kappa) {
          KappaRow(rc, b, t, keys, values, dout.data(), &constant_sink, &targets, &dkappa);
        }
        const std::vector<float*>& tg = block_kappa ? block_targets[t - t0] : targets;
        const std::vector<float>& dk = block_kappa ? block_dkappa[t - t0] : dkappa;
        for (size_t j = 0; j < tg.size(); ++j) *tg[j] += dk[j];
      }
    }
  };
  if (seq_threads > 1) {  // not around the blocks' own parallel loop: it would nest
#pragma omp parallel for num_threads(seq_threads) schedule(static)
    for (int64_t b = 0; b < B_; ++b) sequence(b);
  } else {
    for (int64_t b = 0; b < B_; ++b) sequence(b);
  }
  // q = read.q · a.
  be_.MatmulBackwardWeight(dq.data(), M_, S_, a, D_, S_, D_, gw.q.f32.data());
  be_.MatmulBackwardInput(dq.data(), M_, S_, rw.q.f32.data(), S_, D_, da, D_, true);
  // k = read.k · ŝ, v = read.v · ŝ for every note of every source; the
  // initial pools' notes are constants (no gradient to ŝ).
  for (int64_t i = 0; i < rc.src_end - rc.src_begin; ++i) {
    Notes& nt = notes_[rc.src_begin + i];
    const int64_t rows = B_ * nt.nw;
    if (rows > 0) {
      const float* dk = rc.dkv[i].data();
      const float* dv = dk + S_;
      be_.MatmulBackwardWeight(dk, rows, 2 * S_, nt.s.data(), S_, S_, S_, gw.k.f32.data());
      be_.MatmulBackwardWeight(dv, rows, 2 * S_, nt.s.data(), S_, S_, S_, gw.v.f32.data());
      be_.MatmulBackwardInput(dk, rows, 2 * S_, rw.k.f32.data(), S_, S_, nt.ds.data(), S_,
                              true);
      be_.MatmulBackwardInput(dv, rows, 2 * S_, rw.v.f32.data(), S_, S_, nt.ds.data(), S_,
                              true);
    }
    if (P_ > 0) {
      const float* dk = rc.dkv0[i].data();
      be_.MatmulBackwardWeight(dk, B_ * P_, 2 * S_, nt.s0.data(), S_, S_, S_, gw.k.f32.data());
      be_.MatmulBackwardWeight(dk + S_, B_ * P_, 2 * S_, nt.s0.data(), S_, S_, S_,
                               gw.v.f32.data());
    }
  }
}

void GradientPass::NotesBackward(int64_t l, float* da) {
  Notes& nt = notes_[l];
  const LayerWeights& LW = W_.layers[l];
  LayerWeights& GL = G_.layers[l];
  const int64_t rows = B_ * nt.nw;
  if (rows == 0) return;
  // ŝ = score·raw, raw = Wsum·m.
  std::vector<float> draw(rows * S_), dm(rows * D_);
  std::vector<float> dscore(nt.dscore_st.begin(), nt.dscore_st.begin() + rows);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < S_; ++j) {
      dscore[r] += nt.ds[r * S_ + j] * nt.raw[r * S_ + j];
      draw[r * S_ + j] = nt.score[r] * nt.ds[r * S_ + j];
    }
  }
  be_.MatmulBackwardWeight(draw.data(), rows, S_, nt.m.data(), D_, S_, D_,
                           GL.note_summary.f32.data());
  be_.MatmulBackwardInput(draw.data(), rows, S_, LW.note_summary.f32.data(), S_, D_, dm.data(),
                          D_, false);
  // score = σ(w·(m − mean m) + bias).
  float w_mean = 0.0f;
  for (int64_t d = 0; d < D_; ++d) w_mean += LW.note_score[d];
  w_mean /= static_cast<float>(D_);
  for (int64_t r = 0; r < rows; ++r) {
    const float s = nt.score[r];
    const float dsl = dscore[r] * s * (1.0f - s);
    if (dsl == 0.0f) continue;
    const float* m = &nt.m[r * D_];
    float m_mean = 0.0f;
    for (int64_t d = 0; d < D_; ++d) m_mean += m[d];
    m_mean /= static_cast<float>(D_);
    for (int64_t d = 0; d < D_; ++d) {
      GL.note_score[d] += dsl * (m[d] - m_mean);
      dm[r * D_ + d] += dsl * (LW.note_score[d] - w_mean);
    }
    GL.note_score_bias += dsl;
  }
  // The max: to the first position attaining it.
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t b = r / nt.nw;
    for (int64_t d = 0; d < D_; ++d) {
      da[(b * T_ + nt.arg[r * D_ + d]) * D_ + d] += dm[r * D_ + d];
    }
  }
}

void GradientPass::LayerBackward(int64_t l, const float* u, float* dx) {
  const LayerWeights& LW = W_.layers[l];
  LayerWeights& GL = G_.layers[l];
  const int64_t K = c_.d_conv;
  if (keep_all_) {
    cur_ = &caches_[l];
  } else {
    std::vector<float> out(M_ * D_);
    LayerForward(l, u, out.data());  // recompute this layer's activations
  }
  LayerCache& lc = *cur_;
  // The workspace's buffers: each is written in full before it is read
  // (the segments cover every row), except da, which gathers sums.
  // dx holds the gradient of the layer's output; x̄ passes it through.
  float* dxbar = Fit(&ws_.dxbar, M_ * D_);
  std::memcpy(dxbar, dx, M_ * D_ * sizeof(float));
  // out = x̄ + out_proj·y.
  float* dy = Fit(&ws_.dy, M_ * E_);
  be_.MatmulBackwardWeight(dx, M_, D_, lc.y.data(), E_, D_, E_, GL.out_proj.f32.data());
  be_.MatmulBackwardInput(dx, M_, D_, LW.out_proj.f32.data(), D_, E_, dy, E_, false);
  // Scan.
  float* dxz = Fit(&ws_.dxz, M_ * 2 * E_);
  float* dxc = Fit(&ws_.dxc, M_ * E_);
  float* ddt = Fit(&ws_.ddt, M_ * E_);
  float* ddbc = Fit(&ws_.ddbc, M_ * ld_dbc_);
  std::vector<float> dA(N_ * E_, 0.0f);
  const int64_t n_seg = static_cast<int64_t>(segments_.size());
  std::vector<ScanBackwardArgs> sb(n_seg);
  for (int64_t i = 0; i < n_seg; ++i) {
    const Segment& s = segments_[i];
    const int64_t row = s.b * T_ + s.t0;  // the segment's first row
    ScanBackwardArgs& g = sb[i];
    // The forward's arguments again (no state or output: the backward reads
    // the checkpoints).
    g.fwd = SegmentScanArgs(s, l, lc.xz.data(), lc.xc.data(), lc.dbc.data(), lc.dt.data(),
                            nullptr);
    g.checkpoints = lc.checkpoints.data() + s.checkpoint * N_ * E_;
    g.dy = dy + row * E_;
    g.dxc = dxc + row * E_;
    g.ddt = ddt + row * E_;
    g.dB = ddbc + row * ld_dbc_ + R_;
    g.dC = ddbc + row * ld_dbc_ + R_ + N_;
    g.ld_dbc = ld_dbc_;
    g.dz = dxz + row * 2 * E_ + E_;
    g.ld_dz = 2 * E_;
    g.dA = dA.data();
    g.dD = GL.D.data();
    g.ddt_bias = GL.dt_bias.data();
  }
  be_.SelectiveScanBackward(sb.data(), n_seg);
  // A = -exp(A_log), stored [N, E]; A_log is [E, N]: dA_log = dA·A.
  for (int64_t e = 0; e < E_; ++e) {
    for (int64_t n = 0; n < N_; ++n) GL.A_log[e * N_ + n] += dA[n * E_ + e] * LW.A[n * E_ + e];
  }
  // dt = dt_proj·δ (δ = the first R columns of dbc).
  be_.MatmulBackwardWeight(ddt, M_, E_, lc.dbc.data(), ld_dbc_, E_, R_,
                           GL.dt_proj.f32.data());
  be_.MatmulBackwardInput(ddt, M_, E_, LW.dt_proj.f32.data(), E_, R_, ddbc,
                          ld_dbc_, false);
  // dbc = x_proj·xc.
  be_.MatmulBackwardWeight(ddbc, M_, ld_dbc_, lc.xc.data(), E_, ld_dbc_, E_,
                           GL.x_proj.f32.data());
  be_.MatmulBackwardInput(ddbc, M_, ld_dbc_, LW.x_proj.f32.data(), ld_dbc_, E_,
                          dxc, E_, true);
  // xc = SiLU(conv(ξ) + bias).
  std::vector<ConvBackwardArgs> cb(n_seg);
  for (int64_t i = 0; i < n_seg; ++i) {
    const Segment& s = segments_[i];
    const int64_t row = s.b * T_ + s.t0;
    ConvBackwardArgs& g = cb[i];
    g.T = s.len;
    g.E = E_;
    g.K = K;
    g.xi = lc.xz.data() + row * 2 * E_;
    g.ld_xi = 2 * E_;
    g.w = LW.conv_w.data();
    g.b = LW.conv_b.data();
    g.prev = s.carried ? batch_.initial[s.b]->layers[l].conv.data() : nullptr;
    g.dout = dxc + row * E_;
    g.dxi = dxz + row * 2 * E_;
    g.ld_dxi = 2 * E_;
    g.dw = GL.conv_w.data();
    g.db = GL.conv_b.data();
  }
  be_.ConvSiluBackward(cb.data(), n_seg);
  // xz = in_proj·h; h = RMSNorm(x̄).
  float* dh = Fit(&ws_.dh, M_ * D_);
  be_.MatmulBackwardWeight(dxz, M_, 2 * E_, lc.h.data(), D_, 2 * E_, D_,
                           GL.in_proj.f32.data());
  be_.MatmulBackwardInput(dxz, M_, 2 * E_, LW.in_proj.f32.data(), 2 * E_, D_,
                          dh, D_, false);
  be_.RmsNormBackward(lc.xbar.data(), M_, D_, LW.norm.data(), c_.norm_eps, dh,
                      dxbar, true, GL.norm.data());
  // x̄ = u + reads(a): dx = dx̄ + RMSNorm'(da).
  std::memcpy(dx, dxbar, M_ * D_ * sizeof(float));
  if (!c_.memory_enabled()) return;
  float* da = Fit(&ws_.da, M_ * D_);
  std::fill(da, da + M_ * D_, 0.0f);
  ReadBackward(l, /*cross=*/false, dxbar, da);
  if (LW.has_lay) ReadBackward(l, /*cross=*/true, dxbar, da);
  // Every reader of this layer's notes (itself and later layers) is done.
  NotesBackward(l, da);
  be_.RmsNormBackward(u, M_, D_, LW.note_norm.data(), c_.norm_eps, da, dx, true,
                      GL.note_norm.data());
}

double GradientPass::LossAndHeadBackward(const float* x_last, float* dx, int64_t n_targets) {
  const int64_t V = c_.vocab_size;
  // Target rows: row (b, t) predicts token t + 1.
  std::vector<int64_t> rows;
  std::vector<int32_t> targets;
  for (int64_t b = 0; b < B_; ++b) {
    for (int64_t t = 0; t + 1 < T_; ++t) {
      const int64_t next = b * T_ + t + 1;
      if (batch_.mask && !batch_.mask[next]) continue;
      rows.push_back(b * T_ + t);
      targets.push_back(batch_.tokens[next]);
    }
  }
  const int64_t n = static_cast<int64_t>(rows.size());
  std::vector<float> xr(n * D_), hf(n * D_), dhf(n * D_, 0.0f), dxr(n * D_);
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(&xr[i * D_], x_last + rows[i] * D_, D_ * sizeof(float));
  }
  be_.RmsNorm(xr.data(), n, D_, W_.norm_f.data(), c_.norm_eps, hf.data());
  const Matrix& head = W_.head();
  Matrix& dhead = c_.tie_embeddings ? G_.embedding : G_.lm_head;
  // Logits a block of rows at a time: at most ~4M floats live.
  const int64_t block = std::max<int64_t>(1, std::min<int64_t>(n, (int64_t{1} << 22) / V));
  std::vector<float> logits(block * V);
  double loss_sum = 0.0;
  const float scale = 1.0f / static_cast<float>(n_targets);
  for (int64_t r0 = 0; r0 < n; r0 += block) {
    const int64_t nr = std::min(block, n - r0);
    be_.Matmul(&hf[r0 * D_], nr, D_, Ref(head), logits.data(), V, false);
    be_.SoftmaxCrossEntropy(logits.data(), nr, V, &targets[r0], scale, &loss_sum);
    be_.MatmulBackwardWeight(logits.data(), nr, V, &hf[r0 * D_], D_, V, D_, dhead.f32.data());
    be_.MatmulBackwardInput(logits.data(), nr, V, head.f32.data(), V, D_, &dhf[r0 * D_], D_,
                            false);
  }
  be_.RmsNormBackward(xr.data(), n, D_, W_.norm_f.data(), c_.norm_eps, dhf.data(), dxr.data(),
                      false, G_.norm_f.data());
  std::fill(dx, dx + M_ * D_, 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(dx + rows[i] * D_, &dxr[i * D_], D_ * sizeof(float));
  }
  return loss_sum;
}

absl::Status GradientPass::Run(double* loss_sum, std::vector<int64_t>* kept,
                               std::vector<int64_t>* closed) {
  for (const Matrix* m : {&W_.embedding, &W_.lm_head}) {
    if (m->is_bf16()) return Error(ErrorCode::kUnsupported, "gradients need f32 weights");
  }
  AllocateWeights(c_, &G_);
  // A workspace's notes and caches keep their buffers (every one is
  // overwritten before it is read); their bookkeeping starts afresh.
  notes_.resize(c_.n_layer);
  for (Notes& nt : notes_) {
    nt.nw = 0;
    nt.kept = 0;
    nt.done = false;
    nt.s0.clear();
    nt.versions.clear();
  }
  {
    // Floats of one layer's activations (LayerCache), roughly.
    const double per_layer =
        4.0 * M_ * (4 * D_ + 6 * E_ + ld_dbc_ + 4 * S_) +
        4.0 * (checkpoints_ + static_cast<double>(segments_.size())) * N_ * E_ +
        4.0 * 4 * B_ * (T_ / c_.note_window + 1 + P_) * 2 * S_ * (1 + c_.cross_layer_span);
    keep_all_ = per_layer * c_.n_layer <= keep_bytes_;
    caches_.resize(keep_all_ ? c_.n_layer : 1);
  }
  x_.resize(c_.n_layer + 1);

  // Forward.
  std::vector<float>& x0 = x_[0];
  x0.resize(M_ * D_);
  for (int64_t m = 0; m < M_; ++m) {
    std::memcpy(&x0[m * D_], &W_.embedding.f32[batch_.tokens[m] * D_], D_ * sizeof(float));
  }
  for (int64_t l = 0; l < c_.n_layer; ++l) {
    x_[l + 1].resize(M_ * D_);
    LayerForward(l, x_[l].data(), x_[l + 1].data());
  }
  // Loss, then backward layer by layer.
  std::vector<float> dx(M_ * D_);
  *loss_sum = LossAndHeadBackward(x_[c_.n_layer].data(), dx.data(), n_targets_);
  if (!persistent_) std::vector<float>().swap(x_[c_.n_layer]);
  for (int64_t l = c_.n_layer - 1; l >= 0; --l) {
    LayerBackward(l, x_[l].data(), dx.data());
    if (l > 0 && !persistent_) std::vector<float>().swap(x_[l]);
  }
  for (int64_t m = 0; m < M_; ++m) {
    float* g = &G_.embedding.f32[batch_.tokens[m] * D_];
    for (int64_t d = 0; d < D_; ++d) g[d] += dx[m * D_ + d];
  }

  kept->assign(c_.n_layer, 0);
  closed->assign(c_.n_layer, 0);
  for (int64_t l = 0; l < c_.n_layer; ++l) {
    (*kept)[l] = notes_[l].kept;
    (*closed)[l] = B_ * notes_[l].nw;
  }
  return absl::OkStatus();
}

void GradientPass::Collect(Gradients* grads, bool add) {
  std::vector<ParamRef> params = ListParams(c_, &G_);
  grads->resize(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const ParamRef& p = params[i];
    const float* src =
        p.matrix ? p.matrix->f32.data() : p.vector ? p.vector->data() : p.scalar;
    std::vector<float>& dst = (*grads)[i];
    if (!add) {
      dst.assign(src, src + p.numel());
      continue;
    }
    for (int64_t k = 0; k < p.numel(); ++k) dst[k] += src[k];
  }
}

}  // namespace

absl::Status CheckInitialState(const ModelConfig& c, const StreamState& state) {
  const int64_t E = c.d_inner();
  bool shaped = static_cast<int64_t>(state.layers.size()) == c.n_layer &&
                (!c.memory_enabled() || state.summary_dim == c.summary_dim);
  for (size_t l = 0; shaped && l < state.layers.size(); ++l) {
    const LayerState& L = state.layers[l];
    shaped = static_cast<int64_t>(L.conv.size()) == (c.d_conv - 1) * E &&
             static_cast<int64_t>(L.ssm.size()) == c.d_state * E &&
             static_cast<int64_t>(L.pool.size()) <= c.pool_capacity;
  }
  if (!shaped) {
    return Error(ErrorCode::kInvalidArgument,
                 "an initial state does not have the shapes of the model's configuration");
  }
  if (c.memory_enabled() && state.position % c.note_window != 0) {
    return Errorf(ErrorCode::kInvalidArgument, "an initial state is at position ", state.position,
                  ", inside a note window: training continues a stream only at a multiple of "
                  "note_window (",
                  c.note_window, ")");
  }
  return absl::OkStatus();
}

absl::Status ComputeGradients(const Model& model, const Batch& batch,
                              const GradientOptions& options, BatchStats* stats,
                              Gradients* grads) {
  if (batch.B < 1 || batch.T < 1) {
    return Error(ErrorCode::kInvalidArgument, "a batch needs B >= 1 and T >= 1");
  }
  if (options.group_rows < 0) {
    return Errorf(ErrorCode::kInvalidArgument, "group_rows ", options.group_rows,
                  " must be >= 0");
  }
  for (int64_t b = 0; batch.initial != nullptr && b < batch.B; ++b) {
    if (batch.initial[b] != nullptr) {
      MM_RETURN_IF_ERROR(CheckInitialState(model.config(), *batch.initial[b]));
    }
  }
  const int64_t n_targets = CountTargets(batch);
  if (n_targets == 0) {
    return Error(ErrorCode::kInvalidArgument, "the batch has no target (every loss mask byte "
                                              "at t >= 1 is zero, or seq_len is 1)");
  }
  const int n_layer = static_cast<int>(model.config().n_layer);
  // The groups: runs of whole sequences, fixed by B, T and group_rows alone,
  // so that the sums (and the bits) do not depend on the thread count.
  const int64_t per_group =
      options.group_rows > 0 ? std::max<int64_t>(1, options.group_rows / batch.T) : batch.B;
  const int64_t groups = (batch.B + per_group - 1) / per_group;
  // Each group's pass on its own thread (with the model's threads shared
  // out), or, with one thread or one group, one after another on all of them.
  const bool cpu = std::strcmp(model.backend().name(), "cpu") == 0;
  const int workers = cpu ? static_cast<int>(std::min<int64_t>(model.n_threads(), groups)) : 1;
  const int per_worker = workers > 1 ? std::max(1, model.n_threads() / workers)
                                     : model.n_threads();
  std::vector<std::unique_ptr<Backend>> backends(workers);
  if (workers > 1) {
    for (auto& be : backends) be = CreateCpuBackend(per_worker);
  }
  // One group works in the caller's workspace itself, several in its groups.
  std::vector<std::unique_ptr<GradientWorkspace>> own;
  std::vector<std::unique_ptr<GradientWorkspace>>& ws =
      options.workspace != nullptr ? options.workspace->groups : own;
  std::vector<GradientWorkspace*> part_ws(groups, options.workspace);
  if (groups > 1) {
    if (static_cast<int64_t>(ws.size()) < groups) ws.resize(groups);
    for (int64_t i = 0; i < groups; ++i) {
      if (!ws[i]) ws[i] = std::make_unique<GradientWorkspace>();
      part_ws[i] = ws[i].get();
    }
  }
  std::vector<Batch> parts(groups);
  for (int64_t i = 0; i < groups; ++i) {
    const int64_t b0 = i * per_group, rows = b0 * batch.T;
    Batch& part = parts[i];
    part.tokens = batch.tokens + rows;
    part.B = std::min(per_group, batch.B - b0);
    part.T = batch.T;
    part.mask = batch.mask != nullptr ? batch.mask + rows : nullptr;
    part.initial = batch.initial != nullptr ? batch.initial + b0 : nullptr;
    part.resets = batch.resets != nullptr ? batch.resets + rows : nullptr;
  }
  std::vector<std::unique_ptr<GradientPass>> passes(groups);
  std::vector<double> loss_sums(groups, 0.0);
  std::vector<std::vector<int64_t>> part_kept(groups), part_closed(groups);
  std::vector<absl::Status> status(groups);
  // Worker w runs groups w, w + workers, ...; no exception leaves a thread.
  auto work = [&](int w) {
    for (int64_t i = w; i < groups; i += workers) {
      try {
        Backend& be = workers > 1 ? *backends[w] : model.backend();
        passes[i] = std::make_unique<GradientPass>(model, parts[i], options, part_ws[i], be,
                                                   per_worker, n_targets);
        status[i] = passes[i]->Run(&loss_sums[i], &part_kept[i], &part_closed[i]);
      } catch (const std::bad_alloc&) {
        status[i] = Error(ErrorCode::kOutOfMemory, "out of memory in a gradient pass");
      } catch (...) {
        status[i] = Error(ErrorCode::kInternal, "unexpected failure in a gradient pass");
      }
    }
  };
  // A worker whose thread cannot be started runs on this one, after its own.
  std::vector<std::thread> threads;
  int started = 1;
  try {
    for (; started < workers; ++started) threads.emplace_back(work, started);
  } catch (const std::system_error&) {
  }
  work(0);
  for (int w = started; w < workers; ++w) work(w);
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : status) MM_RETURN_IF_ERROR(s);
  // Sums in group order.
  *stats = BatchStats();
  stats->targets = n_targets;
  std::vector<int64_t> kept(n_layer, 0), closed(n_layer, 0);
  for (int64_t i = 0; i < groups; ++i) {
    stats->loss_sum += loss_sums[i];
    for (int l = 0; l < n_layer; ++l) {
      kept[l] += part_kept[i][l];
      closed[l] += part_closed[i][l];
    }
    passes[i]->Collect(grads, /*add=*/i > 0);
    passes[i].reset();
  }
  stats->keep_fraction.assign(n_layer, 0.0f);
  for (int l = 0; l < n_layer; ++l) {
    stats->keep_fraction[l] =
        closed[l] ? static_cast<float>(kept[l]) / static_cast<float>(closed[l]) : 0.0f;
  }
  return absl::OkStatus();
}

}  // namespace memmamba
