/* UART helpers shared by every board. */
#include "dq_board.h"

void dq_uart_write(const void *buf, uint32_t n) {
    const uint8_t *p = (const uint8_t *)buf;
    for (uint32_t i = 0; i < n; i++) dq_uart_putc(p[i]);
}

void dq_uart_puts(const char *s) {
    while (*s) dq_uart_putc((uint8_t)*s++);
}
