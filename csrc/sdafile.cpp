// sda._sdafile: the native half of the .sda container (SDA_FORMAT.md).
//
// For now it holds the CRC-32 that every .sda region is checked with; the reader and writer
// join it with the file-format work. It works on Python buffers and releases the GIL while it
// computes, so it depends on nothing from PyTorch's C++ API.

#include <pybind11/pybind11.h>

#include <array>
#include <cstdint>
#include <cstring>

namespace py = pybind11;

namespace {

// CRC-32 with the zlib polynomial (reflected 0xEDB88320), slice-by-8: eight table lookups per
// eight input bytes. Results are bit-identical to zlib.crc32.
using Tables = std::array<std::array<uint32_t, 256>, 8>;

Tables make_tables() {
    Tables t{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
        for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFFu];
    return t;
}

const Tables &tables() {
    static const Tables t = make_tables();
    return t;
}

uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n) {
    const Tables &t = tables();
    crc = ~crc;
    while (n >= 8) {
        uint32_t lo, hi;
        std::memcpy(&lo, p, 4);  // little-endian hosts only; checked at import
        std::memcpy(&hi, p + 4, 4);
        lo ^= crc;
        crc = t[7][lo & 0xFFu] ^ t[6][(lo >> 8) & 0xFFu] ^ t[5][(lo >> 16) & 0xFFu] ^ t[4][lo >> 24] ^
              t[3][hi & 0xFFu] ^ t[2][(hi >> 8) & 0xFFu] ^ t[1][(hi >> 16) & 0xFFu] ^ t[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = t[0][(crc ^ *p++) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}

bool little_endian() {
    const uint16_t one = 1;
    unsigned char first;
    std::memcpy(&first, &one, 1);
    return first == 1;
}

}  // namespace

PYBIND11_MODULE(_sdafile, m) {
    m.doc() = "Native helpers for the .sda model container (CRC-32 for now).";
    if (!little_endian()) throw std::runtime_error("sda._sdafile supports little-endian hosts only");
    m.def(
        "crc32",
        [](py::buffer data, uint32_t value) {
            py::buffer_info info = data.request();
            if (!PyBuffer_IsContiguous(info.view(), 'A'))
                throw py::value_error("crc32 needs a contiguous buffer");
            const auto *p = static_cast<const unsigned char *>(info.ptr);
            const size_t n = static_cast<size_t>(info.size) * static_cast<size_t>(info.itemsize);
            py::gil_scoped_release release;
            return crc32_update(value, p, n);
        },
        py::arg("data"), py::arg("value") = 0u,
        "CRC-32 (zlib polynomial) of a contiguous buffer, continuing from value; same result as zlib.crc32.");
}
