/* 64-bit time base: DWT CYCCNT (core cycles) where it counts, else SysTick at the core clock.
 * SysTick reloads every 2^24 ticks; its interrupt counts the wraps (and, with DWT, catches CYCCNT's 2^32
 * wrap, since the SysTick period is far shorter). */
#include "dq_timer.h"

#include "dq_cm.h"

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
    DEMCR |= 1u << 24; /* TRCENA */
    DWT_LAR = 0xC5ACCE55u; /* unlock (Cortex-M7); ignored elsewhere */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;
    uint32_t a = DWT_CYCCNT;
    for (volatile int i = 0; i < 16; i++) {
    }
    return DWT_CYCCNT != a;
#else
    return 0;
#endif
}

void timer_init(void) {
    kind = dwt_counts() ? DQ_TIMER_DWT : DQ_TIMER_SYSTICK;
    SYST_CSR = 0;
    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* ENABLE | TICKINT | CLKSOURCE = core clock */
}

uint32_t timer_kind(void) { return kind; }

uint64_t timer_now(void) {
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
