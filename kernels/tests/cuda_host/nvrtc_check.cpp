// nvrtc_check.cpp: runs the cases that kernels/tests/cuda_source.rs's ignored test
// `write_device_cases` writes, on a real GPU: each source compiled by NVRTC with the backend's
// flags, launched through the CUDA driver API, its output compared with the CPU reference the
// case carries. Loads libnvrtc and libcuda with dlopen, so it needs no CUDA header or toolkit
// at build time.
//
//     CUDA_SOURCE_DUMP=/tmp/cases cargo test -p kernels --test cuda_source -- --ignored
//     (which runs write_device_cases)
//     g++ -std=c++17 -O2 kernels/tests/cuda_host/nvrtc_check.cpp -o nvrtc_check -ldl
//     ./nvrtc_check /tmp/cases [path/to/libnvrtc.so]
//
// Every case runs under two sets of NVRTC flags: the backend's (--fmad=false --prec-div=true
// --prec-sqrt=true --ftz=false) and a relaxed set (--fmad=true --prec-div=false
// --prec-sqrt=false, still --ftz=false), which must give the same results since the kernels
// spell out their rounding with intrinsics; and under two launch shapes, the case's tiny grid
// (the grid-stride loop wraps) and one thread per pixel in blocks of 256.

#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

// The few NVRTC and driver API entry points used, by their C signatures.
using NvrtcProgram = void*;
using NvrtcVersion = int (*)(int*, int*);
using NvrtcCreateProgram = int (*)(NvrtcProgram*, const char*, const char*, int,
                                   const char* const*, const char* const*);
using NvrtcCompileProgram = int (*)(NvrtcProgram, int, const char* const*);
using NvrtcGetSize = int (*)(NvrtcProgram, std::size_t*);
using NvrtcGetText = int (*)(NvrtcProgram, char*);
using NvrtcDestroyProgram = int (*)(NvrtcProgram*);

using CuDeviceptr = unsigned long long;
using CuInit = int (*)(unsigned int);
using CuDeviceGet = int (*)(int*, int);
using CuDeviceGetName = int (*)(char*, int, int);
using CuDeviceGetAttribute = int (*)(int*, int, int);
using CuPrimaryCtxRetain = int (*)(void**, int);
using CuCtxSetCurrent = int (*)(void*);
using CuModuleLoadData = int (*)(void**, const void*);
using CuModuleGetFunction = int (*)(void**, void*, const char*);
using CuModuleUnload = int (*)(void*);
using CuMemAlloc = int (*)(CuDeviceptr*, std::size_t);
using CuMemFree = int (*)(CuDeviceptr);
using CuMemcpyHtoD = int (*)(CuDeviceptr, const void*, std::size_t);
using CuMemcpyDtoH = int (*)(void*, CuDeviceptr, std::size_t);
using CuLaunchKernel = int (*)(void*, unsigned int, unsigned int, unsigned int, unsigned int,
                               unsigned int, unsigned int, unsigned int, void*, void**, void**);
using CuCtxSynchronize = int (*)();

constexpr int ATTRIBUTE_CC_MAJOR = 75;
constexpr int ATTRIBUTE_CC_MINOR = 76;
constexpr std::size_t PARAMS_BYTES = 48;
constexpr float POISON = -1234.5677f;

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "nvrtc_check: %s\n", what.c_str());
    std::exit(2);
}

template <typename F>
F symbol(void* lib, const char* name) {
    void* p = dlsym(lib, name);
    if (p == nullptr) {
        die(std::string("missing symbol ") + name);
    }
    return reinterpret_cast<F>(p);
}

void check(int rc, const char* what) {
    if (rc != 0) {
        die(std::string(what) + " failed with code " + std::to_string(rc));
    }
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        die("cannot read " + path);
    }
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<float> floats(const std::string& bytes, std::size_t offset) {
    std::vector<float> v((bytes.size() - offset) / sizeof(float));
    if (!v.empty()) {
        std::memcpy(v.data(), bytes.data() + offset, v.size() * sizeof(float));
    }
    return v;
}

std::uint32_t bits(float x) {
    std::uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    return u;
}

std::uint64_t ulp_distance(float a, float b) {
    auto key = [](float x) {
        const std::int64_t m = bits(x) & 0x7fffffffu;
        return std::signbit(x) ? -m : m;
    };
    const std::int64_t d = key(a) - key(b);
    return static_cast<std::uint64_t>(d < 0 ? -d : d);
}

struct Case {
    std::string name, source, entry, input, want, matching;
    unsigned int blocks = 0, threads = 0, ulps = 0;
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        die("usage: nvrtc_check CASE_DIR [libnvrtc.so]");
    }
    const std::string dir = argv[1];
    void* nvrtc = dlopen(argc > 2 ? argv[2] : "libnvrtc.so", RTLD_NOW);
    if (nvrtc == nullptr) {
        die(std::string("cannot load libnvrtc: ") + dlerror());
    }
    void* cuda = dlopen("libcuda.so.1", RTLD_NOW);
    if (cuda == nullptr) {
        die(std::string("cannot load libcuda.so.1: ") + dlerror());
    }
    auto nvrtc_version = symbol<NvrtcVersion>(nvrtc, "nvrtcVersion");
    auto create = symbol<NvrtcCreateProgram>(nvrtc, "nvrtcCreateProgram");
    auto compile = symbol<NvrtcCompileProgram>(nvrtc, "nvrtcCompileProgram");
    auto log_size = symbol<NvrtcGetSize>(nvrtc, "nvrtcGetProgramLogSize");
    auto get_log = symbol<NvrtcGetText>(nvrtc, "nvrtcGetProgramLog");
    auto ptx_size = symbol<NvrtcGetSize>(nvrtc, "nvrtcGetPTXSize");
    auto get_ptx = symbol<NvrtcGetText>(nvrtc, "nvrtcGetPTX");
    auto destroy = symbol<NvrtcDestroyProgram>(nvrtc, "nvrtcDestroyProgram");
    auto cu_init = symbol<CuInit>(cuda, "cuInit");
    auto device_get = symbol<CuDeviceGet>(cuda, "cuDeviceGet");
    auto device_name = symbol<CuDeviceGetName>(cuda, "cuDeviceGetName");
    auto device_attribute = symbol<CuDeviceGetAttribute>(cuda, "cuDeviceGetAttribute");
    auto retain = symbol<CuPrimaryCtxRetain>(cuda, "cuDevicePrimaryCtxRetain");
    auto set_current = symbol<CuCtxSetCurrent>(cuda, "cuCtxSetCurrent");
    auto module_load = symbol<CuModuleLoadData>(cuda, "cuModuleLoadData");
    auto module_function = symbol<CuModuleGetFunction>(cuda, "cuModuleGetFunction");
    auto module_unload = symbol<CuModuleUnload>(cuda, "cuModuleUnload");
    auto mem_alloc = symbol<CuMemAlloc>(cuda, "cuMemAlloc_v2");
    auto mem_free = symbol<CuMemFree>(cuda, "cuMemFree_v2");
    auto htod = symbol<CuMemcpyHtoD>(cuda, "cuMemcpyHtoD_v2");
    auto dtoh = symbol<CuMemcpyDtoH>(cuda, "cuMemcpyDtoH_v2");
    auto launch = symbol<CuLaunchKernel>(cuda, "cuLaunchKernel");
    auto synchronize = symbol<CuCtxSynchronize>(cuda, "cuCtxSynchronize");

    int major = 0, minor = 0;
    check(nvrtc_version(&major, &minor), "nvrtcVersion");
    check(cu_init(0), "cuInit");
    int device = 0;
    check(device_get(&device, 0), "cuDeviceGet");
    char name[256] = {};
    check(device_name(name, sizeof name, device), "cuDeviceGetName");
    int cc_major = 0, cc_minor = 0;
    check(device_attribute(&cc_major, ATTRIBUTE_CC_MAJOR, device), "cuDeviceGetAttribute");
    check(device_attribute(&cc_minor, ATTRIBUTE_CC_MINOR, device), "cuDeviceGetAttribute");
    void* context = nullptr;
    check(retain(&context, device), "cuDevicePrimaryCtxRetain");
    check(set_current(context), "cuCtxSetCurrent");
    std::printf("nvrtc %d.%d on %s (compute %d.%d)\n", major, minor, name, cc_major, cc_minor);
    const std::string arch =
        "--gpu-architecture=compute_" + std::to_string(cc_major * 10 + cc_minor);

    const std::vector<std::vector<std::string>> flag_sets = {
        {arch, "--fmad=false", "--prec-div=true", "--prec-sqrt=true", "--ftz=false"},
        {arch, "--fmad=true", "--prec-div=false", "--prec-sqrt=false", "--ftz=false"},
    };

    std::vector<Case> cases;
    {
        std::istringstream manifest(read_file(dir + "/manifest.txt"));
        std::string line;
        while (std::getline(manifest, line)) {
            std::istringstream f(line);
            Case c;
            if (f >> c.name >> c.source >> c.entry >> c.blocks >> c.threads >> c.input >>
                c.want >> c.matching >> c.ulps) {
                cases.push_back(c);
            }
        }
    }

    // Modules by (source, flag set).
    std::map<std::pair<std::string, std::size_t>, void*> modules;
    int failures = 0;
    int runs = 0;
    for (std::size_t fs = 0; fs < flag_sets.size(); ++fs) {
        std::vector<const char*> options;
        for (const std::string& o : flag_sets[fs]) {
            options.push_back(o.c_str());
        }
        for (const Case& c : cases) {
            auto key = std::make_pair(c.source, fs);
            if (modules.find(key) == modules.end()) {
                const std::string text = read_file(dir + "/" + c.source);
                NvrtcProgram program = nullptr;
                check(create(&program, text.c_str(), c.source.c_str(), 0, nullptr, nullptr),
                      "nvrtcCreateProgram");
                const int rc =
                    compile(program, static_cast<int>(options.size()), options.data());
                std::size_t size = 0;
                check(log_size(program, &size), "nvrtcGetProgramLogSize");
                std::string log(size, '\0');
                check(get_log(program, log.data()), "nvrtcGetProgramLog");
                if (rc != 0) {
                    die("nvrtc rejected " + c.source + ":\n" + log);
                }
                if (log.find_first_not_of(std::string("\0 \n", 3)) != std::string::npos) {
                    std::printf("nvrtc log for %s: %s\n", c.source.c_str(), log.c_str());
                }
                check(ptx_size(program, &size), "nvrtcGetPTXSize");
                std::string ptx(size, '\0');
                check(get_ptx(program, ptx.data()), "nvrtcGetPTX");
                check(destroy(&program), "nvrtcDestroyProgram");
                void* module = nullptr;
                check(module_load(&module, ptx.c_str()), "cuModuleLoadData");
                modules[key] = module;
            }
            void* function = nullptr;
            check(module_function(&function, modules[key], c.entry.c_str()),
                  "cuModuleGetFunction");

            const std::string input = read_file(dir + "/" + c.input);
            unsigned char params[PARAMS_BYTES];
            std::memcpy(params, input.data(), PARAMS_BYTES);
            unsigned int n = 0;
            std::memcpy(&n, params, sizeof n);
            const std::vector<float> src = floats(input, PARAMS_BYTES);
            const std::vector<float> want = floats(read_file(dir + "/" + c.want), 0);
            const std::size_t planes = n == 0 ? 0 : src.size() / n;

            const unsigned int full_blocks = (n + 255) / 256;
            const unsigned int shapes[2][2] = {{c.blocks, c.threads},
                                               {full_blocks == 0 ? 1 : full_blocks, 256}};
            for (const auto& shape : shapes) {
                CuDeviceptr d_src = 0, d_dst = 0;
                check(mem_alloc(&d_src, src.size() * sizeof(float) + 4), "cuMemAlloc");
                check(mem_alloc(&d_dst, n * sizeof(float) + 4), "cuMemAlloc");
                if (!src.empty()) {
                    check(htod(d_src, src.data(), src.size() * sizeof(float)), "cuMemcpyHtoD");
                }
                std::vector<float> got(n, POISON);
                if (n > 0) {
                    check(htod(d_dst, got.data(), n * sizeof(float)), "cuMemcpyHtoD");
                }
                void* args[] = {&d_src, &d_dst, params};
                check(launch(function, shape[0], 1, 1, shape[1], 1, 1, 0, nullptr, args,
                             nullptr),
                      "cuLaunchKernel");
                check(synchronize(), "cuCtxSynchronize");
                if (n > 0) {
                    check(dtoh(got.data(), d_dst, n * sizeof(float)), "cuMemcpyDtoH");
                }
                check(mem_free(d_src), "cuMemFree");
                check(mem_free(d_dst), "cuMemFree");
                ++runs;

                std::uint64_t worst = 0;
                if (got.size() != want.size()) {
                    die(c.name + ": the reference has " + std::to_string(want.size()) +
                        " values for " + std::to_string(n) + " pixels");
                }
                std::size_t mismatches = 0;
                std::size_t first = 0;
                for (std::size_t i = 0; i < want.size(); ++i) {
                    const float w = want[i], g = got[i];
                    const bool nan_w = std::isnan(w), nan_g = std::isnan(g);
                    bool ok;
                    if (c.matching == "bits") {
                        ok = bits(w) == bits(g);
                    } else if (c.matching == "exact") {
                        ok = (nan_w && nan_g) || bits(w) == bits(g);
                    } else if (nan_w || nan_g) {
                        ok = nan_w && nan_g;
                    } else {
                        const std::uint64_t d = ulp_distance(w, g);
                        worst = d > worst ? d : worst;
                        ok = d <= c.ulps;
                    }
                    if (!ok && mismatches++ == 0) {
                        first = i;
                    }
                }
                const char* flags = fs == 0 ? "backend flags" : "relaxed flags";
                if (mismatches == 0) {
                    std::printf("ok: %s [%s, %ux%u]: max diff %llu ulp\n", c.name.c_str(), flags,
                                shape[0], shape[1], static_cast<unsigned long long>(worst));
                } else {
                    ++failures;
                    const std::size_t bad = first;
                    std::printf("FAIL: %s [%s, %ux%u] (%s %u): %zu of %u px differ, max diff "
                                "%llu ulp; first at pixel %zu: cpu %.9g (0x%08x), gpu %.9g "
                                "(0x%08x), inputs",
                                c.name.c_str(), flags, shape[0], shape[1], c.matching.c_str(),
                                c.ulps, mismatches, n, static_cast<unsigned long long>(worst),
                                bad, want[bad], bits(want[bad]), got[bad], bits(got[bad]));
                    for (std::size_t k = 0; k < planes; ++k) {
                        const float x = src[k * n + bad];
                        std::printf(" %.9g (0x%08x)", x, bits(x));
                    }
                    std::printf("\n");
                }
            }
        }
    }
    for (auto& m : modules) {
        module_unload(m.second);
    }
    std::printf("%s: %d of %d runs failed (%zu cases x 2 flag sets x 2 launch shapes)\n",
                failures == 0 ? "ok" : "FAIL", failures, runs, cases.size());
    return failures == 0 ? 0 : 1;
}
