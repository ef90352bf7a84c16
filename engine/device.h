// Device memory and copies: the one place where Tensor storage meets a backend.
#pragma once
#include <cstddef>

#include "engine/tensor.h"

namespace pw {

void* device_alloc(Device d, size_t bytes);
void device_free(Device d, void* p, size_t bytes);
// Copies bytes between any two devices (synchronous with respect to the host).
void device_copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
void device_memset_zero(Device d, void* p, size_t bytes);

// The CPU allocator keeps released blocks of 64 KiB to 64 MiB for reuse (capped by PW_CPU_CACHE_MB,
// default 4096). cpu_cache_release() returns them to the system; cpu_cache_bytes() is what it holds.
void cpu_cache_release();
size_t cpu_cache_bytes();

// Whether the CPU allocator asks for transparent huge pages (blocks of 8 MiB and more), given the value of
// PW_HUGEPAGES (nullptr: unset) and the kernel's THP defrag setting as read from
// /sys/kernel/mm/transparent_hugepage/defrag (nullptr: unreadable): "1"/"0" decide; unset, only where the
// chosen defrag mode ("... [defer] ...") is "defer" or "never", so that no page fault waits for compaction.
bool cpu_huge_pages_wanted(const char* env, const char* defrag);

}  // namespace pw
