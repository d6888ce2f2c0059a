/* Board support: the UART the protocol runs over, and what the host needs to know about the board.
 *
 * One implementation per UART family (board_cmsdk.c for the QEMU MPS2/MPS3 machines, board_stm32.c for
 * STM32 USART/LPUART), chosen by the build (divqat_tvm/device/build.py) from targets/boards/<name>.json. */
#ifndef DQ_BOARD_H
#define DQ_BOARD_H

#include <stdint.h>

void dq_board_init(void);
/* Blocking write of one byte. */
void dq_uart_putc(uint8_t c);
/* Non-blocking read: the byte (0..255), or -1 when none is waiting. */
int dq_uart_getc_nb(void);
void dq_uart_write(const void *buf, uint32_t n);
void dq_uart_puts(const char *s);

#endif
