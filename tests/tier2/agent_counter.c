/* The process tier2.agent_wpp keeps persistent: counts up every 10 ms and writes
 * "COUNT WALLCLOCK_MS" per step, one write(2) per line, so after a restore the log shows both
 * where the count resumed and when the restored state had been printed before the crash. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void) {
  unsigned long long n = 0;
  for (;;) {
    struct timespec now, step = {0, 10 * 1000 * 1000};
    clock_gettime(CLOCK_REALTIME, &now);
    char line[64];
    int len = snprintf(line, sizeof line, "%llu %lld\n", ++n,
                       (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000);
    if (write(1, line, (size_t)len) != len) return 1;
    nanosleep(&step, NULL);
  }
}
