// sda._sdafile: the native half of the .sda container (SDA_FORMAT.md).
//
// Python keeps everything about the format (layout, JSON, validation, error messages, the atomic
// temporary-file protocol); this module does only the byte work, on Python buffers, so it needs
// nothing from PyTorch's C++ API. sda/sdafile.py has a pure-Python twin of each function with the
// same signature and behaviour:
//
//   crc32(data, value=0) -> int                  CRC-32 (zlib polynomial), continuing from value
//   read_into(fd, path, items, crc=True) -> list  items: [(file_offset, writable buffer)]; fills
//                                                 each buffer, returns each one's CRC-32 (0s if not crc)
//   first_nonzero(fd, path, ranges) -> int       ranges: [(start, stop)]; index of the first range
//                                                 holding a non-zero byte, or -1
//   write_all(fd, path, items) -> None           items: [(file_offset, buffer)]; writes them, fsyncs
//
// The GIL is released around all I/O and checksums: buffers are acquired (and the arguments
// converted) while holding it, the work runs without it, and the outcome becomes a Python
// exception once it is back. Interrupted system calls are retried without the GIL, so a Ctrl-C
// takes effect when the call returns (a verified read runs at GB/s: well under a second per GB).
// Failures: OSError with errno and path (FileNotFoundError and so on);
// a file that ends early raises ShortReadError (an EOFError) with .index (the item or range) and
// .offset (where the file ended), which sdafile.py words as truncation.

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SDA_HAVE_CLMUL 1
#endif

namespace py = pybind11;

namespace {

// ---------------------------------------------------------------------------------------------
// CRC-32 with the zlib polynomial (reflected 0xEDB88320); results are bit-identical to zlib.crc32.

// Portable path: slice-by-8, eight table lookups per eight input bytes (about 2 GB/s).
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

// Works on the inverted CRC register (crc32_update does the inversions).
uint32_t crc32_slice8(uint32_t crc, const unsigned char *p, size_t n) {
    const Tables &t = tables();
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
    return crc;
}

#ifdef SDA_HAVE_CLMUL
// x86-64 with PCLMULQDQ (every x86-64 CPU since about 2010): carry-less multiplication folds 64
// bytes per step, several times faster than the tables (so verification keeps up with a page-cache
// read). This is the algorithm of Intel's "Fast CRC Computation for Generic Polynomials Using
// PCLMULQDQ" (2009), as in zlib-ng, Chromium's zlib and Linux's crc32-pclmul, with its published
// constants for the reflected zlib polynomial. Needs n >= 64 and n % 16 == 0; crc is inverted.
#define SDA_CLMUL __attribute__((target("pclmul,sse4.1")))

SDA_CLMUL inline __m128i load(const unsigned char *p) { return _mm_loadu_si128(reinterpret_cast<const __m128i *>(p)); }

// x.hi * k.hi ^ x.lo * k.lo ^ next: 128 bits folded onto the next 128.
SDA_CLMUL inline __m128i fold(__m128i x, __m128i k, __m128i next) {
    return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x11), _mm_clmulepi64_si128(x, k, 0x00)), next);
}

SDA_CLMUL uint32_t crc32_clmul(uint32_t crc, const unsigned char *p, size_t n) {
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4);  // fold by 512 bits
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);  // fold by 128 bits
    const __m128i k5 = _mm_set_epi64x(0, 0x0163cd6124);               // 64 -> 32 bits
    const __m128i poly = _mm_set_epi64x(0x01f7011641, 0x01db710641);  // Barrett: mu, P
    const __m128i low32 = _mm_setr_epi32(~0, 0, ~0, 0);

    __m128i x1 = _mm_xor_si128(load(p), _mm_cvtsi32_si128(static_cast<int>(crc)));
    __m128i x2 = load(p + 16), x3 = load(p + 32), x4 = load(p + 48);
    for (p += 64, n -= 64; n >= 64; p += 64, n -= 64) {  // four independent lanes
        x1 = fold(x1, k1k2, load(p));
        x2 = fold(x2, k1k2, load(p + 16));
        x3 = fold(x3, k1k2, load(p + 32));
        x4 = fold(x4, k1k2, load(p + 48));
    }
    x1 = fold(fold(fold(x1, k3k4, x2), k3k4, x3), k3k4, x4);
    for (; n >= 16; p += 16, n -= 16) x1 = fold(x1, k3k4, load(p));

    // 128 -> 64 -> 32 bits, then Barrett reduction.
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), _mm_clmulepi64_si128(x1, k3k4, 0x10));
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 4), _mm_clmulepi64_si128(_mm_and_si128(x1, low32), k5, 0x00));
    __m128i x2b = _mm_and_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, low32), poly, 0x10), low32);
    x1 = _mm_xor_si128(x1, _mm_clmulepi64_si128(x2b, poly, 0x00));
    return static_cast<uint32_t>(_mm_extract_epi32(x1, 1));
}

bool have_clmul() {
    static const bool yes =
        (__builtin_cpu_init(), __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1"));
    return yes;
}
#endif

uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
#ifdef SDA_HAVE_CLMUL
    if (n >= 64 && have_clmul()) {
        const size_t bulk = n & ~size_t{15};
        crc = crc32_clmul(crc, p, bulk);
        p += bulk;
        n -= bulk;
    }
#endif
    return ~crc32_slice8(crc, p, n);
}

bool little_endian() {
    const uint16_t one = 1;
    unsigned char first;
    std::memcpy(&first, &one, 1);
    return first == 1;
}

// ---------------------------------------------------------------------------------------------
// File I/O. The work functions run without the GIL and report through Outcome; the wrappers turn
// it into an exception with the GIL held.

// Read and checksum tensors this many bytes at a time: each chunk is checksummed right after it
// is read, while it is still in cache, so verification costs no second pass over memory.
constexpr size_t kChunk = size_t{4} << 20;

struct Outcome {
    int error = 0;       // an errno value, or 0
    bool ended = false;  // the file ended before an item did
    size_t index = 0;    // the item that failed or ended
    uint64_t offset = 0; // where the file ended
};

// Reads exactly n bytes at offset, retrying EINTR and short reads. Returns 0, an errno value, or
// -1 when the file ends first (*got then holds what came).
int pread_full(int fd, unsigned char *p, size_t n, uint64_t offset, size_t *got) {
    *got = 0;
    while (*got < n) {
        const ssize_t r = ::pread(fd, p + *got, n - *got, static_cast<off_t>(offset + *got));
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (r == 0) return -1;
        *got += static_cast<size_t>(r);
    }
    return 0;
}

// Writes all n bytes at offset, retrying EINTR and short writes. Returns 0 or an errno value.
int pwrite_full(int fd, const unsigned char *p, size_t n, uint64_t offset) {
    while (n) {
        // At most 1 GiB a call: some systems (macOS) refuse a count over INT_MAX.
        const ssize_t r = ::pwrite(fd, p, std::min(n, size_t{1} << 30), static_cast<off_t>(offset));
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (r == 0) return EIO;  // no progress and no error: never loop forever
        p += r;
        n -= static_cast<size_t>(r);
        offset += static_cast<uint64_t>(r);
    }
    return 0;
}

[[noreturn]] void raise_os_error(int error, const py::object &path) {
    errno = error;
    PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path.ptr());  // picks the subclass by errno
    throw py::error_already_set();
}

PyObject *ShortReadError = nullptr;  // created at import; lives as long as the process

void raise_if_failed(const Outcome &out, const py::object &path) {
    if (out.error) raise_os_error(out.error, path);
    if (!out.ended) return;
    auto type = py::reinterpret_borrow<py::object>(ShortReadError);
    py::object exc = type(py::str("{}: the file ends at byte {}, inside item {}").format(path, out.offset, out.index));
    exc.attr("index") = out.index;
    exc.attr("offset") = out.offset;
    PyErr_SetObject(ShortReadError, exc.ptr());
    throw py::error_already_set();
}

// A contiguous buffer placed at a file offset. The buffer_info keeps the Python buffer exported
// (so it can be neither freed nor resized) until it is destroyed, with the GIL held again.
struct Span {
    py::buffer_info info;
    unsigned char *data;
    size_t size;
    uint64_t offset;
};

std::vector<Span> spans(std::vector<std::pair<uint64_t, py::buffer>> &items, bool writable) {
    std::vector<Span> out;
    out.reserve(items.size());
    for (auto &[offset, buffer] : items) {
        py::buffer_info info = buffer.request(writable);
        if (!PyBuffer_IsContiguous(info.view(), 'C')) throw py::value_error("the buffers must be C-contiguous");
        const size_t size = static_cast<size_t>(info.size) * static_cast<size_t>(info.itemsize);
        if (offset > static_cast<uint64_t>(std::numeric_limits<off_t>::max()) - size)
            throw py::value_error("a file offset plus its buffer's size overflows off_t");
        auto *data = static_cast<unsigned char *>(info.ptr);
        out.push_back({std::move(info), data, size, offset});
    }
    return out;
}

std::vector<uint32_t> read_into(int fd, const py::object &path, std::vector<std::pair<uint64_t, py::buffer>> items,
                                bool crc) {
    std::vector<Span> parts = spans(items, /*writable=*/true);
    std::vector<uint32_t> crcs(parts.size(), 0);
    Outcome out;
    {
        py::gil_scoped_release release;
#ifdef POSIX_FADV_SEQUENTIAL
        // A hint for a cold read: larger read-ahead. Advisory, so its failure does not matter.
        (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
        for (size_t i = 0; i < parts.size() && !out.error && !out.ended; ++i) {
            const Span &s = parts[i];
            for (size_t done = 0; done < s.size;) {
                const size_t n = std::min(kChunk, s.size - done);
                size_t got;
                const int r = pread_full(fd, s.data + done, n, s.offset + done, &got);
                if (r) {
                    out = {r > 0 ? r : 0, r < 0, i, s.offset + done + got};
                    break;
                }
                if (crc) crcs[i] = crc32_update(crcs[i], s.data + done, n);
                done += n;
            }
        }
    }
    raise_if_failed(out, path);
    return crcs;
}

int64_t first_nonzero(int fd, const py::object &path, const std::vector<std::pair<uint64_t, uint64_t>> &ranges) {
    for (const auto &[start, stop] : ranges)
        if (start > stop || stop > static_cast<uint64_t>(std::numeric_limits<off_t>::max()))
            throw py::value_error("each range must be (start, stop) with start <= stop");
    std::vector<unsigned char> chunk;
    Outcome out;
    int64_t found = -1;
    {
        py::gil_scoped_release release;
        for (size_t i = 0; i < ranges.size() && found < 0 && !out.error && !out.ended; ++i) {
            for (uint64_t at = ranges[i].first; at < ranges[i].second;) {
                const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, ranges[i].second - at));
                if (chunk.size() < n) chunk.resize(n);  // padding is small: allocate what it needs
                size_t got;
                const int r = pread_full(fd, chunk.data(), n, at, &got);
                if (r) {
                    out = {r > 0 ? r : 0, r < 0, i, at + got};
                    break;
                }
                // All zero when the first byte is zero and every byte equals the next one.
                if (chunk[0] != 0 || std::memcmp(chunk.data(), chunk.data() + 1, n - 1) != 0) {
                    found = static_cast<int64_t>(i);
                    break;
                }
                at += n;
            }
        }
    }
    raise_if_failed(out, path);
    return found;
}

void write_all(int fd, const py::object &path, std::vector<std::pair<uint64_t, py::buffer>> items) {
    std::vector<Span> parts = spans(items, /*writable=*/false);
    Outcome out;
    {
        py::gil_scoped_release release;
        for (size_t i = 0; i < parts.size() && !out.error; ++i)
            out.error = pwrite_full(fd, parts[i].data, parts[i].size, parts[i].offset);
        // The data must be on disk before Python renames the file over the old one.
        while (!out.error && ::fsync(fd) != 0) {
            if (errno != EINTR) out.error = errno;
        }
    }
    raise_if_failed(out, path);
}

}  // namespace

PYBIND11_MODULE(_sdafile, m) {
    m.doc() = "The byte work of the .sda model container: reads, writes, CRC-32, with the GIL released.";
    if (!little_endian()) throw std::runtime_error("sda._sdafile supports little-endian hosts only");

    ShortReadError = PyErr_NewExceptionWithDoc(
        "sda._sdafile.ShortReadError", "The file ended early: .index is the item or range, .offset where it ended.",
        PyExc_EOFError, nullptr);
    if (!ShortReadError) throw py::error_already_set();
    m.add_object("ShortReadError", py::reinterpret_borrow<py::object>(ShortReadError));
#ifdef SDA_HAVE_CLMUL
    m.attr("CRC32_IMPL") = have_clmul() ? "pclmul" : "slice-by-8";
#else
    m.attr("CRC32_IMPL") = "slice-by-8";
#endif

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
    m.def("read_into", &read_into, py::arg("fd"), py::arg("path"), py::arg("items"), py::arg("crc") = true,
          "Fill each (file_offset, writable buffer) item with pread; return each buffer's CRC-32 (0s if not crc),\n"
          "computed chunk by chunk right after reading. path names the file in errors.");
    m.def("first_nonzero", &first_nonzero, py::arg("fd"), py::arg("path"), py::arg("ranges"),
          "The index of the first (start, stop) byte range of the file holding a non-zero byte, or -1.");
    m.def("write_all", &write_all, py::arg("fd"), py::arg("path"), py::arg("items"),
          "pwrite each (file_offset, buffer) item, then fsync the file. path names the file in errors.");
}
