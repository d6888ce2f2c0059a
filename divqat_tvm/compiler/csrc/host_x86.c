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
 *
 * The scratch-free conv (conv_rows_s8.c: divqat_conv_rows_s8, and fused with its residual ADD) runs here as the
 * same conv through this im2col path: its int16 weights are put back into conv_s8.c's chunked int8 layout (once
 * per layer and thread), its bias' is the same (zero point folded for every tap) and the im2col pads with zp_in,
 * so the accumulators and the fast epilogue are the device's; the fused ADD is then applied per element with
 * conv_rows_s8.c's own divqat_add_fused, reading the residual's element before writing it.
 */
#include <stdlib.h>

#include "conv_rows_s8.c"
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
/* Per-thread scratch: DQ_HOST_PIX K vectors of kp16 bytes (zero past KP) and 16 int32 per channel group. */
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

/* Pixel (oy, ox)'s K vector into dst (kp16 bytes), as divqat_im2col_s8 makes it (`fill` outside the input:
 * zp_in, or zp_in ^ 0x80 when x is the VNNI build's flipped copy), whole rows by memcpy; the bytes from K on
 * meet zero weights, so their value does not matter (zeroed). */
static void dq_host_column(int8_t *dst, const int8_t *x, const int32_t *d, int32_t oy, int32_t ox, int32_t kp16,
                           int fill) {
    const int32_t ih = d[DQ_IH], iw = d[DQ_IW], cin = d[DQ_CIN], kh = d[DQ_KH], kw = d[DQ_KW];
    const int32_t dh = d[DQ_DH], dw = d[DQ_DW], run = kw * cin;
    const int32_t y0 = oy * d[DQ_SH] - d[DQ_PT], x0 = ox * d[DQ_SW] - d[DQ_PL];
    int8_t *p = dst;
    for (int32_t ky = 0; ky < kh; ++ky, p += run) {
        const int32_t iy = y0 + ky * dh;
        if (iy < 0 || iy >= ih) {
            memset(p, fill, (size_t)run);
            continue;
        }
        const int8_t *row = x + (size_t)iy * iw * cin;
        if (dw == 1 && x0 >= 0 && x0 + kw <= iw) {
            memcpy(p, row + (size_t)x0 * cin, (size_t)run);
            continue;
        }
        for (int32_t kx = 0; kx < kw; ++kx) {
            const int32_t ix = x0 + kx * dw;
            if (ix < 0 || ix >= iw)
                memset(p + kx * cin, fill, (size_t)cin);
            else
                memcpy(p + kx * cin, row + (size_t)ix * cin, (size_t)cin);
        }
    }
    memset(p, 0, (size_t)(kp16 - (p - dst)));
}
#endif

#if defined(DQ_HOST_VNNI)
/* Lane 4j + s of the result: channel j's dot with pixel s (a[s] holds pixel s's 4 channels x 4 partials). */
static inline __m512i dq_host_reduce(__m512i a0, __m512i a1, __m512i a2, __m512i a3) {
#define DQ_HOST_SUM(A)                                               \
    A = _mm512_add_epi32(A, _mm512_shuffle_epi32(A, _MM_PERM_CDAB)), \
    A = _mm512_add_epi32(A, _mm512_shuffle_epi32(A, _MM_PERM_BADC))
    DQ_HOST_SUM(a0);
    DQ_HOST_SUM(a1);
    DQ_HOST_SUM(a2);
    DQ_HOST_SUM(a3);
#undef DQ_HOST_SUM
    a0 = _mm512_mask_mov_epi32(a0, 0x2222, a1);
    a0 = _mm512_mask_mov_epi32(a0, 0x4444, a2);
    return _mm512_mask_mov_epi32(a0, 0x8888, a3);
}

/* 128 * sum(w) of every channel (padded channels included): what the unsigned bias adds to each dot. */
static void dq_host_bias_corr(const int8_t *w, int32_t groups, int32_t nch, int32_t *corr) {
    const __m512i ones = _mm512_set1_epi8((char)0x80);
    for (int32_t g = 0; g < groups; ++g) {
        __m512i acc = _mm512_setzero_si512();
        const int8_t *wg = w + (size_t)g * nch * 64;
        for (int32_t ch = 0; ch < nch; ++ch) acc = _mm512_dpbusd_epi32(acc, ones, _mm512_loadu_si512(wg + ch * 64));
        _mm512_storeu_si512(corr + 16 * g, dq_host_reduce(acc, acc, acc, acc));
    }
}

/* acc += dpbusd(u, w) in place (the intrinsic's form makes gcc copy the accumulators every step). */
#define DQ_HOST_DPBUSD(ACC, U, W) __asm__("vpdpbusd %1, %2, %0" : "+v"(ACC) : "v"(W), "v"(U))

/* Dots of 4 flipped K vectors with one channel group, lane 4j + s as dq_host_reduce, minus corr. */
static inline __m512i dq_host_group(const int8_t *const *cols, const int8_t *wg, int32_t nch, const int32_t *corr) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    const int8_t *c0 = cols[0], *c1 = cols[1], *c2 = cols[2], *c3 = cols[3];
    for (int32_t ch = 0; ch < nch; ++ch, wg += 64) {
        const __m512i wv = _mm512_loadu_si512(wg);
        DQ_HOST_DPBUSD(a0, _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)(const void *)(c0 + ch * 16))), wv);
        DQ_HOST_DPBUSD(a1, _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)(const void *)(c1 + ch * 16))), wv);
        DQ_HOST_DPBUSD(a2, _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)(const void *)(c2 + ch * 16))), wv);
        DQ_HOST_DPBUSD(a3, _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)(const void *)(c3 + ch * 16))), wv);
    }
    return _mm512_sub_epi32(dq_host_reduce(a0, a1, a2, a3), _mm512_loadu_si512(corr));
}

/* The fast epilogue (divqat_rq_fast + ssat8) of 16 accumulators, lane 4j + s; q: the group's 4 x [bias, M, a, b].
 * (2acc * M + 2^31) >> 32 per 64-bit product, + b, + (2acc >> 31), >> a, saturated to int8: divqat_rq_fast_v. */
static inline __m128i dq_host_rq_fast(__m512i acc, const int32_t *q) {
    const __m512i qv = _mm512_loadu_si512(q);
    const __m512i m = _mm512_shuffle_epi32(qv, _MM_PERM_BBBB), sh = _mm512_shuffle_epi32(qv, _MM_PERM_CCCC);
    const __m512i b = _mm512_shuffle_epi32(qv, _MM_PERM_DDDD), rnd = _mm512_set1_epi64(0x80000000LL);
    acc = _mm512_add_epi32(acc, _mm512_shuffle_epi32(qv, _MM_PERM_AAAA));
    const __m512i x2 = _mm512_add_epi32(acc, acc);
    const __m512i pe = _mm512_add_epi64(_mm512_mul_epi32(x2, m), rnd);
    const __m512i po = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(x2, 32), _mm512_srli_epi64(m, 32)), rnd);
    __m512i v = _mm512_mask_mov_epi32(_mm512_srli_epi64(pe, 32), 0xAAAA, po);
    v = _mm512_add_epi32(_mm512_add_epi32(v, b), _mm512_srai_epi32(x2, 31));
    return _mm512_cvtsepi32_epi8(_mm512_srav_epi32(v, sh));
}
#elif defined(DQ_HOST_AVX2)
static inline int32_t dq_host_hsum8(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* The dots of 4 K vectors with one channel group: sums[4j + s] (exact signed int16 products, VPMADDWD). */
static inline void dq_host_group_avx2(const int8_t *const *cols, const int8_t *wg, int32_t nch, int32_t sums[16]) {
    for (int32_t j = 0; j < 4; ++j) {
        __m256i a[DQ_HOST_PIX];
        for (int32_t p = 0; p < DQ_HOST_PIX; ++p) a[p] = _mm256_setzero_si256();
        for (int32_t ch = 0; ch < nch; ++ch) {
            const __m256i wv =
                _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(wg + ch * 64 + j * 16)));
            for (int32_t p = 0; p < DQ_HOST_PIX; ++p) {
                const __m256i xv =
                    _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(const void *)(cols[p] + ch * 16)));
                a[p] = _mm256_add_epi32(a[p], _mm256_madd_epi16(xv, wv));
            }
        }
        for (int32_t p = 0; p < DQ_HOST_PIX; ++p) sums[4 * j + p] = dq_host_hsum8(a[p]);
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
    const size_t xbytes = (size_t)d[DQ_IH] * (size_t)d[DQ_IW] * (size_t)d[DQ_CIN];
    int8_t *buf = dq_host_scratch(colbytes + (size_t)groups * 64 + xbytes);
    if (buf == NULL) { /* no memory for the columns: the portable kernel */
        divqat_conv_s8(x, w, qp, d, y, scratch);
        return;
    }
    const int fast = (d[DQ_FLAGS] & DQ_FAST) != 0;
#if defined(DQ_HOST_VNNI)
    int32_t *corr = (int32_t *)(void *)(buf + colbytes);
    dq_host_bias_corr(w, groups, nch, corr);
    /* lane 4j + s -> byte 4s + j: each pixel's 4 channels contiguous */
    const __m128i to_pixels = _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    /* the input flipped to unsigned once (x ^ 0x80 = x + 128): the columns are then plain copies of it */
    int8_t *xf = buf + colbytes + (size_t)groups * 64;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (size_t k = 0; k < xbytes; k += 64) {
        const __mmask64 m = xbytes - k >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (xbytes - k)) - 1);
        _mm512_mask_storeu_epi8(xf + k, m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, x + k), flip));
    }
    const int8_t *xs = xf;
    const int fill = (int8_t)(d[DQ_ZPIN] ^ 0x80);
#else
    const int8_t *xs = x;
    const int fill = (int8_t)d[DQ_ZPIN];
#endif
    int32_t oy = 0, ox = 0;
    for (int32_t p = 0; p < npix; p += DQ_HOST_PIX) {
        const int32_t np = npix - p < DQ_HOST_PIX ? npix - p : DQ_HOST_PIX;
        const int8_t *cols[DQ_HOST_PIX];
        for (int32_t s = 0; s < DQ_HOST_PIX; ++s) { /* a short last block repeats its last pixel (not stored) */
            if (s < np) {
                dq_host_column(buf + s * kp16, xs, d, oy, ox, kp16, fill);
                if (++ox == ow) ox = 0, ++oy;
            }
            cols[s] = buf + (s < np ? s : np - 1) * kp16;
        }
        for (int32_t g = 0; g < groups; ++g) {
            const int8_t *wg = w + (size_t)g * nch * 64;
            int32_t sums[16];
#if defined(DQ_HOST_VNNI)
            const __m512i dots = dq_host_group(cols, wg, nch, corr + 16 * g);
            if (fast && 4 * g + 4 <= cout) {
                const __m128i v = _mm_shuffle_epi8(dq_host_rq_fast(dots, qp + 16 * g), to_pixels);
                int32_t b4[4];
                _mm_storeu_si128((__m128i *)(void *)b4, v);
                for (int32_t s = 0; s < np; ++s) memcpy(y + (size_t)(p + s) * cout + 4 * g, &b4[s], 4);
                continue;
            }
            _mm512_storeu_si512(sums, dots);
#else
            dq_host_group_avx2(cols, wg, nch, sums);
#endif
            for (int32_t j = 0; j < 4 && 4 * g + j < cout; ++j) {
                const int32_t *q = qp + (4 * g + j) * DQ_QP_WORDS;
                for (int32_t s = 0; s < np; ++s) {
                    const int32_t acc = q[0] + sums[4 * j + s];
                    y[(size_t)(p + s) * cout + 4 * g + j] =
                        fast ? divqat_requant(acc, q, d, 1) : divqat_requant(acc, q, d, 0);
                }
            }
        }
    }
#else
    divqat_conv_s8(x, w, qp, d, y, scratch);
#endif
}

/* The int8 chunked layout of a scratch-free conv's int16 weights (conv_rows_s8.c: per 4-channel group, per 4 K
 * values, per channel (w0, w2, w1, w3)), converted once per layer and thread (keyed by the weights' address). */
static _Thread_local const int16_t *dq_rows_key;
static _Thread_local int8_t *dq_rows_w8;

static const int8_t *dq_host_rows_weights(const int16_t *w, const int32_t *d) {
    static const int32_t k_of[4] = {0, 2, 1, 3};
    const int32_t k = d[DQ_K], groups = (d[DQ_COUT] + 3) / 4; /* K % 16 == 0: no padding to 16 */
    if (dq_rows_key == w && dq_rows_w8 != NULL) return dq_rows_w8;
    free(dq_rows_w8);
    dq_rows_w8 = (int8_t *)malloc((size_t)groups * 4 * (size_t)k);
    dq_rows_key = dq_rows_w8 ? w : NULL;
    if (dq_rows_w8 == NULL) return NULL;
    for (int32_t g = 0; g < groups; ++g)
        for (int32_t q = 0; q < k / 4; ++q)
            for (int32_t c = 0; c < 4; ++c)
                for (int32_t j = 0; j < 4; ++j) {
                    const int32_t kk = 4 * q + k_of[j];
                    dq_rows_w8[(size_t)g * 4 * k + (kk >> 4) * 64 + c * 16 + (kk & 15)] =
                        (int8_t)w[(((size_t)g * (k / 4) + q) * 4 + c) * 4 + j];
                }
    return dq_rows_w8;
}

/* A buffer of n bytes per thread (the portable kernel's scratch, the fused conv's int8 values). */
static _Thread_local int8_t *dq_rows_buf;
static _Thread_local size_t dq_rows_cap;

static int8_t *dq_host_rows_buffer(size_t n) {
    if (n > dq_rows_cap) {
        free(dq_rows_buf);
        dq_rows_buf = (int8_t *)malloc(n);
        dq_rows_cap = dq_rows_buf ? n : 0;
    }
    return dq_rows_buf;
}

/* divqat_conv_rows_s8 with the same arguments and the same output bytes. */
void dq_host_conv_rows_s8(const int8_t *x, const int16_t *w, const int32_t *qp, const int32_t *d, const int32_t *corr,
                          int8_t *y) {
    const int8_t *w8 = dq_host_rows_weights(w, d);
    int8_t *scratch = dq_host_rows_buffer(9 * (size_t)d[DQ_KP]);
    if (w8 == NULL || scratch == NULL) {
        divqat_conv_rows_s8(x, w, qp, d, corr, y);
        return;
    }
    dq_host_conv_s8(x, w8, qp, d, y, scratch);
}

/* divqat_conv_rows_add_s8 with the same arguments and the same output bytes (y may be the residual). */
void dq_host_conv_rows_add_s8(const int8_t *x, const int8_t *res, const int16_t *w, const int32_t *qp, const int32_t *d,
                              const int32_t *corr, const int32_t *df, int8_t *y) {
    const size_t n = (size_t)d[DQ_OH] * (size_t)d[DQ_OW] * (size_t)d[DQ_COUT], kp9 = 9 * (size_t)d[DQ_KP];
    const int8_t *w8 = dq_host_rows_weights(w, d);
    int8_t *buf = dq_host_rows_buffer(n + kp9);
    if (w8 == NULL || buf == NULL) {
        divqat_conv_rows_add_s8(x, res, w, qp, d, corr, df, y);
        return;
    }
    dq_host_conv_s8(x, w8, qp, d, buf, buf + n);
    const int32_t mo = df[DF_MO], ao = df[DF_AO], bo = df[DF_BO], lo = df[DF_LO], hi = df[DF_HI];
    for (size_t i = 0; i < n; ++i) y[i] = divqat_add_fused(buf[i], res[i], df, mo, ao, bo, lo, hi);
}
