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

/* Two entries: divqat_dwconv_s8 (the rings) and divqat_dwconv_plane_s8 (the whole-plane path, chosen by
 * ops/depthwise.py _dw_plane_ok). native.library_source defines DIVQAT_USE_<entry> for each entry the model
 * calls, and only their code is compiled (a path no layer takes costs no flash, and no static function is left
 * unused under -Wall); compiled alone, both. */
#if !defined(DIVQAT_USE_divqat_dwconv_s8) && !defined(DIVQAT_USE_divqat_dwconv_plane_s8)
#define DIVQAT_USE_divqat_dwconv_s8 1
#define DIVQAT_USE_divqat_dwconv_plane_s8 1
#endif

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

#if defined(DIVQAT_USE_divqat_dwconv_s8) /* the ring entry's code only */
/* Input row `src` (iw columns of C int8) widened into ring row `dst`, whose layout is channel-group-major:
 * group g (4 channels) owns wc columns of two words at dst + g * gstride; the input starts at column pl. */
static void divqat_dw_widen_row(uint32_t *dst, const int8_t *src, int32_t iw, int32_t c, int32_t gstride,
                                uint32_t off) {
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
#define DIVQAT_DW_TAP(OA, OAH, OB, OBH)    \
    "ldrd    r8, r9, [%[wt]], #8\n\t"      \
    "ldr     r10, [%[xr], #" OA "]\n\t"    \
    "smlabb  %[a0], r10, r8, %[a0]\n\t"    \
    "smlatt  %[a2], r10, r8, %[a2]\n\t"    \
    "ldr     r10, [%[xr], #" OAH "]\n\t"   \
    "smlabb  %[a1], r10, r9, %[a1]\n\t"    \
    "smlatt  %[a3], r10, r9, %[a3]\n\t"    \
    "ldr     r10, [%[xr], %[" OB "]]\n\t"  \
    "smlabb  %[b0], r10, r8, %[b0]\n\t"    \
    "smlatt  %[b2], r10, r8, %[b2]\n\t"    \
    "ldr     r10, [%[xr], %[" OBH "]]\n\t" \
    "smlabb  %[b1], r10, r9, %[b1]\n\t"    \
    "smlatt  %[b3], r10, r9, %[b3]\n\t"

/* The whole 3x3 window: row 0 from xr, rows 1 and 2 from the stack ("m" operands), 119 instructions for 72 MACs. */
#define DIVQAT_DW_WIN33(SW)                                                                                        \
    __asm__ volatile(                                                                                              \
        DIVQAT_DW_TAP("0", "4", "p0", "p0h") DIVQAT_DW_TAP("8", "12", "p1", "p1h")                                 \
            DIVQAT_DW_TAP("16", "20", "p2", "p2h") "ldr     %[xr], %[x1]\n\t" DIVQAT_DW_TAP("0", "4", "p0", "p0h") \
                DIVQAT_DW_TAP("8", "12", "p1", "p1h") DIVQAT_DW_TAP(                                               \
                    "16", "20", "p2", "p2h") "ldr     %[xr], %[x2]\n\t" DIVQAT_DW_TAP("0", "4", "p0", "p0h")       \
                    DIVQAT_DW_TAP("8", "12", "p1", "p1h") DIVQAT_DW_TAP("16", "20", "p2", "p2h")                   \
        : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [b0] "+r"(b0), [b1] "+r"(b1), [b2] "+r"(b2), \
          [b3] "+r"(b3), [wt] "+r"(wt_r), [xr] "+r"(xr)                                                            \
        : [x1] "m"(x1), [x2] "m"(x2), [p0] "i"(8 * (SW)), [p0h] "i"(8 * (SW) + 4), [p1] "i"(8 + 8 * (SW)),         \
          [p1h] "i"(12 + 8 * (SW)), [p2] "i"(16 + 8 * (SW)), [p2h] "i"(20 + 8 * (SW))                              \
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

#define DIVQAT_DW_PAIR33(NAME, SW)                                                                                 \
    static DIVQAT_NOINLINE void NAME(const uint32_t *const *rowp, int32_t xo, const int16_t *wt, const int32_t *q, \
                                     int32_t c, int32_t gstride, int8_t *ya, int8_t *yb) {                         \
        divqat_dw_pair33(rowp, xo, wt, q, c, gstride, ya, yb, SW);                                                 \
    }
DIVQAT_DW_PAIR33(divqat_dw_pair33_s1, 1)
DIVQAT_DW_PAIR33(divqat_dw_pair33_s2, 2)

/* One pixel, 4 channels, one tap: LDRD weights, LDRD input, 4 SMLABB/SMLATT. */
#define DIVQAT_DW_TAP1(OA)                   \
    "ldrd    r8, r9, [%[wt]], #8\n\t"        \
    "ldrd    r10, r11, [%[xr], #" OA "]\n\t" \
    "smlabb  %[a0], r10, r8, %[a0]\n\t"      \
    "smlatt  %[a2], r10, r8, %[a2]\n\t"      \
    "smlabb  %[a1], r11, r9, %[a1]\n\t"      \
    "smlatt  %[a3], r11, r9, %[a3]\n\t"

/* All channel groups of a single pixel (an odd row's last one) of a 3x3 kernel: 56 instructions per 36 MACs,
 * 10 registers (no pinning needed). */
static DIVQAT_NOINLINE void divqat_dw_one33(const uint32_t *const *rowp, int32_t xo, const int16_t *wt,
                                            const int32_t *q, int32_t c, int32_t gstride, int8_t *y) {
    const uint32_t *x0 = rowp[0] + xo, *x1 = rowp[1] + xo, *x2 = rowp[2] + xo;
    for (int32_t g = 0; g < c; g += 4, q += 4 * DQ_QP_WORDS, x0 += gstride, x1 += gstride, x2 += gstride) {
        int32_t a0 = q[0], a1 = q[DQ_QP_WORDS], a2 = q[2 * DQ_QP_WORDS], a3 = q[3 * DQ_QP_WORDS];
        const uint32_t *xr = x0;
        __asm__ volatile(DIVQAT_DW_TAP1("0") DIVQAT_DW_TAP1("8")
                             DIVQAT_DW_TAP1("16") "ldr     %[xr], %[x1]\n\t" DIVQAT_DW_TAP1("0") DIVQAT_DW_TAP1("8")
                                 DIVQAT_DW_TAP1("16") "ldr     %[xr], %[x2]\n\t" DIVQAT_DW_TAP1("0") DIVQAT_DW_TAP1("8")
                                     DIVQAT_DW_TAP1("16")
                         : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [wt] "+r"(wt), [xr] "+r"(xr)
                         : [x1] "m"(x1), [x2] "m"(x2)
                         : "r8", "r9", "r10", "r11", "memory");
        y[g] = (int8_t)divqat_ssat8(divqat_rq_fast_v(a0, q[1], q[2], q[3]));
        y[g + 1] =
            (int8_t)divqat_ssat8(divqat_rq_fast_v(a1, q[DQ_QP_WORDS + 1], q[DQ_QP_WORDS + 2], q[DQ_QP_WORDS + 3]));
        y[g + 2] = (int8_t)divqat_ssat8(
            divqat_rq_fast_v(a2, q[2 * DQ_QP_WORDS + 1], q[2 * DQ_QP_WORDS + 2], q[2 * DQ_QP_WORDS + 3]));
        y[g + 3] = (int8_t)divqat_ssat8(
            divqat_rq_fast_v(a3, q[3 * DQ_QP_WORDS + 1], q[3 * DQ_QP_WORDS + 2], q[3 * DQ_QP_WORDS + 3]));
    }
}

/* Pixel pairs of one output row, 3x3, dilation 1, stride 1 or 2, fast epilogue; an odd last pixel alone. */
DIVQAT_INLINE void divqat_dw_row33(const uint32_t *const *rowp, const int16_t *w, const int32_t *qp, const int32_t *d,
                                   int8_t *yr, int32_t gstride) {
    const int32_t c = d[DQ_CIN], ow = d[DQ_OW], sw = d[DQ_SW];
    int32_t ox = 0;
    if (sw == 1)
        for (; ox + 1 < ow; ox += 2)
            divqat_dw_pair33_s1(rowp, 2 * ox, w, qp, c, gstride, yr + ox * c, yr + (ox + 1) * c);
    else
        for (; ox + 1 < ow; ox += 2)
            divqat_dw_pair33_s2(rowp, 4 * ox, w, qp, c, gstride, yr + ox * c, yr + (ox + 1) * c);
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
                yr[g + 1] = (int8_t)divqat_ssat8(
                    divqat_rq_fast_v(a1, q[DQ_QP_WORDS + 1], q[DQ_QP_WORDS + 2], q[DQ_QP_WORDS + 3]));
                yr[g + 2] = (int8_t)divqat_ssat8(
                    divqat_rq_fast_v(a2, q[2 * DQ_QP_WORDS + 1], q[2 * DQ_QP_WORDS + 2], q[2 * DQ_QP_WORDS + 3]));
                yr[g + 3] = (int8_t)divqat_ssat8(
                    divqat_rq_fast_v(a3, q[3 * DQ_QP_WORDS + 1], q[3 * DQ_QP_WORDS + 2], q[3 * DQ_QP_WORDS + 3]));
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
    const int32_t gstride = 2 * wc;                     /* words per channel group in a ring row */
    const int32_t rw = gstride * (c / 4);               /* words per ring row */
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
        if (fast && kh == 3 && kw == 3 && dh == 1 && dw == 1 &&
            (sw == 1 || sw == 2)) { /* exact epilogue: general path */
            divqat_dw_row33(rowp, w, qp, d, yr, gstride);
            continue;
        }
#endif
        divqat_dw_row_any(rowp, w, qp, d, yr, gstride, fast);
    }
}
#endif /* DIVQAT_USE_divqat_dwconv_s8 */

/* ---- The tap-pair path (DQ_DWPAIR): 3x3, dilation 1, stride s = 1 or 2, fast epilogue, any channel count ----
 *
 * Ring rows are channel-major: channel ch owns nw words at row + ch * nw, word k = the int16 pair (xp[2k],
 * xp[2k + 1]) of the zero-padded, zero-point-subtracted row xp; each input value is widened once, two words per
 * channel (four columns of four channels) per pass of an asm loop over the whole row (25 instructions for 16
 * values). Weights and constants: one stream per channel (DIVQAT_DWP_STREAM words, laid out offline): the doubled
 * bias, per kernel row (w0, w1) and (w2, 0) doubled, then M, a, b. A window row of output pixel ox is
 * xp[s*ox .. s*ox + 2]: with stride 2, or stride 1 and ox even, one SMLAD on word s*ox/2 (taps 0 and 1) and
 * one SMLABB on the next word's low half (tap 2); stride 1 and ox odd straddles two words: SMLATB, SMLABT,
 * SMLATB. A block of up to 6 pixels of one channel shares every weight word and loads its input words two per
 * LDRD (6 pixels: 17 (stride 2) or 18 (stride 1) instructions per kernel row for 18 MACs); the block runs over
 * every channel in one asm loop before the next block. nw = (ow + 3) / 2 (stride 1) or ow + 1 (stride 2). */

/* (a.lo, b.lo) and (a.hi, b.hi) as int16 pairs: PKHBT / PKHTB on DSP cores. */
DIVQAT_INLINE uint32_t divqat_pk_lo(uint32_t a, uint32_t b) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (a & 0xFFFFu) | (b << 16);
#endif
}

DIVQAT_INLINE uint32_t divqat_pk_hi(uint32_t a, uint32_t b) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    uint32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(b), "r"(a));
    return r;
#else
    return (a >> 16) | (b & 0xFFFF0000u);
#endif
}

/* Four channels' words k of a ring row from the int8 words of its two columns, v0 = [a0 a1 a2 a3] and
 * v1 = [b0 b1 b2 b3]: PKHBT / PKHTB give [a0 a1 b0 b1] and [a2 a3 b2 b3], and SXTAB16 (ROR #8) of those the
 * int16 pairs (a0, b0), (a1, b1), (a2, b2), (a3, b3) minus the zero point (off): 2 + 4 instructions and 4 stores
 * for 8 values. A column outside the row reads as zp in every byte (0 after the subtraction). */
DIVQAT_INLINE void divqat_dwp_put4(uint32_t *dst, int32_t nw, uint32_t v0, uint32_t v1, uint32_t off) {
    const uint32_t lo = divqat_pk_lo(v0, v1), hi = divqat_pk_hi(v0, v1);
    dst[0] = divqat_sxtab16_ror(off, lo, 0);
    dst[nw] = divqat_sxtab16_ror(off, lo, 1);
    dst[2 * nw] = divqat_sxtab16_ror(off, hi, 0);
    dst[3 * nw] = divqat_sxtab16_ror(off, hi, 1);
}

/* Which words of a ring row an input row of iw columns (starting at padded column pl) reaches: [k[1], k[2]) have
 * both columns inside the row, [k[0], k[3]) at least one (one more each side at most); the others are padding. */
DIVQAT_INLINE void divqat_dwp_words(int32_t iw, int32_t nw, int32_t pl, int32_t k[4]) {
    int32_t ka = (pl + 1) / 2, kb = iw - 2 + pl < 0 ? 0 : (iw - 2 + pl) / 2 + 1;
    if (kb > nw) kb = nw;
    if (ka > kb) ka = kb;
    k[0] = (ka > 0 && 2 * (ka - 1) - pl + 1 >= 0) ? ka - 1 : ka;
    k[1] = ka;
    k[2] = kb;
    k[3] = (kb < nw && 2 * kb - pl < iw) ? kb + 1 : kb;
}

/* Word k of every full 4-channel group's ring rows (d = row + k, groups 4 * nw words apart) from two int8
 * columns: s0 and s1 step st0 / st1 bytes per group (0 for a padding column, read from a word of zero points). */
DIVQAT_INLINE void divqat_dwp_word(uint32_t *d, int32_t nw, const int8_t *s0, int32_t st0, const int8_t *s1,
                                   int32_t st1, uint32_t off, int32_t ng) {
    for (int32_t g = 0; g < ng; ++g, d += 4 * nw, s0 += st0, s1 += st1)
        divqat_dwp_put4(d, nw, divqat_ld32(s0), divqat_ld32(s1), off);
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__OPTIMIZE__)
/* Words [0, 2 * n2) of every full 4-channel group (ng >= 1 groups, n2 >= 1): per pass four columns (q, q + c,
 * q + 2c, q + 3c) of 4 channels into two words of each channel's ring row (d + i * nw, one STRD each): 4 loads,
 * 4 PKHBT/PKHTB, 8 SXTAB16, 4 STRD and the loop, 25 instructions for 16 values (a word at a time takes 15 for 8);
 * then the next group (15). Registers pinned so allocation cannot fail; the loop state that does not fit is on
 * the stack ("m" operands). Inlined into both callers (ring rows, the plane). */
DIVQAT_INLINE void divqat_dwp_widen2_dsp(const int8_t *q, int32_t c, uint32_t *d, int32_t nw, uint32_t off, int32_t n2,
                                         int32_t ng) {
    register const int8_t *rq __asm__("r0") = q;
    register int32_t rc __asm__("r1") = c;
    register uint32_t *p0 __asm__("r2") = d;
    register uint32_t *p1 __asm__("r3") = d + nw;
    register uint32_t *p2 __asm__("r4") = d + 2 * nw;
    register uint32_t *p3 __asm__("r5") = d + 3 * nw;
    register uint32_t ro __asm__("r6") = off;
    const uint32_t *pend = d + 2 * n2;     /* p0 at the end of this group's pass */
    const int32_t gstep = 16 * nw;         /* bytes from one group's rows to the next's */
    const int32_t delta = gstep - 8 * n2;  /* p0..p3 from a group's end to the next's start */
    const int32_t qdelta = 4 - 4 * n2 * c; /* q likewise (4 channels on) */
    int32_t cnt = ng;
    __asm__ volatile(
        "1:\n\t"
        "ldr     r8, [%[q]]\n\t"
        "ldr     r9, [%[q], %[c]]\n\t"
        "add     %[q], %[q], %[c], lsl #1\n\t"
        "ldr     r10, [%[q]]\n\t"
        "ldr     r11, [%[q], %[c]]\n\t"
        "add     %[q], %[q], %[c], lsl #1\n\t"
        "pkhbt   r12, r8, r9, lsl #16\n\t"
        "pkhtb   r9, r9, r8, asr #16\n\t"
        "pkhbt   r8, r10, r11, lsl #16\n\t"
        "pkhtb   r11, r11, r10, asr #16\n\t"
        "sxtab16 r10, %[off], r12\n\t"
        "sxtab16 lr, %[off], r8\n\t"
        "strd    r10, lr, [%[p0]], #8\n\t"
        "sxtab16 r10, %[off], r12, ror #8\n\t"
        "sxtab16 lr, %[off], r8, ror #8\n\t"
        "strd    r10, lr, [%[p1]], #8\n\t"
        "sxtab16 r10, %[off], r9\n\t"
        "sxtab16 lr, %[off], r11\n\t"
        "strd    r10, lr, [%[p2]], #8\n\t"
        "sxtab16 r10, %[off], r9, ror #8\n\t"
        "sxtab16 lr, %[off], r11, ror #8\n\t"
        "strd    r10, lr, [%[p3]], #8\n\t"
        "ldr     r10, %[pend]\n\t"
        "cmp     %[p0], r10\n\t"
        "bne     1b\n\t"
        "ldr     r11, %[gstep]\n\t"
        "add     r10, r10, r11\n\t"
        "str     r10, %[pend]\n\t"
        "ldr     r10, %[delta]\n\t"
        "add     %[p0], %[p0], r10\n\t"
        "add     %[p1], %[p1], r10\n\t"
        "add     %[p2], %[p2], r10\n\t"
        "add     %[p3], %[p3], r10\n\t"
        "ldr     r10, %[qdelta]\n\t"
        "add     %[q], %[q], r10\n\t"
        "ldr     r10, %[cnt]\n\t"
        "subs    r10, r10, #1\n\t"
        "str     r10, %[cnt]\n\t"
        "bne     1b\n\t"
        : [q] "+r"(rq), [p0] "+r"(p0), [p1] "+r"(p1), [p2] "+r"(p2), [p3] "+r"(p3), [pend] "+m"(pend), [cnt] "+m"(cnt)
        : [c] "r"(rc), [off] "r"(ro), [gstep] "m"(gstep), [delta] "m"(delta), [qdelta] "m"(qdelta)
        : "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
}
#define DIVQAT_DWP_HAVE_WIDEN2 1
#endif

#if defined(DIVQAT_USE_divqat_dwconv_s8) && !defined(DIVQAT_MVE) /* the DSP / C tap-pair ring only */
/* Input row `src` (iw columns of c int8) into pair-ring row `dst` (nw words per channel), the input starting at
 * padded column pl. Words [ka, kb) have both columns inside the row; of the others only those touching the row
 * are written (one each side at most): words wholly in the padding are zero from the memset at the layer's start
 * and never written. Full 4-channel groups a word (or, DSP, two words) at a time across all groups; the channels
 * past the last full group one at a time. */
static void divqat_dwp_widen_row(uint32_t *dst, const int8_t *src, int32_t iw, int32_t c, int32_t nw, int32_t pl,
                                 int32_t zp) {
    const uint32_t off = ((uint32_t)(-zp) & 0xFFFFu) * 0x10001u, zpw = (uint32_t)(uint8_t)zp * 0x01010101u;
    const int8_t *const pad = (const int8_t *)(const void *)&zpw; /* a padding column: zp in every byte, step 0 */
    int32_t k4[4];
    divqat_dwp_words(iw, nw, pl, k4);
    const int32_t kl = k4[0], ka = k4[1], kb = k4[2], kr = k4[3];
    const int32_t ng = c / 4;
    if (ng > 0) {
        if (kl < ka) divqat_dwp_word(dst + kl, nw, pad, 0, src, 4, off, ng); /* columns (-1, 0) */
        int32_t k = ka;
#if defined(DIVQAT_DWP_HAVE_WIDEN2)
        if (kb - ka >= 2) {
            const int32_t n2 = (kb - ka) / 2;
            divqat_dwp_widen2_dsp(src + (2 * ka - pl) * c, c, dst + ka, nw, off, n2, ng);
            k += 2 * n2;
        }
#endif
        for (; k < kb; ++k) {
            const int8_t *s0 = src + (2 * k - pl) * c;
            divqat_dwp_word(dst + k, nw, s0, 4, s0 + c, 4, off, ng);
        }
        if (kb < kr) divqat_dwp_word(dst + kb, nw, src + (iw - 1) * c, 4, pad, 0, off, ng); /* (iw - 1, iw) */
    }
    dst += 4 * ng * nw;
    for (int32_t ch = 4 * ng; ch < c; ++ch, dst += nw) { /* channels past the last group of 4, one at a time */
        for (int32_t k = kl; k < kr; ++k) {
            const int32_t j0 = 2 * k - pl, j1 = j0 + 1;
            const int32_t v0 = (j0 >= 0 && j0 < iw) ? src[j0 * c + ch] - zp : 0;
            const int32_t v1 = (j1 >= 0 && j1 < iw) ? src[j1 * c + ch] - zp : 0;
            dst[k] = ((uint32_t)v0 & 0xFFFFu) | ((uint32_t)v1 << 16);
        }
    }
}
#endif /* DIVQAT_USE_divqat_dwconv_s8 */

/* Value i of a ring row (int16 i of the words, low half first). */
DIVQAT_INLINE int32_t divqat_dwp_at(const uint32_t *row, int32_t i) {
    return (int32_t)(int16_t)(row[i >> 1] >> (16 * (i & 1)));
}

/* The per-channel stream of the tap-pair path (DQ_DWPAIR_STREAM words, laid out offline by ops/depthwise.py): the
 * doubled bias, per kernel row the weight words (w0, w1) and (w2, 0) (doubled), then M, a and b of the fast
 * epilogue. One pointer walks weights and constants, so the channel loop keeps one register for both. */
#define DIVQAT_DWP_STREAM 10

/* np (1..6) pixels of one channel: rows r0..r2 at the block's first word (of an even pixel when the stride is 1),
 * sc the channel's stream, outputs ystep bytes apart; edge: the last pixel's tap 2 is the right pad (the plane
 * path, whose next word is the next row's). The plain-C block. */
DIVQAT_INLINE void divqat_dwp_block(const uint32_t *r0, const uint32_t *r1, const uint32_t *r2, const uint32_t *sc,
                                    int8_t *y, int32_t ystep, const int np, const int s, const int edge) {
    int32_t acc[6] = {0, 0, 0, 0, 0, 0}; /* every p < np is set below; GCC cannot see that when np is a variable */
    const uint32_t *rows[3] = {r0, r1, r2};
#pragma GCC unroll 6
    for (int p = 0; p < np; ++p) acc[p] = (int32_t)sc[0];
#pragma GCC unroll 3
    for (int r = 0; r < 3; ++r) {
        const uint32_t *wc = sc + 1 + 2 * r;
        const int32_t w0 = (int16_t)wc[0], w1 = (int16_t)(wc[0] >> 16), w2 = (int16_t)wc[1];
#pragma GCC unroll 6
        for (int p = 0; p < np; ++p)
            acc[p] += divqat_dwp_at(rows[r], s * p) * w0 + divqat_dwp_at(rows[r], s * p + 1) * w1 +
                      (edge && p == np - 1 ? 0 : divqat_dwp_at(rows[r], s * p + 2) * w2);
    }
    const int32_t m = (int32_t)sc[7], a = (int32_t)sc[8], b = (int32_t)sc[9];
#pragma GCC unroll 6
    for (int p = 0; p < np; ++p) y[p * ystep] = (int8_t)divqat_ssat8(divqat_rq_fast_v(acc[p], m, a, b));
}

/* Two cases of a switch over a block width P and a second parameter (A at key K, B at K + 1), each one expansion
 * of the asm macro M (its operands must be literals, so widths are dispatched, not looped); _LAST ends the switch
 * with B as the default. */
#define DIVQAT_DW_CASES(K, M, P, A, B) \
    case K:                            \
        M(P, A);                       \
        break;                         \
    case K + 1:                        \
        M(P, B);                       \
        break;
#define DIVQAT_DW_CASES_LAST(K, M, P, A, B) \
    case K:                                 \
        M(P, A);                            \
        break;                              \
    default:                                \
        M(P, B);                            \
        break;

/* The 3 window rows of an output row whose row 0 is input row IY0, into ROWP: a row outside the input is ZERO;
 * input row iy is held in ring slot iy % 3 (RING + slot * RB) and widened there by the statement WIDEN (which reads
 * `row` and `iy`) when the slot holds another row (HELD). The tap-pair rings of both cores' kernels. */
#define DIVQAT_DW_WINDOW(ROWP, RING, RB, ZERO, HELD, IY0, IH, WIDEN) \
    for (int32_t ky = 0; ky < 3; ++ky) {                             \
        const int32_t iy = (IY0) + ky;                               \
        if (iy < 0 || iy >= (IH)) {                                  \
            (ROWP)[ky] = (ZERO);                                     \
            continue;                                                \
        }                                                            \
        const int32_t slot = iy % 3;                                 \
        __typeof__(RING) row = (RING) + slot * (RB);                 \
        if ((HELD)[slot] != iy) {                                    \
            WIDEN;                                                   \
            (HELD)[slot] = iy;                                       \
        }                                                            \
        (ROWP)[ky] = row;                                            \
    }

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__OPTIMIZE__)
/* One kernel row of a block of P pixels (stride S): the row's weight words (w0, w1), (w2, 0) in one LDRD, the
 * input words two per LDRD, and per pixel SMLAD + SMLABB (its taps in one word and the next word's low half) or,
 * stride 1 and an odd pixel, SMLATB + SMLABT + SMLATB. P = 4, stride 1: 13 instructions for 12 MACs.
 * Accumulators a0..a4, input words r8/r9, weights r10/r11, row pointer B, stream pointer wp. */
#define DIVQAT_DWP_ROW_P1_S1(B)          \
    "ldrd    r10, r11, [%[wp]], #8\n\t"  \
    "ldrd    r8, r9, [%[" B "], #0]\n\t" \
    "smlad   %[a0], r8, r10, %[a0]\n\t"  \
    "smlabb  %[a0], r9, r11, %[a0]\n\t"
#define DIVQAT_DWP_ROW_P1_S2(B) DIVQAT_DWP_ROW_P1_S1(B) /* one pixel: the stride does not matter */
#define DIVQAT_DWP_ROW_P2_S1(B)          \
    "ldrd    r10, r11, [%[wp]], #8\n\t"  \
    "ldrd    r8, r9, [%[" B "], #0]\n\t" \
    "smlad   %[a0], r8, r10, %[a0]\n\t"  \
    "smlatb  %[a1], r8, r10, %[a1]\n\t"  \
    "smlabb  %[a0], r9, r11, %[a0]\n\t"  \
    "smlabt  %[a1], r9, r10, %[a1]\n\t"  \
    "smlatb  %[a1], r9, r11, %[a1]\n\t"
#define DIVQAT_DWP_ROW_P2_S2(B)          \
    "ldrd    r10, r11, [%[wp]], #8\n\t"  \
    "ldrd    r8, r9, [%[" B "], #0]\n\t" \
    "smlad   %[a0], r8, r10, %[a0]\n\t"  \
    "smlabb  %[a0], r9, r11, %[a0]\n\t"  \
    "smlad   %[a1], r9, r10, %[a1]\n\t"  \
    "ldr     r8, [%[" B "], #8]\n\t"     \
    "smlabb  %[a1], r8, r11, %[a1]\n\t"
#define DIVQAT_DWP_ROW_P3_S1(B)          \
    "ldrd    r10, r11, [%[wp]], #8\n\t"  \
    "ldrd    r8, r9, [%[" B "], #0]\n\t" \
    "smlad   %[a0], r8, r10, %[a0]\n\t"  \
    "smlatb  %[a1], r8, r10, %[a1]\n\t"  \
    "smlabb  %[a0], r9, r11, %[a0]\n\t"  \
    "smlabt  %[a1], r9, r10, %[a1]\n\t"  \
    "smlatb  %[a1], r9, r11, %[a1]\n\t"  \
    "smlad   %[a2], r9, r10, %[a2]\n\t"  \
    "ldr     r8, [%[" B "], #8]\n\t"     \
    "smlabb  %[a2], r8, r11, %[a2]\n\t"
#define DIVQAT_DWP_ROW_P3_S2(B)          \
    "ldrd    r10, r11, [%[wp]], #8\n\t"  \
    "ldrd    r8, r9, [%[" B "], #0]\n\t" \
    "smlad   %[a0], r8, r10, %[a0]\n\t"  \
    "smlabb  %[a0], r9, r11, %[a0]\n\t"  \
    "smlad   %[a1], r9, r10, %[a1]\n\t"  \
    "ldrd    r8, r9, [%[" B "], #8]\n\t" \
    "smlabb  %[a1], r8, r11, %[a1]\n\t"  \
    "smlad   %[a2], r8, r10, %[a2]\n\t"  \
    "smlabb  %[a2], r9, r11, %[a2]\n\t"
/* Stride 1, pixels 0..3: taps from words 0 and 1 (r8, r9) and what pixels 2 and 3 take from word 1; word 2 then
 * comes in (LOAD: r8 alone, or r8 / r9 with word 3). */
#define DIVQAT_DWP_ROW_S1_P4(B, LOAD)                                            \
    "ldrd    r10, r11, [%[wp]], #8\n\t"                                          \
    "ldrd    r8, r9, [%[" B "], #0]\n\t"                                         \
    "smlad   %[a0], r8, r10, %[a0]\n\t"                                          \
    "smlatb  %[a1], r8, r10, %[a1]\n\t"                                          \
    "smlabb  %[a0], r9, r11, %[a0]\n\t"                                          \
    "smlabt  %[a1], r9, r10, %[a1]\n\t"                                          \
    "smlatb  %[a1], r9, r11, %[a1]\n\t"                                          \
    "smlad   %[a2], r9, r10, %[a2]\n\t"                                          \
    "smlatb  %[a3], r9, r10, %[a3]\n\t" LOAD "smlabb  %[a2], r8, r11, %[a2]\n\t" \
    "smlabt  %[a3], r8, r10, %[a3]\n\t"                                          \
    "smlatb  %[a3], r8, r11, %[a3]\n\t"
#define DIVQAT_DWP_ROW_P4_S1(B) DIVQAT_DWP_ROW_S1_P4(B, "ldr     r8, [%[" B "], #8]\n\t")
#define DIVQAT_DWP_ROW_P4_S2(B)         \
    DIVQAT_DWP_ROW_P3_S2(B)             \
    "smlad   %[a3], r9, r10, %[a3]\n\t" \
    "ldr     r8, [%[" B "], #16]\n\t"   \
    "smlabb  %[a3], r8, r11, %[a3]\n\t"
#define DIVQAT_DWP_ROW_P5_S1(B)                                   \
    DIVQAT_DWP_ROW_S1_P4(B, "ldrd    r8, r9, [%[" B "], #8]\n\t") \
    "smlad   %[a4], r8, r10, %[a4]\n\t"                           \
    "smlabb  %[a4], r9, r11, %[a4]\n\t"
#define DIVQAT_DWP_ROW_P5_S2(B)           \
    DIVQAT_DWP_ROW_P3_S2(B)               \
    "smlad   %[a3], r9, r10, %[a3]\n\t"   \
    "ldrd    r8, r9, [%[" B "], #16]\n\t" \
    "smlabb  %[a3], r8, r11, %[a3]\n\t"   \
    "smlad   %[a4], r8, r10, %[a4]\n\t"   \
    "smlabb  %[a4], r9, r11, %[a4]\n\t"

/* Six pixels: the five-pixel row, then pixel 5 (taps in word 2's high half and word 3, still in r8 / r9). */
#define DIVQAT_DWP_ROW_P6_S1(B)         \
    DIVQAT_DWP_ROW_P5_S1(B)             \
    "smlatb  %[a5], r8, r10, %[a5]\n\t" \
    "smlabt  %[a5], r9, r10, %[a5]\n\t" \
    "smlatb  %[a5], r9, r11, %[a5]\n\t"
#define DIVQAT_DWP_ROW_P6_S2(B)         \
    DIVQAT_DWP_ROW_P5_S2(B)             \
    "smlad   %[a5], r9, r10, %[a5]\n\t" \
    "ldr     r8, [%[" B "], #24]\n\t"   \
    "smlabb  %[a5], r8, r11, %[a5]\n\t"

/* The fast epilogue of one accumulator A into r11: SMMLAR with M (r8) and b (r10), the rounding add, the shift by
 * a (r9) and SSAT. */
#define DIVQAT_DWP_RQ(A)                      \
    "smmlar  r11, %[" A "], r8, r10\n\t"      \
    "add     r11, r11, %[" A "], asr #31\n\t" \
    "asr     r11, r11, r9\n\t"                \
    "ssat    r11, #8, r11\n\t"
/* The stores of 1..5 pixels (output base y, step ys from the stack): a0 and a1 are done with once pixel 1 is
 * requantized, so they hold the step and the address of pixels 2..4. */
#define DIVQAT_DWP_ST_P1 DIVQAT_DWP_RQ("a0") "strb    r11, [%[y]]\n\t"
#define DIVQAT_DWP_ST_P2 \
    DIVQAT_DWP_ST_P1 "ldr     %[a0], %[ys]\n\t" DIVQAT_DWP_RQ("a1") "strb    r11, [%[y], %[a0]]\n\t"
#define DIVQAT_DWP_ST_P3                                                          \
    DIVQAT_DWP_ST_P2 DIVQAT_DWP_RQ("a2") "add     %[a1], %[y], %[a0], lsl #1\n\t" \
                                         "strb    r11, [%[a1]]\n\t"
#define DIVQAT_DWP_ST_P4 DIVQAT_DWP_ST_P3 DIVQAT_DWP_RQ("a3") "strb    r11, [%[a1], %[a0]]\n\t"
#define DIVQAT_DWP_ST_P5                                                           \
    DIVQAT_DWP_ST_P4 DIVQAT_DWP_RQ("a4") "add     %[a1], %[a1], %[a0], lsl #1\n\t" \
                                         "strb    r11, [%[a1]]\n\t"
#define DIVQAT_DWP_ST_P6 DIVQAT_DWP_ST_P5 DIVQAT_DWP_RQ("a5") "strb    r11, [%[a1], %[a0]]\n\t"
/* The accumulators past a0 start at the bias too. */
#define DIVQAT_DWP_MOV_P1 ""
#define DIVQAT_DWP_MOV_P2 "mov     %[a1], %[a0]\n\t"
#define DIVQAT_DWP_MOV_P3 DIVQAT_DWP_MOV_P2 "mov     %[a2], %[a0]\n\t"
#define DIVQAT_DWP_MOV_P4 DIVQAT_DWP_MOV_P3 "mov     %[a3], %[a0]\n\t"
#define DIVQAT_DWP_MOV_P5 DIVQAT_DWP_MOV_P4 "mov     %[a4], %[a0]\n\t"
#define DIVQAT_DWP_MOV_P6 DIVQAT_DWP_MOV_P5 "mov     %[a5], %[a0]\n\t"
/* One channel per pass: the bias, kernel row 0 at xr, rows 1 and 2 d1 and d2 bytes on, the epilogue (M, a, b next
 * in the stream), then xr back to the next channel's row 0 (back = nw4 - d1 - d2 bytes on) until the stream ends:
 * 17 instructions besides the rows and the epilogue. */
#define DIVQAT_DWP_LOOP_BODY(ROWX, MOV, ST)                            \
    "1:\n\t"                                                           \
    "ldr     %[a0], [%[wp]], #4\n\t" MOV ROWX "ldr     r8, %[d1]\n\t"  \
    "add     %[xr], %[xr], r8\n\t" ROWX "ldr     r8, %[d2]\n\t"        \
    "add     %[xr], %[xr], r8\n\t" ROWX "ldr     r8, [%[wp]], #4\n\t"  \
    "ldrd    r9, r10, [%[wp]], #8\n\t" ST "adds    %[y], %[y], #1\n\t" \
    "ldr     r8, %[back]\n\t"                                          \
    "add     %[xr], %[xr], r8\n\t"                                     \
    "ldr     r8, %[we]\n\t"                                            \
    "cmp     %[wp], r8\n\t"                                            \
    "bne     1b\n\t"
#define DIVQAT_DWP_LOOP(P, S)                                                                                          \
    __asm__ volatile(DIVQAT_DWP_LOOP_BODY(DIVQAT_DWP_ROW_P##P##_S##S("xr"), DIVQAT_DWP_MOV_P##P, DIVQAT_DWP_ST_P##P)   \
                     : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [a4] "=&r"(a4), [a5] "=&r"(a5), \
                       [xr] "+r"(xr), [wp] "+r"(wp), [y] "+r"(yy)                                                      \
                     : [ys] "m"(ys), [d1] "m"(d1), [d2] "m"(d2), [back] "m"(back), [we] "m"(we)                        \
                     : "r8", "r9", "r10", "r11", "cc", "memory")

/* Blocks of 1 to 3 pixels leave a3..a5 free: the row distances and the step back are kept there (r3, r6, r4)
 * instead of on the stack, 3 instructions fewer per channel. */
#define DIVQAT_DWP_LOOP_BODY_SMALL(ROWX, MOV, ST)                                    \
    "1:\n\t"                                                                         \
    "ldr     %[a0], [%[wp]], #4\n\t" MOV ROWX "add     %[xr], %[xr], %[d1]\n\t" ROWX \
    "add     %[xr], %[xr], %[d2]\n\t" ROWX "ldr     r8, [%[wp]], #4\n\t"             \
    "ldrd    r9, r10, [%[wp]], #8\n\t" ST "adds    %[y], %[y], #1\n\t"               \
    "add     %[xr], %[xr], %[back]\n\t"                                              \
    "ldr     r8, %[we]\n\t"                                                          \
    "cmp     %[wp], r8\n\t"                                                          \
    "bne     1b\n\t"
#define DIVQAT_DWP_LOOP_SMALL(P, S)                                                                           \
    __asm__ volatile(                                                                                         \
        DIVQAT_DWP_LOOP_BODY_SMALL(DIVQAT_DWP_ROW_P##P##_S##S("xr"), DIVQAT_DWP_MOV_P##P, DIVQAT_DWP_ST_P##P) \
        : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [xr] "+r"(xr), [wp] "+r"(wp), [y] "+r"(yy)          \
        : [d1] "r"(rd1), [d2] "r"(rd2), [back] "r"(rback), [ys] "m"(ys), [we] "m"(we)                         \
        : "r8", "r9", "r10", "r11", "cc", "memory")

/* A block of np (1..6) pixels at ring word wo over every channel in one asm loop (DSP). Registers pinned (none is
 * r7, the Thumb frame pointer) so allocation cannot fail; the loop state that does not fit is on the stack. */
DIVQAT_INLINE void divqat_dwp_cols_dsp(const uint32_t *const *rowp, int32_t wo, const uint32_t *stream, int32_t c,
                                       int32_t nw, int8_t *y, const int np, const int s) {
    register int32_t a0 __asm__("r0");
    register int32_t a1 __asm__("r1");
    register int32_t a2 __asm__("r2");
    register int32_t a3 __asm__("r3");
    register int32_t a4 __asm__("r6");
    register int32_t a5 __asm__("r4");
    register const uint32_t *xr __asm__("r12") = rowp[0] + wo;
    register int8_t *yy __asm__("r5") = y;
    register const uint32_t *wp __asm__("lr") = stream;
    const int32_t ys = c;
    const int32_t d1 = (int32_t)((const char *)rowp[1] - (const char *)rowp[0]);
    const int32_t d2 = (int32_t)((const char *)rowp[2] - (const char *)rowp[1]);
    const int32_t back = 4 * nw - d1 - d2;
    const uint32_t *const we = stream + c * DIVQAT_DWP_STREAM;
    if (np <= 3) {
        register int32_t rd1 __asm__("r3") = d1;
        register int32_t rd2 __asm__("r6") = d2;
        register int32_t rback __asm__("r4") = back;
        switch (np * 2 + s - 1) {
            DIVQAT_DW_CASES(2, DIVQAT_DWP_LOOP_SMALL, 1, 1, 2)
            DIVQAT_DW_CASES(4, DIVQAT_DWP_LOOP_SMALL, 2, 1, 2)
            DIVQAT_DW_CASES_LAST(6, DIVQAT_DWP_LOOP_SMALL, 3, 1, 2)
        }
        return;
    }
    switch (np * 2 + s - 1) {
        DIVQAT_DW_CASES(8, DIVQAT_DWP_LOOP, 4, 1, 2)
        DIVQAT_DW_CASES(10, DIVQAT_DWP_LOOP, 5, 1, 2)
        DIVQAT_DW_CASES_LAST(12, DIVQAT_DWP_LOOP, 6, 1, 2)
    }
    (void)a0, (void)a1, (void)a2, (void)a3, (void)a4, (void)a5, (void)xr;
}
#define DIVQAT_DWP_HAVE_LOOP 1
#endif

/* One block of np pixels (at ring word wo) over every channel. */
DIVQAT_INLINE void divqat_dwp_cols(const uint32_t *const *rowp, int32_t wo, const uint32_t *stream, int32_t c,
                                   int32_t nw, int8_t *y, const int np, const int s) {
#if defined(DIVQAT_DWP_HAVE_LOOP)
    divqat_dwp_cols_dsp(rowp, wo, stream, c, nw, y, np, s);
#else
    const uint32_t *r0 = rowp[0] + wo, *r1 = rowp[1] + wo, *r2 = rowp[2] + wo;
    for (int32_t ch = 0; ch < c; ++ch, stream += DIVQAT_DWP_STREAM, r0 += nw, r1 += nw, r2 += nw, ++y)
        divqat_dwp_block(r0, r1, r2, stream, y, c, np, s, 0);
#endif
}

/* One output row in blocks of 6 pixels (a stride-1 block starts at an even pixel: a word boundary), 17 or 18
 * instructions per kernel row for 18 MACs, then 7 = 4 + 3, 8 = 4 + 4 or one last block of 1 to 6. One call site
 * per block width, so each width's asm loop is in the code once. */
DIVQAT_INLINE void divqat_dwp_row(const uint32_t *const *rowp, const uint32_t *stream, int32_t c, int32_t nw,
                                  int32_t ow, int8_t *yr, const int s) {
    for (int32_t ox = 0, np; ox < ow; ox += np) {
        const int32_t rem = ow - ox, wo = ox * s / 2;
        np = rem >= 6 && rem != 7 && rem != 8 ? 6 : rem >= 7 ? 4 : rem;
        int8_t *const y = yr + ox * c;
        switch (np) { /* a constant width per call site: the asm loop's operands are literals */
#define DIVQAT_DWP_COLS_CASE(N)                            \
    case N:                                                \
        divqat_dwp_cols(rowp, wo, stream, c, nw, y, N, s); \
        break;
            DIVQAT_DWP_COLS_CASE(6)
            DIVQAT_DWP_COLS_CASE(5)
            DIVQAT_DWP_COLS_CASE(4)
            DIVQAT_DWP_COLS_CASE(3)
            DIVQAT_DWP_COLS_CASE(2)
#undef DIVQAT_DWP_COLS_CASE
        default:
            divqat_dwp_cols(rowp, wo, stream, c, nw, y, 1, s);
            break;
        }
    }
}

#if defined(DIVQAT_USE_divqat_dwconv_s8) && !defined(DIVQAT_MVE) /* the DSP / C tap-pair ring only */
static DIVQAT_NOINLINE void divqat_dwp_row_s1(const uint32_t *const *rowp, const uint32_t *stream, int32_t c,
                                              int32_t nw, int32_t ow, int8_t *yr) {
    divqat_dwp_row(rowp, stream, c, nw, ow, yr, 1);
}

static DIVQAT_NOINLINE void divqat_dwp_row_s2(const uint32_t *const *rowp, const uint32_t *stream, int32_t c,
                                              int32_t nw, int32_t ow, int8_t *yr) {
    divqat_dwp_row(rowp, stream, c, nw, ow, yr, 2);
}

/* The words of the 3 ring rows that no widening writes (wholly in the padding: [0, kl) and [kr, nw) of every
 * channel, as in divqat_dwp_widen_row) set to 0 once per layer; the rest of the ring is written before it is read. */
static void divqat_dwp_zero_pads(uint32_t *ring, int32_t iw, int32_t c, int32_t nw, int32_t pl) {
    int32_t k4[4];
    divqat_dwp_words(iw, nw, pl, k4);
    const int32_t kl = k4[0], kr = k4[3];
    uint32_t *const end = ring + 3 * c * nw;
    if (kl <= 1 && nw - kr <= 1) { /* the usual case, one word each side at most: single stores, not memset calls */
        if (kl) {
            for (uint32_t *row = ring; row < end; row += nw) row[0] = 0;
        }
        if (kr < nw) {
            for (uint32_t *row = ring + nw - 1; row < end; row += nw) row[0] = 0;
        }
        return;
    }
    for (uint32_t *row = ring; row < end; row += nw) {
        memset(row, 0, (size_t)kl * 4u);
        memset(row + kr, 0, (size_t)(nw - kr) * 4u);
    }
}

/* The whole layer on the pair ring: 3 ring rows and a zero row of c * nw words each in the scratch. */
static void divqat_dwp_body(const int8_t *x, const uint32_t *stream, const int32_t *d, int8_t *y, int8_t *scratch) {
    const int32_t ih = d[DQ_IH], iw = d[DQ_IW], c = d[DQ_CIN], oh = d[DQ_OH], ow = d[DQ_OW];
    const int32_t sh = d[DQ_SH], s = d[DQ_SW], pt = d[DQ_PT], pl = d[DQ_PL];
    const int32_t nw = s == 1 ? (ow + 3) / 2 : ow + 1, rw = c * nw;
    uint32_t *const ring = (uint32_t *)(void *)scratch;
    uint32_t *const zero_row = ring + 3 * rw;
    int32_t held[3] = {-1, -1, -1};
    const uint32_t *rowp[3];
    divqat_dwp_zero_pads(ring, iw, c, nw, pl);
    if (pt > 0 || (oh - 1) * sh - pt + 2 >= ih) memset(zero_row, 0, (size_t)rw * 4u); /* a window row outside */
    for (int32_t oy = 0; oy < oh; ++oy, y += ow * c) {
        DIVQAT_DW_WINDOW(rowp, ring, rw, zero_row, held, oy * sh - pt, ih,
                         divqat_dwp_widen_row(row, x + iy * iw * c, iw, c, nw, pl, d[DQ_ZPIN]))
        if (s == 1)
            divqat_dwp_row_s1(rowp, stream, c, nw, ow, y);
        else
            divqat_dwp_row_s2(rowp, stream, c, nw, ow, y);
    }
}

#endif /* DIVQAT_USE_divqat_dwconv_s8 */

#if defined(DIVQAT_USE_divqat_dwconv_plane_s8) && !defined(DIVQAT_MVE) /* the DSP / C plane path only */
/* ---- The whole-plane tap-pair path (DQ_DWPAIR | DIVQAT_DW_PLANE): stride 2 both ways, no top or left padding,
 * an even input width iw = 2 * ow (the last pixel's tap 2 is the right pad), 2..4 output pixels a row ----
 *
 * On a small plane (VWW's 6x6 -> 3x3) the ring's fixed costs dominate: per row and channel group the widening's
 * set-up and its odd third word, the padding words, per block the set-up. Here the input plane is widened as one
 * run: NHWC rows are contiguous and iw is even, so word k of a channel is the pixel pair (2k, 2k + 1) of the flat
 * plane, every word inside the input, and the two-words-a-pass loop runs over all ih * iw / 2 words of a channel
 * group with no border word and no per-row set-up. A channel owns cs = hw * ih words (hw = iw / 2 a row). An
 * output row is one block of ow pixels over every channel (one asm loop); its last pixel drops tap 2 (the right
 * pad column: the next word is the next row's), and when the window's row 2 is the bottom pad row the block runs
 * kernel rows 0 and 1 only: no padding is stored or read. */
#define DIVQAT_DW_PLANE 32 /* ops/depthwise.py: FLAG_DWPLANE */

/* The plane of every channel from x: n = ih * iw / 2 words per channel, channel stride cs words. */
static void divqat_dwp_widen_plane(uint32_t *plane, const int8_t *x, int32_t n, int32_t c, int32_t cs, int32_t zp) {
    const uint32_t off = ((uint32_t)(-zp) & 0xFFFFu) * 0x10001u;
    const int32_t ng = c / 4;
    if (ng > 0) {
        int32_t k = 0;
#if defined(DIVQAT_DWP_HAVE_WIDEN2)
        if (n >= 2) {
            divqat_dwp_widen2_dsp(x, c, plane, cs, off, n / 2, ng);
            k = 2 * (n / 2);
        }
#endif
        for (; k < n; ++k) divqat_dwp_word(plane + k, cs, x + 2 * k * c, 4, x + (2 * k + 1) * c, 4, off, ng);
    }
    for (int32_t ch = 4 * ng; ch < c; ++ch) { /* channels past the last group of 4, one at a time */
        uint32_t *const dst = plane + ch * cs;
        for (int32_t k = 0; k < n; ++k) {
            const int32_t v0 = x[2 * k * c + ch] - zp, v1 = x[(2 * k + 1) * c + ch] - zp;
            dst[k] = ((uint32_t)v0 & 0xFFFFu) | ((uint32_t)v1 << 16);
        }
    }
}

#if defined(DIVQAT_DWP_HAVE_LOOP)
/* One kernel row of a block of P pixels at stride 2 whose last pixel is at the right edge (no tap 2). */
#define DIVQAT_DWP_ROW_E2(B)             \
    "ldrd    r10, r11, [%[wp]], #8\n\t"  \
    "ldrd    r8, r9, [%[" B "], #0]\n\t" \
    "smlad   %[a0], r8, r10, %[a0]\n\t"  \
    "smlabb  %[a0], r9, r11, %[a0]\n\t"  \
    "smlad   %[a1], r9, r10, %[a1]\n\t"
#define DIVQAT_DWP_ROW_E3(B)            \
    DIVQAT_DWP_ROW_E2(B)                \
    "ldr     r8, [%[" B "], #8]\n\t"    \
    "smlabb  %[a1], r8, r11, %[a1]\n\t" \
    "smlad   %[a2], r8, r10, %[a2]\n\t"
#define DIVQAT_DWP_ROW_E4(B) DIVQAT_DWP_ROW_P3_S2(B) "smlad   %[a3], r9, r10, %[a3]\n\t"
/* The bottom row's block: kernel rows 0 and 1, row 2's weight words skipped. */
#define DIVQAT_DWP_LOOP_BODY_BOTTOM(ROWX, MOV, ST)                                                                  \
    "1:\n\t"                                                                                                        \
    "ldr     %[a0], [%[wp]], #4\n\t" MOV ROWX "add     %[xr], %[xr], %[d1]\n\t" ROWX "add     %[wp], %[wp], #8\n\t" \
    "ldr     r8, [%[wp]], #4\n\t"                                                                                   \
    "ldrd    r9, r10, [%[wp]], #8\n\t" ST "adds    %[y], %[y], #1\n\t"                                              \
    "add     %[xr], %[xr], %[back]\n\t"                                                                             \
    "ldr     r8, %[we]\n\t"                                                                                         \
    "cmp     %[wp], r8\n\t"                                                                                         \
    "bne     1b\n\t"
/* Every channel of one output row (BODY: SMALL, 3 kernel rows, or BOTTOM, 2): kernel rows d bytes apart, the next
 * channel's row back bytes on. */
#define DIVQAT_DWP_LOOP_PLANE(P, BODY)                                                                               \
    __asm__ volatile(                                                                                                \
        DIVQAT_DWP_LOOP_BODY_##BODY(DIVQAT_DWP_ROW_E##P("xr"), DIVQAT_DWP_MOV_P##P, DIVQAT_DWP_ST_P##P)              \
        : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [xr] "+r"(xr), [wp] "+r"(wp), [y] "+r"(yy) \
        : [d1] "r"(rd), [d2] "r"(rd), [back] "r"(rback), [ys] "m"(ys), [we] "m"(we)                                  \
        : "r8", "r9", "r10", "r11", "cc", "memory")
#endif

/* One output row of ow (2..4) pixels over every channel: row 0 of the window at xr0 (channel 0), rows hw words
 * apart, channels cs words apart; kr = 3 kernel rows, or 2 when row 2 is the bottom pad. */
static DIVQAT_NOINLINE void divqat_dwp_plane_row(const uint32_t *xr0, const uint32_t *stream, int32_t c, int32_t cs,
                                                 int32_t hw, int8_t *y, int32_t ow, int32_t kr) {
#if defined(DIVQAT_DWP_HAVE_LOOP)
    register int32_t a0 __asm__("r0");
    register int32_t a1 __asm__("r1");
    register int32_t a2 __asm__("r2");
    register int32_t a3 __asm__("r3");
    register const uint32_t *xr __asm__("r12") = xr0;
    register int8_t *yy __asm__("r5") = y;
    register const uint32_t *wp __asm__("lr") = stream;
    register int32_t rd __asm__("r6") = 4 * hw;
    register int32_t rback __asm__("r4") = 4 * cs - 4 * (kr - 1) * hw;
    const int32_t ys = c;
    const uint32_t *const we = stream + c * DIVQAT_DWP_STREAM;
    switch (2 * ow + (kr == 2)) { /* 2-4 pixels, 3 kernel rows (SMALL) or 2 (BOTTOM) */
        DIVQAT_DW_CASES(4, DIVQAT_DWP_LOOP_PLANE, 2, SMALL, BOTTOM)
        DIVQAT_DW_CASES(6, DIVQAT_DWP_LOOP_PLANE, 3, SMALL, BOTTOM)
        DIVQAT_DW_CASES_LAST(8, DIVQAT_DWP_LOOP_PLANE, 4, SMALL, BOTTOM)
    }
    (void)a0, (void)a1, (void)a2, (void)a3, (void)xr;
#else
    static const uint32_t zero[4]; /* window row 2 of the bottom row: the pad */
    for (int32_t ch = 0; ch < c; ++ch, xr0 += cs, stream += DIVQAT_DWP_STREAM, ++y)
        divqat_dwp_block(xr0, xr0 + hw, kr == 3 ? xr0 + 2 * hw : zero, stream, y, c, ow, 2, 1);
#endif
}

/* The whole layer on the plane path: c * cs words of scratch. */
static DIVQAT_NOINLINE void divqat_dwp_plane_body(const int8_t *x, const uint32_t *stream, const int32_t *d, int8_t *y,
                                                  int8_t *scratch) {
    const int32_t ih = d[DQ_IH], iw = d[DQ_IW], c = d[DQ_CIN], oh = d[DQ_OH], ow = d[DQ_OW];
    const int32_t hw = iw / 2, cs = hw * ih;
    uint32_t *const plane = (uint32_t *)(void *)scratch;
    divqat_dwp_widen_plane(plane, x, cs, c, cs, d[DQ_ZPIN]);
    for (int32_t oy = 0; oy < oh; ++oy, y += ow * c)
        divqat_dwp_plane_row(plane + 2 * oy * hw, stream, c, cs, hw, y, ow, 2 * oy + 2 < ih ? 3 : 2);
}
#endif /* DIVQAT_USE_divqat_dwconv_plane_s8 */

#if defined(DIVQAT_MVE)
/* ---- The Helium (MVE) tap-pair kernel (Cortex-M55): every DQ_DWPAIR layer of both entries ----
 *
 * Lanes are 4 channels as int32. Each input row is widened once into a ring row (3 rows, and a row of zeros for
 * window rows outside the input) of int16 x - zp, channel-group-major: group g owns wc columns of 4 int16 (8 bytes)
 * at row + g * gs, so every tap of a block is an immediate offset. Widening: per pixel, 8 channels a VLDRB.S16,
 * the zero point subtracted, one word scatter into two groups' columns. Per output row, per group, blocks of 5
 * pixels (then one of 1-4): per tap the 4 channels' weights gathered from the per-channel stream the DSP path
 * reads (ops/depthwise.py dw_pair_stream, int16 taps doubled), and per pixel VLDRH.S32, VMUL, VADD; the bias, M,
 * a and b gathered the same way. Epilogue: VRMULH is SMMLAR without its add, so
 * (VRMULH(acc2, M) + b + (acc2 >> 31)) >> a is the DSP epilogue lane by lane (TFLite's
 * MultiplyByQuantizedMultiplier), saturated to int8 and stored predicated (a last group of 1-3 channels). Scratch:
 * 4 rows of ceil(c / 4) * wc * 8 bytes (ops/depthwise.py _dw_mve_scratch).
 */
/* Byte offsets of 4 channels' streams (DIVQAT_DWP_STREAM words each): the gathers' lanes. */
static const uint32_t divqat_dwm_lanes[4]
    __attribute__((aligned(16))) = {0, 4 * DIVQAT_DWP_STREAM, 8 * DIVQAT_DWP_STREAM, 12 * DIVQAT_DWP_STREAM};

/* One tap of pixel ACC: input column at byte OFF of ring row R (VLDRH.S32), times the tap's weights (q6). */
#define DIVQAT_DWM_TAP(R, OFF, ACC)          \
    "vldrh.s32 q5, [%[" R "], #" OFF "]\n\t" \
    "vmul.i32  q5, q5, q6\n\t"               \
    "vadd.i32  " ACC ", " ACC ", q5\n\t"
#define DIVQAT_DWM_P1(R, A, B, C, D, E) DIVQAT_DWM_TAP(R, A, "q0")
#define DIVQAT_DWM_P2(R, A, B, C, D, E) DIVQAT_DWM_P1(R, A, B, C, D, E) DIVQAT_DWM_TAP(R, B, "q1")
#define DIVQAT_DWM_P3(R, A, B, C, D, E) DIVQAT_DWM_P2(R, A, B, C, D, E) DIVQAT_DWM_TAP(R, C, "q2")
#define DIVQAT_DWM_P4(R, A, B, C, D, E) DIVQAT_DWM_P3(R, A, B, C, D, E) DIVQAT_DWM_TAP(R, D, "q3")
#define DIVQAT_DWM_P5(R, A, B, C, D, E) DIVQAT_DWM_P4(R, A, B, C, D, E) DIVQAT_DWM_TAP(R, E, "q4")
#define DIVQAT_DWM_APPLY(M, ARGS) M ARGS
#define DIVQAT_DWM_PN(NP, R, O) DIVQAT_DWM_APPLY(DIVQAT_DWM_P##NP, (R, O))
/* Byte offsets of pixels 0..4 at tap t, stride s: 8 (s q + t). */
#define DIVQAT_DWM_O_1_0 "0", "8", "16", "24", "32"
#define DIVQAT_DWM_O_1_1 "8", "16", "24", "32", "40"
#define DIVQAT_DWM_O_1_2 "16", "24", "32", "40", "48"
#define DIVQAT_DWM_O_2_0 "0", "16", "32", "48", "64"
#define DIVQAT_DWM_O_2_1 "8", "24", "40", "56", "72"
#define DIVQAT_DWM_O_2_2 "16", "32", "48", "64", "80"
/* The weights of a tap: int16 at byte W of each channel's stream (gathered, sign-extended). */
#define DIVQAT_DWM_W(W)                 \
    "add       %[t], %[st], #" W "\n\t" \
    "vldrh.s32 q6, [%[t], q7]\n\t"
/* Kernel row R: taps at stream bytes W0..W2 ((w0, w1) then (w2, 0): 4 + 8r, 6 + 8r, 8 + 8r). */
#define DIVQAT_DWM_KROW(NP, S, R, W0, W1, W2)  \
    DIVQAT_DWM_W(W0)                           \
    DIVQAT_DWM_PN(NP, R, DIVQAT_DWM_O_##S##_0) \
    DIVQAT_DWM_W(W1)                           \
    DIVQAT_DWM_PN(NP, R, DIVQAT_DWM_O_##S##_1) DIVQAT_DWM_W(W2) DIVQAT_DWM_PN(NP, R, DIVQAT_DWM_O_##S##_2)
#define DIVQAT_DWM_INIT1           \
    "vldrw.u32 q7, [%[lanes]]\n\t" \
    "vldrw.u32 q0, [%[st], q7]\n\t"
#define DIVQAT_DWM_INIT2 DIVQAT_DWM_INIT1 "vmov q1, q0\n\t"
#define DIVQAT_DWM_INIT3 DIVQAT_DWM_INIT2 "vmov q2, q0\n\t"
#define DIVQAT_DWM_INIT4 DIVQAT_DWM_INIT3 "vmov q3, q0\n\t"
#define DIVQAT_DWM_INIT5 DIVQAT_DWM_INIT4 "vmov q4, q0\n\t"
/* The epilogue in phases over the block's accumulators (M, then b, then -a in q6 in turn). */
#define DIVQAT_DWM_RQ_M(ACC)             \
    "vrmulh.s32 q5, " ACC ", q6\n\t"     \
    "vshr.s32 " ACC ", " ACC ", #31\n\t" \
    "vadd.i32 " ACC ", " ACC ", q5\n\t"
#define DIVQAT_DWM_RQ_B(ACC) "vadd.i32 " ACC ", " ACC ", q6\n\t"
#define DIVQAT_DWM_RQ_A(ACC) "vshl.s32 " ACC ", " ACC ", q6\n\t"
#define DIVQAT_DWM_RQ_ST(ACC)          \
    "vqmovnb.s32 " ACC ", " ACC "\n\t" \
    "vqmovnb.s16 " ACC ", " ACC "\n\t" \
    "vpst\n\t"                         \
    "vstrbt.32 " ACC ", [%[y]]\n\t"    \
    "add %[y], %[y], %[c]\n\t"
#define DIVQAT_DWM_EACH1(M) M("q0")
#define DIVQAT_DWM_EACH2(M) DIVQAT_DWM_EACH1(M) M("q1")
#define DIVQAT_DWM_EACH3(M) DIVQAT_DWM_EACH2(M) M("q2")
#define DIVQAT_DWM_EACH4(M) DIVQAT_DWM_EACH3(M) M("q3")
#define DIVQAT_DWM_EACH5(M) DIVQAT_DWM_EACH4(M) M("q4")
#define DIVQAT_DWM_RQ(NP)                                                                \
    "add       %[t], %[st], #28\n\t"                                                     \
    "vldrw.u32 q6, [%[t], q7]\n\t" DIVQAT_DWM_EACH##NP(                                  \
        DIVQAT_DWM_RQ_M) "add       %[t], %[st], #36\n\t"                                \
                         "vldrw.u32 q6, [%[t], q7]\n\t" DIVQAT_DWM_EACH##NP(             \
                             DIVQAT_DWM_RQ_B) "add       %[t], %[st], #32\n\t"           \
                                              "vldrw.u32 q6, [%[t], q7]\n\t"             \
                                              "vneg.s32 q6, q6\n\t" DIVQAT_DWM_EACH##NP( \
                                                  DIVQAT_DWM_RQ_A) "vmsr p0, %[pr]\n\t" DIVQAT_DWM_EACH##NP(DIVQAT_DWM_RQ_ST)
/* A block of NP (1..5) pixels of one group at stride S: 9 (2 + 3 NP) + 2 + NP instructions for the window, 10 a
 * pixel and 10 for the epilogue (NP = 5: 217 for 180 MACs). Row pointers and y in low registers. */
#define DIVQAT_DWM_BLOCK(NP, S)                                                                                        \
    __asm__ volatile(DIVQAT_DWM_INIT##NP DIVQAT_DWM_KROW(NP, S, "xa", "4", "6", "8")                                   \
                         DIVQAT_DWM_KROW(NP, S, "xb", "12", "14", "16") DIVQAT_DWM_KROW(NP, S, "xc", "20", "22", "24") \
                             DIVQAT_DWM_RQ(NP)                                                                         \
                     : [y] "+l"(y), [t] "=&r"(t)                                                                       \
                     : [xa] "l"(xa), [xb] "l"(xb), [xc] "l"(xc), [st] "r"(st), [c] "r"(c), [pr] "r"(pr),               \
                       [lanes] "r"(divqat_dwm_lanes)                                                                   \
                     : "q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "memory")

/* Input row src (iw pixels of c int8) into ring row dst at column pl: int16 x - zp, group g's column ix at
 * dst + g * gs + 8 (pl + ix); 8 channels (two groups) a VLDRB.S16 and a word scatter, the last ones predicated. */
DIVQAT_INLINE void divqat_dwm_widen(int8_t *dst, const int8_t *src, int32_t iw, int32_t c, int32_t gs, int32_t pl,
                                    int32_t zp) {
    const uint32_t offs[4] = {0u, 4u, (uint32_t)gs, (uint32_t)gs + 4u}; /* lanes 0, 1: group 2j; 2, 3: 2j + 1 */
    const uint32x4_t off = vldrwq_u32(offs);
    const int32_t c8 = c & ~7, rem = c - c8;
    const mve_pred16_t pl16 = vctp16q((uint32_t)rem), pl32 = vctp32q((uint32_t)((rem + 1) / 2));
    dst += 8 * pl;
    int32_t ch = 0;
    for (; ch < c8; ch += 8, dst += 2 * gs) { /* per 8 channels, along the row: 5 instructions a pixel */
        const int8_t *sp = src + ch;
        int8_t *d = dst;
        for (int32_t ix = 0; ix < iw; ++ix, sp += c, d += 8)
            vstrwq_scatter_offset_s32((int32_t *)(void *)d, off,
                                      vreinterpretq_s32_s16(vsubq_n_s16(vldrbq_s16(sp), (int16_t)zp)));
    }
    if (rem) {
        const int8_t *sp = src + ch;
        int8_t *d = dst;
        for (int32_t ix = 0; ix < iw; ++ix, sp += c, d += 8)
            vstrwq_scatter_offset_p_s32((int32_t *)(void *)d, off,
                                        vreinterpretq_s32_s16(vsubq_n_s16(vldrbq_z_s16(sp, pl16), (int16_t)zp)), pl32);
    }
}

/* One output row: per group (stream st, its rows at r0..r2), blocks of 5 pixels then one of 1-4. */
DIVQAT_INLINE void divqat_dwm_row(const int8_t *r0, const int8_t *r1, const int8_t *r2, const uint32_t *stream,
                                  int8_t *yr, int32_t c, int32_t ow, int32_t gs, const int s) {
    for (int32_t g = 0; g < c; g += 4, stream += 4 * DIVQAT_DWP_STREAM, r0 += gs, r1 += gs, r2 += gs) {
        const uint32_t pr = (uint32_t)vctp32q((uint32_t)(c - g < 4 ? c - g : 4));
        const uint32_t *const st = stream;
        const int8_t *a = r0, *b = r1, *e = r2;
        int8_t *y = yr + g;
        uint32_t t;
        int32_t ox = 0;
        for (; ox + 5 <= ow; ox += 5, a += 40 * s, b += 40 * s, e += 40 * s) {
            const int8_t *const xa = a, *const xb = b, *const xc = e;
            if (s == 1)
                DIVQAT_DWM_BLOCK(5, 1);
            else
                DIVQAT_DWM_BLOCK(5, 2);
        }
        {
            const int8_t *const xa = a, *const xb = b, *const xc = e;
            switch ((ow - ox) * 2 + s - 1) { /* each block moves y over its pixels: to the next row's first */
                DIVQAT_DW_CASES(8, DIVQAT_DWM_BLOCK, 4, 1, 2)
                DIVQAT_DW_CASES(6, DIVQAT_DWM_BLOCK, 3, 1, 2)
                DIVQAT_DW_CASES(4, DIVQAT_DWM_BLOCK, 2, 1, 2)
                DIVQAT_DW_CASES(2, DIVQAT_DWM_BLOCK, 1, 1, 2)
            default:
                break;
            }
        }
        (void)t;
    }
}

static DIVQAT_NOINLINE void divqat_dwm_row_s1(const int8_t *r0, const int8_t *r1, const int8_t *r2,
                                              const uint32_t *stream, int8_t *yr, int32_t c, int32_t ow, int32_t gs) {
    divqat_dwm_row(r0, r1, r2, stream, yr, c, ow, gs, 1);
}

static DIVQAT_NOINLINE void divqat_dwm_row_s2(const int8_t *r0, const int8_t *r1, const int8_t *r2,
                                              const uint32_t *stream, int8_t *yr, int32_t c, int32_t ow, int32_t gs) {
    divqat_dwm_row(r0, r1, r2, stream, yr, c, ow, gs, 2);
}

/* The whole layer (a DQ_DWPAIR layer: 3x3, dilation 1, stride 1 or 2 across, any stride down, any C). */
static DIVQAT_NOINLINE void divqat_dwm_body(const int8_t *x, const uint32_t *stream, const int32_t *d, int8_t *y,
                                            int8_t *scratch) {
    const int32_t ih = d[DQ_IH], iw = d[DQ_IW], c = d[DQ_CIN], oh = d[DQ_OH], ow = d[DQ_OW];
    const int32_t sh = d[DQ_SH], s = d[DQ_SW], pt = d[DQ_PT], pl = d[DQ_PL], zp = d[DQ_ZPIN];
    const int32_t need = (ow - 1) * s + 3, wc = need > pl + iw ? need : pl + iw;
    const int32_t gs = 8 * wc, rb = gs * ((c + 3) / 4); /* bytes a group's row, a ring row */
    int8_t *const zero_row = scratch + 3 * rb;
    int32_t held[3] = {-1, -1, -1};
    for (int32_t i = 0; i < 4 * rb; i += 16) /* the padding columns and the zero row stay 0 (rb: 8 bytes a unit) */
        vstrbq_p_s8(scratch + i, vdupq_n_s8(0), vctp8q((uint32_t)(4 * rb - i)));
    for (int32_t oy = 0; oy < oh; ++oy, y += ow * c) {
        const int8_t *rowp[3];
        DIVQAT_DW_WINDOW(rowp, scratch, rb, zero_row, held, oy * sh - pt, ih,
                         divqat_dwm_widen(row, x + iy * iw * c, iw, c, gs, pl, zp))
        if (s == 1)
            divqat_dwm_row_s1(rowp[0], rowp[1], rowp[2], stream, y, c, ow, gs);
        else
            divqat_dwm_row_s2(rowp[0], rowp[1], rowp[2], stream, y, c, ow, gs);
    }
}
#endif /* DIVQAT_MVE */

#if defined(DIVQAT_USE_divqat_dwconv_plane_s8)
/* The plane entry (ops/depthwise.py _dw_plane_ok's layers); w is the pair stream, qp unused. Helium: the MVE
 * kernel, the DSP plane code not compiled. */
static DIVQAT_NOINLINE void divqat_dwconv_plane_s8(const int8_t *x, const int16_t *w, const int32_t *qp,
                                                   const int32_t *d, int8_t *y, int8_t *scratch) {
    (void)qp;
#if defined(DIVQAT_MVE)
    divqat_dwm_body(x, (const uint32_t *)(const void *)w, d, y, scratch);
#else
    divqat_dwp_plane_body(x, (const uint32_t *)(const void *)w, d, y, scratch);
#endif
}
#endif

#if defined(DIVQAT_USE_divqat_dwconv_s8) /* the ring entry's code only */
/* The ring entry (every depthwise layer but the whole-plane ones). */
static DIVQAT_NOINLINE void divqat_dwconv_s8(const int8_t *x, const int16_t *w, const int32_t *qp, const int32_t *d,
                                             int8_t *y, int8_t *scratch) {
    if (d[DQ_FLAGS] & DQ_DWPAIR) /* w: the stream; qp unused. Helium: the MVE kernel (the DSP tap-pair code not
                                    compiled) */
#if defined(DIVQAT_MVE)
        divqat_dwm_body(x, (const uint32_t *)(const void *)w, d, y, scratch);
#else
        divqat_dwp_body(x, (const uint32_t *)(const void *)w, d, y, scratch);
#endif
    else if (d[DQ_FLAGS] & DQ_FAST)
        divqat_dw_body(x, w, qp, d, y, scratch, 1);
    else
        divqat_dw_body(x, w, qp, d, y, scratch, 0);
}
#endif