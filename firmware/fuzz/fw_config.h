/* fw_config.h of the host fuzz build (firmware/fuzz/): the firmware's own C (main.c, protocol.c, postprocess.c,
 * profile.c, uart_common.c) with the board, timer and stack replaced by fuzz_device.c. The model is the test
 * fixture tests/fixtures/tiny_dense (prefix "model"); the defence comes from -DDQ_DEFENSE... flags. */
#ifndef FW_CONFIG_H
#define FW_CONFIG_H

#include <stdint.h>

#include "model.h"

#define DQ_FW_VERSION "0.1.0"
#define DQ_FW_VERSION_MAJOR 0
#define DQ_FW_VERSION_MINOR 1
#define DQ_BOARD_NAME "host-fuzz"
#define DQ_QEMU 1 /* the shared-RAM INFER path and SHUTDOWN's exit are compiled in */
#define DQ_CLOCK_HZ 1000000u
#define DQ_UART_BASE 0u
#define DQ_UART_BAUD 115200u
#define DQ_USE_DWT 0
#define DQ_SHM_BASE 0x60000000u
#define DQ_SHM_SIZE 4096u
#define DQ_PROFILE 1
#define DQ_TEST_FAULT 0
#define DQ_MODEL_NAME "tiny_dense"
#define DQ_MODEL_SHA256 "fuzz"
#define DQ_INPUT_NDIM 4
#define DQ_INPUT_DIMS \
    { 1, 1, 4, 4 }
#define DQ_MODEL_RUN model_run
#define DQ_INPUT_SIZE MODEL_INPUT_SIZE
#define DQ_OUTPUT_SIZE MODEL_OUTPUT_SIZE
#define DQ_INPUT_SCALE MODEL_INPUT_SCALE
#define DQ_INPUT_ZERO_POINT MODEL_INPUT_ZERO_POINT
#define DQ_OUTPUT_SCALE MODEL_OUTPUT_SCALE
#define DQ_OUTPUT_ZERO_POINT MODEL_OUTPUT_ZERO_POINT
#define DQ_ARENA_BYTES MODEL_ARENA_BYTES
#define DQ_NUM_OPS MODEL_NUM_OPS

/* time-outs in fake ticks (fuzz_device.c's clock advances one tick per byte) */
#define DQ_FRAME_TIMEOUT_TICKS 1000u
#define DQ_IDLE_TICKS 100u

/* the shared-RAM window is a host array exactly DQ_SHM_SIZE long: AddressSanitizer sees any read outside it */
extern int8_t *dq_fuzz_shm;
#define DQ_SHM_PTR(off) ((const int8_t *)(dq_fuzz_shm + (off)))
#define DQ_READ_CPUID() 0x410FC241u

#endif
