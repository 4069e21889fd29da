// testos: declarations shared by the CPL3 (and exception-time CPL0) C++ sources.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "layout.h"

namespace testos {

using u8 = uint8_t;
using u16 = uint16_t;
using u32 = uint32_t;
using u64 = uint64_t;

// ---- hardware access (port I/O only at CPL0: console.cpp routes CPL3 output through service_call) ----
inline u8 inb(u16 port) {
  u8 v;
  asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
inline void outb(u16 port, u8 v) { asm volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
inline void outw(u16 port, u16 v) { asm volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
inline void cpu_relax() { asm volatile("pause" ::: "memory"); }

// Reads guest-physical memory by address. The empty asm hides the constant address from GCC,
// which otherwise warns about "out of bounds" accesses to low fixed addresses.
template <class T>
inline T peek(u64 addr) {
  asm("" : "+r"(addr));
  return *reinterpret_cast<const volatile T*>(addr);
}
template <class T>
inline void poke(u64 addr, T v) {
  asm("" : "+r"(addr));
  *reinterpret_cast<volatile T*>(addr) = v;
}

// ---- console.cpp ----
// Builds one serial line; emit() appends '\n' and writes it to COM1.
class Line {
 public:
  Line& str(const char* s);
  Line& dec(u64 v);
  Line& hex(u64 v);  // 0x-prefixed, lowercase
  void emit();

 private:
  char buf_[200];
  size_t len_ = 0;
};
[[noreturn]] void power_off();
[[noreturn]] void reset_machine();
[[noreturn]] void triple_fault();   // shuts the CPU down (KVM_EXIT_SHUTDOWN), as a broken kernel would  // the i8042 reset pulse: the VMM resets (or reboots) the machine
[[noreturn]] void fatal(Line& line);         // emits the line, powers off
[[noreturn]] void fatal(const char* detail);  // "testos: error <detail>", powers off

// ---- clock.cpp: kvmclock of the calling CPU's slot ----
bool clock_ready(unsigned slot);
u64 clock_ns(unsigned slot);
void delay_ns(unsigned slot, u64 ns);

// ---- bootinfo.cpp ----
struct Config {
  u64 tick_ms = 50;
  u64 mem_mib = 16;
  u64 ticks = 0;
  u64 reset_after = 0;   // reset the machine after this tick (0: never)
  u64 triple_fault_after = 0;  // triple-fault after this tick (0: never)
  u64 corrupt_tick = 0;  // self-test: damage one word after this tick, so the next one reports it
};
struct CpuSet {
  unsigned count = 0;
  u8 apic_ids[MAX_CPUS] = {};  // enabled processors, ascending
  u64 lapic = 0xfee00000;
  bool from_mp_table = false;
};
// Validates the PVH start info at `pa`, parses the command line, fatal() on errors.
Config read_start_info(u64 pa);
bool ram_covers(u64 begin, u64 end);  // after read_start_info: is [begin, end) all E820 RAM?
CpuSet find_cpus(unsigned bsp_slot);

// ---- workload.cpp: shared between the CPUs ----
struct alignas(64) PerCpu {
  u32 alive;  // set by the AP itself once at CPL3
  u32 rank;
  u64 begin, end;  // this CPU's slice of the workload region
  u64 done_tick;   // last tick whose slice work is complete
  u64 bad_words, bad_addr, bad_want, bad_got;  // mismatches found in done_tick
};
extern PerCpu percpu[MAX_CPUS];
extern u64 current_tick;  // written by the BSP to start tick N everywhere
void run_tick(PerCpu& me, u64 n);

// ---- smp.cpp ----
void start_aps(const CpuSet& cpus, unsigned bsp_slot);

}  // namespace testos
