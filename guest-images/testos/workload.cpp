// testos: the memory workload. Each tick every CPU checks that its slice still holds the previous
// tick's pattern and writes the current one, so memory that a checkpoint/restore lost or served
// stale shows up as a mismatch.
#include "testos.hpp"

namespace testos {

PerCpu percpu[MAX_CPUS];
u64 current_tick;

namespace {

// A different value for every (tick, address) pair, cheap enough to run at memory speed.
inline u64 pattern(u64 tick_key, u64 addr) {
  u64 x = (addr ^ tick_key) * 0xd6e8feb86659fd93ull;
  return x ^ (x >> 32);
}
inline u64 tick_key(u64 tick) { return tick * 0x9e3779b97f4a7c15ull; }

}  // namespace

void run_tick(PerCpu& me, u64 n) {
  const bool verify = n > 1;  // tick 1 of a boot has nothing to compare against
  const u64 prev = tick_key(n - 1), cur = tick_key(n);
  u64 bad = 0, bad_addr = 0, want = 0, got = 0;
  const u64 end = me.end;  // a local: the stores below could alias `me` as far as GCC knows
  for (u64 a = me.begin; a < end; a += 8) {
    u64* p = reinterpret_cast<u64*>(a);
    if (verify) {
      u64 v = *p, w = pattern(prev, a);
      if (v != w && bad++ == 0) {
        bad_addr = a;
        want = w;
        got = v;
      }
    }
    *p = pattern(cur, a);
  }
  me.bad_words = bad;
  me.bad_addr = bad_addr;
  me.bad_want = want;
  me.bad_got = got;
  __atomic_store_n(&me.done_tick, n, __ATOMIC_RELEASE);
}

}  // namespace testos
