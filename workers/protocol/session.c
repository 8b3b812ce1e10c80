/*
 * session.c - MCP sessions: the lifecycle machine, version negotiation,
 * ids and the record kept in the state manager (contract in mc_protocol.h).
 *
 * LIFECYCLE (MCP "Lifecycle"; one machine per Mcp-Session-Id)
 *   NONE          initialize (request)           -> INITIALIZING
 *   INITIALIZING  notifications/initialized      -> READY
 *                 ping, other notifications      (allowed, no change)
 *                 any other request              -> error: not initialized
 *   READY         everything but initialize
 * Ending a session (HTTP DELETE) deletes its record: the id is then
 * unknown (404), which is what the transport asks for an ended session.
 * A record also expires MC_SESSION_TTL_MS after its last change.
 *
 * The record lives in the state manager (namespace MC_SESSION_NS, key =
 * the id) and not in this process, so a protocol worker killed and
 * restarted serves the same sessions: every request reads the record
 * straight from shared memory (mc_state_get, lock-free), every change is
 * a write through the state worker.  The record is small JSON:
 *   {"v":"2025-06-18","s":2,"l":1,"c":"client name"}
 */
#include "mc_protocol.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "mc_state.h"

const char *const mc_session_versions[] = { "2025-11-25", "2025-06-18", NULL };

const char *const mc_session_log_levels[] = {
	"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency", NULL
};

bool mc_session_version_ok(const char *v, size_t n)
{
	for (int i = 0; mc_session_versions[i] != NULL; i++)
		if (strlen(mc_session_versions[i]) == n && memcmp(mc_session_versions[i], v, n) == 0)
			return true;
	return false;
}

bool mc_session_header_version_ok(const char *v, size_t n)
{
	return mc_session_version_ok(v, n) || (n == 10 && memcmp(v, "2025-03-26", 10) == 0);
}

const char *mc_session_negotiate(const char *v)
{
	if (v != NULL && mc_session_version_ok(v, strlen(v)))
		return v;
	return mc_session_versions[0];
}

int mc_session_log_level(const char *name)
{
	for (int i = 0; name != NULL && mc_session_log_levels[i] != NULL; i++)
		if (strcmp(mc_session_log_levels[i], name) == 0)
			return i;
	return -1;
}

int mc_session_admit(int state, const char *method, bool notification, const char **why)
{
	bool init = strcmp(method, "initialize") == 0;

	switch (state) {
	case MC_SESSION_NONE:
		if (init && !notification)
			return 0;
		*why = "no session: the first message must be an initialize request";
		return MC_RPC_INVALID_REQUEST;
	case MC_SESSION_INITIALIZING:
		if (init) {
			*why = "the session is already initialized";
			return MC_RPC_INVALID_REQUEST;
		}
		if (notification || strcmp(method, "ping") == 0)
			return 0;
		*why = "the session is not initialized yet: send notifications/initialized first";
		return MC_RPC_INVALID_REQUEST;
	case MC_SESSION_READY:
		if (!init)
			return 0;
		*why = "the session is already initialized";
		return MC_RPC_INVALID_REQUEST;
	default:
		*why = "the session record is corrupt";
		return MC_RPC_INTERNAL_ERROR;
	}
}

int mc_session_new_id(char out[MC_SESSION_ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char r[MC_SESSION_ID_LEN / 2];
	ssize_t n = getrandom(r, sizeof(r), 0);

	if (n != (ssize_t)sizeof(r))
		return n < 0 ? -errno : -EIO;
	for (size_t i = 0; i < sizeof(r); i++) {
		out[2 * i] = hex[r[i] >> 4];
		out[2 * i + 1] = hex[r[i] & 15];
	}
	out[MC_SESSION_ID_LEN] = '\0';
	return 0;
}

bool mc_session_id_ok(const char *s, size_t n)
{
	if (n != MC_SESSION_ID_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

int mc_session_encode(const struct mc_session *s, char *buf, size_t cap)
{
	json_t *doc = json_pack("{s:s, s:i, s:i, s:s, s:i}", "v", s->version, "s", s->state,
	    "l", s->log_level, "c", s->client, "k", s->client_caps);
	size_t n;

	if (doc == NULL)
		return -EINVAL;
	n = json_dumpb(doc, buf, cap, JSON_COMPACT);
	json_decref(doc);
	if (n == 0 || n > cap)
		return -ENOSPC;
	return (int)n;
}

int mc_session_decode(const char *buf, size_t len, struct mc_session *s)
{
	json_t *doc = json_loadb(buf, len, 0, NULL);
	const char *v = NULL, *c = "";
	int st = 0, lv = 0, caps = 0, rc = -EINVAL;

	if (doc == NULL)
		return -EINVAL;
	/* "k" (client capabilities) is absent in records written before it
	 * existed: such a client is taken to have declared none */
	if (json_unpack(doc, "{s:s, s:i, s:i, s?:s, s?:i}", "v", &v, "s", &st, "l", &lv, "c", &c,
	    "k", &caps) != 0)
		goto out;
	if (!mc_session_version_ok(v, strlen(v)) || st < MC_SESSION_INITIALIZING ||
	    st > MC_SESSION_READY || lv < 0 || lv > 7)
		goto out;
	snprintf(s->version, sizeof(s->version), "%s", v);
	snprintf(s->client, sizeof(s->client), "%s", c);
	s->state = st;
	s->log_level = lv;
	s->client_caps = caps & (MC_CLIENT_SAMPLING | MC_CLIENT_ELICITATION);
	rc = 0;
out:
	json_decref(doc);
	return rc;
}

/* The cache slot of an id: its first hex digits (ids are random). */
static unsigned mc_session_slot(const char *id)
{
	unsigned h = 0;

	for (int i = 0; i < 8 && id[i] != '\0'; i++)
		h = h << 4 | (unsigned)(id[i] <= '9' ? id[i] - '0' : (id[i] | 0x20) - 'a' + 10);
	return h & (MC_SESSION_CACHE_SLOTS - 1);
}

int mc_session_load(const struct mc_seg *seg, struct mc_session_cache *cache, const char *id,
    struct mc_session *s)
{
	struct mc_state_value meta;
	size_t idlen = strlen(id);
	char buf[512];
	unsigned slot;
	int rc;

	rc = mc_state_get(seg, MC_SESSION_NS, strlen(MC_SESSION_NS), id, idlen, buf,
	    sizeof(buf), &meta);
	if (rc == -ENOSPC)
		return -EINVAL;
	if (rc)
		return rc;
	slot = mc_session_slot(id);
	if (cache != NULL && cache->e[slot].version == meta.version &&
	    strcmp(cache->e[slot].s.id, id) == 0) {
		*s = cache->e[slot].s;
		return 0;
	}
	snprintf(s->id, sizeof(s->id), "%s", id);
	rc = mc_session_decode(buf, meta.len, s);
	if (rc == 0 && cache != NULL) {
		cache->e[slot].version = meta.version;
		cache->e[slot].s = *s;
	}
	return rc;
}
