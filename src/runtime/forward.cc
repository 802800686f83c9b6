// The forward pass of DESIGN 2.3 written once against the backend ops; see
// forward.h for how the views map onto it. Per layer:
//   a = RMSNorm(u; note.norm)                       (all rows)
//   notes: window maxima → score → ŝ → pool versions, one per window
//   c_tok / c_lay = gated pool attention reads       (per token, its window's version)
//   x̄ = u + α_tok ⊙ c_tok + α_lay ⊙ c_lay
//   mixer: in_proj → conv+SiLU → x_proj → dt_proj → scan → out_proj (+x̄)
#include "runtime/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "backend/cpu/bf16.h"
#include "backend/cpu/vec_math.h"

namespace memmamba {
namespace {

using cpu::Sigmoid;

WeightRef Ref(const Matrix& m) {
  WeightRef r;
  r.rows = m.rows;
  r.cols = m.cols;
  if (m.is_bf16()) {
    r.bf16 = m.bf16.data();
  } else {
    r.f32 = m.f32.data();
  }
  return r;
}

float* Buffer(std::vector<float>* v, int64_t n) {
  if (v->size() < static_cast<size_t>(n)) v->resize(n);
  return v->data();
}

// Windows the T tokens from position p0 close.
int64_t ClosedWindows(int64_t p0, int64_t T, int64_t w) { return (p0 + T) / w - p0 / w; }

// Note taking of layer `l` for one stream over its T rows of `a`: updates the
// window accumulator and pool in `state` and writes the pool versions into
// `out`. Allocates nothing: ReserveForward sized every container and set
// aside a note block for each window the call closes.
void TakeNotes(const Model& model, int64_t l, int64_t p0, const float* a, int64_t T,
               LayerState* state, Workspace* ws, Versions* out) {
  const ModelConfig& c = model.config();
  const LayerWeights& LW = model.weights().layers[l];
  const int64_t D = c.d_model, S = c.summary_dim, w = c.note_window;
  Backend& be = model.backend();

  // Pass 1: window maxima and scores of the windows this call closes.
  std::vector<float>& closed_max = ws->closed_max;  // [n_closed, D]
  std::vector<int64_t>& closed_window = ws->closed_window;
  std::vector<float>& closed_score = ws->closed_score;
  closed_max.clear();
  closed_window.clear();
  closed_score.clear();
  float* acc = state->win_max.data();
  for (int64_t t = 0; t < T; ++t) {
    const int64_t p = p0 + t;
    const float* row = a + t * D;
    for (int64_t d = 0; d < D; ++d) acc[d] = std::max(acc[d], row[d]);
    if (p % w == w - 1) {
      closed_score.push_back(NoteScore(acc, D, LW.note_score.data(), LW.note_score_bias));
      closed_window.push_back(p / w);
      closed_max.insert(closed_max.end(), acc, acc + D);
      std::fill(acc, acc + D, -std::numeric_limits<float>::infinity());
    }
  }
  const int64_t n_closed = static_cast<int64_t>(closed_window.size());

  // Pass 2: insert the kept notes in window order, recording the version
  // after each window. Each note's summary is computed one note at a time
  // (M = 1), so it is bit-identical however the stream was chunked.
  out->n = 0;
  out->pools[out->n++] = state->pool;
  if (n_closed == 0) return;  // most one-token steps: the pool stays as it is
  Pool& pool = ws->pool;
  pool = state->pool;
  for (int64_t i = 0; i < n_closed; ++i) {
    if (closed_score[i] > c.note_threshold) {
      std::shared_ptr<NoteBlock> block = std::move(ws->spare_notes.back());
      ws->spare_notes.pop_back();
      PoolEntry& entry = block->entries[0];
      entry.window = closed_window[i];
      entry.score = closed_score[i];
      float* summary = block->summaries.get();
      be.Matmul(&closed_max[i * D], 1, D, Ref(LW.note_summary), summary, S, false);
      for (int64_t s = 0; s < S; ++s) summary[s] *= entry.score;
      InsertNote(c.pool_policy, c.pool_capacity, ShareNote(block, 0), &pool);
    }
    out->pools[out->n++] = pool;
  }
  // Both vectors hold the capacity of a full pool: swapping keeps it so.
  std::swap(state->pool, pool);
  pool.clear();
}

// Lets go of the notes a call's versions hold, keeping their capacity.
void ReleaseVersions(Versions* v) {
  for (int64_t k = 0; k < v->n; ++k) v->pools[k].clear();
  v->n = 0;
}

// One pool read (DESIGN 2.3 steps 1-2) of layer `l` for all rows: writes
// c [M, D] = (active ? γ · o_proj·attention : 0), then adds α ⊙ c into x.
// The attention reads the notes' summaries with the key and value
// projections folded in (Backend::PoolAttendFolded).
void ReadAndFuse(const Model& model, int64_t l, bool cross, StreamState* const* streams,
                 int64_t B, int64_t T, const float* a, float* x, Workspace* ws) {
  const ModelConfig& c = model.config();
  const ReadWeights& rw = cross ? model.weights().layers[l].lay : model.weights().layers[l].tok;
  const int64_t M = B * T, D = c.d_model, S = c.summary_dim, H = c.attn_heads,
                w = c.note_window;
  Backend& be = model.backend();
  float* q = ws->q.data();
  float* o = ws->o.data();
  float* cbuf = ws->c_tok.data();
  float* gate = ws->gate.data();
  // A single row takes PoolReadRow once its gate is known (no product for a
  // closed gate); several rows take the three ops in turn.
  const bool one_row = M == 1;
  if (!one_row) be.Matmul(a, M, D, Ref(rw.q), q, S, false);
  const int64_t src_begin = cross ? c.CrossLayerBegin(l) : l;
  const int64_t src_end = cross ? l : l + 1;
  // The summaries each pool version offers, gathered once per version; then
  // per row the list it reads, or none where the read is skipped. Every
  // container was sized by ReserveForward.
  const std::vector<std::vector<Versions>>& versions = ws->versions;
  std::vector<std::vector<const float*>>& lists = ws->note_lists;
  std::vector<const float* const*>& row_notes = ws->row_notes;
  std::vector<int64_t>& row_m = ws->row_m;
  row_notes.assign(M, nullptr);
  row_m.assign(M, 0);
  size_t n_lists = 0;
  bool any_active = false;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t p0 = streams[b]->position;
    int64_t built = -1;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t row = b * T + t;
      const int64_t version = (p0 + t) / w - p0 / w;
      if (version != built) {
        std::vector<const float*>& list = lists[n_lists++];
        list.clear();
        for (int64_t src = src_begin; src < src_end; ++src) {
          for (const PoolEntryPtr& e : versions[b][src].pools[version]) {
            list.push_back(e->summary);
          }
        }
        built = version;
      }
      const std::vector<const float*>& list = lists[n_lists - 1];
      const float* ar = a + row * D;
      float g = rw.gate_bias;
      for (int64_t d = 0; d < D; ++d) g += rw.gate[d] * ar[d];
      g = Sigmoid(g);
      const bool active = !list.empty() && g > c.gate_threshold;
      gate[row] = active ? g : 0.0f;
      if (!active) continue;
      any_active = true;
      row_notes[row] = list.data();
      row_m[row] = static_cast<int64_t>(list.size());
    }
  }
  if (!any_active) return;  // c = 0 everywhere: x̄ = u
  if (one_row) {
    be.PoolReadRow(a, D, Ref(rw.q), row_notes[0], row_m[0], rw.k_f32(), rw.v_f32(), S, H,
                   Ref(rw.o), q, o, cbuf, ws->fold.data());
  } else {
    std::fill(o, o + M * S, 0.0f);
    be.PoolAttendFolded(M, q, row_notes.data(), row_m.data(), rw.k_f32(), rw.v_f32(), S, H, o,
                        ws->fold.data());
    be.Matmul(o, M, S, Ref(rw.o), cbuf, D, false);
  }
  for (int64_t row = 0; row < M; ++row) {
    const float g = gate[row];
    if (g == 0.0f) continue;
    float* xr = x + row * D;
    const float* cr = cbuf + row * D;
    const float* ar = a + row * D;
    switch (c.fusion) {
      case Fusion::kWeighted:
        for (int64_t d = 0; d < D; ++d) xr[d] += rw.alpha[d] * (g * cr[d]);
        break;
      case Fusion::kResidual:
        for (int64_t d = 0; d < D; ++d) xr[d] += g * cr[d];
        break;
      case Fusion::kGated:
        for (int64_t d = 0; d < D; ++d) xr[d] += Sigmoid(rw.fuse[d] * ar[d]) * (g * cr[d]);
        break;
    }
  }
}

}  // namespace

ConvArgs MixerConvArgs(const ModelConfig& c, const LayerWeights& lw, int64_t T, int64_t b,
                       const float* xz, float* xc, float* conv_state) {
  const int64_t E = c.d_inner();
  ConvArgs ca;
  ca.T = T;
  ca.E = E;
  ca.K = c.d_conv;
  ca.xi = xz + b * T * 2 * E;
  ca.ld_xi = 2 * E;
  ca.w = lw.conv_w.data();
  ca.b = lw.conv_b.data();
  ca.state = conv_state;
  ca.out = xc + b * T * E;
  return ca;
}

ScanArgs MixerScanArgs(const ModelConfig& c, const LayerWeights& lw, int64_t T, int64_t b,
                       const float* xz, const float* xc, const float* dbc, const float* dt,
                       float* ssm_state, float* y) {
  const int64_t E = c.d_inner(), N = c.d_state, R = c.dt_rank, ld_dbc = R + 2 * N;
  ScanArgs sa;
  sa.T = T;
  sa.E = E;
  sa.N = N;
  sa.xc = xc + b * T * E;
  sa.dt = dt + b * T * E;
  sa.dt_bias = lw.dt_bias.data();
  sa.A = lw.A.data();
  sa.B = dbc + b * T * ld_dbc + R;
  sa.C = dbc + b * T * ld_dbc + R + N;
  sa.ld_bc = ld_dbc;
  sa.D = lw.D.data();
  sa.z = xz + b * T * 2 * E + E;
  sa.ld_z = 2 * E;
  sa.state = ssm_state;
  sa.y = y == nullptr ? nullptr : y + b * T * E;
  return sa;
}

void ReserveForward(const Model& model, StreamState* const* streams, int64_t B, int64_t T,
                    Workspace* ws) {
  const ModelConfig& c = model.config();
  const int64_t M = B * T, D = c.d_model, E = c.d_inner(), N = c.d_state, R = c.dt_rank,
                S = c.summary_dim, L = c.n_layer;
  Buffer(&ws->x, M * D);
  Buffer(&ws->a, M * D);
  Buffer(&ws->h, M * D);
  Buffer(&ws->xz, M * 2 * E);
  Buffer(&ws->xc, M * E);
  Buffer(&ws->dbc, M * (R + 2 * N));
  Buffer(&ws->dt, M * E);
  Buffer(&ws->y, M * E);
  Buffer(&ws->rows, B * D);
  if (model.weights().layers[0].in_proj.is_bf16()) {
    model.backend().ReserveBf16Products(std::max({D, E, S}));  // K of every product: D, E, S, R
  }
  if (ws->conv_args.size() < static_cast<size_t>(B)) ws->conv_args.resize(B);
  if (ws->scan_args.size() < static_cast<size_t>(B)) ws->scan_args.resize(B);
  if (!c.memory_enabled()) return;

  const int64_t P = c.pool_capacity, w = c.note_window;
  // The most notes one read lists: a pool per source layer it reads.
  int64_t max_sources = 1;
  for (int64_t l = 0; l < L; ++l) {
    if (model.weights().layers[l].has_lay) {
      max_sources = std::max(max_sources, l - c.CrossLayerBegin(l));
    }
  }
  int64_t versions = 0, max_closed = 0, notes = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t closed = ClosedWindows(streams[b]->position, T, w);
    versions += closed + 1;
    max_closed = std::max(max_closed, closed);
    notes += closed * L;
  }
  Buffer(&ws->q, M * S);
  Buffer(&ws->o, M * S);
  Buffer(&ws->c_tok, M * D);
  Buffer(&ws->gate, M);
  Buffer(&ws->fold, model.backend().PoolAttendFoldedScratch(P * max_sources, S, c.attn_heads));
  if (ws->versions.size() < static_cast<size_t>(B)) ws->versions.resize(B);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<Versions>& per_layer = ws->versions[b];
    if (per_layer.size() < static_cast<size_t>(L)) per_layer.resize(L);
    const size_t n = static_cast<size_t>(max_closed + 1);
    for (Versions& v : per_layer) {
      if (v.pools.size() < n) v.pools.resize(n);
      // Only the first n are used; later ones kept their capacity already.
      for (size_t k = 0; k < n; ++k) v.pools[k].reserve(P);
    }
    for (LayerState& layer : streams[b]->layers) layer.pool.reserve(P);
  }
  // A read builds at most one list per stream and version: the first
  // `versions` (the workspace may hold more from a longer call).
  if (ws->note_lists.size() < static_cast<size_t>(versions)) ws->note_lists.resize(versions);
  for (int64_t k = 0; k < versions; ++k) ws->note_lists[k].reserve(P * max_sources);
  ws->row_notes.reserve(M);
  ws->row_m.reserve(M);
  ws->closed_max.reserve(max_closed * D);
  ws->closed_score.reserve(max_closed);
  ws->closed_window.reserve(max_closed);
  ws->pool.reserve(P);
  ws->spare_notes.reserve(notes);
  while (ws->spare_notes.size() < static_cast<size_t>(notes)) {
    ws->spare_notes.push_back(MakeNoteBlock(1, S));
  }
}

void Forward(const Model& model, StreamState* const* streams, int64_t B, int64_t T,
             const int32_t* tokens, LogitsMode mode, float* logits, Workspace* ws,
             float* hidden) {
  const ModelConfig& c = model.config();
  const ModelWeights& W = model.weights();
  Backend& be = model.backend();
  const int64_t M = B * T, D = c.d_model, E = c.d_inner(), N = c.d_state, R = c.dt_rank,
                V = c.vocab_size;
  const int64_t ld_dbc = R + 2 * N;
  if (M == 0) return;

  // Everything that can fail happens here, before any stream is written.
  ReserveForward(model, streams, B, T, ws);
  float* x = ws->x.data();
  float* a = ws->a.data();
  float* h = ws->h.data();
  float* xz = ws->xz.data();
  float* xc = ws->xc.data();
  float* dbc = ws->dbc.data();
  float* dt = ws->dt.data();
  float* y = ws->y.data();

  // Embedding rows.
  for (int64_t m = 0; m < M; ++m) {
    const int64_t tok = tokens[m];
    if (W.embedding.is_bf16()) {
      cpu::ConvertBf16ToF32(&W.embedding.bf16[tok * D], x + m * D, D);
    } else {
      std::memcpy(x + m * D, &W.embedding.f32[tok * D], D * sizeof(float));
    }
  }

  // Pool versions per stream and layer, kept for the cross-layer readers.
  std::vector<std::vector<Versions>>& versions = ws->versions;
  ConvArgs* conv_args = ws->conv_args.data();
  ScanArgs* scan_args = ws->scan_args.data();

  if (hidden) std::memcpy(hidden, x, M * D * sizeof(float));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerWeights& LW = W.layers[l];
    if (c.memory_enabled()) {
      be.RmsNorm(x, M, D, LW.note_norm.data(), c.norm_eps, a);
      for (int64_t b = 0; b < B; ++b) {
        TakeNotes(model, l, streams[b]->position, a + b * T * D, T, &streams[b]->layers[l], ws,
                  &versions[b][l]);
      }
      // Both reads see u (through a) and add into x: x̄ = u + α_tok c_tok + α_lay c_lay.
      ReadAndFuse(model, l, /*cross=*/false, streams, B, T, a, x, ws);
      if (LW.has_lay) ReadAndFuse(model, l, /*cross=*/true, streams, B, T, a, x, ws);
      // Sources no later reader needs can be let go now.
      for (int64_t b = 0; b < B; ++b) {
        if (model.readers(l).size() == 1) ReleaseVersions(&versions[b][l]);
      }
    }

    // Mamba mixer on x̄ (DESIGN 2.3 step 4); the output is added into x.
    be.RmsNorm(x, M, D, LW.norm.data(), c.norm_eps, h);
    be.Matmul(h, M, D, Ref(LW.in_proj), xz, 2 * E, false);
    for (int64_t b = 0; b < B; ++b) {
      conv_args[b] = MixerConvArgs(c, LW, T, b, xz, xc, streams[b]->layers[l].conv.data());
    }
    for (int64_t b = 0; b < B; ++b) {
      scan_args[b] = MixerScanArgs(c, LW, T, b, xz, xc, dbc, dt,
                                   streams[b]->layers[l].ssm.data(), y);
    }
    if (M == 1) {  // one pass for a one-token step
      be.MixerStep(conv_args[0], Ref(LW.x_proj), dbc, Ref(LW.dt_proj), dt, scan_args[0]);
    } else {
      be.ConvSilu(conv_args, B);
      be.Matmul(xc, M, E, Ref(LW.x_proj), dbc, ld_dbc, false);
      be.Matmul(dbc, M, ld_dbc, Ref(LW.dt_proj), dt, E, false);
      be.SelectiveScan(scan_args, B);
    }
    be.Matmul(y, M, E, Ref(LW.out_proj), x, D, true);
    if (hidden) std::memcpy(hidden + (l + 1) * M * D, x, M * D * sizeof(float));
  }

  for (int64_t b = 0; b < B; ++b) {
    streams[b]->position += T;
    if (c.memory_enabled()) {
      for (Versions& v : versions[b]) ReleaseVersions(&v);
    }
  }

  // Logits: lm_head · RMSNorm(x_L; norm_f) for the rows asked for.
  if (mode == LogitsMode::kNone) return;
  if (mode == LogitsMode::kAll) {
    be.RmsNorm(x, M, D, W.norm_f.data(), c.norm_eps, h);
    be.Matmul(h, M, D, Ref(W.head()), logits, V, false);
    return;
  }
  float* rows = ws->rows.data();
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(rows + b * D, x + (b * T + T - 1) * D, D * sizeof(float));
  }
  be.RmsNorm(rows, B, D, W.norm_f.data(), c.norm_eps, h);
  be.Matmul(h, B, D, Ref(W.head()), logits, V, false);
}

}  // namespace memmamba
