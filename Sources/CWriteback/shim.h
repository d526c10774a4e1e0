// sync_file_range(2), which <fcntl.h> declares only under _GNU_SOURCE (the Swift Glibc module
// does not set it). Linux only; the caller compiles it out elsewhere.
#ifdef __linux__
#include <stdint.h>
int sync_file_range(int fd, int64_t offset, int64_t nbytes, unsigned int flags);
static const unsigned int dkp_sync_file_range_write = 2;  // SYNC_FILE_RANGE_WRITE
#endif
