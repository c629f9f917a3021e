/*
 * tcc: support header for building the TVM runtime from the sources that ship in the
 * apache-tvm wheel.  Written for tcc.  In-memory streams over a byte buffer.
 */
#ifndef TCC_TVM_SRC_SUPPORT_BYTES_IO_H_
#define TCC_TVM_SRC_SUPPORT_BYTES_IO_H_

#include <tvm/ffi/error.h>
#include <tvm/ffi/string.h>
#include <tvm/support/io.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace tvm {
namespace support {

/*!
 * \brief Reads from a byte buffer it does not own: the buffer must outlive the stream.
 */
class BytesInStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;

  BytesInStream(const char* data, size_t size) : data_(data), size_(size) {}
  explicit BytesInStream(const std::string& data) : BytesInStream(data.data(), data.size()) {}
  explicit BytesInStream(const ffi::Bytes& data) : BytesInStream(data.data(), data.size()) {}
  // A temporary would be gone before the first read.
  explicit BytesInStream(std::string&&) = delete;
  explicit BytesInStream(ffi::Bytes&&) = delete;

  size_t Read(void* ptr, size_t size) final {
    size_t n = std::min(size, size_ - pos_);
    if (n != 0) std::memcpy(ptr, data_ + pos_, n);
    pos_ += n;
    return n;
  }
  size_t Write(const void*, size_t) final {
    TVM_FFI_THROW(InternalError) << "BytesInStream is read-only";
    return 0;
  }
  /*! \brief Current read offset. */
  size_t Tell() const { return pos_; }
  /*! \brief Move the read offset (clamped to the end). */
  void Seek(size_t pos) { pos_ = std::min(pos, size_); }

 private:
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
};

/*! \brief Appends everything written to a std::string it does not own. */
class BytesOutStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;

  explicit BytesOutStream(std::string* out) : out_(out) {}

  size_t Read(void*, size_t) final {
    TVM_FFI_THROW(InternalError) << "BytesOutStream is write-only";
    return 0;
  }
  size_t Write(const void* ptr, size_t size) final {
    out_->append(static_cast<const char*>(ptr), size);
    return size;
  }

 private:
  std::string* out_;
};

}  // namespace support
}  // namespace tvm

#endif  // TCC_TVM_SRC_SUPPORT_BYTES_IO_H_
