/* A stand-in NVIDIA driver library (built as libcuda.so.1) for tests/engine/cuda_not_loaded.sh: it
   reports one GPU to the engine's probe (cuInit, cuDeviceGetCount), so that the CUDA plugin is loaded
   where a GPU is present; the CUDA runtime then finds none (it needs the rest of the driver API). */
int cuInit(unsigned flags) {
  (void)flags;
  return 0;
}
int cuDeviceGetCount(int* count) {
  *count = 1;
  return 0;
}
