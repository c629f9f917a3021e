// Self-test of tcc's support headers (tools/arm_runtime/support) on the host.
//
// Byte layouts are checked against literal expectations (the layout the TVM compiler writes:
// u64 counts/lengths, little-endian scalars), plus round trips, base64 against RFC 4648 vectors,
// and the fp16 conversions exhaustively (half -> float) / on a sweep (float, double -> half)
// against the compiler's _Float16.  Built and run by tests/backends/tvm/test_infra.py; prints "ok".
#include <builtin_fp16.h>
#include <tvm/ffi/dtype.h>  // TypeTraits for ffi::Array<DLDataType>
#include <tvm/support/io.h>
#include <tvm/support/serializer.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "support/base64.h"
#include "support/bytes_io.h"
#include "support/utils.h"

using namespace tvm::support;

static int failures = 0;
#define EXPECT(cond)                                                 \
  do {                                                               \
    if (!(cond)) {                                                   \
      std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                    \
    }                                                                \
  } while (0)

static std::string Hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(d[c >> 4]);
    out.push_back(d[c & 15]);
  }
  return out;
}

template <typename T>
static std::string Bytes(const T& v) {
  std::string out;
  BytesOutStream s(&out);
  s.Write(v);
  return out;
}

static void TestLayout() {
  EXPECT(Hex(Bytes<uint64_t>(0x0102030405060708ULL)) == "0807060504030201");
  EXPECT(Hex(Bytes<int32_t>(-2)) == "feffffff");
  EXPECT(Hex(Bytes<std::string>("ab")) == "02000000000000006162");
  EXPECT(Hex(Bytes(std::vector<int64_t>{1, -1})) ==
         "0200000000000000" "0100000000000000" "ffffffffffffffff");
  EXPECT(Hex(Bytes(std::vector<std::string>{"x", ""})) ==
         "0200000000000000" "010000000000000078" "0000000000000000");
  DLDataType f32{kDLFloat, 32, 1};
  EXPECT(Hex(Bytes(f32)) == "02200100");
  DLDevice cpu{kDLCPU, 3};
  EXPECT(Hex(Bytes(cpu)) == "0100000003000000");
  EXPECT(Hex(Bytes(tvm::ffi::String("hi"))) == "02000000000000006869");
  tvm::ffi::Array<tvm::ffi::String> arr{"a", "bc"};
  EXPECT(Hex(Bytes(arr)) == "0200000000000000" "010000000000000061" "02000000000000006263");
  std::map<std::string, int32_t> m{{"k", 7}};
  EXPECT(Hex(Bytes(m)) == "0100000000000000" "01000000000000006b" "07000000");
  EXPECT(Hex(Bytes(std::make_pair<int8_t, uint16_t>(-1, 2))) == "ff0200");
}

static void TestRoundTrip() {
  std::string buf;
  BytesOutStream out(&buf);
  std::vector<std::string> names{"conv", "", "fc.weight"};
  std::vector<int64_t> code{0, 5, -7, 1LL << 40};
  std::vector<DLDataType> dtypes{{kDLInt, 8, 1}, {kDLFloat, 16, 4}};
  std::unordered_map<std::string, std::vector<double>> um{{"a", {1.5, -2}}, {"b", {}}};
  tvm::ffi::Array<DLDataType> ffi_dtypes{DLDataType{kDLUInt, 1, 1}};
  int64_t raw[3] = {4, 5, 6};
  out.Write(names);
  out.Write(code);
  out.Write(dtypes);
  out.Write(um);
  out.Write(ffi_dtypes);
  out.WriteArray(raw, 3);
  out.Write<int32_t>(42);

  BytesInStream in(buf);
  std::vector<std::string> names2;
  std::vector<int64_t> code2;
  std::vector<DLDataType> dtypes2;
  std::unordered_map<std::string, std::vector<double>> um2;
  tvm::ffi::Array<DLDataType> ffi_dtypes2;
  int64_t raw2[3] = {0, 0, 0};
  int32_t tail = 0;
  EXPECT(in.Read(&names2) && names2 == names);
  EXPECT(in.Read(&code2) && code2 == code);
  EXPECT(in.Read(&dtypes2) && dtypes2.size() == 2 && dtypes2[1].bits == 16 && dtypes2[1].lanes == 4);
  EXPECT(in.Read(&um2) && um2 == um);
  EXPECT(in.Read(&ffi_dtypes2) && ffi_dtypes2.size() == 1 && ffi_dtypes2[0].code == kDLUInt);
  EXPECT(in.ReadArray(raw2, 3) && raw2[2] == 6);
  EXPECT(in.Read(&tail) && tail == 42);
  EXPECT(in.Tell() == buf.size());
  EXPECT(!in.Read(&tail));  // past the end
  // a truncated vector fails instead of reading garbage
  std::string cut = Bytes(code).substr(0, 12);
  BytesInStream in2(cut);
  EXPECT(!in2.Read(&code2));
}

static std::string B64(const std::string& s) {
  std::string out;
  BytesOutStream o(&out);
  Base64OutStream b(&o);
  b.Write(s.data(), s.size());
  b.Finish();
  return out;
}

static std::string UnB64(const std::string& s, size_t n) {
  BytesInStream i(s);
  Base64InStream b(&i);
  b.InitPosition();
  std::string out(n, '\0');
  size_t got = b.Read(&out[0], n);
  out.resize(got);
  return out;
}

static void TestBase64() {
  const char* vec[][2] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                          {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
                          {"foobar", "Zm9vYmFy"}};
  for (auto& v : vec) {
    EXPECT(B64(v[0]) == v[1]);
    EXPECT(UnB64(v[1], 64) == v[0]);
  }
  std::string bin;
  for (int i = 0; i < 1000; ++i) bin.push_back(static_cast<char>((i * 37) & 255));
  EXPECT(UnB64("  \n" + B64(bin), bin.size() + 10) == bin);
}

static void TestUtils() {
  EXPECT(IsNumber("0123") && !IsNumber("") && !IsNumber("1a") && !IsNumber("-1"));
  EXPECT(Split("a,,b", ',').size() == 3 && StartsWith("abc", "ab") && EndsWith("abc", "bc"));
}

static void TestFp16() {
  long bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = __extendXfYf2__<uint16_t, uint16_t, 10, float, uint32_t, 23>(static_cast<uint16_t>(h));
    uint16_t hh = static_cast<uint16_t>(h);
    _Float16 hf;
    std::memcpy(&hf, &hh, 2);
    float ref = static_cast<float>(hf);
    if (std::isnan(ref) ? !std::isnan(f) : std::memcmp(&f, &ref, 4) != 0) ++bad;
    // half -> float -> half is the identity (NaNs stay NaN)
    uint16_t back = __truncXfYf2__<float, uint32_t, 23, uint16_t, uint16_t, 10>(f);
    if (std::isnan(ref) ? (back & 0x7c00) != 0x7c00 || !(back & 0x3ff) : back != hh) ++bad;
  }
  uint32_t x = 12345;
  for (long i = 0; i < 4000000; ++i) {
    x = x * 1664525u + 1013904223u;
    uint32_t b = i < (1 << 21) ? 0x33000000u + static_cast<uint32_t>(i) * 8u : x;  // dense near subnormals
    float f;
    std::memcpy(&f, &b, 4);
    if (std::isnan(f)) continue;
    _Float16 r = static_cast<_Float16>(f);
    uint16_t rr, o = __truncXfYf2__<float, uint32_t, 23, uint16_t, uint16_t, 10>(f);
    std::memcpy(&rr, &r, 2);
    if (o != rr) ++bad;
    double d = static_cast<double>(f) * 1.0000001;
    _Float16 rd = static_cast<_Float16>(d);
    uint16_t od = __truncXfYf2__<double, uint64_t, 52, uint16_t, uint16_t, 10>(d);
    std::memcpy(&rr, &rd, 2);
    if (od != rr) ++bad;
  }
  EXPECT(bad == 0);
}

int main() {
  TestLayout();
  TestRoundTrip();
  TestBase64();
  TestUtils();
  TestFp16();
  if (failures) {
    std::fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
