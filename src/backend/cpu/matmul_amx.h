// The AMX path of MatmulBf16 and MatmulF32 (matmul.h) for M > 16: fp32
// activations (and fp32 weights) split exactly into three bf16 parts,
// multiplied by the tile unit's TDPBF16PS into fp32 tiles. The math is at
// the top of matmul_amx.cc; the contracts are MatmulBf16's and MatmulF32's.
//
// Internal to the CPU backend: matmul.cc chooses the path, tests compare it
// with the sgemm path.
#ifndef MEMMAMBA_BACKEND_CPU_MATMUL_AMX_H_
#define MEMMAMBA_BACKEND_CPU_MATMUL_AMX_H_

#include <cstdint>

namespace memmamba::cpu {

// Whether MatmulBf16 and MatmulF32 take the AMX path for M > 16 in this
// process: the path is built, the CPU has AMX-TILE, AMX-BF16, AVX-512F and
// AVX-512BW, the OS enables their state and granted this process the tile
// data (arch_prctl(ARCH_REQ_XCOMP_PERM)), and the environment variable
// MM_CPU_AMX is not "0". Decided on the first call (MM_CPU_AMX is read
// then, once), unless SetAmxBf16ForTesting overrides it. Thread rule: any
// thread.
bool AmxBf16Enabled();

// Whether the machine and the OS allow the AMX path, whatever MM_CPU_AMX
// and the override say (tests skip where this is false).
bool AmxBf16Supported();

// Tests only: false turns the AMX path off for the whole process (as
// MM_CPU_AMX=0 does), true gives it back where AmxBf16Supported() and
// MM_CPU_AMX allow it. Not to be called while products run on other threads.
void SetAmxBf16ForTesting(bool enabled);

// The product of MatmulBf16 on the tile unit, for any M >= 1, N >= 1,
// K >= 1 (meant for M > 16), with MatmulBf16's contract. Only where
// AmxBf16Supported(). Returns false, having written nothing, when its packing
// buffers cannot be allocated.
bool MatmulBf16Amx(const float* x, int64_t M, int64_t K, int64_t ldx,
                   const uint16_t* w_bf16, int64_t N, float* y, int64_t ldy,
                   bool accumulate, int n_threads);

// The same for MatmulF32: W split into three parts as well, six of the nine
// part products kept (matmul_amx.cc), within MatmulF32's bound.
bool MatmulF32Amx(const float* x, int64_t M, int64_t K, int64_t ldx,
                  const float* w, int64_t N, float* y, int64_t ldy,
                  bool accumulate, int n_threads);

}  // namespace memmamba::cpu

#endif  // MEMMAMBA_BACKEND_CPU_MATMUL_AMX_H_
