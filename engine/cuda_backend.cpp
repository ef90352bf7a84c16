// Loading the CUDA plugin (engine/cuda_backend.h) and probing for a GPU.
#include "engine/cuda_backend.h"

#ifdef PW_HAVE_CUDA
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>
#endif

namespace pw {

#ifndef PW_HAVE_CUDA

const CudaStatus& cuda_status() {
  static const CudaStatus s{false, false, "no CUDA GPU is available (this Patchwork was built without CUDA)"};
  return s;
}

#else

namespace {

namespace fs = std::filesystem;

// The folder of the file holding this code: the program, or the shared library the engine is linked
// into (a Python module, say).
fs::path folder_of_engine() {
  Dl_info info{};
  std::error_code ec;
  if (dladdr(reinterpret_cast<void*>(&folder_of_engine), &info) && info.dli_fname && info.dli_fname[0]) {
    fs::path p = fs::canonical(info.dli_fname, ec);
    if (!ec) return p.parent_path();
  }
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : exe.parent_path();
}

// Whether the NVIDIA driver reports a GPU, asked through the driver's own small library: without a
// driver or a device the plugin (and cuDNN, cuBLAS) is never loaded. CUDA_SUCCESS is 0.
bool driver_reports_gpu(std::string& why) {
  void* h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);  // kept loaded: the CUDA runtime uses it
  if (!h) {
    why = "no CUDA GPU is available (no NVIDIA driver: libcuda.so.1 not found)";
    return false;
  }
  auto init = reinterpret_cast<int (*)(unsigned)>(dlsym(h, "cuInit"));
  auto count = reinterpret_cast<int (*)(int*)>(dlsym(h, "cuDeviceGetCount"));
  int n = 0;
  if (!init || !count || init(0) != 0 || count(&n) != 0 || n < 1) {
    why = "no CUDA GPU is available (the NVIDIA driver reports none)";
    return false;
  }
  return true;
}

struct Loaded {
  const CudaBackend* backend = nullptr;
  std::string error;
};

const Loaded& loaded() {
  static const Loaded l = [] {
    Loaded r;
    r.backend = load_cuda_plugin(cuda_plugin_candidates(), r.error);
    return r;
  }();
  return l;
}

}  // namespace

std::vector<std::string> cuda_plugin_candidates() {
  if (const char* env = std::getenv("PW_CUDA_PLUGIN"); env && *env) return {env};
  std::vector<fs::path> dirs;
  const fs::path here = folder_of_engine();
  if (!here.empty()) dirs = {here, here / ".." / "lib", here / ".." / PW_INSTALL_LIBDIR};
  dirs.push_back(PW_INSTALL_FULL_LIBDIR);
  std::vector<std::string> c;
  for (const fs::path& dir : dirs) {
    const std::string p = (dir / kCudaPluginName).lexically_normal().string();
    if (std::find(c.begin(), c.end(), p) == c.end()) c.push_back(p);
  }
  c.push_back(kCudaPluginName);  // the loader's search path (LD_LIBRARY_PATH, the program's RUNPATH)
  return c;
}

const CudaBackend* load_cuda_plugin(const std::vector<std::string>& candidates, std::string& error) {
  std::string path;  // the first existing file; a bare name goes to the loader's search path
  for (const std::string& c : candidates) {
    std::error_code ec;
    if (!fs::path(c).has_parent_path() || fs::is_regular_file(c, ec)) {
      path = c;
      break;
    }
  }
  void* h = path.empty() ? nullptr : dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* why = path.empty() ? nullptr : dlerror();
    if (!why || (!fs::path(path).has_parent_path() && std::strncmp(why, path.c_str(), path.size()) == 0)) {
      error = "the CUDA backend " + std::string(kCudaPluginName) + " was not found (looked for";
      for (const std::string& c : candidates) error += " " + c;
      error += "; set PW_CUDA_PLUGIN to its path)";
    } else {
      error = "the CUDA backend " + path + " cannot be loaded: " + why;
    }
    return nullptr;
  }
  auto entry = reinterpret_cast<CudaBackendEntry>(dlsym(h, kCudaBackendEntry));
  const CudaBackend* b = entry ? entry() : nullptr;
  if (!b || b->size != sizeof(CudaBackend) || std::strcmp(b->op_list, kCudaOpListText) != 0) {
    error = "the CUDA backend " + path + " is not the one of this Patchwork build (reinstall or rebuild it)";
    dlclose(h);
    return nullptr;
  }
  return b;
}

const CudaBackend& cuda_backend() {
  const Loaded& l = loaded();
  if (!l.backend) throw std::runtime_error(l.error);
  return *l.backend;
}

const CudaStatus& cuda_status() {
  static const CudaStatus s = [] {
    CudaStatus r;
    if (!driver_reports_gpu(r.reason)) return r;
    r.driver_gpu = true;
    const Loaded& l = loaded();
    if (!l.backend) {
      r.reason = l.error;
    } else if (!l.backend->runtime.available()) {
      r.reason = "no CUDA GPU is available (the CUDA runtime finds none: cudaGetDeviceCount failed; is the "
                 "driver older than the CUDA runtime?)";
    } else {
      r.available = true;
    }
    return r;
  }();
  return s;
}

#endif  // PW_HAVE_CUDA

}  // namespace pw
