// The attention's context product on x86 CPUs with AVX-512, an XLA FFI custom call.
//
// context[b, q, h, :] = sum_k probs[b, h, q, k] * v[b, k, h, :]
//
// summed as XLA:CPU's own dot sums jnp.einsum("bhqk,bkhd->bqhd"): in `lanes`
// (1, 2 or 4) interleaved partial sums over k (k mod lanes), each in order with
// one fused multiply-add a term from zero, added pairwise at the end
// (flatjax/kernels/attention.py asks XLA which, per shape). XLA runs this
// product at ~9 billion multiply-adds a second in these layouts; a register tile of 12 / lanes query
// rows x 32 features x lanes partial sums runs at the FMA units' rate.
// (batch, head) pairs are shared among XLA's intra-op threads (parallel.h).
//
// (The scores product q k^T is not here: XLA fuses it into the softmax that
// follows, which a kernel of its own, with the softmax left to XLA, did not beat.)

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

inline __mmask16 Lanes(int64_t n) {
  return n >= 16 ? 0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

// C[r, c] = sum_t A[r, t] * B[t, c] for rows [row, row + rows) and columns
// [col, col + 32): A's rows contiguous in t, B's and C's rows `ldb` and `ldc`
// floats apart. Rows past the last repeat it (valid memory) and are not stored.
struct Tile {
  const float* a[12];
  const float* b;
  float* c;
  int64_t row, rows, col, inner, ldb, ldc;
  __mmask16 m0, m1;
};

Tile MakeTile(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
              int64_t row, int64_t rows, int64_t col, int64_t columns, int64_t inner) {
  Tile t;
  for (int64_t i = 0; i < 12; ++i) t.a[i] = a + std::min(row + i, row + rows - 1) * lda;
  t.b = b, t.c = c, t.row = row, t.rows = rows, t.col = col, t.inner = inner;
  t.ldb = ldb, t.ldc = ldc;
  t.m0 = Lanes(columns - col), t.m1 = Lanes(columns - col - 16);
  return t;
}

// Every 16 steps (a 64-byte line of floats), the next line of each of the tile's
// probability rows: they are read one float a step, up to a dozen streams at once, more
// than the hardware prefetcher keeps ahead of (the product ran ~20% faster with it).
// A macro on the unpacked row pointers: a call would spill the accumulators.
#define FJ_PREFETCH(i) _mm_prefetch(reinterpret_cast<const char*>(a##i + s + 16), _MM_HINT_T0);

// Named accumulators, not arrays: GCC keeps an array of vectors on the stack.
#define FJ_ZERO(i, l) __m512 c##i##_##l##_0 = _mm512_setzero_ps(), c##i##_##l##_1 = c##i##_##l##_0;
#define FJ_LOAD(l)                                                        \
  const __m512 b##l##_0 = _mm512_maskz_loadu_ps(m0, b + (s + l) * ldb + col); \
  const __m512 b##l##_1 = _mm512_maskz_loadu_ps(m1, b + (s + l) * ldb + col + 16);
#define FJ_FMA(i, l)                                                 \
  {                                                                  \
    const __m512 x = _mm512_set1_ps(a##i[s + l]);                    \
    c##i##_##l##_0 = _mm512_fmadd_ps(x, b##l##_0, c##i##_##l##_0);   \
    c##i##_##l##_1 = _mm512_fmadd_ps(x, b##l##_1, c##i##_##l##_1);   \
  }
#define FJ_STORE(i, x0, x1)                                       \
  if (i < rows) {                                                 \
    _mm512_mask_storeu_ps(c + (row + i) * ldc + col, m0, x0);     \
    _mm512_mask_storeu_ps(c + (row + i) * ldc + col + 16, m1, x1); \
  }
#define FJ_STEP(l, ROWS) \
  {                      \
    FJ_LOAD(l)           \
    ROWS(l)              \
  }
#define FJ_UNPACK                                                                            \
  const float *a0 = t.a[0], *a1 = t.a[1], *a2 = t.a[2], *a3 = t.a[3], *a4 = t.a[4],         \
              *a5 = t.a[5], *a6 = t.a[6], *a7 = t.a[7], *a8 = t.a[8], *a9 = t.a[9],         \
              *a10 = t.a[10], *a11 = t.a[11];                                               \
  (void)a0, (void)a1, (void)a2, (void)a3, (void)a4, (void)a5, (void)a6, (void)a7, (void)a8, \
      (void)a9, (void)a10, (void)a11;                                                       \
  const float* b = t.b;                                                                     \
  float* c = t.c;                                                                           \
  const int64_t row = t.row, rows = t.rows, col = t.col, inner = t.inner;                   \
  const int64_t ldb = t.ldb, ldc = t.ldc;                                                   \
  const __mmask16 m0 = t.m0, m1 = t.m1;

// One lane, 12 rows.
#define FJ_ROWS1(l) FJ_FMA(0, l) FJ_FMA(1, l) FJ_FMA(2, l) FJ_FMA(3, l) FJ_FMA(4, l) FJ_FMA(5, l) \
  FJ_FMA(6, l) FJ_FMA(7, l) FJ_FMA(8, l) FJ_FMA(9, l) FJ_FMA(10, l) FJ_FMA(11, l)
void Lanes1(const Tile& t) {
  FJ_UNPACK
  FJ_ZERO(0, 0) FJ_ZERO(1, 0) FJ_ZERO(2, 0) FJ_ZERO(3, 0) FJ_ZERO(4, 0) FJ_ZERO(5, 0)
  FJ_ZERO(6, 0) FJ_ZERO(7, 0) FJ_ZERO(8, 0) FJ_ZERO(9, 0) FJ_ZERO(10, 0) FJ_ZERO(11, 0)
  for (int64_t s = 0; s < inner; ++s) {
    if ((s & 15) == 0) {
      FJ_PREFETCH(0) FJ_PREFETCH(1) FJ_PREFETCH(2) FJ_PREFETCH(3) FJ_PREFETCH(4) FJ_PREFETCH(5)
      FJ_PREFETCH(6) FJ_PREFETCH(7) FJ_PREFETCH(8) FJ_PREFETCH(9) FJ_PREFETCH(10) FJ_PREFETCH(11)
    }
    FJ_STEP(0, FJ_ROWS1)
  }
  FJ_STORE(0, c0_0_0, c0_0_1) FJ_STORE(1, c1_0_0, c1_0_1) FJ_STORE(2, c2_0_0, c2_0_1)
  FJ_STORE(3, c3_0_0, c3_0_1) FJ_STORE(4, c4_0_0, c4_0_1) FJ_STORE(5, c5_0_0, c5_0_1)
  FJ_STORE(6, c6_0_0, c6_0_1) FJ_STORE(7, c7_0_0, c7_0_1) FJ_STORE(8, c8_0_0, c8_0_1)
  FJ_STORE(9, c9_0_0, c9_0_1) FJ_STORE(10, c10_0_0, c10_0_1) FJ_STORE(11, c11_0_0, c11_0_1)
}

// Two lanes, 6 rows.
#define FJ_ROWS2(l) FJ_FMA(0, l) FJ_FMA(1, l) FJ_FMA(2, l) FJ_FMA(3, l) FJ_FMA(4, l) FJ_FMA(5, l)
#define FJ_SUM2(i) \
  FJ_STORE(i, _mm512_add_ps(c##i##_0_0, c##i##_1_0), _mm512_add_ps(c##i##_0_1, c##i##_1_1))
void Lanes2(const Tile& t) {
  FJ_UNPACK
  FJ_ZERO(0, 0) FJ_ZERO(1, 0) FJ_ZERO(2, 0) FJ_ZERO(3, 0) FJ_ZERO(4, 0) FJ_ZERO(5, 0)
  FJ_ZERO(0, 1) FJ_ZERO(1, 1) FJ_ZERO(2, 1) FJ_ZERO(3, 1) FJ_ZERO(4, 1) FJ_ZERO(5, 1)
  int64_t s = 0;
  for (; s + 2 <= inner; s += 2) {
    if ((s & 15) == 0) {
      FJ_PREFETCH(0) FJ_PREFETCH(1) FJ_PREFETCH(2) FJ_PREFETCH(3) FJ_PREFETCH(4) FJ_PREFETCH(5)
    }
    FJ_STEP(0, FJ_ROWS2)
    FJ_STEP(1, FJ_ROWS2)
  }
  if (s < inner) FJ_STEP(0, FJ_ROWS2)
  FJ_SUM2(0) FJ_SUM2(1) FJ_SUM2(2) FJ_SUM2(3) FJ_SUM2(4) FJ_SUM2(5)
}

// Four lanes, 3 rows; the lanes added as (0 + 1) + (2 + 3).
#define FJ_ROWS4(l) FJ_FMA(0, l) FJ_FMA(1, l) FJ_FMA(2, l)
#define FJ_TREE4(i, h) \
  _mm512_add_ps(_mm512_add_ps(c##i##_0_##h, c##i##_1_##h), _mm512_add_ps(c##i##_2_##h, c##i##_3_##h))
#define FJ_SUM4(i) FJ_STORE(i, FJ_TREE4(i, 0), FJ_TREE4(i, 1))
void Lanes4(const Tile& t) {
  FJ_UNPACK
  FJ_ZERO(0, 0) FJ_ZERO(1, 0) FJ_ZERO(2, 0) FJ_ZERO(0, 1) FJ_ZERO(1, 1) FJ_ZERO(2, 1)
  FJ_ZERO(0, 2) FJ_ZERO(1, 2) FJ_ZERO(2, 2) FJ_ZERO(0, 3) FJ_ZERO(1, 3) FJ_ZERO(2, 3)
  int64_t s = 0;
  for (; s + 4 <= inner; s += 4) {
    if ((s & 15) == 0) { FJ_PREFETCH(0) FJ_PREFETCH(1) FJ_PREFETCH(2) }
    FJ_STEP(0, FJ_ROWS4)
    FJ_STEP(1, FJ_ROWS4)
    FJ_STEP(2, FJ_ROWS4)
    FJ_STEP(3, FJ_ROWS4)
  }
  if (s < inner) FJ_STEP(0, FJ_ROWS4)
  if (s + 1 < inner) FJ_STEP(1, FJ_ROWS4)
  if (s + 2 < inner) FJ_STEP(2, FJ_ROWS4)
  FJ_SUM4(0) FJ_SUM4(1) FJ_SUM4(2)
}

// C = A B for one (batch, head): `rows` x `columns`, contracted over `inner`.
void Multiply(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
              int64_t rows, int64_t columns, int64_t inner, int64_t lanes) {
  const int64_t tile_rows = 12 / lanes;
  for (int64_t row = 0; row < rows; row += tile_rows) {
    for (int64_t col = 0; col < columns; col += 32) {
      const Tile t = MakeTile(a, lda, b, ldb, c, ldc, row, std::min(tile_rows, rows - row), col,
                              columns, inner);
      if (lanes == 1) Lanes1(t);
      else if (lanes == 2) Lanes2(t);
      else Lanes4(t);
    }
  }
}

ffi::Error CheckLanes(int64_t lanes) {
  if (lanes != 1 && lanes != 2 && lanes != 4)
    return ffi::Error::InvalidArgument("attention kernels: lanes must be 1, 2 or 4");
  return ffi::Error::Success();
}

// probs f32[B, H, Q, K], v f32[B, K, H, D] -> context f32[B, Q, H, D].
ffi::Error AttentionContext(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> probs,
                            ffi::Buffer<ffi::F32> v, ffi::ResultBuffer<ffi::F32> context,
                            int64_t lanes) {
  const auto pd = probs.dimensions();
  const auto vd = v.dimensions();
  if (pd.size() != 4 || vd.size() != 4 || pd[0] != vd[0] || pd[1] != vd[2] || pd[3] != vd[1])
    return ffi::Error::InvalidArgument(
        "attention_context: probs must be [B, H, Q, K] and v [B, K, H, D]");
  if (auto error = CheckLanes(lanes); error.failure()) return error;
  const int64_t heads = pd[1], queries = pd[2], keys = pd[3], features = vd[3];
  const float* p = probs.typed_data();
  const float* vv = v.typed_data();
  float* out = context->typed_data();
  if (queries == 0 || features == 0) return ffi::Error::Success();
  flatjax::ParallelFor(pool, pd[0] * heads, 0, [&](int64_t pair, uint8_t*) {
    const int64_t b = pair / heads, h = pair % heads, stride = heads * features;
    Multiply(p + pair * queries * keys, keys, vv + b * keys * stride + h * features, stride,
             out + b * queries * stride + h * features, stride, queries, features, keys, lanes);
  });
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
