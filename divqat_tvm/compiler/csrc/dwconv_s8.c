/* divqat_dwconv_s8: int8 NHWC depthwise convolution (depth multiplier 1, C % 4 == 0), channels-last SIMD.
 *
 * The input rows a window needs are widened once into a ring of int16 rows in the scratch (x - zp_in, so
 * padding is a real 0: zero columns left and right, a zero row above and below), kh*dh rows deep: each input
 * row is widened once however many output rows read it. A ring row is channel-group-major: each group of 4
 * channels has its padded columns side by side, two words per column, (x0, x2) and (x1, x3) (SXTAB16 of the
 * int8 word and of its ROR #8), so the taps of a kernel row are 8 bytes apart. Weights are laid out offline
 * the same way, per 4-channel group then per tap, as int16 (doubled when the fast epilogue is used, so the
 * accumulator arrives doubled: divqat_rq_fast_v). Per tap and 4 channels: two 64-bit loads and four
 * 16x16 multiply-accumulates (SMLABB/SMLATT on DSP cores), every tap valid, no border case in the loop.
 * Kernels 3 wide (dilation 1, stride 1 or 2) run two output pixels per pass (an asm row of 39 instructions
 * for 24 MACs: each weight load serves both pixels); other shapes one pixel at a time.
 *
 * The same C runs on every core; the DSP intrinsics have plain-C twins (divqat_nn.h), so the host build
 * (where the tests run) executes the same loops, buffers and epilogue as the Cortex-M4/M7/M55.
 *
 * Scratch: (R + 1) rows of WC * C * 2 bytes, R = (kh - 1) * dh + 1, WC = the padded row's width.
 * Per-channel constants: [bias', M, a, b] as for divqat_conv_s8 (bias' doubled when DQ_FAST).
 */
#include "divqat_nn.h"

#define DIVQAT_DW_MAX_KH 8
#define DIVQAT_DW_MAX_ROWS 16

DIVQAT_INLINE uint32_t divqat_sxtab16_ror(uint32_t off, uint32_t v, const int ror8) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
  uint32_t r;
  if (ror8)
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(off), "r"(v));
  else
    __asm__("sxtab16 %0, %1, %2" : "=r"(r) : "r"(off), "r"(v));
  return r;
#else
  const uint32_t b0 = (uint32_t)(int32_t)(int8_t)(v >> (ror8 ? 8 : 0));
  const uint32_t b2 = (uint32_t)(int32_t)(int8_t)(v >> (ror8 ? 24 : 16));
  return ((off + b0) & 0xFFFFu) | (((off >> 16) + b2) << 16);
#endif
}

DIVQAT_INLINE int32_t divqat_smlabb(uint32_t x, uint32_t y, int32_t acc) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
  return __smlabb((int32_t)x, (int32_t)y, acc);
#else
  return acc + (int32_t)(int16_t)x * (int32_t)(int16_t)y;
#endif
}

DIVQAT_INLINE int32_t divqat_smlatt(uint32_t x, uint32_t y, int32_t acc) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
  return __smlatt((int32_t)x, (int32_t)y, acc);
#else
  return acc + (int32_t)(int16_t)(x >> 16) * (int32_t)(int16_t)(y >> 16);
#endif
}

/* Input row `src` (iw columns of C int8) widened into ring row `dst`, whose layout is channel-group-major:
 * group g (4 channels) owns wc columns of two words at dst + g * gstride; the input starts at column pl. */
static void divqat_dw_widen_row(uint32_t *dst, const int8_t *src, int32_t iw, int32_t c, int32_t gstride, uint32_t off) {
  for (int32_t ix = 0; ix < iw; ++ix, dst += 2) {
    uint32_t *g = dst;
    for (int32_t n = c; n > 0; n -= 4, src += 4, g += gstride) {
      const uint32_t v = divqat_ld32(src);
      g[0] = divqat_sxtab16_ror(off, v, 0);
      g[1] = divqat_sxtab16_ror(off, v, 1);
    }
  }
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__OPTIMIZE__)
/* One kernel row of 3 taps for two pixels, A at the window's first column and B `sw` columns on, 4 channels:
 * per tap one LDRD of the weights (for both pixels), the two pixels' input words one LDR each, 8
 * SMLABB/SMLATT: 39 instructions for 24 MACs, 13 registers (10 operands + 3 scratch), so any optimisation
 * level can allocate it. Tap t of A is at byte 8t of the row, of B at 8(t + sw). */
#define DIVQAT_DW_TAP(OA, OAH, OB, OBH)              \
  "ldrd    r8, r9, [%[wt]], #8\n\t"                  \
  "ldr     r10, [%[xr], #" OA "]\n\t"                \
  "smlabb  %[a0], r10, r8, %[a0]\n\t"                \
  "smlatt  %[a2], r10, r8, %[a2]\n\t"                \
  "ldr     r10, [%[xr], #" OAH "]\n\t"               \
  "smlabb  %[a1], r10, r9, %[a1]\n\t"                \
  "smlatt  %[a3], r10, r9, %[a3]\n\t"                \
  "ldr     r10, [%[xr], %[" OB "]]\n\t"              \
  "smlabb  %[b0], r10, r8, %[b0]\n\t"                \
  "smlatt  %[b2], r10, r8, %[b2]\n\t"                \
  "ldr     r10, [%[xr], %[" OBH "]]\n\t"             \
  "smlabb  %[b1], r10, r9, %[b1]\n\t"                \
  "smlatt  %[b3], r10, r9, %[b3]\n\t"

/* The whole 3x3 window: row 0 from xr, rows 1 and 2 from the stack ("m" operands), 119 instructions for 72 MACs. */
#define DIVQAT_DW_WIN33(SW)                                                                                       \
  __asm__ volatile(DIVQAT_DW_TAP("0", "4", "p0", "p0h") DIVQAT_DW_TAP("8", "12", "p1", "p1h")                    \
                   DIVQAT_DW_TAP("16", "20", "p2", "p2h")                                                        \
                   "ldr     %[xr], %[x1]\n\t"                                                                   \
                   DIVQAT_DW_TAP("0", "4", "p0", "p0h") DIVQAT_DW_TAP("8", "12", "p1", "p1h")                    \
                   DIVQAT_DW_TAP("16", "20", "p2", "p2h")                                                        \
                   "ldr     %[xr], %[x2]\n\t"                                                                   \
                   DIVQAT_DW_TAP("0", "4", "p0", "p0h") DIVQAT_DW_TAP("8", "12", "p1", "p1h")                    \
                   DIVQAT_DW_TAP("16", "20", "p2", "p2h")                                                        \
                   : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [b0] "+r"(b0), [b1] "+r"(b1),   \
                     [b2] "+r"(b2), [b3] "+r"(b3), [wt] "+r"(wt_r), [xr] "+r"(xr)                              \
                   : [x1] "m"(x1), [x2] "m"(x2), [p0] "i"(8 * (SW)), [p0h] "i"(8 * (SW) + 4),                    \
                     [p1] "i"(8 + 8 * (SW)), [p1h] "i"(12 + 8 * (SW)), [p2] "i"(16 + 8 * (SW)),                  \
                     [p2h] "i"(20 + 8 * (SW))                                                                    \
                   : "r8", "r9", "r10", "memory")

/* All channel groups of one pixel pair (A at word offset xo of the ring rows, B `sw` columns on)
 * of a 3x3 kernel with dilation 1, fast epilogue. Out of line: the asm needs 13 registers, pinned (none is r7,
 * the Thumb frame pointer) so allocation cannot fail at any optimisation level. */
DIVQAT_INLINE void divqat_dw_pair33(const uint32_t *const *rowp, int32_t xo, const int16_t *wt, const int32_t *q,
                                    int32_t c, int32_t gstride, int8_t *ya, int8_t *yb, const int sw) {
  const uint32_t *x0 = rowp[0] + xo, *x1 = rowp[1] + xo, *x2 = rowp[2] + xo;
  for (int32_t g = 0; g < c; g += 4, q += 4 * DQ_QP_WORDS, x0 += gstride, x1 += gstride, x2 += gstride) {
    register int32_t a0 __asm__("r0") = q[0];
    register int32_t a1 __asm__("r1") = q[DQ_QP_WORDS];
    register int32_t a2 __asm__("r2") = q[2 * DQ_QP_WORDS];
    register int32_t a3 __asm__("r3") = q[3 * DQ_QP_WORDS];
    register int32_t b0 __asm__("r4") = a0;
    register int32_t b1 __asm__("r5") = a1;
    register int32_t b2 __asm__("r6") = a2;
    register int32_t b3 __asm__("r12") = a3;
    register const int16_t *wt_r __asm__("lr") = wt;
    register const uint32_t *xr __asm__("r11") = x0;
    if (sw == 1) {
      DIVQAT_DW_WIN33(1);
    } else {
      DIVQAT_DW_WIN33(2);
    }
    wt = wt_r;
    int32_t m = q[1], a = q[2], b = q[3];
    ya[g] = (int8_t)divqat_ssat8(divqat_rq_fast_v(a0, m, a, b));
    yb[g] = (int8_t)divqat_ssat8(divqat_rq_fast_v(b0, m, a, b));
    m = q[DQ_QP_WORDS + 1], a = q[DQ_QP_WORDS + 2], b = q[DQ_QP_WORDS + 3];
    ya[g + 1] = (int8_t)divqat_ssat8(divqat_rq_fast_v(a1, m, a, b));
    yb[g + 1] = (int8_t)divqat_ssat8(divqat_rq_fast_v(b1, m, a, b));
    m = q[2 * DQ_QP_WORDS + 1], a = q[2 * DQ_QP_WORDS + 2], b = q[2 * DQ_QP_WORDS + 3];
    ya[g + 2] = (int8_t)divqat_ssat8(divqat_rq_fast_v(a2, m, a, b));
    yb[g + 2] = (int8_t)divqat_ssat8(divqat_rq_fast_v(b2, m, a, b));
    m = q[3 * DQ_QP_WORDS + 1], a = q[3 * DQ_QP_WORDS + 2], b = q[3 * DQ_QP_WORDS + 3];
    ya[g + 3] = (int8_t)divqat_ssat8(divqat_rq_fast_v(a3, m, a, b));
    yb[g + 3] = (int8_t)divqat_ssat8(divqat_rq_fast_v(b3, m, a, b));
  }
}

#define DIVQAT_DW_PAIR33(NAME, SW)                                                                                \
  static DIVQAT_NOINLINE void NAME(const uint32_t *const *rowp, int32_t xo, const int16_t *wt, const int32_t *q,    \
                                   int32_t c, int32_t gstride, int8_t *ya, int8_t *yb) {                          \
    divqat_dw_pair33(rowp, xo, wt, q, c, gstride, ya, yb, SW);                                                    \
  }
DIVQAT_DW_PAIR33(divqat_dw_pair33_s1, 1)
DIVQAT_DW_PAIR33(divqat_dw_pair33_s2, 2)

/* One pixel, 4 channels, one tap: LDRD weights, LDRD input, 4 SMLABB/SMLATT. */
#define DIVQAT_DW_TAP1(OA)                          \
  "ldrd    r8, r9, [%[wt]], #8\n\t"                \
  "ldrd    r10, r11, [%[xr], #" OA "]\n\t"         \
  "smlabb  %[a0], r10, r8, %[a0]\n\t"              \
  "smlatt  %[a2], r10, r8, %[a2]\n\t"              \
  "smlabb  %[a1], r11, r9, %[a1]\n\t"              \
  "smlatt  %[a3], r11, r9, %[a3]\n\t"

/* All channel groups of a single pixel (an odd row's last one) of a 3x3 kernel: 56 instructions per 36 MACs,
 * 10 registers (no pinning needed). */
static DIVQAT_NOINLINE void divqat_dw_one33(const uint32_t *const *rowp, int32_t xo, const int16_t *wt, const int32_t *q,
                                            int32_t c, int32_t gstride, int8_t *y) {
  const uint32_t *x0 = rowp[0] + xo, *x1 = rowp[1] + xo, *x2 = rowp[2] + xo;
  for (int32_t g = 0; g < c; g += 4, q += 4 * DQ_QP_WORDS, x0 += gstride, x1 += gstride, x2 += gstride) {
    int32_t a0 = q[0], a1 = q[DQ_QP_WORDS], a2 = q[2 * DQ_QP_WORDS], a3 = q[3 * DQ_QP_WORDS];
    const uint32_t *xr = x0;
    __asm__ volatile(DIVQAT_DW_TAP1("0") DIVQAT_DW_TAP1("8") DIVQAT_DW_TAP1("16")
                     "ldr     %[xr], %[x1]\n\t"
                     DIVQAT_DW_TAP1("0") DIVQAT_DW_TAP1("8") DIVQAT_DW_TAP1("16")
                     "ldr     %[xr], %[x2]\n\t"
                     DIVQAT_DW_TAP1("0") DIVQAT_DW_TAP1("8") DIVQAT_DW_TAP1("16")
                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [wt] "+r"(wt), [xr] "+r"(xr)
                     : [x1] "m"(x1), [x2] "m"(x2)
                     : "r8", "r9", "r10", "r11", "memory");
    y[g] = (int8_t)divqat_ssat8(divqat_rq_fast_v(a0, q[1], q[2], q[3]));
    y[g + 1] = (int8_t)divqat_ssat8(divqat_rq_fast_v(a1, q[DQ_QP_WORDS + 1], q[DQ_QP_WORDS + 2], q[DQ_QP_WORDS + 3]));
    y[g + 2] = (int8_t)divqat_ssat8(divqat_rq_fast_v(a2, q[2 * DQ_QP_WORDS + 1], q[2 * DQ_QP_WORDS + 2], q[2 * DQ_QP_WORDS + 3]));
    y[g + 3] = (int8_t)divqat_ssat8(divqat_rq_fast_v(a3, q[3 * DQ_QP_WORDS + 1], q[3 * DQ_QP_WORDS + 2], q[3 * DQ_QP_WORDS + 3]));
  }
}

/* Pixel pairs of one output row, 3x3, dilation 1, stride 1 or 2, fast epilogue; an odd last pixel alone. */
DIVQAT_INLINE void divqat_dw_row33(const uint32_t *const *rowp, const int16_t *w, const int32_t *qp, const int32_t *d,
                                   int8_t *yr, int32_t gstride) {
  const int32_t c = d[DQ_CIN], ow = d[DQ_OW], sw = d[DQ_SW];
  int32_t ox = 0;
  if (sw == 1)
    for (; ox + 1 < ow; ox += 2) divqat_dw_pair33_s1(rowp, 2 * ox, w, qp, c, gstride, yr + ox * c, yr + (ox + 1) * c);
  else
    for (; ox + 1 < ow; ox += 2) divqat_dw_pair33_s2(rowp, 4 * ox, w, qp, c, gstride, yr + ox * c, yr + (ox + 1) * c);
  if (ox < ow) divqat_dw_one33(rowp, 2 * ox * sw, w, qp, c, gstride, yr + ox * c);
}
#define DIVQAT_DW_HAVE_ROW33 1
#endif

/* Any kernel width, dilation and stride: one pixel, 4 channels, a tap at a time. */
DIVQAT_INLINE void divqat_dw_row_any(const uint32_t *const *rowp, const int16_t *w, const int32_t *qp, const int32_t *d,
                                     int8_t *yr, int32_t gstride, const int fast) {
  const int32_t c = d[DQ_CIN], ow = d[DQ_OW], kh = d[DQ_KH], kw = d[DQ_KW], sw = d[DQ_SW], dw = d[DQ_DW];
  for (int32_t ox = 0; ox < ow; ++ox, yr += c) {
    const int32_t *q = qp;
    const int16_t *wt = w;
    for (int32_t g = 0; g < c; g += 4, q += 4 * DQ_QP_WORDS) {
      int32_t a0 = q[0], a1 = q[DQ_QP_WORDS], a2 = q[2 * DQ_QP_WORDS], a3 = q[3 * DQ_QP_WORDS];
      const int32_t xo = (g / 4) * gstride + 2 * ox * sw;
      for (int32_t ky = 0; ky < kh; ++ky) {
        const uint32_t *xr = rowp[ky] + xo;
        for (int32_t kx = 0; kx < kw; ++kx, xr += 2 * dw, wt += 4) {
          const uint32_t xl = xr[0], xh = xr[1];
          const uint32_t wl = divqat_ld32(wt), wh = divqat_ld32(wt + 2);
          a0 = divqat_smlabb(xl, wl, a0);
          a2 = divqat_smlatt(xl, wl, a2);
          a1 = divqat_smlabb(xh, wh, a1);
          a3 = divqat_smlatt(xh, wh, a3);
        }
      }
      if (fast) {
        yr[g] = (int8_t)divqat_ssat8(divqat_rq_fast_v(a0, q[1], q[2], q[3]));
        yr[g + 1] = (int8_t)divqat_ssat8(divqat_rq_fast_v(a1, q[DQ_QP_WORDS + 1], q[DQ_QP_WORDS + 2], q[DQ_QP_WORDS + 3]));
        yr[g + 2] = (int8_t)divqat_ssat8(divqat_rq_fast_v(a2, q[2 * DQ_QP_WORDS + 1], q[2 * DQ_QP_WORDS + 2], q[2 * DQ_QP_WORDS + 3]));
        yr[g + 3] = (int8_t)divqat_ssat8(divqat_rq_fast_v(a3, q[3 * DQ_QP_WORDS + 1], q[3 * DQ_QP_WORDS + 2], q[3 * DQ_QP_WORDS + 3]));
      } else {
        yr[g] = (int8_t)divqat_requant_exact(a0, q, d);
        yr[g + 1] = (int8_t)divqat_requant_exact(a1, q + DQ_QP_WORDS, d);
        yr[g + 2] = (int8_t)divqat_requant_exact(a2, q + 2 * DQ_QP_WORDS, d);
        yr[g + 3] = (int8_t)divqat_requant_exact(a3, q + 3 * DQ_QP_WORDS, d);
      }
    }
  }
}

DIVQAT_INLINE void divqat_dw_body(const int8_t *x, const int16_t *w, const int32_t *qp, const int32_t *d, int8_t *y,
                                  int8_t *scratch, const int fast) {
  const int32_t ih = d[DQ_IH], iw = d[DQ_IW], c = d[DQ_CIN], oh = d[DQ_OH], ow = d[DQ_OW];
  const int32_t kh = d[DQ_KH], kw = d[DQ_KW], sh = d[DQ_SH], sw = d[DQ_SW], dh = d[DQ_DH], dw = d[DQ_DW];
  const int32_t pt = d[DQ_PT], pl = d[DQ_PL];
  const int32_t need = (ow - 1) * sw + (kw - 1) * dw + 1;
  const int32_t wc = need > pl + iw ? need : pl + iw; /* padded row width (columns) */
  const int32_t gstride = 2 * wc;                      /* words per channel group in a ring row */
  const int32_t rw = gstride * (c / 4);                /* words per ring row */
  const int32_t nrows = (kh - 1) * dh + 1;
  uint32_t *const ring = (uint32_t *)(void *)scratch;
  uint32_t *const zero_row = ring + nrows * rw;
  const uint32_t off = ((uint32_t)(-d[DQ_ZPIN]) & 0xFFFFu) * 0x10001u;
  int32_t held[DIVQAT_DW_MAX_ROWS];
  const uint32_t *rowp[DIVQAT_DW_MAX_KH];

  memset(ring, 0, (size_t)(nrows + 1) * (size_t)rw * 4u); /* padding columns and the zero row stay 0 */
  for (int32_t i = 0; i < nrows; ++i) held[i] = -1;
  for (int32_t oy = 0; oy < oh; ++oy) {
    for (int32_t ky = 0; ky < kh; ++ky) {
      const int32_t iy = oy * sh - pt + ky * dh;
      if (iy < 0 || iy >= ih) {
        rowp[ky] = zero_row;
        continue;
      }
      const int32_t slot = iy % nrows;
      uint32_t *row = ring + slot * rw;
      if (held[slot] != iy) {
        divqat_dw_widen_row(row + 2 * pl, x + iy * iw * c, iw, c, gstride, off);
        held[slot] = iy;
      }
      rowp[ky] = row;
    }
    int8_t *yr = y + oy * ow * c;
#if defined(DIVQAT_DW_HAVE_ROW33)
    if (fast && kh == 3 && kw == 3 && dh == 1 && dw == 1 && (sw == 1 || sw == 2)) { /* exact epilogue: general path */
      divqat_dw_row33(rowp, w, qp, d, yr, gstride);
      continue;
    }
#endif
    divqat_dw_row_any(rowp, w, qp, d, yr, gstride, fast);
  }
}

/* ---- The tap-pair path (DQ_DWPAIR): 3x3, dilation 1, stride s = 1 or 2, fast epilogue, any channel count ----
 *
 * Ring rows are channel-major: channel ch owns nw words at row + ch * nw, word k = the int16 pair (xp[s*k],
 * xp[s*k + 1]) of the zero-padded, zero-point-subtracted row xp (stride 1: each value sits in two words). Output
 * pixel ox's window row then is word ox (taps 0 and 1, one SMLAD) and the low half of word ox + 2/s (tap 2,
 * one SMLABB); its weights are two words per kernel row, (w0, w1) and (w2, 0), doubled offline. A block of up to
 * 4 pixels of one channel shares every weight word and reads its input words in one run (words ox..ox+5),
 * so a kernel row costs 8 multiply-accumulates for 12 MACs plus the loads; the epilogue constants are loaded
 * once per channel and output row. nw = ow + 2 (stride 1) or ow + 1 (stride 2). */

DIVQAT_INLINE int32_t divqat_smlad_c(uint32_t x, uint32_t y, int32_t acc) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
  return __smlad((int32_t)x, (int32_t)y, acc);
#else
  return acc + (int32_t)(int16_t)x * (int32_t)(int16_t)y + (int32_t)(int16_t)(x >> 16) * (int32_t)(int16_t)(y >> 16);
#endif
}

/* (a.lo, b.lo) and (a.hi, b.hi) as int16 pairs: PKHBT / PKHTB on DSP cores. */
DIVQAT_INLINE uint32_t divqat_pk_lo(uint32_t a, uint32_t b) { return (a & 0xFFFFu) | (b << 16); }
DIVQAT_INLINE uint32_t divqat_pk_hi(uint32_t a, uint32_t b) { return (a >> 16) | (b & 0xFFFF0000u); }

/* Four channels' words k of a ring row from the sxtab16 pairs of the word's two columns (e: channels 0 and 2,
 * o: channels 1 and 3). */
DIVQAT_INLINE void divqat_dwp_put4(uint32_t *dst, int32_t nw, uint32_t e0, uint32_t o0, uint32_t e1, uint32_t o1) {
  dst[0] = divqat_pk_lo(e0, e1);
  dst[nw] = divqat_pk_lo(o0, o1);
  dst[2 * nw] = divqat_pk_hi(e0, e1);
  dst[3 * nw] = divqat_pk_hi(o0, o1);
}

/* Input row `src` (iw columns of c int8) into pair-ring row `dst` (nw words per channel), stride s, the input
 * starting at padded column pl. Words whose columns are both inside the row take the branch-free loops. */
static void divqat_dwp_widen_row(uint32_t *dst, const int8_t *src, int32_t iw, int32_t c, int32_t nw, int32_t s,
                                 int32_t pl, int32_t zp) {
  const uint32_t off = ((uint32_t)(-zp) & 0xFFFFu) * 0x10001u;
  int32_t ka = (pl + s - 1) / s, kb = (iw - 2 + pl) / s + 1; /* interior words [ka, kb) */
  if (iw - 2 + pl < 0) kb = 0;
  if (kb > nw) kb = nw;
  if (ka > kb) ka = kb;
  int32_t ch = 0;
  for (; ch + 4 <= c; ch += 4, dst += 4 * nw) {
    const int8_t *p = src + ch;
    for (int32_t k = 0; k < nw; ++k) {
      if (k == ka) {
        const int8_t *q = p + (s * k - pl) * c;
        if (s == 1) {
          uint32_t v = divqat_ld32(q);
          uint32_t e0 = divqat_sxtab16_ror(off, v, 0), o0 = divqat_sxtab16_ror(off, v, 1);
          for (; k < kb; ++k) {
            q += c;
            v = divqat_ld32(q);
            const uint32_t e1 = divqat_sxtab16_ror(off, v, 0), o1 = divqat_sxtab16_ror(off, v, 1);
            divqat_dwp_put4(dst + k, nw, e0, o0, e1, o1);
            e0 = e1, o0 = o1;
          }
        } else {
          for (; k < kb; ++k, q += 2 * c) {
            const uint32_t v0 = divqat_ld32(q), v1 = divqat_ld32(q + c);
            divqat_dwp_put4(dst + k, nw, divqat_sxtab16_ror(off, v0, 0), divqat_sxtab16_ror(off, v0, 1),
                            divqat_sxtab16_ror(off, v1, 0), divqat_sxtab16_ror(off, v1, 1));
          }
        }
        if (k >= nw) break;
      }
      const int32_t j0 = s * k - pl, j1 = j0 + 1;
      uint32_t e0 = 0, o0 = 0, e1 = 0, o1 = 0;
      if (j0 >= 0 && j0 < iw) {
        const uint32_t v = divqat_ld32(p + j0 * c);
        e0 = divqat_sxtab16_ror(off, v, 0), o0 = divqat_sxtab16_ror(off, v, 1);
      }
      if (j1 >= 0 && j1 < iw) {
        const uint32_t v = divqat_ld32(p + j1 * c);
        e1 = divqat_sxtab16_ror(off, v, 0), o1 = divqat_sxtab16_ror(off, v, 1);
      }
      divqat_dwp_put4(dst + k, nw, e0, o0, e1, o1);
    }
  }
  for (; ch < c; ++ch, dst += nw) { /* channels past the last group of 4, one at a time */
    for (int32_t k = 0; k < nw; ++k) {
      const int32_t j0 = s * k - pl, j1 = j0 + 1;
      const int32_t v0 = (j0 >= 0 && j0 < iw) ? src[j0 * c + ch] - zp : 0;
      const int32_t v1 = (j1 >= 0 && j1 < iw) ? src[j1 * c + ch] - zp : 0;
      dst[k] = ((uint32_t)v0 & 0xFFFFu) | ((uint32_t)v1 << 16);
    }
  }
}

/* np (1..4, a constant) pixels of one channel: rows r0..r2 at the block's first word, wc the channel's 6 weight
 * words, q its [bias', M, a, b], outputs ystep bytes apart. */
DIVQAT_INLINE void divqat_dwp_block(const uint32_t *r0, const uint32_t *r1, const uint32_t *r2, const uint32_t *wc,
                                    const int32_t *q, int8_t *y, int32_t ystep, const int np, const int s) {
  int32_t acc[4];
  const uint32_t *rows[3] = {r0, r1, r2};
  for (int p = 0; p < np; ++p) acc[p] = q[0];
  for (int r = 0; r < 3; ++r) {
    const uint32_t w01 = wc[2 * r], w2 = wc[2 * r + 1];
    const uint32_t *x = rows[r];
    for (int p = 0; p < np; ++p) {
      acc[p] = divqat_smlad_c(x[p], w01, acc[p]);
      acc[p] = divqat_smlabb(x[p + 2 / s], w2, acc[p]);
    }
  }
  const int32_t m = q[1], a = q[2], b = q[3];
  for (int p = 0; p < np; ++p) y[p * ystep] = (int8_t)divqat_ssat8(divqat_rq_fast_v(acc[p], m, a, b));
}

/* One output row: every channel, its pixels in blocks of 4 and a last block of 1 to 3. */
DIVQAT_INLINE void divqat_dwp_row(const uint32_t *const *rowp, const uint32_t *w, const int32_t *qp, int32_t c,
                                  int32_t nw, int32_t ow, int8_t *yr, const int s) {
  for (int32_t ch = 0; ch < c; ++ch, w += 6, qp += DQ_QP_WORDS) {
    const uint32_t *r0 = rowp[0] + ch * nw, *r1 = rowp[1] + ch * nw, *r2 = rowp[2] + ch * nw;
    int8_t *y = yr + ch;
    int32_t ox = 0;
    for (; ox + 4 <= ow; ox += 4) divqat_dwp_block(r0 + ox, r1 + ox, r2 + ox, w, qp, y + ox * c, c, 4, s);
    switch (ow - ox) {
      case 3:
        divqat_dwp_block(r0 + ox, r1 + ox, r2 + ox, w, qp, y + ox * c, c, 3, s);
        break;
      case 2:
        divqat_dwp_block(r0 + ox, r1 + ox, r2 + ox, w, qp, y + ox * c, c, 2, s);
        break;
      case 1:
        divqat_dwp_block(r0 + ox, r1 + ox, r2 + ox, w, qp, y + ox * c, c, 1, s);
        break;
      default:
        break;
    }
  }
}

static DIVQAT_NOINLINE void divqat_dwp_row_s1(const uint32_t *const *rowp, const uint32_t *w, const int32_t *qp,
                                              int32_t c, int32_t nw, int32_t ow, int8_t *yr) {
  divqat_dwp_row(rowp, w, qp, c, nw, ow, yr, 1);
}

static DIVQAT_NOINLINE void divqat_dwp_row_s2(const uint32_t *const *rowp, const uint32_t *w, const int32_t *qp,
                                              int32_t c, int32_t nw, int32_t ow, int8_t *yr) {
  divqat_dwp_row(rowp, w, qp, c, nw, ow, yr, 2);
}

/* The whole layer on the pair ring: 3 ring rows and a zero row of c * nw words each in the scratch. */
static void divqat_dwp_body(const int8_t *x, const uint32_t *w, const int32_t *qp, const int32_t *d, int8_t *y,
                            int8_t *scratch) {
  const int32_t ih = d[DQ_IH], iw = d[DQ_IW], c = d[DQ_CIN], oh = d[DQ_OH], ow = d[DQ_OW];
  const int32_t sh = d[DQ_SH], s = d[DQ_SW], pt = d[DQ_PT], pl = d[DQ_PL];
  const int32_t nw = ow + 2 / s, rw = c * nw;
  uint32_t *const ring = (uint32_t *)(void *)scratch;
  uint32_t *const zero_row = ring + 3 * rw;
  int32_t held[3] = {-1, -1, -1};
  const uint32_t *rowp[3];
  memset(zero_row, 0, (size_t)rw * 4u);
  for (int32_t oy = 0; oy < oh; ++oy, y += ow * c) {
    for (int32_t ky = 0; ky < 3; ++ky) {
      const int32_t iy = oy * sh - pt + ky;
      if (iy < 0 || iy >= ih) {
        rowp[ky] = zero_row;
        continue;
      }
      const int32_t slot = iy % 3;
      uint32_t *row = ring + slot * rw;
      if (held[slot] != iy) {
        divqat_dwp_widen_row(row, x + iy * iw * c, iw, c, nw, s, pl, d[DQ_ZPIN]);
        held[slot] = iy;
      }
      rowp[ky] = row;
    }
    if (s == 1)
      divqat_dwp_row_s1(rowp, w, qp, c, nw, ow, y);
    else
      divqat_dwp_row_s2(rowp, w, qp, c, nw, ow, y);
  }
}

static DIVQAT_NOINLINE void divqat_dwconv_s8(const int8_t *x, const int16_t *w, const int32_t *qp, const int32_t *d,
                                             int8_t *y, int8_t *scratch) {
  if (d[DQ_FLAGS] & DQ_DWPAIR)
    divqat_dwp_body(x, (const uint32_t *)(const void *)w, qp, d, y, scratch);
  else if (d[DQ_FLAGS] & DQ_FAST)
    divqat_dw_body(x, w, qp, d, y, scratch, 1);
  else
    divqat_dw_body(x, w, qp, d, y, scratch, 0);
}
