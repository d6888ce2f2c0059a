/* Stack painting: fill the unused stack with a pattern, later find the deepest word overwritten. */
#ifndef DQ_STACK_H
#define DQ_STACK_H

#include <stdint.h>

#define DQ_STACK_PAINT 0xC5ACC0DEu

/* Paint from the stack's bottom up to just below the caller's frame. */
void stack_paint(void);
/* Bytes of stack used since the last paint (or boot), measured from the top of the stack region. */
uint32_t stack_peak(void);
uint32_t stack_size(void);

#endif
