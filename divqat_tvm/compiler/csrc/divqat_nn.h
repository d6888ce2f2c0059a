/* divqat-tvm hand-written int8 kernels: shared definitions.
 *
 * The compiler pastes this header and the kernel sources a model uses into the emitted kernels.c, so the
 * compiled library stays standalone (<stdint.h>, <string.h>, and the ACLE / MVE intrinsic headers where the
 * compiler targets a core that has them). One source serves every core: the code path is chosen when the C is
 * compiled, from __ARM_FEATURE_MVE (Helium: Cortex-M55), __ARM_FEATURE_DSP (Cortex-M4/M7/M33) or neither
 * (plain C: Cortex-M0/M3, and the host build the tests run).
 *
 * Layer parameters arrive as a constant int32 descriptor (DQ_* indices below) and per-channel constants
 * DQ_QP_WORDS words each: [bias', multiplier, a, b] where
 *   bias'      = bias - zp_in * sum(w)  (the input zero point folded in; padding reads as zp_in);
 *   multiplier = TFLite's 32-bit fixed-point multiplier M (>= 0);
 *   a          = -shift (TFLite shift): > 0 a rounding right shift, < 0 a saturating left shift;
 *   b          = round + (zp_out << a) for the fast epilogue (DQ_FAST), where round = 1 << (a - 1).
 * Requantization is TFLite's MultiplyByQuantizedMultiplier, bit for bit: x = sat32(acc << ls),
 * SaturatingRoundingDoublingHighMul(x, M) (= (x*M + 2^30) >> 31 exactly, M never being INT32_MIN),
 * RoundingDivideByPOT(., rs) (half away from zero), + zp_out, clamp to [lo, hi].
 */
#ifndef DIVQAT_NN_H_
#define DIVQAT_NN_H_
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#endif
/* The SIMD paths use inline asm with many registers; unoptimised builds (-O0, where r7 is the frame pointer
 * and nothing is kept in registers) take the plain C path. */
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1) && defined(__OPTIMIZE__)
#define DIVQAT_MVE 1
#include <arm_mve.h>
#elif defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__ARM_FEATURE_SIMD32) && defined(__OPTIMIZE__)
#define DIVQAT_DSP 1
#endif

#define DIVQAT_NOINLINE __attribute__((noinline))
#define DIVQAT_INLINE static inline __attribute__((always_inline))

/* Descriptor words (int32). Conv and depthwise share the layout. DQ_KP: K rounded up to a multiple of 8. */
enum {
    DQ_IH,
    DQ_IW,
    DQ_CIN,
    DQ_OH,
    DQ_OW,
    DQ_COUT,
    DQ_KH,
    DQ_KW,
    DQ_SH,
    DQ_SW,
    DQ_DH,
    DQ_DW,
    DQ_PT,
    DQ_PL,
    DQ_ZPIN,
    DQ_ZPOUT,
    DQ_LO,
    DQ_HI,
    DQ_K,
    DQ_KP,
    DQ_FLAGS,
    DQ_NWORDS
};
/* DQ_FLAGS bits */
#define DQ_FAST 1   /* every channel: 1 <= a <= 22, M > 2^30, |acc| < 2^30, clamp [-128, 127]: fast epilogue */
#define DQ_DIRECT 2 /* 1x1 kernel, no padding, cin % 4 == 0: the K vector is the input pixel itself */
#define DQ_F64 \
    4               /* TFLite FULLY_CONNECTED's reference rounding: round(double(acc) * scale) half away from zero;
                       the words after bias' hold the float64 scale (low word first) */
#define DQ_DWPAIR 8 /* depthwise 3x3, dilation 1, stride 1 or 2, fast epilogue: the tap-pair ring (dwconv_s8.c) */
#define DQ_HAWAY \
    16 /* DQ_F64's rounding as a fixed point proven equal at compile time (ops/dense.py f64_as_fixed): the words
                       after bias' are M (uint32) and e = S - 32; v = sign(acc) * ((|acc| * M + 2^(S-1)) >> S) */
#define DQ_QP_WORDS 4

DIVQAT_INLINE uint32_t divqat_ld32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

DIVQAT_INLINE void divqat_st32(void *p, uint32_t v) { memcpy(p, &v, 4); }

/* (a * b + (c << 32) + 2^31) >> 32: SMMLAR on DSP cores. */
DIVQAT_INLINE int32_t divqat_smmlar(int32_t a, int32_t b, int32_t c) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
#else
    return (int32_t)(((int64_t)a * b + (int64_t)((uint64_t)(uint32_t)c << 32) + 0x80000000LL) >> 32);
#endif
}

/* Exact MultiplyByQuantizedMultiplier(acc, m, shift = -a) (any shift). */
DIVQAT_INLINE int32_t divqat_mbqm(int32_t acc, int32_t m, int32_t a) {
    int32_t x = acc;
    if (a < 0) { /* saturating left shift */
        int64_t t = (int64_t)acc * ((int64_t)1 << -a);
        x = t > INT32_MAX ? INT32_MAX : t < INT32_MIN ? INT32_MIN : (int32_t)t;
    }
    int32_t hi = (int32_t)(((int64_t)x * m + (1LL << 30)) >> 31);
    if (a <= 0) return hi;
    uint32_t mask = (1u << a) - 1u;
    uint32_t thr = (mask >> 1) + (uint32_t)(hi < 0);
    return (hi >> a) + (int32_t)(((uint32_t)hi & mask) > thr);
}

/* The fast epilogue (DQ_FAST), from acc2 = 2 * acc: valid when every a is in [1, 22], M > 2^30, the clamp is
 * [-128, 127] and |acc| < 2^30 (so 2 * acc fits). Then (2*acc*M + 2^31) >> 32 is
 * SaturatingRoundingDoublingHighMul, SMMLAR adds b = 2^(a-1) + (zp_out << a) on the way, the sign of that
 * product is the sign of acc (M > 2^30), so RoundingDivideByPOT's half-away-from-zero rounding is one more
 * add of (acc < 0 ? -1 : 0), and the shift gives the output with zp_out added. Unclamped. */
DIVQAT_INLINE int32_t divqat_rq_fast_v(int32_t acc2, int32_t m, int32_t a, int32_t b) {
    return (divqat_smmlar(acc2, m, b) + (acc2 >> 31)) >> a;
}

DIVQAT_INLINE int32_t divqat_rq_fast(int32_t acc, const int32_t *q) {
    return divqat_rq_fast_v(acc * 2, q[1], q[2], q[3]);
}

DIVQAT_INLINE int32_t divqat_rq_exact(int32_t acc, const int32_t *q, int32_t zp) {
    return divqat_mbqm(acc, q[1], q[2]) + zp;
}

DIVQAT_INLINE int32_t divqat_clamp(int32_t v, int32_t lo, int32_t hi) {
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

DIVQAT_INLINE int32_t divqat_ssat8(int32_t v) {
#if defined(DIVQAT_DSP) || defined(DIVQAT_MVE)
    return __ssat(v, 8);
#else
    return v < -128 ? -128 : v > 127 ? 127 : v;
#endif
}

/* The exact epilogue, any shift and clamp (or DQ_F64's double rounding): the slow path (out of line). */
static DIVQAT_NOINLINE __attribute__((unused)) int32_t divqat_requant_exact(int32_t acc, const int32_t *q,
                                                                            const int32_t *d) {
    if (d[DQ_FLAGS] & DQ_HAWAY) { /* LiteRT's FULLY_CONNECTED rounding, integer only (no soft double on the M4) */
        const uint32_t ua = acc < 0 ? 0u - (uint32_t)acc : (uint32_t)acc, e = (uint32_t)q[2];
        const uint64_t p = (uint64_t)ua * (uint32_t)q[1] + ((uint64_t)1 << (31u + e));
        const int32_t r = (int32_t)((uint32_t)(p >> 32) >> e);
        return divqat_clamp((acc < 0 ? -r : r) + d[DQ_ZPOUT], d[DQ_LO], d[DQ_HI]);
    }
    if (d[DQ_FLAGS] & DQ_F64) { /* the same double operations as LiteRT's reference FULLY_CONNECTED */
        double s;
        memcpy(&s, q + 1, sizeof s);
        const double v = (double)acc * s, t = trunc(v), f = v - t;
        const double r = t + (f >= 0.5 ? 1.0 : (f <= -0.5 ? -1.0 : 0.0)) + (double)d[DQ_ZPOUT];
        return (int32_t)(r < (double)d[DQ_LO] ? (double)d[DQ_LO] : (r > (double)d[DQ_HI] ? (double)d[DQ_HI] : r));
    }
    return divqat_clamp(divqat_rq_exact(acc, q, d[DQ_ZPOUT]), d[DQ_LO], d[DQ_HI]);
}

/* One output value. `fast` is a compile-time constant in every caller (the kernels are instantiated once
 * with the fast epilogue and full int8 clamp, DQ_FAST, and once with the exact one and [lo, hi]). */
DIVQAT_INLINE int8_t divqat_requant(int32_t acc, const int32_t *q, const int32_t *d, const int fast) {
    if (fast) return (int8_t)divqat_ssat8(divqat_rq_fast(acc, q));
    return (int8_t)divqat_requant_exact(acc, q, d);
}

/* acc[0..3] = the bias' of a group of 4 channels (qp: its first channel's words). */
DIVQAT_INLINE void divqat_bias4(int32_t *acc, const int32_t *qp) {
    acc[0] = qp[0], acc[1] = qp[DQ_QP_WORDS], acc[2] = qp[2 * DQ_QP_WORDS], acc[3] = qp[3 * DQ_QP_WORDS];
}

/* A group of 4 channels' output values of one pixel, stored at y: only the first n (the last group of an odd
 * channel count has fewer real channels). */
DIVQAT_INLINE void divqat_requant4(const int32_t *acc, const int32_t *qp, const int32_t *d, int8_t *y, int32_t n,
                                   const int fast) {
    const int32_t m = n < 4 ? n : 4;
    for (int32_t i = 0; i < m; ++i) y[i] = divqat_requant(acc[i], qp + i * DQ_QP_WORDS, d, fast);
}

#if defined(DIVQAT_MVE)
/* A group of 4 channels' fast-epilogue words as lanes (M, -a, b): loaded once, used for every pixel. */
typedef struct {
    int32x4_t m, nsh, b;
} divqat_rq_mve;

/* The word offsets of 4 channels' per-channel constants (0, 1, 2, 3) * DQ_QP_WORDS, for divqat_rq_mve_load: made
 * once outside a loop over groups (the compiler does not hoist VIDUP). */
DIVQAT_INLINE uint32x4_t divqat_qp_lanes(void) { return vmulq_n_u32(vidupq_n_u32(0, 1), DQ_QP_WORDS); }

DIVQAT_INLINE divqat_rq_mve divqat_rq_mve_load(const int32_t *qp, uint32x4_t off) {
    divqat_rq_mve r;
    r.m = vldrwq_gather_shifted_offset_s32(qp + 1, off);
    r.nsh = vnegq_s32(vldrwq_gather_shifted_offset_s32(qp + 2, off));
    r.b = vldrwq_gather_shifted_offset_s32(qp + 3, off);
    return r;
}

/* The fast epilogue (DQ_FAST) on 4 lanes, clamped to int8: VQRDMULH is SaturatingRoundingDoublingHighMul, the
 * sign of acc (that of the product, M > 2^30) makes the rounding half away from zero, b adds round and zp_out. */
DIVQAT_INLINE int32x4_t divqat_rq_fast_mve(int32x4_t acc, const divqat_rq_mve *rq) {
    int32x4_t v = vqrdmulhq_s32(acc, rq->m);
    v = vaddq_s32(v, vshrq_n_s32(v, 31));
    v = vshlq_s32(vaddq_s32(v, rq->b), rq->nsh);
    return vminq_s32(vmaxq_s32(v, vdupq_n_s32(-128)), vdupq_n_s32(127));
}

/* RoundingDivideByPOT(t, -nsh) on 4 lanes: VRSHL rounds half up, so negative values step down by one first
 * (half away from zero). */
DIVQAT_INLINE int32x4_t divqat_rdpot_mve(int32x4_t t, int32_t nsh) {
    return vrshlq_n_s32(vaddq_s32(t, vshrq_n_s32(t, 31)), nsh);
}

/* TFLite ADD's output stage on 4 lanes: MultiplyByQuantizedMultiplier(s, mo, right shift -nao) + zp_out, clamped. */
DIVQAT_INLINE int32x4_t divqat_add_out_mve(int32x4_t s, int32_t mo, int32_t nao, int32_t zpo, int32x4_t lo,
                                           int32x4_t hi) {
    s = vaddq_n_s32(divqat_rdpot_mve(vqrdmulhq_n_s32(s, mo), nao), zpo);
    return vminq_s32(vmaxq_s32(s, lo), hi);
}

/* The accumulators of a 4 channels x 2 pixels MVE block (a0..a3 pixel a, b0..b3 pixel b) as locals from acc[0..7],
 * pinned to the even registers VMLADAVA needs (never r7, the Thumb frame pointer); the asm's operands; back. */
#define DIVQAT_MVE_ACC4_IN(acc)                   \
    register int32_t a0 __asm__("r0") = (acc)[0]; \
    register int32_t a1 __asm__("r2") = (acc)[1]; \
    register int32_t a2 __asm__("r4") = (acc)[2]; \
    register int32_t a3 __asm__("r6") = (acc)[3]
#define DIVQAT_MVE_ACC8_IN(acc)                    \
    DIVQAT_MVE_ACC4_IN(acc);                       \
    register int32_t b0 __asm__("r8") = (acc)[4];  \
    register int32_t b1 __asm__("r10") = (acc)[5]; \
    register int32_t b2 __asm__("r12") = (acc)[6]; \
    register int32_t b3 __asm__("lr") = (acc)[7]
#define DIVQAT_MVE_ACC4_OPS [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3)
#define DIVQAT_MVE_ACC8_OPS DIVQAT_MVE_ACC4_OPS, [b0] "+r"(b0), [b1] "+r"(b1), [b2] "+r"(b2), [b3] "+r"(b3)
#define DIVQAT_MVE_ACC4_OUT(acc) ((acc)[0] = a0, (acc)[1] = a1, (acc)[2] = a2, (acc)[3] = a3)
#define DIVQAT_MVE_ACC8_OUT(acc) (DIVQAT_MVE_ACC4_OUT(acc), (acc)[4] = b0, (acc)[5] = b1, (acc)[6] = b2, (acc)[7] = b3)
#endif

#endif /* DIVQAT_NN_H_ */
