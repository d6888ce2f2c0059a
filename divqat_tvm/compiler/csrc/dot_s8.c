/* divqat-tvm: sum of (x[i] - zp) * w[i], int32, over n int8 pairs: the inner product the TE conv kernels call per
 * kernel row (ops/conv.py DOT_S8), pasted into kernels.c by compiler/lower.py where a kernel calls it.
 * With Helium (MVE): 16 pairs per step, tail-predicated (inactive lanes load 0), as sum x*w - zp * sum w (VMLADAVA,
 * VADDVA; exact in int32). With the DSP extension: four pairs per step as two SMLADs on sign-extended halfword pairs
 * (SXTAB16 adds -zp to each lane: x - zp fits int16, so every lane product and the int32 sum are exactly the plain
 * loop's). */
#include <string.h>
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#include <arm_mve.h>
static inline __attribute__((always_inline)) int32_t divqat_dot_s8(void *xp, void *wp, int32_t n, int32_t zp) {
    const int8_t *x = (const int8_t *)xp;
    const int8_t *w = (const int8_t *)wp;
    int32_t acc = 0, wsum = 0;
    for (; n > 0; n -= 16, x += 16, w += 16) {
        mve_pred16_t p = vctp8q((uint32_t)n);
        int8x16_t vw = vldrbq_z_s8(w, p);
        acc = vmladavaq_s8(acc, vldrbq_z_s8(x, p), vw);
        wsum = vaddvaq_s8(wsum, vw);
    }
    return acc - zp * wsum;
}
#else
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__ARM_FEATURE_SIMD32)
#include <arm_acle.h>
static inline __attribute__((always_inline)) uint32_t divqat_dot_sxtab16_ror8(uint32_t a, uint32_t b) {
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
static inline __attribute__((always_inline)) uint32_t divqat_dot_sxtb16_ror8(uint32_t b) {
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(b));
    return r;
}
static inline __attribute__((always_inline)) int32_t divqat_dot_mac4_s8(int32_t acc, const int8_t *x, const int8_t *w,
                                                                        uint32_t off) {
    uint32_t xv, wv;
    memcpy(&xv, x, 4);
    memcpy(&wv, w, 4);
    acc = __smlad(__sxtab16(off, xv), __sxtb16(wv), acc);
    return __smlad(divqat_dot_sxtab16_ror8(off, xv), divqat_dot_sxtb16_ror8(wv), acc);
}
#endif
static inline __attribute__((always_inline)) int32_t divqat_dot_s8(void *xp, void *wp, int32_t n, int32_t zp) {
    const int8_t *x = (const int8_t *)xp;
    const int8_t *w = (const int8_t *)wp;
    int32_t acc = 0;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__ARM_FEATURE_SIMD32)
    const uint32_t off = ((uint32_t)(-zp) & 0xFFFFu) * 0x10001u;
    for (; n >= 8; n -= 8, x += 8, w += 8) {
        acc = divqat_dot_mac4_s8(acc, x, w, off);
        acc = divqat_dot_mac4_s8(acc, x + 4, w + 4, off);
    }
    if (n >= 4) {
        acc = divqat_dot_mac4_s8(acc, x, w, off);
        n -= 4, x += 4, w += 4;
    }
#endif
    for (int32_t i = 0; i < n; ++i) acc += ((int32_t)x[i] - zp) * (int32_t)w[i];
    return acc;
}
#endif
