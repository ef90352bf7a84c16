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
  const std::string where = file.string() + ": ";
  auto fail = [&](const std::string& reason) -> InputError { return InputError(where + reason); };

  std::ifstream in(file, std::ios::binary);
  if (!in) throw fail("cannot open the file");
  std::error_code ec;
  const uint64_t size = fs::file_size(file, ec);
  if (ec) throw fail("cannot read the file size: " + ec.message());
  if (size < 8) throw fail("truncated: " + std::to_string(size) + " bytes, not even the 8-byte header length");
  unsigned char len_bytes[8];
  if (!in.read(reinterpret_cast<char*>(len_bytes), 8)) throw fail("cannot read the header length");
  const uint64_t header_len = get_u64_le(len_bytes);
  if (header_len > kMaxHeader) throw fail("header length " + std::to_string(header_len) + " is absurd (over 100 MB)");
  if (header_len > size - 8)
    throw fail("truncated: header length " + std::to_string(header_len) + " but only " + std::to_string(size - 8) +
               " bytes follow");
  std::string text(header_len, '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(header_len))) throw fail("cannot read the header");
  const uint64_t data_size = size - 8 - header_len;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) throw fail("header is not a JSON object");

  SafetensorsContent content;
  struct Range {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw fail("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) throw fail("__metadata__ value '" + m.key() + "' is not a string");
        content.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string tw = "tensor '" + name + "': ";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      throw fail(tw + "expected an object with dtype, shape and data_offsets");
    for (auto k = v.begin(); k != v.end(); ++k)
      if (k.key() != "dtype" && k.key() != "shape" && k.key() != "data_offsets")
        throw fail(tw + "unknown key '" + k.key() + "'");
    if (!v["dtype"].is_string()) throw fail(tw + "dtype is not a string");
    DType dtype;
    if (!parse_dtype(v["dtype"].get<std::string>(), &dtype))
      throw fail(tw + "unsupported dtype " + v["dtype"].get<std::string>() + " (F32, I32, U8 are supported)");
    const nlohmann::json& js = v["shape"];
    if (!js.is_array() || js.size() > 8) throw fail(tw + "shape must be an array of at most 8 sizes");
    Shape shape;
    uint64_t numel = 1;
    for (const auto& d : js) {
      if (!d.is_number_unsigned()) throw fail(tw + "shape holds a value that is not a non-negative integer");
      uint64_t n = d.get<uint64_t>();
      if (n != 0 && numel > data_size / n) throw fail(tw + "shape " + js.dump() + " is larger than the file");
      numel *= n;
      shape.push_back(static_cast<int64_t>(n));
    }
    const nlohmann::json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw fail(tw + "data_offsets must be two non-negative integers");
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > data_size)
      throw fail(tw + "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                 ") outside the data section of " + std::to_string(data_size) + " bytes (truncated file?)");
    const uint64_t nbytes = numel * dtype_size(dtype);
    if (end - begin != nbytes)
      throw fail(tw + "dtype and shape " + js.dump() + " need " + std::to_string(nbytes) + " bytes, data_offsets give " +
                 std::to_string(end - begin));
    ranges.push_back({begin, end, name});
    content.tensors[name] = Tensor::empty(shape, dtype);
  }

  // The ranges must tile the data section: no overlap, no hole, nothing after the last one.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expect = 0;
  for (const Range& r : ranges) {
    if (r.begin < expect) throw fail("tensor '" + r.name + "' overlaps the previous tensor's bytes");
    if (r.begin > expect) throw fail("a gap of unused bytes before tensor '" + r.name + "'");
    expect = r.end;
  }
  if (expect != data_size)
    throw fail(std::to_string(data_size - expect) + " bytes after the last tensor (corrupt header or extra data)");

  const uint64_t data_start = 8 + header_len;
  for (const Range& r : ranges) {
    Tensor& t = content.tensors[r.name];
    in.seekg(static_cast<std::streamoff>(data_start + r.begin));
    if (r.end > r.begin && !in.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(r.end - r.begin)))
      throw fail("cannot read the bytes of tensor '" + r.name + "'");
  }
  return content;
}

}  // namespace pw
