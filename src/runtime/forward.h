// The model's forward pass over B streams × T tokens (DESIGN 2.3, 2.4).
//
// One code path serves every view: a token-at-a-time feed is T = 1, a chunk
// or prefill is T > 1, a batched step of many sessions is B > 1, T = 1.
// Within a layer everything but the scan and the pool bookkeeping is
// position-parallel (matrix products over all B·T rows); pools change once
// per window, so tokens of one window share one pool version.
#ifndef MEMMAMBA_RUNTIME_FORWARD_H_
#define MEMMAMBA_RUNTIME_FORWARD_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "model/model.h"
#include "runtime/state.h"

namespace memmamba {

enum class LogitsMode { kNone = 0, kLast = 1, kAll = 2 };

// The pools one stream's tokens read in one layer during a call: pools[k],
// k < n, after every window of the call before its k-th (DESIGN 2.3 step 1).
// The pools keep their capacity from call to call.
struct Versions {
  std::vector<Pool> pools;
  int64_t n = 0;
};

// Scratch reused across calls (grows only). ReserveForward sizes all of it.
struct Workspace {
  std::vector<float> x, a, h, xz, xc, dbc, dt, y, q, o, c_tok, gate, rows, fold;
  std::vector<std::vector<const float*>> note_lists;  // a read's pool versions' summaries
  std::vector<const float* const*> row_notes;          // per row: its version's list
  std::vector<int64_t> row_m;                          // per row: notes it reads (0: none)
  std::vector<std::vector<Versions>> versions;         // [stream][layer]
  std::vector<ConvArgs> conv_args;
  std::vector<ScanArgs> scan_args;
  // Note taking (one layer of one stream at a time): the windows a call
  // closes, the pool being updated, and blocks of one note set aside for
  // the notes the call may keep.
  std::vector<float> closed_max, closed_score;
  std::vector<int64_t> closed_window;
  Pool pool;
  std::vector<std::shared_ptr<NoteBlock>> spare_notes;
};

// The mixer's conv and scan arguments for stream b of a block of B·T rows
// (DESIGN 2.3 step 4), shared by the runtime and the training pass: xz
// [B·T, 2E] (ξ then z), xc [B·T, E], dbc [B·T, R+2N], dt and y [B·T, E].
ConvArgs MixerConvArgs(const ModelConfig& c, const LayerWeights& lw, int64_t T, int64_t b,
                       const float* xz, float* xc, float* conv_state);
ScanArgs MixerScanArgs(const ModelConfig& c, const LayerWeights& lw, int64_t T, int64_t b,
                       const float* xz, const float* xc, const float* dbc, const float* dt,
                       float* ssm_state, float* y);

// Sizes `ws` for a Forward of `streams` × T tokens: every buffer, pool
// version and note block that Forward may need, and each stream's pools'
// capacity. May throw std::bad_alloc; changes no stream's contents.
void ReserveForward(const Model& model, StreamState* const* streams, int64_t B, int64_t T,
                    Workspace* ws);

// Advances each of `streams[0..B)` by its T tokens (row b·T + t of `tokens`,
// all already validated) and writes logits as `mode` asks: kLast gives row b
// for stream b, kAll row b·T + t. Streams are updated in place. Never fails
// on valid input: it calls ReserveForward first and allocates nothing once
// it has written a stream, so if it throws (std::bad_alloc), every stream is
// as it was and callers may run it on their live state. `hidden`, when not
// NULL, receives the residual stream: n_layer + 1 blocks of [B·T, D], block 0
// the embeddings and block l + 1 the output of layer l (evaluation).
void Forward(const Model& model, StreamState* const* streams, int64_t B, int64_t T,
             const int32_t* tokens, LogitsMode mode, float* logits, Workspace* ws,
             float* hidden = nullptr);

}  // namespace memmamba

#endif  // MEMMAMBA_RUNTIME_FORWARD_H_
