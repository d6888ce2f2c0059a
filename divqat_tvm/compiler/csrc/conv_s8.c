/* divqat_conv_s8: int8 NHWC convolution (groups 1) as a GEMM over im2col'd K vectors.
 *
 * Weights (laid out offline): one row per output channel (OHWI order, K = kh*kw*cin values, zero-padded to a
 * multiple of 16), rows zero-padded to a multiple of 4 channels, and each group of 4 rows interleaved in
 * 16-byte chunks: [c0 k0..15][c1 k0..15][c2 k0..15][c3 k0..15][c0 k16..31]... One pointer then walks a group
 * (MVE reads its 4 rows at fixed offsets) and one row is 16 bytes every 64 (DSP). The kernels run over KP
 * values (K rounded up to 8): a last half chunk (KP % 16 == 8) reads its first 8 bytes only. Per-channel constants: divqat_nn.h (bias with the input zero point
 * folded in, so the K vector is raw input values, padding reads as zp_in and no per-call correction remains).
 *
 * Paths (chosen when this C is compiled):
 *  - DSP (Cortex-M4/M7/M33): two output pixels at a time; their K vectors are widened to int16 once
 *    (SXTB16, word pairs (x0,x2),(x1,x3) matching SXTB16 of the weight words) and interleaved, then a
 *    2 channels x 2 pixels block: per 4 K values 4 column words, 2 weight words, 4 SXTB16, 8 SMLAD
 *    (each column word feeds both channels, each widened weight word both pixels), accumulators in
 *    registers, requantized and stored at the end of the block.
 *  - MVE (Cortex-M55): two pixels x 4 channels per pass, 16 K values per VMLADAVA (each weight vector feeds
 *    both pixels; 16 instructions per 128 MACs, asm with the accumulators pinned to even registers), an
 *    8-value predicated tail, the fast epilogue vectorised over the 4 channels (VQRDMULH is
 *    SaturatingRoundingDoublingHighMul).
 *  - plain C elsewhere (and on the host, where the tests run it).
 * Odd channel and pixel counts are handled by duplication: the last channel (pixel) of an odd count is
 * computed twice and stored twice to the same place, so the inner loops have no tails; K tails are the
 * zero-padded weights.
 *
 * Scratch (from the model's arena): 9*KP bytes (DSP: an int8 K vector and the int16 columns of 4 pixels;
 * MVE: two int8 K vectors).
 */
#include "divqat_nn.h"

#if defined(DIVQAT_MVE)
/* 16 bytes per step, the last step tail-predicated (any length, any alignment). */
static void divqat_fill(int8_t *dst, int8_t v, int32_t n) {
    const int8x16_t vv = vdupq_n_s8(v);
    for (; n > 0; n -= 16, dst += 16) vstrbq_p_s8(dst, vv, vctp8q((uint32_t)n));
}

static void divqat_copy(int8_t *dst, const int8_t *src, int32_t n) {
    for (; n > 0; n -= 16, dst += 16, src += 16) {
        const mve_pred16_t p = vctp8q((uint32_t)n);
        vstrbq_p_s8(dst, vldrbq_z_s8(src, p), p);
    }
}
#else
static void divqat_fill(int8_t *dst, int8_t v, int32_t n) {
    if ((((uintptr_t)dst | (uint32_t)n) & 3u) == 0) {
        uint32_t w = (uint8_t)v * 0x01010101u;
        for (; n > 0; n -= 4, dst += 4) divqat_st32(dst, w);
        return;
    }
    for (; n > 0; --n) *dst++ = v;
}

/* Whole words through divqat_ld32/st32 at any alignment (memcpy: one LDR/STR where the core allows unaligned
 * access, ARMv7-M, bytes elsewhere), then the last 0-3 bytes. */
static void divqat_copy(int8_t *dst, const int8_t *src, int32_t n) {
    for (; n >= 4; n -= 4, dst += 4, src += 4) divqat_st32(dst, divqat_ld32(src));
    for (; n > 0; --n) *dst++ = *src++;
}
#endif

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

/* One weight word of 4 K values (at byte OFF of the row pointer) against the 4 pixels' columns (two LDMs):
 * 13 instructions, 16 MACs. */
#define DIVQAT_MAC1X4_QUAD(OFF)               \
    "ldr     r4, [%[w], #" OFF "]\n\t"        \
    "ldmia   %[col]!, {r8, r9, r10, r11}\n\t" \
    "sxtb16  r5, r4\n\t"                      \
    "sxtb16  r4, r4, ror #8\n\t"              \
    "smlad   %[a0], r8, r5, %[a0]\n\t"        \
    "smlad   %[a0], r9, r4, %[a0]\n\t"        \
    "smlad   %[a1], r10, r5, %[a1]\n\t"       \
    "smlad   %[a1], r11, r4, %[a1]\n\t"       \
    "ldmia   %[col]!, {r8, r9, r10, r11}\n\t" \
    "smlad   %[a2], r8, r5, %[a2]\n\t"        \
    "smlad   %[a2], r9, r4, %[a2]\n\t"        \
    "smlad   %[a3], r10, r5, %[a3]\n\t"       \
    "smlad   %[a3], r11, r4, %[a3]\n\t"

/* 4 pixels x all channels, one channel at a time: the widened weight word feeds the 4 pixels, the columns
 * come two pixels per LDM. A row's 16-byte chunks (4 quads, then 48 bytes of the group's other rows), then
 * an 8-value half chunk when KP % 16 == 8. */
DIVQAT_INLINE void divqat_gemm4_dsp(const uint32_t *cols, const int8_t *w, const int32_t *qp, const int32_t *d,
                                    int8_t *y0, int8_t *y1, int8_t *y2, int8_t *y3, const int fast) {
    const int32_t cout = d[DQ_COUT], n8 = d[DQ_KP] >> 3, kp4 = 4 * ((d[DQ_KP] + 15) & ~15);
    for (int32_t c = 0; c < cout; ++c, qp += DQ_QP_WORDS) {
        int32_t a0 = qp[0], a1 = a0, a2 = a0, a3 = a0, n = n8;
        const uint32_t *col = cols;
        const int8_t *wr = w + (c >> 2) * kp4 + (c & 3) * 16;
        /* n: 8-value halves left; whole chunks (two halves) in the loop, then an odd last half */
        __asm__ volatile(
            "subs    %[n], %[n], #2\n\t"
            "blt     2f\n\t"
            "1:\n\t" DIVQAT_MAC1X4_QUAD("0") DIVQAT_MAC1X4_QUAD("4") DIVQAT_MAC1X4_QUAD("8")
                DIVQAT_MAC1X4_QUAD("12") "add     %[w], %[w], #64\n\t"
                                         "subs    %[n], %[n], #2\n\t"
                                         "bge     1b\n\t"
                                         "2:\n\t"
                                         "adds    %[n], %[n], #2\n\t"
                                         "beq     3f\n\t" DIVQAT_MAC1X4_QUAD("0") DIVQAT_MAC1X4_QUAD("4") "3:\n\t"
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [col] "+r"(col), [w] "+r"(wr), [n] "+r"(n)
            :
            : "r4", "r5", "r8", "r9", "r10", "r11", "cc", "memory");
        if (fast) {
            const int32_t m = qp[1], a = qp[2], b = qp[3];
            const int32_t v0 = divqat_ssat8(divqat_rq_fast_v(a0 * 2, m, a, b)),
                          v1 = divqat_ssat8(divqat_rq_fast_v(a1 * 2, m, a, b));
            const int32_t v2 = divqat_ssat8(divqat_rq_fast_v(a2 * 2, m, a, b)),
                          v3 = divqat_ssat8(divqat_rq_fast_v(a3 * 2, m, a, b));
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

/* Four K values (one weight word at byte OFF of the channel's row) against the 4 pixels' int16 columns. */
#define DIVQAT_K8_QUAD(OFF)              \
    "ldr     r10, [%[wp], #" OFF "]\n\t" \
    "sxtb16  r11, r10\n\t"               \
    "sxtb16  r10, r10, ror #8\n\t"       \
    "ldrd    r8, r9, [%[cp]], #8\n\t"    \
    "smlad   %[a0], r8, r11, %[a0]\n\t"  \
    "smlad   %[a0], r9, r10, %[a0]\n\t"  \
    "ldrd    r8, r9, [%[cp]], #8\n\t"    \
    "smlad   %[a1], r8, r11, %[a1]\n\t"  \
    "smlad   %[a1], r9, r10, %[a1]\n\t"  \
    "ldrd    r8, r9, [%[cp]], #8\n\t"    \
    "smlad   %[a2], r8, r11, %[a2]\n\t"  \
    "smlad   %[a2], r9, r10, %[a2]\n\t"  \
    "ldrd    r8, r9, [%[cp]], #8\n\t"    \
    "smlad   %[a3], r8, r11, %[a3]\n\t"  \
    "smlad   %[a3], r9, r10, %[a3]\n\t"

/* K = 8 (KP 8), fast epilogue, 4 consecutive pixels: every channel in one asm loop (the generic block spends more
 * on its per-channel set-up than on 32 MACs): per channel the bias into 4 accumulators, 2 weight words widened,
 * 16 SMLAD over the column block, then the 4 outputs requantized and stored cout bytes apart; 69 instructions
 * for 32 MACs. Registers pinned (none is r7); the column base, output stride and end are "m" operands. */
static DIVQAT_NOINLINE void divqat_gemm4_k8_dsp(const uint32_t *cols, const int8_t *w, const int32_t *qp, int32_t cout,
                                                int8_t *y) {
    register int32_t a0 __asm__("r0");
    register int32_t a1 __asm__("r1");
    register int32_t a2 __asm__("r2");
    register int32_t a3 __asm__("r3");
    register const int8_t *wp __asm__("r4") = w;
    register const int32_t *q __asm__("r5") = qp;
    register int8_t *yy __asm__("r6") = y;
    register const uint32_t *cp __asm__("r12");
    const int32_t *qe = qp + cout * DQ_QP_WORDS;
    __asm__ volatile("1:\n\t"
                     "ldr     %[a0], [%[q]]\n\t"
                     "mov     %[a1], %[a0]\n\t"
                     "mov     %[a2], %[a0]\n\t"
                     "mov     %[a3], %[a0]\n\t"
                     "ldr     %[cp], %[cb]\n\t" DIVQAT_K8_QUAD("0")
                         DIVQAT_K8_QUAD("4") "adds    %[wp], %[wp], #16\n\t"
                                             "ldr     r8, [%[q], #4]\n\t"
                                             "ldrd    r9, r10, [%[q], #8]\n\t"
                                             "adds    %[q], %[q], #16\n\t"
                                             "ldr     %[cp], %[ys]\n\t"
                                             "lsl     %[a0], %[a0], #1\n\t"
                                             "smmlar  r11, %[a0], r8, r10\n\t"
                                             "add     r11, r11, %[a0], asr #31\n\t"
                                             "asr     r11, r11, r9\n\t"
                                             "ssat    r11, #8, r11\n\t"
                                             "strb    r11, [%[y]]\n\t"
                                             "lsl     %[a1], %[a1], #1\n\t"
                                             "smmlar  r11, %[a1], r8, r10\n\t"
                                             "add     r11, r11, %[a1], asr #31\n\t"
                                             "asr     r11, r11, r9\n\t"
                                             "ssat    r11, #8, r11\n\t"
                                             "strb    r11, [%[y], %[cp]]\n\t"
                                             "lsl     %[a2], %[a2], #1\n\t"
                                             "smmlar  r11, %[a2], r8, r10\n\t"
                                             "add     r11, r11, %[a2], asr #31\n\t"
                                             "asr     r11, r11, r9\n\t"
                                             "ssat    r11, #8, r11\n\t"
                                             "strb    r11, [%[y], %[cp], lsl #1]\n\t"
                                             "lsl     %[a3], %[a3], #1\n\t"
                                             "smmlar  r11, %[a3], r8, r10\n\t"
                                             "add     r11, r11, %[a3], asr #31\n\t"
                                             "asr     r11, r11, r9\n\t"
                                             "ssat    r11, #8, r11\n\t"
                                             "add     r8, %[y], %[cp], lsl #1\n\t"
                                             "strb    r11, [r8, %[cp]]\n\t"
                                             "adds    %[y], %[y], #1\n\t"
                                             "ldr     r8, %[qe]\n\t"
                                             "cmp     %[q], r8\n\t"
                                             "bne     1b\n\t"
                     : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [cp] "=&r"(cp), [wp] "+r"(wp),
                       [q] "+r"(q), [y] "+r"(yy)
                     : [cb] "m"(cols), [ys] "m"(cout), [qe] "m"(qe)
                     : "r8", "r9", "r10", "r11", "cc", "memory");
    (void)a0, (void)a1, (void)a2, (void)a3, (void)cp;
}

/* One channel's weight word (byte OFF of the group pointer), widened, against the column words r8, r9. */
#define DIVQAT_GEMV4_MAC1(OFF, ACC)               \
    "ldr     r10, [%[wp], #" OFF "]\n\t"          \
    "sxtb16  r11, r10\n\t"                        \
    "sxtb16  r10, r10, ror #8\n\t"                \
    "smlad   %[" ACC "], r8, r11, %[" ACC "]\n\t" \
    "smlad   %[" ACC "], r9, r10, %[" ACC "]\n\t"

/* Four K values of the pixel (one pair of int16 column words, then the next 32 bytes on) against the 4 channels'
 * weight words at byte offsets O0..O3 of the group pointer (rows 16 bytes apart): 21 instructions, 16 MACs. */
#define DIVQAT_GEMV4_QUAD(O0, O1, O2, O3)                                                      \
    "ldrd    r8, r9, [%[cp]], #32\n\t" DIVQAT_GEMV4_MAC1(O0, "a0") DIVQAT_GEMV4_MAC1(O1, "a1") \
        DIVQAT_GEMV4_MAC1(O2, "a2") DIVQAT_GEMV4_MAC1(O3, "a3")

/* One pixel (a fully connected layer, npix == 1) x 4 channels (DSP): per 4 K values the pixel's two int16
 * column words (slot 0 of the column block, 32 bytes apart) feed the 4 channels' widened weight words, 21
 * instructions for 16 MACs; whole 16-value chunks in the loop, then an 8-value half. The last group of an odd
 * channel count reads zero weight rows and stores only the real channels. */
static DIVQAT_NOINLINE void divqat_gemv4_dsp(const uint32_t *cols, const int8_t *w, const int32_t *qp, const int32_t *d,
                                             int8_t *y, const int fast) {
    const int32_t cout = d[DQ_COUT], n8 = d[DQ_KP] >> 3, kp4 = 4 * ((d[DQ_KP] + 15) & ~15);
    for (int32_t c = 0; c < cout; c += 4, qp += 4 * DQ_QP_WORDS, w += kp4) {
        int32_t acc[4], n = n8;
        divqat_bias4(acc, qp);
        int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
        const uint32_t *cp = cols;
        const int8_t *wp = w;
        __asm__ volatile(
            "subs    %[n], %[n], #2\n\t"
            "blt     2f\n\t"
            "1:\n\t" DIVQAT_GEMV4_QUAD("0", "16", "32", "48") DIVQAT_GEMV4_QUAD("4", "20", "36", "52")
                DIVQAT_GEMV4_QUAD("8", "24", "40", "56")
                    DIVQAT_GEMV4_QUAD("12", "28", "44", "60") "add     %[wp], %[wp], #64\n\t"
                                                              "subs    %[n], %[n], #2\n\t"
                                                              "bge     1b\n\t"
                                                              "2:\n\t"
                                                              "adds    %[n], %[n], #2\n\t"
                                                              "beq     3f\n\t" DIVQAT_GEMV4_QUAD("0", "16", "32", "48")
                                                                  DIVQAT_GEMV4_QUAD("4", "20", "36", "52") "3:\n\t"
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [cp] "+r"(cp), [wp] "+r"(wp), [n] "+r"(n)
            :
            : "r8", "r9", "r10", "r11", "cc", "memory");
        acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
        divqat_requant4(acc, qp, d, y + c, cout - c, fast);
    }
}

DIVQAT_INLINE void divqat_conv_body(const int8_t *x, const int8_t *w, const int32_t *qp, const int32_t *d, int8_t *y,
                                    int8_t *scratch, const int fast) {
    const int32_t ow = d[DQ_OW], npix = d[DQ_OH] * ow, cout = d[DQ_COUT], kp = d[DQ_KP];
    uint32_t *cols = (uint32_t *)(void *)(scratch + kp);
    int32_t oy = 0, ox = 0;
    if (npix == 1) { /* a fully connected layer: one pixel, 4 channels per pass */
        divqat_columns(cols, x, d, 0, 0, scratch);
        divqat_gemv4_dsp(cols, w, qp, d, y, fast);
        return;
    }
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
        if (fast && kp == 8 && p + 3 < npix)
            divqat_gemm4_k8_dsp(cols, w, qp, cout, out[0]);
        else
            divqat_gemm4_dsp(cols, w, qp, d, out[0], out[1], out[2], out[3], fast);
    }
}

#elif defined(DIVQAT_MVE)
/* The 4-channel group's requantization (fast epilogue) of one pixel's accumulators, stored (predicated to
 * the real channels). */
DIVQAT_INLINE void divqat_rq4_mve(int32_t a0, int32_t a1, int32_t a2, int32_t a3, const divqat_rq_mve *rq, int8_t *y,
                                  mve_pred16_t p) {
    int32x4_t v = vdupq_n_s32(a0);
    v = vsetq_lane_s32(a1, v, 1);
    v = vsetq_lane_s32(a2, v, 2);
    v = vsetq_lane_s32(a3, v, 3);
    vstrbq_p_s32(y, divqat_rq_fast_mve(v, rq), p);
}

/* acc[0..3] (pixel a) and acc[4..7] (pixel b) += the 4 channels' dot products over n whole 16-value vectors
 * (the group's chunks from w). Asm: 8 accumulators pinned to the even registers VMLADAVA needs (r0..r12, lr),
 * the pointers and count to odd ones other than r7 (the Thumb frame pointer); out of line, so that nothing
 * else is live across it. 16 instructions per 128 MACs. */
static DIVQAT_NOINLINE void divqat_mac4x2_mve(int32_t *acc, const int8_t *xa, const int8_t *xb, const int8_t *w,
                                              int32_t nv) {
    DIVQAT_MVE_ACC8_IN(acc);
    register const int8_t *pa __asm__("r1") = xa;
    register const int8_t *pb __asm__("r3") = xb;
    register const int8_t *pw __asm__("r5") = w;
    register int32_t n __asm__("r9") = nv;
    __asm__ volatile("1:\n\t"
                     "vldrb.8      q0, [%[pa]], #16\n\t"
                     "vldrb.8      q1, [%[pb]], #16\n\t"
                     "vldrb.8      q2, [%[pw], #16]\n\t"
                     "vldrb.8      q3, [%[pw], #32]\n\t"
                     "vmladava.s8  %[a1], q0, q2\n\t"
                     "vmladava.s8  %[b1], q1, q2\n\t"
                     "vldrb.8      q2, [%[pw], #48]\n\t"
                     "vmladava.s8  %[a2], q0, q3\n\t"
                     "vmladava.s8  %[b2], q1, q3\n\t"
                     "vldrb.8      q3, [%[pw]], #64\n\t"
                     "vmladava.s8  %[a3], q0, q2\n\t"
                     "vmladava.s8  %[b3], q1, q2\n\t"
                     "vmladava.s8  %[a0], q0, q3\n\t"
                     "vmladava.s8  %[b0], q1, q3\n\t"
                     "subs         %[n], %[n], #1\n\t"
                     "bne          1b\n\t"
                     : DIVQAT_MVE_ACC8_OPS, [pa] "+r"(pa), [pb] "+r"(pb), [pw] "+r"(pw), [n] "+r"(n)
                     :
                     : "q0", "q1", "q2", "q3", "cc", "memory");
    DIVQAT_MVE_ACC8_OUT(acc);
}

/* Two pixels (K vectors xa, xb; outputs ya, yb) x all channels, 4 channels per pass. */
DIVQAT_INLINE void divqat_gemm2_mve(const int8_t *xa, const int8_t *xb, const int8_t *w, const int32_t *qp,
                                    const int32_t *d, int8_t *ya, int8_t *yb, const int fast) {
    const int32_t cout = d[DQ_COUT], kp = d[DQ_KP], nfull = kp >> 4, kp4 = 4 * ((kp + 15) & ~15);
    const uint32x4_t off = divqat_qp_lanes();
    for (int32_t c = 0; c < cout; c += 4, qp += 4 * DQ_QP_WORDS, w += kp4) {
        int32_t acc[8];
        divqat_bias4(acc, qp);
        divqat_bias4(acc + 4, qp);
        if (nfull) divqat_mac4x2_mve(acc, xa, xb, w, nfull);
        int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], b0 = acc[4], b1 = acc[5], b2 = acc[6], b3 = acc[7];
        if (kp & 8) { /* the half chunk: 8 values of each pixel against the first 8 of each row's chunk */
            const mve_pred16_t p = vctp8q(8);
            const int8_t *wt = w + nfull * 64;
            const int8x16_t va = vldrbq_z_s8(xa + nfull * 16, p), vb = vldrbq_z_s8(xb + nfull * 16, p);
            int8x16_t wv = vld1q_s8(wt); /* the chunk's second half is zero */
            a0 = vmladavaq_s8(a0, va, wv);
            b0 = vmladavaq_s8(b0, vb, wv);
            wv = vld1q_s8(wt + 16);
            a1 = vmladavaq_s8(a1, va, wv);
            b1 = vmladavaq_s8(b1, vb, wv);
            wv = vld1q_s8(wt + 32);
            a2 = vmladavaq_s8(a2, va, wv);
            b2 = vmladavaq_s8(b2, vb, wv);
            wv = vld1q_s8(wt + 48);
            a3 = vmladavaq_s8(a3, va, wv);
            b3 = vmladavaq_s8(b3, vb, wv);
        }
        if (fast) {
            const divqat_rq_mve rq = divqat_rq_mve_load(qp, off);
            const mve_pred16_t p = vctp32q((uint32_t)(cout - c));
            divqat_rq4_mve(a0, a1, a2, a3, &rq, ya + c, p);
            divqat_rq4_mve(b0, b1, b2, b3, &rq, yb + c, p);
        } else {
            const int32_t as[4] = {a0, a1, a2, a3}, bs[4] = {b0, b1, b2, b3};
            for (int32_t i = 0; i < 4 && c + i < cout; ++i) {
                ya[c + i] = divqat_requant(as[i], qp + i * DQ_QP_WORDS, d, 0);
                yb[c + i] = divqat_requant(bs[i], qp + i * DQ_QP_WORDS, d, 0);
            }
        }
    }
}

/* One pixel (a fully connected layer) x 4 channels (MVE): per 16 K values one load of the K vector and, per
 * channel, one weight load and one VMLADAVA (9 instructions for 64 MACs); the 8-value half chunk predicated. */
static DIVQAT_NOINLINE void divqat_gemv4_mve(const int8_t *xk, const int8_t *w, const int32_t *qp, const int32_t *d,
                                             int8_t *y, const int fast) {
    const int32_t cout = d[DQ_COUT], kp = d[DQ_KP], nfull = kp >> 4, kp4 = 4 * ((kp + 15) & ~15);
    const uint32x4_t off = divqat_qp_lanes();
    for (int32_t c = 0; c < cout; c += 4, qp += 4 * DQ_QP_WORDS, w += kp4) {
        int32_t acc[4];
        divqat_bias4(acc, qp);
        int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
        const int8_t *wt = w, *xv = xk;
        for (int32_t n = 0; n < nfull; ++n, wt += 64, xv += 16) {
            const int8x16_t v = vld1q_s8(xv);
            a0 = vmladavaq_s8(a0, v, vld1q_s8(wt));
            a1 = vmladavaq_s8(a1, v, vld1q_s8(wt + 16));
            a2 = vmladavaq_s8(a2, v, vld1q_s8(wt + 32));
            a3 = vmladavaq_s8(a3, v, vld1q_s8(wt + 48));
        }
        if (kp & 8) { /* the half chunk: 8 values against the first 8 of each row's chunk (its second half is zero) */
            const int8x16_t v = vldrbq_z_s8(xv, vctp8q(8));
            a0 = vmladavaq_s8(a0, v, vld1q_s8(wt));
            a1 = vmladavaq_s8(a1, v, vld1q_s8(wt + 16));
            a2 = vmladavaq_s8(a2, v, vld1q_s8(wt + 32));
            a3 = vmladavaq_s8(a3, v, vld1q_s8(wt + 48));
        }
        if (fast) {
            const divqat_rq_mve rq = divqat_rq_mve_load(qp, off);
            divqat_rq4_mve(a0, a1, a2, a3, &rq, y + c, vctp32q((uint32_t)(cout - c)));
        } else {
            const int32_t as[4] = {a0, a1, a2, a3};
            divqat_requant4(as, qp, d, y + c, cout - c, 0);
        }
    }
}

DIVQAT_INLINE void divqat_conv_body(const int8_t *x, const int8_t *w, const int32_t *qp, const int32_t *d, int8_t *y,
                                    int8_t *scratch, const int fast) {
    const int32_t ow = d[DQ_OW], npix = d[DQ_OH] * ow, cout = d[DQ_COUT], kp = d[DQ_KP];
    int32_t oy = 0, ox = 0;
    if (npix == 1) { /* a fully connected layer: one pixel, 4 channels per pass */
        divqat_gemv4_mve(divqat_conv_src(x, d, 0, 0, scratch), w, qp, d, y, fast);
        return;
    }
    for (int32_t p = 0; p < npix; p += 2) {
        const int8_t *xa = divqat_conv_src(x, d, oy, ox, scratch), *xb = xa;
        int8_t *ya = y + p * cout, *yb = ya;
        if (++ox == ow) ox = 0, ++oy;
        if (p + 1 < npix) { /* an odd last pixel pairs with itself: same values stored twice to the same place */
            xb = divqat_conv_src(x, d, oy, ox, scratch + kp);
            yb = ya + cout;
            if (++ox == ow) ox = 0, ++oy;
        }
        divqat_gemm2_mve(xa, xb, w, qp, d, ya, yb, fast);
    }
}

#else
/* Weight of channel c at K index k in the chunked layout (see the top of this file). */
DIVQAT_INLINE int32_t divqat_w_at(const int8_t *w, int32_t kp, int32_t c, int32_t k) {
    return w[(c >> 2) * 4 * ((kp + 15) & ~15) + (k >> 4) * 64 + (c & 3) * 16 + (k & 15)];
}

DIVQAT_INLINE void divqat_conv_body(const int8_t *x, const int8_t *w, const int32_t *qp, const int32_t *d, int8_t *y,
                                    int8_t *scratch, const int fast) {
    const int32_t ow = d[DQ_OW], npix = d[DQ_OH] * ow, cout = d[DQ_COUT], kp = d[DQ_KP];
    int32_t oy = 0, ox = 0;
    for (int32_t p = 0; p < npix; ++p, y += cout) {
        const int8_t *col = divqat_conv_src(x, d, oy, ox, scratch);
        if (++ox == ow) ox = 0, ++oy;
        for (int32_t c = 0; c < cout; ++c) {
            const int32_t *q = qp + c * DQ_QP_WORDS;
            int32_t acc = q[0];
            for (int32_t k = 0; k < kp; ++k) acc += (int32_t)col[k] * divqat_w_at(w, kp, c, k);
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
