#include "engine/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

#include "io/atomic_file.h"
#include "io/error.h"

namespace pw {
namespace {

namespace fs = std::filesystem;

// The largest header accepted (the reference implementation's limit).
constexpr uint64_t kMaxHeader = 100u << 20;

const char* safetensors_dtype(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::i32: return "I32";
    case DType::u8: return "U8";
  }
  return "?";
}

bool parse_dtype(const std::string& s, DType* t) {
  if (s == "F32") *t = DType::f32;
  else if (s == "I32") *t = DType::i32;
  else if (s == "U8") *t = DType::u8;
  else return false;
  return true;
}

void put_u64_le(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

uint64_t get_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// The host is little-endian (checked once): tensor bytes are written and read as they are.
bool host_is_little_endian() {
  const uint32_t one = 1;
  unsigned char b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

// A file being loaded: its stream, the prefix of its errors, and the data section's size.
struct Loading {
  std::ifstream in;
  std::string where;  // "FILE: "
  uint64_t header_len = 0, data_size = 0;
  InputError fail(const std::string& reason) const { return InputError(where + reason); }
};

// One tensor's bytes in the data section.
struct Range {
  uint64_t begin, end;
  std::string name;
};

// Opens the file and reads its JSON header (sizes checked against the file's).
nlohmann::json read_header(const fs::path& file, Loading& f) {
  f.where = file.string() + ": ";
  f.in.open(file, std::ios::binary);
  if (!f.in) throw f.fail("cannot open the file");
  std::error_code ec;
  const uint64_t size = fs::file_size(file, ec);
  if (ec) throw f.fail("cannot read the file size: " + ec.message());
  if (size < 8) throw f.fail("truncated: " + std::to_string(size) + " bytes, not even the 8-byte header length");
  unsigned char len_bytes[8];
  if (!f.in.read(reinterpret_cast<char*>(len_bytes), 8)) throw f.fail("cannot read the header length");
  f.header_len = get_u64_le(len_bytes);
  if (f.header_len > kMaxHeader)
    throw f.fail("header length " + std::to_string(f.header_len) + " is absurd (over 100 MB)");
  if (f.header_len > size - 8)
    throw f.fail("truncated: header length " + std::to_string(f.header_len) + " but only " +
                 std::to_string(size - 8) + " bytes follow");
  std::string text(f.header_len, '\0');
  if (!f.in.read(text.data(), static_cast<std::streamsize>(f.header_len))) throw f.fail("cannot read the header");
  f.data_size = size - 8 - f.header_len;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw f.fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) throw f.fail("header is not a JSON object");
  return header;
}

// The string values of __metadata__.
void read_metadata(const nlohmann::json& v, const Loading& f, std::map<std::string, std::string>& out) {
  if (!v.is_object()) throw f.fail("__metadata__ is not an object");
  for (auto m = v.begin(); m != v.end(); ++m) {
    if (!m.value().is_string()) throw f.fail("__metadata__ value '" + m.key() + "' is not a string");
    out[m.key()] = m.value().get<std::string>();
  }
}

// Tensor `name`'s entry {dtype, shape, data_offsets}: its (empty) tensor and its range, checked against the
// data section.
Range read_entry(const std::string& name, const nlohmann::json& v, const Loading& f, Tensor& t) {
  const std::string tw = "tensor '" + name + "': ";
  if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
    throw f.fail(tw + "expected an object with dtype, shape and data_offsets");
  for (auto k = v.begin(); k != v.end(); ++k)
    if (k.key() != "dtype" && k.key() != "shape" && k.key() != "data_offsets")
      throw f.fail(tw + "unknown key '" + k.key() + "'");
  if (!v["dtype"].is_string()) throw f.fail(tw + "dtype is not a string");
  DType dtype;
  if (!parse_dtype(v["dtype"].get<std::string>(), &dtype))
    throw f.fail(tw + "unsupported dtype " + v["dtype"].get<std::string>() + " (F32, I32, U8 are supported)");
  const nlohmann::json& js = v["shape"];
  if (!js.is_array() || js.size() > 8) throw f.fail(tw + "shape must be an array of at most 8 sizes");
  Shape shape;
  uint64_t numel = 1;
  for (const auto& d : js) {
    if (!d.is_number_unsigned()) throw f.fail(tw + "shape holds a value that is not a non-negative integer");
    uint64_t n = d.get<uint64_t>();
    if (n != 0 && numel > f.data_size / n) throw f.fail(tw + "shape " + js.dump() + " is larger than the file");
    numel *= n;
    shape.push_back(static_cast<int64_t>(n));
  }
  const nlohmann::json& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    throw f.fail(tw + "data_offsets must be two non-negative integers");
  const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
  if (begin > end || end > f.data_size)
    throw f.fail(tw + "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                 ") outside the data section of " + std::to_string(f.data_size) + " bytes (truncated file?)");
  const uint64_t nbytes = numel * dtype_size(dtype);
  if (end - begin != nbytes)
    throw f.fail(tw + "dtype and shape " + js.dump() + " need " + std::to_string(nbytes) +
                 " bytes, data_offsets give " + std::to_string(end - begin));
  t = Tensor::empty(shape, dtype);
  return {begin, end, name};
}

// The ranges must tile the data section: no overlap, no hole, nothing after the last one. Sorts them.
void check_tiling(std::vector<Range>& ranges, const Loading& f) {
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expect = 0;
  for (const Range& r : ranges) {
    if (r.begin < expect) throw f.fail("tensor '" + r.name + "' overlaps the previous tensor's bytes");
    if (r.begin > expect) throw f.fail("a gap of unused bytes before tensor '" + r.name + "'");
    expect = r.end;
  }
  if (expect != f.data_size)
    throw f.fail(std::to_string(f.data_size - expect) + " bytes after the last tensor (corrupt header or extra data)");
}

}  // namespace


void save_safetensors(const fs::path& file, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  if (!host_is_little_endian()) throw std::runtime_error("save_safetensors: big-endian hosts are not supported");
  // Data order as Python's safetensors: larger element size first, then by name (keeps alignment).
  std::vector<std::pair<std::string, Tensor>> order;
  for (const auto& [name, t] : tensors) {
    if (name.empty() || name == "__metadata__")
      throw std::invalid_argument("save_safetensors: invalid tensor name '" + name + "'");
    if (!t.defined()) throw std::invalid_argument("save_safetensors: tensor '" + name + "' is undefined");
    order.emplace_back(name, t.cpu());
  }
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return dtype_size(a.second.dtype()) > dtype_size(b.second.dtype());
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : order) {
    nlohmann::ordered_json entry;
    entry["dtype"] = safetensors_dtype(t.dtype());
    entry["shape"] = t.shape();
    entry["data_offsets"] = {offset, offset + t.nbytes()};
    header[name] = entry;
    offset += t.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  AtomicFile out(file);
  unsigned char len[8];
  put_u64_le(len, text.size());
  out.write(len, 8);
  out.write(text.data(), text.size());
  for (const auto& [name, t] : order) out.write(t.raw(), t.nbytes());
  out.commit();
}

SafetensorsContent load_safetensors(const fs::path& file) {
  if (!host_is_little_endian()) throw std::runtime_error("load_safetensors: big-endian hosts are not supported");
  Loading f;
  const nlohmann::json header = read_header(file, f);
  SafetensorsContent content;
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__")
      read_metadata(it.value(), f, content.metadata);
    else
      ranges.push_back(read_entry(it.key(), it.value(), f, content.tensors[it.key()]));
  }
  check_tiling(ranges, f);
  const uint64_t data_start = 8 + f.header_len;
  for (const Range& r : ranges) {
    Tensor& t = content.tensors[r.name];
    f.in.seekg(static_cast<std::streamoff>(data_start + r.begin));
    if (r.end > r.begin && !f.in.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(r.end - r.begin)))
      throw f.fail("cannot read the bytes of tensor '" + r.name + "'");
  }
  return content;
}

}  // namespace pw
