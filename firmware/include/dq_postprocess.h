/* On-device post-processing: dequantize int8 logits, softmax, then the build's defence (none, RS, DCP).
 *
 * Only float32 +, -, *, / and our own expf/logf are used, compiled with -ffp-contract=off, so the same
 * source gives the same bits on the host (x86-64 SSE) and on every Cortex-M (hard or soft float).
 * Any class count works: the defences run in place in the caller's probability array (no scratch buffer). */
#ifndef DQ_POSTPROCESS_H
#define DQ_POSTPROCESS_H

#include <stdint.h>

/* The defence of this build and the constants shared with the Python twins (DQ_DEFENSE, DQ_DEFENSE_NONE/RS/DCP,
 * DQ_BETA, DQ_GAMMA, DQ_NU, DQ_P_MIN, DQ_P_MAX) are generated from divqat_tvm/defenses/spec.py (DefenseSpec):
 * the firmware build writes dq_defense_config.h into its build directory, the host build passes the same
 * macros as -D flags (DefenseSpec.c_defines(), which also defines DQ_DEFENSE_CONFIG). There are no defaults
 * here, so C cannot drift from Python. */
#ifndef DQ_DEFENSE_CONFIG
#include "dq_defense_config.h"
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
