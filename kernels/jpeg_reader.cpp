// Entropy decoding only: jpeg_read_coefficients, then one copy into a caller-owned block.
//
// libjpeg reports fatal errors through error_exit, which must not return. We longjmp back
// to the frame that called into libjpeg. That frame (Decompressor::read) holds no C++
// objects with destructors, and every resource it owns is reachable from ReadResult or the
// decompressor, so the error path frees exactly what the success path would.
#include "jpeg_reader.h"
#include "first_scans.h"
#include "scan_script.h"

#include <cerrno>
#include <algorithm>
#include <climits>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

extern "C" {
#include <jpeglib.h>
#include <jerror.h>
}

// libjpeg declares this type but keeps its definition private to its memory manager. The
// coefficient controller only ever sees it through the memory manager's methods, which we
// replace (see install_array_hooks), so our own definition is the only one in use here: the
// "virtual" block arrays of a jpeg_read_coefficients call live inside the output buffer the
// caller receives, so entropy decoding writes straight into it (no second copy, no
// image-sized allocation owned by libjpeg).
struct jvirt_barray_control {
  JBLOCKROW* rows;
  JDIMENSION num_rows;
};

namespace dctnet {

namespace {

enum Phase { kPhaseIdle = 0, kPhaseHeader = 1, kPhaseCoefficients = 2 };

// Where each component's coefficient array lives in the output buffer, planned from the
// header before jpeg_read_coefficients asks for the arrays.
struct ArrayPlan {
  int requested;                               // arrays handed out so far
  int num_components;
  JBLOCKROW base[kMaxComponents];
  JDIMENSION rows[kMaxComponents];             // height_in_blocks rounded up to v_samp
  JDIMENSION cols[kMaxComponents];             // width_in_blocks rounded up to h_samp
};

// What the replaced memory-manager methods need, reachable from cinfo->client_data.
//
// Tables must not carry over from one image to the next: libjpeg keeps quantisation and
// Huffman tables in the permanent pool (for abbreviated datastreams), so a reused
// decompressor would silently lend the previous image's tables to a file that lacks them.
// Before each image every table slot is emptied (NULL), which is the state of a fresh
// decompressor: a missing quantisation table is then libjpeg's own "Quantization table 0x..
// was not defined" error. Huffman tables: libjpeg-turbo 2.1.5 gives a sequential
// Huffman-coded file without DHT (Motion-JPEG style) the standard tables of ITU-T T.81
// Annex K for slots 0 and 1 (std_huff_tables, called by jinit_huff_decoder), exactly as
// for a file read first; a progressive file without them fails ("Huffman table 0x.. was
// not defined"), as do slots 2 and 3. The emptied tables are kept as spares and handed back
// when libjpeg allocates a table again, so the permanent pool does not grow per image.
struct ClientData {
  ArrayPlan plan;
  void* (*alloc_small)(j_common_ptr, int, size_t);   // libjpeg's own
  JQUANT_TBL* spare_quant[NUM_QUANT_TBLS];
  int num_spare_quant;
  JHUFF_TBL* spare_huff[2 * NUM_HUFF_TBLS];
  int num_spare_huff;
};

void* alloc_small_recycling(j_common_ptr cinfo, int pool_id, size_t size) {
  auto* cd = static_cast<ClientData*>(cinfo->client_data);
  if (pool_id == JPOOL_PERMANENT) {
    if (size == sizeof(JQUANT_TBL) && cd->num_spare_quant > 0) return cd->spare_quant[--cd->num_spare_quant];
    if (size == sizeof(JHUFF_TBL) && cd->num_spare_huff > 0) return cd->spare_huff[--cd->num_spare_huff];
  }
  return (*cd->alloc_small)(cinfo, pool_id, size);
}

template <typename T, int N>
void empty_slot(T** slot, T* (&spares)[N], int* count) {
  if (*slot == nullptr) return;
  if (*count < N) spares[(*count)++] = *slot;  // never full: at most one table per slot exists
  *slot = nullptr;
}

void forget_tables(j_decompress_ptr cinfo, ClientData* cd) {
  for (int i = 0; i < NUM_QUANT_TBLS; ++i) empty_slot(&cinfo->quant_tbl_ptrs[i], cd->spare_quant, &cd->num_spare_quant);
  for (int i = 0; i < NUM_HUFF_TBLS; ++i) {
    empty_slot(&cinfo->dc_huff_tbl_ptrs[i], cd->spare_huff, &cd->num_spare_huff);
    empty_slot(&cinfo->ac_huff_tbl_ptrs[i], cd->spare_huff, &cd->num_spare_huff);
  }
}

struct ErrorManager {
  jpeg_error_mgr pub;
  jmp_buf jump;
  ReadResult* result;
  const ReadOptions* options;
  int phase;
  // The scan being decoded, as seen by the last progress call (see on_progress). libjpeg's
  // own scan fields are not safe to read from a warning: while an SOS header is being
  // parsed, comps_in_scan is already the new count but cur_comp_info[] is NULL, and
  // input_iMCU_row still belongs to the previous scan.
  unsigned seen_components;   // bit c: component c appeared in a scan so far
  unsigned scan_components;   // components of the scan being decoded
  long long scan_row;         // its iMCU row being decoded
  int counted_scan;           // last scan whose blocks were added to scan_blocks
  unsigned long long scan_blocks;  // blocks coded by the scans so far (work bound)
  bool missing_known;         // missing_blocks was estimated at a data-loss warning
};

struct ProgressManager {
  jpeg_progress_mgr pub;
  ErrorManager* err;
};

void copy_message(char* dst, const char* src) {
  std::snprintf(dst, kMessageSize, "%s", src);
}

void on_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  if (err->result != nullptr) {
    char buffer[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, buffer);
    err->result->kind = (cinfo->err->msg_code == JERR_OUT_OF_MEMORY) ? kNoMemory : kJpegError;
    copy_message(err->result->message, buffer);
  }
  longjmp(err->jump, 1);
}

bool is_corruption(int code) {
  switch (code) {
    case JWRN_ARITH_BAD_CODE:
    case JWRN_BOGUS_PROGRESSION:
    case JWRN_EXTRANEOUS_DATA:
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_JPEG_EOF:
    case JWRN_MUST_RESYNC:
    case JWRN_NOT_SEQUENTIAL:
      return true;
    default:
      return false;
  }
}

// Records the scan libjpeg is about to decode. Only called where libjpeg's scan state is
// consistent: from the progress monitor (between jpeg_consume_input calls) and right after
// jpeg_read_header.
void snapshot_scan(j_decompress_ptr dinfo, ErrorManager* err) {
  unsigned in_scan = 0;
  for (int i = 0; i < dinfo->comps_in_scan && i < MAX_COMPS_IN_SCAN; ++i) {
    const jpeg_component_info* comp = dinfo->cur_comp_info[i];
    if (comp != nullptr) in_scan |= 1u << comp->component_index;
  }
  err->scan_components = in_scan;
  err->scan_row = dinfo->input_iMCU_row;
  err->seen_components |= in_scan;
}

// Blocks that cannot have been decoded: with `in_scan`, the snapshot scan's components from
// its current iMCU row on; always, every component no scan has reached (all zero).
long long estimate_missing_blocks(j_decompress_ptr dinfo, const ErrorManager* err, bool in_scan) {
  if (err->phase != kPhaseCoefficients) return 0;
  long long missing = 0;
  for (int c = 0; c < dinfo->num_components && c < kMaxComponents; ++c) {
    const jpeg_component_info* comp = &dinfo->comp_info[c];
    const unsigned bit = 1u << c;
    if (in_scan && (err->scan_components & bit)) {
      const long long rows_left = static_cast<long long>(comp->height_in_blocks) - err->scan_row * comp->v_samp_factor;
      if (rows_left > 0) missing += rows_left * comp->width_in_blocks;
    } else if (!(err->seen_components & bit)) {
      missing += static_cast<long long>(comp->height_in_blocks) * comp->width_in_blocks;
    }
  }
  return missing;
}

void on_emit_message(j_common_ptr cinfo, int msg_level) {
  if (msg_level >= 0) return;  // trace messages
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  cinfo->err->num_warnings++;
  ReadResult* result = err->result;
  if (result == nullptr) return;
  char buffer[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, buffer);
  const int code = cinfo->err->msg_code;
  if (!is_corruption(code)) {
    if (result->other_warnings++ == 0) copy_message(result->first_other_warning, buffer);
    return;
  }
  auto dinfo = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (result->corrupt_warnings++ == 0) {
    copy_message(result->first_corruption, buffer);
    result->corrupt_scan = dinfo->input_scan_number;
  }
  // The source running dry (JWRN_JPEG_EOF) loses no data by itself in Huffman-coded files:
  // the decoder reads ahead, and warns (JWRN_HIT_MARKER) when it really has to invent bits.
  // The arithmetic decoder invents bits silently, so there the end of data counts.
  const bool data_lost = code != JWRN_JPEG_EOF || dinfo->arith_code;
  if (data_lost && !err->missing_known) {
    err->missing_known = true;
    result->missing_blocks = estimate_missing_blocks(dinfo, err, true);
  }
  if (err->options->strict) {
    result->kind = kJpegError;
    copy_message(result->message, buffer);
    longjmp(err->jump, 1);
  }
}

// Called by jpeg_read_coefficients before each jpeg_consume_input (each iMCU row of a scan,
// and each marker run between scans).
void on_progress(j_common_ptr cinfo) {
  auto* progress = reinterpret_cast<ProgressManager*>(cinfo->progress);
  auto dinfo = reinterpret_cast<j_decompress_ptr>(cinfo);
  ErrorManager* err = progress->err;
  snapshot_scan(dinfo, err);
  const ReadOptions* options = err->options;
  if (options->max_scans > 0 && dinfo->input_scan_number > options->max_scans) {
    err->result->kind = kLimitError;
    std::snprintf(err->result->message, kMessageSize,
                  "progressive file has more than %d scans (limit max_scans)", options->max_scans);
    longjmp(err->jump, 1);
  }
  if (dinfo->input_scan_number != err->counted_scan) {
    // A new scan: its blocks are the work it will cost. Checked before it is decoded.
    err->counted_scan = dinfo->input_scan_number;
    for (int c = 0; c < dinfo->num_components && c < kMaxComponents; ++c) {
      if (err->scan_components & (1u << c)) {
        const jpeg_component_info* comp = &dinfo->comp_info[c];
        err->scan_blocks += static_cast<unsigned long long>(comp->height_in_blocks) * comp->width_in_blocks;
      }
    }
    if (options->max_scan_blocks > 0 && err->scan_blocks > options->max_scan_blocks) {
      err->result->kind = kLimitError;
      std::snprintf(err->result->message, kMessageSize,
                    "decoding needs more than %llu block decodes over its %d scans so far "
                    "(limit max_scan_blocks)",
                    static_cast<unsigned long long>(options->max_scan_blocks), dinfo->input_scan_number);
      longjmp(err->jump, 1);
    }
  }
}

void fail(j_common_ptr cinfo, int code) {
  cinfo->err->msg_code = code;
  (*cinfo->err->error_exit)(cinfo);
}

jvirt_barray_ptr request_block_array(j_common_ptr cinfo, int pool_id, boolean /*pre_zero*/,
                                     JDIMENSION blocksperrow, JDIMENSION numrows, JDIMENSION /*maxaccess*/) {
  // The buffer was zeroed when allocated, which is what pre_zero asks for.
  ArrayPlan* plan = &static_cast<ClientData*>(cinfo->client_data)->plan;
  const int c = plan->requested;
  if (c >= plan->num_components || blocksperrow != plan->cols[c] || numrows != plan->rows[c]) {
    fail(cinfo, JERR_BAD_VIRTUAL_ACCESS);
  }
  plan->requested++;
  auto* array = static_cast<jvirt_barray_ptr>(
      (*cinfo->mem->alloc_small)(cinfo, pool_id, sizeof(jvirt_barray_control)));
  array->rows = static_cast<JBLOCKROW*>((*cinfo->mem->alloc_small)(cinfo, pool_id, numrows * sizeof(JBLOCKROW)));
  array->num_rows = numrows;
  for (JDIMENSION r = 0; r < numrows; ++r) array->rows[r] = plan->base[c] + static_cast<size_t>(r) * blocksperrow;
  return array;
}

JBLOCKARRAY access_block_array(j_common_ptr cinfo, jvirt_barray_ptr ptr, JDIMENSION start_row,
                               JDIMENSION num_rows, boolean /*writable*/) {
  if (start_row + num_rows > ptr->num_rows) fail(cinfo, JERR_BAD_VIRTUAL_ACCESS);
  return ptr->rows + start_row;
}

// The decoder's input: data[0, size), then an EOI marker. For a whole read this is libjpeg's
// memory source (running dry warns JWRN_JPEG_EOF and inserts EOI); for a band-limited read
// `size` ends at a scan boundary and the first EOI is the real end of the input, given
// without a warning: the decoder never sees what follows the read point.
struct PrefixSource {
  jpeg_source_mgr pub;
  bool quiet_eoi;
};

const JOCTET kEoi[2] = {0xFF, JPEG_EOI};

void source_init(j_decompress_ptr) {}
void source_term(j_decompress_ptr) {}

boolean source_fill(j_decompress_ptr cinfo) {
  auto* src = reinterpret_cast<PrefixSource*>(cinfo->src);
  if (src->quiet_eoi) {
    src->quiet_eoi = false;
  } else {
    WARNMS(cinfo, JWRN_JPEG_EOF);
  }
  src->pub.next_input_byte = kEoi;
  src->pub.bytes_in_buffer = 2;
  return TRUE;
}

void source_skip(j_decompress_ptr cinfo, long num_bytes) {  // as libjpeg's memory source
  jpeg_source_mgr* src = cinfo->src;
  if (num_bytes <= 0) return;
  while (num_bytes > static_cast<long>(src->bytes_in_buffer)) {
    num_bytes -= static_cast<long>(src->bytes_in_buffer);
    (*src->fill_input_buffer)(cinfo);
  }
  src->next_input_byte += num_bytes;
  src->bytes_in_buffer -= static_cast<size_t>(num_bytes);
}

// Natural index of each zigzag position.
const int kZigzag[64] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33, 40, 48,
    41, 34, 27, 20, 13, 6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23,
    30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63};

bool band_limited(const ReadOptions& options) {
  return !options.header_only && (options.bands < 64 || (options.chroma_bands >= 0 && options.chroma_bands < 64));
}

struct BandWalk {
  int needed[2];
  explicit BandWalk(const ReadOptions& o)
      : needed{std::max(0, o.bands), o.chroma_bands < 0 ? std::max(0, o.bands) : o.chroma_bands} {}
};

// Where a band-limited read of data[0, size) stops (plain data: the walk runs in its own
// frame, never under a setjmp).
struct BandPlan {
  bool partial = false;
  bool first_scans = false;   // data[first_scan, scans_end) holds only full-precision first scans
  size_t first_scan = 0;
  size_t scans_end = 0;       // the read point, or the EOI marker
  size_t end = 0;             // bytes the decoder gets (then an EOI)
  int bands[kMaxComponents] = {0};
  bool zero[kMaxComponents] = {false};
};

BandPlan plan_band_read(const uint8_t* data, size_t size, const ReadOptions& options) {
  BandPlan plan;
  if (options.header_only) return plan;
  // Whole reads walk too: a band-ordered file read whole goes through first_scans.cpp.
  BandWalk w(options);
  ScanWalker walker(w.needed, 2, static_cast<BandSampling>(options.band_sampling), options.max_scans, false);
  const WalkStatus status = walker.advance(data, size);
  plan.first_scan = walker.first_scan();
  if (status == kWalkCut) {
    plan.first_scans = walker.first_scans_only();
    plan.partial = true;
    plan.end = plan.scans_end = walker.cut();
  } else if (walker.eoi() > 0 && walker.first_scans_only()) {
    // Read whole (the read point is the last scan, or no bands were limited), but a
    // band-ordered file: the direct decoder, and for a band-limited read the same result
    // as a read that stopped earlier (bands above zero), whatever the file's group ends.
    plan.first_scans = true;
    plan.scans_end = walker.eoi();
    plan.end = size;
    plan.partial = band_limited(options) && walker.reached_at_end();
    if (!plan.partial) return plan;
  } else {
    return plan;
  }
  for (int c = 0; c < kMaxComponents; ++c) {
    plan.bands[c] = walker.bands_read(c);
    plan.zero[c] = walker.over_read(c);
  }
  return plan;
}

// The scans of data[first_scan, end) through first_scans.cpp, into the arrays libjpeg would
// fill (ArrayPlan, planned from the header libjpeg read). false: not decoded (the arrays may
// hold partial output).
bool decode_directly(j_decompress_ptr cinfo, const uint8_t* data, const BandPlan& band_plan,
                     const ReadOptions& options, const ReadResult& header, FirstScanTables* tables,
                     bool* windowed) {
  *windowed = false;
  if (tables == nullptr || cinfo->num_components > kMaxComponents) return false;
  const ArrayPlan* plan = &static_cast<ClientData*>(cinfo->client_data)->plan;
  FirstScanFrame frame;
  std::memset(&frame, 0, sizeof(frame));
  frame.num_components = cinfo->num_components;
  int max_h = 1, max_v = 1;
  for (int c = 0; c < cinfo->num_components; ++c) {
    const jpeg_component_info* comp = &cinfo->comp_info[c];
    // libjpeg latches each table at the component's first scan and fails there when it is
    // missing: let it.
    if (comp->quant_tbl_no < 0 || comp->quant_tbl_no >= NUM_QUANT_TBLS ||
        cinfo->quant_tbl_ptrs[comp->quant_tbl_no] == nullptr) {
      return false;
    }
    frame.component_id[c] = comp->component_id;
    frame.h_samp[c] = comp->h_samp_factor;
    frame.v_samp[c] = comp->v_samp_factor;
    frame.width_in_blocks[c] = static_cast<int>(comp->width_in_blocks);
    frame.height_in_blocks[c] = static_cast<int>(comp->height_in_blocks);
    frame.base[c] = reinterpret_cast<int16_t*>(plan->base[c]);
    frame.cols[c] = plan->cols[c];
    max_h = std::max(max_h, comp->h_samp_factor);
    max_v = std::max(max_v, comp->v_samp_factor);
  }
  frame.mcus_per_row = static_cast<int>((cinfo->image_width + 8 * max_h - 1) / (8 * max_h));
  frame.mcu_rows = static_cast<int>((cinfo->image_height + 8 * max_v - 1) / (8 * max_v));
  frame.max_scan_blocks = options.max_scan_blocks;
  frame.restart_interval = cinfo->restart_interval;
  if (options.window != nullptr) {    // (restart intervals may also begin at a later scan's DRI)
    BlockWindow window;
    std::memset(&window, 0, sizeof(window));
    if (options.window(options.window_context, options.window_index, header, &window)) {
      frame.windowed = true;
      for (int c = 0; c < cinfo->num_components; ++c) {
        frame.win_row0[c] = window.row0[c];
        frame.win_row1[c] = window.row1[c];
        frame.win_col0[c] = window.col0[c];
        frame.win_col1[c] = window.col1[c];
      }
    }
  }
  HuffmanSpec dc[4], ac[4];
  for (int i = 0; i < 4; ++i) {
    const JHUFF_TBL* d = cinfo->dc_huff_tbl_ptrs[i];
    const JHUFF_TBL* a = cinfo->ac_huff_tbl_ptrs[i];
    dc[i] = d ? HuffmanSpec{d->bits, d->huffval} : HuffmanSpec{nullptr, nullptr};
    ac[i] = a ? HuffmanSpec{a->bits, a->huffval} : HuffmanSpec{nullptr, nullptr};
  }
  const bool decoded = decode_first_scans(data, band_plan.first_scan, band_plan.scans_end, frame, dc, ac, tables);
  *windowed = decoded && frame.windowed;
  return decoded;
}

}  // namespace

struct Decompressor::State {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  ProgressManager progress;
  ClientData client;
  PrefixSource source;
  FirstScanTables* first_scan_tables;
  bool created;
};

Decompressor::Decompressor() : state_(new (std::nothrow) State()) {
  State* s = state_;
  if (s == nullptr) return;  // read() reports it
  std::memset(&s->cinfo, 0, sizeof(s->cinfo));
  std::memset(&s->client, 0, sizeof(s->client));
  s->first_scan_tables = nullptr;
  s->cinfo.err = jpeg_std_error(&s->err.pub);
  s->err.pub.error_exit = on_error_exit;
  s->err.pub.emit_message = on_emit_message;
  s->err.result = nullptr;
  s->err.options = nullptr;
  s->err.phase = kPhaseIdle;
  s->created = false;
  if (setjmp(s->err.jump)) {
    return;  // creation failed (out of memory); read() reports it
  }
  jpeg_create_decompress(&s->cinfo);
  // The memory manager outlives every image: replace its methods once.
  s->client.alloc_small = s->cinfo.mem->alloc_small;
  s->cinfo.mem->alloc_small = alloc_small_recycling;
  s->cinfo.mem->request_virt_barray = request_block_array;
  s->cinfo.mem->access_virt_barray = access_block_array;
  s->cinfo.client_data = &s->client;
  s->progress.pub.progress_monitor = on_progress;
  s->progress.err = &s->err;
  // One source manager for every read (libjpeg's jpeg_mem_src refuses to replace another).
  s->source.pub.init_source = source_init;
  s->source.pub.fill_input_buffer = source_fill;
  s->source.pub.skip_input_data = source_skip;
  s->source.pub.resync_to_restart = jpeg_resync_to_restart;
  s->source.pub.term_source = source_term;
  s->cinfo.src = &s->source.pub;
  s->first_scan_tables = make_first_scan_tables();  // null: the direct decoder is not used
  s->created = true;
}

Decompressor::~Decompressor() {
  if (state_ == nullptr) return;
  if (state_->created) jpeg_destroy_decompress(&state_->cinfo);
  free_first_scan_tables(state_->first_scan_tables);
  delete state_;
}

void Decompressor::read(const uint8_t* data, size_t size, const ReadOptions& options,
                        ReadResult* result) {
  State* s = state_;
  if (s == nullptr || !s->created) {
    result->kind = kNoMemory;
    copy_message(result->message, "could not create a libjpeg decompressor");
    return;
  }
  j_decompress_ptr cinfo = &s->cinfo;
  if (size == 0) {
    result->kind = kJpegError;
    copy_message(result->message, "empty input (0 bytes)");
    return;
  }
  if (options.max_bytes > 0 && size > options.max_bytes) {
    result->kind = kLimitError;
    std::snprintf(result->message, kMessageSize, "input of %zu bytes exceeds the limit of %llu bytes (max_bytes)",
                  size, static_cast<unsigned long long>(options.max_bytes));
    return;
  }
  if (size > static_cast<size_t>(ULONG_MAX)) {
    result->kind = kLimitError;
    copy_message(result->message, "input larger than libjpeg can address");
    return;
  }
  const BandPlan band_plan = plan_band_read(data, size, options);
  bool decoded_directly = false;  // set after setjmp, read only on the success path
  const size_t decoder_bytes = band_plan.partial ? band_plan.end : size;
  if (result->bytes_read == 0) result->bytes_read = decoder_bytes;

  s->err.result = result;
  s->err.options = &options;
  s->err.phase = kPhaseHeader;
  s->err.seen_components = 0;
  s->err.scan_components = 0;
  s->err.scan_row = 0;
  s->err.counted_scan = 0;
  s->err.scan_blocks = 0;
  s->err.missing_known = false;
  s->err.pub.num_warnings = 0;
  s->source.pub.next_input_byte = data;
  s->source.pub.bytes_in_buffer = decoder_bytes;
  s->source.quiet_eoi = band_plan.partial;

  if (setjmp(s->err.jump)) {
    // Every failure lands here: libjpeg's error_exit, a strict-mode corruption warning,
    // the scan limits, or a check below.
    release_buffer(result->buffer);
    result->buffer = nullptr;
    result->buffer_bytes = 0;
    jpeg_abort_decompress(cinfo);
    cinfo->progress = nullptr;
    s->err.result = nullptr;
    s->err.phase = kPhaseIdle;
    if (result->kind == kOk) result->kind = kJpegError;
    return;
  }

  forget_tables(cinfo, &s->client);  // this image's tables only (see ClientData)
  jpeg_read_header(cinfo, TRUE);  // TRUE: a tables-only stream is an error

  result->width = static_cast<int>(cinfo->image_width);
  result->height = static_cast<int>(cinfo->image_height);
  result->num_components = cinfo->num_components;
  result->colorspace = cinfo->jpeg_color_space;
  result->progressive = cinfo->progressive_mode ? 1 : 0;
  result->arithmetic = cinfo->arith_code ? 1 : 0;
  result->restart_interval = static_cast<int>(cinfo->restart_interval);
  if (cinfo->num_components > kMaxComponents) {
    result->kind = kInvalid;
    std::snprintf(result->message, kMessageSize, "%d components (at most %d supported)",
                  cinfo->num_components, kMaxComponents);
    longjmp(s->err.jump, 1);
  }
  long long total_blocks = 0;
  for (int c = 0; c < cinfo->num_components; ++c) {
    const jpeg_component_info* comp = &cinfo->comp_info[c];
    result->h_samp[c] = comp->h_samp_factor;
    result->v_samp[c] = comp->v_samp_factor;
    result->width_in_blocks[c] = static_cast<int>(comp->width_in_blocks);
    result->height_in_blocks[c] = static_cast<int>(comp->height_in_blocks);
    total_blocks += static_cast<long long>(comp->width_in_blocks) * comp->height_in_blocks;
  }
  result->total_blocks = total_blocks;

  const uint64_t pixels = static_cast<uint64_t>(cinfo->image_width) * cinfo->image_height;
  if (options.max_pixels > 0 && pixels > options.max_pixels) {
    result->kind = kLimitError;
    std::snprintf(result->message, kMessageSize,
                  "image of %ux%u = %llu pixels exceeds the limit of %llu pixels (max_pixels)",
                  cinfo->image_width, cinfo->image_height,
                  static_cast<unsigned long long>(pixels),
                  static_cast<unsigned long long>(options.max_pixels));
    longjmp(s->err.jump, 1);
  }

  const size_t qt_bytes = static_cast<size_t>(cinfo->num_components) * 64 * sizeof(uint16_t);
  size_t total_bytes = qt_bytes;
  ArrayPlan* plan = &s->client.plan;
  plan->requested = 0;
  plan->num_components = options.header_only ? 0 : cinfo->num_components;
  if (!options.header_only) {
    for (int c = 0; c < cinfo->num_components; ++c) {
      const jpeg_component_info* comp = &cinfo->comp_info[c];
      // libjpeg's coefficient controller asks for arrays padded to whole MCUs.
      plan->cols[c] = (comp->width_in_blocks + comp->h_samp_factor - 1) / comp->h_samp_factor * comp->h_samp_factor;
      plan->rows[c] = (comp->height_in_blocks + comp->v_samp_factor - 1) / comp->v_samp_factor * comp->v_samp_factor;
      total_bytes = (total_bytes + 63) & ~static_cast<size_t>(63);  // cache-line aligned planes
      result->plane_offset[c] = total_bytes;
      total_bytes += static_cast<size_t>(plan->cols[c]) * plan->rows[c] * sizeof(JBLOCK);
    }
  }
  result->buffer = acquire_buffer(total_bytes);  // zeroed: blocks no scan reaches stay zero
  if (result->buffer == nullptr) {
    result->kind = kNoMemory;
    std::snprintf(result->message, kMessageSize, "out of memory allocating %zu bytes", total_bytes);
    longjmp(s->err.jump, 1);
  }
  result->buffer_bytes = total_bytes;
  if (!options.header_only) {
    for (int c = 0; c < cinfo->num_components; ++c) {
      plan->base[c] = reinterpret_cast<JBLOCKROW>(static_cast<char*>(result->buffer) + result->plane_offset[c]);
    }
    if (options.direct_first_scans && band_plan.first_scans && !cinfo->arith_code && band_plan.first_scan > 0) {
      bool windowed = false;
      decoded_directly = decode_directly(cinfo, data, band_plan, options, *result, s->first_scan_tables, &windowed);
      result->windowed = windowed ? 1 : 0;
      if (!decoded_directly) {
        // libjpeg decodes the same bytes and decides (its result or its error).
        std::memset(static_cast<char*>(result->buffer) + result->plane_offset[0], 0,
                    total_bytes - result->plane_offset[0]);
      }
    }
  }
  if (!options.header_only && !decoded_directly) {
    cinfo->progress = &s->progress.pub;
    s->err.phase = kPhaseCoefficients;
    snapshot_scan(cinfo, &s->err);
    jpeg_read_coefficients(cinfo);
    cinfo->progress = nullptr;
    if (result->corrupt_warnings > 0 && !s->err.missing_known) {
      // Only the source ran dry (e.g. no EOI marker): the scans that ran are complete, and
      // what is missing is the components no scan reached.
      result->missing_blocks = estimate_missing_blocks(cinfo, &s->err, false);
    }
    if (plan->requested != cinfo->num_components) {
      result->kind = kInvalid;
      std::snprintf(result->message, kMessageSize, "libjpeg requested %d coefficient arrays for %d components",
                    plan->requested, cinfo->num_components);
      longjmp(s->err.jump, 1);
    }
  }

  // Quantisation tables: the copy latched by the coefficient reader when available, else the
  // table slot the component names (header-only reads, components absent from all scans).
  auto* qt_out = static_cast<uint16_t*>(result->buffer);
  for (int c = 0; c < cinfo->num_components; ++c) {
    const jpeg_component_info* comp = &cinfo->comp_info[c];
    const JQUANT_TBL* table = comp->quant_table;
    if (table == nullptr && comp->quant_tbl_no >= 0 && comp->quant_tbl_no < NUM_QUANT_TBLS) {
      table = cinfo->quant_tbl_ptrs[comp->quant_tbl_no];
    }
    if (table == nullptr) {
      result->kind = kInvalid;
      std::snprintf(result->message, kMessageSize,
                    "component %d uses quantisation table %d, which is not defined", c,
                    comp->quant_tbl_no);
      longjmp(s->err.jump, 1);
    }
    for (int k = 0; k < 64; ++k) {
      if (table->quantval[k] == 0) {
        result->kind = kInvalid;
        std::snprintf(result->message, kMessageSize,
                      "quantisation table %d (component %d) has a zero step at index %d",
                      comp->quant_tbl_no, c, k);
        longjmp(s->err.jump, 1);
      }
      qt_out[c * 64 + k] = table->quantval[k];
    }
  }

  for (int c = 0; c < cinfo->num_components; ++c) result->bands_read[c] = band_plan.partial ? band_plan.bands[c] : 64;
  if (!options.header_only) {
    // Bands above the needed ones that the scans before the read point coded may be
    // incomplete (a later scan refines them): zero, as the bands no scan reached. libjpeg
    // also writes past a scan's last band on corrupt data (a run beyond Se: it does not
    // check), so after libjpeg they are zeroed whatever the scans said.
    for (int c = 0; c < cinfo->num_components; ++c) {
      if (!band_plan.partial || (!band_plan.zero[c] && decoded_directly)) continue;
      JBLOCKROW base = plan->base[c];
      const size_t blocks = static_cast<size_t>(plan->rows[c]) * plan->cols[c];
      const int first = band_plan.bands[c];
      if (first == 0) {
        std::memset(base, 0, blocks * sizeof(JBLOCK));
        continue;
      }
      for (size_t b = 0; b < blocks; ++b) {
        JCOEF* block = base[b];
        for (int k = first; k < 64; ++k) block[kZigzag[k]] = 0;
      }
    }
    // Drop the MCU padding: rows move down in place (destination never passes the source).
    for (int c = 0; c < cinfo->num_components; ++c) {
      const size_t wb = static_cast<size_t>(result->width_in_blocks[c]);
      const size_t padded = plan->cols[c];
      if (wb == padded) continue;
      JBLOCKROW base = plan->base[c];
      for (int row = 1; row < result->height_in_blocks[c]; ++row) {
        std::memmove(base + row * wb, base + row * padded, wb * sizeof(JBLOCK));
      }
    }
  }
  if (!options.header_only && !decoded_directly) {
    jpeg_finish_decompress(cinfo);
  } else {
    jpeg_abort_decompress(cinfo);
  }
  s->err.result = nullptr;
  s->err.phase = kPhaseIdle;
}


namespace {

constexpr size_t kHeader = 64;                   // keeps the returned pointer 64-byte aligned
constexpr size_t kPoolBytes = size_t(64) << 20;  // released memory kept for reuse, at most
constexpr size_t kPoolEntries = 32;

struct BufferPool {
  std::mutex mutex;
  std::vector<char*> free_list;  // raw allocations; capacity stored in their header
  size_t bytes = 0;
};

BufferPool& pool() {
  static BufferPool* p = new BufferPool();  // never destroyed: buffers may outlive static teardown
  return *p;
}

size_t capacity_of(char* raw) { return *reinterpret_cast<size_t*>(raw); }

}  // namespace

void* acquire_buffer(size_t bytes) {
  BufferPool& p = pool();
  char* raw = nullptr;
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    size_t best = SIZE_MAX;
    size_t best_index = 0;
    for (size_t i = 0; i < p.free_list.size(); ++i) {
      const size_t cap = capacity_of(p.free_list[i]);
      if (cap >= bytes && cap <= 4 * bytes + 4096 && cap < best) {
        best = cap;
        best_index = i;
      }
    }
    if (best != SIZE_MAX) {
      raw = p.free_list[best_index];
      p.free_list[best_index] = p.free_list.back();
      p.free_list.pop_back();
      p.bytes -= best;
    }
  }
  if (raw != nullptr) {
    std::memset(raw + kHeader, 0, bytes);
    return raw + kHeader;
  }
  raw = static_cast<char*>(std::calloc(1, bytes + kHeader));
  if (raw == nullptr) return nullptr;
  *reinterpret_cast<size_t*>(raw) = bytes;
  return raw + kHeader;
}

void release_buffer(void* buffer) {
  if (buffer == nullptr) return;
  char* raw = static_cast<char*>(buffer) - kHeader;
  const size_t cap = capacity_of(raw);
  BufferPool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    if (p.free_list.size() < kPoolEntries && p.bytes + cap <= kPoolBytes) {
      p.free_list.push_back(raw);
      p.bytes += cap;
      return;
    }
  }
  std::free(raw);
}

namespace {

void os_failure(ReadResult* result, int e) {
  result->kind = kOsError;
  result->sys_errno = e;
  copy_message(result->message, std::strerror(e));
}

const char* file_type_name(mode_t mode) {
  if (S_ISDIR(mode)) return "directory";
  if (S_ISFIFO(mode)) return "FIFO";
  if (S_ISCHR(mode)) return "character device";
  if (S_ISBLK(mode)) return "block device";
  if (S_ISSOCK(mode)) return "socket";
  return "special file";
}

// Reads bytes [*have, want) of the file into buf. Returns false (result filled) on an I/O
// error; a file that shrank since fstat just ends early (*have < want).
bool read_range(int fd, uint8_t* buf, size_t* have, size_t want, ReadResult* result) {
  while (*have < want) {
    const ssize_t got = ::read(fd, buf + *have, want - *have);
    if (got < 0) {
      if (errno == EINTR) continue;
      os_failure(result, errno);
      return false;
    }
    if (got == 0) break;
    *have += static_cast<size_t>(got);
  }
  return true;
}

// Offset just past the first SOS segment, found by walking the marker segments of
// data[0, have) from after SOI. 0: more bytes are needed (at least *need). SIZE_MAX: something
// unusual (garbage between segments, a standalone marker): read the whole file.
size_t find_header_end(const uint8_t* data, size_t have, size_t* need) {
  size_t pos = 2;
  while (true) {
    if (pos + 4 > have) {
      *need = pos + 4;
      return 0;
    }
    if (data[pos] != 0xFF) return SIZE_MAX;
    size_t code = pos + 1;
    while (code < have && data[code] == 0xFF) ++code;  // fill bytes
    if (code + 3 > have) {
      *need = code + 3;
      return 0;
    }
    const uint8_t marker = data[code];
    if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD9)) return SIZE_MAX;
    const size_t length = (static_cast<size_t>(data[code + 1]) << 8) | data[code + 2];
    if (length < 2) return SIZE_MAX;
    const size_t end = code + 1 + length;
    if (marker == 0xDA) return end;
    pos = end;
  }
}

}  // namespace

bool load_file(const char* path, const ReadOptions& options, uint8_t** data, size_t* size,
               ReadResult* result) {
  constexpr size_t kFirstChunk = size_t(4) << 10;
  *data = nullptr;
  *size = 0;
  const int fd = ::open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    os_failure(result, errno);
    return false;
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (fstat(fd, &st) != 0) {
    os_failure(result, errno);
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    result->kind = kJpegError;
    result->sys_errno = S_ISDIR(st.st_mode) ? EISDIR : 0;
    std::snprintf(result->message, kMessageSize, "not a regular file (%s)", file_type_name(st.st_mode));
    return false;
  }
  const size_t file_size = static_cast<size_t>(st.st_size);
  if (options.max_bytes > 0 && static_cast<uint64_t>(st.st_size) > options.max_bytes) {
    result->kind = kLimitError;
    std::snprintf(result->message, kMessageSize, "file of %lld bytes exceeds the limit of %llu bytes (max_bytes)",
                  static_cast<long long>(st.st_size), static_cast<unsigned long long>(options.max_bytes));
    return false;
  }
  // The first two bytes decide whether anything else is read.
  uint8_t soi[2] = {0, 0};
  size_t have = 0;
  if (!read_range(fd, soi, &have, 2, result)) return false;
  if (have == 0) {
    result->kind = kJpegError;
    copy_message(result->message, "empty input (0 bytes)");
    return false;
  }
  if (have < 2 || soi[0] != 0xFF || soi[1] != 0xD8) {
    result->kind = kJpegError;
    if (have < 2) {
      std::snprintf(result->message, kMessageSize, "Not a JPEG file: only 1 byte (0x%02x)", soi[0]);
    } else {
      std::snprintf(result->message, kMessageSize, "Not a JPEG file: starts with 0x%02x 0x%02x", soi[0], soi[1]);
    }
    return false;
  }
  // The whole file or, for a header, a first chunk grown until the first SOS segment is in.
  size_t capacity = std::max<size_t>(file_size, 2);
  if (options.header_only) capacity = std::min<size_t>(capacity, size_t(64) << 10);
  auto* buffer = static_cast<uint8_t*>(std::malloc(capacity));
  if (buffer == nullptr) {
    result->kind = kNoMemory;
    std::snprintf(result->message, kMessageSize, "out of memory reading %zu bytes", capacity);
    return false;
  }
  buffer[0] = soi[0];
  buffer[1] = soi[1];
  if (band_limited(options)) {
    // In chunks, each walked for the read point: the file is read up to there (and at most
    // one chunk further: 4 KiB, or 1/8 of what was read), or whole when it has none
    // (baseline, not band-ordered, ...).
    BandWalk w(options);
    ScanWalker walker(w.needed, 2, static_cast<BandSampling>(options.band_sampling), options.max_scans, false);
    bool ok = true;
    size_t want = std::min(capacity, kFirstChunk);
    while (ok) {
      const size_t before = have;
      ok = read_range(fd, buffer, &have, want, result);
      if (!ok) break;
      const WalkStatus status = walker.advance(buffer, have);
      if (status == kWalkCut || have < want || have == before || have >= capacity) break;
      want = (status == kWalkWhole) ? capacity : std::min(capacity, have + std::max(kFirstChunk, have / 8));
    }
    if (!ok) {
      std::free(buffer);
      return false;
    }
    *data = buffer;
    *size = have;
    result->bytes_read = have;
    return true;
  }
  bool ok = read_range(fd, buffer, &have, capacity, result);
  size_t header_end = 0;
  while (ok && options.header_only && have == capacity) {
    size_t need = 0;
    const size_t end = find_header_end(buffer, have, &need);
    if (end != 0 && end != SIZE_MAX && end <= have) {
      header_end = end;
      break;
    }
    if (capacity >= file_size) break;
    size_t next = (end == SIZE_MAX) ? file_size : std::max({capacity * 2, need, end});
    next = std::min(next, file_size);
    auto* grown = static_cast<uint8_t*>(std::realloc(buffer, next));
    if (grown == nullptr) {
      std::free(buffer);
      result->kind = kNoMemory;
      std::snprintf(result->message, kMessageSize, "out of memory reading %zu bytes", next);
      return false;
    }
    buffer = grown;
    capacity = next;
    ok = read_range(fd, buffer, &have, capacity, result);
  }
  if (!ok) {
    std::free(buffer);
    return false;
  }
  *data = buffer;
  *size = header_end > 0 ? header_end : have;
  result->bytes_read = have;
  return true;
}

}  // namespace dctnet
