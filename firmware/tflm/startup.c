/* Reset, vector table, .data/.bss, FPU/MVE enable, C++ constructors; for the TFLM reference harness. */
#include <stdint.h>

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _stack_top[];
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);
extern int main(void);
extern void tflm_fault(void);
extern void tflm_exit(uint32_t code);
void Reset_Handler(void);
void SysTick_Handler(void);
static void Default_Handler(void) { tflm_exit(0x46u); }
static void Fault_Handler(void) { tflm_fault(); }

typedef void (*vector_t)(void);
__attribute__((section(".vectors"), used)) const vector_t tflm_vectors[16 + 48] = {
    (vector_t)(uintptr_t)_stack_top,
    Reset_Handler,
    Default_Handler,
    Fault_Handler,
    Fault_Handler,
    Fault_Handler,
    Fault_Handler,
    Default_Handler,
    0,
    0,
    0,
    Default_Handler,
    Default_Handler,
    0,
    Default_Handler,
    SysTick_Handler,
    [16 ... 16 + 48 - 1] = Default_Handler,
};

#define REG(a) (*(volatile uint32_t *)(uintptr_t)(a))

void Reset_Handler(void) {
    REG(0xE000ED08u) = (uint32_t)(uintptr_t)tflm_vectors; /* VTOR */
    for (uint32_t *s = _sidata, *d = _sdata; d < _edata;) *d++ = *s++;
    for (uint32_t *d = _sbss; d < _ebss;) *d++ = 0;
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    REG(0xE000ED88u) |= 0xFu << 20; /* CPACR: CP10, CP11 */
    __asm volatile("dsb\n isb" ::: "memory");
#endif
    REG(0xE000ED24u) |= (1u << 16) | (1u << 17) | (1u << 18); /* SHCSR: own fault handlers */
    for (void (**f)(void) = __init_array_start; f < __init_array_end; f++) (*f)();
    main();
    tflm_exit(0x47u);
}

void *__dso_handle = 0; /* static objects register destructors (never run: main does not return) */

/* newlib-nano stubs (the harness never allocates or prints through stdio) */
void *_sbrk(int incr) {
    (void)incr;
    return (void *)-1;
}
int _write(int fd, const void *b, int n) {
    (void)fd;
    (void)b;
    return n;
}
int _read(int fd, void *b, int n) {
    (void)fd;
    (void)b;
    (void)n;
    return 0;
}
int _close(int fd) {
    (void)fd;
    return -1;
}
int _lseek(int fd, int o, int w) {
    (void)fd;
    (void)o;
    (void)w;
    return 0;
}
int _fstat(int fd, void *st) {
    (void)fd;
    (void)st;
    return 0;
}
int _isatty(int fd) {
    (void)fd;
    return 1;
}
int _getpid(void) { return 1; }
int _kill(int pid, int sig) {
    (void)pid;
    (void)sig;
    return -1;
}
void _exit(int code) {
    tflm_exit((uint32_t)code);
    for (;;) {}
}
