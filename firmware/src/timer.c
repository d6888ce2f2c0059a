/* 64-bit time base: DWT CYCCNT (core cycles) where it counts, else SysTick at the core clock.
 * SysTick reloads every 2^24 ticks; its interrupt counts the wraps (and, with DWT, catches CYCCNT's 2^32
 * wrap, since the SysTick period is far shorter). */
#include "dq_timer.h"

#include "dq_cm.h"
#include "fw_config.h"

#define SYST_RELOAD 0x00FFFFFFu

static volatile uint32_t systick_wraps;
static volatile uint32_t dwt_high;
static volatile uint32_t dwt_last;
static uint32_t kind = DQ_TIMER_SYSTICK;

static uint32_t dwt_sample(void) {
    uint32_t c = DWT_CYCCNT;
    if (c < dwt_last) dwt_high = dwt_high + 1u;
    dwt_last = c;
    return c;
}

void SysTick_Handler(void) {
    systick_wraps = systick_wraps + 1u;
    if (kind == DQ_TIMER_DWT) (void)dwt_sample();
}

static int dwt_counts(void) {
#if defined(DQ_USE_DWT) && DQ_USE_DWT
    DEMCR |= 1u << 24;     /* TRCENA */
    DWT_LAR = 0xC5ACCE55u; /* unlock (Cortex-M7); ignored elsewhere */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;
    uint32_t a = DWT_CYCCNT;
    for (volatile int i = 0; i < 16; i++) {}
    return DWT_CYCCNT != a;
#else
    return 0;
#endif
}

void dq_timer_init(void) {
    kind = dwt_counts() ? DQ_TIMER_DWT : DQ_TIMER_SYSTICK;
    SYST_CSR = 0;
    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* ENABLE | TICKINT | CLKSOURCE = core clock */
}

uint32_t dq_timer_kind(void) { return kind; }

#if DQ_QEMU
/* Under QEMU -icount shift=0 one instruction is 1 ns and a SysTick tick is 1e9/clock_hz instructions, so a
 * measured interval depends on where in a tick it starts. This puts the caller at a fixed instruction offset
 * after a SysTick edge, so the same code measures the same number of ticks run after run:
 * a 3-instruction polling loop sees the edge o in {0,1,2} instructions late; two samples straddling the next
 * edge (35 nops after the loop, i.e. 40 instructions after the first edge) tell o; three paths of lengths
 * chosen per o then reach label 9 exactly 47 instructions after the first edge. Exact for 40 instructions per
 * tick (the mps2 machines at 25 MHz); at other clocks (an505 20 MHz, an547 32 MHz) the samples do not
 * straddle the edge the same way and the phase is fixed only to within 2 instructions. */
__attribute__((naked, noinline)) static void systick_align_asm(void) {
    __asm volatile("ldr r1, =0xE000E018\n"
                   "ldr r0, [r1]\n"
                   "1: ldr r2, [r1]\n"
                   "cmp r2, r0\n"
                   "beq 1b\n"
                   ".rept 35\n nop\n .endr\n"
                   "ldr r3, [r1]\n"
                   "ldr r0, [r1]\n" /* low registers only: assembles for Armv6-M too */
                   "cmp r3, r2\n"
                   "bne 2f\n"
                   "cmp r0, r2\n"
                   "bne 3f\n"
                   "nop\n"
                   "nop\n"
                   "b 9f\n"
                   "2: nop\n"
                   "nop\n"
                   "b 9f\n"
                   "3: nop\n"
                   "b 9f\n"
                   "9: bx lr\n"
                   ".ltorg\n"
                   :
                   :
                   : "r0", "r1", "r2", "r3", "cc", "memory");
}
#endif

void dq_timer_align(void) {
#if DQ_QEMU
    if (kind == DQ_TIMER_SYSTICK) {
        uint32_t m = dq_irq_save();
        systick_align_asm();
        dq_irq_restore(m);
    }
#endif
}

uint64_t dq_timer_now(void) {
    if (kind == DQ_TIMER_DWT) {
        uint32_t m = dq_irq_save();
        uint32_t lo = dwt_sample();
        uint64_t t = ((uint64_t)dwt_high << 32) | lo;
        dq_irq_restore(m);
        return t;
    }
    uint32_t m = dq_irq_save();
    uint32_t w = systick_wraps;
    uint32_t v = SYST_CVR;
    /* wrapped but its interrupt not yet taken (we masked it): the reload value is near the top */
    if ((SCB_ICSR & ICSR_PENDSTSET) && v > (SYST_RELOAD >> 1)) w++;
    dq_irq_restore(m);
    return ((uint64_t)w << 24) + (uint64_t)(SYST_RELOAD - v);
}
