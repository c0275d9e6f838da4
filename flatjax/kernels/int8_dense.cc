// flatjax's int8 dense layer on x86 CPUs with AVX-512 VNNI, an XLA FFI custom call.
//
// y = float32(float64(float32(acc)) * multiplier + bias),
// acc[n, m] = sum_k q[n, k] * w[k, m] - zero_point * sum_k w[k, m],
// q = clip(rint(float32(float64(x) * inverse + zero_point)), 0, 255)
//
// exactly the arithmetic of flatjax.quant.int8.dense's XLA path (its float64
// multiply-adds included), so either path gives the same bits. The uint8 x int8
// products accumulate in int32 with VPDPBUSD, the instruction FBGEMM builds
// PyTorch's dynamic int8 linear on; activations are quantized a block of rows at
// a time, just before the block is multiplied, and the result is written once.
//
// Operands: x f32[N, K]; inverse f32[] (1 / scale); zero_point s32[]; w s8 packed
// [M/64, K/4, 64, 4] (panels of 64 output columns, 4 consecutive k per int32 lane,
// zero-padded; see flatjax/kernels/int8.py); multiplier f32[M];
// bias f32[M]. Result: f32[N, M]. Blocks of rows are shared among XLA's
// intra-op threads (parallel.h).
//
// FlatjaxInt8DenseGelu also applies BERT's exact GELU, y/2 * (1 + erf(y/sqrt 2)),
// with XLA:CPU's float32 erf (the rational approximation of
// xla/codegen/intrinsic/erf.cc, Eigen's), op for op, and returns beside it the
// output's range f32[2] = (min(0, y...), max(0, y...)), NaN if any output is:
// what the next int8 layer's quantization would otherwise read the whole
// output again to find.

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kPanel = 64;  // output columns per packed panel: 4 vectors of 16 int32
constexpr int64_t kTile = 6;    // rows per register tile: 6 x 4 accumulators
constexpr int64_t kBlock = 96;  // rows quantized and multiplied together: whole tiles, L2 at K = 1536

struct Operands {
  const float* x;
  float inverse;
  int32_t zero_point;
  const int8_t* w;
  const float* multiplier;
  const float* bias;
  float* y;
  int64_t n, k, m, k_padded, panels;
  float* block_range;  // GELU only: per block of rows (min, max, NaN seen); else null
};

// The running range of a block's outputs: min and max from 0, as XLA's reduce
// with init 0, and whether a NaN went by (XLA's min and max propagate it).
struct Range {
  __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
  __mmask16 nan = 0;
  void Add(__m512 v, __mmask16 mask) {
    lo = _mm512_mask_min_ps(lo, mask, lo, v);
    hi = _mm512_mask_max_ps(hi, mask, hi, v);
    nan |= _mm512_mask_cmp_ps_mask(mask, v, v, _CMP_UNORD_Q);
  }
};

// XLA:CPU's float32 erf inside a fusion, op for op: an odd over an even
// polynomial in x^2 (Horner, one FMA a step), +-1 from |x| >= 3.7439 on (the
// intrinsic of xla/codegen/intrinsic/erf.cc as jaxlib 0.10 builds it; XLA's
// unfused erf op clamps at 3.8325 instead).
inline __m512 Erf(__m512 x) {
  const __m512 x2 = _mm512_mul_ps(x, x);
  __m512 p = _mm512_fmadd_ps(x2, _mm512_set1_ps(0.00022905065861350646f),
                             _mm512_set1_ps(0.0034082910107109506f));
  p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(0.050955695062380861f));
  p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(0.18520832239976145f));
  p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(1.128379143519084f));
  p = _mm512_mul_ps(x, p);
  __m512 q = _mm512_fmadd_ps(x2, _mm512_set1_ps(-1.1791602954361697e-7f),
                             _mm512_set1_ps(0.000023547966471313185f));
  q = _mm512_fmadd_ps(x2, q, _mm512_set1_ps(0.0010179625278914885f));
  q = _mm512_fmadd_ps(x2, q, _mm512_set1_ps(0.014070470171167667f));
  q = _mm512_fmadd_ps(x2, q, _mm512_set1_ps(0.11098505178285362f));
  q = _mm512_fmadd_ps(x2, q, _mm512_set1_ps(0.49746925110067538f));
  q = _mm512_fmadd_ps(x2, q, _mm512_set1_ps(1.0f));
  const __m512 sign = _mm512_and_ps(x, _mm512_set1_ps(-0.0f));
  const __m512 magnitude = _mm512_andnot_ps(_mm512_set1_ps(-0.0f), x);
  const __mmask16 clamp =
      _mm512_cmp_ps_mask(_mm512_set1_ps(3.7439211627767994f), magnitude, _CMP_LE_OQ);
  return _mm512_mask_mov_ps(_mm512_div_ps(p, q), clamp, _mm512_or_ps(sign, _mm512_set1_ps(1.0f)));
}

// flatjax.models.bert's exact GELU as XLA computes it: (y * 0.5) * (erf(y * c) + 1),
// c = float32(1 / sqrt 2).
inline __m512 GeluErf(__m512 y) {
  const __m512 e = Erf(_mm512_mul_ps(y, _mm512_set1_ps(0.707106769f)));
  return _mm512_mul_ps(_mm512_mul_ps(y, _mm512_set1_ps(0.5f)),
                       _mm512_add_ps(e, _mm512_set1_ps(1.0f)));
}

// float32(float64(a) * b + c) for 16 lanes, as XLA computes the float64 form.
inline __m512 WideFma(__m512 a, __m512d b, __m512d c) {
  __m512d lo = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(a)), b, c);
  __m512d hi = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(a, 1)), b, c);
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)), _mm512_cvtpd_ps(hi), 1);
}

// Per-column float64 operands of the epilogue, 16 columns at a time.
inline __m512 WideFma(__m512 a, const float* b, const float* c, __mmask16 mask) {
  __m512 bf = _mm512_maskz_loadu_ps(mask, b), cf = _mm512_maskz_loadu_ps(mask, c);
  __m512d lo = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(a)),
                               _mm512_cvtps_pd(_mm512_castps512_ps256(bf)),
                               _mm512_cvtps_pd(_mm512_castps512_ps256(cf)));
  __m512d hi = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(a, 1)),
                               _mm512_cvtps_pd(_mm512_extractf32x8_ps(bf, 1)),
                               _mm512_cvtps_pd(_mm512_extractf32x8_ps(cf, 1)));
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)), _mm512_cvtpd_ps(hi), 1);
}

// Rows [r0, r1) of x as uint8, k_padded bytes a row, the padding zero.
void Quantize(const Operands& op, int64_t r0, int64_t r1, uint8_t* q) {
  const __m512d inverse = _mm512_set1_pd(op.inverse);
  const __m512d zero_point = _mm512_set1_pd(static_cast<double>(op.zero_point));
  const __m512 lo = _mm512_setzero_ps(), hi = _mm512_set1_ps(255.0f);
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = op.x + r * op.k;
    uint8_t* qr = q + (r - r0) * op.k_padded;
    for (int64_t k = 0; k < op.k; k += 16) {
      const __mmask16 mask = op.k - k >= 16 ? 0xFFFF : (__mmask16)((1u << (op.k - k)) - 1);
      __m512 v = WideFma(_mm512_maskz_loadu_ps(mask, xr + k), inverse, zero_point);
      v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
      _mm512_mask_cvtepi32_storeu_epi8(qr + k, mask, _mm512_cvtps_epi32(v));
    }
    std::memset(qr + op.k, 0, op.k_padded - op.k);
  }
}

// Rows [r, r + rows) of the block (rows <= 6; the block's buffer holds whole
// tiles) against one panel: 6 x 64 int32 sums in 24 registers, then the epilogue.
// The accumulators are named, not an array: GCC keeps an array of vectors on
// the stack and reloads it every step.
#define FLATJAX_ZERO4(i) \
  __m512i c##i##0 = _mm512_setzero_si512(), c##i##1 = c##i##0, c##i##2 = c##i##0, c##i##3 = c##i##0;
#define FLATJAX_ROW(i)                                                    \
  {                                                                       \
    int32_t four;                                                         \
    std::memcpy(&four, q + i * op.k_padded + 4 * t, 4);                   \
    const __m512i a = _mm512_set1_epi32(four);                            \
    c##i##0 = _mm512_dpbusd_epi32(c##i##0, a, w0);                        \
    c##i##1 = _mm512_dpbusd_epi32(c##i##1, a, w1);                        \
    c##i##2 = _mm512_dpbusd_epi32(c##i##2, a, w2);                        \
    c##i##3 = _mm512_dpbusd_epi32(c##i##3, a, w3);                        \
  }

void Tile(const Operands& op, const uint8_t* q, int64_t r, int64_t rows, int64_t panel,
          const int32_t* offset, Range* range) {
  FLATJAX_ZERO4(0) FLATJAX_ZERO4(1) FLATJAX_ZERO4(2)
  FLATJAX_ZERO4(3) FLATJAX_ZERO4(4) FLATJAX_ZERO4(5)
  // The tile's output lines, fetched for writing while it computes: stored
  // cold, they stall the epilogue on memory (half the time of a 384-wide layer).
  for (int64_t i = 0; i < rows; ++i) {
    const char* out = reinterpret_cast<const char*>(op.y + (r + i) * op.m + panel * kPanel);
    const int64_t bytes = std::min<int64_t>(kPanel, op.m - panel * kPanel) * 4;
    for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch(out + b, _MM_HINT_ET0);
  }
  const int8_t* w = op.w + panel * op.k_padded * kPanel;
  const int64_t quads = op.k_padded / 4;
  for (int64_t t = 0; t < quads; ++t) {
    const int8_t* wt = w + t * 4 * kPanel;
    const __m512i w0 = _mm512_loadu_si512(wt), w1 = _mm512_loadu_si512(wt + 64);
    const __m512i w2 = _mm512_loadu_si512(wt + 128), w3 = _mm512_loadu_si512(wt + 192);
    FLATJAX_ROW(0) FLATJAX_ROW(1) FLATJAX_ROW(2) FLATJAX_ROW(3) FLATJAX_ROW(4) FLATJAX_ROW(5)
  }
  const __m512i acc[kTile][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13},
                                 {c20, c21, c22, c23}, {c30, c31, c32, c33},
                                 {c40, c41, c42, c43}, {c50, c51, c52, c53}};
  for (int j = 0; j < 4; ++j) {
    const int64_t col = panel * kPanel + j * 16;
    if (col >= op.m) break;
    const __mmask16 mask = op.m - col >= 16 ? 0xFFFF : (__mmask16)((1u << (op.m - col)) - 1);
    for (int64_t i = 0; i < rows; ++i) {
      const __m512 sum = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][j], _mm512_loadu_si512(offset + j * 16)));
      __m512 y = WideFma(sum, op.multiplier + col, op.bias + col, mask);
      if (range != nullptr) {
        y = GeluErf(y);
        range->Add(y, mask);
      }
      _mm512_mask_storeu_ps(op.y + (r + i) * op.m + col, mask, y);
    }
  }
}
#undef FLATJAX_ZERO4
#undef FLATJAX_ROW

// zero_point * sum_k w[k, m] for the panel's 64 columns: the column sums by
// VPDPBUSD against ones, a pass over the panel as long as one row's product.
void PanelOffset(const Operands& op, int64_t panel, int32_t* offset) {
  const int8_t* w = op.w + panel * op.k_padded * kPanel;
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0;
  for (int64_t t = 0; t < op.k_padded / 4; ++t) {
    const int8_t* wt = w + t * 4 * kPanel;
    c0 = _mm512_dpbusd_epi32(c0, ones, _mm512_loadu_si512(wt));
    c1 = _mm512_dpbusd_epi32(c1, ones, _mm512_loadu_si512(wt + 64));
    c2 = _mm512_dpbusd_epi32(c2, ones, _mm512_loadu_si512(wt + 128));
    c3 = _mm512_dpbusd_epi32(c3, ones, _mm512_loadu_si512(wt + 192));
  }
  const __m512i zero_point = _mm512_set1_epi32(op.zero_point);
  _mm512_store_si512(offset, _mm512_mullo_epi32(zero_point, c0));
  _mm512_store_si512(offset + 16, _mm512_mullo_epi32(zero_point, c1));
  _mm512_store_si512(offset + 32, _mm512_mullo_epi32(zero_point, c2));
  _mm512_store_si512(offset + 48, _mm512_mullo_epi32(zero_point, c3));
}

void MultiplyBlock(const Operands& op, int64_t block, uint8_t* q) {
  const int64_t r0 = block * kBlock, r1 = std::min(op.n, r0 + kBlock);
  Quantize(op, r0, r1, q);
  // Rows past the last in a partial tile multiply zeros and are not stored.
  const int64_t tiled = (r1 - r0 + kTile - 1) / kTile * kTile;
  std::memset(q + (r1 - r0) * op.k_padded, 0, (tiled - (r1 - r0)) * op.k_padded);
  alignas(64) int32_t offset[kPanel];
  Range range;
  Range* gelu = op.block_range != nullptr ? &range : nullptr;
  for (int64_t panel = 0; panel < op.panels; ++panel) {
    PanelOffset(op, panel, offset);
    for (int64_t r = r0; r < r1; r += kTile)
      Tile(op, q + (r - r0) * op.k_padded, r, std::min(kTile, r1 - r), panel, offset, gelu);
  }
  if (gelu != nullptr) {
    float* out = op.block_range + 3 * block;
    out[0] = _mm512_reduce_min_ps(range.lo);
    out[1] = _mm512_reduce_max_ps(range.hi);
    out[2] = range.nan != 0 ? 1.0f : 0.0f;
  }
}

ffi::Error Run(Operands op, ffi::ThreadPool& pool) {
  if (op.k_padded < op.k || op.panels * kPanel < op.m)
    return ffi::Error::InvalidArgument("int8_dense: packed weights smaller than x and multiplier say");
  flatjax::ParallelFor(pool, (op.n + kBlock - 1) / kBlock, kBlock * op.k_padded,
                       [&op](int64_t block, uint8_t* q) { MultiplyBlock(op, block, q); });
  return ffi::Error::Success();
}

ffi::ErrorOr<Operands> Bind(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> inverse,
                            ffi::Buffer<ffi::S32> zero_point, ffi::Buffer<ffi::S8> w,
                            ffi::Buffer<ffi::F32> multiplier, ffi::Buffer<ffi::F32> bias,
                            ffi::Result<ffi::Buffer<ffi::F32>> y) {
  const auto xd = x.dimensions();
  const auto wd = w.dimensions();
  if (xd.size() != 2 || wd.size() != 4 || wd[2] != kPanel || wd[3] != 4)
    return ffi::Unexpected(
        ffi::Error::InvalidArgument("int8_dense: x must be [N, K] and w [M/64, K/4, 64, 4]"));
  return Operands{x.typed_data(), inverse.typed_data()[0], zero_point.typed_data()[0],
                  w.typed_data(), multiplier.typed_data(), bias.typed_data(), y->typed_data(),
                  xd[0], xd[1], static_cast<int64_t>(multiplier.element_count()), wd[1] * 4,
                  wd[0], nullptr};
}

ffi::Error Int8Dense(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> inverse,
                     ffi::Buffer<ffi::S32> zero_point, ffi::Buffer<ffi::S8> w,
                     ffi::Buffer<ffi::F32> multiplier,
                     ffi::Buffer<ffi::F32> bias, ffi::ResultBuffer<ffi::F32> y) {
  auto op = Bind(x, inverse, zero_point, w, multiplier, bias, y);
  return op.has_value() ? Run(*op, pool) : op.error();
}

ffi::Error Int8DenseGelu(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                         ffi::Buffer<ffi::F32> inverse, ffi::Buffer<ffi::S32> zero_point,
                         ffi::Buffer<ffi::S8> w, ffi::Buffer<ffi::F32> multiplier,
                         ffi::Buffer<ffi::F32> bias, ffi::ResultBuffer<ffi::F32> y,
                         ffi::ResultBuffer<ffi::F32> range) {
  auto op = Bind(x, inverse, zero_point, w, multiplier, bias, y);
  if (!op.has_value()) return op.error();
  const int64_t blocks = (op->n + kBlock - 1) / kBlock;
  std::vector<float> block_range(3 * blocks);
  op->block_range = block_range.data();
  if (ffi::Error error = Run(*op, pool); error.failure()) return error;
  float lo = 0.0f, hi = 0.0f;
  bool nan = false;
  for (int64_t b = 0; b < blocks; ++b) {
    lo = std::min(lo, block_range[3 * b]);
    hi = std::max(hi, block_range[3 * b + 1]);
    nan = nan || block_range[3 * b + 2] != 0.0f;
  }
  range->typed_data()[0] = nan ? std::numeric_limits<float>::quiet_NaN() : lo;
  range->typed_data()[1] = nan ? std::numeric_limits<float>::quiet_NaN() : hi;
  return ffi::Error::Success();
}

}  // namespace

// The operands both handlers bind, in order (see the top of this file).
static auto Int8DenseOperands() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::S32>>()
      .Arg<ffi::Buffer<ffi::S8>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(FlatjaxInt8Dense, Int8Dense,
                              Int8DenseOperands().Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(FlatjaxInt8DenseGelu, Int8DenseGelu,
                              Int8DenseOperands()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
