/* Per-operator tick counts of the last inference (profiling build: -DDQ_PROFILE=1). */
#include "dq_profile.h"

#include "dq_timer.h"
#include "fw_config.h"

static uint64_t op_ticks[DQ_NUM_OPS > 0 ? DQ_NUM_OPS : 1];
static uint64_t op_start;

void dq_profile_reset(void) {
    for (int i = 0; i < DQ_NUM_OPS; i++) op_ticks[i] = 0;
}

void dq_op_begin(int index) {
    (void)index;
    op_start = dq_timer_now();
}

void dq_op_end(int index) {
    uint64_t t = dq_timer_now();
    if (index >= 0 && index < DQ_NUM_OPS) op_ticks[index] += t - op_start;
}

uint64_t dq_profile_ticks(int index) { return (index >= 0 && index < DQ_NUM_OPS) ? op_ticks[index] : 0; }
