/* Entry points the hardware and the linker name: the one exception to the rule that every public symbol of
 * the firmware starts with dq_. The exception handlers keep their CMSIS names (Reset_Handler is also the ELF
 * entry, ENTRY() in firmware/ld/cortex-m.ld.in) so that debuggers, vendor tools and readers recognise them.
 * The linker script's `end` / `_end` are likewise newlib's names (its _sbrk looks for them). */
#ifndef DQ_VECTORS_H
#define DQ_VECTORS_H

#include <stdint.h>

typedef void (*dq_vector_t)(void);

/* The vector table (startup.c), placed at the start of flash. */
extern const dq_vector_t dq_vectors[];

void Reset_Handler(void);
void Default_Handler(void); /* NMI, SVC, PendSV, DebugMon, SecureFault, IRQs: reports "Exception" and exits */
void HardFault_Handler(void);
void MemManage_Handler(void);
void BusFault_Handler(void);
void UsageFault_Handler(void);
void SysTick_Handler(void);

/* The firmware's main loop, called by Reset_Handler once memory is set up (never returns). */
void dq_main(void) __attribute__((noreturn));
/* Called by the fault entry stubs (faults.c) with the stacked exception frame and the fault kind (3..7). */
void dq_fault_report(const uint32_t *frame, uint32_t kind) __attribute__((noreturn));

#endif
