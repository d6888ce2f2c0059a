/* Arm CMSDK APB UART (MPS2/MPS3 FPGA images and their QEMU machines). Base and clock from fw_config.h. */
#include <stdint.h>

#include "dq_board.h"
#include "dq_cm.h"
#include "fw_config.h"

#define UART_DATA DQ_REG(DQ_UART_BASE + 0x00u)
#define UART_STATE DQ_REG(DQ_UART_BASE + 0x04u)
#define UART_CTRL DQ_REG(DQ_UART_BASE + 0x08u)
#define UART_BAUDDIV DQ_REG(DQ_UART_BASE + 0x10u)
#define STATE_TX_FULL 1u
#define STATE_RX_FULL 2u

void dq_board_init(void) {
    uint32_t div = DQ_CLOCK_HZ / DQ_UART_BAUD;
    UART_BAUDDIV = div < 16u ? 16u : div;
    UART_CTRL = 3u; /* TX enable | RX enable */
}

void dq_uart_putc(uint8_t c) {
    while (UART_STATE & STATE_TX_FULL) {}
    UART_DATA = c;
}

int dq_uart_getc_nb(void) { return (UART_STATE & STATE_RX_FULL) ? (int)(UART_DATA & 0xFFu) : -1; }
