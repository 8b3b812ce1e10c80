/*
 * server.c - the protocol worker's one thread: an HTTP/1.1 server on
 * io_uring for the MCP endpoint, and the worker duties (heartbeat, ping,
 * state replies) that the shared loop (worker.c) would otherwise do.
 *
 * One thread, because the frame API is single-threaded per process
 * (mc_frame.h) and the thread that sends state requests must be the one
 * that takes their replies.  The loop:
 *   1. take frames: StateReply results finish parked requests (mcp.c),
 *      Control pings are answered, anything else is released;
 *   2. every 100 ms: heartbeat, timeouts, bind retry;
 *   3. wait for socket completions: up to 100 ms when nothing is parked;
 *      while state ops are in flight, sleep on the doorbell in slices of
 *      200 us instead, peeking at the completion queue between slices, so
 *      a reply is picked up within microseconds and sockets within 200 us.
 *
 * SOCKETS
 * One multishot accept on the listener; one multishot recv per connection
 * into a ring of provided buffers (copied into the connection's own
 * buffer at once, and the buffer handed back); one send at a time.
 * A connection is freed only when no operation of it is in flight:
 * closing = shutdown(2) (which ends the multishot recv and any send), then
 * close(2) + free once the last completion has come back, so no
 * completion ever names a freed connection.
 *
 * HTTP
 * Heads are parsed by mc_http.h (strict; its limits are [protocol]
 * max_header_size for the head and [memory] max_message_size for
 * Content-Length, so an oversized body is 413 before it is read); the body
 * is Content-Length bytes (chunked bodies: 411; "Expect: 100-continue" gets
 * its interim 100 before the body is awaited).  Keep-alive and
 * pipelining: one request is handled at a time per connection, bytes of
 * the next wait in the buffer.  Timeouts: a connection with no request
 * under way is closed after [protocol] idle_timeout_ms; a request whose
 * head and body are not complete within request_timeout_ms of its first
 * byte gets 408 and the connection closes (slow clients); a request parked
 * on the state worker longer than request_timeout_ms gets "server busy".
 * A GET that opens an SSE stream (mcp.c) turns its connection into a
 * stream: response head without a length, no further requests read, a
 * keep-alive comment every 15 s, closed when the peer closes.  A POST
 * answered as a stream (a request that asks the client something first,
 * mcp.c) is the same, and mcp.c adds events to it with stream_push until
 * the last one ends it (then the connection closes like any answer sent
 * with "Connection: close").
 * Beyond [core] max_connections, up to MC_SRV_REJECT_SLOTS more connections
 * are accepted only to answer their request 503; past that they are
 * closed at once.
 */
#include "mc_protocol.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mc_frame.h"
#include "mc_log.h"
#include "mc_net.h"
#include "mc_proto.h"
#include "mc_ring.h"
#include "mc_util.h"
#include "mc_worker.h"

#define MC_SRV_QUEUE         4096
#define MC_SRV_BUFS          256             /* provided recv buffers */
#define MC_SRV_BUF_SIZE      16384
#define MC_SRV_BGID          1
#define MC_SRV_REJECT_SLOTS  64
#define MC_SRV_TICK_NS       100000000ULL    /* heartbeat / timeouts */
#define MC_SRV_SLICE_NS      200000ULL       /* doorbell slice while ops are in flight */
#define MC_SRV_BIND_RETRY_NS 2000000000ULL
#define MC_SRV_FRAME_BATCH   256
#define MC_SRV_IDX_BITS      24
#define MC_SRV_KEEP_BUF      16384           /* input buffer kept for pipelined bytes */
#define MC_SRV_STREAM_MAX    (1u << 20)      /* bytes queued on one SSE stream */
#define MC_SRV_SSE_PING_NS   15000000000ULL  /* keep-alive comment on idle SSE streams */
#define MC_SRV_OWN_FDS       64              /* the worker's own: listener, ring, segment, logs */

enum { MC_OP_ACCEPT = 1, MC_OP_RECV, MC_OP_SEND };

/* What parsing one request needs (~5 KiB, most of it the header table).
 * Allocated with the request's first byte and freed once it is answered
 * with nothing behind it, like the input buffer: an idle keep-alive
 * connection then costs its struct mc_conn only (10 000 of them ~2 MiB
 * instead of ~100 MiB). */
struct mc_srv_req {
	struct mc_http_parser parser;
	struct mc_http_request req;
};

struct mc_conn {
	int      fd;
	uint32_t idx;
	uint64_t serial;                /* token = serial << IDX_BITS | idx */
	unsigned inflight;              /* operations whose completion is due */
	bool     recv_armed, sending, waiting, closing, close_after, reject, have_head;
	bool     interim, continued;      /* a 100 Continue is being / was sent */
	bool     stream;                 /* an SSE stream: see mc_srv_stream_tick */
	uint64_t stream_ns;             /* last keep-alive on it */
	char    *more;                  /* stream bytes queued behind the send under way */
	size_t   more_len;
	bool     stream_end;            /* end the stream once `more` is out */
	bool     draining;               /* answered with close: reading to EOF (so the
	                                   peer sees the answer, not a reset) */
	uint64_t last_ns;               /* last activity (idle timeout) */
	uint64_t req_start_ns;          /* first byte of the request under way, 0 = none */
	char    *in;
	size_t   in_len, in_cap;
	size_t   need;                  /* head + body, once the head is parsed */
	char    *out;
	size_t   out_len, out_off;
	struct mc_srv_req *rq;          /* the request under way; NULL while idle */
};

struct mc_srv {
	struct mc_worker *w;
	const struct mc_config *cfg;
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	char    *bufs;
	int      lfd;
	bool     accepting;
	bool     loopback;
	int      last_bind_err;
	uint64_t next_bind_ns;
	struct mc_http_limits lim;
	struct mc_mcp *mcp;
	struct mc_conn **conn;
	uint32_t nslots;                /* max_connections + reject slots */
	uint32_t nconn;
	uint32_t nfree;
	uint32_t *freelist;
	uint64_t serial;
	struct mc_state_batch batch;
	struct mc_outbox *outbox;       /* frames to the router (outbox.c) */
	bool paused;                    /* outbox busy: requests wait in c->in */
	uint64_t now_ns;                /* the clock when this loop turn began: what
	                                   activity times and timeouts (whole
	                                   seconds) count in, one read per turn
	                                   rather than four per request */
};

static inline uint64_t mc_srv_ud(uint32_t idx, int op)
{
	return ((uint64_t)idx << 8) | (uint64_t)op;
}

static struct io_uring_sqe *mc_srv_sqe(struct mc_srv *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);

	if (sqe == NULL) {
		io_uring_submit(&s->ring);
		sqe = io_uring_get_sqe(&s->ring);
	}
	return sqe;
}


static void mc_srv_arm_accept(struct mc_srv *s)
{
	struct io_uring_sqe *sqe;

	if (s->accepting || s->lfd < 0)
		return;
	sqe = mc_srv_sqe(s);
	if (sqe == NULL)
		return;
	io_uring_prep_multishot_accept(sqe, s->lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, mc_srv_ud(0, MC_OP_ACCEPT));
	s->accepting = true;
}

static void mc_srv_try_bind(struct mc_srv *s)
{
	int rc = mc_net_listen(s->cfg->protocol_listen, 4096, &s->loopback);

	if (rc >= 0) {
		s->lfd = rc;
		rc = 0;
	}
	if (rc) {
		if (rc != s->last_bind_err)
			mc_log_warn("mcp_listen_failed", "{s:s, s:s, s:s}", "listen",
			    s->cfg->protocol_listen, "error", mc_strerror(rc), "message",
			    "cannot serve MCP yet; retrying every 2 s");
		s->last_bind_err = rc;
		s->next_bind_ns = mc_now_ns() + MC_SRV_BIND_RETRY_NS;
		return;
	}
	mc_log_info("mcp_listening", "{s:s, s:s}", "listen", s->cfg->protocol_listen, "path",
	    s->cfg->protocol_path);
	mc_srv_arm_accept(s);
}

/* ---- connections ---------------------------------------------------------- */

static void mc_srv_close(struct mc_conn *c)
{
	if (!c->closing) {
		c->closing = true;
		shutdown(c->fd, SHUT_RDWR);
	}
}

/* Free a closing connection once nothing of it is in flight. */
static void mc_srv_reap(struct mc_srv *s, struct mc_conn *c)
{
	if (!c->closing || c->inflight > 0 || c->waiting)
		return;
	close(c->fd);
	s->conn[c->idx] = NULL;
	s->freelist[s->nfree++] = c->idx;
	s->nconn--;
	free(c->in);
	free(c->out);
	free(c->more);
	free(c->rq);
	free(c);
}

static void mc_srv_arm_recv(struct mc_srv *s, struct mc_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->recv_armed || c->closing)
		return;
	sqe = mc_srv_sqe(s);
	if (sqe == NULL) {
		mc_srv_close(c);
		return;
	}
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = MC_SRV_BGID;
	io_uring_sqe_set_data64(sqe, mc_srv_ud(c->idx, MC_OP_RECV));
	c->recv_armed = true;
	c->inflight++;
}

static void mc_srv_arm_send(struct mc_srv *s, struct mc_conn *c)
{
	struct io_uring_sqe *sqe = mc_srv_sqe(s);

	if (sqe == NULL) {
		mc_srv_close(c);
		return;
	}
	io_uring_prep_send(sqe, c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, mc_srv_ud(c->idx, MC_OP_SEND));
	c->sending = true;
	c->inflight++;
}

static char *mc_srv_put(char *p, const char *s)
{
	size_t n = strlen(s);

	memcpy(p, s, n);
	return p + n;
}

/*
 * The head of a response with a body of known length.  Assembled piece by
 * piece rather than by snprintf: it is written for every request, and
 * format parsing was a visible part of a small request's cost.  head must
 * hold 128 bytes more than r's strings (reason, type, extra headers).
 */
static int mc_srv_head(char *head, const struct mc_mcp_reply *r, bool close_after)
{
	char num[21], *p = head;

	p = mc_srv_put(p, "HTTP/1.1 ");
	mc_u64toa((uint64_t)r->status, num);
	p = mc_srv_put(p, num);
	*p++ = ' ';
	p = mc_srv_put(p, mc_http_reason(r->status));
	if (r->ctype != NULL) {
		p = mc_srv_put(p, "\r\nContent-Type: ");
		p = mc_srv_put(p, r->ctype);
	}
	p = mc_srv_put(p, "\r\nContent-Length: ");
	mc_u64toa(r->body_len, num);
	p = mc_srv_put(p, num);
	p = mc_srv_put(p, "\r\n");
	p = mc_srv_put(p, r->headers);
	p = mc_srv_put(p, close_after ? "Connection: close\r\n\r\n" :
	    "Connection: keep-alive\r\n\r\n");
	return (int)(p - head);
}

/* Queue a response on c (takes reply->body). */
static void mc_srv_respond(struct mc_srv *s, struct mc_conn *c, struct mc_mcp_reply *r)
{
	char head[768];
	int n;

	if (r->close)
		c->close_after = true;
	if (r->stream) {
		/* no length: the stream's body ends when the connection does */
		c->stream = true;
		c->stream_ns = mc_now_ns();
		n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%s"
		    "Connection: close\r\n\r\n", r->status, mc_http_reason(r->status), r->ctype,
		    r->headers);
	} else {
		_Static_assert(sizeof(head) >= sizeof(r->headers) + 512, "head too small");
		n = mc_srv_head(head, r, c->close_after);
	}
	free(c->out);
	c->out = malloc((size_t)n + r->body_len);
	if (c->out == NULL) {
		mc_mcp_reply_free(r);
		mc_srv_close(c);
		return;
	}
	memcpy(c->out, head, (size_t)n);
	if (r->body_len)
		memcpy(c->out + n, r->body, r->body_len);
	c->out_len = (size_t)n + r->body_len;
	c->out_off = 0;
	mc_mcp_reply_free(r);
	mc_srv_arm_send(s, c);
}

static void mc_srv_respond_status(struct mc_srv *s, struct mc_conn *c, int status,
    const char *why, bool close_after)
{
	struct mc_mcp_reply r;
	json_t *doc = mc_rpc_error(NULL, MC_RPC_INVALID_REQUEST, why, NULL);

	memset(&r, 0, sizeof(r));
	r.status = status;
	r.body = doc ? mc_json_dump(doc, NULL, 0, &r.body_len) : NULL;   /* malloc'd: cap 0 */
	r.ctype = "application/json";
	json_decref(doc);
	if (status == 503)
		snprintf(r.headers, sizeof(r.headers), "Retry-After: 1\r\n");
	c->close_after = c->close_after || close_after;
	mc_srv_respond(s, c, &r);
}

/* The request's strings point into c->in: move them with the buffer
 * (old is the buffer's address before it moved, as a number). */
static void mc_srv_rebase(struct mc_conn *c, uintptr_t old)
{
	struct mc_http_request *q = &c->rq->req;
	struct mc_http_str *strs[] = { &q->method, &q->target, &q->path, &q->query, &q->host };

	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (strs[i]->p != NULL)
			strs[i]->p = c->in + ((uintptr_t)strs[i]->p - old);
	for (uint32_t i = 0; i < q->nheaders; i++) {
		q->headers[i].name.p = c->in + ((uintptr_t)q->headers[i].name.p - old);
		q->headers[i].value.p = c->in + ((uintptr_t)q->headers[i].value.p - old);
	}
}

static int mc_srv_append(struct mc_conn *c, const char *p, size_t n)
{
	if (c->in_len + n > c->in_cap) {
		size_t cap = c->in_cap ? c->in_cap : 4096;
		char *nb;

		while (cap < c->in_len + n)
			cap *= 2;
		/* malloc + copy, not realloc: the head's strings are rebased from
		 * the old address, which is freed only afterwards */
		nb = malloc(cap);
		if (nb == NULL)
			return -ENOMEM;
		if (c->in_len)
			memcpy(nb, c->in, c->in_len);
		{
			char *old = c->in;

			c->in = nb;
			if (c->have_head)
				mc_srv_rebase(c, (uintptr_t)old);
			free(old);
		}
		c->in_cap = cap;
	}
	memcpy(c->in + c->in_len, p, n);
	c->in_len += n;
	return 0;
}

static inline uint64_t mc_srv_token(const struct mc_conn *c)
{
	return (c->serial << MC_SRV_IDX_BITS) | c->idx;
}

/* A client that sent "Expect: 100-continue" waits for a go-ahead before
 * sending the body (curl does for bodies over 1 KiB): give it, once. */
static void mc_srv_expect(struct mc_srv *s, struct mc_conn *c)
{
	static const char go[] = "HTTP/1.1 100 Continue\r\n\r\n";
	const struct mc_http_str *e = mc_http_header(&c->rq->req, "Expect");

	if (e == NULL || c->continued || c->rq->req.version_minor < 1 ||
	    !mc_http_caseeq(*e, "100-continue"))
		return;
	c->continued = true;
	free(c->out);
	c->out = malloc(sizeof(go) - 1);
	if (c->out == NULL) {
		mc_srv_close(c);
		return;
	}
	memcpy(c->out, go, sizeof(go) - 1);
	c->out_len = sizeof(go) - 1;
	c->out_off = 0;
	c->interim = true;
	mc_srv_arm_send(s, c);
}

/* Parse and handle what c->in holds, if no request of c is under way. */
static void mc_srv_process(struct mc_srv *s, struct mc_conn *c)
{
	struct mc_mcp_reply r;
	struct mc_srv_req *q;

	if (c->closing || c->waiting || c->sending || c->draining || c->stream)
		return;
	if (s->paused)
		return;         /* back-pressure: picked up again by mc_srv_outbox */
	if (!c->have_head) {
		if (c->in_len == 0)
			return;
		if (c->rq == NULL) {
			c->rq = malloc(sizeof(*c->rq));
			if (c->rq == NULL) {
				mc_srv_close(c);
				return;
			}
			mc_http_parser_init(&c->rq->parser, &s->lim);
		}
		if (c->req_start_ns == 0)
			c->req_start_ns = s->now_ns;
		q = c->rq;
		switch (mc_http_parse(&q->parser, c->in, c->in_len, &q->req)) {
		case MC_HTTP_AGAIN:
			return;
		case MC_HTTP_ERROR:
			mc_log_debug("mcp_bad_request", "{s:i, s:s}", "status", q->parser.status,
			    "error", q->parser.error);
			mc_srv_respond_status(s, c, q->parser.status, q->parser.error, true);
			return;
		case MC_HTTP_DONE:
			break;
		}
		c->have_head = true;
		c->close_after = !q->req.keep_alive;
		if (q->req.chunked) {
			mc_srv_respond_status(s, c, 411, "chunked bodies are not accepted: send Content-Length", true);
			return;
		}
		c->need = q->req.head_len + (q->req.content_length > 0 ?
		    (size_t)q->req.content_length : 0);
	}
	if (c->in_len < c->need) {
		mc_srv_expect(s, c);
		return;
	}
	if (c->reject) {
		mc_srv_respond_status(s, c, 503, "too many connections ([core] max_connections)", true);
		return;
	}
	q = c->rq;
	if (mc_mcp_handle(s->mcp, &q->req, c->in + q->req.head_len, c->need - q->req.head_len,
	    mc_srv_token(c), &r) == 1) {
		c->waiting = true;
		return;
	}
	mc_srv_respond(s, c, &r);
}

/* Send what a stream has queued; once it is all out and the stream was
 * ended, finish the response the way a closing answer finishes (read to
 * EOF, so the peer sees every byte rather than a reset). */
static void mc_srv_stream_flush(struct mc_srv *s, struct mc_conn *c)
{
	if (c->sending || c->closing)
		return;
	if (c->more_len > 0) {
		free(c->out);
		c->out = c->more;
		c->out_len = c->more_len;
		c->out_off = 0;
		c->more = NULL;
		c->more_len = 0;
		mc_srv_arm_send(s, c);
		return;
	}
	if (c->stream_end) {
		c->stream = false;
		c->draining = true;
		c->last_ns = s->now_ns;
		shutdown(c->fd, SHUT_WR);
	}
}

/* A response is out: drop its request's bytes, go on with the next. */
static void mc_srv_sent(struct mc_srv *s, struct mc_conn *c)
{
	if (c->stream) {
		free(c->out);   /* headers or a keep-alive are out; the stream stays */
		c->out = NULL;
		c->last_ns = s->now_ns;
		mc_srv_stream_flush(s, c);
		return;
	}
	if (c->close_after) {
		/* closing with unread bytes would reset the connection and could
		 * destroy the answer in flight: stop sending, read to EOF */
		c->draining = true;
		c->last_ns = s->now_ns;
		shutdown(c->fd, SHUT_WR);
		return;
	}
	memmove(c->in, c->in + c->need, c->in_len - c->need);
	c->in_len -= c->need;
	free(c->out);
	c->out = NULL;
	if (c->in_len == 0) {
		/* idle: nothing of a request is kept (see struct mc_srv_req) */
		free(c->in);
		c->in = NULL;
		c->in_cap = 0;
		free(c->rq);
		c->rq = NULL;
	} else if (c->in_cap > MC_SRV_KEEP_BUF && c->in_len <= MC_SRV_KEEP_BUF / 2) {
		/* pipelined bytes wait: a small buffer, not the largest
		 * request's (10 000 connections x 1 MiB would not fit) */
		char *nb = malloc(MC_SRV_KEEP_BUF);

		if (nb != NULL) {
			memcpy(nb, c->in, c->in_len);
			free(c->in);
			c->in = nb;
			c->in_cap = MC_SRV_KEEP_BUF;
		}
	}
	c->need = 0;
	c->have_head = false;
	c->continued = false;
	c->req_start_ns = 0;
	if (c->rq != NULL)
		mc_http_parser_reset(&c->rq->parser);
	c->last_ns = s->now_ns;
	mc_srv_process(s, c);
}

static void mc_srv_on_accept(struct mc_srv *s, int res, unsigned flags)
{
	struct mc_conn *c;
	int one = 1;

	if (!(flags & IORING_CQE_F_MORE))
		s->accepting = false;   /* re-armed on the next tick */
	if (res < 0)
		return;
	if (s->nfree == 0) {
		close(res);             /* beyond even the 503 slots */
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(res);
		return;
	}
	setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = res;
	c->idx = s->freelist[--s->nfree];
	c->serial = ++s->serial;
	c->reject = s->nconn >= s->cfg->max_connections;
	c->last_ns = s->now_ns;
	s->conn[c->idx] = c;
	s->nconn++;
	mc_srv_arm_recv(s, c);
}

static void mc_srv_on_recv(struct mc_srv *s, struct mc_conn *c, int res, unsigned flags)
{
	if (!(flags & IORING_CQE_F_MORE)) {
		c->recv_armed = false;
		c->inflight--;
	}
	if (flags & IORING_CQE_F_BUFFER) {
		unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
		char *buf = s->bufs + (size_t)bid * MC_SRV_BUF_SIZE;

		if (res > 0 && !c->closing && !c->draining && !c->stream) {
			/* bound what a client may queue while a request is handled */
			if (c->in_len + (size_t)res > (size_t)s->lim.max_head + s->lim.max_body + 65536 ||
			    mc_srv_append(c, buf, (size_t)res) != 0)
				mc_srv_close(c);
			c->last_ns = s->now_ns;
		}
		io_uring_buf_ring_add(s->br, buf, MC_SRV_BUF_SIZE, (unsigned short)bid,
		    io_uring_buf_ring_mask(MC_SRV_BUFS), 0);
		io_uring_buf_ring_advance(s->br, 1);
	}
	if (res == 0 || (res < 0 && res != -ENOBUFS)) {
		mc_srv_close(c);        /* peer closed, reset, or we shut it down */
		return;
	}
	if (!c->recv_armed)
		mc_srv_arm_recv(s, c);  /* ran out of buffers, or the kernel stopped it */
	mc_srv_process(s, c);
}

static void mc_srv_on_send(struct mc_srv *s, struct mc_conn *c, int res)
{
	c->inflight--;
	c->sending = false;
	if (res <= 0 || c->closing) {
		mc_srv_close(c);
		return;
	}
	c->out_off += (size_t)res;
	c->last_ns = s->now_ns;
	if (c->out_off < c->out_len) {
		mc_srv_arm_send(s, c);
	} else if (c->interim) {
		c->interim = false;     /* 100 Continue out: the request goes on */
		mc_srv_process(s, c);
	} else {
		mc_srv_sent(s, c);
	}
}

/* mcp.c finished a parked request. */
static void mc_srv_deliver(void *ctx, uint64_t token, struct mc_mcp_reply *reply)
{
	struct mc_srv *s = ctx;
	uint32_t idx = (uint32_t)(token & ((1u << MC_SRV_IDX_BITS) - 1));
	struct mc_conn *c = idx < s->nslots ? s->conn[idx] : NULL;

	if (c == NULL || c->serial != token >> MC_SRV_IDX_BITS || !c->waiting) {
		mc_mcp_reply_free(reply);
		return;
	}
	c->waiting = false;
	if (c->closing) {
		mc_mcp_reply_free(reply);
		mc_srv_reap(s, c);
		return;
	}
	mc_srv_respond(s, c, reply);
}

/* mcp.c has more for a response stream (see mc_mcp_env.stream_push). */
static int mc_srv_stream_push(void *ctx, uint64_t token, const char *data, size_t len, bool end)
{
	struct mc_srv *s = ctx;
	uint32_t idx = (uint32_t)(token & ((1u << MC_SRV_IDX_BITS) - 1));
	struct mc_conn *c = idx < s->nslots ? s->conn[idx] : NULL;
	char *nb;

	if (c == NULL || c->serial != token >> MC_SRV_IDX_BITS || !c->stream || c->closing ||
	    c->stream_end)
		return -ENOENT;
	if (c->more_len + len > MC_SRV_STREAM_MAX) {
		/* the peer stopped reading: drop the stream (it may resume with a
		 * new GET) rather than buffer without bound */
		mc_srv_close(c);
		return -ENOBUFS;
	}
	if (len > 0) {
		nb = realloc(c->more, c->more_len + len);
		if (nb == NULL) {
			mc_srv_close(c);
			return -ENOMEM;
		}
		memcpy(nb + c->more_len, data, len);
		c->more = nb;
		c->more_len += len;
	}
	c->stream_end = end;
	mc_srv_stream_flush(s, c);
	return 0;
}

static int64_t mc_srv_state_send(void *ctx, const struct mc_state_req *r)
{
	struct mc_srv *s = ctx;
	int64_t id;
	int rc;

	mc_state_batch_init(&s->batch);
	id = mc_state_batch_add(&s->w->seg, &s->batch, r);
	if (id < 0)
		return id;
	{
		/* through the router, in order behind every record sent before it */
		Mcpcore__StateRequest req = MCPCORE__STATE_REQUEST__INIT;

		req.n_ops = s->batch.n;
		req.ops = s->batch.ptrs;
		rc = mc_outbox_send(s->outbox, &req.base, MC_LANE_TOOL);
		mc_state_batch_init(&s->batch);
	}
	return rc ? rc : id;
}

/* ---- timeouts ----------------------------------------------------------- */

/* An SSE stream carries nothing yet but a comment now and then, so that
 * proxies and clients see it alive (and a dead peer is noticed). */
static void mc_srv_stream_tick(struct mc_srv *s, struct mc_conn *c, uint64_t now)
{
	static const char ka[] = ": keep-alive\n\n";

	if (c->sending || now - c->stream_ns < MC_SRV_SSE_PING_NS)
		return;
	c->stream_ns = now;
	free(c->out);
	c->out = malloc(sizeof(ka) - 1);
	if (c->out == NULL) {
		mc_srv_close(c);
		return;
	}
	memcpy(c->out, ka, sizeof(ka) - 1);
	c->out_len = sizeof(ka) - 1;
	c->out_off = 0;
	mc_srv_arm_send(s, c);
}

static void mc_srv_timeouts(struct mc_srv *s, uint64_t now)
{
	uint64_t idle = (uint64_t)s->cfg->protocol_idle_timeout_ms * 1000000ULL;
	uint64_t req = (uint64_t)s->cfg->protocol_request_timeout_ms * 1000000ULL;

	mc_mcp_expire(s->mcp, now, req);
	for (uint32_t i = 0; i < s->nslots; i++) {
		struct mc_conn *c = s->conn[i];

		if (c == NULL || c->closing || c->waiting)
			continue;
		if (c->stream) {
			mc_srv_stream_tick(s, c, now);
		} else if (c->draining) {
			if (now - c->last_ns > 2000000000ULL)
				mc_srv_close(c);
		} else if (c->sending) {
			if (now - c->last_ns > idle)
				mc_srv_close(c);        /* the peer stopped reading */
		} else if (c->req_start_ns != 0) {
			if (now - c->req_start_ns > req)
				mc_srv_respond_status(s, c, 408,
				    "request not complete within [protocol] request_timeout_ms", true);
		} else if (now - c->last_ns > idle) {
			mc_srv_close(c);
		}
		mc_srv_reap(s, c);
	}
}

/* ---- frames ------------------------------------------------------------- */

static void mc_srv_state_reply(struct mc_srv *s, const struct mc_frame *f)
{
	/* one reply decoded at a time, by the loop's one thread: no malloc per part */
	static struct mc_proto_arena arena;
	Mcpcore__StateReply *rep = (Mcpcore__StateReply *)mc_proto_unpack_in(&arena, f);

	if (rep == NULL)
		return;
	for (size_t i = 0; i < rep->n_results; i++) {
		const Mcpcore__StateResult *r = rep->results[i];
		struct mc_state_res res;

		memset(&res, 0, sizeof(res));
		res.status = r->status;
		res.version = r->version;
		snprintf(res.error, sizeof(res.error), "%s", r->error ? r->error : "");
		/* not ours: a reply to an earlier incarnation, or already timed out */
		(void)mc_mcp_state_result(s->mcp, r->id, &res);
	}
	mc_proto_free_in(&arena, &rep->base);
}

/* Answer a PING like every worker does (worker.c). */
static void mc_srv_control(struct mc_srv *s, const struct mc_msg *m)
{
	Mcpcore__Control *in = (Mcpcore__Control *)mc_proto_unpack(m->frame);
	Mcpcore__Control out = MCPCORE__CONTROL__INIT;

	if (in == NULL)
		return;
	if (in->op == MCPCORE__CONTROL__OP__PING) {
		out.op = MCPCORE__CONTROL__OP__PONG;
		out.nonce = in->nonce;
		out.sent_ns = in->sent_ns;
		out.worker = (char *)s->w->name;
		out.generation = s->w->seg.generation;
		out.pid = getpid();
		out.handled = s->w->handled;
		(void)mc_proto_send(&s->w->seg, &out.base, 1ULL << m->src);
	}
	protobuf_c_message_free_unpacked(&in->base, NULL);
}

static int mc_srv_frames(struct mc_srv *s)
{
	int n = 0;

	while (n < MC_SRV_FRAME_BATCH) {
		struct mc_msg m;

		if (mc_recv(&s->w->seg, &m) != 0)
			break;
		if (m.frame->f_kind == MC_FK_STATE_REPLY)
			mc_srv_state_reply(s, m.frame);
		else if (m.frame->f_kind == MC_FK_CONTROL)
			mc_srv_control(s, &m);
		s->w->handled++;
		mc_frame_release(&s->w->seg, &m);
		n++;
	}
	return n;
}

/* ---- the loop ----------------------------------------------------------- */

static void mc_srv_completions(struct mc_srv *s)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;

	io_uring_for_each_cqe(&s->ring, head, cqe) {
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		int op = (int)(ud & 0xff);
		uint32_t idx = (uint32_t)(ud >> 8);
		struct mc_conn *c = NULL;

		seen++;
		if (op == MC_OP_ACCEPT) {
			mc_srv_on_accept(s, cqe->res, cqe->flags);
			continue;
		}
		c = idx < s->nslots ? s->conn[idx] : NULL;
		if (c == NULL)
			continue;
		if (op == MC_OP_RECV)
			mc_srv_on_recv(s, c, cqe->res, cqe->flags);
		else if (op == MC_OP_SEND)
			mc_srv_on_send(s, c, cqe->res);
		mc_srv_reap(s, c);
	}
	io_uring_cq_advance(&s->ring, seen);
}

static void mc_srv_wait(struct mc_srv *s)
{
	struct io_uring_cqe *cqe;

	if (mc_mcp_inflight(s->mcp) > 0 || mc_outbox_queued(s->outbox) > 0) {
		io_uring_submit_and_get_events(&s->ring);
		if (io_uring_cq_ready(&s->ring) == 0)
			mc_ring_wait(&s->w->seg, 20000, MC_SRV_SLICE_NS);
		return;
	}
	{
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = (long long)MC_SRV_TICK_NS };

		(void)io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &ts, NULL);
	}
}

/*
 * Move queued frames to the router.  While the outbox is busy no request
 * is taken off a connection (its bytes wait in c->in, and a client waiting
 * for its answer sends no more); once it drains, every connection with a
 * request waiting is processed again.
 */
static void mc_srv_outbox(struct mc_srv *s)
{
	if (mc_outbox_queued(s->outbox) > 0)
		mc_outbox_flush(s->outbox);
	if (mc_outbox_busy(s->outbox)) {
		s->paused = true;
		return;
	}
	if (!s->paused)
		return;
	s->paused = false;
	for (uint32_t i = 0; i < s->nslots; i++)
		if (s->conn[i] != NULL && s->conn[i]->in_len > 0)
			mc_srv_process(s, s->conn[i]);
}

static void mc_srv_loop(struct mc_srv *s)
{
	uint64_t last_tick = 0;

	mc_srv_try_bind(s);
	mc_ring_defer_bells(&s->w->seg, true);
	mc_seg_ready(&s->w->seg);
	mc_log_info("worker_ready", "{s:s, s:i}", "worker", s->w->name,
	    "generation", (int)s->w->seg.generation);
	while (!mc_worker_stopping()) {
		uint64_t now = mc_now_ns();

		s->now_ns = now;
		mc_srv_frames(s);
		mc_srv_completions(s);
		mc_srv_outbox(s);
		if (now - last_tick >= MC_SRV_TICK_NS) {
			mc_seg_heartbeat(&s->w->seg);
			mc_srv_timeouts(s, now);
			if (s->lfd < 0 && now >= s->next_bind_ns)
				mc_srv_try_bind(s);
			mc_srv_arm_accept(s);
			last_tick = now;
		}
		/* one wake per destination per turn, not one per record sent */
		mc_ring_ring_bells(&s->w->seg);
		mc_srv_wait(s);
	}
}

/* ---- set-up ------------------------------------------------------------- */

static int mc_srv_bufs(struct mc_srv *s)
{
	size_t rsz = MC_SRV_BUFS * sizeof(struct io_uring_buf);
	struct io_uring_buf_reg reg;
	int rc;

	s->br = mmap(NULL, rsz, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (s->br == MAP_FAILED) {
		s->br = NULL;
		return -errno;
	}
	s->bufs = malloc((size_t)MC_SRV_BUFS * MC_SRV_BUF_SIZE);
	if (s->bufs == NULL)
		return -ENOMEM;
	io_uring_buf_ring_init(s->br);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)s->br;
	reg.ring_entries = MC_SRV_BUFS;
	reg.bgid = MC_SRV_BGID;
	rc = io_uring_register_buf_ring(&s->ring, &reg, 0);
	if (rc)
		return rc;
	for (unsigned i = 0; i < MC_SRV_BUFS; i++)
		io_uring_buf_ring_add(s->br, s->bufs + (size_t)i * MC_SRV_BUF_SIZE, MC_SRV_BUF_SIZE,
		    (unsigned short)i, io_uring_buf_ring_mask(MC_SRV_BUFS), (int)i);
	io_uring_buf_ring_advance(s->br, MC_SRV_BUFS);
	return 0;
}

/*
 * Every connection is a descriptor: max_connections, the 503 slots and
 * the worker's own must fit under RLIMIT_NOFILE, whose soft limit is
 * often 1024 (the default of login shells and of systemd services).
 * Raise the soft limit to the hard one, which any process may; when even
 * the hard limit is too low, try raising it (a privileged process may).
 * If it still does not fit, say so: beyond the limit accept fails with
 * EMFILE and clients wait in the listen queue instead of getting 503.
 */
static void mc_srv_nofile(struct mc_srv *s)
{
	rlim_t need = (rlim_t)s->nslots + MC_SRV_OWN_FDS;
	struct rlimit rl, want;
	rlim_t was;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	was = rl.rlim_cur;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
		want.rlim_cur = want.rlim_max = need;
		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			rl = want;
	}
	if (rl.rlim_cur != rl.rlim_max) {
		want.rlim_cur = rl.rlim_max;
		want.rlim_max = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			rl.rlim_cur = rl.rlim_max;
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
		mc_log_warn("mcp_fd_limit", "{s:I, s:I, s:I, s:I, s:s}", "soft", (json_int_t)rl.rlim_cur,
		    "hard", (json_int_t)rl.rlim_max, "was", (json_int_t)was, "needed", (json_int_t)need,
		    "message", "RLIMIT_NOFILE is below [core] max_connections + 503 slots: "
		    "connections past it wait unanswered; raise the hard limit (ulimit -Hn)");
	else
		mc_log_info("mcp_fd_limit", "{s:I, s:I, s:I, s:I}", "soft", (json_int_t)rl.rlim_cur,
		    "hard", (json_int_t)rl.rlim_max, "was", (json_int_t)was, "needed", (json_int_t)need);
}

static int mc_srv_init(struct mc_srv *s, struct mc_worker *w)
{
	struct mc_mcp_env env;
	int rc;

	memset(s, 0, sizeof(*s));
	s->w = w;
	s->cfg = w->cfg;
	s->lfd = -1;
	s->lim.max_head = s->cfg->protocol_max_header_size;
	s->lim.max_headers = MC_HTTP_MAX_HEADERS;
	s->lim.max_body = s->cfg->max_message_size;
	s->nslots = s->cfg->max_connections + MC_SRV_REJECT_SLOTS;
	if (s->nslots >= (1u << MC_SRV_IDX_BITS))
		return -EINVAL;
	s->conn = calloc(s->nslots, sizeof(*s->conn));
	s->freelist = malloc(s->nslots * sizeof(*s->freelist));
	if (s->conn == NULL || s->freelist == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < s->nslots; i++)
		s->freelist[i] = s->nslots - 1 - i;
	s->nfree = s->nslots;
	mc_srv_nofile(s);
	mc_state_batch_init(&s->batch);
	s->batch.next_id = mc_wall_ns();        /* ids never reused across restarts */
	/* one thread submits and reaps: completions' task work is deferred to
	 * when we ask for events (DEFER_TASKRUN, 6.1), which runs it in one
	 * batch per loop turn instead of interrupting us; older kernels refuse
	 * the flags: cooperative task work (6.0), then a plain ring.  Whoever
	 * peeks at the CQ must have asked for events first (mc_srv_wait). */
	rc = io_uring_queue_init(MC_SRV_QUEUE, &s->ring, IORING_SETUP_SINGLE_ISSUER |
	    IORING_SETUP_DEFER_TASKRUN);
	if (rc == -EINVAL)
		rc = io_uring_queue_init(MC_SRV_QUEUE, &s->ring, IORING_SETUP_SINGLE_ISSUER |
		    IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
	if (rc == -EINVAL)
		rc = io_uring_queue_init(MC_SRV_QUEUE, &s->ring, 0);
	if (rc == -ENOSYS || rc == -EPERM)
		/* the usual cause, and the one an operator can fix */
		mc_log_error("mcp_io_uring_unavailable", "{s:s, s:s}", "error", mc_strerror(rc),
		    "message", "io_uring is refused: a container's seccomp profile (docker and "
		    "podman block io_uring_setup by default; see compose.yaml) or the sysctl "
		    "kernel.io_uring_disabled");
	if (rc < 0)
		return rc;
	rc = mc_srv_bufs(s);
	if (rc)
		return rc;
	memset(&env, 0, sizeof(env));
	env.seg = &w->seg;
	env.ctx = s;
	rc = mc_outbox_create(&s->outbox, &w->seg, MC_WORKER_ROUTER);
	if (rc)
		return rc;
	env.outbox = s->outbox;
	env.state_send = mc_srv_state_send;
	env.deliver = mc_srv_deliver;
	env.stream_push = mc_srv_stream_push;
	env.fixtures = s->cfg->protocol_conformance_fixtures;
	env.path = s->cfg->protocol_path;
	env.max_body = s->cfg->max_message_size;
	/* the address decides Host checking; a bad one is logged at bind */
	{
		struct sockaddr_storage ss;
		socklen_t len;

		if (mc_net_addr(s->cfg->protocol_listen, &ss, &len, &s->loopback) != 0)
			s->loopback = true;
	}
	env.loopback = s->loopback;
	return mc_mcp_create(&s->mcp, &env);
}

static void mc_srv_fini(struct mc_srv *s)
{
	for (uint32_t i = 0; s->conn != NULL && i < s->nslots; i++) {
		struct mc_conn *c = s->conn[i];

		if (c == NULL)
			continue;
		close(c->fd);
		free(c->in);
		free(c->out);
		free(c->more);
		free(c->rq);
		free(c);
	}
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->outbox != NULL) {
		/* records still queued: give the router a second to take them */
		uint64_t until = mc_now_ns() + 1000000000ULL;

		mc_ring_defer_bells(&s->w->seg, false);         /* every send wakes now */

		while (mc_outbox_flush(s->outbox) > 0 && mc_now_ns() < until)
			usleep(1000);
		if (mc_outbox_queued(s->outbox) > 0)
			mc_log_warn("protocol_outbox_lost", "{s:I, s:s}", "queued",
			    (json_int_t)mc_outbox_queued(s->outbox), "message",
			    "stopping with records the router did not take");
		mc_outbox_destroy(s->outbox);
	}
	mc_mcp_destroy(s->mcp);
	if (s->ring.ring_fd > 0)
		io_uring_queue_exit(&s->ring);
	if (s->br != NULL)
		munmap(s->br, MC_SRV_BUFS * sizeof(struct io_uring_buf));
	free(s->bufs);
	free(s->conn);
	free(s->freelist);
}

int mc_protocol_serve(struct mc_worker *w)
{
	struct mc_srv *s = calloc(1, sizeof(*s));
	int rc;

	if (s == NULL)
		return 1;
	rc = mc_srv_init(s, w);
	if (rc) {
		mc_log_error("mcp_init_failed", "{s:s}", "error", mc_strerror(rc));
		mc_srv_fini(s);
		free(s);
		return 1;
	}
	mc_srv_loop(s);
	mc_log_info("worker_stopping", "{s:s, s:I}", "worker", w->name,
	    "handled", (json_int_t)w->handled);
	mc_srv_fini(s);
	free(s);
	return 0;
}
