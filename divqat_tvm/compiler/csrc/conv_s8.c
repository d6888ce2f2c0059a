/* divqat_conv_s8: int8 NHWC convolution (groups 1) as a GEMM over im2col'd K vectors.
 *
 * Weights: one row of KP int8 per output channel (OHWI order, K = kh*kw*cin, zero-padded to KP, a multiple
 * of 4), laid out offline. Per-channel constants: divqat_nn.h (bias with the input zero point folded in, so
 * the K vector is raw input values, padding reads as zp_in and no per-call correction remains).
 *
 * Paths (chosen when this C is compiled):
 *  - DSP (Cortex-M4/M7/M33): two output pixels at a time; their K vectors are widened to int16 once
 *    (SXTB16, word pairs (x0,x2),(x1,x3) matching SXTB16 of the weight words) and interleaved, then a
 *    2 channels x 2 pixels block: per 4 K values 4 column words, 2 weight words, 4 SXTB16, 8 SMLAD
 *    (each column word feeds both channels, each widened weight word both pixels), accumulators in
 *    registers, requantized and stored at the end of the block.
 *  - MVE (Cortex-M55): one pixel, 4 channels per pass, 16 K values per VMLADAVA with tail predication,
 *    the fast epilogue vectorised over the 4 channels (VQRDMULH is SaturatingRoundingDoublingHighMul).
 *  - plain C elsewhere (and on the host, where the tests run it).
 * Odd channel and pixel counts are handled by duplication: the last channel (pixel) of an odd count is
 * computed twice and stored twice to the same place, so the inner loops have no tails; K tails are the
 * zero-padded weights.
 *
 * Scratch (from the model's arena): 6*KP bytes (DSP: two int8 K vectors and their int16 columns).
 */
#include "divqat_nn.h"

static void divqat_fill(int8_t *dst, int8_t v, int32_t n) {
  if ((((uintptr_t)dst | (uint32_t)n) & 3u) == 0) {
    uint32_t w = (uint8_t)v * 0x01010101u;
    for (; n > 0; n -= 4, dst += 4) divqat_st32(dst, w);
    return;
  }
  for (; n > 0; --n) *dst++ = v;
}

static void divqat_copy(int8_t *dst, const int8_t *src, int32_t n) {
  if ((((uintptr_t)dst | (uintptr_t)src | (uint32_t)n) & 3u) == 0) {
    for (; n > 0; n -= 4, dst += 4, src += 4) divqat_st32(dst, divqat_ld32(src));
    return;
  }
  for (; n > 0; --n) *dst++ = *src++;
}

/* The K vector of output pixel (oy, ox): the kh*kw*cin input values its window reads, in OHWI order,
 * zp_in where the window is outside the input, 0 from K to KP. */
static void divqat_im2col_s8(int8_t *dst, const int8_t *x, const int32_t *d, int32_t oy, int32_t ox) {
  const int32_t ih = d[DQ_IH], iw = d[DQ_IW], cin = d[DQ_CIN], kh = d[DQ_KH], kw = d[DQ_KW];
  const int32_t dh = d[DQ_DH], dw = d[DQ_DW];
  const int32_t y0 = oy * d[DQ_SH] - d[DQ_PT], x0 = ox * d[DQ_SW] - d[DQ_PL];
  const int8_t zp = (int8_t)d[DQ_ZPIN];
  const int32_t run = kw * cin;
  int8_t *end = dst + d[DQ_KP];
  for (int32_t ky = 0; ky < kh; ++ky, dst += run) {
    const int32_t iy = y0 + ky * dh;
    if (iy < 0 || iy >= ih) {
      divqat_fill(dst, zp, run);
      continue;
    }
    const int8_t *row = x + iy * iw * cin;
    if (dw == 1 && x0 >= 0 && x0 + kw <= iw) {
      divqat_copy(dst, row + x0 * cin, run);
      continue;
    }
    for (int32_t kx = 0; kx < kw; ++kx) {
      const int32_t ix = x0 + kx * dw;
      if (ix < 0 || ix >= iw)
        divqat_fill(dst + kx * cin, zp, cin);
      else
        divqat_copy(dst + kx * cin, row + ix * cin, cin);
    }
  }
  divqat_fill(dst, 0, (int32_t)(end - dst));
}

/* Where pixel (oy, ox)'s K vector is: the input itself (DQ_DIRECT) or `buf` after im2col. */
DIVQAT_INLINE const int8_t *divqat_conv_src(const int8_t *x, const int32_t *d, int32_t oy, int32_t ox, int8_t *buf) {
  if (d[DQ_FLAGS] & DQ_DIRECT) return x + ((oy * d[DQ_SH]) * d[DQ_IW] + ox * d[DQ_SW]) * d[DQ_CIN];
  divqat_im2col_s8(buf, x, d, oy, ox);
  return buf;
}

#if defined(DIVQAT_DSP)
DIVQAT_INLINE uint32_t divqat_sxtb16(uint32_t v) { return __sxtb16(v); }

DIVQAT_INLINE uint32_t divqat_sxtb16_ror8(uint32_t v) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}

/* Column block of 4 pixels: per 4 K values 8 words, pixel s at words 2s, 2s+1 = int16 pairs (x0,x2), (x1,x3)
 * (what SXTB16 and SXTB16 ROR #8 make of a word, so they pair with the same split of the weight word). */
static void divqat_widen_run(uint32_t *dst, const int8_t *src, int32_t n) {
  for (; n > 0; n -= 4, src += 4, dst += 8) {
    const uint32_t v = divqat_ld32(src);
    dst[0] = divqat_sxtb16(v);
    dst[1] = divqat_sxtb16_ror8(v);
  }
}

static void divqat_widen_fill(uint32_t *dst, uint32_t pair, int32_t n) {
  for (; n > 0; n -= 4, dst += 8) dst[0] = dst[1] = pair;
}

/* im2col straight into slot `cols` of the column block (cin % 4 == 0: every run is whole words). */
static void divqat_im2col_w16(uint32_t *cols, const int8_t *x, const int32_t *d, int32_t oy, int32_t ox) {
  const int32_t ih = d[DQ_IH], iw = d[DQ_IW], cin = d[DQ_CIN], kh = d[DQ_KH], kw = d[DQ_KW];
  const int32_t dh = d[DQ_DH], dw = d[DQ_DW];
  const int32_t y0 = oy * d[DQ_SH] - d[DQ_PT], x0 = ox * d[DQ_SW] - d[DQ_PL];
  const uint32_t zp = ((uint32_t)d[DQ_ZPIN] & 0xFFFFu) * 0x10001u;
  const int32_t run = kw * cin, step = 2 * run; /* words of the block per kernel row */
  for (int32_t ky = 0; ky < kh; ++ky, cols += step) {
    const int32_t iy = y0 + ky * dh;
    if (iy < 0 || iy >= ih) {
      divqat_widen_fill(cols, zp, run);
      continue;
    }
    const int8_t *row = x + iy * iw * cin;
    if (dw == 1 && x0 >= 0 && x0 + kw <= iw) {
      divqat_widen_run(cols, row + x0 * cin, run);
      continue;
    }
    for (int32_t kx = 0; kx < kw; ++kx) {
      const int32_t ix = x0 + kx * dw;
      if (ix < 0 || ix >= iw)
        divqat_widen_fill(cols + 2 * kx * cin, zp, cin);
      else
        divqat_widen_run(cols + 2 * kx * cin, row + ix * cin, cin);
    }
  }
  divqat_widen_fill(cols, 0, d[DQ_KP] - d[DQ_K]);
}

/* Slot `cols` of the column block for pixel (oy, ox): from the input (DQ_DIRECT), by a direct widening
 * im2col (cin % 4 == 0) or through the int8 im2col in `stage`. */
static void divqat_columns(uint32_t *cols, const int8_t *x, const int32_t *d, int32_t oy, int32_t ox, int8_t *stage) {
  if (d[DQ_FLAGS] & DQ_DIRECT) {
    divqat_widen_run(cols, x + ((oy * d[DQ_SH]) * d[DQ_IW] + ox * d[DQ_SW]) * d[DQ_CIN], d[DQ_KP]);
  } else if ((d[DQ_CIN] & 3) == 0) {
    divqat_im2col_w16(cols, x, d, oy, ox);
  } else {
    divqat_im2col_s8(stage, x, d, oy, ox);
    divqat_widen_run(cols, stage, d[DQ_KP]);
  }
}

/* One weight word of 4 K values against the 4 pixels' columns (two LDMs): 13 instructions, 16 MACs. */
#define DIVQAT_MAC1X4_QUAD                         \
  "ldr     r4, [%[w]], #4\n\t"                     \
  "ldmia   %[col]!, {r8, r9, r10, r11}\n\t"        \
  "sxtb16  r5, r4\n\t"                             \
  "sxtb16  r4, r4, ror #8\n\t"                     \
  "smlad   %[a0], r8, r5, %[a0]\n\t"               \
  "smlad   %[a0], r9, r4, %[a0]\n\t"               \
  "smlad   %[a1], r10, r5, %[a1]\n\t"              \
  "smlad   %[a1], r11, r4, %[a1]\n\t"              \
  "ldmia   %[col]!, {r8, r9, r10, r11}\n\t"        \
  "smlad   %[a2], r8, r5, %[a2]\n\t"               \
  "smlad   %[a2], r9, r4, %[a2]\n\t"               \
  "smlad   %[a3], r10, r5, %[a3]\n\t"              \
  "smlad   %[a3], r11, r4, %[a3]\n\t"

/* 4 pixels x all channels, one channel at a time: the widened weight word feeds the 4 pixels, the columns
 * come two pixels per LDM. kp / 8 iterations of two quads (KP is a multiple of 8). */
DIVQAT_INLINE void divqat_gemm4_dsp(const uint32_t *cols, const int8_t *w, const int32_t *qp, const int32_t *d,
                                    int8_t *y0, int8_t *y1, int8_t *y2, int8_t *y3, const int fast) {
  const int32_t cout = d[DQ_COUT], n8 = d[DQ_KP] >> 3;
  for (int32_t c = 0; c < cout; ++c, qp += DQ_QP_WORDS) {
    int32_t a0 = qp[0], a1 = a0, a2 = a0, a3 = a0, n = n8;
    const uint32_t *col = cols;
    __asm__ volatile("1:\n\t" DIVQAT_MAC1X4_QUAD DIVQAT_MAC1X4_QUAD
                     "subs    %[n], %[n], #1\n\t"
                     "bne     1b\n\t"
                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [col] "+r"(col), [w] "+r"(w),
                       [n] "+r"(n)
                     :
                     : "r4", "r5", "r8", "r9", "r10", "r11", "cc", "memory");
    if (fast) {
      const int32_t m = qp[1], a = qp[2], b = qp[3];
      const int32_t v0 = divqat_ssat8(divqat_rq_fast_v(a0 * 2, m, a, b)), v1 = divqat_ssat8(divqat_rq_fast_v(a1 * 2, m, a, b));
      const int32_t v2 = divqat_ssat8(divqat_rq_fast_v(a2 * 2, m, a, b)), v3 = divqat_ssat8(divqat_rq_fast_v(a3 * 2, m, a, b));
      y0[c] = (int8_t)v0;
      y1[c] = (int8_t)v1;
      y2[c] = (int8_t)v2;
      y3[c] = (int8_t)v3;
    } else {
      y0[c] = divqat_requant(a0, qp, d, 0);
      y1[c] = divqat_requant(a1, qp, d, 0);
      y2[c] = divqat_requant(a2, qp, d, 0);
      y3[c] = divqat_requant(a3, qp, d, 0);
    }
  }
}

DIVQAT_INLINE void divqat_conv_body(const int8_t *x, const int8_t *w, const int32_t *qp, const int32_t *d, int8_t *y,
                                    int8_t *scratch, const int fast) {
  const int32_t ow = d[DQ_OW], npix = d[DQ_OH] * ow, cout = d[DQ_COUT], kp = d[DQ_KP];
  uint32_t *cols = (uint32_t *)(void *)(scratch + kp);
  int32_t oy = 0, ox = 0;
  for (int32_t p = 0; p < npix; p += 4) {
    int8_t *out[4];
    int32_t ly = oy, lx = ox;
    for (int32_t s = 0; s < 4; ++s) { /* a pixel past the end repeats the last one (same values, same place) */
      if (p + s < npix) {
        ly = oy, lx = ox;
        if (++ox == ow) ox = 0, ++oy;
        out[s] = y + (p + s) * cout;
      } else {
        out[s] = out[s - 1];
      }
      divqat_columns(cols + 2 * s, x, d, ly, lx, scratch);
    }
    divqat_gemm4_dsp(cols, w, qp, d, out[0], out[1], out[2], out[3], fast);
  }
}

#elif defined(DIVQAT_MVE)
/* One pixel x all channels, four channels per pass (the last pass predicated on the store). */
DIVQAT_INLINE void divqat_gemm1_mve(const int8_t *col, const int8_t *w, const int32_t *qp, const int32_t *d,
                                    int8_t *y, const int fast) {
  const int32_t cout = d[DQ_COUT], kp = d[DQ_KP];
  for (int32_t c = 0; c < cout; c += 4) {
    const int32_t c1 = c + 1 < cout ? c + 1 : c, c2 = c + 2 < cout ? c + 2 : c, c3 = c + 3 < cout ? c + 3 : c;
    const int8_t *w0 = w + c * kp, *w1 = w + c1 * kp, *w2 = w + c2 * kp, *w3 = w + c3 * kp;
    int32_t a0 = qp[c * DQ_QP_WORDS], a1 = qp[c1 * DQ_QP_WORDS], a2 = qp[c2 * DQ_QP_WORDS], a3 = qp[c3 * DQ_QP_WORDS];
    const int8_t *xp = col;
    for (int32_t n = kp >> 4; n > 0; --n) { /* whole vectors unpredicated, the 8-value tail (KP % 16) below */
      const int8x16_t xv = vld1q_s8(xp);
      xp += 16;
      a0 = vmladavaq_s8(a0, xv, vld1q_s8(w0));
      w0 += 16;
      a1 = vmladavaq_s8(a1, xv, vld1q_s8(w1));
      w1 += 16;
      a2 = vmladavaq_s8(a2, xv, vld1q_s8(w2));
      w2 += 16;
      a3 = vmladavaq_s8(a3, xv, vld1q_s8(w3));
      w3 += 16;
    }
    if (kp & 8) {
      const mve_pred16_t p = vctp8q(8);
      const int8x16_t xv = vldrbq_z_s8(xp, p);
      a0 = vmladavaq_s8(a0, xv, vldrbq_z_s8(w0, p));
      a1 = vmladavaq_s8(a1, xv, vldrbq_z_s8(w1, p));
      a2 = vmladavaq_s8(a2, xv, vldrbq_z_s8(w2, p));
      a3 = vmladavaq_s8(a3, xv, vldrbq_z_s8(w3, p));
    }
    if (fast) { /* qp is padded offline to a multiple of 4 channels */
      const int32x4x4_t q = vld4q_s32(qp + c * DQ_QP_WORDS);
      int32x4_t v = vdupq_n_s32(a0);
      v = vsetq_lane_s32(a1, v, 1);
      v = vsetq_lane_s32(a2, v, 2);
      v = vsetq_lane_s32(a3, v, 3);
      v = vqrdmulhq_s32(v, q.val[1]);
      v = vaddq_s32(v, vshrq_n_s32(v, 31));
      v = vshlq_s32(vaddq_s32(v, q.val[3]), vnegq_s32(q.val[2]));
      v = vminq_s32(vmaxq_s32(v, vdupq_n_s32(-128)), vdupq_n_s32(127));
      vstrbq_p_s32(y + c, v, vctp32q((uint32_t)(cout - c)));
    } else {
      y[c] = divqat_requant(a0, qp + c * DQ_QP_WORDS, d, 0);
      y[c1] = divqat_requant(a1, qp + c1 * DQ_QP_WORDS, d, 0);
      y[c2] = divqat_requant(a2, qp + c2 * DQ_QP_WORDS, d, 0);
      y[c3] = divqat_requant(a3, qp + c3 * DQ_QP_WORDS, d, 0);
    }
  }
}

DIVQAT_INLINE void divqat_conv_body(const int8_t *x, const int8_t *w, const int32_t *qp, const int32_t *d, int8_t *y,
                                    int8_t *scratch, const int fast) {
  const int32_t ow = d[DQ_OW], npix = d[DQ_OH] * ow, cout = d[DQ_COUT];
  int32_t oy = 0, ox = 0;
  for (int32_t p = 0; p < npix; ++p) {
    divqat_gemm1_mve(divqat_conv_src(x, d, oy, ox, scratch), w, qp, d, y + p * cout, fast);
    if (++ox == ow) ox = 0, ++oy;
  }
}

#else
DIVQAT_INLINE void divqat_conv_body(const int8_t *x, const int8_t *w, const int32_t *qp, const int32_t *d, int8_t *y,
                                    int8_t *scratch, const int fast) {
  const int32_t ow = d[DQ_OW], npix = d[DQ_OH] * ow, cout = d[DQ_COUT], kp = d[DQ_KP];
  int32_t oy = 0, ox = 0;
  for (int32_t p = 0; p < npix; ++p, y += cout) {
    const int8_t *col = divqat_conv_src(x, d, oy, ox, scratch);
    if (++ox == ow) ox = 0, ++oy;
    const int8_t *wr = w;
    for (int32_t c = 0; c < cout; ++c, wr += kp) {
      const int32_t *q = qp + c * DQ_QP_WORDS;
      int32_t acc = q[0];
      for (int32_t k = 0; k < kp; ++k) acc += (int32_t)col[k] * wr[k];
      y[c] = divqat_requant(acc, q, d, fast);
    }
  }
}
#endif

static DIVQAT_NOINLINE void divqat_conv_s8(const int8_t *x, const int8_t *w, const int32_t *qp, const int32_t *d,
                                           int8_t *y, int8_t *scratch) {
  if (d[DQ_FLAGS] & DQ_FAST)
    divqat_conv_body(x, w, qp, d, y, scratch, 1);
  else
    divqat_conv_body(x, w, qp, d, y, scratch, 0);
}
