// Reading and writing NIfTI files. The reader checks every size against what the input can hold
// BEFORE allocating, then reads (or inflates) the data straight into the Volume's buffer, which is reserved
// once and filled in 1 MiB steps (memory grows only with data that actually arrive; no copies).
// read_nifti_header stops after the extensions; read_nifti_streaming hands the data out in pieces. All three
// share parse_header (the one header parser) and locate_data (the size checks).
#include "io/nifti.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <new>
#include <stdexcept>

#include "io/atomic_file.h"
#include "io/byte_stream.h"
#include "io/error.h"
#include "io/nifti_header.h"

namespace pw {

namespace fs = std::filesystem;
using namespace nifti_detail;

namespace {

bool host_is_little_endian() {
  const uint16_t one = 1;
  uint8_t b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) != suffix[i]) return false;
  return true;
}

// The 4 magic bytes for a message: printable characters as they are, others as \xNN.
std::string show_magic(const char* m) {
  std::string s;
  for (int i = 0; i < 4; ++i) {
    unsigned char c = static_cast<unsigned char>(m[i]);
    if (c >= 32 && c < 127) {
      s += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      s += buf;
    }
  }
  return s;
}

// Opens the .img(.gz) beside a pair header.
std::unique_ptr<ByteSource> open_pair_image(const std::string& hdr_path) {
  std::string stem = hdr_path;
  if (ends_with(stem, ".gz")) stem.resize(stem.size() - 3);
  if (ends_with(stem, ".hdr")) stem.resize(stem.size() - 4);
  for (const char* ext : {".img", ".IMG", ".img.gz", ".IMG.gz"}) {
    std::string img = stem + ext;
    if (fs::exists(img)) {
      auto src = open_file_source(img);
      return ends_with(img, ".gz") ? open_gzip_source(std::move(src)) : std::move(src);
    }
  }
  throw InputError(hdr_path + ": its image file " + stem + ".img is missing");
}

// Appends up to n bytes from `src` to `buf`, growing it 1 MiB at a time so that memory is used only as data
// arrive (and, after a buf.reserve(n), without any copy). Returns how many bytes were appended.
size_t read_growing(ByteSource& src, std::vector<uint8_t>& buf, size_t n) {
  constexpr size_t kStep = size_t(1) << 20;
  size_t total = 0;
  while (total < n) {
    const size_t done = buf.size(), step = std::min(kStep, n - total);
    buf.resize(done + step);
    const size_t got = src.read(buf.data() + done, step);
    total += got;
    if (got < step) {
      buf.resize(done + got);
      break;
    }
  }
  return total;
}

// Reads extensions from `src` until `limit` bytes from the current position are used (or, when
// `limit` is unbounded, until the stream ends). Stops, as nifti1_io does, at an esize that is < 16,
// not a multiple of 16, or larger than what is left. Returns the bytes consumed.
uint64_t read_extensions(ByteSource& src, uint64_t limit, bool swapped, std::vector<NiftiExtension>& out) {
  uint64_t used = 0;
  while (limit - used >= 8) {
    uint8_t eh[8];
    size_t got = src.read(eh, 8);
    used += got;
    if (got < 8) break;
    const int32_t esize = load<int32_t>(eh, swapped);
    const int32_t ecode = load<int32_t>(eh + 4, swapped);
    if (esize < 16 || esize % 16 != 0 || static_cast<uint64_t>(esize) - 8 > limit - used ||
        static_cast<uint64_t>(esize) - 8 > src.max_remaining())
      break;
    NiftiExtension e;
    e.code = ecode;
    const size_t payload = static_cast<size_t>(esize) - 8;
    const size_t n = read_growing(src, e.data, payload);  // no reserve: a lying esize costs nothing
    used += n;
    if (n < payload) break;  // the stream ended inside it: not an extension
    out.push_back(std::move(e));
  }
  return used;
}

// A parsed header, checked, with the source of its data (positioned just after the header and extensions).
struct ParsedHeader {
  NiftiHeader h;
  bool swapped = false;
  int vsize = 0;                     // bytes per voxel
  uint64_t count = 0, bytes = 0;     // voxels and data bytes
  std::unique_ptr<ByteSource> img;   // the .img of a pair
  ByteSource* data_src = nullptr;    // `src`, or img
  uint64_t skip_to_data = 0;         // bytes between the current position of data_src and the data
  std::string dims_text;             // "10x9x7", for messages
};

// The error for file `name`: "name: why".
InputError header_error(const std::string& name, const std::string& why) { return InputError(name + ": " + why); }

// Reads the 348- or 540-byte header into h: its version (1, 2) and byte order from sizeof_hdr.
int read_raw_header(ByteSource& src, const std::string& name, uint8_t* h, bool& swapped) {
  const size_t got = src.read(h, kN1HeaderSize);
  if (got == 0) throw header_error(name, "empty file");
  if (got < 4) throw header_error(name, "file ends after " + std::to_string(got) + " bytes, inside the NIfTI header");
  int version = 0;
  for (bool sw : {false, true}) {
    const int32_t s = load<int32_t>(h, sw);
    if (s == 348) version = 1, swapped = sw;
    if (s == 540) version = 2, swapped = sw;
  }
  if (version == 0)
    throw header_error(name, "sizeof_hdr is " + std::to_string(load<int32_t>(h, false)) +
                                 " (must be 348 for NIfTI-1 or 540 for NIfTI-2, in either byte order)");
  const size_t hsize = version == 1 ? kN1HeaderSize : kN2HeaderSize;
  if (got < kN1HeaderSize)
    throw header_error(name, "file ends after " + std::to_string(got) + " bytes, inside the " +
                                 std::to_string(hsize) + "-byte header");
  if (version == 2) src.read_exact(h + kN1HeaderSize, kN2HeaderSize - kN1HeaderSize, "NIfTI-2 header");
  return version;
}

// The dims (v.ndim, v.dims, p.dims_text) and the voxel count, checked.
uint64_t check_dims(const RawHeader& raw, const std::string& name, NiftiHeader& v, ParsedHeader& p) {
  if (raw.dim[0] < 1 || raw.dim[0] > 7)
    throw header_error(name, "dim[0] = " + std::to_string(raw.dim[0]) + " (must be 1..7)");
  v.ndim = static_cast<int>(raw.dim[0]);
  for (int i = 1; i <= v.ndim; ++i) {
    if (raw.dim[i] < 1)
      throw header_error(name, "dim[" + std::to_string(i) + "] = " + std::to_string(raw.dim[i]) +
                                   " (dims must be >= 1)");
    v.dims[i - 1] = raw.dim[i];
  }
  for (int i = 0; i < v.ndim; ++i) p.dims_text += (i ? "x" : "") + std::to_string(v.dims[i]);
  uint64_t count = 1;
  for (int i = 0; i < v.ndim; ++i)
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(v.dims[i]), &count))
      throw header_error(name, "dims " + p.dims_text + ": the voxel count overflows 64 bits");
  return count;
}

// Bytes per voxel of a supported datatype.
int check_datatype(const NiftiHeader& v, const std::string& name) {
  const int vsize = nifti_datatype_size(v.datatype);
  if (vsize != 0) return vsize;
  const std::string dt = nifti_datatype_name(v.datatype);
  if (dt == "unknown") throw header_error(name, "unknown datatype code " + std::to_string(v.datatype));
  throw header_error(name, "unsupported datatype " + dt + " (code " + std::to_string(v.datatype) + ")");
}

// A non-finite sform. nifti_clib (nifti_convert_nhdr2nim) copies srow_x/y/z into sto_xyz unchecked whenever
// sform_code > 0 (unlike quatern_* and qoffset_*, which it passes through FIXED_FLOAT) and never falls back
// to the qform: the sform stays the image's geometry and the NaN reaches every world coordinate. Patchwork
// does the same selection (io/nifti.h) but refuses the file here, naming it, instead of failing later with
// a "singular affine"; it does not silently switch to a qform that the file says is not the one to use.
void check_sform(const NiftiHeader& v, const std::string& name) {
  if (v.sform_code <= 0) return;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c)
      if (!std::isfinite(v.srow[r][c])) {
        const double x = v.srow[r][c];
        throw header_error(name, "the sform (sform_code " + std::to_string(v.sform_code) +
                                     ") holds a non-finite value: srow_" + std::string(1, "xyz"[r]) + "[" +
                                     std::to_string(c) + "] = " + (std::isnan(x) ? "nan" : x > 0 ? "inf" : "-inf") +
                                     " (fix the sform, or set sform_code to 0 to use the qform)");
      }
}

// vox_offset as a byte offset, checked.
uint64_t check_vox_offset(const RawHeader& raw, const std::string& name, NiftiHeader& v) {
  if (!std::isfinite(raw.vox_offset) || raw.vox_offset < 0 || raw.vox_offset != std::floor(raw.vox_offset) ||
      raw.vox_offset > 4.0e18)
    throw header_error(name, "vox_offset " + std::to_string(raw.vox_offset) + " is not a valid byte offset");
  v.vox_offset = static_cast<int64_t>(raw.vox_offset);
  return static_cast<uint64_t>(v.vox_offset);
}

// A single file: the extensions between the header (hsize bytes) and vox_offset, and the bytes left before
// the data.
void locate_single(ByteSource& src, const std::string& name, size_t hsize, uint64_t vox_offset, ParsedHeader& p) {
  if (vox_offset < hsize)
    throw header_error(name, "vox_offset " + std::to_string(vox_offset) + " lies inside the " +
                                 std::to_string(hsize) + "-byte header");
  if (vox_offset - hsize > src.max_remaining())
    throw header_error(name, "vox_offset " + std::to_string(vox_offset) + " is past the end of the file");
  uint64_t pos = hsize;
  if (vox_offset >= hsize + 4) {
    uint8_t extender[4];
    src.read_exact(extender, 4, "extender");
    pos += 4;
    if (extender[0] != 0) pos += read_extensions(src, vox_offset - pos, p.swapped, p.h.extensions);
  }
  p.data_src = &src;
  p.skip_to_data = vox_offset - pos;
}

// A header/image pair: the extensions after the header, and the .img next to pair_path as the data source.
void locate_pair(ByteSource& src, const std::string& name, const std::string& pair_path, const char* magic,
                 uint64_t vox_offset, ParsedHeader& p) {
  if (pair_path.empty())
    throw header_error(name, "a header/image pair (magic \"" + std::string(magic) + "\") needs its .img file");
  uint8_t extender[4];
  if (src.read(extender, 4) == 4 && extender[0] != 0) read_extensions(src, UINT64_MAX, p.swapped, p.h.extensions);
  p.img = open_pair_image(pair_path);
  p.data_src = p.img.get();
  p.skip_to_data = vox_offset;
}

// Parses a NIfTI header and its extensions from `src`; for a pair, opens the .img next to `pair_path`
// (empty: pairs are refused). `name` prefixes every error. Reads nothing of the data.
void parse_header(ByteSource& src, const std::string& name, const std::string& pair_path, ParsedHeader& p) {
  uint8_t h[kN2HeaderSize];
  bool swapped = false;
  const int version = read_raw_header(src, name, h, swapped);
  NiftiHeader& v = p.h;
  RawHeader raw;
  decode_header(h, version, swapped, v, raw);
  v.big_endian_on_disk = swapped == host_is_little_endian();
  p.swapped = swapped;

  const char* single = version == 1 ? "n+1" : "n+2";
  const char* pair = version == 1 ? "ni1" : "ni2";
  const bool is_single = std::memcmp(raw.magic, single, 4) == 0;
  if (!is_single && std::memcmp(raw.magic, pair, 4) != 0)
    throw header_error(name, "bad magic \"" + show_magic(raw.magic) + "\" (must be \"" + single + "\" or \"" +
                                 pair + "\")");
  const uint64_t count = check_dims(raw, name, v, p);
  const int vsize = check_datatype(v, name);
  check_sform(v, name);
  uint64_t bytes;
  if (__builtin_mul_overflow(count, static_cast<uint64_t>(vsize), &bytes) || bytes > (uint64_t(1) << 62))
    throw header_error(name, "dims " + p.dims_text + " of " + nifti_datatype_name(v.datatype) +
                                 ": the data size overflows 64 bits");
  p.vsize = vsize, p.count = count, p.bytes = bytes;
  const uint64_t vox_offset = check_vox_offset(raw, name, v);
  if (is_single)
    locate_single(src, name, version == 1 ? kN1HeaderSize : kN2HeaderSize, vox_offset, p);
  else
    locate_pair(src, name, pair_path, pair, vox_offset, p);
}

// Checks that vox_offset and the data fit in what the data source can still hold (exact for plain files,
// an upper bound for gzip). With `move`, first skips to the data (reading, for gzip); without it, reads
// nothing.
void locate_data(ParsedHeader& p, bool move) {
  ByteSource& d = *p.data_src;
  const std::string vox_offset = std::to_string(p.h.vox_offset);
  uint64_t avail = d.max_remaining();
  if (p.skip_to_data > avail || (move && d.skip(p.skip_to_data) < p.skip_to_data))
    throw InputError(d.name() + ": vox_offset " + vox_offset + " is past the end of the file");
  avail = move ? d.max_remaining() : avail - p.skip_to_data;
  if (p.bytes > avail)
    throw InputError(d.name() + ": file is truncated: the data need " + std::to_string(p.bytes) + " bytes (" +
                     p.dims_text + " " + nifti_datatype_name(p.h.datatype) + ") but at most " +
                     std::to_string(avail) + " remain after vox_offset " + vox_offset);
}

// After the last data byte: gzip checks the rest of its stream and CRC.
void finish_sources(ByteSource& src, ParsedHeader& p) {
  p.data_src->finish();
  if (p.data_src != &src) src.finish();
}

InputError truncated_error(const ParsedHeader& p, uint64_t found) {
  return InputError(p.data_src->name() + ": file is truncated: the data need " + std::to_string(p.bytes) +
                    " bytes after vox_offset " + std::to_string(p.h.vox_offset) + ", found " + std::to_string(found));
}

// Parses a whole NIfTI stream (header, extensions, data) into a Volume.
Volume parse(ByteSource& src, const std::string& name, const std::string& pair_path) {
  ParsedHeader p;
  parse_header(src, name, pair_path, p);
  locate_data(p, true);
  Volume v;
  static_cast<NiftiHeader&>(v) = std::move(p.h);
  const std::string& dname = p.data_src->name();
  // Reserve the address space once (no copies later), then fill it 1 MiB at a time: pages are touched only
  // as data arrive, so a gzip whose header claims more than its stream holds fails before using the memory.
  try {
    v.data.reserve(static_cast<size_t>(p.bytes));
  } catch (const std::bad_alloc&) {
    throw InputError(dname + ": cannot allocate " + std::to_string(p.bytes) + " bytes for the data");
  }
  const size_t n = read_growing(*p.data_src, v.data, static_cast<size_t>(p.bytes));
  if (n < p.bytes) throw truncated_error(p, n);
  finish_sources(src, p);
  if (p.swapped && v.datatype != nifti_dt::rgb24) swap_bytes(v.data.data(), static_cast<size_t>(p.count), p.vsize);
  return v;
}

// The header file of `file` (the .hdr of an .img) and its source (inflating a .gz); `pair_path` is set
// when the header is a .hdr (its .img is looked for next to it).
std::unique_ptr<ByteSource> open_header(const fs::path& file, std::string& header_path, std::string& pair_path) {
  const std::string path = file.string();
  header_path = path;
  // An .img given for a pair: read its .hdr (which then finds this .img again).
  if (ends_with(path, ".img") || ends_with(path, ".img.gz")) {
    std::string stem = path.substr(0, path.size() - (ends_with(path, ".gz") ? 7 : 4));
    header_path.clear();
    for (const char* ext : {".hdr", ".HDR", ".hdr.gz", ".HDR.gz"})
      if (fs::exists(stem + ext)) {
        header_path = stem + ext;
        break;
      }
    if (header_path.empty()) throw InputError(path + ": its header file " + stem + ".hdr is missing");
  }
  auto src = open_file_source(header_path);
  if (ends_with(header_path, ".gz")) src = open_gzip_source(std::move(src));
  const bool pair_name = ends_with(header_path, ".hdr") || ends_with(header_path, ".hdr.gz");
  pair_path = pair_name ? header_path : std::string();
  return src;
}

}  // namespace

Volume read_nifti(const fs::path& file) {
  std::string header_path, pair_path;
  auto src = open_header(file, header_path, pair_path);
  return parse(*src, header_path, pair_path);
}

NiftiHeader read_nifti_header(const fs::path& file) {
  std::string header_path, pair_path;
  auto src = open_header(file, header_path, pair_path);
  ParsedHeader p;
  parse_header(*src, header_path, pair_path, p);
  locate_data(p, false);
  return std::move(p.h);
}

NiftiHeader read_nifti_streaming(const fs::path& file, const NiftiDataConsumer& consume) {
  std::string header_path, pair_path;
  auto src = open_header(file, header_path, pair_path);
  ParsedHeader p;
  parse_header(*src, header_path, pair_path, p);
  locate_data(p, true);
  // Whole voxels per piece: 2^18 of them (256 KiB .. 2 MiB).
  std::vector<uint8_t> buf(static_cast<size_t>(p.vsize) << 18);
  uint64_t done = 0;
  while (done < p.bytes) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), p.bytes - done));
    const size_t n = p.data_src->read(buf.data(), want);
    if (n < want) throw truncated_error(p, done + n);
    if (p.swapped && p.h.datatype != nifti_dt::rgb24) swap_bytes(buf.data(), n / p.vsize, p.vsize);
    consume(p.h, buf.data(), n);
    done += n;
  }
  finish_sources(*src, p);
  return std::move(p.h);
}

Volume read_nifti_memory(const uint8_t* bytes, size_t size, const std::string& name) {
  auto src = open_memory_source(bytes, size, name);
  if (has_gzip_magic(bytes, size)) src = open_gzip_source(std::move(src));
  return parse(*src, name, std::string());
}

void write_nifti(const Volume& v, const fs::path& file) {
  const std::string path = file.string();
  const bool gz = ends_with(path, ".nii.gz");
  if (!gz && !ends_with(path, ".nii"))
    throw std::invalid_argument(path + ": the output name must end in .nii or .nii.gz");
  const int vsize = nifti_datatype_size(v.datatype);
  if (vsize == 0)
    throw std::invalid_argument(path + ": cannot write datatype " + nifti_datatype_name(v.datatype));
  if (v.ndim < 1 || v.ndim > 7) throw std::invalid_argument(path + ": ndim " + std::to_string(v.ndim) + " (must be 1..7)");
  int version = 1;
  for (int i = 0; i < v.ndim; ++i) {
    if (v.dims[i] < 1) throw std::invalid_argument(path + ": dim " + std::to_string(i + 1) + " is < 1");
    if (v.dims[i] > 32767) version = 2;
  }
  if (static_cast<uint64_t>(v.num_voxels()) * static_cast<uint64_t>(vsize) != v.data.size())
    throw std::invalid_argument(path + ": the data hold " + std::to_string(v.data.size()) + " bytes, the dims need " +
                                std::to_string(v.num_voxels() * vsize));
  for (const auto& e : v.extensions)
    if (e.data.size() > (size_t(1) << 30)) throw std::invalid_argument(path + ": an extension is larger than 1 GiB");

  const size_t hsize = version == 1 ? kN1HeaderSize : kN2HeaderSize;
  int64_t vox_offset = static_cast<int64_t>(hsize) + 4;
  for (const auto& e : v.extensions) vox_offset += e.disk_size();

  AtomicFile out(file);
  auto sink = gz ? open_gzip_sink(out, 1) : open_file_sink(out);
  const std::vector<uint8_t> header = encode_header(v, version, vox_offset);
  sink->write(header.data(), header.size());
  const uint8_t extender[4] = {static_cast<uint8_t>(v.extensions.empty() ? 0 : 1), 0, 0, 0};
  sink->write(extender, 4);
  for (const auto& e : v.extensions) {
    const int32_t esize = static_cast<int32_t>(e.disk_size());
    sink->write(&esize, 4);
    sink->write(&e.code, 4);
    sink->write(e.data.data(), e.data.size());
    const uint8_t zeros[16] = {};
    sink->write(zeros, static_cast<size_t>(esize) - 8 - e.data.size());
  }
  sink->write(v.data.data(), v.data.size());
  sink->finish();
  out.commit();
}

}  // namespace pw
