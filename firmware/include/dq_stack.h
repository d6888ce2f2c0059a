/* Stack painting: fill the unused stack with a pattern, later find the deepest word overwritten. */
#ifndef DQ_STACK_H
#define DQ_STACK_H

#include <stdint.h>

#define DQ_STACK_PAINT 0xC5ACC0DEu

/* The stack region, from the generated linker script (firmware/ld/cortex-m.ld.in). */
extern uint32_t dq_stack_bottom[];
extern uint32_t dq_stack_top[];

/* Paint from the stack's bottom up to just below the caller's frame. */
void dq_stack_paint(void);
/* Bytes of stack used since the last paint (or boot), measured from the top of the stack region. */
uint32_t dq_stack_peak(void);
uint32_t dq_stack_size(void);

#endif
