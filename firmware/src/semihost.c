/* Semihosting SYS_EXIT_EXTENDED: QEMU exits with the guest's code (needs -semihosting-config enable=on). */
#include "dq_semihost.h"

#include "fw_config.h"

#define SYS_EXIT_EXTENDED 0x20u
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

void dq_exit(uint32_t code) {
#if DQ_QEMU
    volatile uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, code};
    register uint32_t r0 __asm__("r0") = SYS_EXIT_EXTENDED;
    register uint32_t r1 __asm__("r1") = (uint32_t)block;
    __asm volatile("bkpt #0xAB" : "+r"(r0) : "r"(r1) : "memory");
#else
    (void)code; /* a board without a debugger would fault on BKPT: stay halted instead */
#endif
    for (;;) {}
}
