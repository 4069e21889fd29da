// testos: COM1 output, power-off and the exception report (the only C++ that runs at CPL0).
#include "testos.hpp"

namespace testos {
namespace {

// PVM forces IOPL=0 at CPL3, so CPL3 asks the CPL0 service (entry.S service_call) for port I/O;
// the exception handler, already at CPL0, does it directly.
bool at_cpl0() {
  u16 cs;
  asm volatile("mov %%cs, %0" : "=r"(cs));
  return (cs & 3) == 0;
}

void wait_lsr(u8 bits) {
  for (int i = 0; i < 100000 && (inb(COM1_LSR) & bits) != bits; ++i) cpu_relax();
}

void write_serial(const char* p, size_t n) {
  if (!at_cpl0()) {
    u64 op = SERVICE_WRITE;
    asm volatile("call service_call" : "+a"(op), "+D"(p), "+S"(n) : : "rcx", "rdx", "memory");
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    wait_lsr(LSR_THR_EMPTY);
    outb(COM1, static_cast<u8>(p[i]));
  }
}

}  // namespace

Line& Line::str(const char* s) {
  while (*s && len_ < sizeof(buf_) - 1) buf_[len_++] = *s++;
  return *this;
}

Line& Line::dec(u64 v) {
  char tmp[20];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (n && len_ < sizeof(buf_) - 1) buf_[len_++] = tmp[--n];
  return *this;
}

Line& Line::hex(u64 v) {
  str("0x");
  int shift = 60;
  while (shift > 0 && ((v >> shift) & 0xf) == 0) shift -= 4;
  for (; shift >= 0 && len_ < sizeof(buf_) - 1; shift -= 4) buf_[len_++] = "0123456789abcdef"[(v >> shift) & 0xf];
  return *this;
}

void Line::emit() {
  buf_[len_++] = '\n';  // str/dec/hex always leave room for it
  write_serial(buf_, len_);
  len_ = 0;
}

[[noreturn]] void power_off() {
  if (!at_cpl0()) {
    u64 op = SERVICE_POWER_OFF;
    asm volatile("call service_call" : "+a"(op) : : "rcx", "rdx", "rsi", "rdi", "memory");
  }
  wait_lsr(LSR_THR_EMPTY | LSR_IDLE);  // let the last line leave the UART first
  outw(PM1A_CONTROL, SLP_EN_S5);
  for (;;) asm volatile("hlt");
}

[[noreturn]] void reset_machine() {
  if (!at_cpl0()) {
    u64 op = SERVICE_RESET;
    asm volatile("call service_call" : "+a"(op) : : "rcx", "rdx", "rsi", "rdi", "memory");
  }
  wait_lsr(LSR_THR_EMPTY | LSR_IDLE);
  outb(I8042_COMMAND, I8042_PULSE_RESET);
  for (;;) asm volatile("hlt");
}

[[noreturn]] void triple_fault() {
  u64 op = SERVICE_TRIPLE_FAULT;  // the CPL0 service does it even when called at CPL0
  asm volatile("call service_call" : "+a"(op) : : "rcx", "rdx", "rsi", "rdi", "memory");
  for (;;) asm volatile("hlt");
}

[[noreturn]] void fatal(Line& line) {
  line.emit();
  power_off();
}

[[noreturn]] void fatal(const char* detail) {
  Line l;
  l.str("testos: error ").str(detail);
  fatal(l);
}

}  // namespace testos

using namespace testos;

// Called from exc_common (entry.S) at CPL0 on the slot's exception stack.
extern "C" [[noreturn]] void exception_report(u64 vector, u64 rip, u64 err) {
  Line l;
  l.str("testos: exception ").dec(vector).str(" rip=").hex(rip).str(" err=").hex(err);
  fatal(l);
}

// The BSP's APIC ID has no per-CPU slot; runs at CPL0 before any CPL3 set-up exists.
extern "C" [[noreturn]] void cpl0_bad_bsp_slot(u64 apic_id) {
  Line l;
  l.str("testos: error bsp apic id ").dec(apic_id).str(" >= ").dec(MAX_CPUS);
  fatal(l);
}
