/* The device side of the query interface: boot banner, then serve INFO / INFER / STATS / SHUTDOWN frames
 * for the compiled model. Configuration (board, model prefix, defence, profiling) is in the generated
 * fw_config.h (divqat_tvm/device/build.py). */
#include <stdint.h>
#include <string.h>

#include "dq_board.h"
#include "dq_cm.h"
#include "dq_postprocess.h"
#include "dq_protocol.h"
#include "dq_semihost.h"
#include "dq_stack.h"
#include "dq_timer.h"
#include "fw_config.h"
#if DQ_PROFILE
#include "dq_profile.h"
#endif

#define INFER_HEADER_BYTES 4u
#define RX_CAP (DQ_INPUT_SIZE + INFER_HEADER_BYTES + 64u)
#define INFER_RESP_HEADER 32u

static uint8_t rx_buf[RX_CAP] __attribute__((aligned(8)));
static int8_t logits[DQ_OUTPUT_SIZE] __attribute__((aligned(8)));
static float probs[DQ_OUTPUT_SIZE];
static uint8_t resp[INFER_RESP_HEADER + DQ_OUTPUT_SIZE + 4u * DQ_OUTPUT_SIZE] __attribute__((aligned(8)));
static uint64_t last_model_ticks;

static uint8_t *put8(uint8_t *p, uint32_t v) {
    *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put16(uint8_t *p, uint32_t v) {
    p = put8(p, v);
    return put8(p, v >> 8);
}

static uint8_t *put32(uint8_t *p, uint32_t v) {
    p = put16(p, v);
    return put16(p, v >> 16);
}

static uint8_t *put64(uint8_t *p, uint64_t v) {
    p = put32(p, (uint32_t)v);
    return put32(p, (uint32_t)(v >> 32));
}

static uint8_t *putf(uint8_t *p, float f) {
    uint32_t v;
    memcpy(&v, &f, sizeof v);
    return put32(p, v);
}

static uint8_t *puts0(uint8_t *p, const char *s) {
    while (*s) *p++ = (uint8_t)*s++;
    *p++ = 0;
    return p;
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void send_hello(void) {
    static const char banner[] = "divqat-fw " DQ_FW_VERSION " board=" DQ_BOARD_NAME " model=" DQ_MODEL_NAME " ready";
    dq_send(DQ_T_HELLO, 0, banner, sizeof banner - 1u);
}

static void handle_info(uint16_t seq) {
    static const uint16_t dims[4] = DQ_INPUT_DIMS;
    uint8_t buf[320];
    uint8_t *p = buf;
    p = put8(p, DQ_PROTO_VERSION);
    p = put8(p, DQ_FW_VERSION_MAJOR);
    p = put8(p, DQ_FW_VERSION_MINOR);
    p = put8(p, timer_kind());
    p = put8(p, DQ_DEFENSE);
    p = put8(p, DQ_PROFILE);
    p = put8(p, DQ_QEMU);
    p = put8(p, DQ_INPUT_NDIM);
    for (int i = 0; i < 4; i++) p = put16(p, dims[i]);
    p = put32(p, DQ_INPUT_SIZE);
    p = put32(p, DQ_OUTPUT_SIZE);
    p = putf(p, DQ_INPUT_SCALE);
    p = put32(p, (uint32_t)(int32_t)DQ_INPUT_ZERO_POINT);
    p = putf(p, DQ_OUTPUT_SCALE);
    p = put32(p, (uint32_t)(int32_t)DQ_OUTPUT_ZERO_POINT);
    p = put32(p, DQ_NUM_OPS);
    p = put32(p, DQ_ARENA_BYTES);
    p = put32(p, DQ_CLOCK_HZ);
    p = put32(p, DQ_SHM_BASE);
    p = put32(p, DQ_SHM_SIZE);
    p = put32(p, RX_CAP);
    p = put32(p, stack_size());
    p = put32(p, SCB_CPUID);
    p = putf(p, DQ_BETA);
    p = putf(p, DQ_GAMMA);
    p = putf(p, DQ_NU);
    p = puts0(p, DQ_MODEL_SHA256);
    p = puts0(p, DQ_BOARD_NAME);
    p = puts0(p, DQ_MODEL_NAME);
    p = puts0(p, DQ_FW_VERSION);
    dq_send(DQ_T_INFO | DQ_T_RESPONSE, seq, buf, (uint32_t)(p - buf));
}

static void handle_infer(const dq_frame_t *f) {
    const int8_t *input;
    if (f->length < INFER_HEADER_BYTES) {
        dq_send_error(f->seq, DQ_E_PAYLOAD, f->type, f->length);
        return;
    }
    uint8_t mode = f->payload[0];
    if (mode == DQ_INFER_INLINE) {
        if (f->length != INFER_HEADER_BYTES + DQ_INPUT_SIZE) {
            dq_send_error(f->seq, DQ_E_PAYLOAD, f->type, f->length);
            return;
        }
        input = (const int8_t *)(f->payload + INFER_HEADER_BYTES);
    } else if (mode == DQ_INFER_SHARED) {
        if (DQ_SHM_SIZE == 0u) {
            dq_send_error(f->seq, DQ_E_UNSUPPORTED, f->type, mode);
            return;
        }
        uint32_t off = f->length == INFER_HEADER_BYTES + 4u ? rd32(f->payload + INFER_HEADER_BYTES) : 0xFFFFFFFFu;
        if (off > DQ_SHM_SIZE || DQ_SHM_SIZE - off < DQ_INPUT_SIZE) {
            dq_send_error(f->seq, DQ_E_PAYLOAD, f->type, off);
            return;
        }
        input = (const int8_t *)(uintptr_t)(DQ_SHM_BASE + off);
    } else {
        dq_send_error(f->seq, DQ_E_PAYLOAD, f->type, mode);
        return;
    }

    stack_paint();
#if DQ_PROFILE
    dq_profile_reset();
#endif
    timer_align();
    uint64_t t0 = timer_now();
    int rc = DQ_MODEL_RUN(input, logits);
    uint64_t t1 = timer_now();
    dq_postprocess(logits, DQ_OUTPUT_SIZE, DQ_OUTPUT_SCALE, DQ_OUTPUT_ZERO_POINT, probs);
    uint64_t t2 = timer_now();
    uint32_t peak = stack_peak();
    last_model_ticks = t1 - t0;

    uint8_t *p = resp;
    p = put8(p, rc != 0 ? DQ_E_MODEL : (peak >= stack_size() ? DQ_E_STACK : DQ_OK));
    p = put8(p, timer_kind());
    p = put16(p, DQ_OUTPUT_SIZE);
    p = put32(p, peak);
    p = put64(p, t1 - t0);
    p = put64(p, t2 - t1);
    p = put32(p, (uint32_t)rc);
    p = put32(p, 0);
    memcpy(p, logits, DQ_OUTPUT_SIZE);
    p += DQ_OUTPUT_SIZE;
    for (uint32_t i = 0; i < DQ_OUTPUT_SIZE; i++) p = putf(p, probs[i]);
    dq_send(DQ_T_INFER | DQ_T_RESPONSE, f->seq, resp, (uint32_t)(p - resp));
}

static void handle_stats(const dq_frame_t *f) {
#if DQ_PROFILE
    uint8_t head[16];
    uint8_t *p = head;
    p = put8(p, timer_kind());
    p = put8(p, 1);
    p = put16(p, DQ_NUM_OPS);
    p = put32(p, 0);
    p = put64(p, last_model_ticks);
    uint8_t ops[8u * (DQ_NUM_OPS > 0 ? DQ_NUM_OPS : 1)];
    uint8_t *q = ops;
    for (int i = 0; i < DQ_NUM_OPS; i++) q = put64(q, dq_profile_ticks(i));
    dq_send2(DQ_T_STATS | DQ_T_RESPONSE, f->seq, head, (uint32_t)(p - head), ops, (uint32_t)(q - ops));
#else
    dq_send_error(f->seq, DQ_E_UNSUPPORTED, f->type, 0);
#endif
}

#if DQ_TEST_FAULT
/* Test-only: fault (payload 0: undefined instruction -> UsageFault) or hang (1) on request. */
static void handle_fault_test(const dq_frame_t *f) {
    if (f->length >= 1u && f->payload[0] == 1u) {
        for (;;) {
        }
    }
    __asm volatile("udf #0");
}
#endif

int main(void) {
    board_init();
    timer_init();
    stack_paint();
    send_hello();
    for (;;) {
        dq_frame_t f;
        uint16_t eseq;
        uint8_t etype;
        uint32_t detail;
        uint32_t st = dq_recv(&f, rx_buf, RX_CAP, &eseq, &etype, &detail);
        if (st != DQ_OK) {
            dq_send_error(eseq, (uint8_t)st, etype, detail);
            continue;
        }
        switch (f.type) {
        case DQ_T_INFO:
            handle_info(f.seq);
            break;
        case DQ_T_INFER:
            handle_infer(&f);
            break;
        case DQ_T_STATS:
            handle_stats(&f);
            break;
        case DQ_T_SHUTDOWN:
            dq_send(DQ_T_SHUTDOWN | DQ_T_RESPONSE, f.seq, 0, 0);
#if DQ_QEMU
            dq_exit(DQ_EXIT_OK);
#endif
            break;
#if DQ_TEST_FAULT
        case DQ_T_FAULT_TEST:
            handle_fault_test(&f);
            break;
#endif
        default:
            dq_send_error(f.seq, DQ_E_TYPE, f.type, f.type);
            break;
        }
    }
}
