#include "io/byte_stream.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "io/atomic_file.h"
#include "io/error.h"

namespace pw {

namespace {

constexpr size_t kChunk = size_t(1) << 18;        // 256 KiB of compressed input / output per step
constexpr size_t kMaxStep = size_t(1) << 30;      // zlib counts in 32-bit unsigned
constexpr uint64_t kDeflateMaxRatio = 1032;       // deflate cannot expand more than 1032:1
constexpr uint64_t kInflateSlack = uint64_t(1) << 20;

class FileSource : public ByteSource {
 public:
  FileSource(std::FILE* f, uint64_t size, std::string name) : ByteSource(std::move(name)), f_(f), size_(size) {}
  ~FileSource() override { std::fclose(f_); }
  size_t read(void* dst, size_t n) override {
    size_t got = std::fread(dst, 1, n, f_);
    if (got < n && std::ferror(f_)) throw InputError(name_ + ": read error: " + std::strerror(errno));
    pos_ += got;
    return got;
  }
  uint64_t max_remaining() const override { return pos_ < size_ ? size_ - pos_ : 0; }

 private:
  std::FILE* f_;
  uint64_t size_, pos_ = 0;
};

class MemorySource : public ByteSource {
 public:
  MemorySource(const uint8_t* b, size_t n, std::string name) : ByteSource(std::move(name)), b_(b), n_(n) {}
  size_t read(void* dst, size_t n) override {
    size_t k = std::min(n, n_ - pos_);
    if (k) std::memcpy(dst, b_ + pos_, k);
    pos_ += k;
    return k;
  }
  uint64_t max_remaining() const override { return n_ - pos_; }

 private:
  const uint8_t* b_;
  size_t n_, pos_ = 0;
};

class GzipSource : public ByteSource {
 public:
  explicit GzipSource(std::unique_ptr<ByteSource> in) : ByteSource(in->name()), in_(std::move(in)), buf_(kChunk) {
    fill(2);
    if (!has_gzip_magic(zs_.next_in, zs_.avail_in)) throw InputError(name_ + ": not a gzip file (no 1f 8b magic)");
    if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK) throw InputError(name_ + ": cannot start gzip decoding");
    started_ = true;
  }
  ~GzipSource() override {
    if (started_) inflateEnd(&zs_);
  }

  size_t read(void* dst, size_t n) override {
    size_t total = 0;
    auto* out = static_cast<uint8_t*>(dst);
    while (total < n && !ended_) {
      size_t step = std::min(n - total, kMaxStep);
      zs_.next_out = out + total;
      zs_.avail_out = static_cast<uInt>(step);
      if (zs_.avail_in == 0) fill(1);
      int ret = inflate(&zs_, Z_NO_FLUSH);
      total += step - zs_.avail_out;
      if (ret == Z_STREAM_END) {
        // Another gzip member may follow (concatenated .gz); anything else after the end is ignored.
        fill(2);
        if (has_gzip_magic(zs_.next_in, zs_.avail_in)) {
          inflateReset(&zs_);
        } else {
          ended_ = true;
        }
      } else if (ret == Z_BUF_ERROR) {
        if (zs_.avail_in == 0 && in_eof_) throw InputError(name_ + ": gzip stream is truncated (unexpected end of file)");
      } else if (ret == Z_DATA_ERROR) {
        throw InputError(name_ + ": corrupt gzip data (" + std::string(zs_.msg ? zs_.msg : "invalid data") + ")");
      } else if (ret == Z_MEM_ERROR) {
        throw InputError(name_ + ": out of memory while inflating");
      } else if (ret != Z_OK) {
        throw InputError(name_ + ": gzip decoding failed (zlib error " + std::to_string(ret) + ")");
      }
    }
    return total;
  }

  uint64_t max_remaining() const override {
    if (ended_) return 0;
    return (in_->max_remaining() + zs_.avail_in) * kDeflateMaxRatio + kInflateSlack;
  }

  // Inflates (and discards) the rest of the stream so that truncation and CRC errors are seen. More than
  // 64 MiB after the image is refused rather than inflated (a gzip bomb would otherwise take minutes).
  void finish() override {
    std::vector<uint8_t> scratch(1 << 16);
    uint64_t trailing = 0;
    while (!ended_) {
      trailing += read(scratch.data(), scratch.size());
      if (trailing > (uint64_t(64) << 20))
        throw InputError(name_ + ": the gzip stream continues for more than 64 MiB after the image data");
    }
  }

 private:
  // Makes at least `want` compressed bytes available (fewer only at the end of the input).
  void fill(size_t want) {
    if (zs_.avail_in >= want || in_eof_) return;
    if (zs_.avail_in > 0) std::memmove(buf_.data(), zs_.next_in, zs_.avail_in);
    size_t have = zs_.avail_in;
    while (have < want && !in_eof_) {
      size_t got = in_->read(buf_.data() + have, buf_.size() - have);
      if (got == 0) in_eof_ = true;
      have += got;
    }
    zs_.next_in = buf_.data();
    zs_.avail_in = static_cast<uInt>(have);
  }

  std::unique_ptr<ByteSource> in_;
  std::vector<uint8_t> buf_;
  z_stream zs_{};
  bool started_ = false, in_eof_ = false, ended_ = false;
};

class FileSink : public ByteSink {
 public:
  explicit FileSink(AtomicFile& out) : out_(out) {}
  void write(const void* data, size_t n) override { out_.write(data, n); }
  void finish() override {}

 private:
  AtomicFile& out_;
};

class GzipSink : public ByteSink {
 public:
  GzipSink(AtomicFile& out, int level) : out_(out), buf_(kChunk) {
    if (deflateInit2(&zs_, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
      throw InputError(out.target().string() + ": cannot start gzip compression");
  }
  ~GzipSink() override { deflateEnd(&zs_); }
  void write(const void* data, size_t n) override {
    auto* p = static_cast<const uint8_t*>(data);
    while (n > 0) {
      size_t step = std::min(n, kMaxStep);
      zs_.next_in = const_cast<Bytef*>(p);
      zs_.avail_in = static_cast<uInt>(step);
      pump(Z_NO_FLUSH);
      p += step;
      n -= step;
    }
  }
  void finish() override {
    zs_.avail_in = 0;
    pump(Z_FINISH);
  }

 private:
  void pump(int flush) {
    int ret;
    do {
      zs_.next_out = buf_.data();
      zs_.avail_out = static_cast<uInt>(buf_.size());
      ret = deflate(&zs_, flush);
      if (ret == Z_STREAM_ERROR) throw InputError(out_.target().string() + ": gzip compression failed");
      out_.write(buf_.data(), buf_.size() - zs_.avail_out);
    } while (zs_.avail_out == 0 || (flush == Z_FINISH && ret != Z_STREAM_END));
  }

  AtomicFile& out_;
  std::vector<uint8_t> buf_;
  z_stream zs_{};
};

}  // namespace

uint64_t ByteSource::skip(uint64_t n) {
  uint8_t scratch[1 << 14];
  uint64_t done = 0;
  while (done < n) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(n - done, sizeof scratch));
    size_t got = read(scratch, want);
    done += got;
    if (got < want) break;
  }
  return done;
}

void ByteSource::read_exact(void* dst, size_t n, const char* what) {
  size_t got = read(dst, n);
  if (got < n)
    throw InputError(name_ + ": " + what + ": file ends after " + std::to_string(got) + " of " + std::to_string(n) +
                     " bytes");
}

std::unique_ptr<ByteSource> open_file_source(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw InputError(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(::fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    std::fclose(f);
    throw InputError(path + ": not a regular file");
  }
  return std::make_unique<FileSource>(f, static_cast<uint64_t>(st.st_size), path);
}

std::unique_ptr<ByteSource> open_memory_source(const uint8_t* bytes, size_t size, std::string name) {
  return std::make_unique<MemorySource>(bytes, size, std::move(name));
}

std::unique_ptr<ByteSource> open_gzip_source(std::unique_ptr<ByteSource> compressed) {
  return std::make_unique<GzipSource>(std::move(compressed));
}

std::unique_ptr<ByteSink> open_file_sink(AtomicFile& out) { return std::make_unique<FileSink>(out); }

std::unique_ptr<ByteSink> open_gzip_sink(AtomicFile& out, int level) {
  return std::make_unique<GzipSink>(out, level);
}

}  // namespace pw
