/* Semihosting exit (QEMU: -semihosting-config enable=on,target=native): the code becomes QEMU's exit status. */
#ifndef DQ_SEMIHOST_H
#define DQ_SEMIHOST_H

#include <stdint.h>

/* Exit codes the host maps back to a cause (see divqat_tvm/oracle/qemu.py). */
#define DQ_EXIT_OK 0
#define DQ_EXIT_HARDFAULT 0x43
#define DQ_EXIT_MEMMANAGE 0x44
#define DQ_EXIT_BUSFAULT 0x45
#define DQ_EXIT_USAGEFAULT 0x46
#define DQ_EXIT_OTHER_EXCEPTION 0x47

/* Under QEMU: ends the emulator with `code`. On a board (no debugger attached) it spins forever. */
void dq_exit(uint32_t code) __attribute__((noreturn));

#endif
