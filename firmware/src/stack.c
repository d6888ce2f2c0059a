/* Stack painting and peak-stack measurement over the linker script's .stack region. */
#include "dq_stack.h"

#include "dq_cm.h"

/* Never paint the words the caller's frame and this function's own frame live in. */
#define PAINT_MARGIN_BYTES 256u

void dq_stack_paint(void) {
    uint32_t limit = (dq_get_sp() - PAINT_MARGIN_BYTES) & ~3u;
    for (volatile uint32_t *p = dq_stack_bottom; (uint32_t)p < limit; p++) *p = DQ_STACK_PAINT;
}

uint32_t dq_stack_peak(void) {
    const volatile uint32_t *p = dq_stack_bottom;
    while ((uint32_t)p < (uint32_t)dq_stack_top && *p == DQ_STACK_PAINT) p++;
    return (uint32_t)dq_stack_top - (uint32_t)p;
}

uint32_t dq_stack_size(void) { return (uint32_t)dq_stack_top - (uint32_t)dq_stack_bottom; }
