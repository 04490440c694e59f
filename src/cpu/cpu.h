/* cpu.h: what the CPU backend's files share.
 *
 * CLONED compiles a function three times, for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 and FMA)
 * and the x86-64 baseline, and the loader picks the version this CPU runs (GCC's
 * target_clones, resolved once per function): the library runs on any x86-64 CPU and at
 * full vector width where it can. The functions that carry it are the loops over data.
 * The versions compute the same bits: -std=c11 keeps GCC from contracting a * b + c into
 * FMA, and float sums are not reordered. A build for one CPU (make ARCH=-march=native)
 * has one version. */
#ifndef GLOW_CPU_H
#define GLOW_CPU_H

#include "backend.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(GLOW_NO_CLONES)
#define CLONED __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONED
#endif

#endif
