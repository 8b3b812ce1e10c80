/*
 * test_mcp_session.c - unit tests for MCP sessions (workers/protocol/
 * session.c): the lifecycle machine state by state, version negotiation,
 * log levels, ids, and the stored record's round trip and refusals.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include "mc_protocol.h"

static int admit(int state, const char *method, bool notification)
{
	const char *why = NULL;
	int rc = mc_session_admit(state, method, notification, &why);

	if (rc != 0)
		cr_assert_not_null(why);
	return rc;
}

Test(mcp_session, lifecycle_before_initialize)
{
	cr_assert_eq(admit(MC_SESSION_NONE, "initialize", false), 0);
	cr_assert_eq(admit(MC_SESSION_NONE, "initialize", true), MC_RPC_INVALID_REQUEST);
	cr_assert_eq(admit(MC_SESSION_NONE, "tools/list", false), MC_RPC_INVALID_REQUEST);
	cr_assert_eq(admit(MC_SESSION_NONE, "ping", false), MC_RPC_INVALID_REQUEST);
	cr_assert_eq(admit(MC_SESSION_NONE, "notifications/initialized", true), MC_RPC_INVALID_REQUEST);
}

Test(mcp_session, lifecycle_initializing)
{
	cr_assert_eq(admit(MC_SESSION_INITIALIZING, "notifications/initialized", true), 0);
	cr_assert_eq(admit(MC_SESSION_INITIALIZING, "notifications/cancelled", true), 0);
	cr_assert_eq(admit(MC_SESSION_INITIALIZING, "ping", false), 0);
	cr_assert_eq(admit(MC_SESSION_INITIALIZING, "tools/list", false), MC_RPC_INVALID_REQUEST);
	cr_assert_eq(admit(MC_SESSION_INITIALIZING, "tools/call", false), MC_RPC_INVALID_REQUEST);
	cr_assert_eq(admit(MC_SESSION_INITIALIZING, "initialize", false), MC_RPC_INVALID_REQUEST);
}

Test(mcp_session, lifecycle_ready)
{
	cr_assert_eq(admit(MC_SESSION_READY, "tools/list", false), 0);
	cr_assert_eq(admit(MC_SESSION_READY, "tools/call", false), 0);
	cr_assert_eq(admit(MC_SESSION_READY, "ping", false), 0);
	cr_assert_eq(admit(MC_SESSION_READY, "whatever/unknown", false), 0);     /* -32601 later */
	cr_assert_eq(admit(MC_SESSION_READY, "notifications/initialized", true), 0);
	cr_assert_eq(admit(MC_SESSION_READY, "initialize", false), MC_RPC_INVALID_REQUEST);
	cr_assert_eq(admit(9, "ping", false), MC_RPC_INTERNAL_ERROR);
}

Test(mcp_session, versions)
{
	cr_assert(mc_session_version_ok("2025-06-18", 10));
	cr_assert(mc_session_version_ok("2025-11-25", 10));
	cr_assert(!mc_session_version_ok("2025-03-26", 10));
	cr_assert(!mc_session_version_ok("2025-06-1", 9));
	cr_assert(!mc_session_version_ok("", 0));
	cr_assert(mc_session_header_version_ok("2025-03-26", 10));
	cr_assert(mc_session_header_version_ok("2025-06-18", 10));
	cr_assert(!mc_session_header_version_ok("2024-11-05", 10));
	cr_assert(!mc_session_header_version_ok("not-a-version", 13));
	cr_assert_str_eq(mc_session_negotiate("2025-06-18"), "2025-06-18");
	cr_assert_str_eq(mc_session_negotiate("2024-11-05"), "2025-11-25");
	cr_assert_str_eq(mc_session_negotiate(NULL), "2025-11-25");
}

Test(mcp_session, log_levels)
{
	cr_assert_eq(mc_session_log_level("debug"), 0);
	cr_assert_eq(mc_session_log_level("emergency"), 7);
	cr_assert_eq(mc_session_log_level("warn"), -1);
	cr_assert_eq(mc_session_log_level(NULL), -1);
}

Test(mcp_session, ids)
{
	char a[MC_SESSION_ID_LEN + 1], b[MC_SESSION_ID_LEN + 1];

	cr_assert_eq(mc_session_new_id(a), 0);
	cr_assert_eq(mc_session_new_id(b), 0);
	cr_assert_eq(strlen(a), MC_SESSION_ID_LEN);
	cr_assert_str_neq(a, b);
	cr_assert(mc_session_id_ok(a, strlen(a)));
	cr_assert(!mc_session_id_ok(a, strlen(a) - 1));
	cr_assert(!mc_session_id_ok("0123456789abcdef0123456789abcdeG", 32));
	cr_assert(!mc_session_id_ok("0123456789ABCDEF0123456789abcdef", 32));
}

Test(mcp_session, record_round_trip)
{
	struct mc_session s = { .state = MC_SESSION_READY, .log_level = 3 }, t;
	char buf[256];
	int n;

	strcpy(s.version, "2025-06-18");
	strcpy(s.client, "client \"x\"");
	n = mc_session_encode(&s, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	memset(&t, 0, sizeof(t));
	cr_assert_eq(mc_session_decode(buf, (size_t)n, &t), 0);
	cr_assert_str_eq(t.version, "2025-06-18");
	cr_assert_str_eq(t.client, "client \"x\"");
	cr_assert_eq(t.state, MC_SESSION_READY);
	cr_assert_eq(t.log_level, 3);
	cr_assert_eq(mc_session_encode(&s, buf, 8), -ENOSPC);
}

Test(mcp_session, client_capabilities_kept_and_optional)
{
	struct mc_session s = { .state = MC_SESSION_READY, .log_level = 1,
	    .client_caps = MC_CLIENT_SAMPLING | MC_CLIENT_ELICITATION }, t;
	const char *old = "{\"v\":\"2025-06-18\",\"s\":2,\"l\":1,\"c\":\"x\"}";
	char buf[256];
	int n;

	strcpy(s.version, "2025-11-25");
	n = mc_session_encode(&s, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	memset(&t, 0, sizeof(t));
	cr_assert_eq(mc_session_decode(buf, (size_t)n, &t), 0);
	cr_assert_eq(t.client_caps, MC_CLIENT_SAMPLING | MC_CLIENT_ELICITATION);
	/* a record from before capabilities were kept: none declared */
	t.client_caps = 7;
	cr_assert_eq(mc_session_decode(old, strlen(old), &t), 0);
	cr_assert_eq(t.client_caps, 0);
}

Test(mcp_session, record_refusals)
{
	struct mc_session t;
	const char *bad[] = {
		"", "{", "[]", "{\"v\":\"2025-06-18\",\"s\":2}",
		"{\"v\":\"1999-01-01\",\"s\":2,\"l\":1}",
		"{\"v\":\"2025-06-18\",\"s\":0,\"l\":1}",
		"{\"v\":\"2025-06-18\",\"s\":3,\"l\":1}",
		"{\"v\":\"2025-06-18\",\"s\":2,\"l\":8}",
		NULL,
	};

	for (int i = 0; bad[i]; i++)
		cr_assert_eq(mc_session_decode(bad[i], strlen(bad[i]), &t), -EINVAL, "accepted %s", bad[i]);
}
