/* The device side of the query interface: boot banner, then serve INFO / INFER / STATS / SHUTDOWN frames
 * for the compiled model. Configuration (board, model prefix, defence, profiling) is in the generated
 * fw_config.h (divqat_tvm/device/build.py) and dq_defense_config.h (divqat_tvm/defenses/spec.py).
 *
 * Every answer goes through a bounded writer (dq_writer_t) or is streamed (dq_tx_t), so no write passes the end
 * of a buffer; an answer that does not fit is replaced by an ERROR DQ_E_OVERFLOW. */
#include <stdint.h>
#include <string.h>

#include "dq_board.h"
#include "dq_cm.h"
#include "dq_postprocess.h"
#include "dq_protocol.h"
#include "dq_semihost.h"
#include "dq_stack.h"
#include "dq_timer.h"
#include "dq_vectors.h"
#include "fw_config.h"
#if DQ_PROFILE
#include "dq_profile.h"
#endif

#define INFER_HEADER_BYTES 4u
#define RX_CAP (DQ_INPUT_SIZE + INFER_HEADER_BYTES + 64u)

#if DQ_OUTPUT_SIZE > DQ_MAX_CLASSES
#error "the model has more classes than the INFER answer's u16 class count holds (DQ_MAX_CLASSES)"
#endif

/* The host fuzz build (firmware/fuzz/) runs this file unchanged on the host: it supplies the CPUID and maps the
 * shared-RAM window onto a host array through these two macros (fw_config.h may define them). */
#ifndef DQ_READ_CPUID
#define DQ_READ_CPUID() SCB_CPUID
#endif
#ifndef DQ_SHM_PTR
#define DQ_SHM_PTR(off) ((const int8_t *)(uintptr_t)(DQ_SHM_BASE + (off)))
#endif

static uint8_t rx_buf[RX_CAP] __attribute__((aligned(8)));
static int8_t logits[DQ_OUTPUT_SIZE] __attribute__((aligned(8)));
static float probs[DQ_OUTPUT_SIZE];
static uint64_t last_model_ticks;

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void send_hello(void) {
    static const char banner[] = "divqat-fw " DQ_FW_VERSION " board=" DQ_BOARD_NAME " model=" DQ_MODEL_NAME " ready";
    dq_send(DQ_T_HELLO, 0, banner, sizeof banner - 1u);
}

static void handle_info(uint16_t seq) {
    static const uint16_t dims[4] = DQ_INPUT_DIMS;
    static uint8_t buf[DQ_INFO_MAX_BYTES]; /* static: INFO must work on the smallest stack a build allows */
    dq_writer_t w;
    dq_w_init(&w, buf, sizeof buf);
    dq_w_u8(&w, DQ_PROTO_VERSION);
    dq_w_u8(&w, DQ_FW_VERSION_MAJOR);
    dq_w_u8(&w, DQ_FW_VERSION_MINOR);
    dq_w_u8(&w, dq_timer_kind());
    dq_w_u8(&w, DQ_DEFENSE);
    dq_w_u8(&w, DQ_PROFILE);
    dq_w_u8(&w, DQ_QEMU);
    dq_w_u8(&w, DQ_INPUT_NDIM);
    for (uint32_t i = 0; i < 4u; i++) dq_w_u16(&w, dims[i]);
    dq_w_u32(&w, DQ_INPUT_SIZE);
    dq_w_u32(&w, DQ_OUTPUT_SIZE);
    dq_w_f32(&w, DQ_INPUT_SCALE);
    dq_w_u32(&w, (uint32_t)(int32_t)DQ_INPUT_ZERO_POINT);
    dq_w_f32(&w, DQ_OUTPUT_SCALE);
    dq_w_u32(&w, (uint32_t)(int32_t)DQ_OUTPUT_ZERO_POINT);
    dq_w_u32(&w, DQ_NUM_OPS);
    dq_w_u32(&w, DQ_ARENA_BYTES);
    dq_w_u32(&w, DQ_CLOCK_HZ);
    dq_w_u32(&w, DQ_SHM_BASE);
    dq_w_u32(&w, DQ_SHM_SIZE);
    dq_w_u32(&w, RX_CAP);
    dq_w_u32(&w, dq_stack_size());
    dq_w_u32(&w, DQ_READ_CPUID());
    dq_w_f32(&w, DQ_BETA);
    dq_w_f32(&w, DQ_GAMMA);
    dq_w_f32(&w, DQ_NU);
    dq_w_str0(&w, DQ_MODEL_SHA256);
    dq_w_str0(&w, DQ_BOARD_NAME);
    dq_w_str0(&w, DQ_MODEL_NAME);
    dq_w_str0(&w, DQ_FW_VERSION);
    dq_send_reply(DQ_T_INFO, seq, &w);
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
        input = DQ_SHM_PTR(off);
    } else {
        dq_send_error(f->seq, DQ_E_PAYLOAD, f->type, mode);
        return;
    }

    dq_stack_paint();
#if DQ_PROFILE
    dq_profile_reset();
#endif
    dq_timer_align();
    uint64_t t0 = dq_timer_now();
    int rc = DQ_MODEL_RUN(input, logits);
    uint64_t t1 = dq_timer_now();
    dq_postprocess(logits, DQ_OUTPUT_SIZE, DQ_OUTPUT_SCALE, DQ_OUTPUT_ZERO_POINT, probs);
    uint64_t t2 = dq_timer_now();
    uint32_t peak = dq_stack_peak();
    last_model_ticks = t1 - t0;

    /* header through a bounded writer, then logits and probabilities streamed: no buffer for the whole answer */
    uint8_t head[DQ_INFER_HEAD_BYTES];
    dq_writer_t w;
    dq_w_init(&w, head, sizeof head);
    dq_w_u8(&w, rc != 0 ? DQ_E_MODEL : (peak >= dq_stack_size() ? DQ_E_STACK : DQ_OK));
    dq_w_u8(&w, dq_timer_kind());
    dq_w_u16(&w, DQ_OUTPUT_SIZE);
    dq_w_u32(&w, peak);
    dq_w_u64(&w, t1 - t0);
    dq_w_u64(&w, t2 - t1);
    dq_w_u32(&w, (uint32_t)rc);
    dq_w_u32(&w, 0);
    if (!dq_w_fits(&w)) { /* cannot happen while DQ_INFER_HEAD_BYTES matches the fields above */
        dq_send_error(f->seq, DQ_E_OVERFLOW, f->type, w.len);
        return;
    }
    dq_tx_t t;
    dq_tx_begin(&t, DQ_T_INFER | DQ_T_RESPONSE, f->seq, w.len + 5u * DQ_OUTPUT_SIZE);
    dq_tx_bytes(&t, head, w.len);
    dq_tx_bytes(&t, logits, DQ_OUTPUT_SIZE);
    for (uint32_t i = 0; i < DQ_OUTPUT_SIZE; i++) {
        uint32_t v;
        uint8_t b[4];
        memcpy(&v, &probs[i], sizeof v);
        dq_le32(b, v);
        dq_tx_bytes(&t, b, sizeof b);
    }
    dq_tx_end(&t);
}

static void handle_stats(const dq_frame_t *f) {
#if DQ_PROFILE
    uint8_t head[16];
    dq_writer_t w;
    dq_w_init(&w, head, sizeof head);
    dq_w_u8(&w, dq_timer_kind());
    dq_w_u8(&w, 1);
    dq_w_u16(&w, DQ_NUM_OPS);
    dq_w_u32(&w, 0);
    dq_w_u64(&w, last_model_ticks);
    if (!dq_w_fits(&w)) {
        dq_send_error(f->seq, DQ_E_OVERFLOW, f->type, w.len);
        return;
    }
    dq_tx_t t;
    dq_tx_begin(&t, DQ_T_STATS | DQ_T_RESPONSE, f->seq, w.len + 8u * (uint32_t)DQ_NUM_OPS);
    dq_tx_bytes(&t, head, w.len);
    for (int i = 0; i < DQ_NUM_OPS; i++) {
        uint64_t v = dq_profile_ticks(i);
        uint8_t b[8];
        dq_le32(b, (uint32_t)v);
        dq_le32(b + 4, (uint32_t)(v >> 32));
        dq_tx_bytes(&t, b, sizeof b);
    }
    dq_tx_end(&t);
#else
    dq_send_error(f->seq, DQ_E_UNSUPPORTED, f->type, 0);
#endif
}

#if DQ_TEST_FAULT
/* Test-only: recursion that the stack ends (its bound is out of reach), each level keeping 64 bytes live. */
static volatile uint32_t overflow_bound = 0xFFFFFFFFu;

__attribute__((noinline)) static uint32_t overflow_stack(uint32_t depth) {
    volatile uint8_t pad[64];
    pad[depth & 63u] = (uint8_t)depth;
    if (depth == overflow_bound) return pad[0];
    return overflow_stack(depth + 1u) + pad[depth & 63u];
}

/* Test-only: fault (payload 0: undefined instruction -> UsageFault), hang (1) or overflow the stack (2). */
static void handle_fault_test(const dq_frame_t *f) {
    uint8_t what = f->length >= 1u ? f->payload[0] : 0u;
    if (what == 1u) {
        for (;;) {}
    }
    if (what == 2u) (void)overflow_stack(0);
    __asm volatile("udf #0");
}
#endif

/* INFO, STATS and SHUTDOWN take no payload: one is a malformed request (DQ_E_PAYLOAD, detail: its length). */
static int no_payload(const dq_frame_t *f) {
    if (f->length == 0u) return 1;
    dq_send_error(f->seq, DQ_E_PAYLOAD, f->type, f->length);
    return 0;
}

void dq_serve_one(void) {
    dq_frame_t f;
    uint16_t eseq;
    uint8_t etype;
    uint32_t detail;
    dq_status_t st = dq_recv(&f, rx_buf, RX_CAP, &eseq, &etype, &detail);
    if (st != DQ_OK) {
        dq_send_error(eseq, (uint8_t)st, etype, detail);
        return;
    }
    switch (f.type) {
    case DQ_T_INFO:
        if (no_payload(&f)) handle_info(f.seq);
        break;
    case DQ_T_INFER:
        handle_infer(&f);
        break;
    case DQ_T_STATS:
        if (no_payload(&f)) handle_stats(&f);
        break;
    case DQ_T_SHUTDOWN:
        if (!no_payload(&f)) break;
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

void dq_main(void) {
    dq_board_init();
    dq_timer_init();
    dq_stack_paint();
    send_hello();
    for (;;) dq_serve_one();
}
