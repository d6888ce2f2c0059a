/* Reset, vector table, .data/.bss set-up, FPU enable. Symbols come from the generated linker script. */
#include <stdint.h>

#include "dq_cm.h"

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _stack_top[], _stack_bottom[];
extern int main(void);

void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);
void MemManage_Handler(void);
void BusFault_Handler(void);
void UsageFault_Handler(void);
void SysTick_Handler(void);

#define DQ_NUM_IRQS 48

typedef void (*vector_t)(void);

__attribute__((section(".vectors"), used)) const vector_t dq_vectors[16 + DQ_NUM_IRQS] = {
    (vector_t)(uintptr_t)_stack_top,
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
    for (uint32_t *s = _sidata, *d = _sdata; d < _edata;) *d++ = *s++;
    for (uint32_t *d = _sbss; d < _ebss;) *d++ = 0;
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    SCB_CPACR |= 0xFu << 20; /* CP10, CP11: full access (FPU, and MVE on Armv8.1-M) */
    __asm volatile("dsb\n isb" ::: "memory");
#endif
#if defined(__ARM_ARCH_8M_MAIN__) || defined(__ARM_ARCH_8_1M_MAIN__)
    /* Armv8-M: the hardware checks the stack limit (UsageFault STKOF on overflow) */
    __asm volatile("msr msplim, %0" ::"r"((uint32_t)(uintptr_t)_stack_bottom));
#endif
    /* MemManage, BusFault, UsageFault get their own handlers instead of escalating to HardFault */
    SCB_SHCSR |= (1u << 16) | (1u << 17) | (1u << 18);
    main();
    for (;;) {
    }
}
