/* Host fuzz target for the device code: the frame decoder (protocol.c), the dispatcher and the answers
 * (main.c), the inference path (the fixture model) and the post-processing (postprocess.c), built with clang
 * -fsanitize=fuzzer,address,undefined. The UART, the clock and the stack are simulated here.
 *
 * An input is one of three things, chosen by its first byte (mod 4):
 *   0, 3  raw bytes sent to the device;
 *   1     a structured script of near-valid frames (see script()): right magic with wrong lengths, types,
 *         versions, CRCs, truncated payloads, pauses mid-frame, sequence numbers around the wrap, shared-RAM
 *         offsets around and outside the window, garbage between frames -- so the fuzzer gets past the CRC;
 *   2     post-processing alone: fuzzed logits, class count, scale and zero point.
 * Beyond the sanitizers, every byte the device sends is checked: it must be a sequence of complete, well-formed
 * frames (magic, version, CRC, an answer type, a bounded length, a known ERROR status); anything else traps. */
#include <math.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dq_board.h"
#include "dq_postprocess.h"
#include "dq_profile.h"
#include "dq_protocol.h"
#include "dq_semihost.h"
#include "dq_stack.h"
#include "dq_timer.h"
#include "fw_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define EV_PAUSE_SHORT 0x100 /* shorter than the idle time */
#define EV_PAUSE_MID 0x101   /* longer than idle, shorter than the frame time-out */
#define EV_PAUSE_LONG 0x102  /* longer than the frame time-out */
#define MAX_EVENTS (1u << 16)
#define OUT_CAP (1u << 20)

static uint16_t events[MAX_EVENTS];
static uint32_t n_events, pos, empty_polls;
static uint64_t now_ticks;
static uint8_t out[OUT_CAP];
static uint32_t out_len;
static jmp_buf done;
static int8_t shm_window[DQ_SHM_SIZE];
int8_t *dq_fuzz_shm = shm_window;

/* ---- the simulated board ---- */
void dq_board_init(void) {}
void dq_uart_putc(uint8_t c) {
    if (out_len < OUT_CAP) out[out_len] = c;
    out_len++;
}
int dq_uart_getc_nb(void) {
    if (pos < n_events) {
        uint16_t e = events[pos++];
        if (e < 0x100) {
            now_ticks += 1;
            return e;
        }
        now_ticks += e == EV_PAUSE_SHORT ? DQ_IDLE_TICKS / 2
                     : e == EV_PAUSE_MID ? DQ_IDLE_TICKS * 3
                                         : DQ_FRAME_TIMEOUT_TICKS * 2;
        return -1;
    }
    /* the input is over: time runs on until every time-out has fired, then the device is left waiting */
    now_ticks += DQ_FRAME_TIMEOUT_TICKS;
    if (++empty_polls > 64) longjmp(done, 1);
    return -1;
}
void dq_timer_init(void) {}
uint64_t dq_timer_now(void) { return ++now_ticks; }
uint32_t dq_timer_kind(void) { return DQ_TIMER_SYSTICK; }
void dq_timer_align(void) {}
void dq_stack_paint(void) {}
uint32_t dq_stack_peak(void) { return 64u; }
uint32_t dq_stack_size(void) { return 16384u; }
void dq_exit(uint32_t code) {
    (void)code;
    longjmp(done, 2);
}

/* ---- input construction ---- */
typedef struct {
    const uint8_t *p;
    size_t n, i;
} src_t;

static uint32_t take(src_t *s, unsigned bytes) {
    uint32_t v = 0;
    for (unsigned k = 0; k < bytes; k++) v |= (uint32_t)(s->i < s->n ? s->p[s->i++] : 0u) << (8u * k);
    return v;
}
static void ev(uint16_t e) {
    if (n_events < MAX_EVENTS) events[n_events++] = e;
}
static void ev_bytes(const uint8_t *b, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) ev(b[i]);
}

static const uint32_t special_lengths[8] = {
    0u, 1u, 3u, 4u, DQ_INPUT_SIZE + 4u, DQ_INPUT_SIZE + 68u, DQ_INPUT_SIZE + 69u, 0xFFFFFFFFu};
static const uint8_t types[8] = {DQ_T_INFO,       DQ_T_INFER, DQ_T_STATS, DQ_T_SHUTDOWN,
                                 DQ_T_FAULT_TEST, 0x00u,      0x82u,      0xFFu};

/* One structured step: op selects what to send; the following bytes fill its fields. */
static void script_step(src_t *s) {
    uint32_t op = take(s, 1);
    uint8_t type = (op & 0x80u) ? (uint8_t)take(s, 1) : types[(op >> 4) & 7u];
    uint16_t seq = (op & 0x08u) ? (uint16_t)(0xFFFEu + (take(s, 1) & 3u)) : (uint16_t)take(s, 2);
    uint8_t payload[256];
    uint32_t plen = 0, announced;
    uint8_t version = DQ_PROTO_VERSION;
    int bad_crc = 0;
    uint32_t keep = 0xFFFFFFFFu; /* bytes of payload actually sent (truncation) */
    switch (op & 7u) {
    case 0: /* a frame with a payload of any length below 256 */
        plen = take(s, 1);
        for (uint32_t i = 0; i < plen; i++) payload[i] = (uint8_t)take(s, 1);
        break;
    case 1: /* INFER inline, right or near-right size */
        type = DQ_T_INFER;
        plen = DQ_INPUT_SIZE + 4u + (uint32_t)((int8_t)take(s, 1) % 3);
        payload[0] = (uint8_t)(take(s, 1) & 3u);
        payload[1] = payload[2] = payload[3] = 0;
        for (uint32_t i = 4; i < plen; i++) payload[i] = (uint8_t)take(s, 1);
        break;
    case 2: { /* INFER through shared RAM: offsets around the end of the window and far outside it */
        type = DQ_T_INFER;
        uint32_t sel = take(s, 1), off;
        if (sel & 1u)
            off = DQ_SHM_SIZE - DQ_INPUT_SIZE + (uint32_t)(int32_t)(int8_t)take(s, 1);
        else
            off = take(s, 4);
        payload[0] = DQ_INFER_SHARED;
        payload[1] = payload[2] = payload[3] = 0;
        dq_le32(payload + 4, off);
        plen = (sel & 2u) ? 4u + (take(s, 1) & 7u) : 8u;
        break;
    }
    case 3: /* bad CRC */
        plen = take(s, 1) & 31u;
        for (uint32_t i = 0; i < plen; i++) payload[i] = (uint8_t)take(s, 1);
        bad_crc = 1;
        break;
    case 4: /* another protocol version */
        version = (uint8_t)take(s, 1);
        plen = take(s, 1) & 15u;
        break;
    case 5: /* truncated: the header announces more than arrives, then the line pauses */
        plen = take(s, 1);
        keep = plen ? take(s, 1) % plen : 0u;
        break;
    case 6: { /* a pause, or garbage bytes */
        uint32_t k = take(s, 1);
        if (k < 0x40u) {
            ev(EV_PAUSE_SHORT + (uint16_t)(k % 3u));
        } else {
            k &= 63u;
            for (uint32_t i = 0; i < k; i++) ev((uint16_t)take(s, 1));
        }
        return;
    }
    default: /* a header whose length field says something odd, followed by what the input holds */
        plen = take(s, 1) & 127u;
        for (uint32_t i = 0; i < plen; i++) payload[i] = (uint8_t)take(s, 1);
        announced = special_lengths[take(s, 1) & 7u];
        {
            uint8_t hdr[DQ_HEADER_BYTES] = {DQ_MAGIC0, DQ_MAGIC1, version, type};
            dq_le16(hdr + 4, seq);
            dq_le32(hdr + 6, announced);
            uint32_t crc = dq_crc32_update(dq_crc32_update(0, hdr, DQ_HEADER_BYTES), payload, plen);
            uint8_t crcb[4];
            dq_le32(crcb, crc);
            ev_bytes(hdr, DQ_HEADER_BYTES);
            ev_bytes(payload, plen);
            ev_bytes(crcb, 4);
        }
        return;
    }
    uint8_t hdr[DQ_HEADER_BYTES] = {DQ_MAGIC0, DQ_MAGIC1, version, type};
    dq_le16(hdr + 4, seq);
    dq_le32(hdr + 6, plen);
    uint32_t crc = dq_crc32_update(dq_crc32_update(0, hdr, DQ_HEADER_BYTES), payload, plen);
    if (bad_crc) crc ^= 1u + take(s, 1);
    uint8_t crcb[4];
    dq_le32(crcb, crc);
    ev_bytes(hdr, DQ_HEADER_BYTES);
    if (keep != 0xFFFFFFFFu) {
        ev_bytes(payload, keep);
        ev(EV_PAUSE_LONG);
        return;
    }
    ev_bytes(payload, plen);
    ev_bytes(crcb, 4);
    if (op & 0x40u) ev(EV_PAUSE_MID); /* let the line go idle between frames */
}

/* ---- the output check ---- */
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void check_output(void) {
    if (out_len > OUT_CAP) __builtin_trap(); /* the device said more than a megabyte: runaway output */
    uint32_t i = 0;
    while (i < out_len) {
        if (out_len - i < DQ_HEADER_BYTES + DQ_CRC_BYTES) __builtin_trap(); /* truncated answer */
        const uint8_t *h = out + i;
        if (h[0] != DQ_MAGIC0 || h[1] != DQ_MAGIC1 || h[2] != DQ_PROTO_VERSION) __builtin_trap();
        uint8_t type = h[3];
        uint32_t len = rd32(h + 6);
        uint32_t max;
        switch (type) {
        case DQ_T_ERROR:
            max = 8u;
            break;
        case DQ_T_INFO | DQ_T_RESPONSE:
            max = DQ_INFO_MAX_BYTES;
            break;
        case DQ_T_INFER | DQ_T_RESPONSE:
            max = DQ_INFER_HEAD_BYTES + 5u * DQ_OUTPUT_SIZE;
            break;
        case DQ_T_STATS | DQ_T_RESPONSE:
            max = 16u + 8u * DQ_NUM_OPS;
            break;
        case DQ_T_SHUTDOWN | DQ_T_RESPONSE:
            max = 0u;
            break;
        default:
            __builtin_trap(); /* not an answer type */
        }
        if (len > max || out_len - i - DQ_HEADER_BYTES - DQ_CRC_BYTES < len) __builtin_trap();
        if (dq_crc32_update(0, h, DQ_HEADER_BYTES + len) != rd32(h + DQ_HEADER_BYTES + len)) __builtin_trap();
        if (type == DQ_T_ERROR) {
            if (len != 8u || h[DQ_HEADER_BYTES] < DQ_E_CRC || h[DQ_HEADER_BYTES] > DQ_E_OVERFLOW) __builtin_trap();
        }
        if (type == (DQ_T_INFER | DQ_T_RESPONSE)) {
            if (len != max || h[DQ_HEADER_BYTES] != DQ_OK) __builtin_trap();
            for (uint32_t k = 0; k < DQ_OUTPUT_SIZE; k++) {
                uint32_t b = rd32(h + DQ_HEADER_BYTES + DQ_INFER_HEAD_BYTES + DQ_OUTPUT_SIZE + 4u * k);
                float p;
                memcpy(&p, &b, sizeof p);
                if (!(p >= 0.0f && p <= 1.0f)) __builtin_trap();
            }
        }
        i += DQ_HEADER_BYTES + len + DQ_CRC_BYTES;
    }
}

/* ---- post-processing alone ---- */
static void fuzz_postprocess(src_t *s) {
    uint32_t n = 1u + (take(s, 2) % 2048u);
    float scale;
    uint32_t sb = take(s, 4);
    memcpy(&scale, &sb, sizeof scale);
    if (!(scale >= 1e-6f && scale <= 1e3f)) scale = 0.0625f; /* a model's output scale: positive and finite */
    int32_t zp = (int8_t)take(s, 1);
    int8_t *q = malloc(n);
    float *p = malloc(n * sizeof *p);
    if (!q || !p) abort();
    size_t rest = s->n > s->i ? s->n - s->i : 0;
    for (uint32_t i = 0; i < n; i++) q[i] = rest ? (int8_t)s->p[s->i + i % rest] : 0;
    for (int variant = 0; variant < 3; variant++) {
        if (variant == 0) dq_postprocess(q, n, scale, zp, p);
        /* a "probabilities" output is a quantized softmax: zero point -128 (TFLite), so q - zp >= 0 */
        if (variant == 1) dq_probs_q(q, n, scale, -128, p);
        if (variant == 2) {
            dq_softmax_q(q, n, scale, zp, p);
            dq_reverse_sigmoid(p, n, 0.3f + (float)(zp & 7) * 0.1f, 0.1f, 1.0f);
        }
        float sum = 0.0f;
        for (uint32_t i = 0; i < n; i++) {
            if (!(p[i] >= 0.0f && p[i] <= 1.0f)) __builtin_trap();
            sum += p[i];
        }
        if (!(sum > 0.99f && sum < 1.01f)) __builtin_trap();
    }
    free(q);
    free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    src_t s = {data + 1, size - 1, 0};
    uint8_t mode = data[0] & 3u;
    if (mode == 2u) {
        fuzz_postprocess(&s);
        return 0;
    }
    n_events = pos = empty_polls = 0;
    out_len = 0;
    if (mode == 1u)
        while (s.i < s.n && n_events < MAX_EVENTS - 600u) script_step(&s);
    else
        for (size_t i = 0; i < s.n && n_events < MAX_EVENTS; i++) ev(s.p[i]);
    for (uint32_t i = 0; i < DQ_SHM_SIZE; i++) shm_window[i] = (int8_t)(i * 7u);
    if (setjmp(done) == 0)
        for (;;) dq_serve_one();
    check_output();
    return 0;
}
