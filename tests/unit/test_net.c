/*
 * test_net.c - unit tests for listening sockets (workers/net/net.c,
 * contract in workers/net/mc_net.h): the address syntax, loopback
 * detection, and a real listen/connect on 127.0.0.1 and ::1.
 */
#define _GNU_SOURCE

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mc_net.h"

Test(net, addresses_parse_with_family_port_and_loopback)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	bool lo = false;

	cr_assert_eq(mc_net_addr("127.0.0.1:3000", &ss, &len, &lo), 0);
	cr_assert_eq(ss.ss_family, AF_INET);
	cr_assert_eq(len, sizeof(struct sockaddr_in));
	cr_assert_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 3000);
	cr_assert(lo);
	cr_assert_eq(mc_net_addr("127.9.9.9:1", &ss, &len, &lo), 0);
	cr_assert(lo, "all of 127.0.0.0/8 is loopback");
	cr_assert_eq(mc_net_addr("0.0.0.0:9464", &ss, &len, &lo), 0);
	cr_assert_not(lo);
	cr_assert_eq(mc_net_addr("[::1]:65535", &ss, &len, &lo), 0);
	cr_assert_eq(ss.ss_family, AF_INET6);
	cr_assert_eq(len, sizeof(struct sockaddr_in6));
	cr_assert_eq(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 65535);
	cr_assert(lo);
	cr_assert_eq(mc_net_addr("[::]:80", &ss, &len, &lo), 0);
	cr_assert_not(lo);
	cr_assert_eq(mc_net_addr("10.0.0.1:80", &ss, &len, NULL), 0, "loopback is optional");
}

Test(net, bad_addresses_are_einval)
{
	static const char *const bad[] = {
		"", ":80", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
		"127.0.0.1:80x", "127.0.0.1:-1", "localhost:80", "[::1]80", "[::1:80",
		"::1:80", "[127.0.0.1]:80", "[]:1", "3000", "256.0.0.1:80", "1.2.3:80",
		"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:80",
	};
	struct sockaddr_storage ss;
	socklen_t len;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(mc_net_addr(bad[i], &ss, &len, NULL), -EINVAL, "'%s'", bad[i]);
	cr_assert_eq(mc_net_listen("nonsense", 16, NULL), -EINVAL);
}

/* The port the kernel gave fd. */
static int port_of(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	cr_assert_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	return ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port) :
	    ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* Listen on a free port of `host`, connect to it, and check a taken port
 * gives EADDRINUSE. */
static void listen_and_connect(const char *host, int family)
{
	char addr[64];
	struct sockaddr_storage ss;
	socklen_t len;
	int probe, lfd, cfd, afd, port;
	bool lo = false;
	char c = 0;

	/* a free port: bind port 0 once, read it back, release it */
	snprintf(addr, sizeof(addr), family == AF_INET6 ? "[%s]:1" : "%s:1", host);
	cr_assert_eq(mc_net_addr(addr, &ss, &len, NULL), 0);
	probe = socket(family, SOCK_STREAM, 0);
	cr_assert_geq(probe, 0);
	if (family == AF_INET6)
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	else
		((struct sockaddr_in *)&ss)->sin_port = 0;
	cr_assert_eq(bind(probe, (struct sockaddr *)&ss, len), 0, "%s", strerror(errno));
	port = port_of(probe);
	close(probe);

	snprintf(addr, sizeof(addr), family == AF_INET6 ? "[%s]:%d" : "%s:%d", host, port);
	lfd = mc_net_listen(addr, 16, &lo);
	cr_assert_geq(lfd, 0, "listen %s: %s", addr, strerror(-lfd));
	cr_assert(lo);
	cr_assert_eq(port_of(lfd), port);
	cr_assert_eq(mc_net_listen(addr, 16, NULL), -EADDRINUSE, "a second listener on %s", addr);
	cr_assert_eq(mc_net_addr(addr, &ss, &len, NULL), 0);
	cfd = socket(family, SOCK_STREAM, 0);
	cr_assert_eq(connect(cfd, (struct sockaddr *)&ss, len), 0, "%s", strerror(errno));
	afd = accept(lfd, NULL, NULL);
	cr_assert_geq(afd, 0);
	cr_assert_eq(write(cfd, "x", 1), 1);
	cr_assert_eq(read(afd, &c, 1), 1);
	cr_assert_eq(c, 'x');
	close(afd);
	close(cfd);
	close(lfd);
}

Test(net, listens_and_accepts_on_loopback_v4)
{
	listen_and_connect("127.0.0.1", AF_INET);
}

Test(net, listens_and_accepts_on_loopback_v6)
{
	int s = socket(AF_INET6, SOCK_STREAM, 0);

	if (s < 0)
		cr_skip_test("no IPv6 here");
	close(s);
	listen_and_connect("::1", AF_INET6);
}
