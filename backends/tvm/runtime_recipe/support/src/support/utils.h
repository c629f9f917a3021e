/*
 * tcc: support header for building the TVM runtime from the sources that ship in the
 * apache-tvm wheel.  Written for tcc.  Small string helpers.
 */
#ifndef TCC_TVM_SRC_SUPPORT_UTILS_H_
#define TCC_TVM_SRC_SUPPORT_UTILS_H_

#include <cctype>
#include <string>
#include <vector>

namespace tvm {
namespace support {

/*! \brief True when s is a non-empty run of decimal digits. */
inline bool IsNumber(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

/*! \brief Split s at every delim (empty pieces kept). */
inline std::vector<std::string> Split(const std::string& s, char delim) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == delim) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  out.push_back(cur);
  return out;
}

inline bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

inline bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace support
}  // namespace tvm

#endif  // TCC_TVM_SRC_SUPPORT_UTILS_H_
