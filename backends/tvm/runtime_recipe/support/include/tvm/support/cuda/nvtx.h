/*
 * tcc: support header for building the TVM runtime from the sources that ship in the
 * apache-tvm wheel.  Written for tcc.  The CPU-only runtime has no NVTX: ranges are no-ops.
 */
#ifndef TCC_TVM_SUPPORT_CUDA_NVTX_H_
#define TCC_TVM_SUPPORT_CUDA_NVTX_H_

#include <string>

namespace tvm {
namespace support {

/*! \brief Profiler range marker; does nothing in a build without CUDA. */
class NVTXScopedRange {
 public:
  explicit NVTXScopedRange(const char* /*name*/) {}
  explicit NVTXScopedRange(const std::string& /*name*/) {}
  NVTXScopedRange(const NVTXScopedRange&) = delete;
  NVTXScopedRange& operator=(const NVTXScopedRange&) = delete;
};

}  // namespace support
}  // namespace tvm

#endif  // TCC_TVM_SUPPORT_CUDA_NVTX_H_
