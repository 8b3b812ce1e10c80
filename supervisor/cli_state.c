/*
 * cli_state.c - `mcpcore state`: read and write the state manager from the
 * command line.  Reads attach read-only and read shared memory directly;
 * writes take a client slot and go through the state worker.
 */
#include "mc_cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mc_config.h"
#include "mc_seg.h"
#include "mc_state.h"
#include "mc_state_client.h"

#define MC_STATE_TIMEOUT_NS 5000000000ULL

static const char mc_state_usage[] =
"usage: mcpcore state COMMAND [--instance NAME | --config PATH] [--json]\n"
"  get NAMESPACE KEY             print the value (--json: with version and times)\n"
"  put NAMESPACE KEY VALUE       [--ttl MS]  set; prints the new version\n"
"  cas NAMESPACE KEY VERSION VALUE  set only if the current version is VERSION\n"
"                                (0: only if absent)\n"
"  del NAMESPACE KEY             delete\n"
"  incr NAMESPACE KEY [DELTA]    add DELTA (default 1) to a decimal value\n"
"  scan NAMESPACE [PREFIX]       list keys (--json: with values and versions)\n"
"  check                         verify the table's consistency\n"
"  stats                         table and arena usage\n"
"Exit 0 on success, 1 on failure (not found, version mismatch, ...), 64 usage.\n";

struct mc_state_opts {
	char instance[MC_INSTANCE_MAX];
	bool json;
	uint64_t ttl_ms;
	int nargs;
	char **args;
};

static int mc_state_parse(int argc, char **argv, struct mc_state_opts *o)
{
	static const struct option longopts[] = {
		{ "instance", required_argument, NULL, 'i' },
		{ "config", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "ttl", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct mc_config cfg;
	char err[MC_CONFIG_ERR_MAX], *end;
	const char *config = NULL, *instance = NULL;
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "i:c:jt:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'i': instance = optarg; break;
		case 'c': config = optarg; break;
		case 'j': o->json = true; break;
		case 't':
			errno = 0;
			o->ttl_ms = strtoull(optarg, &end, 10);
			if (errno || *end || optarg[0] == '-') {
				fprintf(stderr, "mcpcore state: --ttl '%s': expected milliseconds\n", optarg);
				return 64;
			}
			break;
		case 'h': fputs(mc_state_usage, stdout); exit(0);
		default: fputs(mc_state_usage, stderr); return 64;
		}
	}
	o->nargs = argc - optind;
	o->args = argv + optind;
	if (instance != NULL && config == NULL) {
		snprintf(o->instance, sizeof(o->instance), "%s", instance);
		return 0;
	}
	if (mc_config_load(config ? config : "config/mcpcore.toml", &cfg, err, sizeof(err))) {
		fprintf(stderr, "mcpcore: %s\n", err);
		return MC_CONFIG_EX;
	}
	snprintf(o->instance, sizeof(o->instance), "%s", instance ? instance : cfg.instance);
	return 0;
}

static json_t *mc_state_json_bytes(const void *p, size_t n)
{
	json_t *s = json_stringn(p, n);          /* NULL if not UTF-8 */

	return s ? s : json_string("<binary>");
}

static int mc_state_get_cmd(const struct mc_seg *seg, const struct mc_state_opts *o)
{
	const char *ns = o->args[1], *key = o->args[2];
	size_t cap = seg->hdr->sh_config.state_max_value_size;
	struct mc_state_value v;
	char *buf = malloc(cap ? cap : 1);
	int rc;

	if (buf == NULL)
		return 1;
	rc = mc_state_get(seg, ns, strlen(ns), key, strlen(key), buf, cap, &v);
	if (rc == 0 && o->json) {
		json_t *doc = json_pack("{s:s, s:s, s:o, s:I, s:I, s:I}", "ns", ns, "key", key,
		    "value", mc_state_json_bytes(buf, v.len), "version", (json_int_t)v.version,
		    "mtime_ns", (json_int_t)v.mtime, "expires_ns", (json_int_t)v.expires);
		char *text = json_dumps(doc, JSON_COMPACT);

		puts(text);
		free(text);
		json_decref(doc);
	} else if (rc == 0) {
		fwrite(buf, 1, v.len, stdout);
		putchar('\n');
	} else {
		fprintf(stderr, "mcpcore state get: %s/%s: %s\n", ns, key,
		    rc == -ENOENT ? "not found" : rc == -ENODEV ? "state worker not started" :
		    rc == -EINVAL ? "empty or over-long namespace or key" : strerror(-rc));
	}
	free(buf);
	return rc == 0 ? 0 : 1;
}

static int mc_state_scan_cb(void *ctx, const struct mc_state_item *it)
{
	const struct mc_state_opts *o = ctx;

	if (o->json) {
		json_t *doc = json_pack("{s:o, s:o, s:I}", "key", mc_state_json_bytes(it->key, it->keylen),
		    "value", mc_state_json_bytes(it->value, it->vlen), "version",
		    (json_int_t)it->meta.version);
		char *text = json_dumps(doc, JSON_COMPACT);

		puts(text);
		free(text);
		json_decref(doc);
	} else {
		printf("%.*s\n", (int)it->keylen, (const char *)it->key);
	}
	return 0;
}

static int mc_state_stats_cmd(const struct mc_seg *seg)
{
	struct mc_state_stats st;

	if (mc_state_stats(seg, &st) != 0) {
		fprintf(stderr, "mcpcore state stats: the state worker has not started\n");
		return 1;
	}
	printf("entries %" PRIu64 " live, %" PRIu64 " tombstones, capacity %" PRIu64 "\n"
	    "arena %" PRIu64 " bytes in use, %" PRIu64 " free in lists, %" PRIu64
	    " never used, of %" PRIu64 "\nversion %" PRIu64 ", %" PRIu64 " writes, %" PRIu64
	    " expired\n", st.live, st.tombstones, st.capacity, st.arena_live, st.arena_free,
	    st.arena_size - st.arena_top, st.arena_size, st.version, st.writes, st.expired);
	return 0;
}

/* Writes: a client slot, one op, one result. */
static int mc_state_write_cmd(const struct mc_state_opts *o, struct mc_state_req *r)
{
	struct mc_seg seg;
	struct mc_state_res res;
	char err[512];
	int rc = mc_seg_attach(&seg, o->instance, false, err, sizeof(err));

	if (rc == 0)
		rc = mc_seg_claim_client(&seg, "cli-state", err, sizeof(err));
	if (rc) {
		fprintf(stderr, "mcpcore: %s\n", err);
		if (seg.base)
			mc_seg_detach(&seg);
		return 1;
	}
	r->ttl_ms = o->ttl_ms;
	rc = mc_state_call(&seg, r, &res, MC_STATE_TIMEOUT_NS);
	mc_seg_release_client(&seg);
	mc_seg_detach(&seg);
	if (rc) {
		fprintf(stderr, "mcpcore state %s: %s\n", o->args[0],
		    rc == -EMSGSIZE ? "namespace, key or value over its [state] bound" :
		    rc == -EINVAL ? "empty namespace or key" : mc_strerror(rc));
		return 1;
	}
	if (res.status != MCPCORE__STATE_RESULT__STATUS__OK) {
		fprintf(stderr, "mcpcore state %s: %s (version %" PRIu64 ")\n", o->args[0],
		    res.error, res.version);
		return 1;
	}
	if (r->kind == MCPCORE__STATE_OP__KIND__INCR)
		printf("%s\n", res.value);
	printf("version %" PRIu64 "\n", res.version);
	return 0;
}

static bool mc_state_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0' && s[0] >= '0' && s[0] <= '9';
}

int mc_cli_state(int argc, char **argv)
{
	struct mc_state_opts o = { 0 };
	struct mc_state_req r = { 0 };
	const char *cmd;
	int rc = mc_state_parse(argc, argv, &o);
	struct {
		const char *name;
		int nargs, nargs_max;
	} const cmds[] = {
		{ "get", 3, 3 }, { "put", 4, 4 }, { "cas", 5, 5 }, { "del", 3, 3 },
		{ "incr", 3, 4 }, { "scan", 2, 3 }, { "check", 1, 1 }, { "stats", 1, 1 },
	};
	bool known = false;

	if (rc)
		return rc;
	if (o.nargs < 1) {
		fputs(mc_state_usage, stderr);
		return 64;
	}
	cmd = o.args[0];
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(cmd, cmds[i].name) == 0) {
			known = true;
			if (o.nargs < cmds[i].nargs || o.nargs > cmds[i].nargs_max) {
				fprintf(stderr, "mcpcore state %s: wrong number of arguments\n%s", cmd,
				    mc_state_usage);
				return 64;
			}
		}
	if (!known) {
		fprintf(stderr, "mcpcore state: unknown command '%s'\n%s", cmd, mc_state_usage);
		return 64;
	}
	if (!strcmp(cmd, "get") || !strcmp(cmd, "scan") || !strcmp(cmd, "check") ||
	    !strcmp(cmd, "stats")) {
		struct mc_seg seg;
		char err[512];

		if (mc_seg_attach(&seg, o.instance, true, err, sizeof(err)) != 0) {
			fprintf(stderr, "mcpcore: %s\n", err);
			return 1;
		}
		if (!strcmp(cmd, "get")) {
			rc = mc_state_get_cmd(&seg, &o);
		} else if (!strcmp(cmd, "scan")) {
			const char *prefix = o.nargs > 2 ? o.args[2] : "";
			long n = mc_state_scan(&seg, o.args[1], strlen(o.args[1]), prefix,
			    strlen(prefix), mc_state_scan_cb, &o);

			rc = n < 0 ? 1 : 0;
			if (n < 0)
				fprintf(stderr, "mcpcore state scan: %s\n", n == -ENODEV ?
				    "state worker not started" : "bad namespace or prefix");
		} else if (!strcmp(cmd, "check")) {
			char report[512];

			rc = mc_state_check(&seg, report, sizeof(report)) ? 1 : 0;
			fprintf(rc ? stderr : stdout, "%s%s\n", rc ? "inconsistent: " : "", report);
		} else {
			rc = mc_state_stats_cmd(&seg);
		}
		mc_seg_detach(&seg);
		return rc;
	}
	r.ns = o.args[1];
	r.nslen = strlen(o.args[1]);
	r.key = o.args[2];
	r.klen = strlen(o.args[2]);
	if (!strcmp(cmd, "put")) {
		r.kind = MCPCORE__STATE_OP__KIND__PUT;
		r.value = o.args[3];
		r.vlen = strlen(o.args[3]);
	} else if (!strcmp(cmd, "cas")) {
		r.kind = MCPCORE__STATE_OP__KIND__CAS;
		if (!mc_state_u64(o.args[3], &r.expected_version)) {
			fprintf(stderr, "mcpcore state cas: VERSION '%s' is not a number\n", o.args[3]);
			return 64;
		}
		r.value = o.args[4];
		r.vlen = strlen(o.args[4]);
	} else if (!strcmp(cmd, "del")) {
		r.kind = MCPCORE__STATE_OP__KIND__DELETE;
	} else {
		char *end;

		r.kind = MCPCORE__STATE_OP__KIND__INCR;
		r.delta = 1;
		if (o.nargs > 3) {
			errno = 0;
			r.delta = strtoll(o.args[3], &end, 10);
			if (errno || *end || end == o.args[3]) {
				fprintf(stderr, "mcpcore state incr: DELTA '%s' is not an int64\n", o.args[3]);
				return 64;
			}
		}
	}
	return mc_state_write_cmd(&o, &r);
}
