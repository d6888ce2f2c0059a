/* divqat_add_s8: TFLite's int8 ADD (reference_integer_ops::Add), elementwise, bit for bit.
 *
 *   x = (a - zp_a) << 20, y = (b - zp_b) << 20, twice_max = 2 * max(s_a, s_b)
 *   s = MBQM(x, s_a / twice_max) + MBQM(y, s_b / twice_max)
 *   out = clamp(MBQM(s, twice_max / (2^20 * s_out)) + zp_out, lo, hi)
 *
 * The input with the larger scale has the real multiplier 0.5 exactly (M = 2^30, no shift), and then
 * SaturatingRoundingDoublingHighMul(x, 2^30) = (x + 1) >> 1 = (a - zp_a) << 19 exactly (x is even). The
 * compiler orders the inputs so that `a` is that one (the sum is commutative); `b` is the same when the
 * scales are equal (DA_B_HALF), else its multiplier is below 0.5 (a right shift rb >= 1): with
 * 2y = (b - zp_b) << 21 (fits int32) SMMLAR gives SRDHM plus the rounding constant, and the product's sign
 * is the sign of b - zp_b (y is a multiple of 2^20, M >= 2^30), so RoundingDivideByPOT's half-away-from-zero
 * step is one more add. Output stage: DA_FAST (M_out > 2^30, 1 <= shift <= 22, checked offline) folds
 * zp_out into SMMLAR's rounding word as the conv epilogue does; otherwise the exact MBQM.
 * MVE (Cortex-M55): 4 lanes at a time with VQRDMULH (= SaturatingRoundingDoublingHighMul) and VRSHL.
 */
#include "divqat_nn.h"

enum { DA_N, DA_ZPA, DA_ZPB, DA_ZPOUT, DA_LO, DA_HI, DA_MB, DA_RB, DA_RNDB, DA_MO, DA_AO, DA_BO, DA_FLAGS, DA_NWORDS };
#define DA_FAST 1   /* output stage: SMMLAR with zp_out folded */
#define DA_B_HALF 2 /* b's multiplier is 0.5 too (equal input scales) */
#define DA_FULL 4   /* clamp [-128, 127] */

DIVQAT_INLINE void divqat_add_loop(const int8_t *a, const int8_t *b, const int32_t *d, int8_t *y, const int fast,
                                   const int b_half, const int full) {
    /* the parameters in locals: the int8 stores could alias `d`, which would reload them every element */
    const int32_t n = d[DA_N], zpa = d[DA_ZPA], zpb = d[DA_ZPB], zpo = d[DA_ZPOUT], lo = d[DA_LO], hi = d[DA_HI];
    const int32_t mb = d[DA_MB], rb = d[DA_RB], rndb = d[DA_RNDB], mo = d[DA_MO], ao = d[DA_AO], bo = d[DA_BO];
    for (int32_t i = 0; i < n; ++i) {
        int32_t s = (a[i] - zpa) * (1 << 19);
        if (b_half) {
            s += (b[i] - zpb) * (1 << 19);
        } else {
            const int32_t y2 = (b[i] - zpb) * (1 << 21);
            s += divqat_rq_fast_v(y2, mb, rb, rndb);
        }
        int32_t v = fast ? divqat_rq_fast_v(s * 2, mo, ao, bo) : divqat_mbqm(s, mo, ao) + zpo;
        y[i] = (int8_t)(full ? divqat_ssat8(v) : divqat_clamp(v, lo, hi));
    }
}

#if defined(DIVQAT_MVE)
/* 4 elements (lanes), scalar operands where MVE has them so the loop stays in Q registers; the tail (`tail`)
 * predicates its loads and store with `p`. */
DIVQAT_INLINE void divqat_add_mve4(const int8_t *a, const int8_t *b, int8_t *y, mve_pred16_t p, const int32_t *k,
                                   int32x4_t lo, int32x4_t hi, const int b_half, const int tail) {
    int32x4_t s = vshlq_n_s32(vsubq_n_s32(tail ? vldrbq_z_s32(a, p) : vldrbq_s32(a), k[0]), 19);
    int32x4_t t = vsubq_n_s32(tail ? vldrbq_z_s32(b, p) : vldrbq_s32(b), k[1]);
    if (b_half) {
        s = vaddq_s32(s, vshlq_n_s32(t, 19));
    } else {
        s = vaddq_s32(s, divqat_rdpot_mve(vqrdmulhq_n_s32(vshlq_n_s32(t, 20), k[2]), k[3]));
    }
    s = divqat_add_out_mve(s, k[4], k[5], k[6], lo, hi);
    if (tail)
        vstrbq_p_s32(y, s, p);
    else
        vstrbq_s32(y, s);
}

DIVQAT_INLINE void divqat_add_mve(const int8_t *a, const int8_t *b, const int32_t *d, int8_t *y, const int b_half) {
    const int32_t n = d[DA_N];
    const int32_t k[7] = {d[DA_ZPA], d[DA_ZPB], d[DA_MB], -d[DA_RB], d[DA_MO], -d[DA_AO], d[DA_ZPOUT]};
    const int32x4_t lo = vdupq_n_s32(d[DA_LO]), hi = vdupq_n_s32(d[DA_HI]);
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) divqat_add_mve4(a + i, b + i, y + i, 0, k, lo, hi, b_half, 0);
    if (i < n) divqat_add_mve4(a + i, b + i, y + i, vctp32q((uint32_t)(n - i)), k, lo, hi, b_half, 1);
}
#endif

static DIVQAT_NOINLINE void divqat_add_s8(const int8_t *a, const int8_t *b, const int32_t *d, int8_t *y) {
    const int32_t f = d[DA_FLAGS];
#if defined(DIVQAT_MVE)
    if ((f & DA_FAST) && d[DA_AO] >= 1) { /* VRSHL's output step needs a right shift */
        if (f & DA_B_HALF)
            divqat_add_mve(a, b, d, y, 1);
        else
            divqat_add_mve(a, b, d, y, 0);
        return;
    }
#endif
    if ((f & (DA_FAST | DA_FULL)) == (DA_FAST | DA_FULL)) {
        if (f & DA_B_HALF)
            divqat_add_loop(a, b, d, y, 1, 1, 1);
        else
            divqat_add_loop(a, b, d, y, 1, 0, 1);
    } else if (f & DA_B_HALF) {
        divqat_add_loop(a, b, d, y, 0, 1, 0);
    } else {
        divqat_add_loop(a, b, d, y, 0, 0, 0);
    }
}
