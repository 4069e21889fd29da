/* testos descriptor tables, page tables and stacks, all built by the assembler and linker so that
 * no (slow, emulated) CPL0 instruction has to fill them in. Descriptor fields that split an address
 * use symbols computed in link.ld. */
#include "layout.h"

#define PTE_P 0x1
#define PTE_RW 0x2
#define PTE_US 0x4 /* every page is a user page: the workload runs at CPL3 */
#define PTE_PWT 0x8
#define PTE_PCD 0x10
#define PTE_PS 0x80

	.section .data.pagetables, "aw"
	.balign 4096
/* Identity map of the first 4 GiB with 2 MiB pages. */
	.globl pml4
pml4:
	.quad pdpt + PTE_P + PTE_RW + PTE_US
	.fill 511, 8, 0
pdpt:
	i = 0
	.rept 4
	.quad pd + i * 4096 + PTE_P + PTE_RW + PTE_US
	i = i + 1
	.endr
	.fill 508, 8, 0
pd:
	addr = 0
	.rept 2048
	.if addr >= 0xc0000000 /* the PCI hole, LAPIC and IOAPIC: uncached */
	.quad addr + PTE_P + PTE_RW + PTE_US + PTE_PS + PTE_PWT + PTE_PCD
	.else
	.quad addr + PTE_P + PTE_RW + PTE_US + PTE_PS
	.endif
	addr = addr + 0x200000
	.endr

	.section .data.tables, "aw"
	.balign 16
/* Accessed bits preset so the CPU never writes these descriptors back. */
	.globl gdt, gdt_ptr
gdt:
	.quad 0
	.quad 0x00cf9b000000ffff /* SEL_CODE32 */
	.quad 0x00cf93000000ffff /* SEL_DATA */
	.quad 0x00af9b000000ffff /* SEL_CODE64 */
	.quad 0x00cff3000000ffff /* SEL_UDATA */
	.quad 0x00affb000000ffff /* SEL_UCODE64 */
	i = 0
	.rept MAX_CPUS /* SEL_TSS0 + 16 * slot: available 64-bit TSS */
	.word 0x67
	.word __tss_lo + i * TSS_STRIDE
	.byte __tss_b16
	.byte 0x89
	.byte 0
	.byte __tss_b24
	.long __tss_hi
	.long 0
	i = i + 1
	.endr
gdt_end:
	.globl gdt_limit
	.set gdt_limit, gdt_end - gdt - 1

	.balign 8
gdt_ptr:
	.word gdt_limit
	.quad gdt

/* Interrupt gates (DPL0) for every vector. */
	.balign 16
idt:
	vec = 0
	.rept NUM_VECTORS
	.word __exc_stubs_lo + vec * 16
	.word SEL_CODE64
	.byte 0
	.byte 0x8e
	.word __exc_stubs_mid
	.long __exc_stubs_hi
	.long 0
	vec = vec + 1
	.endr
idt_end:

	.balign 8
	.globl idt_ptr
idt_ptr:
	.word idt_end - idt - 1
	.quad idt

/* One TSS per slot; only RSP0 matters (the exception stack). The I/O bitmap offset points past the
 * limit: IOPL=3 already grants the ports. */
	.balign 4096
	.globl tss_area
tss_area:
	i = 0
	.rept MAX_CPUS
	.long 0
	.quad kstacks + (i + 1) * KSTACK_SIZE
	.fill 90, 1, 0
	.word 104
	.fill TSS_STRIDE - 104, 1, 0
	i = i + 1
	.endr

/* The single iretq frame every CPU leaves CPL0 through. */
	.balign 8
	.globl iret_to_cpl3
iret_to_cpl3:
	.quad cpl3_entry, SEL_UCODE64, RFLAGS_CPL3, 0, SEL_UDATA

/* kvmclock (pvclock_vcpu_time_info) areas, written by the host. In .data, not .bss, because the
 * BSP clears .bss after its own area is already live. */
	.balign 64
	.globl pvclock_areas
pvclock_areas:
	.fill MAX_CPUS << PVCLOCK_SHIFT, 1, 0

	.section .stacks, "aw", @nobits
	.balign 4096
	.globl kstacks, ustacks
kstacks:
	.skip MAX_CPUS * KSTACK_SIZE
ustacks:
	.skip MAX_CPUS * USTACK_SIZE

	.section .note.GNU-stack, "", @progbits
