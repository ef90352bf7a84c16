// Which inner loops the CPU kernels take on this processor: chosen once per process, at run time,
// here and nowhere else (compile flags only say which instructions exist; whether they are fast
// depends on the CPU that runs the binary).
//
//   gather loads: the trilinear patch gather (float source) reads the two x-neighbours of each corner
//     row as one 64-bit element. AVX2/AVX-512 vector gathers of them are fast on Intel (Skylake and
//     later) but micro-coded on AMD Zen, where one scalar 64-bit load per pair is faster (Zen 4: 15 vs
//     18 ms per 64 patches of 32^3 on one core). Both give identical results. (Nearest gathers keep
//     the vector gathers on every CPU: on Zen 4 they were as fast as scalar loads or faster.)
//
//   conv path: the specialised convolution kernels where they apply, unless PW_CONV=direct:
//     - 3x3x3 stride-1 convolutions by Winograd F(2x2x2, 3x3x3) where it pays (kernels/cpu/conv_winograd.h,
//       `suits`: planes of >= 16 output tiles, channels that pad little to the SIMD width; ~3.4x fewer
//       multiplications, results within float rounding of the direct loops);
//     - k2 s2 convolutions and transposed convolutions on their source in place, by pairs of taps
//       (kernels/cpu/conv_k2s2.h: no phase-split copy; the same products, summed in another order).
//     `direct` runs every convolution on the direct loops over phase-split copies (conv.cpp).
//
//   tile prefetch: a strided convolution's work item (conv.cpp, Source) splits its source planes into an
//     L2-sized copy (512 KB) and, while it computes, prefetches the source lines of the next item. That
//     pays where L2 holds both (1 MB and more: Zen 4 k3 s2 16->16 forward 3.75 -> 3.45 ms); with a 512 KB
//     L2 the prefetched lines evict the copy being read (Zen 2, k3 s2 16->16, 6 alternating rounds:
//     forward 5.73 ms with, 5.43 without; forward + both gradients 18.95 with, 17.9 without).
//
//   nearest prefetch rows: the nearest gather's strips (gather.cpp) prefetch the source lines of the groups
//     two planes ahead for every other row of patch voxels at most a voxel and a quarter apart (Zen 4, 2
//     threads: 1.50 -> 1.33 ms against every row) or for every row (Zen 2: 2.35 -> 2.16 ms with huge
//     pages, 2.63 -> 2.34 without, against every other row). The two measured CPUs differ in their L2 (1 MB
//     and 512 KB per core), so the choice goes with tile prefetch's L2 test (other CPUs: unmeasured).
//     Both give identical results.
#pragma once
#include <string>

namespace pw::kernels::cpu {

enum class GatherLoads { vector, scalar };

// The path of this process: PW_GATHER_LOADS=vector|scalar if set, otherwise by the CPU vendor
// (AMD and Hygon: scalar; others: vector); always scalar in a build without AVX2 gathers.
GatherLoads gather_loads();
// Forces a path (tests run both paths on any machine; benchmarks compare them).
void set_gather_loads(GatherLoads path);
enum class ConvPath { direct, special };

// PW_CONV=direct|special (any other value: special), otherwise special (on every CPU: its kernels do
// fewer flops or fewer copies, not other instructions).
ConvPath conv_path();
// Forces a path (tests compare both; benchmarks time both).
void set_conv_path(ConvPath path);

// PW_TILE_PREFETCH=0|1 if set, otherwise whether this CPU's L2 per core (sysconf) is at least 1 MB
// (unknown: yes).
bool tile_prefetch();

// PW_NEAREST_PREFETCH=all|half if set (all rows, every other row), otherwise by the same L2 test as
// tile_prefetch (L2 of 1 MB and more: half).
bool nearest_prefetch_all_rows();

// One line naming the CPU (vendor, family, model name) and the paths chosen, for logs and benchmarks.
std::string cpu_paths_description();

}  // namespace pw::kernels::cpu
