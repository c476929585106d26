// Marker walk over a JPEG: its scan script and the read point of a band-limited read.
// See scan_script.h for what "complete" and "read point" mean.
#include "scan_script.h"

#include <algorithm>
#include <cstring>

namespace dctnet {

ScanWalker::ScanWalker(const int* needed, int num_needed, BandSampling sampling, int max_scans, bool record)
    : sampling_(sampling), max_scans_(max_scans), record_(record) {
  num_needed_ = std::max(0, std::min(num_needed, kMaxFrameComponents));
  for (int c = 0; c < kMaxFrameComponents; ++c) {
    const int n = num_needed_ == 0 ? 64 : needed[std::min(c, num_needed_ - 1)];
    needed_[c] = std::max(0, std::min(n, 64));
    max_band_read_[c] = -1;
  }
  std::memset(band_al_, -1, sizeof(band_al_));
}

WalkStatus ScanWalker::stop(WalkStatus status, const char* problem) {
  mode_ = kDone;
  done_status_ = status;
  problem_ = problem;
  return status;
}

bool ScanWalker::parse_sof(const uint8_t* seg, size_t length, uint8_t marker) {
  if (seen_sof_ || length < 6) return false;
  const int nc = seg[5];
  if (nc < 1 || nc > kMaxFrameComponents || length < 6 + 3 * static_cast<size_t>(nc)) return false;
  num_components_ = nc;
  for (int c = 0; c < nc; ++c) {
    component_id_[c] = seg[6 + 3 * c];
    h_samp_[c] = seg[7 + 3 * c] >> 4;
    v_samp_[c] = seg[7 + 3 * c] & 15;
  }
  progressive_ = marker == 0xC2 || marker == 0xC6 || marker == 0xCA || marker == 0xCE;
  arithmetic_ = marker >= 0xC9;
  seen_sof_ = true;
  return true;
}

// Parses an SOS segment and applies its bands to the per-band state.
bool ScanWalker::parse_sos(const uint8_t* seg, size_t length, size_t start) {
  if (length < 1) return false;
  const int ns = seg[0];
  if (ns < 1 || ns > kMaxScanComponents || length < 4 + 2 * static_cast<size_t>(ns)) return false;
  ScanRecord& r = current_;
  r = ScanRecord();
  r.num_components = ns;
  r.start = start;
  for (int i = 0; i < ns; ++i) {
    const int id = seg[1 + 2 * i];
    int index = -1;
    for (int c = 0; c < num_components_; ++c) {
      if (component_id_[c] == id) {
        index = c;
        break;
      }
    }
    if (index < 0) return false;
    r.components[i] = index;
  }
  r.ss = seg[1 + 2 * ns];
  r.se = seg[2 + 2 * ns];
  r.ah = seg[3 + 2 * ns] >> 4;
  r.al = seg[3 + 2 * ns] & 15;
  if (!progressive_) {
    // Sequential: a scan codes every band of its components at full precision.
    for (int i = 0; i < ns; ++i) {
      std::memset(band_al_[r.components[i]], 0, 64);
      max_band_read_[r.components[i]] = 63;
    }
    return true;
  }
  bool regular = r.ss <= r.se && r.se <= 63 && (r.ss == 0) == (r.se == 0) && (r.ss == 0 || ns == 1) &&
                 r.ah <= 13 && r.al <= 13 && (r.ah == 0 || r.al == r.ah - 1);
  if (regular) {
    for (int i = 0; i < ns; ++i) {
      int8_t* al = band_al_[r.components[i]];
      for (int k = r.ss; k <= r.se; ++k) {
        // A first scan codes bands nobody coded; a refinement continues from where the last
        // scan of that band stopped.
        if (al[k] != (r.ah == 0 ? -1 : r.ah)) regular = false;
      }
    }
  }
  if (!regular) {
    r.irregular = true;
    return true;
  }
  for (int i = 0; i < ns; ++i) {
    const int c = r.components[i];
    for (int k = r.ss; k <= r.se; ++k) band_al_[c][k] = static_cast<int8_t>(r.al);
    max_band_read_[c] = std::max(max_band_read_[c], r.se);
  }
  return true;
}

WalkStatus ScanWalker::scan_ended(size_t end, uint8_t next_marker) {
  current_.end = end;
  bool reached = progressive_;
  for (int c = 0; c < num_components_; ++c) {
    int k = 0;
    while (k < 64 && band_al_[c][k] == 0) ++k;
    current_.complete[c] = k;
    if (k < needed_[c]) reached = false;
  }
  if (record_) {
    records_.push_back(current_);
    return kWalkMore;
  }
  if (next_marker == 0xD9) eoi_ = end;
  if (reached && next_marker == 0xD9) {  // the last scan: nothing to leave out
    reached_at_end_ = true;
    return stop(kWalkWhole, "");
  }
  if (reached) {
    cut_ = end;
    return stop(kWalkCut, "");
  }
  return kWalkMore;
}

WalkStatus ScanWalker::advance(const uint8_t* data, size_t size) {
  while (mode_ != kDone) {
    if (mode_ == kEntropy) {
      // Entropy-coded data ends at the first marker that is not a restart marker: 0xFF
      // followed by (fill bytes 0xFF and) a code other than 0x00 (a stuffed 0xFF byte) or RSTn.
      size_t at = pos_;
      while (true) {
        if (at >= size) {
          pos_ = size;
          return kWalkMore;
        }
        const void* ff = std::memchr(data + at, 0xFF, size - at);
        if (ff == nullptr) {
          pos_ = size;
          return kWalkMore;
        }
        const size_t i = static_cast<size_t>(static_cast<const uint8_t*>(ff) - data);
        size_t j = i + 1;
        while (j < size && data[j] == 0xFF) ++j;
        if (j >= size) {
          pos_ = i;
          return kWalkMore;
        }
        const uint8_t code = data[j];
        if (code == 0x00 || (code >= 0xD0 && code <= 0xD7)) {
          at = j + 1;
          continue;
        }
        pos_ = i;
        mode_ = kMarkers;
        const WalkStatus status = scan_ended(i, code);
        if (status != kWalkMore) return status;
        break;
      }
      continue;
    }
    // Marker segments.
    if (pos_ + 2 > size) return kWalkMore;
    if (data[pos_] != 0xFF) return stop(kWalkWhole, "bytes that are not a marker between segments");
    size_t code = pos_ + 1;
    while (code < size && data[code] == 0xFF) ++code;  // fill bytes
    if (code >= size) return kWalkMore;
    const uint8_t marker = data[code];
    if (marker == 0xD9) {  // EOI
      if (scans_ > 0 && eoi_ == 0 && pos_ == current_.end) eoi_ = pos_;
      return stop(kWalkWhole, "");
    }
    if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {
      return stop(kWalkWhole, "a standalone marker between segments");
    }
    if (code + 3 > size) return kWalkMore;
    const size_t length = (static_cast<size_t>(data[code + 1]) << 8) | data[code + 2];
    if (length < 2) return stop(kWalkWhole, "a marker segment shorter than its length field");
    const size_t end = code + 1 + length;
    const bool is_sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (is_sof || marker == 0xDA) {
      if (end > size) return kWalkMore;
      const uint8_t* seg = data + code + 3;
      if (is_sof) {
        if (!parse_sof(seg, length - 2, marker)) return stop(kWalkWhole, "an unusual frame header");
        if (!record_) {
          if (!progressive_) return stop(kWalkWhole, "");
          const bool native = num_components_ == 1 ||
                              (num_components_ == 3 && h_samp_[0] == 2 && v_samp_[0] == 2 && h_samp_[1] == 1 &&
                               v_samp_[1] == 1 && h_samp_[2] == 1 && v_samp_[2] == 1);
          if (sampling_ == kNative420 && !native) return stop(kWalkWhole, "");
        }
      } else {
        if (!seen_sof_ || !parse_sos(seg, length - 2, pos_)) return stop(kWalkWhole, "an unusual scan header");
        ++scans_;
        if (max_scans_ > 0 && scans_ > max_scans_) {
          truncated_ = true;
          return stop(kWalkWhole, "more scans than the scan limit");
        }
        if (current_.irregular && !record_) return stop(kWalkWhole, "");
        if (first_scan_ == 0) first_scan_ = pos_;
        if (current_.irregular || current_.ah != 0 || current_.al != 0) first_scans_only_ = false;
        mode_ = kEntropy;
      }
    }
    pos_ = end;
  }
  return done_status_;
}

}  // namespace dctnet
