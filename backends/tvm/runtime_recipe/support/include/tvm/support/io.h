/*
 * tcc: support header for building the TVM runtime from the sources that ship in the
 * apache-tvm wheel (the wheel leaves out include/tvm/support/).  Written for tcc.
 *
 * A minimal binary stream.  The on-disk layout produced through it is the one the TVM
 * compiler writes into exported libraries (little-endian, sizes as uint64), see serializer.h.
 */
#ifndef TCC_TVM_SUPPORT_IO_H_
#define TCC_TVM_SUPPORT_IO_H_

#include <cstddef>
#include <cstdint>

namespace tvm {
namespace support {

/*! \brief Per-type (de)serialisation rule; defined in serializer.h. */
template <typename T, typename Enable = void>
struct Serializer;

/*! \brief Abstract byte stream with typed helpers layered on top of Read/Write. */
class Stream {
 public:
  virtual ~Stream() = default;
  /*! \brief Read up to size bytes; returns the number of bytes actually read. */
  virtual size_t Read(void* ptr, size_t size) = 0;
  /*! \brief Write size bytes; returns the number of bytes written. */
  virtual size_t Write(const void* ptr, size_t size) = 0;

  /*! \brief Write one value using its Serializer. */
  template <typename T>
  void Write(const T& value);
  /*! \brief Read one value using its Serializer; false on a short or malformed stream. */
  template <typename T>
  bool Read(T* out);
  /*! \brief Write num values one after the other (no length prefix). */
  template <typename T>
  void WriteArray(const T* data, size_t num);
  /*! \brief Read num values one after the other (no length prefix). */
  template <typename T>
  bool ReadArray(T* data, size_t num);
};

}  // namespace support
}  // namespace tvm

// The typed helpers are defined at the end of serializer.h, once every rule is known.
#include <tvm/support/serializer.h>

#endif  // TCC_TVM_SUPPORT_IO_H_
