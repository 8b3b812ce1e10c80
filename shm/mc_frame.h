/*
 * mc_frame.h - frames: written once in the producer's pool, read in place
 * by every hop, freed when the last holder lets go.
 *
 * PROTOCOL
 * Each slot that produces owns a frame pool in shared.message_queue: a
 * circular byte log with ever-growing cursors head >= published >= tail
 * (in struct mc_slot, written only by the owner).  A frame is a 32-byte
 * header and its payload (a protobuf message, f_len bytes), in a block of
 * f_size bytes, a multiple of 64 (whole cache lines) that never wraps (a padding block fills
 * the end of the pool instead).
 *
 * f_holders has one bit per slot that holds a reference.  Rules:
 *   1. Only a holder changes f_holders: it may add bits (handing the frame
 *      on) and clear its own.  Both are idempotent, which is what makes a
 *      crash at any instruction repairable by simply doing the step again.
 *   2. Bits are added *before* the descriptor is put in a ring; the
 *      receiver clears its bit only after its last access to the frame
 *      (release ordering).
 *   3. The owner reclaims blocks in order from tail while f_holders == 0
 *      (acquire ordering), and only below `published`.
 *   4. A descriptor is current only if the frame at d_off still has
 *      f_seq == d_seq and the receiver's bit; otherwise it is a replay of
 *      work already finished and is skipped.  A process holds a frame at
 *      most once at a time: nobody puts a descriptor to a slot whose bit is
 *      already set (a forward only puts to the bits it newly set; recovery
 *      first looks for the descriptor in the ring and the receiver's
 *      journal), so a receiver never sees a second copy while it holds the
 *      first, and never releases a block twice.
 *
 * Crash recovery, by who died:
 *   - a consumer: its journal replays what it took (mc_ring.h); entries it
 *     had finished fail rule 4 and are skipped; the rest are redone.
 *   - a producer between alloc and the last put: on restart, blocks in
 *     [published, head) with holders set are put to every holder whose
 *     descriptor is neither in its ring nor in its journal; blocks with no
 *     holders were never sent and are reclaimed.
 *   - a forwarder: it still holds its own bit, so the frame stays alive,
 *     and its journal replays the forward (bits are idempotent).
 *   - a client that never comes back: the supervisor reaps its slot by
 *     doing both of the above on its behalf and releasing what it held.
 * The result is at-least-once delivery with a per-producer sequence number
 * (f_src, f_seq) for handlers that must de-duplicate.
 *
 * Threads: all calls on one struct mc_seg from one thread at a time.
 */
#ifndef MC_FRAME_H
#define MC_FRAME_H

#include <stdint.h>

#include "mc_ring.h"

struct mc_frame {
	uint32_t f_size;        /* block bytes, header included */
	uint32_t f_len;         /* payload bytes */
	uint64_t f_holders;     /* bit per holding slot (rules above) */
	uint64_t f_seq;         /* producer sequence, 0 = padding */
	uint16_t f_kind;        /* payload type, enum mc_frame_kind (proto/) */
	uint8_t  f_src;         /* producing slot */
	uint8_t  f_flags;
	uint32_t f_user;        /* free for the protocol above (e.g. a lane) */
	uint8_t  f_data[];
};

/* A received frame and where it came from. */
struct mc_msg {
	struct mc_frame *frame;
	struct mc_desc desc;
	uint32_t ring;
	uint16_t src;           /* sending slot (the ring's producer) */
	uint32_t pos;           /* its entry's position in that ring (wraps at 2^32):
	                           a replay after a crash comes with the same one */
};

/*
 * Producer.  Allocate a frame of `len` payload bytes in our pool and fill
 * its header.  Write the payload into f_data, then mc_frame_send() or
 * mc_frame_abort(); only one allocation may be outstanding.
 * Returns NULL with *err: -EMSGSIZE (len > max_message_size), -EAGAIN
 * (pool full: frames still held downstream; back-pressure), -EBUSY (an
 * allocation is outstanding), -EPERM (no slot claimed or read-only).
 */
struct mc_frame *mc_frame_alloc(struct mc_seg *seg, uint32_t len,
    uint16_t kind, int *err);

/*
 * Producer.  Send the allocated frame to every slot in dst_mask (bit per
 * slot), all or nothing: -EAGAIN if any destination ring is full (the frame
 * stays allocated: retry or abort), -EPIPE if a destination is a client
 * slot nobody holds or a failed worker, -EINVAL if no ring leads there.
 * Wakes the destinations.
 */
int mc_frame_send(struct mc_seg *seg, struct mc_frame *f, uint64_t dst_mask);

/* Producer.  Give back the outstanding allocation unsent. */
void mc_frame_abort(struct mc_seg *seg, struct mc_frame *f);

/*
 * Consumer.  Receive the next current frame from any inbound ring
 * (round-robin), or from ring `ring` with mc_recv_from().  0 or -EAGAIN;
 * -ENOBUFS when a ring's journal is full of unreleased frames.
 * The frame is held until mc_frame_release().
 */
int mc_recv(struct mc_seg *seg, struct mc_msg *out);
int mc_recv_from(struct mc_seg *seg, uint32_t ring, struct mc_msg *out);

/*
 * Holder.  Hand a received frame on to dst_mask as well (we keep holding
 * it until we release it).  Errors as mc_frame_send.
 */
int mc_frame_forward(struct mc_seg *seg, const struct mc_msg *m, uint64_t dst_mask);

/*
 * Is slot dst someone who will read what we send?  0, or -EPIPE: a client
 * slot that is not attached, a worker that has failed or stopped (what
 * makes a send or forward to it fail with -EPIPE).  Peer state only: says
 * nothing about room in its ring.
 */
int mc_frame_peer_ok(const struct mc_seg *seg, unsigned dst);

/* Holder.  Let go of a received frame; do not touch it afterwards. */
void mc_frame_release(struct mc_seg *seg, struct mc_msg *m);

/*
 * Owner, at claim time.  Re-put frames a previous incarnation of the slot
 * published only in part.  Returns 0, or -EAGAIN if a destination ring is
 * still full (call again later).
 */
int mc_frame_recover(struct mc_seg *seg, unsigned slot);

/*
 * Act as the consumer of every ring into `slot` and let go of everything
 * there: the journal window and the queued entries.  For the supervisor
 * reaping a dead client and for a client taking over a slot (which must
 * not receive its predecessor's messages).  The caller guarantees nobody
 * else consumes for `slot` meanwhile (the sl_pid claim).  Returns the
 * number of frames released.
 */
int mc_frame_drain(struct mc_seg *seg, unsigned slot);

/* Bytes of our pool in use (head - tail) after reclaiming what is free. */
uint64_t mc_frame_pool_used(struct mc_seg *seg, unsigned slot);

#endif /* MC_FRAME_H */
