/* Fault handlers: report the stacked registers and fault status over the UART in a FAULT frame, then exit
 * through semihosting with a code per fault kind (QEMU) or halt (board). */
#include <stdint.h>

#include "dq_cm.h"
#include "dq_protocol.h"
#include "dq_semihost.h"
#include "dq_vectors.h"

/* The handlers never return, so they switch to a stack of their own: the faulting stack may be exhausted
 * (a stack overflow) or sit where the report would overwrite the stacked registers it prints. */
#define DQ_FAULT_STACK_WORDS 128
uint32_t dq_fault_stack[DQ_FAULT_STACK_WORDS] __attribute__((aligned(8)));

#if defined(__ARM_ARCH_8M_MAIN__) || defined(__ARM_ARCH_8_1M_MAIN__)
#define CLEAR_MSPLIM "movs r2, #0\n msr msplim, r2\n"
#else
#define CLEAR_MSPLIM ""
#endif

/* Armv6-M (Thumb-1) has no IT blocks, no TST with an immediate and only a short-range B */
#if defined(__ARM_ARCH_6M__)
#define FAULT_ENTRY_ASM(kind)                                                                                         \
    "movs r0, #4\n mov r1, lr\n tst r1, r0\n bne 1f\n mrs r0, msp\n b 2f\n 1: mrs r0, psp\n 2: movs r1, #" #kind "\n" \
    "ldr r2, =dq_fault_stack + 512\n msr msp, r2\n ldr r3, =dq_fault_report\n bx r3\n .ltorg\n"
#else
#define FAULT_ENTRY_ASM(kind)                                                                  \
    "tst lr, #4\n ite eq\n mrseq r0, msp\n mrsne r0, psp\n movs r1, #" #kind "\n" CLEAR_MSPLIM \
    "ldr r2, =dq_fault_stack + 512\n msr msp, r2\n b dq_fault_report\n .ltorg\n"
#endif
_Static_assert(sizeof dq_fault_stack == 512, "the fault entry sets MSP to dq_fault_stack + 512");

#define FAULT_ENTRY(name, kind) \
    __attribute__((naked)) void name(void) { __asm volatile(FAULT_ENTRY_ASM(kind)); }

FAULT_ENTRY(HardFault_Handler, 3)
FAULT_ENTRY(MemManage_Handler, 4)
FAULT_ENTRY(BusFault_Handler, 5)
FAULT_ENTRY(UsageFault_Handler, 6)
FAULT_ENTRY(Default_Handler, 7)

static void put_hex(dq_writer_t *w, const char *label, uint32_t v) {
    dq_w_str(w, label);
    dq_w_str(w, "0x");
    static const char hex[] = "0123456789abcdef";
    for (int i = 7; i >= 0; i--) dq_w_u8(w, (uint8_t)hex[(v >> (4 * i)) & 0xFu]);
    dq_w_u8(w, ' ');
}

void dq_fault_report(const uint32_t *frame, uint32_t kind) {
    static const char *const names[] = {"HardFault", "MemManage", "BusFault", "UsageFault", "Exception"};
    static const uint32_t codes[] = {DQ_EXIT_HARDFAULT, DQ_EXIT_MEMMANAGE, DQ_EXIT_BUSFAULT, DQ_EXIT_USAGEFAULT,
                                     DQ_EXIT_OTHER_EXCEPTION};
    uint32_t k = (kind >= 3u && kind <= 7u) ? kind - 3u : 4u;
    static uint8_t text[320];
    dq_writer_t w;
    dq_w_init(&w, text, sizeof text);
    dq_w_str(&w, names[k]);
    dq_w_u8(&w, ' ');
    put_hex(&w, "pc=", frame[6]);
    put_hex(&w, "lr=", frame[5]);
    put_hex(&w, "xpsr=", frame[7]);
    put_hex(&w, "r0=", frame[0]);
    put_hex(&w, "r1=", frame[1]);
    put_hex(&w, "r2=", frame[2]);
    put_hex(&w, "r3=", frame[3]);
    put_hex(&w, "r12=", frame[4]);
#if !defined(__ARM_ARCH_6M__) /* Armv6-M has none of the fault status registers */
    put_hex(&w, "cfsr=", SCB_CFSR);
    put_hex(&w, "hfsr=", SCB_HFSR);
    put_hex(&w, "mmfar=", SCB_MMFAR);
    put_hex(&w, "bfar=", SCB_BFAR);
#endif
    put_hex(&w, "icsr=", SCB_ICSR);
#if !defined(__ARM_ARCH_6M__)
    if (SCB_CFSR & (1u << 20)) dq_w_str(&w, "STKOF: stack overflow ");
#endif
    /* a text report is cut at the buffer's end rather than dropped; the trailing space is not sent */
    uint32_t n = dq_w_fits(&w) ? w.len : w.cap;
    dq_send(DQ_T_FAULT, 0xFFFFu, text, n > 0u ? n - 1u : 0u);
    dq_exit(codes[k]);
}
