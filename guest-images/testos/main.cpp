// testos: the bootstrap processor at CPL3. Set-up from the start info and MP table, then the tick
// loop of docs/testos.md.
#include "testos.hpp"

extern "C" char __bss_start[], __bss_end[];

namespace testos {
namespace {

constexpr u64 kWorkloadBase = 32ull << 20;  // above the image (link.ld asserts it ends below)
constexpr u64 kRescheduleAfter = 3;          // periods off before the schedule restarts from now

void clear_bss() {
  u64 n = static_cast<u64>(__bss_end - __bss_start);
  void* p = __bss_start;
  asm volatile("rep stosb" : "+D"(p), "+c"(n) : "a"(0) : "memory");
}

void assign_slices(const CpuSet& cpus, const Config& cfg) {
  const u64 bytes = cfg.mem_mib << 20;
  const u64 end = kWorkloadBase + bytes;
  if (cfg.mem_mib > (4096 - 32) || !ram_covers(kWorkloadBase, end)) {
    Line l;
    l.str("testos: error mem_mib=").dec(cfg.mem_mib).str(" does not fit in RAM (workload at ").hex(kWorkloadBase).str("-").hex(end).str(")");
    fatal(l);
  }
  const u64 share = bytes / cpus.count & ~u64{63};
  for (unsigned r = 0; r < cpus.count; ++r) {
    PerCpu& c = percpu[cpus.apic_ids[r]];
    c.rank = r;
    c.begin = kWorkloadBase + r * share;
    c.end = r + 1 == cpus.count ? end : c.begin + share;
  }
}

void report(const CpuSet& cpus, u64 n) {
  bool corrupt = false;
  for (unsigned i = 0; i < cpus.count; ++i) corrupt |= percpu[cpus.apic_ids[i]].bad_words != 0;
  Line l;
  l.str("testos: tick ").dec(n).str(corrupt ? " CORRUPT" : " ok").emit();
  for (unsigned i = 0; corrupt && i < cpus.count; ++i) {
    const PerCpu& c = percpu[cpus.apic_ids[i]];
    if (c.bad_words == 0) continue;
    l.str("testos: corrupt cpu=").dec(cpus.apic_ids[i]).str(" words=").dec(c.bad_words).str(" first=").hex(c.bad_addr);
    l.str(" want=").hex(c.bad_want).str(" got=").hex(c.bad_got).emit();
  }
}

[[noreturn]] void tick_loop(const CpuSet& cpus, const Config& cfg, unsigned slot) {
  const u64 period = cfg.tick_ms * 1'000'000;
  u64 next = clock_ns(slot) + period;
  for (u64 n = 1;; ++n) {
    for (u64 now; (now = clock_ns(slot)) < next; cpu_relax()) {
      // The deadline is never more than a period away, unless the clock went backwards (a
      // restore onto a host whose kvmclock was not carried over): restart from now.
      if (next - now > kRescheduleAfter * period) next = now;
    }
    __atomic_store_n(&current_tick, n, __ATOMIC_RELEASE);
    run_tick(percpu[slot], n);
    for (unsigned i = 0; i < cpus.count; ++i)
      while (__atomic_load_n(&percpu[cpus.apic_ids[i]].done_tick, __ATOMIC_ACQUIRE) != n) cpu_relax();
    report(cpus, n);
    if (cfg.ticks && n == cfg.ticks) power_off();
    if (cfg.reset_after && n == cfg.reset_after) {
      Line l;
      l.str("testos: reset");
      l.emit();
      reset_machine();
    }
    if (cfg.triple_fault_after && n == cfg.triple_fault_after) {
      Line l;
      l.str("testos: triple fault");
      l.emit();
      triple_fault();
    }
    if (n == cfg.corrupt_tick) poke<u64>(kWorkloadBase, peek<u64>(kWorkloadBase) ^ 1);
    // Absolute deadlines keep the period exact; after a long stall (a resumed checkpoint, a
    // paused VM) one tick follows at once and the schedule restarts instead of bursting.
    next += period;
    const u64 now = clock_ns(slot);
    if (now > next + kRescheduleAfter * period) next = now;
  }
}

}  // namespace
}  // namespace testos

using namespace testos;

// First C++ of the BSP, at CPL3 on its own stack (entry.S cpl3_entry).
extern "C" [[noreturn]] void bsp_main(unsigned slot, u64 start_info, bool kvmclock_enabled) {
  clear_bss();
  Line().str("testos: boot").emit();
  if (!kvmclock_enabled) fatal("no kvmclock (CPUID 0x40000000 \"KVMKVMKVM\" with feature CLOCKSOURCE2)");
  if (!clock_ready(slot)) fatal("kvmclock area never filled in by the host");
  const Config cfg = read_start_info(start_info);
  const CpuSet cpus = find_cpus(slot);
  assign_slices(cpus, cfg);
  start_aps(cpus, slot);
  Line().str("testos: cpus ").dec(cpus.count).emit();
  tick_loop(cpus, cfg, slot);
}
