#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>

#include "common/test_util.h"
#include "engine/safetensors.h"
#include "io/error.h"

using namespace pw;
using namespace pw::test;

namespace {

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The exact bytes Python's safetensors writes for
//   save_file({"a": torch.tensor([[1.0, -2.5], [0.125, 3e38]]), "b": torch.tensor([7, -1, 65536], dtype=torch.int32)},
//             f, metadata={"format": "pt", "patchwork": '{"levels":2}'})
// written out by hand: u64 LE header length 176, the compact JSON header (172 bytes, metadata
// first, tensors in data order) padded with 4 spaces to a multiple of 8, then the data.
std::string python_fixture() {
  std::string b;
  const unsigned char len[8] = {0xb0, 0, 0, 0, 0, 0, 0, 0};
  b.append(reinterpret_cast<const char*>(len), 8);
  b += R"({"__metadata__":{"format":"pt","patchwork":"{\"levels\":2}"},)"
       R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
       R"("b":{"dtype":"I32","shape":[3],"data_offsets":[16,28]}})";
  b += "    ";
  const unsigned char data[28] = {
      0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0, 0x00, 0x00, 0x00, 0x3e, 0xe6, 0xb1, 0x61, 0x7f,  // a
      0x07, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x01, 0x00};                         // b
  b.append(reinterpret_cast<const char*>(data), sizeof data);
  return b;
}

// Expects load_safetensors to throw pw::InputError whose message names the file and contains `reason`.
void check_refused(const fs::path& p, const std::string& reason) {
  INFO("file " << p << ", expected reason: " << reason);
  try {
    load_safetensors(p);
    FAIL("loaded a bad file");
  } catch (const InputError& e) {
    std::string msg = e.what();
    CHECK(msg.find(p.string()) == 0);
    CHECK_MESSAGE(msg.find(reason) != std::string::npos, msg);
  }
}

}  // namespace

TEST_CASE("safetensors: a file written by Python's safetensors (hand-written bytes) loads") {
  fs::path p = temp_dir("safetensors") / "python.safetensors";
  const std::string bytes = python_fixture();
  REQUIRE(bytes.size() == 8 + 176 + 28);
  write_bytes(p, bytes);
  SafetensorsContent c = load_safetensors(p);
  REQUIRE(c.tensors.size() == 2);
  const Tensor& a = c.tensors.at("a");
  CHECK(a.dtype() == DType::f32);
  CHECK(a.shape() == Shape{2, 2});
  CHECK(a.to_vector() == std::vector<float>{1.f, -2.5f, 0.125f, 3e38f});
  const Tensor& b = c.tensors.at("b");
  CHECK(b.dtype() == DType::i32);
  CHECK(b.shape() == Shape{3});
  CHECK(b.i32()[0] == 7);
  CHECK(b.i32()[1] == -1);
  CHECK(b.i32()[2] == 65536);
  CHECK(c.metadata.size() == 2);
  CHECK(c.metadata.at("format") == "pt");
  CHECK(c.metadata.at("patchwork") == R"({"levels":2})");

  // Our writer produces the very same bytes for the same content.
  fs::path q = temp_dir("safetensors") / "ours.safetensors";
  save_safetensors(q, c.tensors, c.metadata);
  CHECK(read_bytes(q) == bytes);
}

TEST_CASE("safetensors: save/load round trip is bit-exact for f32, i32, u8") {
  Tensor f = Tensor::empty({2, 3, 4});
  for (int64_t i = 0; i < f.numel(); ++i) f.f32()[i] = std::ldexp(static_cast<float>(i) - 7.3f, static_cast<int>(i % 40) - 20);
  f.f32()[1] = std::numeric_limits<float>::quiet_NaN();
  f.f32()[2] = -0.f;
  f.f32()[3] = std::numeric_limits<float>::denorm_min();
  Tensor n = Tensor::empty({5}, DType::i32);
  for (int i = 0; i < 5; ++i) n.i32()[i] = (i - 2) * 123456789;
  Tensor u = Tensor::empty({3, 1}, DType::u8);
  for (int i = 0; i < 3; ++i) u.u8()[i] = static_cast<uint8_t>(250 + i);
  Tensor empty = Tensor::empty({0, 4});
  std::map<std::string, Tensor> in{{"conv.weight", f}, {"labels", n}, {"mask", u}, {"nothing", empty}};
  std::map<std::string, std::string> meta{{"patchwork", R"({"blocks":[{"levels":3}],"note":"ü \"quoted\""})"}};
  fs::path p = temp_dir("safetensors") / "round.safetensors";
  save_safetensors(p, in, meta);
  CHECK(read_bytes(p).size() % 8 == (f.nbytes() + n.nbytes() + u.nbytes()) % 8);  // header padded to 8
  SafetensorsContent c = load_safetensors(p);
  CHECK(c.metadata == meta);
  REQUIRE(c.tensors.size() == in.size());
  for (const auto& [name, t] : in) {
    const Tensor& r = c.tensors.at(name);
    INFO(name);
    CHECK(r.dtype() == t.dtype());
    CHECK(r.shape() == t.shape());
    CHECK(std::memcmp(r.raw(), t.raw(), t.nbytes()) == 0);
  }
  // Overwriting an existing file works and leaves no temporary behind.
  save_safetensors(p, {{"x", Tensor::full({1}, 2.f)}});
  CHECK(load_safetensors(p).tensors.at("x").to_vector() == std::vector<float>{2.f});
  int files = 0;
  for (auto& e : fs::directory_iterator(p.parent_path())) files += e.path().filename().string()[0] == '.';
  CHECK(files == 0);
  CHECK_THROWS_AS(save_safetensors(p, {{"__metadata__", f}}), std::invalid_argument);
  CHECK_THROWS_AS(save_safetensors(temp_dir("safetensors") / "no" / "such" / "dir.safetensors", in), InputError);
}

TEST_CASE("safetensors: truncated and corrupt files are refused with a clear error") {
  fs::path dir = temp_dir("safetensors");
  const std::string good = python_fixture();
  auto variant = [&](const std::string& name, const std::string& bytes) {
    fs::path p = dir / name;
    write_bytes(p, bytes);
    return p;
  };
  auto with_header = [&](const std::string& json) {
    std::string h = json;
    h.append((8 - h.size() % 8) % 8, ' ');
    std::string b(8, '\0');
    uint64_t n = h.size();
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    return b + h + good.substr(8 + 176);  // the 28 data bytes
  };
  check_refused(dir / "missing.safetensors", "cannot open");
  check_refused(variant("empty", ""), "truncated");
  check_refused(variant("short", good.substr(0, 5)), "truncated");
  // Cut anywhere inside the header or the data.
  check_refused(variant("cut_header", good.substr(0, 100)), "truncated");
  check_refused(variant("cut_data", good.substr(0, good.size() - 1)), "outside the data section");
  // An absurd header length.
  std::string huge = good;
  huge[7] = '\x7f';
  check_refused(variant("huge", huge), "absurd");
  // Garbage in the header.
  std::string garbage = good;
  garbage[8 + 20] = '\x01';
  check_refused(variant("garbage", garbage), "not valid JSON");
  check_refused(variant("array", with_header("[1,2,3]")), "not a JSON object");
  // Inconsistent entries.
  const std::string b_entry = R"("b":{"dtype":"I32","shape":[3],"data_offsets":[16,28]})";
  check_refused(variant("dtype", with_header(R"({"a":{"dtype":"F16","shape":[2,2],"data_offsets":[0,16]},)" + b_entry + "}")),
                "unsupported dtype F16");
  check_refused(variant("count", with_header(R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]},)" + b_entry + "}")),
                "need 24 bytes");
  check_refused(variant("overlap", with_header(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                                               R"("b":{"dtype":"I32","shape":[3],"data_offsets":[12,24]}})")),
                "overlaps");
  check_refused(variant("gap", with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)" + b_entry + "}")),
                "gap");
  check_refused(variant("tail", with_header(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})")),
                "after the last tensor");
  check_refused(variant("range", with_header(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[16,0]},)" + b_entry + "}")),
                "outside the data section");
  check_refused(variant("negative", with_header(R"({"a":{"dtype":"F32","shape":[-2,2],"data_offsets":[0,16]},)" + b_entry + "}")),
                "not a non-negative integer");
  check_refused(variant("overflow", with_header(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]},)" + b_entry + "}")),
                "larger than the file");
  check_refused(variant("fields", with_header(R"({"a":{"dtype":"F32","shape":[2,2]},)" + b_entry + "}")),
                "expected an object with dtype, shape and data_offsets");
  check_refused(variant("meta", with_header(R"({"__metadata__":{"n":3},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)" + b_entry + "}")),
                "is not a string");
}
