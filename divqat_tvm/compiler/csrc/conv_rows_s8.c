/* divqat_conv_rows_s8 / divqat_conv_rows_add_s8: int8 NHWC convolution (groups 1, dilation 1, cin % 16 == 0)
 * that reads its input rows where they are: no scratch, no im2col.
 *
 * Weights (laid out offline, ops/conv.py rows_weights): int16, per group of 4 output channels, per 4 K values (OHWI
 * order) and per channel two words, (w0, w2) and (w1, w3): the halves SXTB16 and SXTB16 ROR #8 make of an input
 * word. [group][quad][channel][w0 w2 w1 w3]: 32 bytes per quad of a group, K = kh * kw * cin values.
 * Per-channel words (divqat_nn.h): bias' = bias - zp_in * sum(w) over every tap, as if the window were whole. A
 * pixel whose window leaves the input (its clipped rectangle of taps is smaller) adds, per tap left out, that
 * tap's padding term corr[group][tap][channel] = zp_in * sum_ci w[channel][tap][ci]: exactly what reading zp_in
 * there would have added.
 *
 * Fused residual ADD (divqat_conv_rows_add_s8): every output value v of the conv (requantized and clamped as
 * divqat_conv_s8 stores it) becomes TFLite's int8 ADD of v and the residual input's element r at the same index,
 * which is read just before the result is written to that index. The output may therefore be the residual itself
 * (written in place); the conv reads only its own input. ADD's two input stages, MultiplyByQuantizedMultiplier(
 * (q - zp) << 20, M, shift) of an int8 q, are tables of the 256 values (ops/conv.py fused_add_words, computed with the
 * reference's own integer math), so an element costs two loads, an add and the output stage (the conv epilogue's
 * fast form with zp_out folded: M > 2^30, 1 <= shift <= 22, |sum| < 2^29, checked offline).
 *
 * Both entries take layers whose conv epilogue is the fast one (DQ_FAST) and, fused, whose ADD has the fast output
 * stage (checked offline, ops/conv.py rows_call / fused_add_words): one instantiation each keeps the code small.
 *
 * Paths (chosen when this C is compiled):
 *  - DSP (Cortex-M4/M7/M33): 1 pixel x 4 channels, asm: per 4 K values one input word, SXTB16 twice, two LDMs of
 *    the 4 channels' widened weight words, 8 SMLAD (13 instructions, 16 MACs), all kernel rows in one call.
 *  - MVE (Cortex-M55): 2 pixels x 4 channels, asm: per 16 K values both pixels' input vectors, the 4 channels'
 *    weights as one byte gather each (the low bytes of their int16 words), 8 VMLADAVA; a pixel whose window is
 *    clipped unlike its neighbour's alone (1 pixel x 4 channels).
 *  - plain C elsewhere (and on the host, where the tests run it).
 * Output pixels in row-major order, blocks of 1 (DSP, C) or 2 (MVE) pixels starting at multiples of their size.
 */
#include "divqat_nn.h"

/* The fused ADD's words: the stage tables of the conv's value and of the residual (index q + 128), then the output
 * stage: M, its right shift a, b = 2^(a-1) + (zp_out << a), the clamp, zp_out. */
enum { DF_TC = 0, DF_TR = 256, DF_MO = 512, DF_AO, DF_BO, DF_LO, DF_HI, DF_ZPO, DF_NWORDS };

/* ADD(v, r) of one element; mo, ao, bo, lo, hi: the output stage's words, in locals. */
DIVQAT_INLINE int8_t divqat_add_fused(int32_t v, int32_t r, const int32_t *df, int32_t mo, int32_t ao, int32_t bo,
                                      int32_t lo, int32_t hi) {
    const int32_t s = df[DF_TC + 128 + v] + df[DF_TR + 128 + r];
    return (int8_t)divqat_clamp((divqat_smmlar(s * 2, mo, bo) + (s >> 31)) >> ao, lo, hi);
}

/* The taps of pixel (oy, ox)'s window that fall inside the input: rows [ky0, ky1), columns [kx0, kx1). */
typedef struct {
    int32_t ky0, ky1, kx0, kx1;
} divqat_rect;

DIVQAT_INLINE divqat_rect divqat_rows_rect(const int32_t *d, int32_t oy, int32_t ox) {
    const int32_t y0 = oy * d[DQ_SH] - d[DQ_PT], x0 = ox * d[DQ_SW] - d[DQ_PL];
    divqat_rect r;
    r.ky0 = y0 < 0 ? -y0 : 0;
    r.ky1 = d[DQ_IH] - y0 < d[DQ_KH] ? d[DQ_IH] - y0 : d[DQ_KH];
    r.kx0 = x0 < 0 ? -x0 : 0;
    r.kx1 = d[DQ_IW] - x0 < d[DQ_KW] ? d[DQ_IW] - x0 : d[DQ_KW];
    return r;
}

DIVQAT_INLINE int divqat_rect_empty(divqat_rect r) { return r.ky0 >= r.ky1 || r.kx0 >= r.kx1; }

DIVQAT_INLINE int divqat_rect_whole(divqat_rect r, const int32_t *d) {
    return r.ky0 == 0 && r.kx0 == 0 && r.ky1 == d[DQ_KH] && r.kx1 == d[DQ_KW];
}

/* acc[0..3] += the padding terms of the taps outside the rectangle (border pixels only: out of line). */
static DIVQAT_NOINLINE void divqat_rows_pad(int32_t *acc, const int32_t *corr, divqat_rect r, const int32_t *d) {
    const int32_t kh = d[DQ_KH], kw = d[DQ_KW];
    for (int32_t ky = 0; ky < kh; ++ky)
        for (int32_t kx = 0; kx < kw; ++kx) {
            if (ky >= r.ky0 && ky < r.ky1 && kx >= r.kx0 && kx < r.kx1) continue;
            const int32_t *t = corr + (ky * kw + kx) * 4;
            acc[0] += t[0], acc[1] += t[1], acc[2] += t[2], acc[3] += t[3];
        }
}

/* The group's 4 (or fewer: n) output values of one pixel (the fast epilogue), stored at y; ADDed to the residual's
 * element at the same index when `fused`, that element read just before the result is written. */
DIVQAT_INLINE void divqat_rows_store(const int32_t *acc, const int32_t *qp, int8_t *y, int32_t n, const int8_t *res,
                                     const int32_t *df, const int fused) {
    int32_t mo = 0, ao = 0, bo = 0, lo = 0, hi = 0;
    if (fused) mo = df[DF_MO], ao = df[DF_AO], bo = df[DF_BO], lo = df[DF_LO], hi = df[DF_HI];
    for (int32_t i = 0; i < 4; ++i) { /* unrolled; the last group of an odd count stores its real channels */
        if (i >= n) break;
        const int32_t v = divqat_ssat8(divqat_rq_fast(acc[i], qp + i * DQ_QP_WORDS));
        y[i] = fused ? divqat_add_fused(v, res[i], df, mo, ao, bo, lo, hi) : (int8_t)v;
    }
}

/* Where the rectangle starts in the input and the weights, and the steps between its rows (the asm reads them). */
typedef struct {
    const int8_t *x;
    int32_t woff;                      /* int16 words */
    int32_t rows, nq16, rstep, wstep2; /* wstep2: bytes */
} divqat_span;

DIVQAT_INLINE divqat_span divqat_rows_span(const int8_t *x, const int32_t *d, int32_t oy, int32_t ox, divqat_rect r) {
    const int32_t iw = d[DQ_IW], cin = d[DQ_CIN], kw = d[DQ_KW], run = r.kx1 - r.kx0;
    const int32_t iy = oy * d[DQ_SH] - d[DQ_PT] + r.ky0, ix = ox * d[DQ_SW] - d[DQ_PL] + r.kx0;
    divqat_span s;
    s.x = x + (iy * iw + ix) * cin;
    s.woff = (r.ky0 * kw + r.kx0) * cin * 4; /* 4 channels x 4 int16 per quad: 4 words per K value */
    s.rows = r.ky1 - r.ky0;
    s.nq16 = run * cin >> 4;
    s.rstep = (iw - run) * cin;
    s.wstep2 = (kw - run) * cin * 8;
    return s;
}

/* The asm's loops over the rectangle (DSP and MVE alike): per kernel row (label 1) its count of 16-value steps into
 * %[n], the steps (label 2), then ROW_NEXT_X moves the input pointer %[pa] to the next row (rstep on; T: a scratch
 * register), ROW_NEXT_B pixel b's %[pb] by the same step, and ROW_NEXT_W the weights %[pw] (wstep2 on), counts the rows
 * down (kept in memory) and loops. */
#define DIVQAT_ROWS_ROW_START \
    "1:\n\t"                  \
    "ldr     %[n], %[nq]\n\t" \
    "2:\n\t"
#define DIVQAT_ROWS_STEP_END     \
    "subs    %[n], %[n], #1\n\t" \
    "bne     2b\n\t"
#define DIVQAT_ROWS_ROW_NEXT_X(T) \
    "ldr     " T ", %[rs]\n\t"    \
    "add     %[pa], %[pa], " T "\n\t"
#define DIVQAT_ROWS_ROW_NEXT_B(T) "add     %[pb], %[pb], " T "\n\t"
#define DIVQAT_ROWS_ROW_NEXT_W(T)     \
    "ldr     " T ", %[ws]\n\t"        \
    "add     %[pw], %[pw], " T "\n\t" \
    "ldr     " T ", %[rows]\n\t"      \
    "subs    " T ", " T ", #1\n\t"    \
    "str     " T ", %[rows]\n\t"      \
    "bne     1b\n\t"
/* Their operands: the step count and row count (outputs), the counts and steps read from the span *sp. */
#define DIVQAT_ROWS_LOOP_OUTS [n] "=&r"(n), [rows] "+m"(rows)
#define DIVQAT_ROWS_SPAN_INS(sp) [nq] "m"((sp)->nq16), [rs] "m"((sp)->rstep), [ws] "m"((sp)->wstep2)

#if defined(DIVQAT_DSP)
/* Four K values: one input word widened to (x0, x2), (x1, x3), against the 4 channels' weight words. */
#define DIVQAT_ROWS_QUAD                      \
    "ldr     r8, [%[pa]], #4\n\t"             \
    "sxtb16  r9, r8\n\t"                      \
    "sxtb16  r8, r8, ror #8\n\t"              \
    "ldmia   %[pw]!, {r10, r11, r12, lr}\n\t" \
    "smlad   %[a0], r9, r10, %[a0]\n\t"       \
    "smlad   %[a0], r8, r11, %[a0]\n\t"       \
    "smlad   %[a1], r9, r12, %[a1]\n\t"       \
    "smlad   %[a1], r8, lr, %[a1]\n\t"        \
    "ldmia   %[pw]!, {r10, r11, r12, lr}\n\t" \
    "smlad   %[a2], r9, r10, %[a2]\n\t"       \
    "smlad   %[a2], r8, r11, %[a2]\n\t"       \
    "smlad   %[a3], r9, r12, %[a3]\n\t"       \
    "smlad   %[a3], r8, lr, %[a3]\n\t"

/* acc[0..3] += one pixel's rectangle (sp) against a group's weights (w: the group's first word of the rectangle):
 * every row in one asm loop (16 K values per inner step, 54 instructions for 64 MACs), the counts and steps between
 * rows read from *sp. */
static DIVQAT_NOINLINE void divqat_rows4_dsp(int32_t *acc, const int8_t *x, const int16_t *w, const divqat_span *sp) {
    register int32_t a0 __asm__("r0") = acc[0];
    register int32_t a1 __asm__("r1") = acc[1];
    register int32_t a2 __asm__("r2") = acc[2];
    register int32_t a3 __asm__("r3") = acc[3];
    register const int8_t *pa __asm__("r4") = x;
    register const int16_t *pw __asm__("r5") = w;
    register int32_t n __asm__("r6");
    int32_t rows = sp->rows;
    __asm__ volatile(DIVQAT_ROWS_ROW_START DIVQAT_ROWS_QUAD DIVQAT_ROWS_QUAD DIVQAT_ROWS_QUAD DIVQAT_ROWS_QUAD
                         DIVQAT_ROWS_STEP_END DIVQAT_ROWS_ROW_NEXT_X("r10") DIVQAT_ROWS_ROW_NEXT_W("r10")
                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [pa] "+r"(pa), [pw] "+r"(pw),
                       DIVQAT_ROWS_LOOP_OUTS
                     : DIVQAT_ROWS_SPAN_INS(sp)
                     : "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}
#define DIVQAT_ROWS4(acc, x, w, sp, d) divqat_rows4_dsp(acc, x, w, sp)

#elif defined(DIVQAT_MVE)
/* Byte offsets of channel c's 16 weights (K values 0..15 of a 4-quad step) in the int16 layout: the low byte of
 * each int16 is the int8 weight. */
static const uint8_t divqat_rows_gather[64] __attribute__((aligned(16))) = {
    0,   4,   2,   6,   32, 36, 34,  38,  64,  68,  66, 70, 96, 100, 98, 102, 8,   12,  10,  14, 40, 44,
    42,  46,  72,  76,  74, 78, 104, 108, 106, 110, 16, 20, 18, 22,  48, 52,  50,  54,  80,  84, 82, 86,
    112, 116, 114, 118, 24, 28, 26,  30,  56,  60,  58, 62, 88, 92,  90, 94,  120, 124, 122, 126};

/* The 4 channels' gather offsets (divqat_rows_gather, operand %[gt]) into q4..q7 through the scratch register T. */
#define DIVQAT_ROWS_GATHER_LOAD(T)      \
    "ldr          " T ", %[gt]\n\t"     \
    "vldrb.u8     q4, [" T "]\n\t"      \
    "vldrb.u8     q5, [" T ", #16]\n\t" \
    "vldrb.u8     q6, [" T ", #32]\n\t" \
    "vldrb.u8     q7, [" T ", #48]\n\t"

/* acc[0..3] (pixel a, input xa) and acc[4..7] (pixel b, xb) += the two pixels' rectangles (of the same shape, *sp)
 * against a group's weights (w: the group's first word of the rectangle): per 16 K values two input loads, 4
 * weight gathers, 8 VMLADAVA. Accumulators pinned to the even registers VMLADAVA needs, as in
 * divqat_mac4x2_mve; the counts and steps between rows read from *sp. */
static DIVQAT_NOINLINE void divqat_rows4x2_mve(int32_t *acc, const int8_t *xa, const int8_t *xb, const int16_t *w,
                                               const divqat_span *sp) {
    DIVQAT_MVE_ACC8_IN(acc);
    register const int8_t *pa __asm__("r1") = xa;
    register const int8_t *pb __asm__("r3") = xb;
    register const int16_t *pw __asm__("r5") = w;
    register int32_t n __asm__("r9");
    int32_t rows = sp->rows;
    const uint8_t *gt = divqat_rows_gather;
    __asm__ volatile(DIVQAT_ROWS_GATHER_LOAD("r11") DIVQAT_ROWS_ROW_START
                     "vldrb.8      q0, [%[pa]], #16\n\t"
                     "vldrb.8      q1, [%[pb]], #16\n\t"
                     "vldrb.u8     q2, [%[pw], q4]\n\t"
                     "vldrb.u8     q3, [%[pw], q5]\n\t"
                     "vmladava.s8  %[a0], q0, q2\n\t"
                     "vmladava.s8  %[b0], q1, q2\n\t"
                     "vldrb.u8     q2, [%[pw], q6]\n\t"
                     "vmladava.s8  %[a1], q0, q3\n\t"
                     "vmladava.s8  %[b1], q1, q3\n\t"
                     "vldrb.u8     q3, [%[pw], q7]\n\t"
                     "vmladava.s8  %[a2], q0, q2\n\t"
                     "vmladava.s8  %[b2], q1, q2\n\t"
                     "vmladava.s8  %[a3], q0, q3\n\t"
                     "vmladava.s8  %[b3], q1, q3\n\t"
                     "add          %[pw], %[pw], #128\n\t" DIVQAT_ROWS_STEP_END DIVQAT_ROWS_ROW_NEXT_X("r11")
                         DIVQAT_ROWS_ROW_NEXT_B("r11") DIVQAT_ROWS_ROW_NEXT_W("r11")
                     : DIVQAT_MVE_ACC8_OPS, [pa] "+r"(pa), [pb] "+r"(pb), [pw] "+r"(pw), DIVQAT_ROWS_LOOP_OUTS
                     : DIVQAT_ROWS_SPAN_INS(sp), [gt] "m"(gt)
                     : "r11", "q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "cc", "memory");
    DIVQAT_MVE_ACC8_OUT(acc);
}

/* The fused ADD's output stage as vectors (loaded once per call: the int8 stores could alias the words). */
typedef struct {
    int32x4_t lo, hi;
    int32_t mo, nao, zpo;
} divqat_fk_mve;

/* acc[0..3] += one pixel's rectangle (*sp, input xa) against a group's weights: divqat_rows4x2_mve for a pixel
 * alone (a window clipped differently from its neighbour's), per 16 K values one input load, 4 gathers, 4
 * VMLADAVA. */
static DIVQAT_NOINLINE void divqat_rows4x1_mve(int32_t *acc, const int8_t *xa, const int16_t *w,
                                               const divqat_span *sp) {
    DIVQAT_MVE_ACC4_IN(acc);
    register const int8_t *pa __asm__("r1") = xa;
    register const int16_t *pw __asm__("r5") = w;
    register int32_t n __asm__("r3");
    int32_t rows = sp->rows;
    const uint8_t *gt = divqat_rows_gather;
    __asm__ volatile(DIVQAT_ROWS_GATHER_LOAD("r12") DIVQAT_ROWS_ROW_START
                     "vldrb.8      q0, [%[pa]], #16\n\t"
                     "vldrb.u8     q2, [%[pw], q4]\n\t"
                     "vldrb.u8     q3, [%[pw], q5]\n\t"
                     "vmladava.s8  %[a0], q0, q2\n\t"
                     "vldrb.u8     q2, [%[pw], q6]\n\t"
                     "vmladava.s8  %[a1], q0, q3\n\t"
                     "vldrb.u8     q3, [%[pw], q7]\n\t"
                     "vmladava.s8  %[a2], q0, q2\n\t"
                     "vmladava.s8  %[a3], q0, q3\n\t"
                     "add          %[pw], %[pw], #128\n\t" DIVQAT_ROWS_STEP_END DIVQAT_ROWS_ROW_NEXT_X("r12")
                         DIVQAT_ROWS_ROW_NEXT_W("r12")
                     : DIVQAT_MVE_ACC4_OPS, [pa] "+r"(pa), [pw] "+r"(pw), DIVQAT_ROWS_LOOP_OUTS
                     : DIVQAT_ROWS_SPAN_INS(sp), [gt] "m"(gt)
                     : "r12", "q0", "q2", "q3", "q4", "q5", "q6", "q7", "cc", "memory");
    DIVQAT_MVE_ACC4_OUT(acc);
}

/* One pixel's group of 4 channels (n real ones) from its accumulators, vectorised: the fast epilogue
 * (divqat_rq_fast_mve), then for `fused` the ADD (table gathers, the tables' base at q = 0 so that a negative q wraps
 * to the right address; the output stage of csrc/add_s8.c's MVE path, divqat_add_out_mve), stored predicated. */
DIVQAT_INLINE void divqat_rows_store_mve(const int32_t *acc, const divqat_rq_mve *rq, int8_t *y, int32_t n,
                                         const int8_t *res, const int32_t *df, const divqat_fk_mve *fk,
                                         const int fused) {
    const mve_pred16_t p = vctp32q((uint32_t)n);
    int32x4_t v = divqat_rq_fast_mve(vldrwq_s32(acc), rq);
    if (fused) {
        const int32x4_t r = vldrbq_z_s32(res, p);
        const int32x4_t t = vaddq_s32(vldrwq_gather_shifted_offset_s32(df + DF_TC + 128, vreinterpretq_u32_s32(v)),
                                      vldrwq_gather_shifted_offset_s32(df + DF_TR + 128, vreinterpretq_u32_s32(r)));
        v = divqat_add_out_mve(t, fk->mo, fk->nao, fk->zpo, fk->lo, fk->hi);
    }
    vstrbq_p_s32(y, v, p);
}

DIVQAT_INLINE void divqat_rows_body(const int8_t *x, const int8_t *res, const int16_t *w, const int32_t *qp,
                                    const int32_t *d, const int32_t *corr, const int32_t *df, int8_t *y,
                                    const int fused) {
    const int32_t ow = d[DQ_OW], npix = d[DQ_OH] * ow, cout = d[DQ_COUT], gw = d[DQ_K] * 4;
    const int32_t taps = d[DQ_KH] * d[DQ_KW], bstep = d[DQ_SW] * d[DQ_CIN];
    divqat_fk_mve fk = {vdupq_n_s32(0), vdupq_n_s32(0), 0, 0, 0};
    if (fused) {
        fk.lo = vdupq_n_s32(df[DF_LO]), fk.hi = vdupq_n_s32(df[DF_HI]);
        fk.mo = df[DF_MO], fk.nao = -df[DF_AO], fk.zpo = df[DF_ZPO];
    }
    int32_t oy = 0, ox = 0; /* pixel p's row and column */
    for (int32_t p = 0; p < npix; p += 2) {
        const int32_t has_b = p + 1 < npix;
        const divqat_rect ra = divqat_rows_rect(d, oy, ox);
        /* pixels p and p + 1 together when they are in one row with windows of the same rectangle (pixel b's
         * starts sw * cin bytes on), else one by one (divqat_rows4x1_mve) */
        int same = 0;
        if (has_b && ox + 1 < ow) {
            const divqat_rect rb = divqat_rows_rect(d, oy, ox + 1);
            same = ra.ky0 == rb.ky0 && ra.ky1 == rb.ky1 && ra.kx0 == rb.kx0 && ra.kx1 == rb.kx1;
        }
        const int32_t runs = same || !has_b ? 1 : 2;
        for (int32_t s = 0; s < runs; ++s) {
            const int32_t px = p + s, qy = s && ox + 1 == ow ? oy + 1 : oy, qx = s ? (ox + 1 == ow ? 0 : ox + 1) : ox;
            const divqat_rect r = s ? divqat_rows_rect(d, qy, qx) : ra;
            const int empty = divqat_rect_empty(r), whole = divqat_rect_whole(r, d);
            const divqat_span sa = divqat_rows_span(x, d, qy, qx, r);
            const int8_t *xb = sa.x + bstep;
            const int16_t *wg = w + sa.woff;
            int8_t *ya = y + px * cout;
            const int8_t *rs = res + px * cout;
            const int32_t *q = qp, *cg = corr;
            for (int32_t c = 0; c < cout; c += 4, wg += gw, q += 4 * DQ_QP_WORDS, cg += taps * 4) {
                int32_t acc[8] __attribute__((aligned(16)));
                divqat_bias4(acc, q);
                if (!whole) divqat_rows_pad(acc, cg, r, d);
                acc[4] = acc[0], acc[5] = acc[1], acc[6] = acc[2], acc[7] = acc[3];
                if (!empty && same)
                    divqat_rows4x2_mve(acc, sa.x, xb, wg, &sa);
                else if (!empty)
                    divqat_rows4x1_mve(acc, sa.x, wg, &sa);
                const divqat_rq_mve rq = divqat_rq_mve_load(q, divqat_qp_lanes());
                divqat_rows_store_mve(acc, &rq, ya + c, cout - c, rs + c, df, &fk, fused);
                if (same) divqat_rows_store_mve(acc + 4, &rq, ya + cout + c, cout - c, rs + cout + c, df, &fk, fused);
            }
        }
        if ((ox += 2) >= ow) ox -= ow, ++oy;
    }
}

#else
/* acc[0..3] += n input values (a multiple of 4) against the group's int16 words from wq (16 per 4 values). */
DIVQAT_INLINE void divqat_rows_run_c(int32_t *acc, const int8_t *px, const int16_t *wq, int32_t n) {
    for (int32_t k = 0; k < n; k += 4, wq += 16) {
        const int32_t x0 = px[k], x1 = px[k + 1], x2 = px[k + 2], x3 = px[k + 3];
        for (int32_t i = 0; i < 4; ++i) /* (w0, w2, w1, w3) per channel */
            acc[i] += x0 * wq[4 * i] + x2 * wq[4 * i + 1] + x1 * wq[4 * i + 2] + x3 * wq[4 * i + 3];
    }
}

/* divqat_rows4_dsp in plain C: acc[0..3] += the rectangle's rows (*sp) against the group's int16 words (w: the
 * group's first word of the rectangle); a row's taps are contiguous in the input and the weights, rows xrow bytes
 * (input) and wrow int16 words (weights) apart. */
DIVQAT_INLINE void divqat_rows4_c(int32_t *acc, const int8_t *x, const int16_t *w, const divqat_span *sp, int32_t xrow,
                                  int32_t wrow) {
    const int32_t n = sp->nq16 * 16;
    for (int32_t ky = 0; ky < sp->rows; ++ky, x += xrow, w += wrow) divqat_rows_run_c(acc, x, w, n);
}
/* The rows' distance apart comes from the layer's descriptor d (the DSP asm steps from the row's end instead). */
#define DIVQAT_ROWS4(acc, x, w, sp, d) \
    divqat_rows4_c(acc, x, w, sp, (d)[DQ_IW] * (d)[DQ_CIN], (d)[DQ_KW] * (d)[DQ_CIN] * 4)
#endif

#if !defined(DIVQAT_MVE)
/* One pixel x 4 channels per step (DIVQAT_ROWS4: the DSP asm or plain C). */
DIVQAT_INLINE void divqat_rows_body(const int8_t *x, const int8_t *res, const int16_t *w, const int32_t *qp,
                                    const int32_t *d, const int32_t *corr, const int32_t *df, int8_t *y,
                                    const int fused) {
    const int32_t oh = d[DQ_OH], ow = d[DQ_OW], cout = d[DQ_COUT], gw = d[DQ_K] * 4, taps = d[DQ_KH] * d[DQ_KW];
    for (int32_t oy = 0; oy < oh; ++oy)
        for (int32_t ox = 0; ox < ow; ++ox, y += cout, res += cout) {
            const divqat_rect r = divqat_rows_rect(d, oy, ox);
            const int empty = divqat_rect_empty(r), whole = divqat_rect_whole(r, d);
            const divqat_span s = divqat_rows_span(x, d, oy, ox, r);
            const int16_t *wg = w + s.woff;
            const int32_t *q = qp, *cg = corr;
            for (int32_t c = 0; c < cout; c += 4, wg += gw, q += 4 * DQ_QP_WORDS, cg += taps * 4) {
                int32_t acc[4];
                divqat_bias4(acc, q);
                if (!whole) divqat_rows_pad(acc, cg, r, d);
                if (!empty) DIVQAT_ROWS4(acc, s.x, wg, &s, d);
                divqat_rows_store(acc, q, y + c, cout - c, res + c, df, fused);
            }
        }
}
#endif

/* Both entries run layers with the fast epilogue only (DQ_FAST, checked offline): one instantiation each. */
static DIVQAT_NOINLINE void divqat_conv_rows_s8(const int8_t *x, const int16_t *w, const int32_t *qp, const int32_t *d,
                                                const int32_t *corr, int8_t *y) {
    divqat_rows_body(x, y, w, qp, d, corr, 0, y, 0);
}

static DIVQAT_NOINLINE void divqat_conv_rows_add_s8(const int8_t *x, const int8_t *res, const int16_t *w,
                                                    const int32_t *qp, const int32_t *d, const int32_t *corr,
                                                    const int32_t *df, int8_t *y) {
    divqat_rows_body(x, res, w, qp, d, corr, df, y, 1);
}
