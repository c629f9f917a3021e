/*
 * tcc: support header for building the TVM runtime from the sources that ship in the
 * apache-tvm wheel (the wheel leaves out include/tvm/support/).  Written for tcc.
 *
 * Binary layout (must match what the TVM compiler writes into an exported library):
 *   arithmetic / enum      : the value's bytes, little-endian
 *   DLDataType             : code (u8), bits (u8), lanes (u16)
 *   DLDevice               : device_type (i32), device_id (i32)
 *   std::string/ffi::String: length (u64), then the bytes
 *   vector / ffi::Array    : count (u64), then each element
 *   pair                   : first, then second
 *   map / unordered_map    : count (u64), then (key, value) pairs
 * A type can plug in its own rule with  template <> struct Serializer<T> { enabled; Write; Read; }.
 */
#ifndef TCC_TVM_SUPPORT_SERIALIZER_H_
#define TCC_TVM_SUPPORT_SERIALIZER_H_

#include <dlpack/dlpack.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/endian.h>
#include <tvm/ffi/string.h>
#include <tvm/support/io.h>

#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tvm {
namespace support {
namespace detail {

template <typename T>
inline constexpr bool kIsScalar = std::is_arithmetic_v<T> || std::is_enum_v<T>;

/*! \brief Scalars whose in-memory bytes equal their serialised bytes on this host. */
template <typename T>
inline constexpr bool kRawCopyable = kIsScalar<T> && (TVM_FFI_IO_NO_ENDIAN_SWAP || sizeof(T) == 1);

template <typename T>
inline void WriteScalar(Stream* strm, T value) {
  if constexpr (!TVM_FFI_IO_NO_ENDIAN_SWAP && sizeof(T) > 1) {
    ffi::ByteSwap(&value, sizeof(T), 1);
  }
  strm->Write(static_cast<const void*>(&value), sizeof(T));
}

template <typename T>
inline bool ReadScalar(Stream* strm, T* out) {
  if (strm->Read(static_cast<void*>(out), sizeof(T)) != sizeof(T)) return false;
  if constexpr (!TVM_FFI_IO_NO_ENDIAN_SWAP && sizeof(T) > 1) {
    ffi::ByteSwap(out, sizeof(T), 1);
  }
  return true;
}

inline bool ReadCount(Stream* strm, uint64_t* n) { return ReadScalar<uint64_t>(strm, n); }

}  // namespace detail

/*! \brief Primary template: no rule for T.  Using it fails to compile. */
template <typename T, typename Enable>
struct Serializer {
  static constexpr bool enabled = false;
};

template <typename T>
struct Serializer<T, std::enable_if_t<detail::kIsScalar<T>>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const T& v) { detail::WriteScalar<T>(strm, v); }
  static bool Read(Stream* strm, T* v) { return detail::ReadScalar<T>(strm, v); }
};

template <>
struct Serializer<DLDataType> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const DLDataType& t) {
    detail::WriteScalar<uint8_t>(strm, t.code);
    detail::WriteScalar<uint8_t>(strm, t.bits);
    detail::WriteScalar<uint16_t>(strm, t.lanes);
  }
  static bool Read(Stream* strm, DLDataType* t) {
    return detail::ReadScalar<uint8_t>(strm, &t->code) &&
           detail::ReadScalar<uint8_t>(strm, &t->bits) &&
           detail::ReadScalar<uint16_t>(strm, &t->lanes);
  }
};

template <>
struct Serializer<DLDevice> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const DLDevice& d) {
    detail::WriteScalar<int32_t>(strm, static_cast<int32_t>(d.device_type));
    detail::WriteScalar<int32_t>(strm, d.device_id);
  }
  static bool Read(Stream* strm, DLDevice* d) {
    int32_t type = 0, id = 0;
    if (!detail::ReadScalar<int32_t>(strm, &type) || !detail::ReadScalar<int32_t>(strm, &id)) {
      return false;
    }
    d->device_type = static_cast<DLDeviceType>(type);
    d->device_id = id;
    return true;
  }
};

template <>
struct Serializer<std::string> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const std::string& s) {
    detail::WriteScalar<uint64_t>(strm, static_cast<uint64_t>(s.size()));
    if (!s.empty()) strm->Write(static_cast<const void*>(s.data()), s.size());
  }
  static bool Read(Stream* strm, std::string* s) {
    uint64_t n = 0;
    if (!detail::ReadCount(strm, &n)) return false;
    s->resize(static_cast<size_t>(n));
    if (n == 0) return true;
    return strm->Read(static_cast<void*>(&(*s)[0]), static_cast<size_t>(n)) == n;
  }
};

template <>
struct Serializer<ffi::String> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const ffi::String& s) {
    detail::WriteScalar<uint64_t>(strm, static_cast<uint64_t>(s.size()));
    if (s.size() != 0) strm->Write(static_cast<const void*>(s.data()), s.size());
  }
  static bool Read(Stream* strm, ffi::String* s) {
    std::string tmp;
    if (!Serializer<std::string>::Read(strm, &tmp)) return false;
    *s = ffi::String(std::move(tmp));
    return true;
  }
};

template <typename T, typename A>
struct Serializer<std::vector<T, A>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const std::vector<T, A>& v) {
    detail::WriteScalar<uint64_t>(strm, static_cast<uint64_t>(v.size()));
    strm->WriteArray<T>(v.data(), v.size());
  }
  static bool Read(Stream* strm, std::vector<T, A>* v) {
    uint64_t n = 0;
    if (!detail::ReadCount(strm, &n)) return false;
    v->resize(static_cast<size_t>(n));
    return strm->ReadArray<T>(v->data(), v->size());
  }
};

template <typename A>
struct Serializer<std::vector<bool, A>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const std::vector<bool, A>& v) {
    detail::WriteScalar<uint64_t>(strm, static_cast<uint64_t>(v.size()));
    for (bool b : v) detail::WriteScalar<uint8_t>(strm, b ? 1 : 0);
  }
  static bool Read(Stream* strm, std::vector<bool, A>* v) {
    uint64_t n = 0;
    if (!detail::ReadCount(strm, &n)) return false;
    v->assign(static_cast<size_t>(n), false);
    for (size_t i = 0; i < v->size(); ++i) {
      uint8_t b = 0;
      if (!detail::ReadScalar<uint8_t>(strm, &b)) return false;
      (*v)[i] = b != 0;
    }
    return true;
  }
};

template <typename T>
struct Serializer<ffi::Array<T>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const ffi::Array<T>& arr) {
    detail::WriteScalar<uint64_t>(strm, static_cast<uint64_t>(arr.size()));
    for (const T& item : arr) Serializer<T>::Write(strm, item);
  }
  static bool Read(Stream* strm, ffi::Array<T>* arr) {
    uint64_t n = 0;
    if (!detail::ReadCount(strm, &n)) return false;
    ffi::Array<T> result;
    result.reserve(static_cast<int64_t>(n));
    for (uint64_t i = 0; i < n; ++i) {
      T item{};
      if (!Serializer<T>::Read(strm, &item)) return false;
      result.push_back(std::move(item));
    }
    *arr = std::move(result);
    return true;
  }
};

template <typename A, typename B>
struct Serializer<std::pair<A, B>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const std::pair<A, B>& p) {
    Serializer<A>::Write(strm, p.first);
    Serializer<B>::Write(strm, p.second);
  }
  static bool Read(Stream* strm, std::pair<A, B>* p) {
    return Serializer<A>::Read(strm, &p->first) && Serializer<B>::Read(strm, &p->second);
  }
};

namespace detail {
template <typename M>
struct MapSerializer {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const M& m) {
    WriteScalar<uint64_t>(strm, static_cast<uint64_t>(m.size()));
    for (const auto& kv : m) {
      Serializer<typename M::key_type>::Write(strm, kv.first);
      Serializer<typename M::mapped_type>::Write(strm, kv.second);
    }
  }
  static bool Read(Stream* strm, M* m) {
    uint64_t n = 0;
    if (!ReadCount(strm, &n)) return false;
    m->clear();
    for (uint64_t i = 0; i < n; ++i) {
      typename M::key_type k{};
      typename M::mapped_type v{};
      if (!Serializer<typename M::key_type>::Read(strm, &k)) return false;
      if (!Serializer<typename M::mapped_type>::Read(strm, &v)) return false;
      (*m)[std::move(k)] = std::move(v);
    }
    return true;
  }
};
}  // namespace detail

template <typename K, typename V, typename C, typename A>
struct Serializer<std::map<K, V, C, A>> : detail::MapSerializer<std::map<K, V, C, A>> {};

template <typename K, typename V, typename H, typename E, typename A>
struct Serializer<std::unordered_map<K, V, H, E, A>>
    : detail::MapSerializer<std::unordered_map<K, V, H, E, A>> {};

// ---- Stream's typed helpers (declared in io.h) ----

template <typename T>
inline void Stream::Write(const T& value) {
  Serializer<T>::Write(this, value);
}

template <typename T>
inline bool Stream::Read(T* out) {
  return Serializer<T>::Read(this, out);
}

template <typename T>
inline void Stream::WriteArray(const T* data, size_t num) {
  if constexpr (detail::kRawCopyable<T>) {
    if (num != 0) this->Write(static_cast<const void*>(data), sizeof(T) * num);
  } else {
    for (size_t i = 0; i < num; ++i) this->Write<T>(data[i]);
  }
}

template <typename T>
inline bool Stream::ReadArray(T* data, size_t num) {
  if constexpr (detail::kRawCopyable<T>) {
    if (num == 0) return true;
    return this->Read(static_cast<void*>(data), sizeof(T) * num) == sizeof(T) * num;
  } else {
    for (size_t i = 0; i < num; ++i) {
      if (!this->Read<T>(data + i)) return false;
    }
    return true;
  }
}

}  // namespace support
}  // namespace tvm

#endif  // TCC_TVM_SUPPORT_SERIALIZER_H_
