// The attention's context product on x86 CPUs with AVX-512, an XLA FFI custom call.
//
// context[b, q, h, :] = sum_k probs[b, h, q, k] * v[b, k, h, :]
//
// summed as XLA:CPU's own dot sums jnp.einsum("bhqk,bkhd->bqhd"): in `lanes`
// (1, 2 or 4) interleaved partial sums over k = lane mod lanes, each in order
// with one fused multiply-add a term from zero, added pairwise at the end
// (flatjax/kernels/attention.py asks XLA which, per shape). XLA reaches ~9
// GFLOP/s on this product in these layouts; a register tile of 12 / lanes
// query rows x 32 features x lanes partial sums runs at the FMA units' rate.
//
// Operands: probs f32[B, H, Q, K], v f32[B, K, H, D]; attribute lanes.
// Result: f32[B, Q, H, D]. (batch, head) pairs are shared among XLA's intra-op
// threads (parallel.h).

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Operands {
  const float* probs;
  const float* v;
  float* context;
  int64_t batch, heads, queries, keys, features, lanes;
};

inline __mmask16 Lanes(int64_t n) {
  return n >= 16 ? 0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

// Query rows [q, q + rows) and features [d, d + 32) of one (batch, head), the
// sum over k split into LANES interleaved partial sums (k = lane mod LANES, each
// summed in order, one FMA a term), added pairwise at the end: XLA:CPU's dot
// does exactly this with 1, 2 or 4 lanes, whichever it picks for the shape.
// Rows past the last repeat it (valid memory) and are not stored. Named
// accumulators, not arrays: GCC keeps an array of vectors on the stack.
#define FJ_ZERO(i, l) __m512 c##i##_##l##_0 = _mm512_setzero_ps(), c##i##_##l##_1 = c##i##_##l##_0;
#define FJ_LOAD(l)                                                          \
  const __m512 v##l##_0 = _mm512_maskz_loadu_ps(m0, v + (k + l) * stride + d); \
  const __m512 v##l##_1 = _mm512_maskz_loadu_ps(m1, v + (k + l) * stride + d + 16);
#define FJ_FMA(i, l)                                                 \
  {                                                                  \
    const __m512 a = _mm512_set1_ps(p##i[k + l]);                    \
    c##i##_##l##_0 = _mm512_fmadd_ps(a, v##l##_0, c##i##_##l##_0);   \
    c##i##_##l##_1 = _mm512_fmadd_ps(a, v##l##_1, c##i##_##l##_1);   \
  }
#define FJ_STORE(i, x0, x1)                                           \
  if (i < rows) {                                                     \
    _mm512_mask_storeu_ps(out + (q + i) * stride + d, m0, x0);        \
    _mm512_mask_storeu_ps(out + (q + i) * stride + d + 16, m1, x1);   \
  }
#define FJ_STEP(l, ROWS) \
  {                      \
    FJ_LOAD(l)           \
    ROWS(l)              \
  }

struct TileArgs {
  const float* p[12];  // the tile's probability rows
  const float* v;      // v at this (batch, head) and feature block
  float* out;
  int64_t q, rows, d, keys, stride;
  __mmask16 m0, m1;
};

TileArgs MakeTile(const Operands& op, const float* probs, const float* v, float* out, int64_t q,
                  int64_t rows, int64_t d) {
  TileArgs t;
  for (int64_t i = 0; i < 12; ++i) t.p[i] = probs + std::min(q + i, q + rows - 1) * op.keys;
  t.v = v, t.out = out, t.q = q, t.rows = rows, t.d = d, t.keys = op.keys;
  t.stride = op.heads * op.features;  // between keys in v, queries in out
  t.m0 = Lanes(op.features - d), t.m1 = Lanes(op.features - d - 16);
  return t;
}

#define FJ_UNPACK                                                                        \
  const float *p0 = t.p[0], *p1 = t.p[1], *p2 = t.p[2], *p3 = t.p[3], *p4 = t.p[4],     \
              *p5 = t.p[5], *p6 = t.p[6], *p7 = t.p[7], *p8 = t.p[8], *p9 = t.p[9],     \
              *p10 = t.p[10], *p11 = t.p[11];                                           \
  (void)p0, (void)p1, (void)p2, (void)p3, (void)p4, (void)p5, (void)p6, (void)p7, (void)p8, \
      (void)p9, (void)p10, (void)p11;                                                   \
  const float* v = t.v;                                                                 \
  float* out = t.out;                                                                   \
  const int64_t q = t.q, rows = t.rows, d = t.d, stride = t.stride, keys = t.keys;      \
  const __mmask16 m0 = t.m0, m1 = t.m1;

// One lane, 12 rows.
#define FJ_ROWS1(l) FJ_FMA(0, l) FJ_FMA(1, l) FJ_FMA(2, l) FJ_FMA(3, l) FJ_FMA(4, l) FJ_FMA(5, l) \
  FJ_FMA(6, l) FJ_FMA(7, l) FJ_FMA(8, l) FJ_FMA(9, l) FJ_FMA(10, l) FJ_FMA(11, l)
void Tile1(const TileArgs& t) {
  FJ_UNPACK
  FJ_ZERO(0, 0) FJ_ZERO(1, 0) FJ_ZERO(2, 0) FJ_ZERO(3, 0) FJ_ZERO(4, 0) FJ_ZERO(5, 0)
  FJ_ZERO(6, 0) FJ_ZERO(7, 0) FJ_ZERO(8, 0) FJ_ZERO(9, 0) FJ_ZERO(10, 0) FJ_ZERO(11, 0)
  for (int64_t k = 0; k < keys; ++k) FJ_STEP(0, FJ_ROWS1)
  FJ_STORE(0, c0_0_0, c0_0_1) FJ_STORE(1, c1_0_0, c1_0_1) FJ_STORE(2, c2_0_0, c2_0_1)
  FJ_STORE(3, c3_0_0, c3_0_1) FJ_STORE(4, c4_0_0, c4_0_1) FJ_STORE(5, c5_0_0, c5_0_1)
  FJ_STORE(6, c6_0_0, c6_0_1) FJ_STORE(7, c7_0_0, c7_0_1) FJ_STORE(8, c8_0_0, c8_0_1)
  FJ_STORE(9, c9_0_0, c9_0_1) FJ_STORE(10, c10_0_0, c10_0_1) FJ_STORE(11, c11_0_0, c11_0_1)
}

// Two lanes, 6 rows.
#define FJ_ROWS2(l) FJ_FMA(0, l) FJ_FMA(1, l) FJ_FMA(2, l) FJ_FMA(3, l) FJ_FMA(4, l) FJ_FMA(5, l)
#define FJ_SUM2(i) \
  FJ_STORE(i, _mm512_add_ps(c##i##_0_0, c##i##_1_0), _mm512_add_ps(c##i##_0_1, c##i##_1_1))
void Tile2(const TileArgs& t) {
  FJ_UNPACK
  FJ_ZERO(0, 0) FJ_ZERO(1, 0) FJ_ZERO(2, 0) FJ_ZERO(3, 0) FJ_ZERO(4, 0) FJ_ZERO(5, 0)
  FJ_ZERO(0, 1) FJ_ZERO(1, 1) FJ_ZERO(2, 1) FJ_ZERO(3, 1) FJ_ZERO(4, 1) FJ_ZERO(5, 1)
  int64_t k = 0;
  for (; k + 2 <= keys; k += 2) {
    FJ_STEP(0, FJ_ROWS2)
    FJ_STEP(1, FJ_ROWS2)
  }
  if (k < keys) FJ_STEP(0, FJ_ROWS2)
  FJ_SUM2(0) FJ_SUM2(1) FJ_SUM2(2) FJ_SUM2(3) FJ_SUM2(4) FJ_SUM2(5)
}

// Four lanes, 3 rows; the lanes added as (0 + 1) + (2 + 3).
#define FJ_ROWS4(l) FJ_FMA(0, l) FJ_FMA(1, l) FJ_FMA(2, l)
#define FJ_TREE4(i, h) \
  _mm512_add_ps(_mm512_add_ps(c##i##_0_##h, c##i##_1_##h), _mm512_add_ps(c##i##_2_##h, c##i##_3_##h))
#define FJ_SUM4(i) FJ_STORE(i, FJ_TREE4(i, 0), FJ_TREE4(i, 1))
void Tile4(const TileArgs& t) {
  FJ_UNPACK
  FJ_ZERO(0, 0) FJ_ZERO(1, 0) FJ_ZERO(2, 0) FJ_ZERO(0, 1) FJ_ZERO(1, 1) FJ_ZERO(2, 1)
  FJ_ZERO(0, 2) FJ_ZERO(1, 2) FJ_ZERO(2, 2) FJ_ZERO(0, 3) FJ_ZERO(1, 3) FJ_ZERO(2, 3)
  int64_t k = 0;
  for (; k + 4 <= keys; k += 4) {
    FJ_STEP(0, FJ_ROWS4)
    FJ_STEP(1, FJ_ROWS4)
    FJ_STEP(2, FJ_ROWS4)
    FJ_STEP(3, FJ_ROWS4)
  }
  if (k < keys) FJ_STEP(0, FJ_ROWS4)
  if (k + 1 < keys) FJ_STEP(1, FJ_ROWS4)
  if (k + 2 < keys) FJ_STEP(2, FJ_ROWS4)
  FJ_SUM4(0) FJ_SUM4(1) FJ_SUM4(2)
}

void BatchHead(const Operands& op, int64_t pair) {
  const int64_t b = pair / op.heads, h = pair % op.heads;
  const float* probs = op.probs + pair * op.queries * op.keys;
  const float* v = op.v + b * op.keys * op.heads * op.features + h * op.features;
  float* out = op.context + b * op.queries * op.heads * op.features + h * op.features;
  const int64_t tile_rows = 12 / op.lanes;
  for (int64_t q = 0; q < op.queries; q += tile_rows) {
    for (int64_t d = 0; d < op.features; d += 32) {
      const TileArgs t = MakeTile(op, probs, v, out, q, std::min(tile_rows, op.queries - q), d);
      if (op.lanes == 1) Tile1(t);
      else if (op.lanes == 2) Tile2(t);
      else Tile4(t);
    }
  }
}

ffi::Error AttentionContext(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> probs,
                            ffi::Buffer<ffi::F32> v, ffi::ResultBuffer<ffi::F32> context,
                            int64_t lanes) {
  const auto pd = probs.dimensions();
  const auto vd = v.dimensions();
  if (pd.size() != 4 || vd.size() != 4 || pd[0] != vd[0] || pd[1] != vd[2] || pd[3] != vd[1])
    return ffi::Error::InvalidArgument(
        "attention_context: probs must be [B, H, Q, K] and v [B, K, H, D]");
  if (lanes != 1 && lanes != 2 && lanes != 4)
    return ffi::Error::InvalidArgument("attention_context: lanes must be 1, 2 or 4");
  const Operands op{probs.typed_data(), v.typed_data(), context->typed_data(),
                    pd[0], pd[1], pd[2], pd[3], vd[3], lanes};
  if (op.queries == 0 || op.features == 0) return ffi::Error::Success();
  flatjax::ParallelFor(pool, op.batch * op.heads, 0,
                       [&op](int64_t pair, uint8_t*) { BatchHead(op, pair); });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(FlatjaxAttentionContext, AttentionContext,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("lanes"));
