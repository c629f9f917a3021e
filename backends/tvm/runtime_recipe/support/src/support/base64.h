/*
 * tcc: support header for building the TVM runtime from the sources that ship in the
 * apache-tvm wheel.  Written for tcc.  Standard base64 (RFC 4648, '=' padding) as streams.
 */
#ifndef TCC_TVM_SRC_SUPPORT_BASE64_H_
#define TCC_TVM_SRC_SUPPORT_BASE64_H_

#include <tvm/ffi/error.h>
#include <tvm/support/io.h>

#include <cctype>
#include <cstdint>
#include <string>

namespace tvm {
namespace support {
namespace base64 {

inline const char* Alphabet() {
  return "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}

/*! \brief 6-bit value of a base64 character, or -1. */
inline int Decode(int c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace base64

/*! \brief Encodes what is written to it into the wrapped stream; call Finish() at the end. */
class Base64OutStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;

  explicit Base64OutStream(Stream* out) : out_(out) {}

  size_t Read(void*, size_t) final {
    TVM_FFI_THROW(InternalError) << "Base64OutStream is write-only";
    return 0;
  }
  size_t Write(const void* ptr, size_t size) final {
    const uint8_t* p = static_cast<const uint8_t*>(ptr);
    for (size_t i = 0; i < size; ++i) {
      buf_[nbuf_++] = p[i];
      if (nbuf_ == 3) EmitGroup();
    }
    return size;
  }
  /*! \brief Flush the last partial group with '=' padding (and an optional end character). */
  void Finish(int end_char = -1) {
    if (nbuf_ != 0) EmitGroup();
    if (!pending_.empty()) {
      out_->Write(static_cast<const void*>(pending_.data()), pending_.size());
      pending_.clear();
    }
    if (end_char >= 0) {
      char c = static_cast<char>(end_char);
      out_->Write(static_cast<const void*>(&c), 1);
    }
  }

 private:
  void EmitGroup() {
    const char* a = base64::Alphabet();
    uint32_t v = (uint32_t(buf_[0]) << 16) | (nbuf_ > 1 ? uint32_t(buf_[1]) << 8 : 0) |
                 (nbuf_ > 2 ? uint32_t(buf_[2]) : 0);
    pending_.push_back(a[(v >> 18) & 63]);
    pending_.push_back(a[(v >> 12) & 63]);
    pending_.push_back(nbuf_ > 1 ? a[(v >> 6) & 63] : '=');
    pending_.push_back(nbuf_ > 2 ? a[v & 63] : '=');
    nbuf_ = 0;
    if (pending_.size() >= 4096) {
      out_->Write(static_cast<const void*>(pending_.data()), pending_.size());
      pending_.clear();
    }
  }

  Stream* out_;
  uint8_t buf_[3] = {0, 0, 0};
  int nbuf_ = 0;
  std::string pending_;
};

/*! \brief Decodes base64 text read from the wrapped stream; call InitPosition() first. */
class Base64InStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;

  explicit Base64InStream(Stream* in) : in_(in) {}

  /*! \brief Skip leading whitespace before the encoded text. */
  void InitPosition() {
    int c;
    do {
      c = NextRaw();
    } while (c >= 0 && std::isspace(c));
    peek_ = c;
  }

  size_t Read(void* ptr, size_t size) final {
    uint8_t* out = static_cast<uint8_t*>(ptr);
    size_t n = 0;
    while (n < size) {
      if (nout_ == pos_out_) {
        if (!DecodeGroup()) break;
      }
      out[n++] = outbuf_[pos_out_++];
    }
    return n;
  }
  size_t Write(const void*, size_t) final {
    TVM_FFI_THROW(InternalError) << "Base64InStream is read-only";
    return 0;
  }

 private:
  int NextRaw() {
    if (peek_ != kNoPeek) {
      int c = peek_;
      peek_ = kNoPeek;
      return c;
    }
    char ch;
    return in_->Read(static_cast<void*>(&ch), 1) == 1 ? static_cast<unsigned char>(ch) : -1;
  }
  // Decode the next 4-character group into outbuf_; false at the end of the data.
  bool DecodeGroup() {
    if (done_) return false;
    int vals[4];
    int nchar = 0;
    while (nchar < 4) {
      int c = NextRaw();
      if (c < 0) break;
      if (c == '=') {
        vals[nchar++] = -2;
        continue;
      }
      int v = base64::Decode(c);
      if (v < 0) {  // whitespace or a terminator ends the data
        if (std::isspace(c) && nchar == 0) continue;
        break;
      }
      vals[nchar++] = v;
    }
    if (nchar < 4) {
      done_ = true;
      TVM_FFI_ICHECK(nchar == 0) << "Base64InStream: truncated base64 group";
      return false;
    }
    TVM_FFI_ICHECK(vals[0] >= 0 && vals[1] >= 0) << "Base64InStream: invalid padding";
    uint32_t v = (uint32_t(vals[0]) << 18) | (uint32_t(vals[1]) << 12);
    nout_ = 1;
    if (vals[2] >= 0) {
      v |= uint32_t(vals[2]) << 6;
      nout_ = 2;
      if (vals[3] >= 0) {
        v |= uint32_t(vals[3]);
        nout_ = 3;
      }
    }
    if (nout_ < 3) done_ = true;  // padding marks the last group
    outbuf_[0] = static_cast<uint8_t>(v >> 16);
    outbuf_[1] = static_cast<uint8_t>(v >> 8);
    outbuf_[2] = static_cast<uint8_t>(v);
    pos_out_ = 0;
    return true;
  }

  static constexpr int kNoPeek = -1000;
  Stream* in_;
  int peek_ = kNoPeek;
  uint8_t outbuf_[3] = {0, 0, 0};
  int nout_ = 0;
  int pos_out_ = 0;
  bool done_ = false;
};

}  // namespace support
}  // namespace tvm

#endif  // TCC_TVM_SRC_SUPPORT_BASE64_H_
