// Byte streams used by the NIfTI reader and writer: a file, a memory buffer, or a gzip stream over
// either, read straight into the caller's buffer (no intermediate full-size copies). Errors throw
// pw::InputError naming `name` (the file) and the reason.
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <zlib.h>

namespace pw {

class AtomicFile;

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to n bytes into dst; returns how many. Fewer than n only at the end of the data.
  virtual size_t read(void* dst, size_t n) = 0;
  // An upper bound on the bytes still to come: exact for plain files and memory, and for gzip the
  // most that the remaining compressed bytes can inflate to (deflate's 1032:1 limit).
  virtual uint64_t max_remaining() const = 0;
  // Called after the last wanted byte: gzip checks the rest of the stream and its CRC here.
  virtual void finish() {}
  // Skips n bytes; returns how many were skipped (fewer only at the end).
  uint64_t skip(uint64_t n);
  // Reads exactly n bytes or throws "<name>: <what>: file ends after K of N bytes".
  void read_exact(void* dst, size_t n, const char* what);
  const std::string& name() const { return name_; }

 protected:
  explicit ByteSource(std::string name) : name_(std::move(name)) {}
  std::string name_;
};

// A plain file. Throws "<file>: cannot open: <reason>".
std::unique_ptr<ByteSource> open_file_source(const std::string& path);
// A memory buffer (not copied: it must outlive the source).
std::unique_ptr<ByteSource> open_memory_source(const uint8_t* bytes, size_t size, std::string name);
// A gzip stream (one or more members) over `compressed`. Throws "<name>: not a gzip file" when the first
// two bytes are not 1f 8b; corrupt or truncated streams and CRC errors throw while reading or in finish().
std::unique_ptr<ByteSource> open_gzip_source(std::unique_ptr<ByteSource> compressed);
// True when the buffer starts with the gzip magic 1f 8b.
inline bool has_gzip_magic(const uint8_t* b, size_t n) { return n >= 2 && b[0] == 0x1f && b[1] == 0x8b; }

// Where the writer's bytes go: straight to an AtomicFile, or through a gzip deflater into it.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void write(const void* data, size_t n) = 0;
  virtual void finish() = 0;  // flushes the compressor (the AtomicFile is committed by its owner)
};
std::unique_ptr<ByteSink> open_file_sink(AtomicFile& out);
// gzip with mtime 0 and no file name (reproducible output); `level` 1 (fast) .. 9 (small).
std::unique_ptr<ByteSink> open_gzip_sink(AtomicFile& out, int level);

}  // namespace pw
