/* The few Cortex-M system registers the runtime touches (architecture-defined addresses, no CMSIS). */
#ifndef DQ_CM_H
#define DQ_CM_H

#include <stdint.h>

#define DQ_REG(addr) (*(volatile uint32_t *)(addr))

#define SCB_CPUID DQ_REG(0xE000ED00u)
#define SCB_ICSR DQ_REG(0xE000ED04u)
#define SCB_VTOR DQ_REG(0xE000ED08u)
#define SCB_SHCSR DQ_REG(0xE000ED24u)
#define SCB_CFSR DQ_REG(0xE000ED28u)
#define SCB_HFSR DQ_REG(0xE000ED2Cu)
#define SCB_MMFAR DQ_REG(0xE000ED34u)
#define SCB_BFAR DQ_REG(0xE000ED38u)
#define SCB_CPACR DQ_REG(0xE000ED88u)
#define SYST_CSR DQ_REG(0xE000E010u)
#define SYST_RVR DQ_REG(0xE000E014u)
#define SYST_CVR DQ_REG(0xE000E018u)
#define DEMCR DQ_REG(0xE000EDFCu)
#define DWT_CTRL DQ_REG(0xE0001000u)
#define DWT_CYCCNT DQ_REG(0xE0001004u)
#define DWT_LAR DQ_REG(0xE0001FB0u)

#define ICSR_PENDSTSET (1u << 26)

static inline uint32_t dq_irq_save(void) {
    uint32_t primask;
    __asm volatile("mrs %0, primask\n cpsid i" : "=r"(primask)::"memory");
    return primask;
}

static inline void dq_irq_restore(uint32_t primask) { __asm volatile("msr primask, %0" ::"r"(primask) : "memory"); }

static inline uint32_t dq_get_sp(void) {
    uint32_t sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

#endif
