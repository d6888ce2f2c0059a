/* Host-only SIMD convolution for the tvm-host twin (x86-64: AVX-512 VNNI, else AVX2), never built for a device.
 *
 * The generated kernels.c calls divqat_conv_s8 from one exported wrapper per layer (model_kN_conv2d). The
 * native host build (device/host_twin.py) compiles kernels.c with those wrappers weak and links a generated
 * shim whose strong wrappers call dq_host_conv_s8 here instead. This file includes conv_s8.c itself, so the
 * im2col (divqat_conv_src), the weight layout and the requantisation (divqat_requant) are the device's own
 * code; only the int32 dot products are computed differently, and integer sums do not depend on their order,
 * so every output byte is the portable kernel's.
 *
 * AVX-512 VNNI: per 16-value chunk, one 64-byte load is a 4-channel group's weights (the device layout:
 * [c0 k0..15][c1 k0..15][c2 k0..15][c3 k0..15]); the pixel's 16 values broadcast to the four 128-bit lanes,
 * biased to unsigned (x + 128), and VPDPBUSD leaves each channel's partial sums in its lane's four int32
 * words. The bias is removed exactly with 128 * sum(w) per channel, computed the same way once per call.
 * AVX2: the same group, int8 -> int16 and VPMADDWD (exact: no product or pair sum saturates).
 * Four pixels share each weight load. Anything else falls back to the portable divqat_conv_s8.
 */
#include <stdlib.h>

#include "conv_s8.c"

#if defined(__x86_64__) && defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define DQ_HOST_SIMD "avx512-vnni"
#define DQ_HOST_VNNI 1
#include <immintrin.h>
#elif defined(__x86_64__) && defined(__AVX2__)
#define DQ_HOST_SIMD "avx2"
#define DQ_HOST_AVX2 1
#include <immintrin.h>
#else
#define DQ_HOST_SIMD "portable"
#endif

#define DQ_HOST_PIX 4 /* pixels per block: each weight load feeds this many */

/* Which conv path this build has ("avx512-vnni", "avx2" or "portable"): the twin reports it. */
const char *dq_host_simd(void) { return DQ_HOST_SIMD; }

#if defined(DQ_HOST_VNNI) || defined(DQ_HOST_AVX2)
/* Per-thread scratch: DQ_HOST_PIX K vectors of kp16 bytes (zero past KP) and cout int32 corrections. */
static _Thread_local int8_t *dq_host_buf;
static _Thread_local size_t dq_host_cap;

static int8_t *dq_host_scratch(size_t n) {
  if (n > dq_host_cap) {
    free(dq_host_buf);
    dq_host_buf = (int8_t *)aligned_alloc(64, (n + 63) & ~(size_t)63);
    dq_host_cap = dq_host_buf ? n : 0;
  }
  return dq_host_buf;
}

/* Pixel (oy, ox)'s K vector into dst (kp16 bytes): the device's own im2col, then zeros to the chunk's end. */
static void dq_host_column(int8_t *dst, const int8_t *x, const int32_t *d, int32_t oy, int32_t ox, int32_t kp16) {
  const int8_t *src = divqat_conv_src(x, d, oy, ox, dst);
  if (src != dst) memcpy(dst, src, (size_t)d[DQ_KP]);
  memset(dst + d[DQ_KP], 0, (size_t)(kp16 - d[DQ_KP]));
}
#endif

#if defined(DQ_HOST_VNNI)
/* The four channel sums of a group accumulator (lanes 4j..4j+3 belong to channel j). */
static inline __m128i dq_host_sum4(__m512i a) {
  a = _mm512_add_epi32(a, _mm512_shuffle_epi32(a, _MM_PERM_CDAB));
  a = _mm512_add_epi32(a, _mm512_shuffle_epi32(a, _MM_PERM_BADC));
  return _mm512_castsi512_si128(_mm512_maskz_compress_epi32(0x1111, a));
}

/* 128 * sum(w) of every channel (padded channels included): what the unsigned bias adds to each dot. */
static void dq_host_bias_corr(const int8_t *w, int32_t groups, int32_t nch, int32_t *corr) {
  const __m512i ones = _mm512_set1_epi8((char)0x80);
  for (int32_t g = 0; g < groups; ++g) {
    __m512i acc = _mm512_setzero_si512();
    const int8_t *wg = w + (size_t)g * nch * 64;
    for (int32_t ch = 0; ch < nch; ++ch) acc = _mm512_dpbusd_epi32(acc, ones, _mm512_loadu_si512(wg + ch * 64));
    _mm_storeu_si128((__m128i *)(void *)(corr + 4 * g), dq_host_sum4(acc));
  }
}

/* The dot products of np (<= 4) K vectors with one channel group: sums[p][j] for channel 4g + j. */
static inline void dq_host_group(const int8_t *const *cols, int32_t np, const int8_t *wg, int32_t nch,
                                 int32_t sums[DQ_HOST_PIX][4]) {
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (int32_t ch = 0; ch < nch; ++ch) {
    const __m512i wv = _mm512_loadu_si512(wg + ch * 64);
#define DQ_HOST_LANE(P, A)                                                                                        \
  if (np > P)                                                                                                     \
    A = _mm512_dpbusd_epi32(                                                                                      \
        A, _mm512_xor_si512(_mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)(const void *)(cols[P] + ch * 16))), \
                            flip),                                                                                \
        wv);
    DQ_HOST_LANE(0, a0)
    DQ_HOST_LANE(1, a1)
    DQ_HOST_LANE(2, a2)
    DQ_HOST_LANE(3, a3)
#undef DQ_HOST_LANE
  }
  _mm_storeu_si128((__m128i *)(void *)sums[0], dq_host_sum4(a0));
  _mm_storeu_si128((__m128i *)(void *)sums[1], dq_host_sum4(a1));
  _mm_storeu_si128((__m128i *)(void *)sums[2], dq_host_sum4(a2));
  _mm_storeu_si128((__m128i *)(void *)sums[3], dq_host_sum4(a3));
}
#elif defined(DQ_HOST_AVX2)
static inline int32_t dq_host_hsum8(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

/* AVX2 has no unsigned trick here: the dots are exact signed sums, nothing to correct. */
static void dq_host_bias_corr(const int8_t *w, int32_t groups, int32_t nch, int32_t *corr) {
  (void)w, (void)nch;
  memset(corr, 0, (size_t)groups * 4 * sizeof(int32_t));
}

static inline void dq_host_group(const int8_t *const *cols, int32_t np, const int8_t *wg, int32_t nch,
                                 int32_t sums[DQ_HOST_PIX][4]) {
  for (int32_t j = 0; j < 4; ++j) {
    __m256i a[DQ_HOST_PIX];
    for (int32_t p = 0; p < DQ_HOST_PIX; ++p) a[p] = _mm256_setzero_si256();
    for (int32_t ch = 0; ch < nch; ++ch) {
      const __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(wg + ch * 64 + j * 16)));
      for (int32_t p = 0; p < np; ++p) {
        const __m256i xv = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(const void *)(cols[p] + ch * 16)));
        a[p] = _mm256_add_epi32(a[p], _mm256_madd_epi16(xv, wv));
      }
    }
    for (int32_t p = 0; p < DQ_HOST_PIX; ++p) sums[p][j] = dq_host_hsum8(a[p]);
  }
}
#endif

/* divqat_conv_s8 with the same arguments and the same output bytes (see the top of this file). */
void dq_host_conv_s8(const int8_t *x, const int8_t *w, const int32_t *qp, const int32_t *d, int8_t *y,
                     int8_t *scratch) {
#if defined(DQ_HOST_VNNI) || defined(DQ_HOST_AVX2)
  const int32_t ow = d[DQ_OW], npix = d[DQ_OH] * ow, cout = d[DQ_COUT], kp16 = (d[DQ_KP] + 15) & ~15;
  const int32_t nch = kp16 / 16, groups = (cout + 3) / 4;
  const size_t colbytes = (size_t)DQ_HOST_PIX * (size_t)kp16;
  int8_t *buf = dq_host_scratch(colbytes + (size_t)groups * 16);
  if (buf == NULL) { /* no memory for the columns: the portable kernel */
    divqat_conv_s8(x, w, qp, d, y, scratch);
    return;
  }
  int32_t *corr = (int32_t *)(void *)(buf + colbytes);
  const int fast = (d[DQ_FLAGS] & DQ_FAST) != 0;
  dq_host_bias_corr(w, groups, nch, corr);
  int32_t oy = 0, ox = 0;
  for (int32_t p = 0; p < npix; p += DQ_HOST_PIX) {
    const int32_t np = npix - p < DQ_HOST_PIX ? npix - p : DQ_HOST_PIX;
    const int8_t *cols[DQ_HOST_PIX];
    for (int32_t s = 0; s < np; ++s) {
      dq_host_column(buf + s * kp16, x, d, oy, ox, kp16);
      cols[s] = buf + s * kp16;
      if (++ox == ow) ox = 0, ++oy;
    }
    for (int32_t g = 0; g < groups; ++g) {
      int32_t sums[DQ_HOST_PIX][4];
      dq_host_group(cols, np, w + (size_t)g * nch * 64, nch, sums);
      for (int32_t j = 0; j < 4 && 4 * g + j < cout; ++j) {
        const int32_t c = 4 * g + j;
        const int32_t *q = qp + c * DQ_QP_WORDS;
        for (int32_t s = 0; s < np; ++s) {
          const int32_t acc = q[0] + (sums[s][j] - corr[c]);
          y[(size_t)(p + s) * cout + c] = fast ? divqat_requant(acc, q, d, 1) : divqat_requant(acc, q, d, 0);
        }
      }
    }
  }
#else
  divqat_conv_s8(x, w, qp, d, y, scratch);
#endif
}
