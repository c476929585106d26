// Coefficient reader over libjpeg-turbo's jpeg_read_coefficients.
//
// The surface is deliberately flat (pointers, sizes, plain structs) so that the Python
// binding in native_module.cpp stays thin and everything else is orchestrated in Python.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dctnet {

constexpr int kMaxComponents = 10;   // libjpeg's MAX_COMPONENTS
constexpr int kMessageSize = 320;

enum ErrorKind : int {
  kOk = 0,
  kJpegError = 1,    // libjpeg error_exit, or a corruption warning in strict mode
  kOsError = 2,      // reading the file failed; sys_errno is set
  kLimitError = 3,   // pixel or scan limit exceeded
  kNoMemory = 4,
  kInvalid = 5,      // data libjpeg accepts but dctnet cannot use (zero quantisation step)
};

struct ReadResult;

// Blocks of each component's plane that a reader's caller will use (half-open ranges; empty:
// none of that component).
struct BlockWindow {
  int row0[kMaxComponents], row1[kMaxComponents], col0[kMaxComponents], col1[kMaxComponents];
};

// Asked once the header is read (geometry in `header`: size, components, sampling, blocks);
// true and `window` filled when the caller will use only that window of the image.
using WindowQuery = bool (*)(void* context, int64_t index, const ReadResult& header, BlockWindow* window);

struct ReadOptions {
  bool strict = true;             // corruption warnings are errors
  bool header_only = false;       // stop after the header: no coefficients
  uint64_t max_pixels = 0;        // 0: no limit
  int max_scans = 1000;           // progressive files with more scans are rejected
  uint64_t max_bytes = 0;         // inputs (files or buffers) larger than this are rejected; 0: no limit
  uint64_t max_scan_blocks = 0;   // sum over scans of the blocks each scan codes; 0: no limit
  // Band-limited read (docs/architecture.md §6): the first `bands` zigzag bands of the first
  // component and `chroma_bands` (-1: `bands`) of the others are needed. A progressive file
  // is decoded only up to the end of the first scan after which those bands are complete
  // (a file is read no further than that, plus at most one read chunk: 4 KiB or 1/8 of
  // what was read), the bands above are
  // zeroed; other files are read whole. band_sampling: a BandSampling (scan_script.h).
  int bands = 64;
  int chroma_bands = -1;
  int band_sampling = 0;
  // Full-precision first scans (band-ordered files) through first_scans.cpp; false: libjpeg
  // decodes everything (the tests compare the two).
  bool direct_first_scans = true;
  // Optional block window (read_to_tensor's crop): a band-ordered file with restart intervals
  // read through first_scans.cpp skips the intervals outside it (ReadResult::windowed; the
  // blocks outside the window are then not the file's, zero or not). Any other file, and a
  // file the direct decoder hands to libjpeg, is read whole.
  WindowQuery window = nullptr;
  void* window_context = nullptr;
  int64_t window_index = 0;
};

// Everything a read produces. `buffer` (from acquire_buffer) is one block the caller takes
// ownership of and gives back with release_buffer:
// the quantisation tables (uint16, ncomp x 64, natural order) at offset 0, then each
// component's coefficients (int16, hb x wb x 64, natural order) at plane_offset[c] bytes.
struct ReadResult {
  int kind = kOk;
  int sys_errno = 0;
  char message[kMessageSize] = {0};

  int width = 0, height = 0, num_components = 0;
  int colorspace = 0;          // libjpeg J_COLOR_SPACE of the file
  int progressive = 0, arithmetic = 0, restart_interval = 0;
  int h_samp[kMaxComponents] = {0}, v_samp[kMaxComponents] = {0};
  int width_in_blocks[kMaxComponents] = {0}, height_in_blocks[kMaxComponents] = {0};

  void* buffer = nullptr;
  size_t buffer_bytes = 0;
  size_t plane_offset[kMaxComponents] = {0};

  // Corrupt data tolerated in lenient mode.
  int corrupt_warnings = 0;
  // Blocks not decoded: from the iMCU row where data was first found lost (a decoder had to
  // invent bits, or skipped data) to the end of that scan's components, plus components no
  // scan reached. Exact at iMCU-row granularity (an upper bound within that row). The source
  // running dry alone (a file missing only its EOI marker) loses nothing by itself.
  long long missing_blocks = 0;
  long long total_blocks = 0;
  int corrupt_scan = 0;           // scan number (1-based) where corruption was first seen
  char first_corruption[kMessageSize] = {0};
  // Bands each component holds: 64 (whole read), or what a band-limited read kept (the
  // bands above are zero).
  int bands_read[kMaxComponents] = {0};
  // Nonzero: only ReadOptions::window's blocks were decoded (restart intervals outside it
  // were skipped).
  int windowed = 0;
  // Bytes of the input used: read from the file (paths), or given to the decoder (buffers).
  size_t bytes_read = 0;
  // Warnings that do not affect coefficients (unknown JFIF revision, bad ICC marker, ...).
  int other_warnings = 0;
  char first_other_warning[kMessageSize] = {0};
};

// One libjpeg decompressor, reused across reads. Not thread safe: use one per thread.
class Decompressor {
 public:
  Decompressor();
  ~Decompressor();
  Decompressor(const Decompressor&) = delete;
  Decompressor& operator=(const Decompressor&) = delete;

  // Reads coefficients from memory. Never throws; the outcome is in `result`.
  void read(const uint8_t* data, size_t size, const ReadOptions& options, ReadResult* result);

 private:
  struct State;
  State* state_;
};

// Output buffers. Zeroed memory of at least `bytes` bytes, 64-byte aligned, taken from a small
// process-wide pool of released buffers when one fits (re-zeroing warm memory is much cheaper
// than faulting in fresh pages for every image). Thread safe. Release with release_buffer.
void* acquire_buffer(size_t bytes);
void release_buffer(void* buffer);

// The one way a file becomes reader input. Opens `path` (O_NONBLOCK: a FIFO cannot block
// the open), accepts regular files only, checks st_size against options.max_bytes and the
// first two bytes (SOI) before reading further, then reads the file into a malloc'd buffer
// (*data, free with std::free): whole, or for options.header_only only up to the end of the
// first SOS segment (found by walking the marker segments; whole file on anything unusual),
// or for a band-limited read in chunks only up to its read point (ScanWalker).
// Returns false and fills result (kOsError with sys_errno, kJpegError, kLimitError,
// kNoMemory) on failure.
bool load_file(const char* path, const ReadOptions& options, uint8_t** data, size_t* size,
               ReadResult* result);

}  // namespace dctnet
