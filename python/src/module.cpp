// The Python module patchwork._patchwork: thin pybind11 bindings over the functions the CLI calls
// (io/nifti.h, apply/apply_case.h, apply/train_command.h, engine/ops_patch.h). The Python side
// (python/patchwork/__init__.py) turns keyword options into these calls and documents the API.
//
// Arrays: images are numpy arrays in NIfTI index order (x, y, z[, channels]), laid out as the file stores them
// (x fastest, "Fortran order"), so results come back without a copy: each returned array keeps the C++
// buffer (a Volume or a Tensor) alive through a capsule. Inputs are copied once into the C++ buffer the
// function works on (the inference normalises its copy in place). The GIL is released during compute.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <Eigen/Dense>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "apply/apply_case.h"
#include "apply/responses.h"
#include "apply/model_network.h"
#include "apply/train_command.h"
#include "cli/commands.h"  // device_option: the --device rule of every command
#include "engine/ops_patch.h"
#include "io/error.h"
#include "io/nifti.h"
#include "io/nifti_json.h"
#include "kernels/parallel.h"
#include "train/phantom.h"
#include "train/scheme.h"

namespace py = pybind11;
using namespace pw;

namespace {

// ---- errors ---------------------------------------------------------------------------------------

// The CLI's one-line messages as Python exceptions: a file that cannot be opened, read or written is an
// OSError, any other bad input (content, option, shape) a ValueError.
bool is_file_error(const std::string& m) {
  for (const char* k : {"cannot open", "cannot read", "cannot write", "cannot create", "not found", "is a folder",
                        "No such file", "Permission denied", "not a folder"})
    if (m.find(k) != std::string::npos) return true;
  return false;
}

void translate(std::exception_ptr p) {
  try {
    if (p) std::rethrow_exception(p);
  } catch (const InputError& e) {
    PyErr_SetString(is_file_error(e.what()) ? PyExc_OSError : PyExc_ValueError, e.what());
  } catch (const UsageError& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
  } catch (const std::invalid_argument& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
  }
}

// ---- arrays ---------------------------------------------------------------------------------------

std::string dtype_name(const py::dtype& d) { return py::str(static_cast<const py::handle&>(d)).cast<std::string>(); }

int nifti_code(const py::dtype& d, const std::string& what) {
  const char k = d.kind();
  const size_t n = d.itemsize();
  if (k == 'u' && n == 1) return nifti_dt::uint8;
  if (k == 'u' && n == 2) return nifti_dt::uint16;
  if (k == 'u' && n == 4) return nifti_dt::uint32;
  if (k == 'u' && n == 8) return nifti_dt::uint64;
  if (k == 'i' && n == 1) return nifti_dt::int8;
  if (k == 'i' && n == 2) return nifti_dt::int16;
  if (k == 'i' && n == 4) return nifti_dt::int32;
  if (k == 'i' && n == 8) return nifti_dt::int64;
  if (k == 'f' && n == 4) return nifti_dt::float32;
  if (k == 'f' && n == 8) return nifti_dt::float64;
  throw std::invalid_argument(what + ": dtype " + dtype_name(d) +
                              " not supported (expected uint8/16/32/64, int8/16/32/64, float32 or float64)");
}

py::dtype numpy_dtype(int code) {
  switch (code) {
    case nifti_dt::uint8: case nifti_dt::rgb24: return py::dtype("uint8");
    case nifti_dt::int8: return py::dtype("int8");
    case nifti_dt::int16: return py::dtype("int16");
    case nifti_dt::uint16: return py::dtype("uint16");
    case nifti_dt::int32: return py::dtype("int32");
    case nifti_dt::uint32: return py::dtype("uint32");
    case nifti_dt::int64: return py::dtype("int64");
    case nifti_dt::uint64: return py::dtype("uint64");
    case nifti_dt::float32: return py::dtype("float32");
    case nifti_dt::float64: return py::dtype("float64");
  }
  throw std::invalid_argument("datatype " + nifti_datatype_name(code) + " has no numpy equivalent");
}

// Owner of a buffer handed to numpy (deleted when the last array over it goes).
template <class T>
py::capsule owner(T&& value) {
  auto* p = new T(std::move(value));
  return py::capsule(p, [](void* q) { delete static_cast<T*>(q); });
}

// Fortran strides (first axis fastest) of `shape` for items of `item` bytes.
std::vector<py::ssize_t> f_strides(const std::vector<py::ssize_t>& shape, py::ssize_t item) {
  std::vector<py::ssize_t> s(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) s[i] = i ? s[i - 1] * shape[i - 1] : item;
  return s;
}

// A volume's values as an array of shape dims (x, y, z, ..): the stored values without a copy, or, for scaled
// data, the scaled values as float64 (as nibabel). RGB24 gets a last axis of 3.
py::array volume_array(Volume&& v) {
  std::vector<py::ssize_t> shape(v.dims.begin(), v.dims.begin() + v.ndim);
  if (v.is_scaled()) {
    std::vector<double> d = v.to_double();
    const double* p = d.data();
    return py::array(py::dtype("float64"), shape, f_strides(shape, 8), p, owner(std::move(d)));
  }
  const py::dtype dt = numpy_dtype(v.datatype);
  std::vector<py::ssize_t> strides = f_strides(shape, v.datatype == nifti_dt::rgb24 ? 3 : dt.itemsize());
  if (v.datatype == nifti_dt::rgb24) {
    shape.push_back(3);
    strides.push_back(1);
  }
  const void* p = v.data.data();
  return py::array(dt, shape, strides, p, owner(std::move(v)));
}

Eigen::Matrix4d to_affine(const py::array& a, const std::string& what) {
  auto m = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!m || m.ndim() != 2 || m.shape(0) != 4 || m.shape(1) != 4)
    throw std::invalid_argument(what + ": expected a 4x4 matrix");
  Eigen::Matrix4d A;
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) A(r, c) = m.at(r, c);
  if (!A.allFinite()) throw std::invalid_argument(what + ": holds NaN or infinite values");
  return A;
}

py::array affine_array(const Eigen::Matrix4d& A) {
  py::array_t<double> out({4, 4});
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) out.mutable_at(r, c) = A(r, c);
  return std::move(out);
}

// A Volume holding a copy of `a` (any strides) with `affine` as sform and qform.
Volume array_volume(const py::array& a, const Eigen::Matrix4d& affine, const std::string& what) {
  const int code = nifti_code(a.dtype(), what);
  if (a.ndim() < 1 || a.ndim() > 7) throw std::invalid_argument(what + ": " + std::to_string(a.ndim()) + " axes (expected 1..7)");
  std::vector<int64_t> dims(a.shape(), a.shape() + a.ndim());
  for (int64_t d : dims)
    if (d < 1) throw std::invalid_argument(what + ": an empty axis");
  Volume v = Volume::zeros(dims, code, affine);
  // numpy copies into the Volume's buffer in file order (x fastest) whatever a's layout.
  const std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
  py::array dst(a.dtype(), shape, f_strides(shape, a.itemsize()), v.data.data(), py::none());
  py::module_::import("numpy").attr("copyto")(dst, a);
  return v;
}

// An f32 tensor [C, z, y, x] (C-order) holding a copy of `a` (x, y[, z][, C]), float32 expected.
Tensor image_tensor(const py::array& a, int spatial, const std::string& what) {
  if (!py::isinstance<py::array_t<float>>(a))
    throw std::invalid_argument(what + ": dtype " + dtype_name(a.dtype()) + ", expected float32");
  if (a.ndim() != spatial && a.ndim() != spatial + 1)
    throw std::invalid_argument(what + ": " + std::to_string(a.ndim()) + " axes, expected " + std::to_string(spatial) +
                                " (x, y" + (spatial == 3 ? ", z" : "") + ") or " + std::to_string(spatial + 1) +
                                " (with channels last)");
  const int64_t C = a.ndim() > spatial ? a.shape(spatial) : 1;
  Shape s{C};
  for (int i = spatial - 1; i >= 0; --i) s.push_back(a.shape(i));
  Tensor t = Tensor::empty(s);
  const std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
  py::array dst(a.dtype(), shape, f_strides(shape, 4), t.f32(), py::none());
  py::module_::import("numpy").attr("copyto")(dst, a);
  return t;
}

// A tensor [P, C, s_z, s_y, s_x] (or [P, C, s_y, s_x]; C-order) as an array (P, x, y[, z][, C]) without a copy;
// the channel axis is left out when `drop_channels` (C = 1).
py::array patches_array(Tensor t, bool drop_channels) {
  const int spatial = t.ndim() - 2;
  const py::ssize_t P = t.dim(0), C = t.dim(1);
  std::vector<py::ssize_t> shape{P}, strides;
  py::ssize_t n = 1;
  for (int i = 0; i < spatial; ++i) n *= t.dim(2 + i);
  strides.push_back(C * n * 4);
  py::ssize_t step = 4;
  for (int i = spatial - 1; i >= 0; --i) {
    shape.push_back(t.dim(2 + i));
    strides.push_back(step);
    step *= t.dim(2 + i);
  }
  if (!drop_channels) {
    shape.push_back(C);
    strides.push_back(n * 4);
  }
  const float* p = t.f32();
  return py::array(py::dtype("float32"), shape, strides, p, owner(std::move(t)));
}

// ---- read / write ---------------------------------------------------------------------------------

py::tuple read_file(const std::string& path) {
  Volume v;
  {
    py::gil_scoped_release nogil;
    v = read_nifti(path);
  }
  const Eigen::Matrix4d A = v.affine();
  py::object header = py::module_::import("json").attr("loads")(nifti_header_json(v).dump());
  return py::make_tuple(volume_array(std::move(v)), affine_array(A), header);
}

void write_file(const std::string& path, const py::array& a, const py::array& affine, const py::dict& fields) {
  Volume v = array_volume(a, to_affine(affine, "affine"), "array");
  for (auto item : fields) {
    const std::string k = py::str(item.first);
    if (k == "descrip") v.descrip = item.second.cast<std::string>();
    else if (k == "aux_file") v.aux_file = item.second.cast<std::string>();
    else if (k == "intent_name") v.intent_name = item.second.cast<std::string>();
    else if (k == "intent_code") v.intent_code = item.second.cast<int>();
    else if (k == "xyzt_units") v.xyzt_units = item.second.cast<int>();
    else if (k == "qform_code") v.qform_code = item.second.cast<int>();
    else if (k == "sform_code") v.sform_code = item.second.cast<int>();
    else throw std::invalid_argument("header: key '" + k + "' cannot be written");
  }
  py::gil_scoped_release nogil;
  write_nifti(v, path);
}

// ---- model ----------------------------------------------------------------------------------------

struct PyModel {
  std::unique_ptr<train::Model> model;
  std::mutex busy;  // one inference at a time per model (its caches)
};

std::shared_ptr<PyModel> load_model(const std::string& path, const std::string& device) {
  const Device dev = cli::device_option(device);
  auto m = std::make_shared<PyModel>();
  py::gil_scoped_release nogil;
  m->model = std::make_unique<train::Model>(train::Model::load(path, dev));
  return m;
}

py::dict model_info(PyModel& m) {
  const train::ModelSpec& spec = m.model->spec();
  const apply::LabelInfo li = apply::label_info(spec, apply::ApplyRequest{});
  py::object loads = py::module_::import("json").attr("loads");
  py::dict d;
  d["scheme"] = loads(spec.scheme.to_json().dump());
  d["ndim"] = spec.scheme.ndim;
  d["image_channels"] = spec.image_channels;
  d["categorical"] = li.categorical;
  d["labels"] = li.values;
  d["label_names"] = spec.label_names;
  std::vector<double> th = spec.thresholds;
  if (th.empty()) th.assign(li.values.size(), 0.5);
  d["thresholds"] = th;
  d["device"] = device_name(m.model->device());
  d["training"] = loads(spec.training.dump());
  return d;
}

// The `patchwork apply` of one case on arrays: images = the contrasts, each (x, y[, z]) or one (x, y, z, C).
py::tuple apply_arrays(PyModel& m, const std::vector<py::array>& images, const py::array& affine,
                       const apply::ApplyOptions& options, int threads) {
  if (images.empty()) throw std::invalid_argument("no image given");
  const Eigen::Matrix4d A = to_affine(affine, "affine");
  std::vector<Volume> vols;
  std::vector<std::string> names;
  for (size_t i = 0; i < images.size(); ++i) {
    names.push_back(images.size() == 1 ? "image" : "image " + std::to_string(i));
    vols.push_back(array_volume(images[i], A, names.back()));
  }
  Volume out;
  {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(m.busy);
    if (threads > 0) set_num_threads(threads);
    apply::ApplyRequest req = apply::make_request(options);
    apply::set_augment(req, options.augment, m.model->spec().scheme.ndim);
    apply::set_lazy_defaults(req, options, m.model->spec());
    const apply::LabelInfo info = apply::label_info(m.model->spec(), req);
    apply::InferInput in = apply::input_from_volumes(*m.model, vols, names);
    apply::Prediction pred = apply::predict(*m.model, in, req);
    if (m.model->spec().scheme.candidate_sampling.enabled()) apply::classify_prediction(pred, *m.model, req.ce_threshold);
    in.data = Tensor();
    out = apply::make_output(pred, req.out_type, info);
  }
  const Eigen::Matrix4d oa = out.affine();
  return py::make_tuple(volume_array(std::move(out)), affine_array(oa));
}

// ---- train ----------------------------------------------------------------------------------------

py::dict train_model(const py::object& config, bool config_is_path, const std::string& dataset, const std::string& out,
               const py::object& on_line, const std::string& device, int threads, int64_t seed, bool resume,
               bool quiet) {
  apply::TrainRequest req;
  if (config_is_path) req.config_file = config.cast<std::string>();
  else {
    try {
      req.config = nlohmann::json::parse(config.cast<std::string>());
    } catch (const nlohmann::json::exception& e) {
      throw std::invalid_argument(std::string("config: not valid JSON (") + e.what() + ")");
    }
  }
  req.dataset = dataset;
  req.out = out;
  req.device = cli::device_option(device);
  req.threads = threads;
  req.seed = seed;
  req.resume = resume;
  req.quiet = quiet;
  PyObject* cb = on_line.ptr();  // kept alive by the caller; called with the GIL held
  req.on_iteration = [cb](const std::string& line) {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();  // Ctrl-C stops the training
    py::object r = py::reinterpret_borrow<py::object>(cb)(line);
    return r.cast<bool>();
  };
  apply::TrainOutcome o;
  {
    py::gil_scoped_release nogil;
    o = apply::train_command(req);
  }
  py::dict d;
  d["iterations"] = o.result.iterations;
  d["seconds"] = o.result.seconds;
  d["last_loss"] = o.result.last_loss;
  d["validation_dice"] = o.result.validation_dice;
  d["thresholds"] = o.result.thresholds;
  d["model"] = out;
  d["curves"] = o.curves.string();
  return d;
}

// ---- patch ops ------------------------------------------------------------------------------------

Interp parse_interp(const std::string& s) {
  if (s == "nearest" || s == "NN") return Interp::nearest;
  if (s == "linear" || s == "lin") return Interp::linear;
  throw std::invalid_argument("interp '" + s + "': expected nearest or linear");
}

Window parse_window(const std::string& s) {
  if (s == "flat") return Window::flat;
  if (s == "cos") return Window::cos;
  if (s == "cos2") return Window::cos2;
  throw std::invalid_argument("window '" + s + "': expected flat, cos or cos2");
}

// The kernel matrices (patch voxel -> array voxel, array axis order) of patch affines (P, 4, 4) over the
// grid of `affine`.
Tensor patch_mats(const py::array& patches, const Eigen::Matrix4d& affine, int ndim) {
  auto p = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(patches);
  if (!p || p.ndim() != 3 || p.shape(1) != 4 || p.shape(2) != 4 || p.shape(0) < 1)
    throw std::invalid_argument("patches: expected patch affines of shape (P, 4, 4)");
  const Eigen::Matrix4d inv = affine.inverse();
  std::vector<float> m;
  for (py::ssize_t i = 0; i < p.shape(0); ++i) {
    Eigen::Matrix4d Ai;
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) Ai(r, c) = p.at(i, r, c);
    if (!Ai.allFinite()) throw std::invalid_argument("patches: patch " + std::to_string(i) + " holds NaN or infinite values");
    train::append_kernel_matrix(inv * Ai, ndim, m);
  }
  const int64_t k = ndim + 1;
  return Tensor::from_vector({static_cast<int64_t>(p.shape(0)), k, k}, m);
}

// Size (x, y[, z]) as the kernels' spatial size (array axis order).
std::vector<int64_t> spatial(const std::vector<int64_t>& size, int ndim, const std::string& what) {
  if (static_cast<int>(size.size()) != ndim)
    throw std::invalid_argument(what + ": " + std::to_string(size.size()) + " entries, expected " + std::to_string(ndim));
  for (int64_t s : size)
    if (s < 1) throw std::invalid_argument(what + ": entries must be >= 1");
  return std::vector<int64_t>(size.rbegin(), size.rend());
}

py::array crop(const py::array& image, int ndim, const py::array& affine, const py::array& patches,
               const std::vector<int64_t>& size, const std::string& interp, bool inside_mask) {
  const bool channels = image.ndim() == ndim + 1;
  Tensor src = image_tensor(image, ndim, "image");
  const Tensor mats = patch_mats(patches, to_affine(affine, "affine"), ndim);
  const std::vector<int64_t> s = spatial(size, ndim, "size");
  const Interp mode = parse_interp(interp);
  Tensor out;
  {
    py::gil_scoped_release nogil;
    out = gather_patches(constant(src), mats, s, mode, inside_mask)->value;
  }
  return patches_array(std::move(out), !channels && !inside_mask);
}

py::array stitch(const py::array& data, int ndim, const py::array& patches, const py::array& affine,
                 const std::vector<int64_t>& shape, const std::string& interp, const std::string& window,
                 double sparse_suppression) {
  // data (P, x, y[, z][, C]) float32 -> [P, C, z, y, x]
  if (!py::isinstance<py::array_t<float>>(data))
    throw std::invalid_argument("data: dtype " + dtype_name(data.dtype()) + ", expected float32");
  const py::array& d = data;
  if (d.ndim() != ndim + 1 && d.ndim() != ndim + 2)
    throw std::invalid_argument("data: " + std::to_string(d.ndim()) + " axes, expected (P, x, y" +
                                (ndim == 3 ? ", z" : "") + "[, channels])");
  const bool channels = d.ndim() == ndim + 2;
  const int64_t P = d.shape(0), C = channels ? d.shape(ndim + 1) : 1;
  Shape ps{P, C};
  for (int i = ndim; i >= 1; --i) ps.push_back(d.shape(i));
  Tensor t = Tensor::empty(ps);
  {
    std::vector<py::ssize_t> shape(d.shape(), d.shape() + d.ndim()), strides(d.ndim());
    const int64_t n = t.numel() / (P * C);
    strides[0] = C * n * 4;
    py::ssize_t step = 4;
    for (int i = 1; i <= ndim; ++i) strides[i] = step, step *= d.shape(i);
    if (channels) strides[ndim + 1] = n * 4;
    py::array dst(py::dtype("float32"), shape, strides, t.f32(), py::none());
    py::module_::import("numpy").attr("copyto")(dst, d);
  }
  const Tensor mats = patch_mats(patches, to_affine(affine, "affine"), ndim);
  if (mats.dim(0) != P)
    throw std::invalid_argument("patches: " + std::to_string(mats.dim(0)) + " affines for " + std::to_string(P) + " patches");
  const std::vector<int64_t> s = spatial(shape, ndim, "shape");
  const Interp mode = parse_interp(interp);
  const Window win = parse_window(window);
  if (!(sparse_suppression >= 0)) throw std::invalid_argument("sparse_suppression must be >= 0");
  Tensor y;
  {
    py::gil_scoped_release nogil;
    Shape acc_shape{C};
    acc_shape.insert(acc_shape.end(), s.begin(), s.end());
    Tensor acc = Tensor::zeros(acc_shape), weight = Tensor::zeros(Shape(s.begin(), s.end()));
    stitch_accumulate(t, mats, mode, win, acc, weight);
    y = stitch_normalize(acc, weight, static_cast<float>(sparse_suppression));
  }
  // [C, z, y, x] -> (x, y, z[, C]) without a copy
  std::vector<py::ssize_t> shp(shape.begin(), shape.end());
  std::vector<py::ssize_t> str = f_strides(shp, 4);
  if (channels) {
    str.push_back(str.back() * shp.back());
    shp.push_back(C);
  }
  const float* p = y.f32();
  return py::array(py::dtype("float32"), shp, str, p, owner(std::move(y)));
}

// ---- phantoms ---------------------------------------------------------------------------------------

// The synthetic phantom of `patchwork demo` (train/phantom.h): image float32 and labels uint8, shaped as
// write_phantom writes them ((x, y) for z = 1), and the affine.
py::tuple phantom(const std::vector<int64_t>& dims, const std::vector<double>& spacing, int num_labels, double noise,
                  double bias, uint64_t seed) {
  if (dims.size() != 3 || spacing.size() != 3) throw std::invalid_argument("phantom: dims and spacing take 3 entries");
  PhantomOptions o;
  for (int a = 0; a < 3; ++a) o.dims[a] = dims[a], o.spacing_mm[a] = spacing[a];
  o.num_labels = num_labels, o.noise = noise, o.bias = bias, o.seed = seed;
  Phantom p;
  {
    py::gil_scoped_release nogil;
    p = make_phantom(o);
  }
  std::vector<py::ssize_t> shape{p.dims[0], p.dims[1]};
  if (p.dims[2] > 1) shape.push_back(p.dims[2]);
  std::vector<uint8_t> lab(p.labels.begin(), p.labels.end());
  Eigen::Matrix4d A;
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) A(r, c) = p.affine[r * 4 + c];
  const float* ip = p.image.data();
  const uint8_t* lp = lab.data();
  py::array image(py::dtype("float32"), shape, f_strides(shape, 4), ip, owner(std::move(p.image)));
  py::array labels(py::dtype("uint8"), shape, f_strides(shape, 1), lp, owner(std::move(lab)));
  return py::make_tuple(image, labels, affine_array(A));
}

}  // namespace

PYBIND11_MODULE(_patchwork, m) {
  m.doc() = "Patchwork's C++ engine (see the package patchwork)";
  py::register_exception_translator(&translate);

  m.def("read_nifti", &read_file, py::arg("path"));
  m.def("write_nifti", &write_file, py::arg("path"), py::arg("array"), py::arg("affine"), py::arg("fields"));

  py::class_<apply::ApplyOptions>(m, "ApplyOptions")
      .def(py::init<>())
      .def_readwrite("generate_type", &apply::ApplyOptions::generate_type)
      .def_readwrite("num_patches", &apply::ApplyOptions::num_patches)
      .def_readwrite("branch_factor", &apply::ApplyOptions::branch_factor)
      .def_readwrite("num_chunks", &apply::ApplyOptions::num_chunks)
      .def_readwrite("batch_size", &apply::ApplyOptions::batch_size)
      .def_readwrite("brick", &apply::ApplyOptions::brick)
      .def_readwrite("lazy_fraction", &apply::ApplyOptions::lazy_fraction)
      .def_readwrite("sparse_suppression", &apply::ApplyOptions::sparse_suppression)
      .def_readwrite("sampling_factor", &apply::ApplyOptions::sampling_factor)
      .def_readwrite("attention", &apply::ApplyOptions::attention)
      .def_readwrite("attention_fun", &apply::ApplyOptions::attention_fun)
      .def_readwrite("largest_component", &apply::ApplyOptions::largest_component)
      .def_readwrite("connectivity", &apply::ApplyOptions::connectivity)
      .def_readwrite("label_colors", &apply::ApplyOptions::label_colors)
      .def_readwrite("window", &apply::ApplyOptions::window)
      .def_readwrite("out_type", &apply::ApplyOptions::out_type)
      .def_readwrite("level", &apply::ApplyOptions::level)
      .def_readwrite("augment", &apply::ApplyOptions::augment)
      .def_readwrite("ce_threshold", &apply::ApplyOptions::ce_threshold)
      .def_readwrite("label_names", &apply::ApplyOptions::label_names)
      .def_readwrite("scale_to_original", &apply::ApplyOptions::scale_to_original)
      .def_readwrite("quiet", &apply::ApplyOptions::quiet)
      .def_readwrite("seed", &apply::ApplyOptions::seed);

  py::class_<PyModel, std::shared_ptr<PyModel>>(m, "Model")
      .def_static("load", &load_model, py::arg("path"), py::arg("device") = "")
      .def("info", &model_info)
      .def("apply", &apply_arrays, py::arg("images"), py::arg("affine"), py::arg("options"), py::arg("threads") = 0);

  m.def("train", &train_model, py::arg("config"), py::arg("config_is_path"), py::arg("dataset"), py::arg("out"),
        py::arg("on_line"), py::arg("device"), py::arg("threads"), py::arg("seed"), py::arg("resume"), py::arg("quiet"));
  m.def("crop", &crop, py::arg("image"), py::arg("ndim"), py::arg("affine"), py::arg("patches"), py::arg("size"),
        py::arg("interp"), py::arg("inside_mask"));
  m.def("stitch", &stitch, py::arg("data"), py::arg("ndim"), py::arg("patches"), py::arg("affine"), py::arg("shape"),
        py::arg("interp"), py::arg("window"), py::arg("sparse_suppression"));
  m.def("phantom", &phantom, py::arg("dims"), py::arg("spacing"), py::arg("num_labels"), py::arg("noise"),
        py::arg("bias"), py::arg("seed"));
  m.def("cuda_available", &cuda_available);
}
