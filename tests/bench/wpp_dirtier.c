/* The process bench.agent_wpp (tests/bench/agent_wpp_bench.sh) keeps persistent: it allocates
 * SIZE_MIB MiB, touches every page once, then writes WRITE_MIB_PER_S MiB/s of random pages
 * (one store per 4 KiB page, which is what makes a page dirty for CRIU's soft-dirty tracking),
 * in steps of 10 ms. It prints "ready SIZE_MIB" once everything is touched and then, every
 * second, "progress SECONDS PAGES_DIRTIED_TOTAL", one write(2) per line.
 * With a third argument "nohuge" the memory is madvise(MADV_NOHUGEPAGE)d: with transparent huge
 * pages, one store marks a whole 2 MiB huge page soft-dirty, and CRIU writes all of it.
 * Usage: wpp_dirtier SIZE_MIB WRITE_MIB_PER_S [nohuge] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void say(const char* line, int len) {
  if (len > 0 && write(1, line, (size_t)len) != len) _exit(1);
}

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "nohuge") != 0)) {
    fprintf(stderr, "usage: wpp_dirtier SIZE_MIB WRITE_MIB_PER_S [nohuge]\n");
    return 2;
  }
  char* end;
  unsigned long size_mib = strtoul(argv[1], &end, 10);
  if (*end || size_mib == 0 || size_mib > 65536) return 2;
  double rate = strtod(argv[2], &end);
  if (*end || rate < 0) return 2;
  const size_t page = 4096, pages = (size_t)size_mib * 1024 * 1024 / page;
  volatile unsigned char* mem = mmap(NULL, pages * page, PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  if (argc == 4 && madvise((void*)mem, pages * page, MADV_NOHUGEPAGE) != 0) {
    perror("madvise");
    return 1;
  }
  for (size_t p = 0; p < pages; ++p) mem[p * page] = (unsigned char)p;
  char line[96];
  say(line, snprintf(line, sizeof line, "ready %lu\n", size_mib));

  const double pages_per_ns = rate * 1024 * 1024 / (double)page / 1e9;
  const uint64_t start = now_ns();
  uint64_t rng = 0x9e3779b97f4a7c15u ^ (uint64_t)getpid(), dirtied = 0, next_report = 1;
  for (;;) {
    /* Catch up with the target rate (a checkpoint's freeze shows as a burst afterwards). */
    uint64_t due = (uint64_t)((double)(now_ns() - start) * pages_per_ns);
    for (; dirtied < due; ++dirtied) {
      rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17; /* xorshift64 */
      mem[(rng % pages) * page + (dirtied % page)] ^= 1;
    }
    uint64_t elapsed_s = (now_ns() - start) / 1000000000u;
    if (elapsed_s >= next_report) {
      say(line, snprintf(line, sizeof line, "progress %llu %llu\n", (unsigned long long)elapsed_s,
                         (unsigned long long)dirtied));
      next_report = elapsed_s + 1;
    }
    struct timespec step = {0, 10 * 1000 * 1000};
    nanosleep(&step, NULL);
  }
}
