/*
 * mc_net.h - listening TCP sockets for the workers that serve HTTP (the
 * monitor's /metrics, the MCP front door), in the spirit of Redis's anet.c:
 * the address syntax of the config in one place, and one way to listen.
 *
 * Addresses are "a.b.c.d:port" or "[v6]:port" with a numeric host (the
 * config reader checks the syntax; these functions check it again, since
 * they may be called with anything).  No name resolution: a listener must
 * not block on DNS.
 *
 * Any thread; no allocation.  Errors are negative errno values.
 */
#ifndef MC_NET_H
#define MC_NET_H

#include <stdbool.h>
#include <sys/socket.h>

/*
 * Parse `addr` into *ss / *len.  *loopback (may be NULL) says whether
 * the address is a loopback one (127.0.0.0/8 or ::1), for Host checks.
 * Returns 0 or -EINVAL.
 */
int mc_net_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *len, bool *loopback);

/*
 * A listening, close-on-exec TCP socket on `addr` with SO_REUSEADDR (a
 * restarted worker must not wait out TIME_WAIT; not SO_REUSEPORT: two
 * instances on one port would split the traffic).  Returns the fd, or
 * -EINVAL (bad address) or the -errno of socket/bind/listen.
 */
int mc_net_listen(const char *addr, int backlog, bool *loopback);

#endif
