// Tensor: an N-d array (up to 5-D: N,C,(D),H,W), C-order contiguous, on one device,
// sharing its storage between copies (like a shared_ptr). Data types: f32 for values,
// i32 and u8 for labels and indices.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace pw {

enum class DType : uint8_t { f32, i32, u8 };
enum class Device : uint8_t { cpu, cuda };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
const char* device_name(Device d);
// Parses "cpu" or "cuda"; throws std::invalid_argument otherwise.
Device parse_device(const std::string& s);
// True when a CUDA device can be used now (built with CUDA and a GPU is present).
bool cuda_available();
// The device to use when the user gave none: cuda when available, else cpu.
Device default_device();

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

// Raw bytes on one device. CPU memory is 64-byte aligned; CUDA memory comes from the
// backend's caching allocator.
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device = Device::cpu;
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor full(const Shape& shape, float value, Device device = Device::cpu);
  static Tensor from_vector(const Shape& shape, const std::vector<float>& values, Device device = Device::cpu);
  static Tensor empty_like(const Tensor& t) { return empty(t.shape_, t.dtype_, t.device()); }
  static Tensor zeros_like(const Tensor& t) { return zeros(t.shape_, t.dtype_, t.device()); }

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_.at(i < 0 ? i + ndim() : i); }
  // The shape was checked (no negative extent, no overflow) when the tensor was made; numel() only
  // multiplies, since loops call it per element.
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape_) n *= d;
    return n;
  }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::cpu; }
  bool is_cuda() const { return device() == Device::cuda; }

  // Typed pointers; they check the dtype (std::logic_error on a mismatch).
  float* f32();
  const float* f32() const;
  int32_t* i32();
  const int32_t* i32() const;
  uint8_t* u8();
  const uint8_t* u8() const;
  void* raw() { return static_cast<char*>(storage_->data) + offset_bytes_; }
  const void* raw() const { return static_cast<const char*>(storage_->data) + offset_bytes_; }

  // Same storage, new shape with the same element count.
  Tensor reshape(const Shape& shape) const;
  // Rows [begin, end) along dim 0: a view sharing the storage (writes reach the original).
  Tensor rows(int64_t begin, int64_t end) const;
  // Copies src's values into this tensor (same shape and dtype; any two devices).
  void copy_from(const Tensor& src);
  // Deep copies.
  Tensor clone() const;
  Tensor to(Device device) const;  // a copy on `device` (shares storage if already there)
  Tensor cpu() const { return to(Device::cpu); }
  // Host copy of an f32 tensor's values (for tests and small reads).
  std::vector<float> to_vector() const;
  void fill(float value);  // f32 only
  void zero_();            // any dtype

  std::string str() const;  // "f32[2,3,4] cpu"

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_bytes_ = 0;
  Shape shape_;
  DType dtype_ = DType::f32;
};

// Throws std::invalid_argument("<what>: expected shape A, got B") when shapes differ.
void check_same_shape(const Tensor& a, const Tensor& b, const char* what);

// dst += src (same shape, same device, f32). Used by autodiff to accumulate gradients.
void add_inplace(Tensor& dst, const Tensor& src);

}  // namespace pw
