/*
 * tcc: support header for building the TVM runtime from the sources that ship in the
 * apache-tvm wheel.  Written for tcc.
 *
 * IEEE-754 binary conversions between formats described by (storage type, raw-bits type,
 * number of stored significand bits), with round-to-nearest-even, subnormals, infinities
 * and NaNs (quiet NaN out).  Used by builtin_fp16.cc for __gnu_f2h_ieee / __gnu_h2f_ieee /
 * __truncdfhf2.
 */
#ifndef TCC_BUILTIN_FP16_H_
#define TCC_BUILTIN_FP16_H_

#include <cstdint>
#include <cstring>

namespace tcc_fp {

template <typename REP, int SIG_BITS>
struct Format {
  static constexpr int kBits = static_cast<int>(sizeof(REP) * 8);
  static constexpr int kExpBits = kBits - SIG_BITS - 1;
  static constexpr int kMaxExp = (1 << kExpBits) - 1;
  static constexpr int kBias = kMaxExp >> 1;
  static constexpr REP kSigMask = (REP(1) << SIG_BITS) - 1;
  static constexpr REP kSignBit = REP(1) << (kBits - 1);
};

template <typename TO, typename FROM>
inline TO BitCast(FROM v) {
  static_assert(sizeof(TO) == sizeof(FROM), "size mismatch");
  TO out;
  std::memcpy(&out, &v, sizeof(TO));
  return out;
}

}  // namespace tcc_fp

/*! \brief Narrowing conversion (e.g. float -> half), round to nearest even. */
template <typename SRC_T, typename SRC_REP_T, int SRC_SIG_BITS, typename DST_T, typename DST_REP_T,
          int DST_SIG_BITS>
static inline DST_T __truncXfYf2__(SRC_T a) {
  using S = tcc_fp::Format<SRC_REP_T, SRC_SIG_BITS>;
  using D = tcc_fp::Format<DST_REP_T, DST_SIG_BITS>;
  static_assert(SRC_SIG_BITS > DST_SIG_BITS, "narrowing only");
  const SRC_REP_T bits = tcc_fp::BitCast<SRC_REP_T>(a);
  const DST_REP_T sign = (bits & S::kSignBit) ? D::kSignBit : DST_REP_T(0);
  const int exp = static_cast<int>((bits >> SRC_SIG_BITS) & SRC_REP_T(S::kMaxExp));
  const SRC_REP_T mant = bits & S::kSigMask;
  constexpr int kDrop = SRC_SIG_BITS - DST_SIG_BITS;
  DST_REP_T out;
  if (exp == S::kMaxExp) {  // inf or NaN
    DST_REP_T m = 0;
    if (mant != 0) {
      m = static_cast<DST_REP_T>((mant >> kDrop) & D::kSigMask) |
          (DST_REP_T(1) << (DST_SIG_BITS - 1));  // keep the payload's top bits, make it quiet
    }
    out = static_cast<DST_REP_T>(DST_REP_T(D::kMaxExp) << DST_SIG_BITS) | m;
  } else if (exp == 0) {
    // Source zero or subnormal: far below the destination's smallest subnormal.
    out = 0;
  } else {
    const int dexp = exp - S::kBias + D::kBias;
    if (dexp >= D::kMaxExp) {  // overflow -> inf
      out = static_cast<DST_REP_T>(DST_REP_T(D::kMaxExp) << DST_SIG_BITS);
    } else {
      // Significand with the implicit bit, and how far it must move right.
      const SRC_REP_T sig = mant | (SRC_REP_T(1) << SRC_SIG_BITS);
      int shift = kDrop;
      DST_REP_T base = 0;
      if (dexp >= 1) {
        base = static_cast<DST_REP_T>(DST_REP_T(dexp) << DST_SIG_BITS);
      } else {
        shift = kDrop + 1 - dexp;  // destination subnormal
      }
      if (shift > SRC_SIG_BITS + 1) {
        out = 0;  // below half the smallest subnormal
      } else {
        SRC_REP_T kept = sig >> shift;
        const SRC_REP_T rem = sig & ((SRC_REP_T(1) << shift) - 1);
        const SRC_REP_T half = SRC_REP_T(1) << (shift - 1);
        if (dexp >= 1) kept &= S::kSigMask >> kDrop;  // drop the implicit bit: it is in base
        out = static_cast<DST_REP_T>(base | static_cast<DST_REP_T>(kept));
        if (rem > half || (rem == half && (out & 1))) ++out;  // a carry may roll into the exponent
      }
    }
  }
  return tcc_fp::BitCast<DST_T>(static_cast<DST_REP_T>(out | sign));
}

/*! \brief Widening conversion (e.g. half -> float); exact. */
template <typename SRC_T, typename SRC_REP_T, int SRC_SIG_BITS, typename DST_T, typename DST_REP_T,
          int DST_SIG_BITS>
static inline DST_T __extendXfYf2__(SRC_T a) {
  using S = tcc_fp::Format<SRC_REP_T, SRC_SIG_BITS>;
  using D = tcc_fp::Format<DST_REP_T, DST_SIG_BITS>;
  static_assert(DST_SIG_BITS > SRC_SIG_BITS, "widening only");
  const SRC_REP_T bits = tcc_fp::BitCast<SRC_REP_T>(a);
  const DST_REP_T sign = (bits & S::kSignBit) ? D::kSignBit : DST_REP_T(0);
  int exp = static_cast<int>((bits >> SRC_SIG_BITS) & SRC_REP_T(S::kMaxExp));
  DST_REP_T mant = static_cast<DST_REP_T>(bits & S::kSigMask);
  constexpr int kGrow = DST_SIG_BITS - SRC_SIG_BITS;
  DST_REP_T out;
  if (exp == S::kMaxExp) {
    DST_REP_T m = mant != 0 ? ((mant << kGrow) | (DST_REP_T(1) << (DST_SIG_BITS - 1))) : 0;
    out = (DST_REP_T(D::kMaxExp) << DST_SIG_BITS) | m;
  } else if (exp == 0) {
    if (mant == 0) {
      out = 0;
    } else {  // subnormal source: normalise
      int e = 1 - S::kBias;
      while (!(mant & (DST_REP_T(1) << SRC_SIG_BITS))) {
        mant <<= 1;
        --e;
      }
      mant &= static_cast<DST_REP_T>(S::kSigMask);
      out = (DST_REP_T(e + D::kBias) << DST_SIG_BITS) | (mant << kGrow);
    }
  } else {
    out = (DST_REP_T(exp - S::kBias + D::kBias) << DST_SIG_BITS) | (mant << kGrow);
  }
  return tcc_fp::BitCast<DST_T>(static_cast<DST_REP_T>(out | sign));
}

#endif  // TCC_BUILTIN_FP16_H_
