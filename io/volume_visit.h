// Typed access to a Volume's raw bytes: visit_scalar(datatype, f) calls f(T{}) with the C++ type of a
// scalar NIfTI datatype (uint8_t ... double) and returns true, or returns false for RGB24 and the rest.
//
//   visit_scalar(v.datatype, [&](auto zero) { using T = decltype(zero); const T* p = ...; });
#pragma once
#include <cstdint>

#include "io/nifti.h"

namespace pw {

template <class F>
bool visit_scalar(int datatype, F&& f) {
  switch (datatype) {
    case nifti_dt::uint8: f(uint8_t{}); return true;
    case nifti_dt::int8: f(int8_t{}); return true;
    case nifti_dt::int16: f(int16_t{}); return true;
    case nifti_dt::uint16: f(uint16_t{}); return true;
    case nifti_dt::int32: f(int32_t{}); return true;
    case nifti_dt::uint32: f(uint32_t{}); return true;
    case nifti_dt::int64: f(int64_t{}); return true;
    case nifti_dt::uint64: f(uint64_t{}); return true;
    case nifti_dt::float32: f(float{}); return true;
    case nifti_dt::float64: f(double{}); return true;
    default: return false;
  }
}

// The datatype code of a C++ scalar type.
template <class T> constexpr int datatype_of();
template <> constexpr int datatype_of<uint8_t>() { return nifti_dt::uint8; }
template <> constexpr int datatype_of<int8_t>() { return nifti_dt::int8; }
template <> constexpr int datatype_of<int16_t>() { return nifti_dt::int16; }
template <> constexpr int datatype_of<uint16_t>() { return nifti_dt::uint16; }
template <> constexpr int datatype_of<int32_t>() { return nifti_dt::int32; }
template <> constexpr int datatype_of<uint32_t>() { return nifti_dt::uint32; }
template <> constexpr int datatype_of<int64_t>() { return nifti_dt::int64; }
template <> constexpr int datatype_of<uint64_t>() { return nifti_dt::uint64; }
template <> constexpr int datatype_of<float>() { return nifti_dt::float32; }
template <> constexpr int datatype_of<double>() { return nifti_dt::float64; }

}  // namespace pw
