// Volume: datatypes, scaled values, geometry (qform/sform/affine) and constructors.
#include <Eigen/Dense>

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "io/error.h"
#include "io/nifti.h"
#include "io/volume_visit.h"

namespace pw {

int nifti_datatype_size(int dt) {
  switch (dt) {
    case nifti_dt::uint8: case nifti_dt::int8: return 1;
    case nifti_dt::int16: case nifti_dt::uint16: return 2;
    case nifti_dt::int32: case nifti_dt::uint32: case nifti_dt::float32: return 4;
    case nifti_dt::int64: case nifti_dt::uint64: case nifti_dt::float64: return 8;
    case nifti_dt::rgb24: return 3;
    default: return 0;
  }
}

std::string nifti_datatype_name(int dt) {
  switch (dt) {
    case nifti_dt::uint8: return "uint8";
    case nifti_dt::int8: return "int8";
    case nifti_dt::int16: return "int16";
    case nifti_dt::uint16: return "uint16";
    case nifti_dt::int32: return "int32";
    case nifti_dt::uint32: return "uint32";
    case nifti_dt::int64: return "int64";
    case nifti_dt::uint64: return "uint64";
    case nifti_dt::float32: return "float32";
    case nifti_dt::float64: return "float64";
    case nifti_dt::rgb24: return "RGB24";
    case nifti_dt::rgba32: return "RGBA32";
    case nifti_dt::complex64: return "complex64";
    case nifti_dt::complex128: return "complex128";
    case nifti_dt::complex256: return "complex256";
    case nifti_dt::float128: return "float128";
    default: return "unknown";
  }
}

int nifti_datatype_from_name(const std::string& name) {
  for (int dt : {nifti_dt::uint8, nifti_dt::int8, nifti_dt::int16, nifti_dt::uint16, nifti_dt::int32,
                 nifti_dt::uint32, nifti_dt::int64, nifti_dt::uint64, nifti_dt::float32, nifti_dt::float64})
    if (nifti_datatype_name(dt) == name) return dt;
  throw std::invalid_argument("unknown datatype name '" + name + "'");
}

bool nifti_datatype_is_integer(int dt) {
  return nifti_datatype_size(dt) > 0 && dt != nifti_dt::float32 && dt != nifti_dt::float64 && dt != nifti_dt::rgb24;
}

int64_t NiftiHeader::num_voxels() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= dims[i];
  return n;
}

std::vector<int64_t> NiftiHeader::shape() const { return std::vector<int64_t>(dims.begin(), dims.begin() + ndim); }

bool NiftiHeader::is_scaled() const {
  return datatype != nifti_dt::rgb24 && std::isfinite(scl_slope) && scl_slope != 0 &&
         !(scl_slope == 1 && scl_inter == 0);
}

double Volume::raw_value(int64_t i) const {
  double r = 0;
  if (!visit_scalar(datatype, [&](auto zero) {
        using T = decltype(zero);
        T x;
        std::memcpy(&x, data.data() + i * sizeof(T), sizeof(T));
        r = static_cast<double>(x);
      }))
    throw InputError("unsupported datatype " + nifti_datatype_name(datatype) + " for scalar values");
  return r;
}

double Volume::value(int64_t i) const {
  double r = raw_value(i);
  return is_scaled() ? r * scl_slope + scl_inter : r;
}

namespace {
template <class Out>
std::vector<Out> scaled_values(const Volume& v) {
  std::vector<Out> out(static_cast<size_t>(v.num_voxels()));
  const bool scaled = v.is_scaled();
  const double slope = v.scl_slope, inter = v.scl_inter;
  if (!visit_scalar(v.datatype, [&](auto zero) {
        using T = decltype(zero);
        const T* p = reinterpret_cast<const T*>(v.data.data());
        const size_t n = out.size();
        if (scaled) {
          for (size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(static_cast<double>(p[i]) * slope + inter);
        } else {
          for (size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(p[i]);
        }
      }))
    throw InputError("unsupported datatype " + nifti_datatype_name(v.datatype) + " for scalar values");
  return out;
}
}  // namespace

std::vector<double> Volume::to_double() const { return scaled_values<double>(*this); }

std::vector<float> Volume::to_float() const {
  return scaled_values<float>(*this);
}

Eigen::Matrix4d NiftiHeader::qform_affine() const {
  // nifti_quatern_to_mat44: a = sqrt(1 - b^2 - c^2 - d^2) (renormalised when that is ~0 or negative).
  // A non-finite quatern_* or qoffset_* counts as 0, as nifti_clib's FIXED_FLOAT makes it when reading.
  auto fixed = [](double x) { return std::isfinite(x) ? x : 0.0; };
  double b = fixed(quatern_b), c = fixed(quatern_c), d = fixed(quatern_d);
  double a = 1.0 - (b * b + c * c + d * d);
  if (a < 1e-7) {
    double s = 1.0 / std::sqrt(b * b + c * c + d * d);
    b *= s, c *= s, d *= s;
    a = 0;
  } else {
    a = std::sqrt(a);
  }
  // Voxel sizes: |pixdim| (as nibabel's load-time fix), 0 or non-finite -> 1; qfac = -1 only if pixdim[0] < 0.
  auto size = [](double p) { return (std::isfinite(p) && p != 0) ? std::fabs(p) : 1.0; };
  const double xd = size(pixdim[1]), yd = size(pixdim[2]), zd = size(pixdim[3]);
  const double qfac = pixdim[0] < 0 ? -1.0 : 1.0;
  Eigen::Matrix4d m = Eigen::Matrix4d::Identity();
  m(0, 0) = (a * a + b * b - c * c - d * d) * xd;
  m(0, 1) = 2 * (b * c - a * d) * yd;
  m(0, 2) = 2 * (b * d + a * c) * zd * qfac;
  m(1, 0) = 2 * (b * c + a * d) * xd;
  m(1, 1) = (a * a + c * c - b * b - d * d) * yd;
  m(1, 2) = 2 * (c * d - a * b) * zd * qfac;
  m(2, 0) = 2 * (b * d - a * c) * xd;
  m(2, 1) = 2 * (c * d + a * b) * yd;
  m(2, 2) = (a * a + d * d - c * c - b * b) * zd * qfac;
  m(0, 3) = fixed(qoffset_x), m(1, 3) = fixed(qoffset_y), m(2, 3) = fixed(qoffset_z);
  return m;
}

Eigen::Matrix4d NiftiHeader::sform_affine() const {
  Eigen::Matrix4d m = Eigen::Matrix4d::Identity();
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) m(r, c) = srow[r][c];
  return m;
}

Eigen::Matrix4d NiftiHeader::affine() const {
  if (sform_code > 0) return sform_affine();
  if (qform_code > 0) return qform_affine();
  auto size = [](double p) { return (std::isfinite(p) && p != 0) ? std::fabs(p) : 1.0; };
  Eigen::Matrix4d m = Eigen::Matrix4d::Identity();
  for (int i = 0; i < 3; ++i) m(i, i) = size(pixdim[i + 1]);
  return m;
}

void NiftiHeader::set_affine(const Eigen::Matrix4d& a, int code) {
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) {
      if (!std::isfinite(a(r, c))) throw std::invalid_argument("set_affine: the affine has a non-finite entry");
      srow[r][c] = a(r, c);
    }
  // Column lengths are the voxel sizes; normalised columns give the direction matrix Q.
  Eigen::Matrix3d q = a.topLeftCorner<3, 3>();
  double size[3];
  for (int j = 0; j < 3; ++j) {
    size[j] = q.col(j).norm();
    if (size[j] == 0) {  // degenerate column: use the voxel axis itself
      q.col(j) = Eigen::Vector3d::Unit(j);
      size[j] = 1;
    } else {
      q.col(j) /= size[j];
    }
  }
  const Eigen::Matrix3d gram = q.transpose() * q;
  const bool shear = std::fabs(gram(0, 1)) > 1e-5 || std::fabs(gram(0, 2)) > 1e-5 || std::fabs(gram(1, 2)) > 1e-5;
  // Polar decomposition Q = P S: P = U V^T is the nearest orthogonal matrix.
  Eigen::JacobiSVD<Eigen::Matrix3d> svd(q, Eigen::ComputeFullU | Eigen::ComputeFullV);
  Eigen::Matrix3d p = svd.matrixU() * svd.matrixV().transpose();
  double qfac = 1;
  if (p.determinant() <= 0) {  // left-handed: qfac = -1 and flip the third column
    qfac = -1;
    p.col(2) = -p.col(2);
  }
  // Quaternion of the proper rotation p (nifti_mat44_to_quatern).
  const double r11 = p(0, 0), r12 = p(0, 1), r13 = p(0, 2), r21 = p(1, 0), r22 = p(1, 1), r23 = p(1, 2),
               r31 = p(2, 0), r32 = p(2, 1), r33 = p(2, 2);
  double qa = r11 + r22 + r33 + 1, qb, qc, qd;
  if (qa > 0.5) {
    qa = 0.5 * std::sqrt(qa);
    qb = 0.25 * (r32 - r23) / qa;
    qc = 0.25 * (r13 - r31) / qa;
    qd = 0.25 * (r21 - r12) / qa;
  } else {
    const double xd = 1 + r11 - (r22 + r33), yd = 1 + r22 - (r11 + r33);
    if (xd > 1) {
      qb = 0.5 * std::sqrt(xd);
      qc = 0.25 * (r12 + r21) / qb;
      qd = 0.25 * (r13 + r31) / qb;
      qa = 0.25 * (r32 - r23) / qb;
    } else if (yd > 1) {
      qc = 0.5 * std::sqrt(yd);
      qb = 0.25 * (r12 + r21) / qc;
      qd = 0.25 * (r23 + r32) / qc;
      qa = 0.25 * (r13 - r31) / qc;
    } else {
      qd = 0.5 * std::sqrt(1 + r33 - (r11 + r22));
      qb = 0.25 * (r13 + r31) / qd;
      qc = 0.25 * (r23 + r32) / qd;
      qa = 0.25 * (r21 - r12) / qd;
    }
    if (qa < 0) qb = -qb, qc = -qc, qd = -qd;
  }
  quatern_b = qb, quatern_c = qc, quatern_d = qd;
  qoffset_x = a(0, 3), qoffset_y = a(1, 3), qoffset_z = a(2, 3);
  pixdim[0] = qfac;
  for (int j = 0; j < 3; ++j) pixdim[j + 1] = size[j];
  sform_code = code;
  qform_code = shear ? 0 : code;
}

Volume Volume::zeros(const std::vector<int64_t>& dims, int datatype, const Eigen::Matrix4d& affine) {
  if (dims.empty() || dims.size() > 7)
    throw std::invalid_argument("Volume: " + std::to_string(dims.size()) + " dims (must be 1..7)");
  const int size = nifti_datatype_size(datatype);
  if (size == 0) throw std::invalid_argument("Volume: unsupported datatype " + std::to_string(datatype));
  Volume v;
  v.ndim = static_cast<int>(dims.size());
  uint64_t n = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 1) throw std::invalid_argument("Volume: dim " + std::to_string(i) + " is " + std::to_string(dims[i]));
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(dims[i]), &n))
      throw std::invalid_argument("Volume: voxel count overflows");
    v.dims[i] = dims[i];
  }
  uint64_t bytes;
  if (__builtin_mul_overflow(n, static_cast<uint64_t>(size), &bytes) || bytes > (uint64_t(1) << 62))
    throw std::invalid_argument("Volume: data size overflows");
  v.datatype = datatype;
  v.bitpix = 8 * size;
  v.xyzt_units = 2;  // NIFTI_UNITS_MM
  v.set_affine(affine, 1);
  v.data.assign(static_cast<size_t>(bytes), 0);
  return v;
}

template <class T>
Volume Volume::from_values(const std::vector<int64_t>& dims, const T* values, const Eigen::Matrix4d& affine) {
  Volume v = zeros(dims, datatype_of<T>(), affine);
  if (!v.data.empty()) std::memcpy(v.data.data(), values, v.data.size());
  return v;
}

template Volume Volume::from_values(const std::vector<int64_t>&, const uint8_t*, const Eigen::Matrix4d&);
template Volume Volume::from_values(const std::vector<int64_t>&, const int8_t*, const Eigen::Matrix4d&);
template Volume Volume::from_values(const std::vector<int64_t>&, const int16_t*, const Eigen::Matrix4d&);
template Volume Volume::from_values(const std::vector<int64_t>&, const uint16_t*, const Eigen::Matrix4d&);
template Volume Volume::from_values(const std::vector<int64_t>&, const int32_t*, const Eigen::Matrix4d&);
template Volume Volume::from_values(const std::vector<int64_t>&, const uint32_t*, const Eigen::Matrix4d&);
template Volume Volume::from_values(const std::vector<int64_t>&, const int64_t*, const Eigen::Matrix4d&);
template Volume Volume::from_values(const std::vector<int64_t>&, const uint64_t*, const Eigen::Matrix4d&);
template Volume Volume::from_values(const std::vector<int64_t>&, const float*, const Eigen::Matrix4d&);
template Volume Volume::from_values(const std::vector<int64_t>&, const double*, const Eigen::Matrix4d&);

}  // namespace pw
