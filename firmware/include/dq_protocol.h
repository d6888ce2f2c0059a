/* The framed binary query protocol (twin: divqat_tvm/oracle/protocol.py; keep both in step).
 *
 * Frame (little endian):  magic 0xD9 0x51 | version u8 | type u8 | seq u16 | length u32 | payload | crc32 u32
 * The CRC is zlib's CRC-32 over everything before it. A response carries the request's type | 0x80 and its
 * sequence number; an error is an ERROR frame (status, request type, detail). Bytes outside a frame are
 * discarded; after the link goes idle the device reports them in one ERROR (GARBAGE) frame.
 *
 * Every answer is assembled through a bounded writer (dq_writer_t) or streamed (dq_tx_t): no write can pass
 * the end of its buffer. An answer that does not fit is not sent; an ERROR DQ_E_OVERFLOW goes instead. */
#ifndef DQ_PROTOCOL_H
#define DQ_PROTOCOL_H

#include <stdint.h>

#define DQ_MAGIC0 0xD9u
#define DQ_MAGIC1 0x51u
#define DQ_PROTO_VERSION 1u
#define DQ_HEADER_BYTES 10u
#define DQ_CRC_BYTES 4u

/* requests */
#define DQ_T_INFO 0x01u
#define DQ_T_INFER 0x02u
#define DQ_T_STATS 0x03u
#define DQ_T_SHUTDOWN 0x04u
#define DQ_T_FAULT_TEST 0x7Eu /* only in firmware built with DIVQAT_TEST_FAULT */
/* device-initiated */
#define DQ_T_HELLO 0xF0u /* boot banner: text payload */
#define DQ_T_FAULT 0xFEu /* fault report: text payload, then the device halts */
#define DQ_T_ERROR 0xFFu
#define DQ_T_RESPONSE 0x80u

/* Status codes: ERROR payload byte 0 and INFER response byte 0. They are wire format: never renumber, and
 * add a code here and in divqat_tvm/oracle/protocol.py (STATUS, E_*) together. The ERROR frame's detail
 * word says more, as noted per code. */
typedef enum {
    DQ_OK = 0,
    DQ_E_CRC = 1,         /* the request's CRC did not match; detail: the CRC the device computed */
    DQ_E_LENGTH = 2,      /* the payload is longer than the receive buffer; detail: the announced length */
    DQ_E_TYPE = 3,        /* unknown request type; detail: the type */
    DQ_E_TIMEOUT = 4,     /* a started frame stalled; detail: the announced length (0 in the header) */
    DQ_E_VERSION = 5,     /* another protocol version; detail: that version */
    DQ_E_MODEL = 6,       /* the model's run function returned non-zero (INFER status) */
    DQ_E_UNSUPPORTED = 7, /* not built into this firmware (STATS without profiling, shared RAM off QEMU) */
    DQ_E_PAYLOAD = 8,     /* malformed payload; detail: its length, the mode or the offset at fault */
    DQ_E_GARBAGE = 9,     /* bytes outside any frame; detail: how many */
    DQ_E_STACK = 10,      /* the inference used the whole painted stack region: results cannot be trusted */
    DQ_E_OVERFLOW = 11,   /* an answer does not fit the device's buffer for it; detail: the bytes it needs */
} dq_status_t;

#define DQ_INFER_INLINE 0u
#define DQ_INFER_SHARED 1u

/* INFO answer: a fixed part of DQ_INFO_FIXED_BYTES, then four NUL-terminated strings (model sha256, board,
 * model name, firmware version), all of it at most DQ_INFO_MAX_BYTES. divqat_tvm/device/build.py refuses
 * names that would not fit; the firmware checks again and answers DQ_E_OVERFLOW. */
#define DQ_INFO_FIXED_BYTES 84u
#define DQ_INFO_MAX_BYTES 384u
/* INFER answer: DQ_INFER_HEAD_BYTES, then the int8 logits, then the float32 probabilities. The class count is
 * a u16 there: at most DQ_MAX_CLASSES classes (build.py refuses more). */
#define DQ_INFER_HEAD_BYTES 32u
#define DQ_MAX_CLASSES 65535u

typedef struct {
    uint8_t type;
    uint16_t seq;
    uint32_t length;
    uint8_t *payload; /* points into the receive buffer */
} dq_frame_t;

uint32_t dq_crc32_update(uint32_t crc, const uint8_t *p, uint32_t n);

/* Little-endian stores into a buffer the caller sized for them (fixed-size headers). */
static inline void dq_le16(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void dq_le32(uint8_t *p, uint32_t v) {
    dq_le16(p, v);
    dq_le16(p + 2, v >> 16);
}

/* Wait for the next well-formed frame into buf[cap]. Returns DQ_OK, or an error status after the bad input was
 * consumed (and the link went idle); `*err_seq` / `*err_type` then hold what was known of the offending frame,
 * and `*detail` a number worth reporting (a length, a count of bytes). Never writes past buf[cap - 1]. */
dq_status_t dq_recv(dq_frame_t *f, uint8_t *buf, uint32_t cap, uint16_t *err_seq, uint8_t *err_type, uint32_t *detail);

/* One request: wait for a frame, answer it (or the ERROR for what was wrong with it). dq_main loops over it;
 * the host fuzz build (firmware/fuzz/) calls it directly. */
void dq_serve_one(void);

/* Bounded writer: bytes past `cap` are dropped but still counted in `len`, so an answer that does not fit is
 * detected (dq_w_fits) instead of overrunning its buffer. Little-endian integers, IEEE float32. */
typedef struct {
    uint8_t *buf;
    uint32_t cap;
    uint32_t len;
} dq_writer_t;

void dq_w_init(dq_writer_t *w, void *buf, uint32_t cap);
void dq_w_bytes(dq_writer_t *w, const void *p, uint32_t n);
void dq_w_u8(dq_writer_t *w, uint32_t v);
void dq_w_u16(dq_writer_t *w, uint32_t v);
void dq_w_u32(dq_writer_t *w, uint32_t v);
void dq_w_u64(dq_writer_t *w, uint64_t v);
void dq_w_f32(dq_writer_t *w, float f);
/* The string without its NUL (text) or with it (dq_w_str0: a field of a binary answer). */
void dq_w_str(dq_writer_t *w, const char *s);
void dq_w_str0(dq_writer_t *w, const char *s);
static inline int dq_w_fits(const dq_writer_t *w) { return w->len <= w->cap; }

/* Streaming transmit of one frame of a length announced up front: the payload goes out in pieces without a
 * buffer for all of it. dq_tx_bytes sends at most the announced length in total; dq_tx_end pads a short
 * payload with zeros (so the frame stays well formed) and sends the CRC. */
typedef struct {
    uint32_t crc;
    uint32_t left;
} dq_tx_t;

void dq_tx_begin(dq_tx_t *t, uint8_t type, uint16_t seq, uint32_t length);
void dq_tx_bytes(dq_tx_t *t, const void *p, uint32_t n);
void dq_tx_end(dq_tx_t *t);

/* Send one frame whose payload is the concatenation of up to two parts. */
void dq_send2(uint8_t type, uint16_t seq, const void *a, uint32_t na, const void *b, uint32_t nb);
void dq_send(uint8_t type, uint16_t seq, const void *p, uint32_t n);
void dq_send_error(uint16_t seq, uint8_t status, uint8_t req_type, uint32_t detail);
/* The answer to request `req_type` built in `w`: its bytes as a response frame if they fit, else an ERROR
 * DQ_E_OVERFLOW whose detail is the size the answer needed. */
void dq_send_reply(uint8_t req_type, uint16_t seq, const dq_writer_t *w);

#endif
