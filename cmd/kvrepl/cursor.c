/* cursor: ship's cursor file, the last-update time up to which every
 * change has been shipped, written durably and read back strictly.
 *
 * The file is one line (kvrepl(1), SHIP):
 *     kvrepl-ship-cursor MS CRC
 * MS the cursor in milliseconds (decimal), CRC the CRC-32 (zlib's) of the
 * text before the last space, as 8 lowercase hex digits.  Anything else is
 * damage: a reader never takes it for a cursor of 0. */
#include "kvrepl.h"
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define MAGIC "kvrepl-ship-cursor"
#define LINE_MAX_BYTES 128

/* The line for ms into line; its length. */
static int s_format(char *line, size_t cap, uint64_t ms)
{
    char body[64];
    int n = snprintf(body, sizeof body, MAGIC " %" PRIu64, ms);
    uint32_t crc = (uint32_t) crc32(0L, (const Bytef *) body, (uInt) n);
    return snprintf(line, cap, "%s %08" PRIx32 "\n", body, crc);
}

/* Parse a file's contents.  0 with *ms, or -1 with what is wrong. */
static int s_parse(const char *buf, size_t len, uint64_t *ms, char *why, size_t whylen)
{
    const char *sp;
    char *end;
    if (len == 0) {
        snprintf(why, whylen, "the file is empty");
        return -1;
    }
    if (memchr(buf, '\0', len) || buf[len - 1] != '\n' || memchr(buf, '\n', len) != buf + len - 1) {
        snprintf(why, whylen, "it is not one line of text");
        return -1;
    }
    if (len < sizeof MAGIC || memcmp(buf, MAGIC " ", sizeof MAGIC) != 0) {
        snprintf(why, whylen, "it does not start with \"" MAGIC " \"");
        return -1;
    }
    if (!(sp = memrchr(buf, ' ', len)) || sp < buf + sizeof MAGIC) {
        snprintf(why, whylen, "no checksum after the cursor");
        return -1;
    }
    const char *num = buf + sizeof MAGIC;
    errno = 0;
    unsigned long long v = strtoull(num, &end, 10);
    if (end != sp || num[0] < '0' || num[0] > '9' || errno != 0 || v > INT64_MAX) {
        snprintf(why, whylen, "the cursor is not a number of milliseconds");
        return -1;
    }
    uint32_t crc = (uint32_t) crc32(0L, (const Bytef *) buf, (uInt) (sp - buf));
    char want[16];
    snprintf(want, sizeof want, "%08" PRIx32, crc);
    if ((size_t) (buf + len - 1 - (sp + 1)) != 8 || memcmp(sp + 1, want, 8) != 0) {
        snprintf(why, whylen, "bad checksum: the line's text has CRC-32 %s, the file says %.*s", want,
                 (int) (buf + len - 1 - (sp + 1) > 16 ? 16 : buf + len - 1 - (sp + 1)), sp + 1);
        return -1;
    }
    *ms = (uint64_t) v;
    return 0;
}

int kr_cursor_read(const char *path, uint64_t *ms, char *why, size_t whylen)
{
    char buf[LINE_MAX_BYTES + 1], inner[200];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return 0;
    if (fd < 0) {
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf && (n = read(fd, buf + len, sizeof buf - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        len += (size_t) n;
    }
    close(fd);
    if (len > LINE_MAX_BYTES) {
        snprintf(why, whylen, "%s is not a ship cursor (damaged?): it is longer than %d bytes", path,
                 LINE_MAX_BYTES);
        return -1;
    }
    if (s_parse(buf, len, ms, inner, sizeof inner) != 0) {
        snprintf(why, whylen, "%s is not a ship cursor (damaged?): %s", path, inner);
        return -1;
    }
    return 1;
}

/* Write all of buf to fd.  0 or -1 with errno. */
static int s_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        buf += n;
        len -= (size_t) n;
    }
    return 0;
}

/* fsync the directory that holds path, so a rename in it lasts. */
static int s_sync_dir(const char *path)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int kr_cursor_write(const char *path, uint64_t ms, char *why, size_t whylen)
{
    char tmp[4096], line[LINE_MAX_BYTES];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int) sizeof tmp) {
        snprintf(why, whylen, "cannot write %s: %s", path, strerror(ENAMETOOLONG));
        return -1;
    }
    int len = s_format(line, sizeof line, ms);
    const char *failed = "create"; /* the step that failed, if any */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (s_write_all(fd, line, (size_t) len) != 0)
            failed = "write";
        else if (fsync(fd) != 0)
            failed = "fsync";
        else
            failed = NULL;
        int e = errno;
        close(fd);
        errno = e;
    }
    if (failed) {
        snprintf(why, whylen, "cannot %s %s: %s", failed, tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        snprintf(why, whylen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        return -1;
    }
    if (s_sync_dir(path) != 0) {
        snprintf(why, whylen, "cannot fsync the directory of %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

void kr_cursor_test(bool verbose)
{
    (void) verbose;
    char why[512], dir[] = "/tmp/kr_cursor_XXXXXX", path[256], line[LINE_MAX_BYTES];
    uint64_t ms = 7;
    assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/cursor", dir);
    assert(kr_cursor_read(path, &ms, why, sizeof why) == 0 && ms == 7);
    assert(kr_cursor_write(path, 1763812345678ull, why, sizeof why) == 0);
    assert(kr_cursor_read(path, &ms, why, sizeof why) == 1 && ms == 1763812345678ull);
    assert(kr_cursor_write(path, 0, why, sizeof why) == 0);
    assert(kr_cursor_read(path, &ms, why, sizeof why) == 1 && ms == 0);
    /* every kind of damage is refused, none read as 0 */
    int len = s_format(line, sizeof line, 1763812345678ull);
    assert(s_parse(line, (size_t) len, &ms, why, sizeof why) == 0 && ms == 1763812345678ull);
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"", "empty"},
        {"kvrepl-ship-cursor 1763812345678 00000000\n", "bad checksum"},
        {"kvrepl-ship-cursor 1763812345678\n", "no checksum"},
        {"kvrepl-ship-cursor x 00000000\n", "not a number"},
        {"kvrepl-ship-cursor 1763812345678 0123", "not one line"},
        {"hello\n", "does not start with"},
        {"kvrepl-ship-cursor 17638\n12345678 00000000\n", "not one line"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        assert(s_parse(bad[i].text, strlen(bad[i].text), &ms, why, sizeof why) == -1 && strstr(why, bad[i].why));
    }
    line[len - 3] ^= 1; /* one flipped bit */
    assert(s_parse(line, (size_t) len, &ms, why, sizeof why) == -1 && strstr(why, "bad checksum"));
    FILE *f = fopen(path, "w");
    assert(f && fputs("garbage\n", f) >= 0 && fclose(f) == 0);
    assert(kr_cursor_read(path, &ms, why, sizeof why) == -1 && strstr(why, "is not a ship cursor (damaged?)"));
    /* a directory that does not exist */
    snprintf(path, sizeof path, "%s/no/cursor", dir);
    assert(kr_cursor_write(path, 1, why, sizeof why) == -1 && strstr(why, "cannot create"));
    snprintf(path, sizeof path, "%s/cursor", dir);
    unlink(path);
    rmdir(dir);
}
