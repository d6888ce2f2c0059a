/* A free-running 64-bit counter: DWT CYCCNT where it counts (real boards: core cycles), else SysTick
 * extended to 64 bits by its wrap interrupt (QEMU -icount: ticks of the core clock, i.e. retired
 * instructions divided by ns-per-tick; the host converts and labels the unit). */
#ifndef DQ_TIMER_H
#define DQ_TIMER_H

#include <stdint.h>

#define DQ_TIMER_SYSTICK 0u /* SysTick ticks at the core clock */
#define DQ_TIMER_DWT 1u     /* DWT CYCCNT: core cycles */

void dq_timer_init(void);
uint64_t dq_timer_now(void);
uint32_t dq_timer_kind(void);
/* QEMU: start the next measurement at a fixed phase of the SysTick tick (deterministic counts). No-op on boards. */
void dq_timer_align(void);
/* The SysTick exception handler (vector-table name, see startup.c). */
void SysTick_Handler(void);

#endif
