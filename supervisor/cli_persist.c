/*
 * cli_persist.c - `mcpcore checkpoint`, `mcpcore restore` and `mcpcore dump`
 * (contract in mc_cli_persist.h).
 *
 * checkpoint talks to the running worker through frames, like `ping`;
 * restore and dump work on the RocksDB directory itself: restore only when
 * nothing runs on it, dump read-only at any time.
 */
#define _GNU_SOURCE
#include "mc_cli_persist.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mc_config.h"
#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_pckpt.h"
#include "mc_persist.h"
#include "mc_pjson.h"
#include "mc_pkeys.h"
#include "mc_proto.h"
#include "mc_pstore.h"
#include "mc_ring.h"
#include "mc_seg.h"
#include "mc_util.h"

#define MC_EX_USAGE 64

static const char mc_help_checkpoint[] =
"usage: mcpcore checkpoint [--config PATH] [--instance NAME] [--json] [--timeout SEC]\n"
"Ask the running persistence worker for a RocksDB checkpoint now and print the\n"
"directory it wrote: <dirname(rocksdb_path)>/checkpoints/<UTC time>. The worker\n"
"also writes one every [persistence] checkpoint_interval seconds and keeps the\n"
"newest checkpoint_keep. Exit 1 if the instance is not running or the store is\n"
"in a fault (see `mcpcore status`).\n";

static const char mc_help_restore[] =
"usage: mcpcore restore CHECKPOINT [--config PATH] [--instance NAME]\n"
"Offline restore: with the instance stopped, move the current store\n"
"(rocksdb_path) aside to <rocksdb_path>.before-restore-<UTC time> and copy the\n"
"checkpoint into rocksdb_path. CHECKPOINT is a directory, or a name under\n"
"<dirname(rocksdb_path)>/checkpoints. The next `mcpcore run` starts from it\n"
"(and restores the state manager from it). Refuses while the instance runs or\n"
"anything holds the store open. Nothing is deleted.\n";

static const char mc_help_dump[] =
"usage: mcpcore dump --cf NAME [--since T] [--limit N] [--config PATH] [--db DIR]\n"
"Print the records of one column family as JSON lines, protobuf decoded:\n"
"  {\"cf\": \"messages\", \"key\": {...}, \"value\": {...}}\n"
"NAME: messages, training, models, metrics, state, default. --since T keeps\n"
"records at or after T (ns since the Unix epoch, or UTC like\n"
"2026-01-25T04:03:10Z): the key time for messages/training/metrics,\n"
"created_at for models, mtime for state. --db reads another store (e.g. a\n"
"checkpoint) instead of the config's rocksdb_path. Read-only: works while the\n"
"runtime runs (it sees the store as of the moment it opens).\n";

bool mc_cli_persist_command(const char *cmd)
{
	return strcmp(cmd, "checkpoint") == 0 || strcmp(cmd, "restore") == 0 ||
	    strcmp(cmd, "dump") == 0;
}

const char *mc_cli_persist_help(const char *cmd)
{
	if (strcmp(cmd, "checkpoint") == 0)
		return mc_help_checkpoint;
	if (strcmp(cmd, "restore") == 0)
		return mc_help_restore;
	if (strcmp(cmd, "dump") == 0)
		return mc_help_dump;
	return NULL;
}

struct mc_popts {
	const char *config;
	const char *instance;
	const char *cf;
	const char *db;
	const char *arg;
	bool json;
	bool has_since;
	uint64_t since;
	uint64_t limit;
	double timeout;
};

/* "1769313790000000000" or "2026-01-25T04:03:10[.123]Z" -> ns since the epoch. */
static int mc_parse_time(const char *s, uint64_t *out)
{
	struct tm tm;
	char *end;
	unsigned long long v;

	if (*s >= '0' && *s <= '9' && strchr(s, '-') == NULL) {
		errno = 0;
		v = strtoull(s, &end, 10);
		if (errno || *end)
			return -EINVAL;
		*out = v;
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (end == NULL)
		return -EINVAL;
	*out = (uint64_t)timegm(&tm) * 1000000000ULL;
	if (*end == '.') {
		uint64_t frac = 0, scale = 100000000ULL;

		for (end++; *end >= '0' && *end <= '9'; end++) {
			frac += (uint64_t)(*end - '0') * scale;
			scale /= 10;
		}
		*out += frac;
	}
	if (strcmp(end, "Z") != 0 && *end != '\0')
		return -EINVAL;
	return 0;
}

static int mc_popts_parse(const char *cmd, int argc, char **argv, struct mc_popts *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "instance", required_argument, NULL, 'i' },
		{ "json", no_argument, NULL, 'j' },
		{ "cf", required_argument, NULL, 'f' },
		{ "since", required_argument, NULL, 's' },
		{ "limit", required_argument, NULL, 'n' },
		{ "db", required_argument, NULL, 'd' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int ch;

	*o = (struct mc_popts){ .timeout = 60.0 };
	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:i:jf:s:n:d:t:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': o->config = optarg; break;
		case 'i': o->instance = optarg; break;
		case 'j': o->json = true; break;
		case 'f': o->cf = optarg; break;
		case 'd': o->db = optarg; break;
		case 's':
			if (mc_parse_time(optarg, &o->since) != 0) {
				fprintf(stderr, "mcpcore %s: --since '%s': use ns since the epoch or "
				    "UTC like 2026-01-25T04:03:10Z\n", cmd, optarg);
				return MC_EX_USAGE;
			}
			o->has_since = true;
			break;
		case 'n':
			errno = 0;
			o->limit = strtoull(optarg, &end, 10);
			if (errno || *end || o->limit == 0) {
				fprintf(stderr, "mcpcore %s: --limit must be a positive integer\n", cmd);
				return MC_EX_USAGE;
			}
			break;
		case 't':
			o->timeout = strtod(optarg, &end);
			if (*end || !(o->timeout > 0)) {
				fprintf(stderr, "mcpcore %s: --timeout must be seconds > 0\n", cmd);
				return MC_EX_USAGE;
			}
			break;
		case 'h':
			fputs(mc_cli_persist_help(cmd), stdout);
			exit(0);
		default:
			fputs(mc_cli_persist_help(cmd), stderr);
			return MC_EX_USAGE;
		}
	}
	if (optind < argc && strcmp(cmd, "restore") == 0)
		o->arg = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, "mcpcore %s: unexpected argument '%s'\n", cmd, argv[optind]);
		return MC_EX_USAGE;
	}
	return 0;
}

static int mc_pcli_config(const struct mc_popts *o, const char *def, struct mc_config *cfg)
{
	char err[MC_CONFIG_ERR_MAX];

	if (mc_config_load(o->config ? o->config : def, cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "mcpcore: %s\n", err);
		return MC_CONFIG_EX;
	}
	if (o->instance != NULL)
		snprintf(cfg->instance, sizeof(cfg->instance), "%s", o->instance);
	return 0;
}

/* ------------------------------------------------------------------ */
/* checkpoint                                                           */

static int mc_pcli_checkpoint(const struct mc_popts *o, const char *def)
{
	static struct mc_config cfg;
	Mcpcore__PersistRequest req = MCPCORE__PERSIST_REQUEST__INIT;
	char err[512];
	struct mc_seg seg;
	uint64_t end;
	int rc;

	if (o->instance != NULL && o->config == NULL) {
		mc_config_defaults(&cfg);
		snprintf(cfg.instance, sizeof(cfg.instance), "%s", o->instance);
	} else if ((rc = mc_pcli_config(o, def, &cfg)) != 0) {
		return rc;
	}
	rc = mc_seg_attach(&seg, cfg.instance, false, err, sizeof(err));
	if (rc == 0)
		rc = mc_seg_claim_client(&seg, "checkpoint", err, sizeof(err));
	if (rc) {
		fprintf(stderr, "mcpcore: %s\n", err);
		if (seg.base != NULL)
			mc_seg_detach(&seg);
		return 1;
	}
	req.op = MCPCORE__PERSIST_REQUEST__OP__CHECKPOINT;
	req.id = mc_now_ns();
	end = mc_now_ns() + (uint64_t)(o->timeout * 1e9);
	while ((rc = mc_proto_send(&seg, &req.base, 1ULL << MC_WORKER_PERSISTENCE)) == -EAGAIN &&
	    mc_now_ns() < end)
		usleep(1000);
	if (rc) {
		fprintf(stderr, "mcpcore: cannot send to the persistence worker: %s\n",
		    mc_strerror(rc));
		goto out;
	}
	rc = -ETIMEDOUT;
	while (mc_now_ns() < end) {
		Mcpcore__PersistReply *rep;
		struct mc_msg m;

		mc_seg_heartbeat(&seg);
		if (mc_recv(&seg, &m) != 0) {
			mc_ring_wait(&seg, 20000, 100000000ULL);
			continue;
		}
		rep = m.frame->f_kind == MC_FK_PERSIST_REPLY ?
		    (Mcpcore__PersistReply *)mc_proto_unpack(m.frame) : NULL;
		mc_frame_release(&seg, &m);
		if (rep == NULL)
			continue;
		if (rep->id != req.id) {
			protobuf_c_message_free_unpacked(&rep->base, NULL);
			continue;
		}
		if (rep->status == MCPCORE__PERSIST_REPLY__STATUS__OK) {
			if (o->json) {
				json_t *doc = json_pack("{s:s}", "path", rep->checkpoint_path);
				char *text = json_dumps(doc, JSON_COMPACT);

				puts(text);
				free(text);
				json_decref(doc);
			} else {
				puts(rep->checkpoint_path);
			}
			rc = 0;
		} else {
			fprintf(stderr, "mcpcore: checkpoint failed: %s\n", rep->error);
			rc = -EIO;
		}
		protobuf_c_message_free_unpacked(&rep->base, NULL);
		break;
	}
	if (rc == -ETIMEDOUT)
		fprintf(stderr, "mcpcore: no answer from the persistence worker within %g s "
		    "(see `mcpcore status`)\n", o->timeout);
out:
	mc_seg_release_client(&seg);
	mc_seg_detach(&seg);
	return rc ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* restore                                                              */

/*
 * Who holds the store's RocksDB lock (a POSIX record lock on <db>/LOCK,
 * taken by every read-write open)?  0 when nobody (or no store).  F_GETLK
 * only asks: it takes nothing and changes nothing.
 */
static pid_t mc_pcli_lock_holder(const char *db)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	char path[4200];
	int fd;

	snprintf(path, sizeof(path), "%s/LOCK", db);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (fcntl(fd, F_GETLK, &fl) < 0 || fl.l_type == F_UNLCK)
		fl.l_pid = 0;
	close(fd);
	return fl.l_pid;
}

static int mc_pcli_restore(const struct mc_popts *o, const char *def)
{
	static struct mc_config cfg;
	char err[1024], aside[4200], used[4200];
	struct mc_seg seg;
	pid_t holder;
	int rc;

	if (o->arg == NULL) {
		fputs(mc_help_restore, stderr);
		return MC_EX_USAGE;
	}
	rc = mc_pcli_config(o, def, &cfg);
	if (rc)
		return rc;
	if (mc_seg_attach(&seg, cfg.instance, true, err, sizeof(err)) == 0) {
		bool alive = mc_seg_supervisor_alive(&seg);
		int pid = seg.hdr->sh_supervisor_pid;

		mc_seg_detach(&seg);
		if (alive) {
			fprintf(stderr, "mcpcore: instance '%s' is running (supervisor pid %d); stop "
			    "it first (kill -TERM %d), then restore\n", cfg.instance, pid, pid);
			return 1;
		}
	}
	/* anyone else with the store open (another instance on the same path)? */
	holder = mc_pcli_lock_holder(cfg.rocksdb_path);
	if (holder != 0) {
		fprintf(stderr, "mcpcore: %s is open in process %d (RocksDB lock held); stop it "
		    "first\n", cfg.rocksdb_path, (int)holder);
		return 1;
	}
	rc = mc_pckpt_restore(o->arg, cfg.rocksdb_path, aside, sizeof(aside), used, sizeof(used),
	    err, sizeof(err));
	if (rc) {
		fprintf(stderr, "mcpcore: restore failed: %s\n", err);
		return 1;
	}
	printf("restored %s into %s\n", used, cfg.rocksdb_path);
	if (aside[0])
		printf("the previous store was moved to %s\n", aside);
	return 0;
}

/* ------------------------------------------------------------------ */
/* dump                                                                 */

static int mc_pcli_dump(const struct mc_popts *o, const char *def)
{
	static struct mc_config cfg;
	char err[MC_PSTORE_ERR_MAX];
	const char *path;
	struct mc_pstore st;
	rocksdb_iterator_t *it;
	uint64_t printed = 0;
	int cf, rc;
	bool timekeyed;

	if (o->cf == NULL || (cf = mc_pstore_cf_by_name(o->cf)) < 0) {
		fprintf(stderr, "mcpcore dump: --cf NAME is required: messages, training, models, "
		    "metrics, state or default\n");
		return MC_EX_USAGE;
	}
	if (o->db != NULL) {
		path = o->db;
		mc_config_defaults(&cfg);
	} else {
		rc = mc_pcli_config(o, def, &cfg);
		if (rc)
			return rc;
		path = cfg.rocksdb_path;
	}
	rc = mc_pstore_open(&st, path, cfg.compression, MC_PSTORE_READONLY, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "mcpcore dump: %s\n", err);
		return 1;
	}
	it = mc_pstore_iter(&st, cf);
	if (it == NULL) {
		mc_pstore_close(&st);
		return 0;       /* the family does not exist yet: nothing stored */
	}
	timekeyed = cf == MC_CF_MESSAGES || cf == MC_CF_TRAINING || cf == MC_CF_METRICS;
	if (o->has_since && timekeyed) {
		uint8_t start[8];

		mc_pkey_put_be64(start, o->since);
		rocksdb_iter_seek(it, (const char *)start, sizeof(start));
	} else {
		rocksdb_iter_seek_to_first(it);
	}
	for (; rocksdb_iter_valid(it) && (o->limit == 0 || printed < o->limit);
	    rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
		const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
		json_t *rec;
		char *line;

		if (o->has_since && !timekeyed &&
		    mc_pjson_record_time(cf, k, klen, v, vlen) < o->since)
			continue;
		rec = mc_pjson_record(cf, k, klen, v, vlen);
		line = rec ? json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
		if (line != NULL) {
			fputs(line, stdout);
			fputc('\n', stdout);
			free(line);
		}
		json_decref(rec);
		printed++;
	}
	rocksdb_iter_destroy(it);
	mc_pstore_close(&st);
	if (fflush(stdout) != 0 || ferror(stdout))
		return 1;
	return 0;
}

int mc_cli_persist_main(int argc, char **argv, const char *default_config)
{
	struct mc_popts o;
	const char *cmd = argv[0];
	int rc = mc_popts_parse(cmd, argc, argv, &o);

	if (rc)
		return rc;
	if (strcmp(cmd, "checkpoint") == 0)
		return mc_pcli_checkpoint(&o, default_config);
	if (strcmp(cmd, "restore") == 0)
		return mc_pcli_restore(&o, default_config);
	return mc_pcli_dump(&o, default_config);
}
