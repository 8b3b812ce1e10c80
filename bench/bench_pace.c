/*
 * bench_pace.c - an open-loop HTTP load generator for latency points
 * (contract in mc_bench.h, used by `mcpcore-bench mcp`).
 *
 * Why not wrk: Debian's wrk has no fixed-rate mode, and pacing it through
 * its delay() hook sends requests in bursts (its timers tick in whole
 * milliseconds), so a "half load" is really a burst of rate/1000 requests
 * every millisecond, and the later ones of each burst queue: the p99 then
 * measures the burst, not the server.  Here request k is due at exactly
 * t0 + k / rate, on connection k mod conns, and its latency counts from
 * that due time to the last byte of its answer.  A connection still
 * waiting for an earlier answer sends the request as soon as that answer
 * is in, and the wait counts (no coordinated omission, as in wrk2).
 *
 * One thread, epoll with nanosecond timeouts (epoll_pwait2); answers are
 * HTTP/1.1 responses with a Content-Length, which is what both servers of
 * the benchmark send.  A generator must send on time, so while it runs it
 * asks for short scheduler slices (mc_worker_set_slice, as the runtime's
 * front door does): on two cores it shares one with the server's
 * background threads, and with the default slice a RocksDB flush or an
 * nginx worker could keep it from its next due request for ~1.4 ms, which
 * the latency of whatever it sends next would count.  Both servers are
 * measured with the same generator.
 */
#define _GNU_SOURCE
#include "mc_bench.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mc_util.h"
#include "mc_worker.h"

#define MC_PACE_QUEUE 64                /* requests due on one connection, not yet sent */
#define MC_PACE_RBUF  16384
#define MC_PACE_SLICE_NS 100000         /* the generator's scheduler slice while it runs */

struct mc_pace_conn {
	int fd;
	bool busy;                      /* a request is out, its answer not yet in */
	uint64_t due[MC_PACE_QUEUE];    /* due times; [head] is the one out when busy */
	unsigned head, n;
	char rbuf[MC_PACE_RBUF];
	size_t rlen;
};

static int mc_pace_connect(int port)
{
	int fd = mc_bench_connect(port), one = 1;

	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Send the request at the head of c's queue.  0 or -EIO. */
static int mc_pace_send(struct mc_pace_conn *c, const char *req, size_t len)
{
	/* an idle keep-alive socket takes a few hundred bytes whole */
	if (write(c->fd, req, len) != (ssize_t)len)
		return -EIO;
	c->busy = true;
	return 0;
}

/*
 * Length of the complete response at the start of buf[len], 0 if it is
 * not all there yet, -EPROTO if it is not a 200 with a Content-Length.
 */
static ssize_t mc_pace_response(const char *buf, size_t len)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4), *cl;
	size_t head;
	long body;

	if (end == NULL)
		return len > 8192 ? -EPROTO : 0;
	head = (size_t)(end - buf) + 4;
	if (len < 12 || memcmp(buf, "HTTP/1.1 200", 12) != 0)
		return -EPROTO;
	cl = memmem(buf, head, "\r\nContent-Length:", 17);
	if (cl == NULL)
		cl = memmem(buf, head, "\r\ncontent-length:", 17);
	if (cl == NULL || (body = strtol(cl + 17, NULL, 10)) < 0)
		return -EPROTO;
	return len >= head + (size_t)body ? (ssize_t)(head + (size_t)body) : 0;
}

/*
 * Read what c has, once: epoll is level-triggered, so bytes left behind
 * bring us back, and a second read to see EAGAIN would cost every answer
 * a syscall (the generator shares the box with the server it measures).
 * Record every complete answer.  0 or a negative errno.
 */
static int mc_pace_read(struct mc_pace_conn *c, const char *req, size_t req_len,
    struct mc_pace_result *out, uint64_t *lat, size_t lat_cap)
{
	ssize_t r = read(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen);
	ssize_t used;

	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (r <= 0)
		return -EPIPE;
	c->rlen += (size_t)r;
	while ((used = mc_pace_response(c->rbuf, c->rlen)) > 0) {
		uint64_t now = mc_now_ns();

		if (!c->busy)
			return -EPROTO;         /* an answer nobody asked for */
		if (out->answered < lat_cap)
			lat[out->answered] = now - c->due[c->head];
		out->answered++;
		c->head = (c->head + 1) % MC_PACE_QUEUE;
		c->n--;
		c->busy = false;
		memmove(c->rbuf, c->rbuf + used, c->rlen - (size_t)used);
		c->rlen -= (size_t)used;
		if (c->n > 0 && mc_pace_send(c, req, req_len) != 0)
			return -EIO;
	}
	return used < 0 ? (int)used : 0;
}

int mc_bench_pace(int port, const char *req, size_t req_len, int conns, double rate,
    double secs, struct mc_pace_result *out)
{
	struct mc_pace_conn *cs = calloc((size_t)conns, sizeof(*cs));
	uint64_t total = (uint64_t)(rate * secs), k = 0, t0, end, *lat = NULL;
	int ep = epoll_create1(EPOLL_CLOEXEC), rc = 0;
	bool sliced = mc_worker_set_slice(MC_PACE_SLICE_NS) == 0;

	memset(out, 0, sizeof(*out));
	lat = calloc(total + 1, sizeof(*lat));
	if (cs == NULL || lat == NULL || ep < 0 || conns < 1 || rate <= 0) {
		rc = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < conns; i++)
		cs[i].fd = -1;
	for (int i = 0; i < conns; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };

		cs[i].fd = mc_pace_connect(port);
		if (cs[i].fd < 0 || fcntl(cs[i].fd, F_SETFL, O_NONBLOCK) != 0 ||
		    epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) != 0) {
			rc = cs[i].fd < 0 ? cs[i].fd : -errno;
			goto out;
		}
	}
	t0 = mc_now_ns();
	end = t0 + (uint64_t)(secs * 1e9) + 2000000000ull;     /* 2 s for the last answers */
	while (out->answered + out->errors < total) {
		uint64_t now = mc_now_ns(), due = t0 + (uint64_t)((double)k * 1e9 / rate);
		struct epoll_event evs[64];
		struct timespec ts = { 0, 0 };
		int n;

		if (now >= end)
			break;
		while (k < total && due <= now) {
			struct mc_pace_conn *c = &cs[k % (uint64_t)conns];

			if (c->n == MC_PACE_QUEUE) {
				out->errors++;  /* hopelessly behind: counted, not queued */
			} else {
				c->due[(c->head + c->n) % MC_PACE_QUEUE] = due;
				c->n++;
				if (!c->busy && mc_pace_send(c, req, req_len) != 0) {
					rc = -EIO;
					goto out;
				}
			}
			out->sent++;
			k++;
			due = t0 + (uint64_t)((double)k * 1e9 / rate);
		}
		if (k < total && due > now)
			ts.tv_nsec = (long)(due - now < 1000000 ? due - now : 1000000);
		else
			ts.tv_nsec = 1000000;
		n = epoll_pwait2(ep, evs, 64, &ts, NULL);
		for (int i = 0; i < n; i++) {
			rc = mc_pace_read(&cs[evs[i].data.u32], req, req_len, out, lat,
			    (size_t)total + 1);
			if (rc != 0)
				goto out;
		}
	}
	out->rps = (double)out->answered * 1e9 / (double)(mc_now_ns() - t0);
	{
		uint64_t m = out->answered < total ? out->answered : total;

		out->p50 = (double)mc_bench_percentile(lat, m, 50) / 1e3;
		out->p99 = (double)mc_bench_percentile(lat, m, 99) / 1e3;
		out->p999 = (double)mc_bench_percentile(lat, m, 99.9) / 1e3;
		out->max = (double)mc_bench_percentile(lat, m, 100) / 1e3;
	}
	out->errors += out->sent - out->answered;
out:
	if (sliced)
		(void)mc_worker_set_slice(0);      /* wrk and the rest run as before */
	for (int i = 0; cs != NULL && i < conns; i++)
		if (cs[i].fd >= 0)
			close(cs[i].fd);
	if (ep >= 0)
		close(ep);
	free(cs);
	free(lat);
	return rc;
}
