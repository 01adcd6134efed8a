// harness.cpp: the host program of the emulated runs in kernels/tests/cuda_source.rs.
//
//     harness ENTRY GRID_BLOCKS BLOCK_THREADS IN OUT
//
// IN holds the 48-byte Params followed by the packed input planes (f32, native endian); OUT
// receives the p.n output values. The output starts out poisoned, and both buffers have their
// exact sizes, so that (under AddressSanitizer) a kernel that reads or writes out of bounds,
// or misses a pixel, is caught.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

extern "C" int host_launch(const char* entry, unsigned int grid_blocks,
                           unsigned int block_threads, const float* src, float* dst,
                           const void* params);

namespace {

constexpr std::size_t PARAMS_BYTES = 48;
constexpr float POISON = -1234.5677f;

int fail(const char* what) {
    std::fprintf(stderr, "harness: %s\n", what);
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 6) {
        return fail("usage: harness ENTRY GRID_BLOCKS BLOCK_THREADS IN OUT");
    }
    const unsigned int grid_blocks = static_cast<unsigned int>(std::strtoul(argv[2], nullptr, 10));
    const unsigned int block_threads =
        static_cast<unsigned int>(std::strtoul(argv[3], nullptr, 10));
    std::FILE* in = std::fopen(argv[4], "rb");
    if (in == nullptr) {
        return fail("cannot open the input");
    }
    std::vector<unsigned char> bytes;
    unsigned char buf[65536];
    std::size_t got;
    while ((got = std::fread(buf, 1, sizeof buf, in)) > 0) {
        bytes.insert(bytes.end(), buf, buf + got);
    }
    std::fclose(in);
    if (bytes.size() < PARAMS_BYTES || (bytes.size() - PARAMS_BYTES) % sizeof(float) != 0) {
        return fail("malformed input");
    }
    unsigned int n;
    std::memcpy(&n, bytes.data(), sizeof n);
    const std::size_t src_len = (bytes.size() - PARAMS_BYTES) / sizeof(float);
    // Exact-size heap buffers (std::vector allocates exactly the count asked for), so
    // AddressSanitizer sees any access past either end.
    std::vector<float> src(src_len);
    std::vector<float> dst(n, POISON);
    if (src_len > 0) {
        std::memcpy(src.data(), bytes.data() + PARAMS_BYTES, src_len * sizeof(float));
    }
    if (host_launch(argv[1], grid_blocks, block_threads, src.data(), dst.data(), bytes.data()) !=
        0) {
        return fail("unknown entry point");
    }
    std::FILE* out = std::fopen(argv[5], "wb");
    if (out == nullptr || (n > 0 && std::fwrite(dst.data(), sizeof(float), n, out) != n) ||
        std::fclose(out) != 0) {
        return fail("cannot write the output");
    }
    return 0;
}
