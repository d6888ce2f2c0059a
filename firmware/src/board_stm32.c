/* STM32 USART / LPUART at the reset clock, register level (no HAL): STM32H7 (USART3 on PD8/PD9),
 * STM32F7 (USART1 on PA9/PB7), STM32L4+ (LPUART1 on PG7/PG8), STM32F4 (USART2 on PA2/PA3 or USART1 on
 * PA9/PA10) -- the ST-LINK virtual COM ports of the boards in targets/. The chip family comes from the board
 * file's "soc" (DQ_SOC_STM32H7/F7/L4/F4). F7, H7 and L4 share the USART v2 register layout (ISR/ICR/RDR/TDR),
 * the F4 has the older v1 layout (SR/DR). The F4 code runs under QEMU's netduinoplus2 machine (STM32F405,
 * board netduinoplus2); the v2 code runs in scripts/mmio_harness.py (unicorn, registers modelled). */
#include <stdint.h>

#include "dq_board.h"
#include "dq_cm.h"
#include "fw_config.h"

#if defined(DQ_SOC_STM32F4)
/* USART v1 register layout (F1, F2, F4): status and data share one register pair */
#define U_SR DQ_REG(DQ_UART_BASE + 0x00u)
#define U_DR DQ_REG(DQ_UART_BASE + 0x04u)
#define U_BRR DQ_REG(DQ_UART_BASE + 0x08u)
#define U_CR1 DQ_REG(DQ_UART_BASE + 0x0Cu)
#define CR1_UE (1u << 13)
#define CR1_RE (1u << 2)
#define CR1_TE (1u << 3)
#define SR_ORE (1u << 3)
#define SR_RXNE (1u << 5)
#define SR_TXE (1u << 7)
#else
/* USART v2 register layout (F7, H7, L4 and their LPUART share it) */
#define U_CR1 DQ_REG(DQ_UART_BASE + 0x00u)
#define U_BRR DQ_REG(DQ_UART_BASE + 0x0Cu)
#define U_ISR DQ_REG(DQ_UART_BASE + 0x1Cu)
#define U_ICR DQ_REG(DQ_UART_BASE + 0x20u)
#define U_RDR DQ_REG(DQ_UART_BASE + 0x24u)
#define U_TDR DQ_REG(DQ_UART_BASE + 0x28u)
#define CR1_UE (1u << 0)
#define CR1_RE (1u << 2)
#define CR1_TE (1u << 3)
#define ISR_ORE (1u << 3)
#define ISR_RXNE (1u << 5)
#define ISR_TXE (1u << 7)
#endif

/* GPIO register offsets */
#define G_MODER 0x00u
#define G_AFRL 0x20u
#define G_AFRH 0x24u

static void gpio_af(uint32_t gpio_base, uint32_t pin, uint32_t af) {
    volatile uint32_t *moder = (volatile uint32_t *)(gpio_base + G_MODER);
    *moder = (*moder & ~(3u << (2u * pin))) | (2u << (2u * pin));
    volatile uint32_t *afr = (volatile uint32_t *)(gpio_base + (pin < 8u ? G_AFRL : G_AFRH));
    uint32_t shift = 4u * (pin & 7u);
    *afr = (*afr & ~(0xFu << shift)) | (af << shift);
}

void dq_board_init(void) {
#if defined(DQ_SOC_STM32H7)
    DQ_REG(0x58024400u + 0x0E0u) |= 1u << 3;  /* RCC_AHB4ENR.GPIODEN */
    DQ_REG(0x58024400u + 0x0E8u) |= 1u << 18; /* RCC_APB1LENR.USART3EN */
    (void)DQ_REG(0x58024400u + 0x0E8u);
    gpio_af(0x58020C00u, 8u, 7u); /* PD8 = USART3_TX */
    gpio_af(0x58020C00u, 9u, 7u); /* PD9 = USART3_RX */
    U_BRR = (DQ_CLOCK_HZ + DQ_UART_BAUD / 2u) / DQ_UART_BAUD;
#elif defined(DQ_SOC_STM32F7)
    DQ_REG(0x40023800u + 0x30u) |= (1u << 0) | (1u << 1); /* RCC_AHB1ENR.GPIOAEN | GPIOBEN */
    DQ_REG(0x40023800u + 0x44u) |= 1u << 4;               /* RCC_APB2ENR.USART1EN */
    (void)DQ_REG(0x40023800u + 0x44u);
    gpio_af(0x40020000u, 9u, 7u); /* PA9 = USART1_TX */
    gpio_af(0x40020400u, 7u, 7u); /* PB7 = USART1_RX */
    U_BRR = (DQ_CLOCK_HZ + DQ_UART_BAUD / 2u) / DQ_UART_BAUD;
#elif defined(DQ_SOC_STM32L4)
    DQ_REG(0x40021000u + 0x58u) |= 1u << 28; /* RCC_APB1ENR1.PWREN */
    (void)DQ_REG(0x40021000u + 0x58u);
    DQ_REG(0x40007000u + 0x04u) |= 1u << 9; /* PWR_CR2.IOSV: port G is powered from VDDIO2 */
    DQ_REG(0x40021000u + 0x4Cu) |= 1u << 6; /* RCC_AHB2ENR.GPIOGEN */
    DQ_REG(0x40021000u + 0x5Cu) |= 1u << 0; /* RCC_APB1ENR2.LPUART1EN */
    (void)DQ_REG(0x40021000u + 0x5Cu);
    gpio_af(0x48001800u, 7u, 8u); /* PG7 = LPUART1_TX */
    gpio_af(0x48001800u, 8u, 8u); /* PG8 = LPUART1_RX */
    /* LPUART: BRR = 256 * f / baud */
    U_BRR = (uint32_t)(((uint64_t)DQ_CLOCK_HZ * 256u + DQ_UART_BAUD / 2u) / DQ_UART_BAUD);
#elif defined(DQ_SOC_STM32F4)
    DQ_REG(0x40023800u + 0x30u) |= 1u << 0;  /* RCC_AHB1ENR.GPIOAEN */
#if DQ_UART_BASE == 0x40004400u
    DQ_REG(0x40023800u + 0x40u) |= 1u << 17; /* RCC_APB1ENR.USART2EN */
    (void)DQ_REG(0x40023800u + 0x40u);
    gpio_af(0x40020000u, 2u, 7u); /* PA2 = USART2_TX */
    gpio_af(0x40020000u, 3u, 7u); /* PA3 = USART2_RX */
#elif DQ_UART_BASE == 0x40011000u
    DQ_REG(0x40023800u + 0x44u) |= 1u << 4; /* RCC_APB2ENR.USART1EN */
    (void)DQ_REG(0x40023800u + 0x44u);
    gpio_af(0x40020000u, 9u, 7u);  /* PA9 = USART1_TX */
    gpio_af(0x40020000u, 10u, 7u); /* PA10 = USART1_RX */
#else
#error "STM32F4: the board's uart base must be USART2 (0x40004400) or USART1 (0x40011000)"
#endif
    /* oversampling by 16: BRR = mantissa << 4 | fraction = f / baud, rounded */
    U_BRR = (DQ_CLOCK_HZ + DQ_UART_BAUD / 2u) / DQ_UART_BAUD;
#else
#error "board_stm32.c needs DQ_SOC_STM32H7, DQ_SOC_STM32F7, DQ_SOC_STM32L4 or DQ_SOC_STM32F4 (the board file's soc)"
#endif
    U_CR1 = CR1_UE | CR1_RE | CR1_TE;
}

#if defined(DQ_SOC_STM32F4)
void dq_uart_putc(uint8_t c) {
    while (!(U_SR & SR_TXE)) {}
    U_DR = c;
}

int dq_uart_getc_nb(void) {
    uint32_t sr = U_SR;
    /* an overrun is a lost byte (the CRC will catch it); reading SR then DR clears it */
    if (sr & (SR_RXNE | SR_ORE)) {
        uint32_t d = U_DR;
        return (sr & SR_RXNE) ? (int)(d & 0xFFu) : -1;
    }
    return -1;
}
#else
void dq_uart_putc(uint8_t c) {
    while (!(U_ISR & ISR_TXE)) {}
    U_TDR = c;
}

int dq_uart_getc_nb(void) {
    uint32_t isr = U_ISR;
    if (isr & ISR_ORE) U_ICR = ISR_ORE; /* an overrun is a lost byte: the CRC will catch it */
    return (isr & ISR_RXNE) ? (int)(U_RDR & 0xFFu) : -1;
}
#endif
