// NIfTI-1 / NIfTI-2 images: the Volume type, reading (.nii, .nii.gz, .hdr/.img[.gz], either byte
// order) and writing (.nii, .nii.gz). Bad input throws pw::InputError("<file>: <reason>").
//
// Geometry rule (used everywhere in Patchwork): the world affine is the sform when sform_code > 0,
// else the qform when qform_code > 0, else diag(pixdim[1], pixdim[2], pixdim[3], 1) (NIfTI "method 1").
// Voxel indices are 0-based, world = affine * [i, j, k, 1]^T, in the units of xyzt_units (usually mm).
// The readers refuse a file whose sform_code > 0 but whose srow_x/y/z hold NaN or infinity (pw::InputError
// naming the file: nifti_clib would use that sform as it is, so no silent fallback to the qform); a
// non-finite quatern_* or qoffset_* counts as 0 in the qform (nifti_clib's FIXED_FLOAT).
#pragma once
#include <Eigen/Core>

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace pw {

// NIfTI datatype codes (nifti1.h). Values are on-disk codes, not an enum to switch over blindly.
namespace nifti_dt {
constexpr int uint8 = 2, int16 = 4, int32 = 8, float32 = 16, complex64 = 32, float64 = 64, rgb24 = 128,
              int8 = 256, uint16 = 512, uint32 = 768, int64 = 1024, uint64 = 1280, float128 = 1536,
              complex128 = 1792, complex256 = 2048, rgba32 = 2304;
}  // namespace nifti_dt

// Bytes per voxel of a datatype Patchwork reads (the ten scalar types and RGB24), else 0.
int nifti_datatype_size(int datatype);
// "uint8", "int16", ..., "RGB24", "complex64"; "unknown" for codes not in nifti1.h.
std::string nifti_datatype_name(int datatype);
// The code for "uint8" ... "float64" (the ten scalar types); throws std::invalid_argument otherwise.
int nifti_datatype_from_name(const std::string& name);
bool nifti_datatype_is_integer(int datatype);

struct NiftiExtension {
  int32_t code = 0;           // ecode (e.g. 6 = comment, 4 = AFNI XML)
  std::vector<uint8_t> data;  // payload exactly as stored (esize - 8 bytes, padding included)
  // Size on disk (esize): 8-byte code/size header + payload, rounded up to a multiple of 16.
  int64_t disk_size() const { return (8 + static_cast<int64_t>(data.size()) + 15) / 16 * 16; }
};

// Every header field of a NIfTI image (as stored, widened to 64 bits), and the geometry derived from them.
struct NiftiHeader {
  int version = 1;                           // 1 = NIfTI-1, 2 = NIfTI-2 (as read; writing picks its own)
  int ndim = 3;                              // dim[0]: used dimensions, 1..7
  std::array<int64_t, 7> dims{1, 1, 1, 1, 1, 1, 1};  // dim[1..7]; entries past ndim are 1
  int datatype = nifti_dt::float32;
  int bitpix = 32;                           // as stored (the layout always follows `datatype`)
  std::array<double, 8> pixdim{1, 1, 1, 1, 1, 1, 1, 1};  // pixdim[0] = qfac
  double scl_slope = 1, scl_inter = 0;
  int qform_code = 0, sform_code = 0;
  double quatern_b = 0, quatern_c = 0, quatern_d = 0;
  double qoffset_x = 0, qoffset_y = 0, qoffset_z = 0;
  std::array<std::array<double, 4>, 3> srow{{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}}};
  int intent_code = 0;
  std::array<double, 3> intent_p{0, 0, 0};
  std::string intent_name;  // up to 15 characters
  std::string descrip;      // up to 79 characters
  std::string aux_file;     // up to 23 characters
  int xyzt_units = 0;
  int dim_info = 0;
  int64_t slice_start = 0, slice_end = 0;
  int slice_code = 0;
  double slice_duration = 0, toffset = 0, cal_min = 0, cal_max = 0;
  int64_t vox_offset = 0;           // as read; the writer computes its own
  bool big_endian_on_disk = false;  // as read (information only)
  std::vector<NiftiExtension> extensions;  // in file order

  // Number of voxels over the used dims, and the used dims themselves.
  int64_t num_voxels() const;
  std::vector<int64_t> shape() const;

  // Scaling: value = raw * scl_slope + scl_inter, except when scl_slope is 0 or not finite (then value =
  // raw, and scl_inter is ignored). RGB24 is never scaled. is_scaled() is false for the identity
  // (slope 1, intercept 0) too: the values are the stored ones.
  bool is_scaled() const;

  // Affines: qform from the quaternion (computed even when qform_code is 0), sform from srow,
  // and the world affine by the rule at the top of this file.
  Eigen::Matrix4d qform_affine() const;
  Eigen::Matrix4d sform_affine() const;
  Eigen::Matrix4d affine() const;
  // Sets srow, the quaternion, qoffset and pixdim[0..3] from `a`, sform_code = `code`, and qform_code =
  // `code` unless the 3x3 part has shear (then qform_code = 0: a quaternion cannot hold shear).
  // The quaternion is computed as nifti_clib does: polar decomposition of the column-normalised 3x3
  // part, qfac = sign of its determinant, then the quaternion of the proper rotation.
  void set_affine(const Eigen::Matrix4d& a, int code = 1);
};

// One image: the header fields (NiftiHeader) and the voxel data as raw bytes in the host's byte order and
// the on-disk datatype, file order (i fastest, then j, k, t, ...). Copy only the header with
// `static_cast<NiftiHeader&>(out) = in;`.
struct Volume : NiftiHeader {
  std::vector<uint8_t> data;  // num_voxels() * nifti_datatype_size(datatype) bytes, host byte order

  // Stored value of voxel i (file order) widened to double (uint64/int64 beyond 2^53 round).
  double raw_value(int64_t i) const;
  // Scaled value of voxel i, computed in double.
  double value(int64_t i) const;
  // All scaled values. Throw pw::InputError for RGB24 (no scalar values).
  std::vector<double> to_double() const;
  std::vector<float> to_float() const;

  // A zero-filled volume of `dims` (1..7 of them) and `datatype` (a scalar type or RGB24), geometry
  // from `affine`, scl_slope 1 / scl_inter 0. Throws std::invalid_argument for bad dims or datatype.
  static Volume zeros(const std::vector<int64_t>& dims, int datatype,
                      const Eigen::Matrix4d& affine = Eigen::Matrix4d::Identity());
  // A volume holding a copy of `values` (file order, num = product of dims); datatype from T
  // (uint8_t, int8_t, int16_t, uint16_t, int32_t, uint32_t, int64_t, uint64_t, float, double).
  template <class T>
  static Volume from_values(const std::vector<int64_t>& dims, const T* values,
                            const Eigen::Matrix4d& affine = Eigen::Matrix4d::Identity());
};

// A copy of `in` holding its scaled values as `datatype` (a scalar type, or RGB24 for RGB24 input), unscaled
// (scl_slope 1, scl_inter 0), with in's world affine set as sform and qform (code: in's sform_code, else its
// qform_code, else 1) and in's other header fields and extensions. Integer targets take values rounded to
// the nearest integer (halves away from zero); a value outside the target's range, NaN or infinity throws
// pw::InputError naming the voxel and the value (never a silent wrap). Unscaled integer input converts
// exactly, 64-bit values included.
Volume convert_datatype(const Volume& in, int datatype);

// Reads a .nii, .nii.gz, .hdr (+ .img or .img.gz) or .img (+ .hdr). Throws pw::InputError.
Volume read_nifti(const std::filesystem::path& file);
// Reads only the header and the extensions of a .nii, .nii.gz, .hdr (+ .img or .img.gz) or .img (+ .hdr),
// never the data: for a .nii.gz only the bytes up to vox_offset are inflated, so time and memory do not
// depend on the image size. Same parser and header checks as read_nifti (pw::InputError); of the data it
// checks only what sizes tell without reading: for a plain .nii or .img a file too short for vox_offset +
// the data is refused as by read_nifti; for gzip the decoded size is unknown, so truncated or corrupt
// data and a wrong CRC after vox_offset are NOT detected (read_nifti or read_nifti_streaming find them).
NiftiHeader read_nifti_header(const std::filesystem::path& file);
// Reads a file as read_nifti does (same checks, the gzip CRC included) but hands the data to `consume`
// piece by piece instead of keeping them, so memory stays constant (a few MiB) whatever the image size:
// each call gets the header and `n` bytes of whole voxels, in file order and the host's byte order.
// Returns the header.
using NiftiDataConsumer = std::function<void(const NiftiHeader& header, const uint8_t* data, size_t n)>;
NiftiHeader read_nifti_streaming(const std::filesystem::path& file, const NiftiDataConsumer& consume);
// Reads a single-file NIfTI (plain or gzip, detected from the gzip magic) held in memory; `name` is used
// in error messages. Same parser as read_nifti; a pair header ("ni1"/"ni2") is refused (no .img).
Volume read_nifti_memory(const uint8_t* bytes, size_t size, const std::string& name = "<memory>");

// Writes `v` as NIfTI-1 (NIfTI-2 when a dimension exceeds 32767) to a .nii or .nii.gz (chosen by the
// name), header fields as held in `v` (the data in host byte order), extensions kept. The file is
// written to a temporary name in the same folder and renamed, so no half-written file is ever left.
// Throws pw::InputError (cannot write) or std::invalid_argument (bad name or inconsistent volume).
void write_nifti(const Volume& v, const std::filesystem::path& file);

}  // namespace pw
