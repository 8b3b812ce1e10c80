/*
 * net.c - listening TCP sockets (contract in mc_net.h).
 */
#include "mc_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int mc_net_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *len, bool *loopback)
{
	char host[64], *end;
	const char *colon;
	bool v6 = addr[0] == '[';
	size_t n;
	long port;

	memset(ss, 0, sizeof(*ss));
	if (v6) {
		const char *close = strchr(addr, ']');

		if (close == NULL || close[1] != ':')
			return -EINVAL;
		n = (size_t)(close - addr - 1);
		colon = close + 1;
	} else {
		colon = strrchr(addr, ':');
		if (colon == NULL)
			return -EINVAL;
		n = (size_t)(colon - addr);
	}
	if (n == 0 || n >= sizeof(host))
		return -EINVAL;
	memcpy(host, v6 ? addr + 1 : addr, n);
	host[n] = '\0';
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || *end != '\0' || errno != 0 || port < 1 || port > 65535)
		return -EINVAL;
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return -EINVAL;
		if (loopback != NULL)
			*loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
		*len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return -EINVAL;
		if (loopback != NULL)
			*loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
		*len = sizeof(*a);
	}
	return 0;
}

int mc_net_listen(const char *addr, int backlog, bool *loopback)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	int fd, one = 1, rc;

	rc = mc_net_addr(addr, &ss, &len, loopback);
	if (rc)
		return rc;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}
