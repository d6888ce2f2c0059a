/* On-device post-processing: dequantize int8 logits, softmax, then the build's defence (none, RS, DCP).
 *
 * Only float32 +, -, *, / and our own expf/logf are used, compiled with -ffp-contract=off, so the same
 * source gives the same bits on the host (x86-64 SSE) and on every Cortex-M (hard or soft float). */
#ifndef DQ_POSTPROCESS_H
#define DQ_POSTPROCESS_H

#include <stdint.h>

#define DQ_DEFENSE_NONE 0
#define DQ_DEFENSE_RS 1
#define DQ_DEFENSE_DCP 2

/* Defence chosen at build time: -DDQ_DEFENSE=1 -DDQ_BETA=0.5f -DDQ_GAMMA=0.1f [-DDQ_NU=1000.0f] */
#ifndef DQ_DEFENSE
#define DQ_DEFENSE DQ_DEFENSE_NONE
#endif
#ifndef DQ_BETA
#define DQ_BETA 0.0f
#endif
#ifndef DQ_GAMMA
#define DQ_GAMMA 0.1f
#endif
#ifndef DQ_NU
#define DQ_NU 1000.0f
#endif

float dq_expf(float x);
float dq_logf(float x);
/* probs[i] = softmax((logits[i] - zero_point) * scale) */
void dq_softmax_q(const int8_t *logits, uint32_t n, float scale, int32_t zero_point, float *probs);
/* Reverse sigmoid perturbation with gate `a` (1: RS; DCP computes its gate), normalised in place. */
void dq_reverse_sigmoid(float *p, uint32_t n, float beta, float gamma, float gate);
float dq_dcp_gate(const float *p, uint32_t n, float beta, float nu);
/* Models whose int8 output already is a softmax (manifest output.kind "probabilities", e.g. TFLite models
 * ending in SOFTMAX) are built with -DDQ_OUTPUT_PROBABILITIES=1: their output is dequantized and
 * normalised to sum 1 (uniform if it dequantizes to all zeros) instead of going through softmax again. */
#ifndef DQ_OUTPUT_PROBABILITIES
#define DQ_OUTPUT_PROBABILITIES 0
#endif
/* probs[i] = q[i]' / sum q', q' = (q - zero_point) * scale */
void dq_probs_q(const int8_t *q, uint32_t n, float scale, int32_t zero_point, float *probs);
/* The whole post-processing of the build: softmax (or dq_probs_q) then the defence set by DQ_DEFENSE. */
void dq_postprocess(const int8_t *logits, uint32_t n, float scale, int32_t zero_point, float *probs);

#endif
