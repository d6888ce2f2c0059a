/* Softmax and the RS / DCP output-perturbation defences, bit-identical on host and device.
 *
 * RS (reverse sigmoid, Lee et al., arXiv 1806.00054):
 *     r = beta * (sigmoid(gamma * log(p / (1 - p))) - 1/2),  y = (p - r) / sum(p - r)
 * DCP (Khaled et al., arXiv 2309.01838): RS gated to low-confidence answers,
 *     a = 1 / (1 + exp(nu * (max p - beta))),  y = (p - a r) / sum(p - a r)
 * The numerical choices are those of the Python twins (divqat_tvm/defenses/rs.py, dcp.py): p is clamped to
 * [DQ_P_MIN, DQ_P_MAX] = [1e-6, 1 - 1e-6] (generated from defenses/spec.py) before the log-odds (the authors' 1e-12 is not representable next to 1 in float32);
 * p - a r is clipped at 0 before normalising (as ART does), and an all-zero row becomes uniform; the DCP
 * gate is computed as sigmoid(-nu (max p - beta)) in its overflow-free form.
 * Must be compiled with -ffp-contract=off (no fused multiply-add) and without -ffast-math. */
#include "dq_postprocess.h"

#include <stdint.h>
#include <string.h>

static float from_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static uint32_t to_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* exp(x): Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, degree-7 Taylor polynomial, scale by 2^k.
 * Relative error below 2e-7; deterministic because it is only float32 arithmetic in a fixed order. */
float dq_expf(float x) {
    if (x != x) return x;
    if (x > 88.72283f) return from_bits(0x7F800000u);
    if (x < -87.33654f) return 0.0f;
    const float ln2_hi = 0.693145751953125f;     /* 0x3F317200: exact in 16 bits */
    const float ln2_lo = 1.428606765330187e-06f; /* ln2 - ln2_hi */
    float t = x * 1.44269504088896341f;
    int k = (int)(t + (t >= 0.0f ? 0.5f : -0.5f));
    float r = (x - (float)k * ln2_hi) - (float)k * ln2_lo;
    /* Horner form, innermost term first (the same operations in the same order as the nested expression) */
    float p = 0.00019841270f;
    p = 0.0013888889f + r * p;
    p = 0.008333334f + r * p;
    p = 0.041666668f + r * p;
    p = 0.16666667f + r * p;
    p = 0.5f + r * p;
    p = 1.0f + r * p;
    p = 1.0f + r * p;
    if (k > 127) return p * 2.0f * from_bits((uint32_t)(127 + 127) << 23);
    if (k < -126) return p * 0.5f * from_bits((uint32_t)(k + 1 + 127) << 23);
    return p * from_bits((uint32_t)(k + 127) << 23);
}

/* log(x) for normal x > 0: x = 2^e m, m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m-1)/(m+1). */
float dq_logf(float x) {
    if (!(x > 0.0f)) return x == 0.0f ? -from_bits(0x7F800000u) : from_bits(0x7FC00000u);
    if (x == from_bits(0x7F800000u)) return x;
    uint32_t b = to_bits(x);
    int e = (int)((b >> 23) & 0xFFu) - 127;
    if (e == -127) { /* subnormal: scale up by 2^23 */
        x = x * 8388608.0f;
        b = to_bits(x);
        e = (int)((b >> 23) & 0xFFu) - 127 - 23;
    }
    float m = from_bits((b & 0x007FFFFFu) | 0x3F800000u);
    if (m > 1.41421356f) {
        m = m * 0.5f;
        e += 1;
    }
    float s = (m - 1.0f) / (m + 1.0f);
    float s2 = s * s;
    float lm = 2.0f * s * (1.0f + s2 * (0.33333334f + s2 * (0.2f + s2 * (0.14285715f + s2 * 0.11111111f))));
    const float ln2_hi = 0.693145751953125f;
    const float ln2_lo = 1.428606765330187e-06f;
    return ((float)e * ln2_hi + lm) + (float)e * ln2_lo;
}

void dq_softmax_q(const int8_t *logits, uint32_t n, float scale, int32_t zero_point, float *probs) {
    float m = -from_bits(0x7F800000u);
    for (uint32_t i = 0; i < n; i++) {
        float l = (float)((int32_t)logits[i] - zero_point) * scale;
        probs[i] = l;
        if (l > m) m = l;
    }
    float sum = 0.0f;
    for (uint32_t i = 0; i < n; i++) {
        probs[i] = dq_expf(probs[i] - m);
        sum = sum + probs[i];
    }
    for (uint32_t i = 0; i < n; i++) probs[i] = probs[i] / sum;
}

static float reverse_sigmoid_r(float p, float beta, float gamma) {
    float pc = p < DQ_P_MIN ? DQ_P_MIN : (p > DQ_P_MAX ? DQ_P_MAX : p);
    float z = gamma * dq_logf(pc / (1.0f - pc));
    float sig = 1.0f / (1.0f + dq_expf(-z));
    return beta * (sig - 0.5f);
}

/* In place, for any n: y[i] depends on p[i] alone, so it overwrites p[i]; the sum runs in index order as before. */
void dq_reverse_sigmoid(float *p, uint32_t n, float beta, float gamma, float gate) {
    float sum = 0.0f;
    for (uint32_t i = 0; i < n; i++) {
        float v = p[i] - gate * reverse_sigmoid_r(p[i], beta, gamma);
        p[i] = v > 0.0f ? v : 0.0f;
        sum = sum + p[i];
    }
    if (!(sum > 0.0f)) {
        for (uint32_t i = 0; i < n; i++) p[i] = 1.0f / (float)n;
        return;
    }
    for (uint32_t i = 0; i < n; i++) p[i] = p[i] / sum;
}

float dq_dcp_gate(const float *p, uint32_t n, float beta, float nu) {
    float m = 0.0f;
    for (uint32_t i = 0; i < n; i++)
        if (p[i] > m) m = p[i];
    float t = -nu * (m - beta);
    float e = dq_expf(t < 0.0f ? t : -t); /* exp(-|t|): never overflows */
    return t >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

void dq_probs_q(const int8_t *q, uint32_t n, float scale, int32_t zero_point, float *probs) {
    float sum = 0.0f;
    for (uint32_t i = 0; i < n; i++) {
        probs[i] = (float)((int32_t)q[i] - zero_point) * scale;
        sum = sum + probs[i];
    }
    for (uint32_t i = 0; i < n; i++) probs[i] = sum > 0.0f ? probs[i] / sum : 1.0f / (float)n;
}

void dq_postprocess(const int8_t *logits, uint32_t n, float scale, int32_t zero_point, float *probs) {
#if DQ_OUTPUT_PROBABILITIES
    dq_probs_q(logits, n, scale, zero_point, probs);
#else
    dq_softmax_q(logits, n, scale, zero_point, probs);
#endif
#if DQ_DEFENSE == DQ_DEFENSE_RS
    dq_reverse_sigmoid(probs, n, DQ_BETA, DQ_GAMMA, 1.0f);
#elif DQ_DEFENSE == DQ_DEFENSE_DCP
    dq_reverse_sigmoid(probs, n, DQ_BETA, DQ_GAMMA, dq_dcp_gate(probs, n, DQ_BETA, DQ_NU));
#endif
}
