/* disk: the file storage engine of a namespace: records appended to
 * write blocks of one file, a compact primary index in memory, group
 * commit, defragmentation, durable tombstones and start-up recovery.
 *
 * File layout (all integers little-endian):
 *
 *   file   = file-header (4096 bytes) block*
 *   file-header = "KVSTORE\0" u32 version(1) u32 write_block char[32] ns
 *                 u32 crc32(of the 52 bytes before it) zero*
 *   block  = block-header (32 bytes) record* (unused space)
 *   block-header = "KVBLOCK\0" u64 seq u32 write_block u32 zero u32 zero
 *                  u32 crc32(of the 28 bytes before it)
 *   record = u32 magic "KVR1" u32 len u32 crc32 u32 seq_lo
 *            kv_rec_t image (48-byte header, set, key, bins) padding
 *
 * Block i starts at 4096 + i * write_block.  A block's seq grows every
 * time a block is opened for writing, so (seq, offset) orders every
 * record ever written.  A record's len counts its 16-byte header and its
 * image, not the padding to 16 bytes; its crc covers seq_lo and the
 * image, so a stale record left over from a block's previous use (its
 * seq_lo differs) ends the scan of that block instead of being read.  A
 * record with no bins is a tombstone.  A freed block has its header
 * zeroed before it is reused, after the copies of its live records are
 * on the device.
 *
 * The server loop owns the engine and does its reads and writes
 * (pread, pwrite); only fdatasync runs on a thread of its own, so the
 * loop goes on serving while a flush is in progress. */
#ifndef KVNODE_DISK_H
#define KVNODE_DISK_H

#include "store.h"
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct disk disk_t;

/* Largest record (kv_rec_t image) that fits a block of this size. */
uint64_t disk_max_record(uint32_t write_block);

/* Open or create DIR/NAME.dat for ns and rebuild the index from it,
 * reporting damage and the load on stderr.  NULL with a reason. */
disk_t *disk_open(kv_ns_t *ns, const char *dir, char *why, size_t whylen);
/* Write and flush what is buffered, then free everything. */
void disk_close(disk_t **self_p);

/* Live record, read into a buffer the engine owns (valid until the next
 * call into the engine), or NULL if absent, deleted or expired. */
kv_rec_t *disk_get(disk_t *d, const uint8_t *digest, uint32_t now);
/* Append rec and point the index at it.  Takes ownership of rec, which
 * stays readable until the next write.  0, or -1 with ns->why set
 * (NAMESPACE_FULL). */
int disk_put(disk_t *d, kv_rec_t *rec);
/* Write a tombstone for a live record.  1 deleted, 0 no live record,
 * -1 with ns->why set. */
int disk_remove(disk_t *d, const uint8_t *digest, uint32_t gen, uint64_t lut);
/* Live records of partition pid after `after`, in digest order: up to
 * max, and fewer if their bytes pass a page limit (then *more); with
 * tombs, tombstones too (records with no bins).  The records are owned by
 * the engine until the next call. */
uint32_t disk_scan_partition(disk_t *d, uint32_t pid, const uint8_t *after, uint32_t now, bool tombs,
                             kv_rec_t **out, uint32_t max, bool *more);
/* 1 with its generation and last-update time if digest's entry is a
 * tombstone, else 0. */
int disk_tomb(const disk_t *d, const uint8_t *digest, uint32_t *gen, uint64_t *lut);
/* Forget the live record of digest without writing a tombstone (its
 * index entry goes; an older copy in the file comes back at a restart).
 * 1 if there was one. */
int disk_drop(disk_t *d, const uint8_t *digest);
/* Forget every live record of partition pid (as disk_drop).  Returns the
 * count. */
uint32_t disk_drop_partition(disk_t *d, uint32_t pid);
/* Mark expired records in the next `parts` partitions as gone. */
uint32_t disk_sweep(disk_t *d, uint32_t now, uint32_t parts);

/* Group commit.  Bytes appended so far (grows with every write), and how
 * many of them a finished flush has made durable. */
uint64_t disk_appended(const disk_t *d);
uint64_t disk_synced(const disk_t *d);
/* Start a flush of what is appended, unless one is running (the next
 * starts when it ends).  The flush runs on the engine's own thread. */
void disk_flush(disk_t *d);
/* A descriptor that becomes readable when a flush ends; then call
 * disk_flush_done, which takes its result in (the caller starts the next
 * flush once it has taken in the requests that arrived meanwhile).  -1 if
 * the descriptor cannot be read. */
int disk_event_fd(const disk_t *d);
int disk_flush_done(disk_t *d);
/* errno of a failed write or flush (writes have stopped), or 0. */
int disk_failed(const disk_t *d);
/* Write out and flush everything, waiting for it.  0, or -1 with a
 * reason. */
int disk_sync(disk_t *d, char *why, size_t whylen);
/* Background work: the flush timer and defragmentation.  Returns the
 * milliseconds until it next needs to run. */
uint32_t disk_tick(disk_t *d, uint64_t mono_ms);

/* Pack the engine's statistics as msgpack key/value pairs (count
 * returned by disk_stats_count). */
int disk_stats_count(void);
void disk_pack_stats(const disk_t *d, msgpack_packer *pk);

/* Lock a data directory (creating it); -1 with a reason if another
 * process holds it.  The lock lasts until the process exits. */
int disk_lock_dir(const char *dir, char *why, size_t whylen);

void disk_test(bool verbose);


#endif
