// Python binding of the coefficient reader (module dctnet._native).
//
// Inputs are pinned (buffers acquired, paths copied) while the GIL is held; decoding runs
// with the GIL released, on the calling thread for one image and on a pool of native
// threads (one Decompressor each) for a batch. Results are turned into Python objects
// once the GIL is back. Shaping them into DCTImage / JPEGError happens in dctnet/codec.py.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <cstdlib>
#include <cstring>
#include <sys/mman.h>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "jpeg_reader.h"
#include "jpeg_transcode.h"
#include "scan_script.h"

#include <cstdio>
extern "C" {
#include <jpeglib.h>
}

namespace nb = nanobind;
using dctnet::Decompressor;
using dctnet::ReadOptions;
using dctnet::ReadResult;

namespace {

// One input: either bytes-like (a held Py_buffer) or a path read natively. Problems found
// while pinning an item (a path that cannot be a file name, a buffer that is not
// contiguous) belong to that item: they become its error result, never the batch's.
struct Source {
  Py_buffer view{};
  bool has_view = false;
  std::string path;         // file-system bytes (os.fsencode), opened as is
  bool is_path = false;
  std::string error;        // non-empty: this item fails with this message (kJpegError)
};

// as_path: the object is a path, bytes (os.fsencode) or str (encoded with the file-system
// encoding and its surrogateescape handler, never UTF-8). Otherwise str is a path too and
// anything else must be a contiguous buffer holding the file's bytes.
void acquire_source(nb::handle obj, bool as_path, Source* src) {
  PyObject* o = obj.ptr();
  if (as_path || PyUnicode_Check(o)) {
    src->is_path = true;
    PyObject* encoded = nullptr;
    if (PyUnicode_Check(o)) {
      encoded = PyUnicode_EncodeFSDefault(o);
      if (encoded == nullptr) {
        nb::python_error e;  // fetches and clears the Python error
        src->error = std::string("path cannot be encoded for the file system: ") + e.what();
        return;
      }
    } else if (PyBytes_Check(o)) {
      Py_INCREF(o);
      encoded = o;
    } else {
      throw nb::type_error("a path must be str or bytes");
    }
    char* bytes = nullptr;
    Py_ssize_t length = 0;
    PyBytes_AsStringAndSize(encoded, &bytes, &length);
    if (std::memchr(bytes, 0, static_cast<size_t>(length)) != nullptr) {
      src->error = "embedded null byte in path";
    } else {
      src->path.assign(bytes, static_cast<size_t>(length));
    }
    Py_DECREF(encoded);
    return;
  }
  if (PyObject_GetBuffer(o, &src->view, PyBUF_C_CONTIGUOUS) != 0) {
    if (!PyObject_CheckBuffer(o)) {
      PyErr_Clear();
      throw nb::type_error("expected a path (str) or a contiguous bytes-like object");
    }
    nb::python_error e;
    src->error = std::string("not a contiguous buffer: ") + e.what();
    return;
  }
  src->has_view = true;
}

void release_source(Source* src) {
  if (src->has_view) {
    PyBuffer_Release(&src->view);
    src->has_view = false;
  }
}

Decompressor& thread_decompressor() {
  thread_local Decompressor decompressor;
  return decompressor;
}

void read_one(Decompressor& d, const Source& src, const ReadOptions& options, ReadResult* result) {
  if (!src.error.empty()) {
    result->kind = dctnet::kJpegError;
    std::snprintf(result->message, dctnet::kMessageSize, "%s", src.error.c_str());
  } else if (src.is_path) {
    uint8_t* data = nullptr;
    size_t size = 0;
    if (!dctnet::load_file(src.path.c_str(), options, &data, &size, result)) return;
    d.read(data, size, options, result);
    std::free(data);
  } else {
    d.read(static_cast<const uint8_t*>(src.view.buf), static_cast<size_t>(src.view.len), options, result);
  }
}

// Optional per-image consumer, called on the worker thread right after a successful read
// (GIL released) while the image's coefficients are still in this core's cache: dctnet's
// fused read-to-tensor path passes a numba cfunc here (dctnet/ops/fused_read.py). It gets a
// flat int64 description of the image (kView* below) and returns 0 when it has consumed the
// image (its buffer is released and its Python result is None) or nonzero to hand the image
// back to Python as usual.
using ImageSink = int32_t (*)(void* context, int64_t index, const int64_t* view);

// Layout of the int64 view passed to an ImageSink (mirrored in dctnet/ops/fused_read.py).
constexpr int kViewComponents = 0;   // number of components
constexpr int kViewColorspace = 1;   // libjpeg J_COLOR_SPACE of the file
constexpr int kViewQtables = 2;      // address of uint16 (ncomp, 64) quantisation steps
constexpr int kViewPlanes = 3;       // 3 addresses of int16 (rows, cols, 64) planes
constexpr int kViewRows = 6;         // 3 plane heights in blocks
constexpr int kViewCols = 9;         // 3 plane widths in blocks (the row length)
constexpr int kViewHSamp = 12;       // 3 horizontal sampling factors
constexpr int kViewVSamp = 15;       // 3 vertical sampling factors
constexpr int kViewWidth = 18;       // image width in pixels
constexpr int kViewHeight = 19;      // image height in pixels
constexpr int kViewSize = 20;

// The sink's view of a read (planes and quantisation tables null for a header alone).
void fill_view(const ReadResult* r, int64_t* view) {
  std::fill(view, view + kViewSize, int64_t(0));
  view[kViewComponents] = r->num_components;
  view[kViewColorspace] = r->colorspace;
  view[kViewQtables] = reinterpret_cast<int64_t>(r->buffer);
  view[kViewWidth] = r->width;
  view[kViewHeight] = r->height;
  for (int c = 0; c < r->num_components && c < 3; ++c) {
    if (r->buffer != nullptr) {
      view[kViewPlanes + c] = reinterpret_cast<int64_t>(static_cast<char*>(r->buffer) + r->plane_offset[c]);
    }
    view[kViewRows + c] = r->height_in_blocks[c];
    view[kViewCols + c] = r->width_in_blocks[c];
    view[kViewHSamp + c] = r->h_samp[c];
    view[kViewVSamp + c] = r->v_samp[c];
  }
}

// Offers a successful read to the sink. Returns true when the sink consumed it.
bool offer_to_sink(ImageSink sink, void* context, int64_t index, ReadResult* r) {
  if (r->kind != dctnet::kOk || r->num_components > 3) return false;
  int64_t view[kViewSize];
  fill_view(r, view);
  if (sink(context, index, view) != 0) return false;
  dctnet::release_buffer(r->buffer);
  r->buffer = nullptr;
  return true;
}

// Optional companion of an ImageSink: the blocks the sink will read of an image, from its
// header (the view of fill_view without planes), as int64 [row0, row1, col0, col1] per
// component (3). Returns 0 when it gives a window, nonzero when the sink would not consume
// the image (it is then read whole).
using SinkWindow = int32_t (*)(void* context, int64_t index, const int64_t* view, int64_t* window);

struct WindowContext {
  SinkWindow query;
  void* context;
};

bool query_window(void* context, int64_t index, const ReadResult& header, dctnet::BlockWindow* window) {
  if (header.num_components > 3) return false;
  const auto* w = static_cast<const WindowContext*>(context);
  int64_t view[kViewSize];
  ReadResult copy_free = header;   // (the header's geometry; no buffer)
  copy_free.buffer = nullptr;
  fill_view(&copy_free, view);
  int64_t out[12] = {0};
  if (w->query(w->context, index, view, out) != 0) return false;
  for (int c = 0; c < header.num_components; ++c) {
    window->row0[c] = static_cast<int>(out[4 * c]);
    window->row1[c] = static_cast<int>(out[4 * c + 1]);
    window->col0[c] = static_cast<int>(out[4 * c + 2]);
    window->col1[c] = static_cast<int>(out[4 * c + 3]);
  }
  return true;
}

// Successful read -> (width, height, colorspace, progressive, arithmetic, restart_interval,
//   sampling, qtables, planes, corrupt_info, other_warnings, bands_read, bytes_read)
// Consumed by a sink -> None, or (corrupt_info, other_warnings) when the read had warnings
// Failed read     -> (kind, errno, message)
nb::object to_python(ReadResult* r, bool header_only) {
  if (r->kind != dctnet::kOk) {
    return nb::make_tuple(r->kind, r->sys_errno, nb::str(r->message));
  }
  nb::object corrupt = nb::none();
  if (r->corrupt_warnings > 0) {
    corrupt = nb::make_tuple(r->corrupt_warnings, r->missing_blocks, r->total_blocks,
                             r->corrupt_scan, nb::str(r->first_corruption));
  }
  nb::object other = nb::none();
  if (r->other_warnings > 0) other = nb::make_tuple(r->other_warnings, nb::str(r->first_other_warning));
  if (r->buffer == nullptr) {                                        // consumed by a sink
    if (corrupt.is_none() && other.is_none()) return nb::none();
    return nb::make_tuple(corrupt, other);
  }
  void* buffer = r->buffer;
  r->buffer = nullptr;
  nb::capsule owner(buffer, [](void* p) noexcept { dctnet::release_buffer(p); });
  const int ncomp = r->num_components;
  size_t qt_shape[2] = {static_cast<size_t>(ncomp), 64};
  nb::object qtables = nb::cast(nb::ndarray<nb::numpy, uint16_t, nb::ndim<2>>(buffer, 2, qt_shape, owner));
  nb::list sampling;
  nb::list planes;
  nb::list bands_read;
  for (int c = 0; c < ncomp; ++c) {
    sampling.append(nb::make_tuple(r->h_samp[c], r->v_samp[c]));
    bands_read.append(header_only ? 64 : r->bands_read[c]);
    if (!header_only) {
      size_t shape[3] = {static_cast<size_t>(r->height_in_blocks[c]),
                         static_cast<size_t>(r->width_in_blocks[c]), 64};
      auto* ptr = reinterpret_cast<int16_t*>(static_cast<char*>(buffer) + r->plane_offset[c]);
      planes.append(nb::cast(nb::ndarray<nb::numpy, int16_t, nb::ndim<3>>(ptr, 3, shape, owner)));
    } else {
      planes.append(nb::make_tuple(r->height_in_blocks[c], r->width_in_blocks[c]));
    }
  }
  return nb::make_tuple(r->width, r->height, r->colorspace, r->progressive != 0, r->arithmetic != 0,
                        r->restart_interval, nb::tuple(sampling), qtables, nb::tuple(planes), corrupt,
                        other, nb::tuple(bands_read), r->bytes_read);
}

// Gives back every buffer still owned by results (those not turned into Python objects),
// whatever way the binding is left.
struct ResultsGuard {
  ReadResult* results;
  size_t n;
  ~ResultsGuard() {
    for (size_t i = 0; i < n; ++i) {
      dctnet::release_buffer(results[i].buffer);
      results[i].buffer = nullptr;
    }
  }
};

ReadOptions make_options(bool strict, bool header_only, uint64_t max_pixels, int max_scans,
                         uint64_t max_bytes, uint64_t max_scan_blocks, int bands, int chroma_bands,
                         int band_sampling) {
  if (bands < 0 || bands > 64 || chroma_bands < -1 || chroma_bands > 64) {
    throw nb::value_error("bands must be in 0..64 (chroma_bands: -1 for the same)");
  }
  if (band_sampling != dctnet::kAnySampling && band_sampling != dctnet::kNative420) {
    throw nb::value_error("unknown band_sampling");
  }
  ReadOptions o;
  o.bands = bands;
  o.chroma_bands = chroma_bands;
  o.band_sampling = band_sampling;
  o.strict = strict;
  o.header_only = header_only;
  o.max_pixels = max_pixels;
  o.max_scans = max_scans;
  o.max_bytes = max_bytes;
  o.max_scan_blocks = max_scan_blocks;
  return o;
}

nb::object py_read(nb::handle src_obj, bool strict, bool header_only, uint64_t max_pixels, int max_scans,
                   bool is_path, uint64_t max_bytes, uint64_t max_scan_blocks, int bands, int chroma_bands,
                   int band_sampling, bool direct_decoder) {
  ReadOptions options = make_options(strict, header_only, max_pixels, max_scans, max_bytes, max_scan_blocks,
                                     bands, chroma_bands, band_sampling);
  options.direct_first_scans = direct_decoder;
  Source src;
  acquire_source(src_obj, is_path, &src);
  struct Releaser {
    Source* s;
    ~Releaser() { release_source(s); }
  } releaser{&src};
  ReadResult result;
  ResultsGuard guard{&result, 1};
  {
    nb::gil_scoped_release release;
    read_one(thread_decompressor(), src, options, &result);
  }
  return to_python(&result, header_only);
}

nb::list py_read_batch(nb::sequence srcs, bool strict, bool header_only, uint64_t max_pixels,
                       int max_scans, int threads, uintptr_t sink_address, uintptr_t sink_context,
                       nb::object path_flags, uint64_t max_bytes, uint64_t max_scan_blocks, int bands,
                       int chroma_bands, int band_sampling, uintptr_t window_address) {
  ReadOptions options = make_options(strict, header_only, max_pixels, max_scans, max_bytes, max_scan_blocks,
                                     bands, chroma_bands, band_sampling);
  if (sink_address != 0 && header_only) throw nb::value_error("a sink needs coefficients (header_only=False)");
  if (window_address != 0 && sink_address == 0) throw nb::value_error("a sink window needs a sink");
  WindowContext window_context{reinterpret_cast<SinkWindow>(window_address), reinterpret_cast<void*>(sink_context)};
  if (window_address != 0) {
    options.window = query_window;
    options.window_context = &window_context;
  }
  auto sink = reinterpret_cast<ImageSink>(sink_address);
  auto* context = reinterpret_cast<void*>(sink_context);
  const size_t n = nb::len(srcs);
  std::string flags;
  if (!path_flags.is_none()) {
    if (!PyBytes_Check(path_flags.ptr())) throw nb::type_error("path_flags must be bytes");
    flags.assign(PyBytes_AS_STRING(path_flags.ptr()), static_cast<size_t>(PyBytes_GET_SIZE(path_flags.ptr())));
    if (flags.size() != n) throw nb::value_error("path_flags must have one byte per source");
  }
  std::vector<Source> sources(n);
  struct Releaser {
    std::vector<Source>* v;
    ~Releaser() {
      for (auto& s : *v) release_source(&s);
    }
  } releaser{&sources};
  for (size_t i = 0; i < n; ++i) acquire_source(srcs[i], !flags.empty() && flags[i] != 0, &sources[i]);

  std::vector<ReadResult> results(n);
  ResultsGuard guard{results.data(), n};
  const int workers = static_cast<int>(std::max<size_t>(1, std::min<size_t>(threads > 0 ? threads : 1, n)));
  int started = 1;              // threads started, the calling thread included
  int used = 1;                 // threads that read the batch
  std::string thread_error;
  {
    nb::gil_scoped_release release;
    std::atomic<size_t> next{0};
    auto work = [&](Decompressor& d) {
      for (size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
        ReadOptions item = options;
        item.window_index = static_cast<int64_t>(i);
        read_one(d, sources[i], item, &results[i]);
        if (sink == nullptr || offer_to_sink(sink, context, static_cast<int64_t>(i), &results[i])) continue;
        if (results[i].windowed) {
          // The sink declined an image read only in part (its window and its decision should
          // agree; if they ever do not, the image is read again whole rather than returned
          // with blocks missing).
          dctnet::release_buffer(results[i].buffer);
          results[i] = ReadResult();
          item.window = nullptr;
          read_one(d, sources[i], item, &results[i]);
          offer_to_sink(sink, context, static_cast<int64_t>(i), &results[i]);
        }
      }
    };
    // Threads that cannot be created (address-space or process limits) are not an error:
    // the batch runs on fewer, and the caller is told (a RuntimeWarning). Creation fails when
    // the address space is exhausted, and workers still need memory (buffers, a malloc arena
    // each, thread-local data that glibc allocates lazily and aborts the process when it
    // cannot): address space is set aside (PROT_NONE, nothing touched) while threads are
    // created and given back before any worker starts, and after a failure only as many
    // workers as there are cores read (more would not be faster); the others leave unused.
    size_t reserve_bytes = 0;
    void* reserve = MAP_FAILED;
    for (size_t r = std::min<size_t>(size_t(256) << 20, static_cast<size_t>(workers - 1) * (size_t(16) << 20));
         r >= (size_t(1) << 20); r /= 2) {
      reserve = mmap(nullptr, r, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (reserve != MAP_FAILED) {
        reserve_bytes = r;
        break;
      }
    }
    std::mutex mutex;
    std::condition_variable cv;
    int allowed = -1;        // workers with an index below this read; -1: not decided yet
    std::vector<std::thread> pool;
    try {
      pool.reserve(workers - 1);
      for (int t = 1; t < workers; ++t) {
        pool.emplace_back([&work, &mutex, &cv, &allowed, t] {
          {
            std::unique_lock<std::mutex> lock(mutex);
            cv.wait(lock, [&allowed] { return allowed >= 0; });
            if (t >= allowed) return;
          }
          Decompressor d;  // never throws; a failed one reports kNoMemory per item
          work(d);
        });
        ++started;
      }
    } catch (const std::exception& e) {
      thread_error = e.what();
    }
    if (reserve != MAP_FAILED) munmap(reserve, reserve_bytes);
    if (!thread_error.empty()) {
      used = std::max(1, std::min<int>(started, static_cast<int>(std::thread::hardware_concurrency())));
    } else {
      used = started;
    }
    {
      std::lock_guard<std::mutex> lock(mutex);
      allowed = used;
    }
    cv.notify_all();
    for (size_t t = static_cast<size_t>(used - 1); t < pool.size(); ++t) pool[t].join();  // unused ones
    work(thread_decompressor());
    for (size_t t = 0; t < pool.size() && t < static_cast<size_t>(used - 1); ++t) pool[t].join();
  }
  if (used < workers) {
    if (PyErr_WarnFormat(PyExc_RuntimeWarning, 1,
                         "dctnet: could start only %d of %d reader threads (%s); the batch was read on %d",
                         started, workers, thread_error.c_str(), used) != 0) {
      throw nb::python_error();
    }
  }
  nb::list out;
  for (size_t i = 0; i < n; ++i) out.append(to_python(&results[i], header_only));
  return out;
}

// The scan script of a JPEG held in memory: (progressive, arithmetic, num_components,
// [(components, Ss, Se, Ah, Al, start, end, complete, irregular), ...], truncated, problem).
// `complete`: per component, the leading bands complete after the scan; `end` 0: the data
// ended inside the scan.
nb::tuple py_scan_script(nb::bytes data, int max_scans) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(data.c_str());
  const size_t size = data.size();
  const int needed[1] = {64};
  dctnet::ScanWalker walker(needed, 1, dctnet::kAnySampling, max_scans, true);
  const bool starts = size >= 2 && bytes[0] == 0xFF && bytes[1] == 0xD8;
  if (starts) {
    nb::gil_scoped_release release;
    walker.advance(bytes, size);
  }
  nb::list scans;
  for (const dctnet::ScanRecord& r : walker.records()) {
    nb::list comps, complete;
    for (int i = 0; i < r.num_components; ++i) comps.append(r.components[i]);
    for (int c = 0; c < walker.num_components(); ++c) complete.append(r.complete[c]);
    scans.append(nb::make_tuple(nb::tuple(comps), r.ss, r.se, r.ah, r.al, r.start, r.end, nb::tuple(complete),
                                r.irregular));
  }
  return nb::make_tuple(walker.progressive(), walker.arithmetic(), walker.num_components(), scans,
                        walker.truncated(), nb::str(starts ? walker.problem() : "not a JPEG file"));
}

// Transcoding (jpeg_transcode.h): the new file's bytes, or (kind, 0, message) on failure.
// requant: empty, or 128 quantisation steps (luma, chroma; natural order) to requantise with.
nb::object py_transcode(nb::bytes data, std::vector<int> group_ends, uint64_t max_pixels,
                        std::vector<uint16_t> requant, unsigned int restart_interval) {
  if (!requant.empty() && requant.size() != 128) throw nb::value_error("requant takes 2 x 64 steps");
  if (restart_interval > 65535) throw nb::value_error("restart_interval must be in 0..65535");
  dctnet::TranscodeResult result;
  {
    nb::gil_scoped_release release;
    dctnet::transcode_band_ordered(reinterpret_cast<const uint8_t*>(data.c_str()), data.size(), group_ends.data(),
                                   static_cast<int>(group_ends.size()), max_pixels, &result,
                                   requant.empty() ? nullptr : requant.data(), restart_interval);
  }
  if (result.kind != dctnet::kOk) return nb::make_tuple(result.kind, 0, nb::str(result.message));
  nb::bytes out(reinterpret_cast<const char*>(result.data), result.size);
  std::free(result.data);
  return out;
}

}  // namespace

NB_MODULE(_native, m) {
  m.doc() = "dctnet's native JPEG coefficient reader (libjpeg-turbo). Use dctnet.codec instead.";
  m.def("read", &py_read, nb::arg("src"), nb::arg("strict"), nb::arg("header_only"),
        nb::arg("max_pixels"), nb::arg("max_scans"), nb::arg("is_path") = false, nb::arg("max_bytes") = 0,
        nb::arg("max_scan_blocks") = 0, nb::arg("bands") = 64, nb::arg("chroma_bands") = -1,
        nb::arg("band_sampling") = 0, nb::arg("direct_decoder") = true);
  m.def("read_batch", &py_read_batch, nb::arg("srcs"), nb::arg("strict"), nb::arg("header_only"),
        nb::arg("max_pixels"), nb::arg("max_scans"), nb::arg("threads"), nb::arg("sink") = 0,
        nb::arg("sink_context") = 0, nb::arg("path_flags") = nb::none(), nb::arg("max_bytes") = 0,
        nb::arg("max_scan_blocks") = 0, nb::arg("bands") = 64, nb::arg("chroma_bands") = -1,
        nb::arg("band_sampling") = 0, nb::arg("window") = 0);
  m.def("scan_script", &py_scan_script, nb::arg("data"), nb::arg("max_scans"));
  m.def("transcode", &py_transcode, nb::arg("data"), nb::arg("group_ends"), nb::arg("max_pixels"),
        nb::arg("requant") = std::vector<uint16_t>(), nb::arg("restart_interval") = 0);
  m.attr("LIBJPEG_VERSION") = JPEG_LIB_VERSION;
#ifdef LIBJPEG_TURBO_VERSION_NUMBER
  m.attr("LIBJPEG_TURBO_VERSION") = LIBJPEG_TURBO_VERSION_NUMBER;
#endif
}
