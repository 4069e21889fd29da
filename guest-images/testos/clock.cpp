// testos: kvmclock. Each CPU reads only its own pvclock area (registered at CPL0 in entry.S), since
// the areas of different vCPUs are only mutually consistent when the host says the TSC is stable.
#include "testos.hpp"

extern "C" char pvclock_areas[];

namespace testos {
namespace {

struct PvclockTimeInfo {
  u32 version;  // odd while the host updates the fields
  u32 pad0;
  u64 tsc_timestamp;
  u64 system_time;
  u32 tsc_to_system_mul;
  int8_t tsc_shift;
  u8 flags;
  u8 pad[2];
};
static_assert(sizeof(PvclockTimeInfo) == (1 << PVCLOCK_SHIFT));

volatile PvclockTimeInfo& area(unsigned slot) {
  return reinterpret_cast<volatile PvclockTimeInfo*>(pvclock_areas)[slot];
}

// lfence keeps rdtsc from being executed before the loads of the snapshot it is paired with.
inline u64 rdtsc_ordered() {
  u32 lo, hi;
  asm volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
  return (static_cast<u64>(hi) << 32) | lo;
}

}  // namespace

bool clock_ready(unsigned slot) {
  // The host fills the area on the VM entry after the wrmsr; allow it a generous moment.
  for (u64 i = 0; i < 100000000; ++i) {
    if (area(slot).tsc_to_system_mul != 0 && (area(slot).version & 1) == 0) return true;
    cpu_relax();
  }
  return false;
}

u64 clock_ns(unsigned slot) {
  volatile PvclockTimeInfo& p = area(slot);
  for (;;) {
    u32 version = p.version;
    asm volatile("" ::: "memory");
    if (version & 1) continue;
    u64 stamp = p.tsc_timestamp;
    u64 base = p.system_time;
    u32 mul = p.tsc_to_system_mul;
    int shift = p.tsc_shift;
    u64 delta = rdtsc_ordered() - stamp;
    asm volatile("" ::: "memory");
    if (p.version != version) continue;
    delta = shift < 0 ? delta >> -shift : delta << shift;
    // (delta * mul) >> 32 without a 128-bit type: split delta into 32-bit halves.
    return base + (delta >> 32) * mul + (((delta & 0xffffffff) * mul) >> 32);
  }
}

void delay_ns(unsigned slot, u64 ns) {
  u64 until = clock_ns(slot) + ns;
  while (clock_ns(slot) < until) cpu_relax();
}

}  // namespace testos
