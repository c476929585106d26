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
#include <mutex>
#include <new>
#include <vector>

#include <sys/stat.h>

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

void fail(j_common_ptr cinfo, int code) {
  cinfo->err->msg_code = code;
  (*cinfo->err->error_exit)(cinfo);
}

jvirt_barray_ptr request_block_array(j_common_ptr cinfo, int pool_id, boolean /*pre_zero*/,
                                     JDIMENSION blocksperrow, JDIMENSION numrows, JDIMENSION /*maxaccess*/) {
  // The buffer was zeroed when allocated, which is what pre_zero asks for.
  auto* plan = static_cast<ArrayPlan*>(cinfo->client_data);
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

}  // namespace

struct Decompressor::State {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  ProgressManager progress;
  ArrayPlan plan;
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
  // The memory manager outlives every image: replace its block-array methods once.
  s->cinfo.mem->request_virt_barray = request_block_array;
  s->cinfo.mem->access_virt_barray = access_block_array;
  s->cinfo.client_data = &s->plan;
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
  ArrayPlan* plan = &s->plan;
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
    cinfo->progress = &s->progress.pub;
    s->err.phase = kPhaseCoefficients;
    mark_scan_components(cinfo, &s->err);
    jpeg_read_coefficients(cinfo);
    cinfo->progress = nullptr;
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

  if (!options.header_only) {
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
