/* Framing, CRC and time-outs of the query protocol (see dq_protocol.h). */
#include "dq_protocol.h"

#include <string.h>

#include "dq_board.h"
#include "dq_timer.h"
#include "fw_config.h"

/* A started frame that stalls this long (core-clock ticks) is abandoned with DQ_E_TIMEOUT; silence this long
 * ends a run of garbage or the draining after an error. Under QEMU -icount the virtual clock advances only
 * with guest instructions, and a polling loop full of device reads emulates at only ~20 M instructions/s, so
 * virtual milliseconds last ~50x longer than real ones: 10 ms / 0.5 ms there. A board's USB-serial bridge
 * delivers bytes in bursts milliseconds apart: 500 ms / 50 ms there. */
#ifndef DQ_FRAME_TIMEOUT_TICKS
#define DQ_FRAME_TIMEOUT_TICKS (DQ_QEMU ? DQ_CLOCK_HZ / 100u : DQ_CLOCK_HZ / 2u)
#endif
#ifndef DQ_IDLE_TICKS
#define DQ_IDLE_TICKS (DQ_QEMU ? DQ_CLOCK_HZ / 2000u : DQ_CLOCK_HZ / 20u)
#endif

static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t dq_crc32_update(uint32_t crc, const uint8_t *p, uint32_t n) {
    crc = ~crc;
    for (uint32_t i = 0; i < n; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 0xFu];
        crc = (crc >> 4) ^ crc_nibble[crc & 0xFu];
    }
    return ~crc;
}

/* Next byte, or -1 if none arrives within `ticks`. */
static int getc_timeout(uint64_t ticks) {
    uint64_t start = dq_timer_now();
    for (;;) {
        int c = dq_uart_getc_nb();
        if (c >= 0) return c;
        if (dq_timer_now() - start > ticks) return -1;
    }
}

/* Discard input until the link has been silent for DQ_IDLE_TICKS; returns the bytes discarded. */
static uint32_t drain(void) {
    uint32_t n = 0;
    while (getc_timeout(DQ_IDLE_TICKS) >= 0) n++;
    return n;
}

static uint32_t read_exact(uint8_t *dst, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        int c = getc_timeout(DQ_FRAME_TIMEOUT_TICKS);
        if (c < 0) return i;
        dst[i] = (uint8_t)c;
    }
    return n;
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

dq_status_t dq_recv(dq_frame_t *f, uint8_t *buf, uint32_t cap, uint16_t *err_seq, uint8_t *err_type, uint32_t *detail) {
    uint8_t hdr[DQ_HEADER_BYTES];
    uint32_t garbage = 0;
    *err_seq = 0xFFFFu;
    *err_type = 0;
    *detail = 0;
    /* hunt for the magic; bytes that are not a frame's start are counted and, once the line is
     * quiet, reported as one GARBAGE error (garbage directly followed by a frame is dropped silently) */
    int prev = -1;
    for (;;) {
        int c = (garbage || prev >= 0) ? getc_timeout(DQ_IDLE_TICKS) : dq_uart_getc_nb();
        if (c < 0) {
            if (prev >= 0) garbage++, prev = -1;
            if (garbage) {
                *detail = garbage;
                return DQ_E_GARBAGE;
            }
            continue;
        }
        if (prev == (int)DQ_MAGIC0 && c == (int)DQ_MAGIC1) break;
        if (prev >= 0) garbage++;
        prev = (c == (int)DQ_MAGIC0) ? c : -1;
        if (prev < 0) garbage++;
    }
    hdr[0] = DQ_MAGIC0;
    hdr[1] = DQ_MAGIC1;
    if (read_exact(hdr + 2, DQ_HEADER_BYTES - 2) != DQ_HEADER_BYTES - 2) {
        drain();
        return DQ_E_TIMEOUT;
    }
    f->type = hdr[3];
    f->seq = (uint16_t)(hdr[4] | (hdr[5] << 8));
    f->length = rd32(hdr + 6);
    *err_seq = f->seq;
    *err_type = f->type;
    if (hdr[2] != DQ_PROTO_VERSION) {
        *detail = hdr[2];
        drain();
        return DQ_E_VERSION;
    }
    if (f->length > cap) {
        *detail = f->length;
        drain();
        return DQ_E_LENGTH;
    }
    uint8_t crcb[DQ_CRC_BYTES];
    if (read_exact(buf, f->length) != f->length || read_exact(crcb, DQ_CRC_BYTES) != DQ_CRC_BYTES) {
        *detail = f->length;
        drain();
        return DQ_E_TIMEOUT;
    }
    uint32_t crc = dq_crc32_update(0, hdr, DQ_HEADER_BYTES);
    crc = dq_crc32_update(crc, buf, f->length);
    if (crc != rd32(crcb)) {
        *detail = crc;
        drain();
        return DQ_E_CRC;
    }
    f->payload = buf;
    return DQ_OK;
}

void dq_tx_begin(dq_tx_t *t, uint8_t type, uint16_t seq, uint32_t length) {
    uint8_t hdr[DQ_HEADER_BYTES] = {DQ_MAGIC0, DQ_MAGIC1, DQ_PROTO_VERSION, type};
    dq_le16(hdr + 4, seq);
    dq_le32(hdr + 6, length);
    t->crc = dq_crc32_update(0, hdr, DQ_HEADER_BYTES);
    t->left = length;
    dq_uart_write(hdr, DQ_HEADER_BYTES);
}

void dq_tx_bytes(dq_tx_t *t, const void *p, uint32_t n) {
    if (n > t->left) n = t->left;
    t->crc = dq_crc32_update(t->crc, (const uint8_t *)p, n);
    t->left -= n;
    dq_uart_write(p, n);
}

void dq_tx_end(dq_tx_t *t) {
    static const uint8_t zero = 0;
    while (t->left > 0u) dq_tx_bytes(t, &zero, 1u);
    uint8_t crcb[DQ_CRC_BYTES];
    dq_le32(crcb, t->crc);
    dq_uart_write(crcb, DQ_CRC_BYTES);
}

void dq_send2(uint8_t type, uint16_t seq, const void *a, uint32_t na, const void *b, uint32_t nb) {
    dq_tx_t t;
    dq_tx_begin(&t, type, seq, na + nb);
    dq_tx_bytes(&t, a, na);
    dq_tx_bytes(&t, b, nb);
    dq_tx_end(&t);
}

void dq_send(uint8_t type, uint16_t seq, const void *p, uint32_t n) { dq_send2(type, seq, p, n, 0, 0); }

void dq_send_error(uint16_t seq, uint8_t status, uint8_t req_type, uint32_t detail) {
    uint8_t p[8] = {status, req_type, 0, 0};
    dq_le32(p + 4, detail);
    dq_send(DQ_T_ERROR, seq, p, sizeof p);
}

void dq_send_reply(uint8_t req_type, uint16_t seq, const dq_writer_t *w) {
    if (dq_w_fits(w))
        dq_send((uint8_t)(req_type | DQ_T_RESPONSE), seq, w->buf, w->len);
    else
        dq_send_error(seq, DQ_E_OVERFLOW, req_type, w->len);
}

void dq_w_init(dq_writer_t *w, void *buf, uint32_t cap) {
    w->buf = (uint8_t *)buf;
    w->cap = cap;
    w->len = 0;
}

void dq_w_bytes(dq_writer_t *w, const void *p, uint32_t n) {
    const uint8_t *s = (const uint8_t *)p;
    for (uint32_t i = 0; i < n; i++, w->len++)
        if (w->len < w->cap) w->buf[w->len] = s[i];
}

void dq_w_u8(dq_writer_t *w, uint32_t v) {
    uint8_t b = (uint8_t)v;
    dq_w_bytes(w, &b, 1u);
}

void dq_w_u16(dq_writer_t *w, uint32_t v) {
    dq_w_u8(w, v);
    dq_w_u8(w, v >> 8);
}

void dq_w_u32(dq_writer_t *w, uint32_t v) {
    dq_w_u16(w, v);
    dq_w_u16(w, v >> 16);
}

void dq_w_u64(dq_writer_t *w, uint64_t v) {
    dq_w_u32(w, (uint32_t)v);
    dq_w_u32(w, (uint32_t)(v >> 32));
}

void dq_w_f32(dq_writer_t *w, float f) {
    uint32_t v;
    memcpy(&v, &f, sizeof v);
    dq_w_u32(w, v);
}

void dq_w_str(dq_writer_t *w, const char *s) {
    while (*s) dq_w_u8(w, (uint8_t)*s++);
}

void dq_w_str0(dq_writer_t *w, const char *s) {
    dq_w_str(w, s);
    dq_w_u8(w, 0u);
}
