// testos: starting the application processors, and their loop. The LAPIC is driven from CPL3: its
// page is a user page and the host emulates the MMIO access the same way at any CPL.
#include "testos.hpp"

extern "C" char ap_trampoline[], ap_trampoline_end[];

namespace testos {
namespace {

constexpr u64 kApicSvr = 0xf0;
constexpr u64 kApicIcrLow = 0x300;
constexpr u64 kApicIcrHigh = 0x310;
constexpr u32 kSvrEnable = 1 << 8;
constexpr u32 kIcrPending = 1 << 12;
constexpr u32 kAllButSelf = 3 << 18;
constexpr u32 kInitAssert = kAllButSelf | (1 << 15) | (1 << 14) | (5 << 8);  // level, assert, INIT
constexpr u32 kStartup = kAllButSelf | (6 << 8) | (AP_TRAMPOLINE >> 12);
constexpr u64 kApStartTimeoutNs = 5'000'000'000;

void send_ipi(u64 lapic, u32 icr_low) {
  poke<u32>(lapic + kApicIcrHigh, 0);
  poke<u32>(lapic + kApicIcrLow, icr_low);
  for (int i = 0; i < 1000000 && (peek<u32>(lapic + kApicIcrLow) & kIcrPending); ++i) cpu_relax();
}

bool all_alive(const CpuSet& cpus) {
  for (unsigned i = 0; i < cpus.count; ++i)
    if (!__atomic_load_n(&percpu[cpus.apic_ids[i]].alive, __ATOMIC_ACQUIRE)) return false;
  return true;
}

}  // namespace

void start_aps(const CpuSet& cpus, unsigned bsp_slot) {
  percpu[bsp_slot].alive = 1;
  if (cpus.count == 1) return;
  if (!ram_covers(AP_TRAMPOLINE, AP_TRAMPOLINE + 4096)) fatal("the AP trampoline page is not RAM");
  const u64 size = static_cast<u64>(ap_trampoline_end - ap_trampoline);
  for (u64 i = 0; i < size; ++i) poke<u8>(AP_TRAMPOLINE + i, static_cast<u8>(ap_trampoline[i]));

  // The MP spec's sequence: INIT, 10 ms, SIPI, 200 us, SIPI (the second only if still needed).
  poke<u32>(cpus.lapic + kApicSvr, peek<u32>(cpus.lapic + kApicSvr) | kSvrEnable);
  send_ipi(cpus.lapic, kInitAssert);
  delay_ns(bsp_slot, 10'000'000);
  send_ipi(cpus.lapic, kStartup);
  delay_ns(bsp_slot, 200'000);
  if (!all_alive(cpus)) send_ipi(cpus.lapic, kStartup);

  const u64 deadline = clock_ns(bsp_slot) + kApStartTimeoutNs;
  while (!all_alive(cpus)) {
    if (clock_ns(bsp_slot) > deadline) {
      Line l;
      l.str("testos: error application processors did not start:");
      for (unsigned i = 0; i < cpus.count; ++i)
        if (!__atomic_load_n(&percpu[cpus.apic_ids[i]].alive, __ATOMIC_ACQUIRE)) l.str(" apic ").dec(cpus.apic_ids[i]);
      l.str(" (of ").dec(cpus.count).str(" in the MP table)");
      fatal(l);
    }
    cpu_relax();
  }
}

}  // namespace testos

using namespace testos;

// First C++ of an AP, at CPL3 on its own stack (entry.S cpl3_entry).
extern "C" [[noreturn]] void ap_main(unsigned slot) {
  PerCpu& me = percpu[slot];
  __atomic_store_n(&me.alive, 1, __ATOMIC_RELEASE);
  u64 seen = 0;
  for (;;) {
    u64 n;
    while ((n = __atomic_load_n(&current_tick, __ATOMIC_ACQUIRE)) == seen) cpu_relax();
    run_tick(me, n);
    seen = n;
  }
}
