#include "engine/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "engine/cuda_backend.h"
#include "engine/device.h"

namespace pw {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::i32: return 4;
    case DType::u8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::i32: return "i32";
    case DType::u8: return "u8";
  }
  return "?";
}

const char* device_name(Device d) { return d == Device::cuda ? "cuda" : "cpu"; }

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::cpu;
  if (s == "cuda") return Device::cuda;
  throw std::invalid_argument("unknown device '" + s + "' (expected cpu or cuda)");
}

bool cuda_available() { return cuda_status().available; }

Device default_device() { return cuda_available() ? Device::cuda : Device::cpu; }

std::string shape_str(const Shape& s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? "," : "") << s[i];
  o << "]";
  return o.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) throw std::invalid_argument("negative dimension in shape " + shape_str(s));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      throw std::invalid_argument("shape " + shape_str(s) + " overflows");
    n *= d;
  }
  return n;
}

Storage::Storage(size_t b, Device d) : bytes(b), device(d) { data = device_alloc(d, b); }
Storage::~Storage() { device_free(device, data, bytes); }

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

Tensor Tensor::full(const Shape& shape, float value, Device device) {
  Tensor t = empty(shape, DType::f32, Device::cpu);
  t.fill(value);
  return t.to(device);
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values, Device device) {
  if (static_cast<int64_t>(values.size()) != shape_numel(shape))
    throw std::invalid_argument("from_vector: " + std::to_string(values.size()) + " values for shape " +
                                shape_str(shape));
  Tensor t = empty(shape, DType::f32, Device::cpu);
  if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * sizeof(float));
  return t.to(device);
}

namespace {
void check_dtype(const Tensor& t, DType want) {
  if (!t.defined()) throw std::logic_error("tensor is undefined");
  if (t.dtype() != want)
    throw std::logic_error(std::string("tensor has dtype ") + dtype_name(t.dtype()) + ", expected " +
                           dtype_name(want));
}
}  // namespace

float* Tensor::f32() { check_dtype(*this, DType::f32); return static_cast<float*>(raw()); }
const float* Tensor::f32() const { check_dtype(*this, DType::f32); return static_cast<const float*>(raw()); }
int32_t* Tensor::i32() { check_dtype(*this, DType::i32); return static_cast<int32_t*>(raw()); }
const int32_t* Tensor::i32() const { check_dtype(*this, DType::i32); return static_cast<const int32_t*>(raw()); }
uint8_t* Tensor::u8() { check_dtype(*this, DType::u8); return static_cast<uint8_t*>(raw()); }
const uint8_t* Tensor::u8() const { check_dtype(*this, DType::u8); return static_cast<const uint8_t*>(raw()); }

Tensor Tensor::reshape(const Shape& shape) const {
  if (shape_numel(shape) != numel())
    throw std::invalid_argument("reshape: cannot view " + shape_str(shape_) + " as " + shape_str(shape));
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  if (ndim() < 1 || begin < 0 || end < begin || end > dim(0))
    throw std::invalid_argument("rows: [" + std::to_string(begin) + ", " + std::to_string(end) +
                                ") is not a row range of " + str());
  Tensor t = *this;
  t.shape_[0] = end - begin;
  t.offset_bytes_ += static_cast<size_t>(begin) * static_cast<size_t>(numel() / std::max<int64_t>(1, dim(0))) *
                     dtype_size(dtype_);
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  if (src.shape() != shape_ || src.dtype() != dtype_)
    throw std::invalid_argument("copy_from: " + src.str() + " does not match " + str());
  device_copy(raw(), device(), src.raw(), src.device(), nbytes());
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device());
  device_copy(t.raw(), t.device(), raw(), device(), nbytes());
  return t;
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor t = empty(shape_, dtype_, d);
  device_copy(t.raw(), d, raw(), device(), nbytes());
  return t;
}

std::vector<float> Tensor::to_vector() const {
  Tensor c = cpu();
  const float* p = c.f32();
  return std::vector<float>(p, p + numel());
}

void Tensor::fill(float value) {
  if (is_cuda()) {
    Tensor h = full(shape_, value, Device::cpu);
    device_copy(raw(), device(), h.raw(), Device::cpu, nbytes());
    return;
  }
  float* p = f32();
  for (int64_t i = 0, n = numel(); i < n; ++i) p[i] = value;
}

void Tensor::zero_() { device_memset_zero(device(), raw(), nbytes()); }

std::string Tensor::str() const {
  return std::string(dtype_name(dtype_)) + shape_str(shape_) + " " + device_name(device());
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* what) {
  if (a.shape() != b.shape())
    throw std::invalid_argument(std::string(what) + ": expected shape " + shape_str(a.shape()) + ", got " +
                                shape_str(b.shape()));
}

void add_inplace(Tensor& dst, const Tensor& src) {
  check_same_shape(dst, src, "add_inplace");
  if (dst.device() != src.device()) throw std::invalid_argument("add_inplace: tensors on different devices");
#ifdef PW_HAVE_CUDA
  if (dst.is_cuda()) {
    PW_CUDA_KERNEL(add, dst.f32(), src.f32(), dst.f32(), dst.numel());
    return;
  }
#endif
  float* d = dst.f32();
  const float* s = src.f32();
  for (int64_t i = 0, n = dst.numel(); i < n; ++i) d[i] += s[i];
}

}  // namespace pw
