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

// When the CPU allocator asks for transparent huge pages for a block of 8 MiB or more, given the value of
// PW_HUGEPAGES (nullptr: unset) and the kernel's THP defrag setting as read from
// /sys/kernel/mm/transparent_hugepage/defrag (nullptr: unreadable, no THP): "1" always, "0" never; unset,
// always where the chosen defrag mode ("... [defer] ...") is "defer" or "never", so that no page fault waits
// for compaction, and in the other modes (faults in advised blocks compact synchronously) only while the
// kernel has free 2 MiB blocks to spare (cpu_huge_pages_spare).
enum class HugePages { never, always, when_free };
HugePages cpu_huge_pages_mode(const char* env, const char* defrag);

// Whether a block of `bytes` may ask for huge pages in the when_free mode: the free blocks of 2 MiB and more
// that /proc/buddyinfo's text lists (orders 9 and up of 4 KiB pages, every zone; nullptr: unreadable) cover
// twice the block plus 1 GiB, so its faults find free huge pages and leave some for others.
bool cpu_huge_pages_spare(size_t bytes, const char* buddyinfo);

}  // namespace pw
