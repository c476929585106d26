// Entropy decoding only: jpeg_read_coefficients, then one copy into a caller-owned block.
//
// libjpeg reports fatal errors through error_exit, which must not return. We longjmp back
// to the frame that called into libjpeg. That frame (Decompressor::read) holds no C++
// objects with destructors, and every resource it owns is reachable from ReadResult or the
// decompressor, so the error path frees exactly what the success path would.
#include "jpeg_reader.h"

#include <cerrno>
#include <climits>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include <sys/stat.h>

extern "C" {
#include <jpeglib.h>
#include <jerror.h>
}

namespace dctnet {

namespace {

enum Phase { kPhaseIdle = 0, kPhaseHeader = 1, kPhaseCoefficients = 2 };

struct ErrorManager {
  jpeg_error_mgr pub;
  jmp_buf jump;
  ReadResult* result;
  const ReadOptions* options;
  int phase;
  unsigned seen_components;  // bit c: component c appeared in a scan so far
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

void mark_scan_components(j_decompress_ptr dinfo, ErrorManager* err) {
  for (int i = 0; i < dinfo->comps_in_scan; ++i) {
    err->seen_components |= 1u << dinfo->cur_comp_info[i]->component_index;
  }
}

// Blocks that cannot have been decoded when corruption is first seen: the current scan's
// components from the current iMCU row on and, for sequential files, every component
// that has not appeared in a scan yet.
long long estimate_missing_blocks(j_decompress_ptr dinfo, const ErrorManager* err) {
  if (err->phase != kPhaseCoefficients) return 0;
  long long missing = 0;
  const long long row = dinfo->input_iMCU_row;
  unsigned in_scan = 0;
  for (int i = 0; i < dinfo->comps_in_scan; ++i) {
    const jpeg_component_info* comp = dinfo->cur_comp_info[i];
    in_scan |= 1u << comp->component_index;
    long long rows_left = static_cast<long long>(comp->height_in_blocks) - row * comp->v_samp_factor;
    if (rows_left > 0) missing += rows_left * comp->width_in_blocks;
  }
  if (!dinfo->progressive_mode) {
    for (int c = 0; c < dinfo->num_components; ++c) {
      if (!((err->seen_components | in_scan) & (1u << c))) {
        const jpeg_component_info* comp = &dinfo->comp_info[c];
        missing += static_cast<long long>(comp->height_in_blocks) * comp->width_in_blocks;
      }
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
  if (!is_corruption(cinfo->err->msg_code)) {
    if (result->other_warnings++ == 0) copy_message(result->first_other_warning, buffer);
    return;
  }
  if (result->corrupt_warnings++ == 0) {
    auto dinfo = reinterpret_cast<j_decompress_ptr>(cinfo);
    copy_message(result->first_corruption, buffer);
    result->corrupt_scan = dinfo->input_scan_number;
    result->missing_blocks = estimate_missing_blocks(dinfo, err);
    // Scan fields are only meaningful once coefficients are being read; before that they
    // may still describe a previous image's (freed) components.
    if (err->phase == kPhaseCoefficients) mark_scan_components(dinfo, err);
  }
  if (err->options->strict) {
    result->kind = kJpegError;
    copy_message(result->message, buffer);
    longjmp(err->jump, 1);
  }
}

// Called by jpeg_read_coefficients before each iMCU row / scan step.
void on_progress(j_common_ptr cinfo) {
  auto* progress = reinterpret_cast<ProgressManager*>(cinfo->progress);
  auto dinfo = reinterpret_cast<j_decompress_ptr>(cinfo);
  ErrorManager* err = progress->err;
  mark_scan_components(dinfo, err);
  if (err->options->max_scans > 0 && dinfo->input_scan_number > err->options->max_scans) {
    err->result->kind = kLimitError;
    std::snprintf(err->result->message, kMessageSize,
                  "progressive file has more than %d scans (limit max_scans)", err->options->max_scans);
    longjmp(err->jump, 1);
  }
}

}  // namespace

struct Decompressor::State {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  ProgressManager progress;
  bool created;
};

Decompressor::Decompressor() : state_(new State()) {
  State* s = state_;
  std::memset(&s->cinfo, 0, sizeof(s->cinfo));
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
  s->progress.pub.progress_monitor = on_progress;
  s->progress.err = &s->err;
  s->created = true;
}

Decompressor::~Decompressor() {
  if (state_->created) jpeg_destroy_decompress(&state_->cinfo);
  delete state_;
}

void Decompressor::read(const uint8_t* data, size_t size, const ReadOptions& options,
                        ReadResult* result) {
  State* s = state_;
  j_decompress_ptr cinfo = &s->cinfo;
  if (!s->created) {
    result->kind = kNoMemory;
    copy_message(result->message, "could not create a libjpeg decompressor");
    return;
  }
  if (size == 0) {
    result->kind = kJpegError;
    copy_message(result->message, "empty input (0 bytes)");
    return;
  }
  if (size > static_cast<size_t>(ULONG_MAX)) {
    result->kind = kLimitError;
    copy_message(result->message, "input larger than libjpeg can address");
    return;
  }
  s->err.result = result;
  s->err.options = &options;
  s->err.phase = kPhaseHeader;
  s->err.seen_components = 0;
  s->err.pub.num_warnings = 0;

  if (setjmp(s->err.jump)) {
    // Every failure lands here: libjpeg's error_exit, a strict-mode corruption warning,
    // the scan limit, or a check below.
    std::free(result->buffer);
    result->buffer = nullptr;
    result->buffer_bytes = 0;
    jpeg_abort_decompress(cinfo);
    cinfo->progress = nullptr;
    s->err.result = nullptr;
    s->err.phase = kPhaseIdle;
    if (result->kind == kOk) result->kind = kJpegError;
    return;
  }

  jpeg_mem_src(cinfo, data, static_cast<unsigned long>(size));
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
  if (!options.header_only) {
    for (int c = 0; c < cinfo->num_components; ++c) {
      result->plane_offset[c] = total_bytes;
      total_bytes += static_cast<size_t>(result->width_in_blocks[c]) *
                     result->height_in_blocks[c] * 64 * sizeof(JCOEF);
    }
  }
  jvirt_barray_ptr* arrays = nullptr;
  if (!options.header_only) {
    cinfo->progress = &s->progress.pub;
    s->err.phase = kPhaseCoefficients;
    mark_scan_components(cinfo, &s->err);
    arrays = jpeg_read_coefficients(cinfo);
    cinfo->progress = nullptr;
  }

  result->buffer = std::malloc(total_bytes);
  if (result->buffer == nullptr) {
    result->kind = kNoMemory;
    std::snprintf(result->message, kMessageSize, "out of memory allocating %zu bytes", total_bytes);
    longjmp(s->err.jump, 1);
  }
  result->buffer_bytes = total_bytes;

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

  if (!options.header_only) {
    for (int c = 0; c < cinfo->num_components; ++c) {
      const size_t wb = static_cast<size_t>(result->width_in_blocks[c]);
      const int hb = result->height_in_blocks[c];
      auto* dst = reinterpret_cast<JCOEF*>(static_cast<char*>(result->buffer) + result->plane_offset[c]);
      const size_t row_bytes = wb * sizeof(JBLOCK);
      // The virtual array's rows may be padded to whole MCUs; copy only the real blocks.
      for (int row = 0; row < hb; ++row) {
        JBLOCKARRAY rows = (*cinfo->mem->access_virt_barray)(
            reinterpret_cast<j_common_ptr>(cinfo), arrays[c], static_cast<JDIMENSION>(row), 1, FALSE);
        std::memcpy(dst + static_cast<size_t>(row) * wb * 64, rows[0], row_bytes);
      }
    }
    jpeg_finish_decompress(cinfo);
  } else {
    jpeg_abort_decompress(cinfo);
  }
  s->err.result = nullptr;
  s->err.phase = kPhaseIdle;
}

bool read_file(const char* path, uint8_t** data, size_t* size, ReadResult* result) {
  *data = nullptr;
  *size = 0;
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr) {
    result->kind = kOsError;
    result->sys_errno = errno;
    copy_message(result->message, std::strerror(errno));
    return false;
  }
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    const int e = (fstat(fileno(f), &st) != 0) ? errno : (S_ISDIR(st.st_mode) ? EISDIR : EINVAL);
    std::fclose(f);
    result->kind = kOsError;
    result->sys_errno = e;
    copy_message(result->message, e == EINVAL ? "not a regular file" : std::strerror(e));
    return false;
  }
  const size_t n = static_cast<size_t>(st.st_size);
  uint8_t* buffer = static_cast<uint8_t*>(std::malloc(n > 0 ? n : 1));
  if (buffer == nullptr) {
    std::fclose(f);
    result->kind = kNoMemory;
    std::snprintf(result->message, kMessageSize, "out of memory reading %zu bytes", n);
    return false;
  }
  const size_t got = n > 0 ? std::fread(buffer, 1, n, f) : 0;
  const bool failed = std::ferror(f) != 0;
  const int e = errno;
  std::fclose(f);
  if (failed) {
    std::free(buffer);
    result->kind = kOsError;
    result->sys_errno = e;
    copy_message(result->message, std::strerror(e));
    return false;
  }
  *data = buffer;
  *size = got;
  return true;
}

}  // namespace dctnet
