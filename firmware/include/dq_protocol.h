/* The framed binary query protocol (twin: divqat_tvm/oracle/protocol.py; keep both in step).
 *
 * Frame (little endian):  magic 0xD9 0x51 | version u8 | type u8 | seq u16 | length u32 | payload | crc32 u32
 * The CRC is zlib's CRC-32 over everything before it. A response carries the request's type | 0x80 and its
 * sequence number; an error is an ERROR frame (status, request type, detail). Bytes outside a frame are
 * discarded; after the link goes idle the device reports them in one ERROR (GARBAGE) frame. */
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

/* status codes (ERROR payload byte 0; INFER response byte 0) */
#define DQ_OK 0u
#define DQ_E_CRC 1u
#define DQ_E_LENGTH 2u
#define DQ_E_TYPE 3u
#define DQ_E_TIMEOUT 4u
#define DQ_E_VERSION 5u
#define DQ_E_MODEL 6u
#define DQ_E_UNSUPPORTED 7u
#define DQ_E_PAYLOAD 8u
#define DQ_E_GARBAGE 9u
#define DQ_E_STACK 10u /* the inference used the whole painted stack region: results cannot be trusted */

#define DQ_INFER_INLINE 0u
#define DQ_INFER_SHARED 1u

typedef struct {
    uint8_t type;
    uint16_t seq;
    uint32_t length;
    uint8_t *payload; /* points into the receive buffer */
} dq_frame_t;

uint32_t dq_crc32_update(uint32_t crc, const uint8_t *p, uint32_t n);

/* Wait for the next well-formed frame. Returns DQ_OK, or an error status after the bad input was consumed
 * (and the link went idle); `*err_seq` / `*err_type` then hold what was known of the offending frame, and
 * `*detail` a number worth reporting (a length, a count of bytes). */
uint32_t dq_recv(dq_frame_t *f, uint8_t *buf, uint32_t cap, uint16_t *err_seq, uint8_t *err_type, uint32_t *detail);

/* Send one frame whose payload is the concatenation of up to two parts. */
void dq_send2(uint8_t type, uint16_t seq, const void *a, uint32_t na, const void *b, uint32_t nb);
void dq_send(uint8_t type, uint16_t seq, const void *p, uint32_t n);
void dq_send_error(uint16_t seq, uint8_t status, uint8_t req_type, uint32_t detail);

#endif
