// A direct entropy decoder for the scans of band-ordered progressive files.
//
// libjpeg-turbo's progressive Huffman decoder works block by block through its coefficient
// controller and a byte-at-a-time bit reader; it costs about twice the sequential decoder per
// byte, which would eat most of what stopping early saves. The scans of a band-ordered file
// are all "first" scans at full precision (Ah = Al = 0: each band coded once, no refinement),
// the simplest kind, and this decoder handles exactly those: DC first scans (interleaved or
// not) and AC first scans, Huffman-coded, with or without restart intervals.
//
// With restart intervals (from the DRI before the first scan, or one between scans) and a
// block window, the intervals that hold no block of the window are skipped: found by their
// markers, not decoded, their blocks left zero. What lies in them is not looked at (as with the scans after
// a band-limited read's read point); the markers themselves must all be there, in sequence.
//
// It is an accelerator, never an authority: it reports failure on anything it does not
// handle and on anything libjpeg might treat differently (an invalid code, a run past the
// scan's last band, data running short or left over, a DQT between scans, a work
// limit), and the caller then decodes the same bytes with libjpeg, which gives its own
// result or error. When it succeeds the coefficients are the ones libjpeg computes (the
// same arithmetic, tested against libjpeg on real photos).
#pragma once

#include <cstddef>
#include <cstdint>

namespace dctnet {

struct FirstScanFrame {
  int num_components;
  int component_id[10];
  int h_samp[10], v_samp[10];
  int width_in_blocks[10], height_in_blocks[10];
  int16_t* base[10];           // coefficient arrays: rows x cols blocks of 64 (MCU-padded)
  size_t cols[10];             // blocks per row of each array
  int mcus_per_row, mcu_rows;  // of interleaved scans
  uint64_t max_scan_blocks;    // 0: no limit
  unsigned int restart_interval;  // MCUs per restart interval (DRI before the first scan); 0: none
  // Block window (half-open, in blocks of each component's plane): with restart intervals,
  // only the intervals holding a block of some scanned component's window are decoded.
  bool windowed;
  int win_row0[10], win_row1[10], win_col0[10], win_col1[10];
};

struct FirstScanTables;        // Huffman tables (opaque; see make_first_scan_tables)
FirstScanTables* make_first_scan_tables();
void free_first_scan_tables(FirstScanTables* tables);

// Decodes the scans in data[begin, end): begin is the offset of the first SOS marker (the
// header before it was read by libjpeg, whose Huffman tables are passed in `dc`/`ac` as
// bits[17] + values[256] per slot, null when undefined), end a scan boundary or the EOI.
// Returns true when every scan was decoded (into frame.base; the arrays must be zero).
struct HuffmanSpec {
  const uint8_t* bits;    // bits[1..16]: number of codes of each length
  const uint8_t* values;  // symbols
};
bool decode_first_scans(const uint8_t* data, size_t begin, size_t end, const FirstScanFrame& frame,
                        const HuffmanSpec dc[4], const HuffmanSpec ac[4], FirstScanTables* tables);

}  // namespace dctnet
