// The scan script of a JPEG, found by walking its markers (no entropy decoding), and the
// read point of a band-limited read (docs/architecture.md §6).
//
// A progressive scan carries the zigzag bands Ss..Se of its components at bit position Al
// (a first scan, Ah = 0) or refines them from bit Ah to Al = Ah - 1. A band is complete once
// a scan has brought it to Al = 0: no later scan of a valid file may touch it again. After
// each scan the walker knows, for every component, how many leading zigzag bands are
// complete; the read point for "n bands" is the end of the first scan after which every
// component has its first n bands complete. Decoding the bytes up to that point (plus an
// EOI marker) gives exactly the coefficients of those bands that decoding the whole file
// gives: that is what makes the partial read exact, whatever the scan order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dctnet {

constexpr int kMaxScanComponents = 4;     // MAX_COMPS_IN_SCAN
constexpr int kMaxFrameComponents = 10;   // MAX_COMPONENTS

// Which files a band-limited read applies to (the others are read whole).
enum BandSampling : int {
  kAnySampling = 0,      // every progressive file
  kNative420 = 1,        // gray, or three components sampled 2x2, 1x1, 1x1 (4:2:0)
};

struct ScanRecord {
  int num_components = 0;
  int components[kMaxScanComponents] = {0};   // frame component indices
  int ss = 0, se = 0, ah = 0, al = 0;
  size_t start = 0;          // offset of its SOS marker
  size_t end = 0;            // offset of the marker after its entropy-coded data
  int complete[kMaxFrameComponents] = {0};   // per component: leading bands complete after it
  bool irregular = false;    // overlaps or refines out of order (libjpeg decides what it means)
};

enum WalkStatus : int {
  kWalkMore = 0,     // more bytes are needed
  kWalkCut = 1,      // read point found before the last scan: decode data[0, cut) then EOI
  kWalkWhole = 2,    // read the whole input (baseline, not band-limited, unusual, or its end reached)
};

// Walks markers and scans over a buffer that may grow between calls (advance() resumes where
// it stopped). Bounded work: every byte is looked at once (memchr over entropy-coded data).
class ScanWalker {
 public:
  // needed[c]: bands component c needs (0..64; components beyond num_needed need
  // needed[num_needed - 1]). record: keep every scan's record and walk to the end
  // (inspection) instead of stopping at the read point.
  ScanWalker(const int* needed, int num_needed, BandSampling sampling, int max_scans, bool record);

  // Walks data[0, size) on from where the last call stopped (data may have been moved, its
  // first bytes must be the same). kWalkCut: cut() is where the decoder input ends.
  WalkStatus advance(const uint8_t* data, size_t size);
  size_t cut() const { return cut_; }
  int bands_read(int c) const { return c < num_components_ ? needed_[c] : 0; }
  // Whether a scan before the cut coded a band of component c at or above what it needs
  // (those must be zeroed: they may be incomplete).
  bool over_read(int c) const { return c < num_components_ && max_band_read_[c] >= needed_[c]; }

  // Inspection (record = true).
  int num_components() const { return num_components_; }
  bool progressive() const { return progressive_; }
  bool arithmetic() const { return arithmetic_; }
  int num_scans() const { return scans_; }
  const std::vector<ScanRecord>& records() const { return records_; }
  bool truncated() const { return truncated_; }   // more scans than max_scans
  const char* problem() const { return problem_; } // why the walk ended early, or ""
  // Where the first scan's SOS marker is (0: none seen), whether every scan walked is a
  // regular full-precision first scan (Ah = Al = 0: what first_scans.cpp decodes), and the
  // offset of the EOI marker when the walk reached it right after a scan (0: not).
  size_t first_scan() const { return first_scan_; }
  bool first_scans_only() const { return progressive_ && first_scans_only_; }
  size_t eoi() const { return eoi_; }
  // Whether the read point is the last scan (the walk then ends with kWalkWhole).
  bool reached_at_end() const { return reached_at_end_; }

 private:
  WalkStatus stop(WalkStatus status, const char* problem);
  bool parse_sof(const uint8_t* seg, size_t length, uint8_t marker);
  bool parse_sos(const uint8_t* seg, size_t length, size_t start);
  WalkStatus scan_ended(size_t end, uint8_t next_marker);

  enum Mode { kMarkers, kEntropy, kDone };
  Mode mode_ = kMarkers;
  WalkStatus done_status_ = kWalkWhole;
  size_t pos_ = 2;           // after SOI
  size_t cut_ = 0;
  int needed_[kMaxFrameComponents] = {0};
  int num_needed_ = 0;
  BandSampling sampling_;
  int max_scans_;
  bool record_;
  bool seen_sof_ = false, progressive_ = false, arithmetic_ = false;
  int num_components_ = 0;
  int component_id_[kMaxFrameComponents] = {0};
  int h_samp_[kMaxFrameComponents] = {0}, v_samp_[kMaxFrameComponents] = {0};
  // Bit position each band is known to (Al of the last scan that coded it), -1: never coded.
  int8_t band_al_[kMaxFrameComponents][64];
  int max_band_read_[kMaxFrameComponents];
  int scans_ = 0;
  ScanRecord current_;
  std::vector<ScanRecord> records_;   // record mode only (may throw std::bad_alloc there)
  bool truncated_ = false;
  const char* problem_ = "";
  size_t first_scan_ = 0;
  bool first_scans_only_ = true;
  size_t eoi_ = 0;
  bool reached_at_end_ = false;
};

}  // namespace dctnet
