/*
 * mc_pquery.h - read requests the persistence worker answers from its
 * store: model lineage (Git-like versions of a LearningModel) and training
 * data, for Python learners that must not open RocksDB themselves.
 *
 * Requests and replies are PersistRequest / PersistReply (persist.proto).
 * Every reply fits in one frame: the caller gives the byte budget
 * (max_message_size); a listing that does not fit returns what does, in
 * order, with a `cursor` to send back for the rest.  Lists of models carry
 * no model_data unless with_data is set (a model can be large; fetch the
 * one you want with MODEL_GET).
 *
 * Lineage: a LearningModel's parent_versions name earlier versions of the
 * same model_id.  MODEL_ANCESTORS walks them breadth-first from the given
 * version (nearest first, each ancestor once even where lines merge;
 * parents that were never stored are skipped); MODEL_VERSIONS lists all
 * versions oldest first; MODEL_GET reads one version, or the latest.
 *
 * Threads: any thread holding an open store.  Errors: the reply's status;
 * the function itself fails only for -ENOMEM.
 */
#ifndef MC_PQUERY_H
#define MC_PQUERY_H

#include <stddef.h>
#include <stdint.h>

#include "mc_proto.h"
#include "mc_pstore.h"

/*
 * Answer `req` (any op but CHECKPOINT) from `st` (NULL: the store is not
 * open -> UNAVAILABLE).  *out is a malloc'd serialised PersistReply of at
 * most max_bytes (free() it).  Returns 0 or -ENOMEM.
 */
int mc_pquery_answer(struct mc_pstore *st, const Mcpcore__PersistRequest *req,
    size_t max_bytes, uint8_t **out, size_t *outlen);

/* A reply with just a status and text (and a checkpoint path, may be NULL). */
int mc_pquery_reply(uint64_t id, Mcpcore__PersistReply__Status status, const char *error,
    const char *checkpoint_path, uint8_t **out, size_t *outlen);

#endif /* MC_PQUERY_H */
