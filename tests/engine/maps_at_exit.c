/* LD_PRELOAD helper for tests/engine/cuda_not_loaded.sh: when the process exits, its memory map
   (/proc/self/maps: every library it has loaded, dlopen() included) is copied to $PW_MAPS_OUT. */
#include <stdio.h>
#include <stdlib.h>

__attribute__((destructor)) static void pw_copy_maps_at_exit(void) {
  const char* out_path = getenv("PW_MAPS_OUT");
  if (!out_path) return;
  FILE* in = fopen("/proc/self/maps", "r");
  FILE* out = fopen(out_path, "w");
  if (in && out) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
  }
  if (in) fclose(in);
  if (out) fclose(out);
}
