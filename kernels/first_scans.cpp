// Direct decoder of full-precision first scans (see first_scans.h). The arithmetic follows
// libjpeg-turbo 2.1.5's jdphuff.c (decode_mcu_DC_first, decode_mcu_AC_first) and its table
// construction (jdhuff.c, jpeg_make_d_derived_tbl) step by step.
#include "first_scans.h"

#include <climits>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <new>
#include <vector>

namespace dctnet {

namespace {

constexpr int kLookahead = 10;

inline int extend(uint32_t r, int s) {  // HUFF_EXTEND
  return static_cast<int>(r) < (1 << (s - 1)) ? static_cast<int>(r) + static_cast<int>((~0u) << s) + 1
                                              : static_cast<int>(r);
}

struct Table {
  bool defined;
  uint8_t bits[17];
  uint8_t values[256];
  // Derived: lookahead (code length << 8 | symbol; 0: longer code), canonical decoding.
  bool derived;
  bool dc_checked;
  uint16_t lookup[1 << kLookahead];
  // AC tables: a code and its value bits together within the lookahead, for values in
  // -128..127 (most of them): value << 8 | run << 4 | total length; value 0: EOB (run 0) or
  // ZRL (run 15); 0: none of these.
  int16_t fast_ac[1 << kLookahead];
  int32_t maxcode[18];
  int32_t valoffset[18];
};

// Builds the decoding tables (fast_ac only for AC tables); false for a table libjpeg rejects
// (JERR_BAD_HUFF_TABLE).
bool derive(Table* t, bool ac) {
  int huffsize[257];
  uint32_t huffcode[257];
  int p = 0;
  for (int l = 1; l <= 16; ++l) {
    const int count = t->bits[l];
    if (p + count > 256) return false;
    for (int i = 0; i < count; ++i) huffsize[p++] = l;
  }
  huffsize[p] = 0;
  const int numsymbols = p;
  uint32_t code = 0;
  int si = huffsize[0];
  p = 0;
  while (huffsize[p]) {
    while (huffsize[p] == si) {
      huffcode[p++] = code;
      code++;
    }
    if (static_cast<int32_t>(code) >= (1 << si)) return false;
    code <<= 1;
    si++;
  }
  p = 0;
  for (int l = 1; l <= 16; ++l) {
    if (t->bits[l]) {
      t->valoffset[l] = p - static_cast<int32_t>(huffcode[p]);
      p += t->bits[l];
      t->maxcode[l] = static_cast<int32_t>(huffcode[p - 1]);
    } else {
      t->maxcode[l] = -1;
    }
  }
  t->valoffset[17] = 0;
  t->maxcode[17] = 0x7FFFFFFF;  // sentinel: ends the slow search
  std::memset(t->lookup, 0, sizeof(t->lookup));
  p = 0;
  for (int l = 1; l <= kLookahead; ++l) {
    for (int i = 1; i <= t->bits[l]; ++i, ++p) {
      const int lookbits = static_cast<int>(huffcode[p]) << (kLookahead - l);
      for (int ctr = 1 << (kLookahead - l); ctr > 0; --ctr) {
        t->lookup[lookbits + (1 << (kLookahead - l)) - ctr] = static_cast<uint16_t>((l << 8) | t->values[p]);
      }
    }
  }
  (void)numsymbols;
  t->derived = true;
  if (!ac) return true;
  // By code and value bits, filling each range of entries that share them.
  std::memset(t->fast_ac, 0, sizeof(t->fast_ac));
  p = 0;
  for (int l = 1; l <= kLookahead; ++l) {
    for (int i = 1; i <= t->bits[l]; ++i, ++p) {
      const int run = t->values[p] >> 4, size = t->values[p] & 15;
      if (size == 0) {
        // EOB (run 0: an end-of-band run of one block) and ZRL (run 15: sixteen zeros), whose
        // entries have value 0 (never a coefficient's value).
        if (run != 0 && run != 15) continue;
        const int first = static_cast<int>(huffcode[p]) << (kLookahead - l);
        for (int e = 0; e < (1 << (kLookahead - l)); ++e) t->fast_ac[first + e] = static_cast<int16_t>(run * 16 + l);
        continue;
      }
      if (l + size > kLookahead) continue;
      const int spare = kLookahead - l - size;
      for (uint32_t v = 0; v < (1u << size); ++v) {
        const int value = extend(v, size);
        if (value < -128 || value > 127) continue;
        const int16_t entry = static_cast<int16_t>(value * 256 + run * 16 + l + size);
        const int first = ((static_cast<int>(huffcode[p]) << size) | static_cast<int>(v)) << spare;
        for (int e = 0; e < (1 << spare); ++e) t->fast_ac[first + e] = entry;
      }
    }
  }
  t->derived = true;
  return true;
}

bool check_dc(Table* t) {
  int count = 0;
  for (int l = 1; l <= 16; ++l) count += t->bits[l];
  for (int i = 0; i < count; ++i) {
    if (t->values[i] > 15) return false;
  }
  t->dc_checked = true;
  return true;
}

// MSB-first bit reader over entropy-coded data[p, end) (end: the marker after the scan or the
// restart interval). Stuffed 0xFF 0x00 pairs give 0xFF; any marker fails the read. Past the
// end it supplies zero bytes and counts them: using any of those bits means the data was short.
// The valid bits sit at the top of `buffer` (the next bit is bit 63), so looking ahead is a
// constant shift and consuming is one shift: the short dependency chain of Huffman decoding.
struct BitReader {
  const uint8_t* p;
  const uint8_t* end;
  uint64_t buffer;
  int count;       // valid bits at the top of buffer; the bits below them are zero
  int padding;     // zero bytes supplied past the end
  bool bad;        // a marker inside the data

  void fill() {
    // Most of the data has no 0xFF byte: up to 7 bytes at once when the next 8 have none.
    if (end - p >= 8) {
      uint64_t next;
      std::memcpy(&next, p, 8);
      next = __builtin_bswap64(next);  // big-endian: the first byte on top
      const uint64_t inverted = ~next;  // a 0xFF byte becomes a zero byte
      const bool has_ff = ((inverted - 0x0101010101010101ull) & ~inverted & 0x8080808080808080ull) != 0;
      if (!has_ff) {
        const int n = (63 - count) >> 3;  // 1..7 bytes fit
        buffer |= (next & (~0ull << (64 - 8 * n))) >> count;
        p += n;
        count += 8 * n;
        return;
      }
    }
    while (count <= 56) {
      if (p >= end) {
        // Past the end: zero bytes, all at once (the bits below `count` are zero already).
        // Every restart interval ends here, so this is common.
        const int n = ((56 - count) >> 3) + 1;
        padding += n;
        count += 8 * n;
        return;
      }
      uint64_t byte = *p++;
      if (byte == 0xFF) {
        if (p < end && *p == 0x00) {
          ++p;
        } else {
          bad = true;  // a marker inside the data: not handled here
          byte = 0;
          p = end;
        }
      }
      buffer |= byte << (56 - count);
      count += 8;
    }
  }
  uint32_t peek(int n) const { return static_cast<uint32_t>(buffer >> (64 - n)); }  // n in 1..32
  void skip(int n) {  // n in 0..32
    buffer <<= n;
    count -= n;
  }
  // At least 32 bits in the buffer: a code (<= 16 bits) and its value bits (<= 15) fit.
  void ensure32() {
    if (count < 32) fill();
  }
  uint32_t take(int n) {  // n in 0..16, available
    if (n == 0) return 0;
    const uint32_t v = peek(n);
    skip(n);
    return v;
  }
  // A symbol of table t (>= 16 bits available); -1 for an invalid code (JWRN_HUFF_BAD_CODE).
  int decode(const Table* t) {
    const uint16_t entry = t->lookup[peek(kLookahead)];
    if (entry != 0) {
      skip(entry >> 8);
      return entry & 0xFF;
    }
    int l = kLookahead + 1;
    int32_t code = static_cast<int32_t>(peek(l));
    while (code > t->maxcode[l]) {
      if (++l > 16) return -1;
      code = static_cast<int32_t>(peek(l));
    }
    skip(l);
    return t->values[(code + t->valoffset[l]) & 0xFF];
  }
  // Whether the scan used exactly its data: no padding bits consumed, no whole byte left.
  bool finished_exactly() const {
    const int real_bits = count - 8 * padding;
    return !bad && real_bits >= 0 && real_bits < 8 && p == end;
  }
};


constexpr int kNatural[64 + 16] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13,
    6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31,
    39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63};

}  // namespace

struct FirstScanTables {
  Table dc[4];
  Table ac[4];
  std::vector<size_t> restarts;  // offsets of the restart markers of the scan being decoded
};

FirstScanTables* make_first_scan_tables() { return new (std::nothrow) FirstScanTables(); }
void free_first_scan_tables(FirstScanTables* tables) { delete tables; }

namespace {

bool load_spec(Table* t, const HuffmanSpec& spec) {
  t->derived = false;
  t->dc_checked = false;
  t->defined = spec.bits != nullptr;
  if (!t->defined) return true;
  std::memcpy(t->bits, spec.bits, 17);
  std::memcpy(t->values, spec.values, 256);
  return true;
}

// A DHT segment's tables (body: data[p, end)).
bool parse_dht(const uint8_t* p, const uint8_t* end, FirstScanTables* tables) {
  while (p < end) {
    if (end - p < 17) return false;
    const int index = *p & 0x0F, cls = *p >> 4;
    if (index > 3 || cls > 1) return false;
    Table* t = cls == 0 ? &tables->dc[index] : &tables->ac[index];
    t->bits[0] = 0;
    int count = 0;
    for (int l = 1; l <= 16; ++l) {
      t->bits[l] = p[l];
      count += p[l];
    }
    p += 17;
    if (count > 256 || end - p < count) return false;
    std::memset(t->values, 0, 256);
    std::memcpy(t->values, p, count);
    p += count;
    t->defined = true;
    t->derived = false;
    t->dc_checked = false;
  }
  return true;
}

bool ready(Table* t, bool dc) {
  if (!t->defined) return false;
  if (!t->derived && !derive(t, !dc)) return false;
  if (dc && !t->dc_checked && !check_dc(t)) return false;
  return true;
}

// A rectangle of MCUs [row0, row1) x [col0, col1) of a scan.
struct McuRect {
  int row0, row1, col0, col1;
  // Whether `count` MCUs from (row, col) on (raster order over rows of `cols` MCUs) meet the
  // rectangle.
  bool meets(int row, int col, uint64_t count, int cols) const {
    if (row0 >= row1 || col0 >= col1) return false;
    while (count > 0 && row < row1) {
      const uint64_t in_row = std::min<uint64_t>(count, static_cast<uint64_t>(cols - col));
      if (row >= row0 && col < col1 && col + static_cast<int64_t>(in_row) > col0) return true;
      count -= in_row;
      col = 0;
      ++row;
    }
    return false;
  }
};

// The MCUs of a scan that hold a block of some scanned component's window (their bounding
// rectangle: a superset when components' windows differ).
McuRect window_in_mcus(const FirstScanFrame& f, int ns, const int* comps) {
  McuRect r{INT_MAX, 0, INT_MAX, 0};
  for (int i = 0; i < ns; ++i) {
    const int c = comps[i];
    if (f.win_row0[c] >= f.win_row1[c] || f.win_col0[c] >= f.win_col1[c]) continue;
    const int hs = ns == 1 ? 1 : f.h_samp[c], vs = ns == 1 ? 1 : f.v_samp[c];
    r.row0 = std::min(r.row0, f.win_row0[c] / vs);
    r.row1 = std::max(r.row1, (f.win_row1[c] + vs - 1) / vs);
    r.col0 = std::min(r.col0, f.win_col0[c] / hs);
    r.col1 = std::max(r.col1, (f.win_col1[c] + hs - 1) / hs);
  }
  return r;
}

// `count` MCUs from (my, mx) on of a DC first scan (decode_mcu_DC_first with Al = 0); the DC
// predictions start from zero (a scan's or a restart interval's start).
bool decode_dc_mcus(BitReader& br, const FirstScanFrame& f, int ns, const int* comps, Table* const* tabs,
                    int mcu_cols, int my, int mx, uint64_t count) {
  int last_dc[4] = {0, 0, 0, 0};
  for (uint64_t m = 0; m < count; ++m) {
    for (int i = 0; i < ns; ++i) {
      const int c = comps[i];
      const int hs = ns == 1 ? 1 : f.h_samp[c], vs = ns == 1 ? 1 : f.v_samp[c];
      for (int by = 0; by < vs; ++by) {
        int16_t* row = f.base[c] + ((static_cast<size_t>(my) * vs + by) * f.cols[c]) * 64;
        for (int bx = 0; bx < hs; ++bx) {
          br.ensure32();
          int s = br.decode(tabs[i]);
          if (s < 0) return false;
          if (s) s = extend(br.take(s), s);
          const long long value = static_cast<long long>(last_dc[i]) + s;
          if (value > INT_MAX || value < INT_MIN) return false;
          last_dc[i] = static_cast<int>(value);
          row[(static_cast<size_t>(mx) * hs + bx) * 64] = static_cast<int16_t>(last_dc[i]);
        }
      }
    }
    if (++mx == mcu_cols) {
      mx = 0;
      ++my;
    }
  }
  return true;
}

// `count` blocks from (y, x) on (raster order, `cols` per row) of an AC first scan of one component
// (decode_mcu_AC_first with Al = 0); the end-of-band run starts at zero.
bool decode_ac_blocks(BitReader& br, const Table* t, int16_t* base, size_t stride, int cols, int y, int x,
                      uint64_t count, int ss, int se) {
  unsigned int eobrun = 0;
  int16_t* row = base + static_cast<size_t>(y) * stride * 64;
  for (uint64_t m = 0; m < count; ++m) {
    int16_t* block = row + static_cast<size_t>(x) * 64;
    if (++x == cols) {
      x = 0;
      row += stride * 64;
    }
    if (eobrun > 0) {
      --eobrun;
      continue;
    }
    for (int k = ss; k <= se; ++k) {
      br.ensure32();
      const int fast = t->fast_ac[br.peek(kLookahead)];
      if (fast != 0) {
        const int run = (fast >> 4) & 15;
        br.skip(fast & 15);
        if ((fast >> 8) == 0) {  // EOB: this block is done (an end-of-band run of 1)
          if (run == 0) break;
          k += 15;               // ZRL
          continue;
        }
        k += run;
        if (k > se) return false;
        block[kNatural[k]] = static_cast<int16_t>(fast >> 8);
        continue;
      }
      int s = br.decode(t);
      if (s < 0) return false;
      int r = s >> 4;
      s &= 15;
      if (s) {
        k += r;
        if (k > se) return false;  // libjpeg would write outside the scan's bands
        block[kNatural[k]] = static_cast<int16_t>(extend(br.take(s), s));
      } else if (r == 15) {
        k += 15;
      } else {
        eobrun = 1u << r;
        if (r) eobrun += br.take(r);
        --eobrun;
        break;
      }
    }
  }
  return true;
}

}  // namespace

bool decode_first_scans(const uint8_t* data, size_t begin, size_t end, const FirstScanFrame& f,
                        const HuffmanSpec dc[4], const HuffmanSpec ac[4], FirstScanTables* tables) {
  if (tables == nullptr) return false;
  for (int i = 0; i < 4; ++i) {
    load_spec(&tables->dc[i], dc[i]);
    load_spec(&tables->ac[i], ac[i]);
  }
  uint64_t scan_blocks = 0;
  uint64_t interval = f.restart_interval;
  size_t pos = begin;
  while (pos < end) {
    // A marker segment: SOS (decoded), DHT (tables), DRI (the interval of the scans after it;
    // jpegtran -restart N writes one per scan), COM/APPn (skipped); nothing else.
    if (end - pos < 4 || data[pos] != 0xFF) return false;
    const uint8_t marker = data[pos + 1];
    const size_t length = (static_cast<size_t>(data[pos + 2]) << 8) | data[pos + 3];
    if (length < 2 || pos + 2 + length > end) return false;
    const uint8_t* body = data + pos + 4;
    const uint8_t* body_end = data + pos + 2 + length;
    pos += 2 + length;
    if (marker == 0xC4) {
      if (!parse_dht(body, body_end, tables)) return false;
      continue;
    }
    if (marker == 0xDD) {
      if (length != 4) return false;
      interval = (static_cast<uint64_t>(body[0]) << 8) | body[1];
      continue;
    }
    if (marker == 0xFE || (marker >= 0xE0 && marker <= 0xEF)) continue;
    if (marker != 0xDA) return false;
    // SOS: components, tables, spectral selection.
    const int ns = body[0];
    if (ns < 1 || ns > 4 || body_end - body != 4 + 2 * ns) return false;
    int comps[4];
    Table* tabs[4];
    const int ss = body[1 + 2 * ns], se = body[2 + 2 * ns], ah = body[3 + 2 * ns] >> 4, al = body[3 + 2 * ns] & 15;
    if (ah != 0 || al != 0 || ss > se || se > 63 || (ss == 0) != (se == 0) || (ss > 0 && ns != 1)) return false;
    int blocks_in_mcu = 0;
    for (int i = 0; i < ns; ++i) {
      const int id = body[1 + 2 * i];
      int c = -1;
      for (int k = 0; k < f.num_components; ++k) {
        if (f.component_id[k] == id) {
          c = k;
          break;
        }
      }
      if (c < 0) return false;
      for (int k = 0; k < i; ++k) {
        if (comps[k] == c) return false;
      }
      comps[i] = c;
      const int sel = ss == 0 ? body[2 + 2 * i] >> 4 : body[2 + 2 * i] & 15;
      if (sel > 3) return false;
      tabs[i] = ss == 0 ? &tables->dc[sel] : &tables->ac[sel];
      if (!ready(tabs[i], ss == 0)) return false;
      blocks_in_mcu += ns == 1 ? 1 : f.h_samp[c] * f.v_samp[c];
      scan_blocks += static_cast<uint64_t>(f.width_in_blocks[c]) * f.height_in_blocks[c];
    }
    if (blocks_in_mcu > 10) return false;  // D_MAX_BLOCKS_IN_MCU
    if (f.max_scan_blocks > 0 && scan_blocks > f.max_scan_blocks) return false;
    // The entropy-coded data runs to the next marker that is not stuffing or a restart; the
    // restart markers' offsets are kept (they must come in sequence: RST0, RST1, ...).
    std::vector<size_t>& restarts = tables->restarts;
    restarts.clear();
    bool out_of_sequence = false;
    size_t data_end = pos;
    while (true) {
      const void* ff = std::memchr(data + data_end, 0xFF, end - data_end);
      if (ff == nullptr) {
        data_end = end;
        break;
      }
      data_end = static_cast<size_t>(static_cast<const uint8_t*>(ff) - data);
      if (data_end + 1 >= end) break;
      const uint8_t next = data[data_end + 1];
      if (next == 0x00) {
        data_end += 2;
        continue;
      }
      if (next >= 0xD0 && next <= 0xD7) {
        if (next != 0xD0 + (restarts.size() & 7)) out_of_sequence = true;
        try {
          restarts.push_back(data_end);
        } catch (const std::bad_alloc&) {
          return false;  // libjpeg decodes it instead
        }
        data_end += 2;
        continue;
      }
      break;
    }
    const int mcu_rows = ns == 1 ? f.height_in_blocks[comps[0]] : f.mcu_rows;
    const int mcu_cols = ns == 1 ? f.width_in_blocks[comps[0]] : f.mcus_per_row;
    const uint64_t mcus = static_cast<uint64_t>(mcu_rows) * mcu_cols;
    const uint64_t intervals = interval == 0 ? 1 : (mcus + interval - 1) / interval;
    // libjpeg writes a marker between intervals, none after the last; anything else is
    // libjpeg's to judge (it resynchronises, or fails in strict mode).
    if (out_of_sequence || mcus == 0 || restarts.size() != intervals - 1) return false;
    McuRect needed{0, mcu_rows, 0, mcu_cols};
    if (f.windowed && interval > 0) needed = window_in_mcus(f, ns, comps);
    // Each interval's first MCU, as a position and a row and column (kept without divisions).
    const uint64_t step_rows = interval / mcu_cols, step_cols = interval % mcu_cols;
    int row = 0, col = 0;
    for (uint64_t k = 0; k < intervals; ++k) {
      const uint64_t first = k * interval;
      const uint64_t last = interval == 0 ? mcus : std::min(first + interval, mcus);
      const int first_row = row, first_col = col;
      row += static_cast<int>(step_rows);
      col += static_cast<int>(step_cols);
      if (col >= mcu_cols) {
        col -= mcu_cols;
        ++row;
      }
      // not decoded: its blocks stay zero
      if (!needed.meets(first_row, first_col, last - first, mcu_cols)) continue;
      const size_t from = k == 0 ? pos : restarts[k - 1] + 2;
      const size_t to = k + 1 < intervals ? restarts[k] : data_end;
      BitReader br{data + from, data + to, 0, 0, 0, false};
      const bool decoded = ss == 0 ? decode_dc_mcus(br, f, ns, comps, tabs, mcu_cols, first_row, first_col,
                                                    last - first)
                                   : decode_ac_blocks(br, tabs[0], f.base[comps[0]], f.cols[comps[0]], mcu_cols,
                                                      first_row, first_col, last - first, ss, se);
      if (!decoded || !br.finished_exactly()) return false;
    }
    pos = data_end;
  }
  return pos == end;
}

}  // namespace dctnet
