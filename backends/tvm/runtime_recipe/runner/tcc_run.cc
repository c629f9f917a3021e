// tcc-run: run a tcc/TVM-compiled Relax module (an exported .so) on one set of inputs.
//
//   tcc-run [options] model.so input.bin [input2.bin ...] output.bin
//
// Loads the module with the TVM runtime, creates the Relax VM on the CPU, calls the entry function
// ("main") with the inputs in order and writes every output tensor to output.bin.
//
// Tensor file format ("TCCT", all little-endian, see tools/arm_runtime/README.md):
//   0  char[4]  magic "TCCT"
//   4  u32      version = 1
//   8  u32      dtype code (DLPack: 0 int, 1 uint, 2 float)
//   12 u32      dtype bits (8, 16, 32, 64)
//   16 u32      ndim
//   20 u32      reserved = 0
//   24 i64[ndim] shape
//   ...         data, C order
// An output file is one such record per output tensor, back to back.  A raw input (data only)
// is accepted with --shape/--dtype; --raw-output writes the output data only.
//
// Exit status: 0 ok, 1 runtime failure, 2 bad command line or input file.
#include <dlpack/dlpack.h>
#include <tvm/ffi/any.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/shape.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <dirent.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

namespace {

constexpr char kMagic[4] = {'T', 'C', 'C', 'T'};
constexpr uint32_t kVersion = 1;
constexpr int kAllocatorPooled = 2;  // tvm::runtime::memory::AllocatorType::kPooled

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const char* kUsage =
    "usage: tcc-run [options] model.so input.bin [input2.bin ...] output.bin\n"
    "  Runs the Relax VM entry function of a tcc/TVM-compiled module on the CPU.\n"
    "  Inputs/outputs are TCCT tensor files (see tools/arm_runtime/README.md).\n"
    "options:\n"
    "  --shape D0,D1,...  the next raw (headerless) input has this shape; give one --shape per\n"
    "                     raw input, in input order (inputs with no --shape must have a header)\n"
    "  --dtype T          dtype of raw inputs: float32 (default), int8, uint8, int32, float16\n"
    "  --raw-output       write the output tensor data only, no header\n"
    "  --func NAME        entry function (default: main)\n"
    "  --repeat N         after the first run, run N more times and print latency (ms)\n"
    "  --runs N           after the first run, run N more times untimed (instruction counting: the\n"
    "                     difference of two counts is whole inferences, nothing else)\n"
    "  --threads N        number of worker threads (sets TVM_NUM_THREADS)\n"
    "  --quiet            print nothing on success\n";

struct AlignedCPUAlloc {
  void AllocData(DLTensor* t) {
    size_t n = std::max<size_t>(ffi::GetDataSize(*t), 1);
    void* p = nullptr;
    if (posix_memalign(&p, 64, n) != 0) throw std::bad_alloc();
    t->data = p;
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

DLDataType ParseDType(const std::string& s) {
  if (s == "float32") return DLDataType{kDLFloat, 32, 1};
  if (s == "float16") return DLDataType{kDLFloat, 16, 1};
  if (s == "float64") return DLDataType{kDLFloat, 64, 1};
  if (s == "int8") return DLDataType{kDLInt, 8, 1};
  if (s == "uint8") return DLDataType{kDLUInt, 8, 1};
  if (s == "int16") return DLDataType{kDLInt, 16, 1};
  if (s == "int32") return DLDataType{kDLInt, 32, 1};
  if (s == "int64") return DLDataType{kDLInt, 64, 1};
  throw UsageError("unknown dtype '" + s + "'");
}

std::string DTypeName(DLDataType t) {
  const char* base = t.code == kDLFloat ? "float" : t.code == kDLInt ? "int" : t.code == kDLUInt ? "uint" : "?";
  std::string s = base + std::to_string(t.bits);
  if (t.lanes != 1) s += "x" + std::to_string(t.lanes);
  return s;
}

std::vector<int64_t> ParseShape(const std::string& s) {
  std::vector<int64_t> shape;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 0) throw UsageError("bad --shape '" + s + "'");
    shape.push_back(v);
  }
  if (shape.empty()) throw UsageError("empty --shape");
  return shape;
}

std::string ShapeStr(const int64_t* shape, int ndim) {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw UsageError("cannot open input '" + path + "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

template <typename T>
T ReadLE(const std::string& buf, size_t off) {
  T v;
  std::memcpy(&v, buf.data() + off, sizeof(T));  // the targets are all little-endian
  return v;
}

ffi::Tensor MakeTensor(const std::vector<int64_t>& shape, DLDataType dtype) {
  return ffi::Tensor::FromNDAlloc(AlignedCPUAlloc(), ffi::Shape(shape), dtype, DLDevice{kDLCPU, 0});
}

// Load one input; `raw_shape` non-null means the file is raw data of that shape.
ffi::Tensor LoadInput(const std::string& path, const std::vector<int64_t>* raw_shape,
                      DLDataType raw_dtype) {
  std::string buf = ReadFile(path);
  std::vector<int64_t> shape;
  DLDataType dtype;
  size_t off = 0;
  if (raw_shape != nullptr) {
    shape = *raw_shape;
    dtype = raw_dtype;
  } else {
    if (buf.size() < 24 || std::memcmp(buf.data(), kMagic, 4) != 0) {
      throw UsageError("input '" + path + "' has no TCCT header; give its shape with --shape");
    }
    uint32_t version = ReadLE<uint32_t>(buf, 4);
    if (version != kVersion) throw UsageError("input '" + path + "': unsupported TCCT version");
    uint32_t code = ReadLE<uint32_t>(buf, 8), bits = ReadLE<uint32_t>(buf, 12);
    uint32_t ndim = ReadLE<uint32_t>(buf, 16);
    if (code > 2 || (bits != 8 && bits != 16 && bits != 32 && bits != 64) || ndim > 16) {
      throw UsageError("input '" + path + "': bad TCCT header");
    }
    dtype = DLDataType{static_cast<uint8_t>(code), static_cast<uint8_t>(bits), 1};
    off = 24 + 8 * static_cast<size_t>(ndim);
    if (buf.size() < off) throw UsageError("input '" + path + "': truncated header");
    for (uint32_t i = 0; i < ndim; ++i) {
      int64_t d = ReadLE<int64_t>(buf, 24 + 8 * i);
      if (d < 0) throw UsageError("input '" + path + "': negative dimension");
      shape.push_back(d);
    }
  }
  size_t nbytes = static_cast<size_t>(NumElements(shape)) * ((dtype.bits + 7) / 8);
  if (buf.size() - off != nbytes) {
    throw UsageError("input '" + path + "': expected " + std::to_string(nbytes) + " data bytes for " +
                     DTypeName(dtype) + ShapeStr(shape.data(), static_cast<int>(shape.size())) +
                     ", found " + std::to_string(buf.size() - off));
  }
  ffi::Tensor t = MakeTensor(shape, dtype);
  if (nbytes) std::memcpy(t.data_ptr(), buf.data() + off, nbytes);
  return t;
}

void WriteRecord(std::ofstream& out, const ffi::Tensor& t, bool raw) {
  const DLTensor* dl = t.GetDLTensorPtr();
  if (dl->device.device_type != kDLCPU) throw std::runtime_error("output is not on the CPU");
  if (!ffi::IsContiguous(*dl)) throw std::runtime_error("output tensor is not contiguous");
  if (dl->dtype.lanes != 1) throw std::runtime_error("vector dtypes are not supported in outputs");
  if (!raw) {
    uint32_t hdr[6] = {0, kVersion, dl->dtype.code, dl->dtype.bits, static_cast<uint32_t>(dl->ndim), 0};
    std::memcpy(hdr, kMagic, 4);
    out.write(reinterpret_cast<const char*>(hdr), sizeof(hdr));
    for (int i = 0; i < dl->ndim; ++i) {
      int64_t d = dl->shape[i];
      out.write(reinterpret_cast<const char*>(&d), sizeof(d));
    }
  }
  size_t nbytes = ffi::GetDataSize(*dl);
  out.write(static_cast<const char*>(dl->data) + dl->byte_offset, static_cast<std::streamsize>(nbytes));
}

// Flatten the entry function's return value (tensor, or nested tuple of tensors).
void CollectOutputs(const ffi::Any& value, std::vector<ffi::Tensor>* outs) {
  if (auto t = value.as<ffi::Tensor>()) {
    outs->push_back(t.value());
  } else if (auto arr = value.as<ffi::Array<ffi::Any>>()) {
    for (const ffi::Any& item : arr.value()) CollectOutputs(item, outs);
  } else {
    throw std::runtime_error("entry function returned a " + value.GetTypeKey() +
                             ", expected tensors");
  }
}

// With worker threads, once TVM's pool exists: the main thread (TVM's task 0) onto an allowed core that no pinned
// worker holds. Left where it started, it often shared its worker's core (the kernel places a thread beside the one
// it wakes), and a 2-thread run took the 1-thread time: DDSNet INT8 on a 2-core EPYC (1 thread 1.52 ms), 2 threads
// 1.58-1.60 ms in 6 processes of 8, 0.99-1.08 ms in 8 of 8 with the main thread apart.
void PinMainThreadApart() {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;
  const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
  cpu_set_t held;
  CPU_ZERO(&held);
  if (DIR* tasks = opendir("/proc/self/task")) {
    while (const dirent* e = readdir(tasks)) {
      const pid_t tid = static_cast<pid_t>(std::atoi(e->d_name));
      cpu_set_t s;
      if (tid > 0 && tid != self && sched_getaffinity(tid, sizeof(s), &s) == 0 && CPU_COUNT(&s) == 1) {
        CPU_OR(&held, &held, &s);
      }
    }
    closedir(tasks);
  }
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &allowed) && !CPU_ISSET(c, &held)) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(c, &one);
      sched_setaffinity(0, sizeof(one), &one);
      return;
    }
  }
}

int Run(int argc, char** argv) {
  std::vector<std::string> positional;
  std::vector<std::vector<int64_t>> raw_shapes;
  std::vector<int> raw_shape_for;  // positional input index each --shape applies to
  DLDataType raw_dtype{kDLFloat, 32, 1};
  bool raw_output = false, quiet = false;
  std::string func = "main";
  int repeat = 0, runs = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError("option " + a + " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (a == "--shape") {
      raw_shapes.push_back(ParseShape(value()));
    } else if (a == "--dtype") {
      raw_dtype = ParseDType(value());
    } else if (a == "--raw-output") {
      raw_output = true;
    } else if (a == "--func") {
      func = value();
    } else if (a == "--repeat") {
      repeat = std::atoi(value().c_str());
    } else if (a == "--runs") {
      runs = std::atoi(value().c_str());
    } else if (a == "--threads") {
      std::string n = value();
      setenv("TVM_NUM_THREADS", n.c_str(), 1);
    } else if (a == "--quiet") {
      quiet = true;
    } else if (a.size() > 1 && a[0] == '-') {
      throw UsageError("unknown option " + a);
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() < 3) throw UsageError("need model.so, at least one input and an output");
  const std::string model_path = positional.front();
  const std::string out_path = positional.back();
  std::vector<std::string> inputs(positional.begin() + 1, positional.end() - 1);
  if (raw_shapes.size() > inputs.size()) throw UsageError("more --shape options than inputs");

  // --shape options apply to the first len(raw_shapes) inputs, in order.
  std::vector<ffi::Tensor> args;
  for (size_t i = 0; i < inputs.size(); ++i) {
    args.push_back(LoadInput(inputs[i], i < raw_shapes.size() ? &raw_shapes[i] : nullptr, raw_dtype));
  }

  ffi::Module lib = ffi::Module::LoadFromFile(model_path);
  auto load_exec = lib->GetFunction("vm_load_executable", true);
  if (!load_exec) throw std::runtime_error(model_path + " is not a Relax VM executable");
  ffi::Module vm = (*load_exec)().cast<ffi::Module>();
  auto init = vm->GetFunction("vm_initialization", false);
  if (!init) throw std::runtime_error("VM has no vm_initialization");
  (*init)(static_cast<int>(kDLCPU), 0, kAllocatorPooled);
  auto entry = vm->GetFunction(func, false);
  if (!entry) throw std::runtime_error("module has no function '" + func + "'");

  std::vector<ffi::AnyView> packed(args.begin(), args.end());
  const ffi::Function& entry_fn = *entry;  // Function::CallPacked: the same in apache-tvm-ffi 0.1.14 and 0.1.15
  auto call = [&]() {
    ffi::Any rv;
    entry_fn.CallPacked(packed.data(), static_cast<int32_t>(packed.size()), &rv);
    return rv;
  };
  ffi::Any result = call();
  const char* threads = std::getenv("TVM_NUM_THREADS");
  if (threads == nullptr || std::atoi(threads) != 1) PinMainThreadApart();  // the pool exists after a call
  std::vector<ffi::Tensor> outs;
  CollectOutputs(result, &outs);

  std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
  if (!out) throw UsageError("cannot open output '" + out_path + "'");
  for (const auto& t : outs) WriteRecord(out, t, raw_output);
  out.close();
  if (!out) throw std::runtime_error("failed writing '" + out_path + "'");

  if (!quiet) {
    for (size_t i = 0; i < outs.size(); ++i) {
      const DLTensor* dl = outs[i].GetDLTensorPtr();
      std::cout << "output " << i << ": " << DTypeName(dl->dtype) << ShapeStr(dl->shape, dl->ndim)
                << "\n";
    }
  }
  for (int r = 0; r < runs; ++r) call();
  if (repeat > 0) {
    std::vector<double> ms;
    for (int r = 0; r < repeat; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      call();
      auto t1 = std::chrono::steady_clock::now();
      ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    std::cerr << "latency_ms median " << ms[ms.size() / 2] << " min " << ms.front() << " runs "
              << ms.size() << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "tcc-run: " << e.what() << "\n" << (argc <= 1 ? kUsage : "");
    return 2;
  } catch (const ffi::Error& e) {
    std::cerr << "tcc-run: TVM error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "tcc-run: " << e.what() << "\n";
    return 1;
  }
}
