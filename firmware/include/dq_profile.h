/* Per-operator timing for the profiling build: force-included (gcc -include) when model.c is compiled,
 * so model.c's DIVQAT_OP_BEGIN/END hooks record each operator's timer ticks. */
#ifndef DQ_PROFILE_H
#define DQ_PROFILE_H

#include <stdint.h>

void dq_op_begin(int index);
void dq_op_end(int index);
void dq_profile_reset(void);
/* Ticks of operator `index` in the last inference (0 beyond the model's operators). */
uint64_t dq_profile_ticks(int index);

#define DIVQAT_OP_BEGIN(i) dq_op_begin(i)
#define DIVQAT_OP_END(i) dq_op_end(i)

#endif
