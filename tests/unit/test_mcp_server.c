/*
 * test_mcp_server.c - unit tests for the parts of the protocol worker's
 * server (workers/protocol/server.c) that need no sockets: reading
 * [protocol] listen and deciding whether it is a loopback listener (which
 * turns Host checking on).  The server itself runs in the integration
 * suite (tests/integration/test_mcp.py) over real sockets.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "mc_protocol.h"

static int addr(const char *s, struct sockaddr_storage *ss, bool *lo)
{
	unsigned len = 0;
	int rc = mc_protocol_addr(s, ss, &len, lo);

	if (rc == 0)
		cr_assert(len == sizeof(struct sockaddr_in) || len == sizeof(struct sockaddr_in6));
	return rc;
}

Test(mcp_server, ipv4_and_loopback)
{
	struct sockaddr_storage ss;
	bool lo = false;

	cr_assert_eq(addr("127.0.0.1:3000", &ss, &lo), 0);
	cr_assert(lo);
	cr_assert_eq(ss.ss_family, AF_INET);
	cr_assert_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 3000);
	cr_assert_eq(addr("127.1.2.3:1", &ss, &lo), 0);
	cr_assert(lo);
	cr_assert_eq(addr("0.0.0.0:3000", &ss, &lo), 0);
	cr_assert(!lo);
	cr_assert_eq(addr("192.168.1.10:65535", &ss, &lo), 0);
	cr_assert(!lo);
}

Test(mcp_server, ipv6)
{
	struct sockaddr_storage ss;
	bool lo = false;

	cr_assert_eq(addr("[::1]:3000", &ss, &lo), 0);
	cr_assert(lo);
	cr_assert_eq(ss.ss_family, AF_INET6);
	cr_assert_eq(addr("[::]:3000", &ss, &lo), 0);
	cr_assert(!lo);
}

Test(mcp_server, refusals)
{
	struct sockaddr_storage ss;
	bool lo;
	const char *bad[] = { "", "3000", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536",
	    "localhost:3000", "[::1:3000", "[::1]3000", ":3000", "[]:1", NULL };

	for (int i = 0; bad[i]; i++)
		cr_assert_eq(addr(bad[i], &ss, &lo), -EINVAL, "accepted \"%s\"", bad[i]);
}
