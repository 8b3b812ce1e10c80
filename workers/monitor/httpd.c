/*
 * httpd.c - the monitor's HTTP endpoint: one thread, one io_uring, GET
 * /metrics in the Prometheus text format (mc_monitor.h).
 *
 * Every operation is asynchronous on the ring: accept on the listening
 * socket, recv and send on connections (each linked to a timeout, so an
 * idle or stuck peer is dropped after MC_HTTPD_IDLE_S), a read on an
 * eventfd that carries the stop request, and a timer for retries.  A
 * connection has at most one recv or send in flight, and is closed only
 * when that operation completes, so no completion ever refers to a freed
 * connection (linked-timeout completions carry no connection at all).
 *
 * Requests: the head is parsed by mc_http.h with the buffer's size as the
 * head limit; GET or HEAD /metrics -> 200; other paths -> 404; other
 * methods on /metrics -> 405 with Allow; parse errors -> their status
 * with Connection: close.  Keep-alive and pipelining work: the bytes after
 * a request's head are kept for the next one.  Requests with a body are
 * answered and the connection closed (nothing here takes a body).
 * At most MC_HTTPD_MAXCONN connections: beyond that, accepting pauses
 * until one closes (the kernel's backlog holds the rest).
 */
#include "mc_monitor.h"

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mc_http.h"
#include "mc_log.h"
#include "mc_net.h"
#include "mc_util.h"

#define MC_HTTPD_MAXCONN   256
#define MC_HTTPD_HEAD_MAX  8192          /* request head limit = buffer size */
#define MC_HTTPD_IDLE_S    10            /* recv/send of a connection, at most */
#define MC_HTTPD_RETRY_MS  2000          /* bind retry */
#define MC_HTTPD_BACKOFF_MS 100          /* accept after EMFILE and the like */
#define MC_HTTPD_QUEUE     (2 * MC_HTTPD_MAXCONN + 8)

enum { MC_OP_ACCEPT = 1, MC_OP_RECV, MC_OP_SEND, MC_OP_LINKTO, MC_OP_STOP, MC_OP_RETRY };

struct mc_conn {
	int      fd;
	uint32_t idx;
	size_t   in_len;
	size_t   out_off;
	bool     close_after;
	struct mc_http_parser parser;
	struct mc_http_request req;
	struct mc_buf out;
	char     in[MC_HTTPD_HEAD_MAX];
};

struct mc_httpd {
	const struct mc_seg *seg;
	struct mc_httpd_metrics m;
	char     listen[64];
	pthread_t thread;
	bool     started;
	int      stop_fd;
	uint64_t stop_buf;
	bool     stopping;
	struct io_uring ring;
	int      lfd;
	bool     accepting;             /* an accept is in flight */
	bool     retrying;              /* a retry timer is in flight */
	int      last_bind_err;
	unsigned nconn;
	struct mc_conn *conn[MC_HTTPD_MAXCONN];
	struct __kernel_timespec idle_ts, retry_ts, backoff_ts;
	struct mc_buf body;             /* scratch for the exposition */
};

static inline uint64_t mc_ud(uint32_t idx, int op)
{
	return ((uint64_t)idx << 8) | (uint64_t)op;
}

/* A free SQE, submitting what is queued if the ring is full. */
static struct io_uring_sqe *mc_httpd_sqe(struct mc_httpd *h)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&h->ring);

	if (sqe == NULL) {
		io_uring_submit(&h->ring);
		sqe = io_uring_get_sqe(&h->ring);
	}
	return sqe;
}

static void mc_httpd_count(struct mc_httpd *h, int status)
{
	for (int i = 0; i < MC_HTTPD_CODES && h->m.codes[i] != 0; i++)
		if (h->m.codes[i] == status) {
			mc_counter_add(h->m.responses[i], 1);
			return;
		}
}

/* ---- listening ------------------------------------------------------------ */

static void mc_httpd_arm_accept(struct mc_httpd *h)
{
	struct io_uring_sqe *sqe;

	if (h->accepting || h->stopping || h->lfd < 0 || h->nconn >= MC_HTTPD_MAXCONN)
		return;
	sqe = mc_httpd_sqe(h);
	if (sqe == NULL)
		return;
	io_uring_prep_accept(sqe, h->lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, mc_ud(0, MC_OP_ACCEPT));
	h->accepting = true;
}

static void mc_httpd_arm_retry(struct mc_httpd *h, struct __kernel_timespec *ts)
{
	struct io_uring_sqe *sqe;

	if (h->retrying || h->stopping)
		return;
	sqe = mc_httpd_sqe(h);
	if (sqe == NULL)
		return;
	io_uring_prep_timeout(sqe, ts, 0, 0);
	io_uring_sqe_set_data64(sqe, mc_ud(0, MC_OP_RETRY));
	h->retrying = true;
}

static void mc_httpd_try_bind(struct mc_httpd *h)
{
	int fd = mc_net_listen(h->listen, 128, NULL);

	if (fd < 0) {
		if (fd != h->last_bind_err)
			mc_log_warn("monitor_listen_failed", "{s:s, s:s, s:s}", "listen", h->listen,
			    "error", strerror(-fd), "message",
			    "cannot serve /metrics yet; retrying every 2 s");
		h->last_bind_err = fd;
		mc_httpd_arm_retry(h, &h->retry_ts);
		return;
	}
	h->lfd = fd;
	mc_log_info("monitor_listening", "{s:s, s:s}", "listen", h->listen, "path", "/metrics");
	mc_httpd_arm_accept(h);
}

/* ---- connections ------------------------------------------------------------ */

static void mc_httpd_close(struct mc_httpd *h, struct mc_conn *c)
{
	h->conn[c->idx] = NULL;
	h->nconn--;
	close(c->fd);
	mc_buf_free(&c->out);
	free(c);
	mc_gauge_set(h->m.connections, (double)h->nconn);
	mc_httpd_arm_accept(h);
}

/* One operation with its idle timeout linked after it. */
static bool mc_httpd_arm_io(struct mc_httpd *h, struct mc_conn *c, int op)
{
	struct io_uring_sqe *sqe = mc_httpd_sqe(h), *to;

	if (sqe == NULL)
		return false;
	if (op == MC_OP_RECV)
		io_uring_prep_recv(sqe, c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
	else
		io_uring_prep_send(sqe, c->fd, c->out.p + c->out_off, c->out.len - c->out_off,
		    MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, mc_ud(c->idx, op));
	sqe->flags |= IOSQE_IO_LINK;
	to = mc_httpd_sqe(h);
	if (to == NULL) {
		/* cannot happen with the queue sized for every connection: undo */
		io_uring_prep_nop(sqe);
		sqe->flags &= (__u8)~IOSQE_IO_LINK;
		io_uring_sqe_set_data64(sqe, mc_ud(0, MC_OP_LINKTO));
		return false;
	}
	io_uring_prep_link_timeout(to, &h->idle_ts, 0);
	io_uring_sqe_set_data64(to, mc_ud(0, MC_OP_LINKTO));
	return true;
}

static void mc_httpd_respond(struct mc_httpd *h, struct mc_conn *c, int status,
    const char *ctype, const char *body, size_t blen, bool head_only, const char *extra)
{
	mc_buf_clear(&c->out);
	mc_buf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	    "%sConnection: %s\r\n\r\n", status, mc_http_reason(status), ctype, blen,
	    extra ? extra : "", c->close_after ? "close" : "keep-alive");
	if (!head_only)
		mc_buf_put(&c->out, body, blen);
	c->out_off = 0;
	mc_httpd_count(h, status);
}

static void mc_httpd_error(struct mc_httpd *h, struct mc_conn *c, int status, bool head_only,
    const char *extra)
{
	char body[96];
	int n = snprintf(body, sizeof(body), "%d %s\n", status, mc_http_reason(status));

	mc_httpd_respond(h, c, status, "text/plain; charset=utf-8", body, (size_t)n, head_only,
	    extra);
}

/* A complete request head in c->req: fill c->out. */
static void mc_httpd_handle(struct mc_httpd *h, struct mc_conn *c)
{
	const struct mc_http_request *r = &c->req;
	bool get = mc_http_eq(r->method, "GET"), head = mc_http_eq(r->method, "HEAD");

	c->close_after = !r->keep_alive || r->content_length > 0 || r->chunked;
	if (!mc_http_eq(r->path, "/metrics")) {
		mc_httpd_error(h, c, 404, head, NULL);
		return;
	}
	if (!get && !head) {
		mc_httpd_error(h, c, 405, false, "Allow: GET, HEAD\r\n");
		return;
	}
	{
		uint64_t t0 = mc_now_ns();
		int rc = mc_expo_render(h->seg, &h->body);

		mc_histogram_observe(h->m.render, mc_now_ns() - t0);
		if (rc != 0) {
			c->close_after = true;
			mc_httpd_error(h, c, 500, head, NULL);
			return;
		}
	}
	mc_httpd_respond(h, c, 200, MC_EXPO_CONTENT_TYPE, h->body.p, h->body.len, head, NULL);
	if (c->out.failed) {
		c->close_after = true;
		mc_httpd_error(h, c, 500, head, NULL);
	}
}

/* Parse what has arrived; answer, or read more.  False: close now. */
static bool mc_httpd_process(struct mc_httpd *h, struct mc_conn *c)
{
	switch (mc_http_parse(&c->parser, c->in, c->in_len, &c->req)) {
	case MC_HTTP_AGAIN:
		return mc_httpd_arm_io(h, c, MC_OP_RECV);
	case MC_HTTP_ERROR:
		mc_log_debug("monitor_bad_request", "{s:i, s:s}", "status", c->parser.status,
		    "error", c->parser.error);
		c->close_after = true;
		mc_httpd_error(h, c, c->parser.status, false, NULL);
		break;
	case MC_HTTP_DONE:
		mc_httpd_handle(h, c);
		break;
	}
	return mc_httpd_arm_io(h, c, MC_OP_SEND);
}

/* The response is out: next request on the connection, or close. */
static bool mc_httpd_sent(struct mc_httpd *h, struct mc_conn *c)
{
	size_t used = c->req.head_len;

	if (c->close_after)
		return false;
	memmove(c->in, c->in + used, c->in_len - used);
	c->in_len -= used;
	mc_http_parser_reset(&c->parser);
	return mc_httpd_process(h, c);
}

static void mc_httpd_on_accept(struct mc_httpd *h, int res)
{
	struct mc_http_limits lim = { MC_HTTPD_HEAD_MAX - 1, 64, 0 };
	struct mc_conn *c;
	uint32_t idx = 0;

	h->accepting = false;
	if (res < 0) {
		if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM)
			mc_httpd_arm_retry(h, &h->backoff_ts);
		else
			mc_httpd_arm_accept(h);
		return;
	}
	while (idx < MC_HTTPD_MAXCONN && h->conn[idx] != NULL)
		idx++;
	c = idx < MC_HTTPD_MAXCONN ? malloc(sizeof(*c)) : NULL;
	if (c == NULL) {
		close(res);
		mc_httpd_arm_accept(h);
		return;
	}
	c->fd = res;
	c->idx = idx;
	c->in_len = 0;
	c->out_off = 0;
	c->close_after = false;
	mc_buf_init(&c->out);
	mc_http_parser_init(&c->parser, &lim);
	h->conn[idx] = c;
	h->nconn++;
	mc_gauge_set(h->m.connections, (double)h->nconn);
	if (!mc_httpd_arm_io(h, c, MC_OP_RECV))
		mc_httpd_close(h, c);
	mc_httpd_arm_accept(h);
}

static void mc_httpd_on_io(struct mc_httpd *h, uint32_t idx, int op, int res)
{
	struct mc_conn *c = idx < MC_HTTPD_MAXCONN ? h->conn[idx] : NULL;
	bool keep;

	if (c == NULL)
		return;
	if (res <= 0) {
		/* peer closed, reset, or the linked timeout cancelled us */
		mc_httpd_close(h, c);
		return;
	}
	if (op == MC_OP_RECV) {
		c->in_len += (size_t)res;
		keep = mc_httpd_process(h, c);
	} else {
		c->out_off += (size_t)res;
		keep = c->out_off < c->out.len ? mc_httpd_arm_io(h, c, MC_OP_SEND) : mc_httpd_sent(h, c);
	}
	if (!keep)
		mc_httpd_close(h, c);
}

/* ---- the thread --------------------------------------------------------- */

static void mc_httpd_loop(struct mc_httpd *h)
{
	struct io_uring_sqe *sqe = mc_httpd_sqe(h);

	io_uring_prep_read(sqe, h->stop_fd, &h->stop_buf, sizeof(h->stop_buf), 0);
	io_uring_sqe_set_data64(sqe, mc_ud(0, MC_OP_STOP));
	mc_httpd_try_bind(h);
	while (!h->stopping) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		int rc = io_uring_submit_and_wait(&h->ring, 1);

		if (rc < 0 && rc != -EINTR && rc != -EBUSY) {
			mc_log_error("monitor_uring_failed", "{s:s}", "error", strerror(-rc));
			break;
		}
		io_uring_for_each_cqe(&h->ring, head, cqe) {
			uint64_t ud = io_uring_cqe_get_data64(cqe);
			int op = (int)(ud & 0xff), res = cqe->res;

			seen++;
			switch (op) {
			case MC_OP_ACCEPT:
				mc_httpd_on_accept(h, res);
				break;
			case MC_OP_RECV:
			case MC_OP_SEND:
				mc_httpd_on_io(h, (uint32_t)(ud >> 8), op, res);
				break;
			case MC_OP_STOP:
				h->stopping = true;
				break;
			case MC_OP_RETRY:
				h->retrying = false;
				if (h->lfd < 0)
					mc_httpd_try_bind(h);
				else
					mc_httpd_arm_accept(h);
				break;
			default:        /* linked timeouts: their operation reports */
				break;
			}
		}
		io_uring_cq_advance(&h->ring, seen);
	}
}

static void *mc_httpd_main(void *arg)
{
	struct mc_httpd *h = arg;

	mc_httpd_loop(h);
	for (unsigned i = 0; i < MC_HTTPD_MAXCONN; i++)
		if (h->conn[i] != NULL) {
			close(h->conn[i]->fd);
			mc_buf_free(&h->conn[i]->out);
			free(h->conn[i]);
			h->conn[i] = NULL;
		}
	if (h->lfd >= 0)
		close(h->lfd);
	h->lfd = -1;
	return NULL;
}

int mc_httpd_start(struct mc_httpd **out, const struct mc_seg *seg, const char *listen,
    const struct mc_httpd_metrics *m)
{
	struct mc_httpd *h = calloc(1, sizeof(*h));
	sigset_t all, old;
	int rc;

	*out = NULL;
	if (h == NULL)
		return -ENOMEM;
	h->seg = seg;
	h->m = *m;
	h->lfd = -1;
	h->stop_fd = -1;
	snprintf(h->listen, sizeof(h->listen), "%s", listen);
	h->idle_ts.tv_sec = MC_HTTPD_IDLE_S;
	h->retry_ts.tv_nsec = (long long)MC_HTTPD_RETRY_MS * 1000000;
	h->retry_ts.tv_sec = h->retry_ts.tv_nsec / 1000000000;
	h->retry_ts.tv_nsec %= 1000000000;
	h->backoff_ts.tv_nsec = (long long)MC_HTTPD_BACKOFF_MS * 1000000;
	mc_buf_init(&h->body);
	h->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (h->stop_fd < 0) {
		rc = -errno;
		goto fail;
	}
	rc = io_uring_queue_init(MC_HTTPD_QUEUE, &h->ring, 0);
	if (rc < 0)
		goto fail;
	/* the worker thread takes SIGTERM/SIGINT; this one blocks everything */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = -pthread_create(&h->thread, NULL, mc_httpd_main, h);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0) {
		io_uring_queue_exit(&h->ring);
		goto fail;
	}
	h->started = true;
	*out = h;
	return 0;
fail:
	if (h->stop_fd >= 0)
		close(h->stop_fd);
	mc_buf_free(&h->body);
	free(h);
	return rc;
}

void mc_httpd_stop(struct mc_httpd *h)
{
	uint64_t one = 1;

	if (h == NULL)
		return;
	if (h->started) {
		if (write(h->stop_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
			mc_log_warn("monitor_stop_failed", "{s:s}", "error", strerror(errno));
		pthread_join(h->thread, NULL);
		/* operations still in flight are cancelled with the ring */
		io_uring_queue_exit(&h->ring);
	}
	close(h->stop_fd);
	mc_buf_free(&h->body);
	free(h);
}
