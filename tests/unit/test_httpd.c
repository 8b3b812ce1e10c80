/*
 * test_httpd.c - unit tests for the monitor's io_uring HTTP endpoint
 * (workers/monitor/httpd.c, contract in workers/monitor/mc_monitor.h),
 * over real loopback sockets: GET/HEAD /metrics, 404, 405, parse errors,
 * keep-alive and pipelining, oversized heads, many concurrent clients,
 * serving on after bad input, retrying a port that is taken, and stopping
 * with connections still open.
 */
#define _GNU_SOURCE

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mc_config.h"
#include "mc_layout.h"
#include "mc_metrics.h"
#include "mc_monitor.h"
#include "mc_seg.h"
#include "ut.h"

#ifndef MC_SOURCE_DIR
#error "MC_SOURCE_DIR must be defined to the repository root"
#endif

static struct mc_config cfg;
static struct mc_layout lay;
static struct mc_seg sup;
static struct mc_httpd *srv;
static struct mc_httpd_metrics hm;
static int port;
static char listen_at[64];

/* A port nobody listens on right now (bind to 0, read it back, close). */
static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), p;

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	p = ntohs(a.sin_port);
	close(fd);
	return p;
}

static int dial(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Wait until the server accepts connections (binding is in its thread). */
static void wait_up(void)
{
	for (int i = 0; i < 500; i++) {
		int fd = dial();

		if (fd >= 0) {
			close(fd);
			return;
		}
		usleep(10000);
	}
	cr_assert_fail("server on %s never came up", listen_at);
}

static void up(void)
{
	ut_seg_create(&sup, &cfg, &lay);
	cr_assert_eq(mc_metrics_open(&sup, MC_SLOT_SUPERVISOR, MC_METRICS_RESET), 0);
	memset(&hm, 0, sizeof(hm));
	hm.codes[0] = 200;
	hm.codes[1] = 404;
	mc_metrics_counter(&sup, "test_responses_total", "200s", (const char *const[]){ "code",
	    "200", NULL }, &hm.responses[0]);
	mc_metrics_counter(&sup, "test_responses_total", "404s", (const char *const[]){ "code",
	    "404", NULL }, &hm.responses[1]);
	mc_metrics_gauge(&sup, "test_connections", "conns", NULL, &hm.connections);
	port = free_port();
	snprintf(listen_at, sizeof(listen_at), "127.0.0.1:%d", port);
}

static void start(void)
{
	cr_assert_eq(mc_httpd_start(&srv, &sup, listen_at, &hm), 0);
	wait_up();
}

static void down(void)
{
	mc_httpd_stop(srv);
	srv = NULL;
	mc_seg_destroy(&sup);
}

TestSuite(httpd, .init = up, .fini = down, .timeout = 60);

static void send_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);

		cr_assert_gt(w, 0, "send: %s", strerror(errno));
		s += w;
		n -= (size_t)w;
	}
}

struct resp {
	int status;
	char headers[2048];
	char *body;
	size_t body_len;
	bool closed;            /* the server closed after it */
};

/* Read one response (head, then Content-Length bytes). */
static bool read_resp(int fd, struct resp *r, bool head_only)
{
	static char buf[1 << 20];
	static size_t have;
	static int buf_fd = -1;
	char *end;
	size_t hlen, clen = 0;
	const char *cl;

	if (buf_fd != fd) {
		have = 0;
		buf_fd = fd;
	}
	memset(r, 0, sizeof(*r));
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		buf[have] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (end != NULL) {
			hlen = (size_t)(end - buf) + 4;
			cl = strcasestr(buf, "Content-Length: ");
			clen = cl && cl < end ? strtoul(cl + 16, NULL, 10) : 0;
			if (head_only || have >= hlen + clen)
				break;
		}
		if (poll(&p, 1, 10000) != 1)
			return false;
		n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
		if (n <= 0)
			return false;
		have += (size_t)n;
	}
	if (sscanf(buf, "HTTP/1.1 %d", &r->status) != 1)
		return false;
	snprintf(r->headers, sizeof(r->headers), "%.*s", (int)hlen, buf);
	if (head_only)
		clen = 0;
	r->body = malloc(clen + 1);
	memcpy(r->body, buf + hlen, clen);
	r->body[clen] = '\0';
	r->body_len = clen;
	memmove(buf, buf + hlen + clen, have - hlen - clen);
	have -= hlen + clen;
	return true;
}

/* Has the server closed the connection (EOF within a second)? */
static bool closed_by_server(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	return poll(&p, 1, 2000) == 1 && recv(fd, &c, 1, 0) == 0;
}

static struct resp request(const char *raw, bool head_only)
{
	struct resp r;
	int fd = dial();

	cr_assert_geq(fd, 0);
	send_all(fd, raw, strlen(raw));
	cr_assert(read_resp(fd, &r, head_only), "no response to: %s", raw);
	close(fd);
	return r;
}

Test(httpd, get_head_404_405)
{
	struct resp r;

	start();
	r = request("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", false);
	cr_assert_eq(r.status, 200);
	cr_assert_not_null(strstr(r.headers, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
	{
		char want[128];

		snprintf(want, sizeof(want), "mcpcore_instance_info{name=\"%s\"", cfg.instance);
		cr_assert_not_null(strstr(r.body, want), "no %s in the exposition", want);
	}
	cr_assert_not_null(strstr(r.body, "mcpcore_test_connections{worker=\"supervisor\"} 1\n"),
	    "the connection gauge counts this one");
	free(r.body);
	r = request("GET /metrics?x=1 HTTP/1.0\r\n\r\n", false);
	cr_assert_eq(r.status, 200);
	cr_assert_not_null(strstr(r.headers, "Connection: close"));
	free(r.body);
	r = request("HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n", true);
	cr_assert_eq(r.status, 200);
	cr_assert_not_null(strstr(r.headers, "Content-Length: "));
	free(r.body);
	r = request("GET / HTTP/1.1\r\nHost: t\r\n\r\n", false);
	cr_assert_eq(r.status, 404);
	free(r.body);
	r = request("POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", false);
	cr_assert_eq(r.status, 405);
	cr_assert_not_null(strstr(r.headers, "Allow: GET, HEAD\r\n"));
	free(r.body);
	/* counted by status in the block the server was given */
	{
		struct mc_metrics_view v;
		struct mc_metric_info m;

		cr_assert_eq(mc_metrics_view(&sup, MC_SLOT_SUPERVISOR, &v), 0);
		cr_assert_eq(mc_metrics_info(&v, (uint32_t)mc_metrics_find(&v, "test_responses_total",
		    "code=\"200\""), &m), 0);
		cr_assert_eq(mc_metrics_read_counter(&m), 3);
		cr_assert_eq(mc_metrics_info(&v, (uint32_t)mc_metrics_find(&v, "test_responses_total",
		    "code=\"404\""), &m), 0);
		cr_assert_eq(mc_metrics_read_counter(&m), 1);
	}
}

Test(httpd, bad_requests_get_their_status_and_the_server_serves_on)
{
	static const struct {
		const char *raw;
		int status;
	} bad[] = {
		{ "garbage\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\n\r\n", 400 },                   /* no Host */
		{ "GET /metrics HTTP/2.0\r\nHost: t\r\n\r\n", 505 },
		{ "GET /metrics HTTP/1.1\nHost: t\r\n\r\n", 400 },
		{ "POST /metrics HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501 },
	};
	struct resp r;

	start();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int fd = dial();

		send_all(fd, bad[i].raw, strlen(bad[i].raw));
		cr_assert(read_resp(fd, &r, false));
		cr_assert_eq(r.status, bad[i].status, "%s", bad[i].raw);
		cr_assert_not_null(strstr(r.headers, "Connection: close"));
		cr_assert(closed_by_server(fd), "closed after an error");
		free(r.body);
		close(fd);
	}
	/* a head larger than the 8 KiB buffer */
	{
		int fd = dial();
		char *big = malloc(20000);

		memset(big, 'a', 20000);
		memcpy(big, "GET /metrics HTTP/1.1\r\nHost: t\r\nX: ", 35);
		send_all(fd, big, 20000);
		cr_assert(read_resp(fd, &r, false));
		cr_assert_eq(r.status, 431);
		free(r.body);
		free(big);
		close(fd);
	}
	/* a peer that vanishes mid-request */
	{
		int fd = dial();

		send_all(fd, "GET /met", 8);
		close(fd);
	}
	r = request("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", false);
	cr_assert_eq(r.status, 200, "still serving");
	free(r.body);
}

Test(httpd, keep_alive_and_pipelining)
{
	struct resp r;
	int fd;

	start();
	fd = dial();
	for (int i = 0; i < 3; i++) {
		const char *q = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";

		send_all(fd, q, strlen(q));
		cr_assert(read_resp(fd, &r, false), "request %d on one connection", i);
		cr_assert_eq(r.status, 200);
		cr_assert_not_null(strstr(r.headers, "Connection: keep-alive"));
		free(r.body);
	}
	/* three requests in one write, answered in order */
	{
		const char *q = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
		    "HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

		send_all(fd, q, strlen(q));
		cr_assert(read_resp(fd, &r, false));
		cr_assert_eq(r.status, 200);
		free(r.body);
		cr_assert(read_resp(fd, &r, false));
		cr_assert_eq(r.status, 404);
		free(r.body);
		cr_assert(read_resp(fd, &r, true));
		cr_assert_eq(r.status, 200);
		cr_assert_not_null(strstr(r.headers, "Connection: close"));
		free(r.body);
		cr_assert(closed_by_server(fd));
	}
	close(fd);
}

static void *scraper(void *arg)
{
	long ok = 0;

	(void)arg;
	for (int i = 0; i < 5; i++) {
		const char *q = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
		struct resp r;
		int fd = dial();

		if (fd < 0)
			continue;
		if (send(fd, q, strlen(q), MSG_NOSIGNAL) == (ssize_t)strlen(q)) {
			struct pollfd p = { .fd = fd, .events = POLLIN };
			char buf[65536];
			size_t got = 0;
			ssize_t n;

			/* read to the end of the head and the whole body */
			while (poll(&p, 1, 10000) == 1 && (n = recv(fd, buf + got,
			    sizeof(buf) - 1 - got, 0)) > 0) {
				char *e, *cl;

				got += (size_t)n;
				buf[got] = '\0';
				e = strstr(buf, "\r\n\r\n");
				cl = strstr(buf, "Content-Length: ");
				if (e && cl && got >= (size_t)(e - buf) + 4 + strtoul(cl + 16, NULL, 10))
					break;
			}
			r.status = 0;
			sscanf(buf, "HTTP/1.1 %d", &r.status);
			ok += r.status == 200;
		}
		close(fd);
	}
	return (void *)ok;
}

Test(httpd, many_concurrent_scrapers)
{
	pthread_t t[40];
	long total = 0;

	start();
	for (int i = 0; i < 40; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, scraper, NULL), 0);
	for (int i = 0; i < 40; i++) {
		void *ok;

		pthread_join(t[i], &ok);
		total += (long)ok;
	}
	cr_assert_eq(total, 200, "every scrape answered (got %ld of 200)", total);
}

Test(httpd, a_taken_port_is_retried)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, hog = socket(AF_INET, SOCK_STREAM, 0);
	struct resp r;

	setsockopt(hog, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	cr_assert_eq(bind(hog, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(hog, 4), 0);
	cr_assert_eq(mc_httpd_start(&srv, &sup, listen_at, &hm), 0, "starting does not need the port");
	usleep(300000);
	close(hog);                     /* the port frees up; the next retry (2 s) binds */
	wait_up();
	r = request("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", false);
	cr_assert_eq(r.status, 200);
	free(r.body);
}

Test(httpd, stops_with_connections_open)
{
	int fds[5];
	struct timespec t0, t1;

	start();
	for (int i = 0; i < 5; i++) {
		fds[i] = dial();
		send_all(fds[i], "GET /metrics HTTP/1.1\r\n", 23);   /* never finished */
	}
	usleep(100000);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	mc_httpd_stop(srv);
	srv = NULL;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_lt(t1.tv_sec - t0.tv_sec, 2, "stop does not wait for idle peers");
	for (int i = 0; i < 5; i++) {
		cr_assert(closed_by_server(fds[i]));
		close(fds[i]);
	}
}
