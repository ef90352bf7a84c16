// convert_datatype: a volume's scaled values in another datatype, with range checks.
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <type_traits>

#include "io/error.h"
#include "io/nifti.h"
#include "io/volume_visit.h"

namespace pw {

namespace {

template <class To>
[[noreturn]] void out_of_range(int64_t voxel, const std::string& value) {
  std::ostringstream o;
  o << "voxel " << voxel << " (file order) has value " << value << ", which does not fit "
    << nifti_datatype_name(datatype_of<To>()) << " [" << +std::numeric_limits<To>::lowest() << ", "
    << +std::numeric_limits<To>::max() << "]";
  throw InputError(o.str());
}

std::string show(double x) {
  std::ostringstream o;
  o.precision(17);
  o << x;
  return o.str();
}

// Integer to integer without scaling: exact for every 64-bit value.
template <class From, class To>
void convert_exact(const From* in, To* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const From x = in[i];
    bool fits;
    if (std::is_signed<From>::value && x < 0) {
      fits = std::is_signed<To>::value && static_cast<int64_t>(x) >= static_cast<int64_t>(std::numeric_limits<To>::min());
    } else {
      fits = static_cast<uint64_t>(x) <= static_cast<uint64_t>(std::numeric_limits<To>::max());
    }
    if (!fits) out_of_range<To>(i, std::to_string(x));
    out[i] = static_cast<To>(x);
  }
}

// Through double (scaled values, or float sources): rounded for integer targets, range checked.
template <class From, class To>
void convert_double(const From* in, To* out, int64_t n, bool scaled, double slope, double inter) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = scaled ? static_cast<double>(in[i]) * slope + inter : static_cast<double>(in[i]);
    if (std::is_floating_point<To>::value) {
      out[i] = static_cast<To>(v);
      continue;
    }
    const double r = std::round(v);
    // 2^63 and 2^64 are exact doubles; smaller types' limits are exact too.
    const double hi = std::is_same<To, int64_t>::value    ? 9223372036854775808.0
                      : std::is_same<To, uint64_t>::value ? 18446744073709551616.0
                                                          : static_cast<double>(std::numeric_limits<To>::max()) + 1;
    const double lo = static_cast<double>(std::numeric_limits<To>::lowest());
    if (!(r >= lo && r < hi)) out_of_range<To>(i, show(v));
    out[i] = static_cast<To>(r);
  }
}

}  // namespace

Volume convert_datatype(const Volume& in, int datatype) {
  Volume out;
  static_cast<NiftiHeader&>(out) = in;  // header fields and extensions, not the data
  const int64_t n = in.num_voxels();
  if (in.datatype == nifti_dt::rgb24 || datatype == nifti_dt::rgb24) {
    if (in.datatype != datatype)
      throw InputError("cannot convert " + nifti_datatype_name(in.datatype) + " to " + nifti_datatype_name(datatype));
    out.data = in.data;
  } else {
    const int osize = nifti_datatype_size(datatype);
    if (osize == 0 || !visit_scalar(datatype, [](auto) {}))
      throw InputError("unsupported output datatype " + nifti_datatype_name(datatype));
    out.data.resize(static_cast<size_t>(n) * osize);
    const bool scaled = in.is_scaled();
    const bool ok = visit_scalar(in.datatype, [&](auto from_zero) {
      using From = decltype(from_zero);
      const From* src = reinterpret_cast<const From*>(in.data.data());
      visit_scalar(datatype, [&](auto to_zero) {
        using To = decltype(to_zero);
        To* dst = reinterpret_cast<To*>(out.data.data());
        if constexpr (std::is_integral<From>::value && std::is_integral<To>::value) {
          if (!scaled) return convert_exact(src, dst, n);
        }
        convert_double(src, dst, n, scaled, in.scl_slope, in.scl_inter);
      });
    });
    if (!ok) throw InputError("unsupported datatype " + nifti_datatype_name(in.datatype) + " for conversion");
  }
  out.datatype = datatype;
  out.bitpix = 8 * nifti_datatype_size(datatype);
  out.scl_slope = 1;
  out.scl_inter = 0;
  const int code = in.sform_code > 0 ? in.sform_code : in.qform_code > 0 ? in.qform_code : 1;
  out.set_affine(in.affine(), code);
  return out;
}

}  // namespace pw
