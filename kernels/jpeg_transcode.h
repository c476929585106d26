// Lossless transcoding to a band-ordered progressive JPEG (docs/architecture.md §6): the
// jpegtran way (jpeg_read_coefficients, jpeg_copy_critical_parameters, jpeg_write_coefficients
// with a custom scan script), so the coefficients are the input's, bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>

#include "jpeg_reader.h"

namespace dctnet {

struct TranscodeResult {
  int kind = kOk;                    // ErrorKind
  char message[kMessageSize] = {0};
  uint8_t* data = nullptr;           // malloc'd output (free with std::free)
  size_t size = 0;
};

// Rewrites data[0, size) as a progressive JPEG whose scans are ordered by band groups:
// group_ends (strictly increasing zigzag band counts in 1..64, the last 64) split the bands
// into groups [0, e0), [e0, e1), ...; the DC band is always its own first scan (all
// components together when at most 4), then for each group one scan per component, at full
// precision (no successive approximation). num_groups == 0: a sequential file with optimised
// Huffman tables instead. Markers (APPn, COM) are copied. Never throws.
//
// requant_tables (nullptr: none): 2 x 64 quantisation steps (natural order; luma, chroma)
// with which every coefficient is requantised on the way through, as libjpeg's quantiser
// rounds a dequantised value (c * q_old, half away from zero); component 0 gets the first
// table, the others the second. Then the file is baseline sequential with the standard
// Huffman tables and no APPn/COM markers (num_groups must be 0), and the input must be YCbCr
// or grayscale.
//
// restart_interval (0: none): a restart marker every that many MCUs in every scan (a
// non-interleaved scan's MCU is one block), so that a reader can skip the intervals that hold
// no block it needs (ReadOptions::window).
void transcode_band_ordered(const uint8_t* data, size_t size, const int* group_ends, int num_groups,
                            uint64_t max_pixels, TranscodeResult* result,
                            const uint16_t* requant_tables = nullptr, unsigned int restart_interval = 0);

}  // namespace dctnet
