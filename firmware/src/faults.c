/* Fault handlers: report the stacked registers and fault status over the UART in a FAULT frame, then exit
 * through semihosting with a code per fault kind (QEMU) or halt (board). */
#include <stdint.h>

#include "dq_cm.h"
#include "dq_protocol.h"
#include "dq_semihost.h"

void dq_fault_report(const uint32_t *frame, uint32_t kind);

/* The handlers never return, so they switch to a stack of their own: the faulting stack may be exhausted
 * (a stack overflow) or sit where the report would overwrite the stacked registers it prints. */
uint32_t dq_fault_stack[128] __attribute__((aligned(8)));

#if defined(__ARM_ARCH_8M_MAIN__) || defined(__ARM_ARCH_8_1M_MAIN__)
#define CLEAR_MSPLIM "movs r2, #0\n msr msplim, r2\n"
#else
#define CLEAR_MSPLIM ""
#endif

#define FAULT_ENTRY(name, kind)                                                                                  \
    __attribute__((naked)) void name(void) {                                                                      \
        __asm volatile("tst lr, #4\n ite eq\n mrseq r0, msp\n mrsne r0, psp\n movs r1, #" #kind "\n"             \
                       CLEAR_MSPLIM "ldr r2, =dq_fault_stack + 512\n msr msp, r2\n b dq_fault_report\n .ltorg\n");  \
    }

FAULT_ENTRY(HardFault_Handler, 3)
FAULT_ENTRY(MemManage_Handler, 4)
FAULT_ENTRY(BusFault_Handler, 5)
FAULT_ENTRY(UsageFault_Handler, 6)
FAULT_ENTRY(Default_Handler, 7)

static char *put_str(char *p, const char *s) {
    while (*s) *p++ = *s++;
    return p;
}

static char *put_hex(char *p, const char *label, uint32_t v) {
    p = put_str(p, label);
    *p++ = '0';
    *p++ = 'x';
    for (int i = 7; i >= 0; i--) *p++ = "0123456789abcdef"[(v >> (4 * i)) & 0xFu];
    *p++ = ' ';
    return p;
}

void dq_fault_report(const uint32_t *frame, uint32_t kind) {
    static const char *const names[] = {"HardFault", "MemManage", "BusFault", "UsageFault", "Exception"};
    static const uint32_t codes[] = {DQ_EXIT_HARDFAULT, DQ_EXIT_MEMMANAGE, DQ_EXIT_BUSFAULT, DQ_EXIT_USAGEFAULT,
                                     DQ_EXIT_OTHER_EXCEPTION};
    uint32_t k = (kind >= 3u && kind <= 7u) ? kind - 3u : 4u;
    static char text[320];
    char *p = put_str(text, names[k]);
    *p++ = ' ';
    p = put_hex(p, "pc=", frame[6]);
    p = put_hex(p, "lr=", frame[5]);
    p = put_hex(p, "xpsr=", frame[7]);
    p = put_hex(p, "r0=", frame[0]);
    p = put_hex(p, "r1=", frame[1]);
    p = put_hex(p, "r2=", frame[2]);
    p = put_hex(p, "r3=", frame[3]);
    p = put_hex(p, "r12=", frame[4]);
    p = put_hex(p, "cfsr=", SCB_CFSR);
    p = put_hex(p, "hfsr=", SCB_HFSR);
    p = put_hex(p, "mmfar=", SCB_MMFAR);
    p = put_hex(p, "bfar=", SCB_BFAR);
    p = put_hex(p, "icsr=", SCB_ICSR);
    if (SCB_CFSR & (1u << 20)) p = put_str(p, "STKOF: stack overflow ");
    dq_send(DQ_T_FAULT, 0xFFFFu, text, (uint32_t)(p - text - 1));
    dq_exit(codes[k]);
}
