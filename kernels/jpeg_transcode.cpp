// Band-ordered progressive transcoding (see jpeg_transcode.h).
//
// Error handling as in jpeg_reader.cpp: libjpeg's error_exit longjmps back to transcode's
// frame, which holds no objects with destructors; everything it owns is reachable from the
// heap-allocated Job, so the error path frees exactly what the success path does.
#include "jpeg_transcode.h"

#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

extern "C" {
#include <jpeglib.h>
#include <jerror.h>
}

namespace dctnet {

namespace {

struct TranscodeError {
  jpeg_error_mgr pub;
  jmp_buf jump;
  TranscodeResult* result;
};

void transcode_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<TranscodeError*>(cinfo->err);
  char buffer[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, buffer);
  err->result->kind = (cinfo->err->msg_code == JERR_OUT_OF_MEMORY) ? kNoMemory : kJpegError;
  std::snprintf(err->result->message, kMessageSize, "%s", buffer);
  longjmp(err->jump, 1);
}

// The input must be clean: any corruption warning is an error (the output would carry it on).
void transcode_emit_message(j_common_ptr cinfo, int msg_level) {
  if (msg_level < 0) {
    const int code = cinfo->err->msg_code;
    if (code == JWRN_HUFF_BAD_CODE || code == JWRN_HIT_MARKER || code == JWRN_JPEG_EOF ||
        code == JWRN_MUST_RESYNC || code == JWRN_NOT_SEQUENTIAL || code == JWRN_BOGUS_PROGRESSION ||
        code == JWRN_ARITH_BAD_CODE || code == JWRN_EXTRANEOUS_DATA) {
      transcode_error_exit(cinfo);
    }
  }
}

// Output into a growing malloc'd buffer owned by the Job (libjpeg's jpeg_mem_dest frees and
// replaces its buffer internally, which would leave a dangling pointer on the error path).
struct GrowingDestination {
  jpeg_destination_mgr pub;
  uint8_t* buffer;
  size_t capacity;
  size_t length;
};

void destination_init(j_compress_ptr cinfo) {
  auto* d = reinterpret_cast<GrowingDestination*>(cinfo->dest);
  d->pub.next_output_byte = d->buffer;
  d->pub.free_in_buffer = d->capacity;
}

boolean destination_empty(j_compress_ptr cinfo) {
  auto* d = reinterpret_cast<GrowingDestination*>(cinfo->dest);
  const size_t grown = d->capacity * 2;
  auto* next = static_cast<uint8_t*>(std::realloc(d->buffer, grown));
  if (next == nullptr) ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 10);
  d->buffer = next;
  d->pub.next_output_byte = next + d->capacity;
  d->pub.free_in_buffer = grown - d->capacity;
  d->capacity = grown;
  return TRUE;
}

void destination_term(j_compress_ptr cinfo) {
  auto* d = reinterpret_cast<GrowingDestination*>(cinfo->dest);
  d->length = d->capacity - d->pub.free_in_buffer;
}

struct Job {
  jpeg_decompress_struct src;
  jpeg_compress_struct dst;
  TranscodeError err;   // shared by both objects: one landing place
  GrowingDestination dest;
  jpeg_scan_info scans[4 + 64 * kMaxComponents];
  bool src_created, dst_created;
};

// A marker libjpeg writes itself from the copied parameters (JFIF APP0, Adobe APP14).
bool written_by_libjpeg(const jpeg_compress_struct* dst, const jpeg_saved_marker_ptr m) {
  if (dst->write_JFIF_header && m->marker == JPEG_APP0 && m->data_length >= 5 &&
      std::memcmp(m->data, "JFIF", 5) == 0) {
    return true;
  }
  return dst->write_Adobe_marker && m->marker == JPEG_APP0 + 14 && m->data_length >= 5 &&
         std::memcmp(m->data, "Adobe", 5) == 0;
}

// Stops the transcode with an error of our own (kInvalid) and a message.
[[noreturn]] void transcode_fail(j_common_ptr cinfo, const char* message) {
  auto* err = reinterpret_cast<TranscodeError*>(cinfo->err);
  err->result->kind = kInvalid;
  std::snprintf(err->result->message, kMessageSize, "%s", message);
  longjmp(err->jump, 1);
}

// Every coefficient of src requantised with the new tables (component 0: requant[0..63], the
// others: requant[64..127]), written back into the coefficient arrays; dst gets those tables.
void requantize(j_decompress_ptr src, j_compress_ptr dst, jvirt_barray_ptr* coefficients,
                const uint16_t* requant) {
  if (src->jpeg_color_space != JCS_YCbCr && src->jpeg_color_space != JCS_GRAYSCALE) {
    transcode_fail(reinterpret_cast<j_common_ptr>(src), "requantising needs a YCbCr or grayscale JPEG");
  }
  for (int t = 0; t < 2; ++t) {
    if (dst->quant_tbl_ptrs[t] == nullptr) dst->quant_tbl_ptrs[t] = jpeg_alloc_quant_table(reinterpret_cast<j_common_ptr>(dst));
    for (int k = 0; k < DCTSIZE2; ++k) {
      if (requant[64 * t + k] == 0) transcode_fail(reinterpret_cast<j_common_ptr>(src), "a quantisation step of 0");
      dst->quant_tbl_ptrs[t]->quantval[k] = requant[64 * t + k];
    }
    dst->quant_tbl_ptrs[t]->sent_table = FALSE;
  }
  for (int c = 0; c < src->num_components; ++c) {
    const jpeg_component_info* comp = &src->comp_info[c];
    const JQUANT_TBL* old_table = comp->quant_table;
    if (old_table == nullptr) ERREXIT1(src, JERR_NO_QUANT_TABLE, comp->quant_tbl_no);
    const uint16_t* q_new = requant + (c == 0 ? 0 : 64);
    dst->comp_info[c].quant_tbl_no = c == 0 ? 0 : 1;
    for (JDIMENSION row = 0; row < comp->height_in_blocks; ++row) {
      JBLOCKARRAY blocks = (*src->mem->access_virt_barray)(reinterpret_cast<j_common_ptr>(src), coefficients[c],
                                                           row, 1, TRUE);
      for (JDIMENSION col = 0; col < comp->width_in_blocks; ++col) {
        JCOEF* block = blocks[0][col];
        for (int k = 0; k < DCTSIZE2; ++k) {
          const int32_t x = static_cast<int32_t>(block[k]) * old_table->quantval[k];  // exact
          const int32_t q = q_new[k];
          const int32_t y = x >= 0 ? (x + q / 2) / q : -((-x + q / 2) / q);
          block[k] = static_cast<JCOEF>(y);
        }
      }
    }
  }
}

}  // namespace

void transcode_band_ordered(const uint8_t* data, size_t size, const int* group_ends, int num_groups,
                            uint64_t max_pixels, TranscodeResult* result, const uint16_t* requant_tables, unsigned int restart_interval) {
  if (requant_tables != nullptr && num_groups != 0) {
    result->kind = kInvalid;
    std::snprintf(result->message, kMessageSize, "a requantised file is baseline sequential (no band groups)");
    return;
  }
  if (num_groups < 0 || num_groups > 64) {
    result->kind = kInvalid;
    std::snprintf(result->message, kMessageSize, "%d band groups (at most 64)", num_groups);
    return;
  }
  for (int g = 0; g < num_groups; ++g) {
    const int previous = g == 0 ? 0 : group_ends[g - 1];
    if (group_ends[g] <= previous || group_ends[g] > 64 || (g == num_groups - 1 && group_ends[g] != 64)) {
      result->kind = kInvalid;
      std::snprintf(result->message, kMessageSize,
                    "band groups must be strictly increasing band counts in 1..64 ending with 64");
      return;
    }
  }
  auto* job = static_cast<Job*>(std::calloc(1, sizeof(Job)));
  if (job == nullptr) {
    result->kind = kNoMemory;
    std::snprintf(result->message, kMessageSize, "out of memory");
    return;
  }
  job->src.err = jpeg_std_error(&job->err.pub);
  job->dst.err = &job->err.pub;
  job->err.pub.error_exit = transcode_error_exit;
  job->err.pub.emit_message = transcode_emit_message;
  job->err.result = result;
  if (setjmp(job->err.jump)) {
    if (job->dst_created) jpeg_destroy_compress(&job->dst);
    if (job->src_created) jpeg_destroy_decompress(&job->src);
    std::free(job->dest.buffer);
    std::free(job);
    if (result->kind == kOk) result->kind = kJpegError;
    return;
  }
  jpeg_create_decompress(&job->src);
  job->src_created = true;
  jpeg_mem_src(&job->src, data, static_cast<unsigned long>(size));
  jpeg_save_markers(&job->src, JPEG_COM, 0xFFFF);
  for (int m = 0; m < 16; ++m) jpeg_save_markers(&job->src, JPEG_APP0 + m, 0xFFFF);
  jpeg_read_header(&job->src, TRUE);
  const uint64_t pixels = static_cast<uint64_t>(job->src.image_width) * job->src.image_height;
  if (max_pixels > 0 && pixels > max_pixels) {
    result->kind = kLimitError;
    std::snprintf(result->message, kMessageSize,
                  "image of %ux%u = %llu pixels exceeds the limit of %llu pixels (max_pixels)",
                  job->src.image_width, job->src.image_height, static_cast<unsigned long long>(pixels),
                  static_cast<unsigned long long>(max_pixels));
    longjmp(job->err.jump, 1);
  }
  jvirt_barray_ptr* coefficients = jpeg_read_coefficients(&job->src);

  jpeg_create_compress(&job->dst);
  job->dst_created = true;
  jpeg_copy_critical_parameters(&job->src, &job->dst);
  const int ncomp = job->dst.num_components;
  if (requant_tables != nullptr) requantize(&job->src, &job->dst, coefficients, requant_tables);
  if (num_groups > 0) {
    int n = 0;
    jpeg_scan_info* scans = job->scans;
    auto add = [&](int comps_in_scan, int first_comp, int ss, int se) {
      jpeg_scan_info* s = &scans[n++];
      s->comps_in_scan = comps_in_scan;
      for (int i = 0; i < comps_in_scan; ++i) s->component_index[i] = first_comp + i;
      s->Ss = ss;
      s->Se = se;
      s->Ah = 0;
      s->Al = 0;
    };
    // DC first, interleaved when the scan can hold every component.
    if (ncomp <= MAX_COMPS_IN_SCAN) {
      add(ncomp, 0, 0, 0);
    } else {
      for (int c = 0; c < ncomp; ++c) add(1, c, 0, 0);
    }
    int start = 1;
    for (int g = 0; g < num_groups; ++g) {
      if (group_ends[g] <= start) continue;  // a group holding only the DC band
      for (int c = 0; c < ncomp; ++c) add(1, c, start, group_ends[g] - 1);
      start = group_ends[g];
    }
    job->dst.scan_info = scans;
    job->dst.num_scans = n;
  }
  // Requantised files: the standard Huffman tables (what an encoder at that quality writes).
  job->dst.optimize_coding = requant_tables == nullptr ? TRUE : FALSE;
  job->dst.restart_interval = restart_interval;  // jpeg_copy_critical_parameters leaves it 0
  job->dst.restart_in_rows = 0;
  job->dest.capacity = size / 2 + 4096;
  job->dest.buffer = static_cast<uint8_t*>(std::malloc(job->dest.capacity));
  if (job->dest.buffer == nullptr) ERREXIT1(&job->dst, JERR_OUT_OF_MEMORY, 11);
  job->dest.pub.init_destination = destination_init;
  job->dest.pub.empty_output_buffer = destination_empty;
  job->dest.pub.term_destination = destination_term;
  job->dst.dest = &job->dest.pub;
  jpeg_write_coefficients(&job->dst, coefficients);
  // (a requantised file stands for a fresh encode: no APPn/COM markers, as encode_jpeg writes none)
  for (jpeg_saved_marker_ptr m = job->src.marker_list; m != nullptr && requant_tables == nullptr; m = m->next) {
    if (written_by_libjpeg(&job->dst, m)) continue;
    jpeg_write_marker(&job->dst, m->marker, m->data, m->data_length);
  }
  jpeg_finish_compress(&job->dst);
  jpeg_finish_decompress(&job->src);
  jpeg_destroy_compress(&job->dst);
  jpeg_destroy_decompress(&job->src);
  result->data = job->dest.buffer;
  result->size = job->dest.length;
  std::free(job);
}

}  // namespace dctnet
