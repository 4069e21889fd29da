/* testos CPL0 code: both entries, the AP trampoline, the exception stubs and the I/O service.
 *
 * Guest CPL0 code is emulated instruction by instruction on this project's nested KVM (PVM), so
 * this file does only what needs privilege (lgdt, lidt, ltr, CR3/CR4/EFER/CR0, the kvmclock wrmsr,
 * masking the PICs) and then drops to CPL3 with one iretq from a static frame. Everything else is
 * C++ at CPL3 (main.cpp), which comes back here only for port I/O (service_call). */
#include "layout.h"

/* PVH note: QEMU's -kernel finds the 32-bit entry here. The descriptor is 8 bytes because QEMU reads
 * a size_t from it; 4-byte alignment because QEMU pads the name by the segment alignment. */
	.section .note.pvh, "a", @note
	.balign 4
	.long 4, 8, 18 /* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.quad pvh_entry32

/* Paging off -> long mode with the static tables (tables.S). Uses no stack and no data segment, so
 * the PVH BSP and the APs (still on their real-mode segment caches) can share it. */
.macro ENTER_LONG_MODE target
	mov $CR4_PAE, %eax
	mov %eax, %cr4
	mov $pml4, %eax
	mov %eax, %cr3
	mov $MSR_EFER, %ecx
	mov $EFER_LME, %eax
	xor %edx, %edx
	wrmsr
	mov $CR0_PE_ET_PG, %eax
	mov %eax, %cr0
	ljmp $SEL_CODE64, $\target
.endm

	.section .text.entry, "ax"
	.code32
	.globl pvh_entry32
pvh_entry32:
	lgdt gdt_ptr
	ENTER_LONG_MODE bsp_entry64

ap_entry32:
	ENTER_LONG_MODE ap_entry64

	.code64
/* ELF e_entry (nvhv): long mode, its own paging and GDT, %rbx = start info. */
	.globl bsp_entry64
bsp_entry64:
	mov %ebx, %r15d /* start info; nonzero marks the BSP. cpuid clobbers %ebx */
	lgdt gdt_ptr
	mov $pml4, %eax
	mov %rax, %cr3
	/* A known CR4: in particular SMEP/SMAP off, since every page is a user page. */
	mov $CR4_PAE, %eax
	mov %rax, %cr4
	/* PVM runs CPL3 with interrupts enabled: silence the legacy PICs the firmware may have left
	 * unmasked (a PIT tick would otherwise arrive on an exception vector). */
	mov $0xff, %al
	out %al, $0x21
	out %al, $0xa1
	jmp cpu_entry64

ap_entry64:
	xor %r15d, %r15d
	mov $SEL_DATA, %eax /* %ss still holds a real-mode cache; iretq pops through it */
	mov %eax, %ss

/* Common to every CPU. Slot = initial APIC ID selects the TSS, kvmclock area and stacks. */
cpu_entry64:
	lidt idt_ptr
	mov $1, %eax
	cpuid
	shr $24, %ebx
	mov %ebx, %r14d
	cmp $MAX_CPUS, %ebx
	jae slot_out_of_range
	shl $4, %ebx
	andb $0xfd, gdt + SEL_TSS0 + 5(%rbx) /* not busy: ltr after a reset re-entry must not #GP */
	add $SEL_TSS0, %ebx
	ltr %bx

	xor %r13d, %r13d /* kvmclock enabled? reported to CPL3, which prints the error */
	mov $KVM_CPUID_SIGNATURE, %eax
	cpuid
	cmp $0x4b4d564b, %ebx /* "KVMKVMKVM\0\0\0" */
	jne 1f
	cmp $0x564b4d56, %ecx
	jne 1f
	cmp $0x4d, %edx
	jne 1f
	mov $KVM_CPUID_FEATURES, %eax
	cpuid
	test $KVM_FEATURE_CLOCKSOURCE2, %al
	jz 1f
	mov %r14d, %eax
	shl $PVCLOCK_SHIFT, %eax
	add $pvclock_areas + 1, %eax /* bit 0: enable */
	xor %edx, %edx
	mov $MSR_KVM_SYSTEM_TIME_NEW, %ecx
	wrmsr
	mov $1, %r13d
1:
	/* The frame is read-only and shared; CPL3 sets its own %rsp from the slot. */
	mov $iret_to_cpl3, %esp
	iretq

slot_out_of_range:
	test %r15, %r15
	jz 2f
	mov $kstacks + KSTACK_SIZE, %esp
	mov %r14d, %edi
	call cpl0_bad_bsp_slot
2:	hlt /* an AP we cannot give a slot to; the BSP reports it missing */
	jmp 2b

/* First CPL3 instruction of every CPU: %r14 = slot, %r15 = start info (0 on APs),
 * %r13 = kvmclock enabled. */
	.globl cpl3_entry
cpl3_entry:
	lea 1(%r14), %eax
	shl $USTACK_SHIFT, %eax
	add $ustacks, %rax
	mov %rax, %rsp
	mov %r14d, %edi
	test %r15, %r15
	jz 3f
	mov %r15, %rsi
	mov %r13d, %edx
	call bsp_main
	ud2
3:	call ap_main
	ud2

/* Real-mode start of an AP (SIPI vector AP_TRAMPOLINE >> 12, so %cs base = AP_TRAMPOLINE). The BSP
 * copies [ap_trampoline, ap_trampoline_end) there; it jumps straight into the image above 1 MiB. */
	.code16
	.globl ap_trampoline, ap_trampoline_end
ap_trampoline:
	lgdtl %cs:tramp_gdt_ptr - ap_trampoline
	mov %cr0, %eax
	or $1, %al
	mov %eax, %cr0
	ljmpl $SEL_CODE32, $ap_entry32
	.balign 4
tramp_gdt_ptr:
	.word gdt_limit
	.long gdt
ap_trampoline_end:
	.code64

/* One stub per vector, 16 bytes apart on one page, so tables.S can build the IDT statically from
 * the linker's split of exc_stubs' address (link.ld). Vectors >= 32 are unexpected interrupts and
 * are reported like exceptions. */
	.section .text.stubs, "ax"
	.balign 4096
	.globl exc_stubs, exc_stub_last
exc_stubs:
	vec = 0
	.rept NUM_VECTORS
	.balign 16
	.if vec == NUM_VECTORS - 1
exc_stub_last: /* link.ld checks that no stub outgrew its 16 bytes */
	.endif
	.if vec == VECTOR_UD
	jmp ud_entry
	.else
	has_err = (vec == 8) || (vec >= 10 && vec <= 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	.if has_err == 0
	push $0
	.endif
	push $vec
	jmp exc_common
	.endif
	vec = vec + 1
	.endr

exc_common:
	/* stack: vector, error code, rip, cs, rflags, rsp, ss */
	mov (%rsp), %edi
	mov 16(%rsp), %rsi
	mov 8(%rsp), %rdx
	and $-16, %rsp
	call exception_report
4:	hlt
	jmp 4b

/* The way from CPL3 to the I/O service. PVM gives a non-PVM guest's CPL3 code neither IOPL nor a
 * working "int n" (#UD), but it does deliver exceptions through the IDT, so the service is entered
 * by the #UD of this one ud2. %eax = SERVICE_WRITE, SERVICE_POWER_OFF, SERVICE_RESET or SERVICE_TRIPLE_FAULT; clobbers %rax, %rcx,
 * %rdx, %rsi, %rdi. */
	.section .text, "ax"
	.globl service_call
service_call:
	ud2
	ret

	.section .text.stubs, "ax"
ud_entry:
	cmpq $service_call, (%rsp)
	je service_entry
	push $0
	push $VECTOR_UD
	jmp exc_common

/* Kept to a tight loop because each instruction here is emulated. */
service_entry:
	addq $2, (%rsp) /* resume after the ud2 */
	cmp $SERVICE_POWER_OFF, %eax
	je service_power_off
	cmp $SERVICE_RESET, %eax
	je service_reset
	cmp $SERVICE_TRIPLE_FAULT, %eax
	je service_triple_fault
5:	test %rsi, %rsi
	jz 7f
	mov $COM1_LSR, %edx
	mov $100000, %ecx /* bounded: a missing or wedged UART must not hang the guest */
6:	in %dx, %al
	test $LSR_THR_EMPTY, %al
	loopz 6b
	mov $COM1, %edx
	mov (%rdi), %al
	out %al, %dx
	inc %rdi
	dec %rsi
	jmp 5b
7:	iretq

/* Waits (bounded) until the UART has sent everything, so the last line is not lost to the
 * power-off, reset or triple fault that follows. Clobbers %rax, %rcx, %rdx. */
uart_drain:
	mov $COM1_LSR, %edx
	mov $100000, %ecx
8:	in %dx, %al
	and $(LSR_THR_EMPTY | LSR_IDLE), %al
	cmp $(LSR_THR_EMPTY | LSR_IDLE), %al
	loopne 8b
	ret

service_power_off:
	call uart_drain
	mov $PM1A_CONTROL, %edx
	mov $SLP_EN_S5, %eax
	out %ax, %dx
9:	hlt
	jmp 9b

service_reset:
	call uart_drain
	mov $I8042_COMMAND, %edx
	mov $I8042_PULSE_RESET, %al
	out %al, %dx
11:	hlt
	jmp 11b

/* With a zero-limit IDT the #UD cannot be delivered (#GP), nor that (#DF): the CPU shuts down. */
service_triple_fault:
	call uart_drain
	lidt empty_idt(%rip)
	ud2

	.section .rodata, "a"
	.balign 16
empty_idt:
	.word 0
	.quad 0

	.section .note.GNU-stack, "", @progbits
