/* testos: constants shared by the assembly (.S) and the C++ sources. Plain #defines only, so the
 * assembler can read this file too. */
#ifndef TESTOS_LAYOUT_H
#define TESTOS_LAYOUT_H

/* Per-CPU slots are indexed by initial APIC ID, so no CPL0 code needs an atomic ticket. */
#define MAX_CPUS 16

#define SEL_CODE32 0x08 /* flat 32-bit code: PVH entry and the AP trampoline's protected mode */
#define SEL_DATA 0x10
#define SEL_CODE64 0x18
#define SEL_UDATA 0x23 /* DPL3 data, RPL3 */
#define SEL_UCODE64 0x2b
#define SEL_TSS0 0x30 /* one 16-byte TSS descriptor per slot follows */

#define TSS_STRIDE 128 /* a power of two, so the static descriptors can split the base */
#define KSTACK_SIZE 4096   /* CPL0 stack, used only by the exception handler */
#define USTACK_SHIFT 14    /* 16 KiB CPL3 stack per slot */
#define USTACK_SIZE (1 << USTACK_SHIFT)
#define PVCLOCK_SHIFT 5    /* 32-byte pvclock_vcpu_time_info per slot */

/* IF=0 where the host honours it. PVM runs CPL3 with IF=1 and IOPL=0 whatever the guest asks, so
 * port I/O goes through the CPL0 I/O service (entry.S) and the PICs are masked before CPL3. */
#define RFLAGS_CPL3 0x0002

#define AP_TRAMPOLINE 0x8000 /* real-mode start page of the APs; SIPI vector = this >> 12 */

#define CR4_PAE 0x20
#define CR0_PE_ET_PG 0x80000011
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define KVM_CPUID_SIGNATURE 0x40000000
#define KVM_CPUID_FEATURES 0x40000001
#define KVM_FEATURE_CLOCKSOURCE2 (1 << 3)

#define NUM_VECTORS 256
#define VECTOR_UD 6
#define SERVICE_WRITE 0 /* %eax for service_call: write %rsi bytes at %rdi to COM1 */
#define SERVICE_POWER_OFF 1
#define SERVICE_RESET 2 /* pulse the reset line through the i8042 (nvhv and QEMU both handle it) */
#define SERVICE_TRIPLE_FAULT 3 /* an exception with an empty IDT: #DF, then shutdown */

#define COM1 0x3f8
#define COM1_LSR (COM1 + 5)
#define LSR_THR_EMPTY 0x20
#define LSR_IDLE 0x40
#define PM1A_CONTROL 0x604 /* ACPI PM1a control of QEMU pc/q35 and nvhv */
#define SLP_EN_S5 0x2000
#define I8042_COMMAND 0x64
#define I8042_PULSE_RESET 0xfe

#endif
