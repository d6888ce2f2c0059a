/* Host twin of the firmware's inference path: the same model C and the same post-processing C, built for
 * the host (divqat_tvm/device/hostlib.py) so the tvm-host oracle answers the firmware's exact bits.
 * DQ_MODEL_RUN, DQ_INPUT_SIZE, DQ_OUTPUT_SIZE, DQ_OUTPUT_SCALE, DQ_OUTPUT_ZERO_POINT come from -D flags. */
#include <stdint.h>

#include "dq_postprocess.h"
#include "model.h"

uint32_t dq_host_input_size(void) { return DQ_INPUT_SIZE; }
uint32_t dq_host_output_size(void) { return DQ_OUTPUT_SIZE; }
int32_t dq_host_defense(void) { return DQ_DEFENSE; }

/* n inferences: in [n][INPUT_SIZE] -> logits [n][OUTPUT_SIZE], probs [n][OUTPUT_SIZE]; 0 or the first error. */
int dq_host_infer(const int8_t *in, uint32_t n, int8_t *logits, float *probs) {
    for (uint32_t i = 0; i < n; i++) {
        int rc = DQ_MODEL_RUN(in + (uint64_t)i * DQ_INPUT_SIZE, logits + (uint64_t)i * DQ_OUTPUT_SIZE);
        if (rc != 0) return rc;
        dq_postprocess(logits + (uint64_t)i * DQ_OUTPUT_SIZE, DQ_OUTPUT_SIZE, DQ_OUTPUT_SCALE, DQ_OUTPUT_ZERO_POINT,
                       probs + (uint64_t)i * DQ_OUTPUT_SIZE);
    }
    return 0;
}

/* Post-processing alone (for tests of softmax and the defences). */
void dq_host_postprocess(const int8_t *logits, uint32_t n, float scale, int32_t zero_point, float *probs) {
    dq_postprocess(logits, n, scale, zero_point, probs);
}
