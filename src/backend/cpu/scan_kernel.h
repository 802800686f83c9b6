// The selective scan's inner loop (DESIGN 2.3 step 4) for the CPU backend:
// positions 0..T-1 of one stream for a block of channels,
//   Δ = softplus(dt + bias); s ← exp(Δ·A)·s + Δ·B·ξc; y = (Σ_n s·C + D·ξc)·SiLU(z),
// with the training checkpoints of ScanArgs.
//
// Two builds of the same kernel: the baseline (the library's -march: AVX2 +
// FMA, or scalar) and, on x86-64 where the compiler offers it, one with
// AVX-512F that runs 16 channels per vector. ScanChannels picks the second
// at run time when the CPU has AVX-512F. Every channel is computed by the
// same operations in the same order in both (the vectors only run across
// channels, and the exponential is the same polynomial per lane), so the
// choice never changes a bit: tests/backend/cpu_scan_test.cc checks it.
// A one-position call without checkpoints (a decode step) walks n outermost
// instead (ScanStepFrom in scan_kernel_inl.h): the same bits, with the cold
// state and A rows read in long runs.
#ifndef MEMMAMBA_BACKEND_CPU_SCAN_KERNEL_H_
#define MEMMAMBA_BACKEND_CPU_SCAN_KERNEL_H_

#include <cstdint>

#include "backend/backend.h"

namespace memmamba::cpu {

// Channels [e0, e1) of the stream `a`, every position; chooses the build.
void ScanChannels(const ScanArgs& a, int64_t e0, int64_t e1);

// The baseline build.
void ScanChannelsBaseline(const ScanArgs& a, int64_t e0, int64_t e1);

// Whether the AVX-512F build exists and this CPU runs it.
bool HaveAvx512Scan();
// The AVX-512F build; only where HaveAvx512Scan().
void ScanChannelsAvx512(const ScanArgs& a, int64_t e0, int64_t e1);

}  // namespace memmamba::cpu

#endif  // MEMMAMBA_BACKEND_CPU_SCAN_KERNEL_H_
