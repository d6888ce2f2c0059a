/* Reset, vector table, .data/.bss set-up, FPU enable. Symbols come from the generated linker script. */
#include <stdint.h>

#include "dq_cm.h"
#include "dq_stack.h"
#include "dq_vectors.h"

/* From the linker script (firmware/ld/cortex-m.ld.in). */
extern uint32_t dq_data_load[], dq_data_start[], dq_data_end[], dq_bss_start[], dq_bss_end[];

#define DQ_NUM_IRQS 48

__attribute__((section(".vectors"), used)) const dq_vector_t dq_vectors[16 + DQ_NUM_IRQS] = {
    (dq_vector_t)(uintptr_t)dq_stack_top,
    Reset_Handler,
    Default_Handler, /* NMI */
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    Default_Handler, /* SecureFault (Armv8-M) */
    0,
    0,
    0,
    Default_Handler, /* SVC */
    Default_Handler, /* DebugMon */
    0,
    Default_Handler, /* PendSV */
    SysTick_Handler,
    [16 ... 16 + DQ_NUM_IRQS - 1] = Default_Handler,
};

void Reset_Handler(void) {
    SCB_VTOR = (uint32_t)(uintptr_t)dq_vectors;
    for (uint32_t *s = dq_data_load, *d = dq_data_start; d < dq_data_end;) *d++ = *s++;
    for (uint32_t *d = dq_bss_start; d < dq_bss_end;) *d++ = 0;
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    SCB_CPACR |= 0xFu << 20; /* CP10, CP11: full access (FPU, and MVE on Armv8.1-M) */
    __asm volatile("dsb\n isb" ::: "memory");
#endif
#if defined(__ARM_ARCH_8M_MAIN__) || defined(__ARM_ARCH_8_1M_MAIN__)
    /* Armv8-M: the hardware checks the stack limit (UsageFault STKOF on overflow) */
    __asm volatile("msr msplim, %0" ::"r"((uint32_t)(uintptr_t)dq_stack_bottom));
#endif
#if !defined(__ARM_ARCH_6M__)
    /* MemManage, BusFault, UsageFault get their own handlers instead of escalating to HardFault (Armv7-M and
     * later; Armv6-M has only HardFault) */
    SCB_SHCSR |= (1u << 16) | (1u << 17) | (1u << 18);
#endif
    dq_main();
}
