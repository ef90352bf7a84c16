#include "io/nifti_header.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace pw::nifti_detail {

namespace {

// A fixed-size char field up to its first NUL.
std::string load_string(const uint8_t* p, size_t n) {
  size_t len = 0;
  while (len < n && p[len] != 0) ++len;
  return std::string(reinterpret_cast<const char*>(p), len);
}

template <class T>
void store(std::vector<uint8_t>& h, size_t off, T x) {
  std::memcpy(h.data() + off, &x, sizeof(T));
}

void store_string(std::vector<uint8_t>& h, size_t off, size_t n, const std::string& s) {
  std::memcpy(h.data() + off, s.data(), std::min(s.size(), n - 1));  // always NUL-terminated
}

// Byte offsets of the NIfTI-1 fields (nifti1.h).
namespace n1 {
constexpr size_t dim_info = 39, dim = 40, intent_p1 = 56, intent_code = 68, datatype = 70, bitpix = 72,
                 slice_start = 74, pixdim = 76, vox_offset = 108, scl_slope = 112, scl_inter = 116,
                 slice_end = 120, slice_code = 122, xyzt_units = 123, cal_max = 124, cal_min = 128,
                 slice_duration = 132, toffset = 136, descrip = 148, aux_file = 228, qform_code = 252,
                 sform_code = 254, quatern_b = 256, srow_x = 280, intent_name = 328, magic = 344;
}
// Byte offsets of the NIfTI-2 fields (nifti2.h).
namespace n2 {
constexpr size_t magic = 4, datatype = 12, bitpix = 14, dim = 16, intent_p1 = 80, pixdim = 104, vox_offset = 168,
                 scl_slope = 176, scl_inter = 184, cal_max = 192, cal_min = 200, slice_duration = 208,
                 toffset = 216, slice_start = 224, slice_end = 232, descrip = 240, aux_file = 320,
                 qform_code = 344, sform_code = 348, quatern_b = 352, srow_x = 400, slice_code = 496,
                 xyzt_units = 500, intent_code = 504, intent_name = 508, dim_info = 524;
}

}  // namespace

void swap_bytes(uint8_t* data, size_t n, int size) {
  if (size == 2) {
    for (size_t i = 0; i < n; ++i) std::swap(data[2 * i], data[2 * i + 1]);
  } else if (size == 4) {
    for (size_t i = 0; i < n; ++i) {
      uint8_t* p = data + 4 * i;
      std::swap(p[0], p[3]);
      std::swap(p[1], p[2]);
    }
  } else if (size == 8) {
    for (size_t i = 0; i < n; ++i) std::reverse(data + 8 * i, data + 8 * i + 8);
  }
}

void decode_header(const uint8_t* h, int version, bool sw, NiftiHeader& v, RawHeader& raw) {
  raw.version = version;
  raw.swapped = sw;
  v.version = version;
  if (version == 1) {
    using namespace n1;
    std::memcpy(raw.magic, h + magic, 4);
    for (int i = 0; i < 8; ++i) raw.dim[i] = load<int16_t>(h + dim + 2 * i, sw);
    raw.vox_offset = load<float>(h + vox_offset, sw);
    v.dim_info = h[dim_info];
    for (int i = 0; i < 3; ++i) v.intent_p[i] = load<float>(h + intent_p1 + 4 * i, sw);
    v.intent_code = load<int16_t>(h + intent_code, sw);
    v.datatype = load<int16_t>(h + datatype, sw);
    v.bitpix = load<int16_t>(h + bitpix, sw);
    v.slice_start = load<int16_t>(h + slice_start, sw);
    for (int i = 0; i < 8; ++i) v.pixdim[i] = load<float>(h + pixdim + 4 * i, sw);
    v.scl_slope = load<float>(h + scl_slope, sw);
    v.scl_inter = load<float>(h + scl_inter, sw);
    v.slice_end = load<int16_t>(h + slice_end, sw);
    v.slice_code = h[slice_code];
    v.xyzt_units = h[xyzt_units];
    v.cal_max = load<float>(h + cal_max, sw);
    v.cal_min = load<float>(h + cal_min, sw);
    v.slice_duration = load<float>(h + slice_duration, sw);
    v.toffset = load<float>(h + toffset, sw);
    v.descrip = load_string(h + descrip, 80);
    v.aux_file = load_string(h + aux_file, 24);
    v.qform_code = load<int16_t>(h + qform_code, sw);
    v.sform_code = load<int16_t>(h + sform_code, sw);
    double q[6];
    for (int i = 0; i < 6; ++i) q[i] = load<float>(h + quatern_b + 4 * i, sw);
    v.quatern_b = q[0], v.quatern_c = q[1], v.quatern_d = q[2];
    v.qoffset_x = q[3], v.qoffset_y = q[4], v.qoffset_z = q[5];
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) v.srow[r][c] = load<float>(h + srow_x + 16 * r + 4 * c, sw);
    v.intent_name = load_string(h + intent_name, 16);
  } else {
    using namespace n2;
    std::memcpy(raw.magic, h + magic, 4);
    for (int i = 0; i < 8; ++i) raw.dim[i] = load<int64_t>(h + dim + 8 * i, sw);
    raw.vox_offset = static_cast<double>(load<int64_t>(h + vox_offset, sw));
    v.datatype = load<int16_t>(h + datatype, sw);
    v.bitpix = load<int16_t>(h + bitpix, sw);
    for (int i = 0; i < 3; ++i) v.intent_p[i] = load<double>(h + intent_p1 + 8 * i, sw);
    for (int i = 0; i < 8; ++i) v.pixdim[i] = load<double>(h + pixdim + 8 * i, sw);
    v.scl_slope = load<double>(h + scl_slope, sw);
    v.scl_inter = load<double>(h + scl_inter, sw);
    v.cal_max = load<double>(h + cal_max, sw);
    v.cal_min = load<double>(h + cal_min, sw);
    v.slice_duration = load<double>(h + slice_duration, sw);
    v.toffset = load<double>(h + toffset, sw);
    v.slice_start = load<int64_t>(h + slice_start, sw);
    v.slice_end = load<int64_t>(h + slice_end, sw);
    v.descrip = load_string(h + descrip, 80);
    v.aux_file = load_string(h + aux_file, 24);
    v.qform_code = load<int32_t>(h + qform_code, sw);
    v.sform_code = load<int32_t>(h + sform_code, sw);
    double q[6];
    for (int i = 0; i < 6; ++i) q[i] = load<double>(h + quatern_b + 8 * i, sw);
    v.quatern_b = q[0], v.quatern_c = q[1], v.quatern_d = q[2];
    v.qoffset_x = q[3], v.qoffset_y = q[4], v.qoffset_z = q[5];
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) v.srow[r][c] = load<double>(h + srow_x + 32 * r + 8 * c, sw);
    v.slice_code = load<int32_t>(h + slice_code, sw);
    v.xyzt_units = load<int32_t>(h + xyzt_units, sw);
    v.intent_code = load<int32_t>(h + intent_code, sw);
    v.intent_name = load_string(h + intent_name, 16);
    v.dim_info = h[dim_info];
  }
}

std::vector<uint8_t> encode_header(const NiftiHeader& v, int version, int64_t vox_offset) {
  std::array<int64_t, 8> dims{v.ndim, 1, 1, 1, 1, 1, 1, 1};
  for (int i = 0; i < 7; ++i) dims[i + 1] = v.dims[i];
  const int16_t nbits = static_cast<int16_t>(8 * nifti_datatype_size(v.datatype));
  if (version == 1) {
    using namespace n1;
    std::vector<uint8_t> h(kN1HeaderSize, 0);
    store<int32_t>(h, 0, static_cast<int32_t>(kN1HeaderSize));
    h[dim_info] = static_cast<uint8_t>(v.dim_info);
    for (int i = 0; i < 8; ++i) store<int16_t>(h, dim + 2 * i, static_cast<int16_t>(dims[i]));
    for (int i = 0; i < 3; ++i) store<float>(h, intent_p1 + 4 * i, static_cast<float>(v.intent_p[i]));
    store<int16_t>(h, intent_code, static_cast<int16_t>(v.intent_code));
    store<int16_t>(h, datatype, static_cast<int16_t>(v.datatype));
    store<int16_t>(h, bitpix, nbits);
    store<int16_t>(h, slice_start, static_cast<int16_t>(v.slice_start));
    for (int i = 0; i < 8; ++i) store<float>(h, pixdim + 4 * i, static_cast<float>(v.pixdim[i]));
    store<float>(h, n1::vox_offset, static_cast<float>(vox_offset));
    store<float>(h, scl_slope, static_cast<float>(v.scl_slope));
    store<float>(h, scl_inter, static_cast<float>(v.scl_inter));
    store<int16_t>(h, slice_end, static_cast<int16_t>(v.slice_end));
    h[slice_code] = static_cast<uint8_t>(v.slice_code);
    h[xyzt_units] = static_cast<uint8_t>(v.xyzt_units);
    store<float>(h, cal_max, static_cast<float>(v.cal_max));
    store<float>(h, cal_min, static_cast<float>(v.cal_min));
    store<float>(h, slice_duration, static_cast<float>(v.slice_duration));
    store<float>(h, toffset, static_cast<float>(v.toffset));
    store_string(h, descrip, 80, v.descrip);
    store_string(h, aux_file, 24, v.aux_file);
    store<int16_t>(h, qform_code, static_cast<int16_t>(v.qform_code));
    store<int16_t>(h, sform_code, static_cast<int16_t>(v.sform_code));
    const double q[6] = {v.quatern_b, v.quatern_c, v.quatern_d, v.qoffset_x, v.qoffset_y, v.qoffset_z};
    for (int i = 0; i < 6; ++i) store<float>(h, quatern_b + 4 * i, static_cast<float>(q[i]));
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) store<float>(h, srow_x + 16 * r + 4 * c, static_cast<float>(v.srow[r][c]));
    store_string(h, intent_name, 16, v.intent_name);
    std::memcpy(h.data() + magic, "n+1\0", 4);
    return h;
  }
  using namespace n2;
  std::vector<uint8_t> h(kN2HeaderSize, 0);
  store<int32_t>(h, 0, static_cast<int32_t>(kN2HeaderSize));
  std::memcpy(h.data() + magic, "n+2\0\r\n\032\n", 8);
  store<int16_t>(h, datatype, static_cast<int16_t>(v.datatype));
  store<int16_t>(h, bitpix, nbits);
  for (int i = 0; i < 8; ++i) store<int64_t>(h, dim + 8 * i, dims[i]);
  for (int i = 0; i < 3; ++i) store<double>(h, intent_p1 + 8 * i, v.intent_p[i]);
  for (int i = 0; i < 8; ++i) store<double>(h, pixdim + 8 * i, v.pixdim[i]);
  store<int64_t>(h, n2::vox_offset, vox_offset);
  store<double>(h, scl_slope, v.scl_slope);
  store<double>(h, scl_inter, v.scl_inter);
  store<double>(h, cal_max, v.cal_max);
  store<double>(h, cal_min, v.cal_min);
  store<double>(h, slice_duration, v.slice_duration);
  store<double>(h, toffset, v.toffset);
  store<int64_t>(h, slice_start, v.slice_start);
  store<int64_t>(h, slice_end, v.slice_end);
  store_string(h, descrip, 80, v.descrip);
  store_string(h, aux_file, 24, v.aux_file);
  store<int32_t>(h, qform_code, v.qform_code);
  store<int32_t>(h, sform_code, v.sform_code);
  const double q[6] = {v.quatern_b, v.quatern_c, v.quatern_d, v.qoffset_x, v.qoffset_y, v.qoffset_z};
  for (int i = 0; i < 6; ++i) store<double>(h, quatern_b + 8 * i, q[i]);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) store<double>(h, srow_x + 32 * r + 8 * c, v.srow[r][c]);
  store<int32_t>(h, slice_code, v.slice_code);
  store<int32_t>(h, xyzt_units, v.xyzt_units);
  store<int32_t>(h, intent_code, v.intent_code);
  store_string(h, intent_name, 16, v.intent_name);
  h[dim_info] = static_cast<uint8_t>(v.dim_info);
  return h;
}

}  // namespace pw::nifti_detail
