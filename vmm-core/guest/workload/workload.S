/*
 * colo's workload guest: a bare-metal x86-64 program booted like a kernel (ELF with a PVH note).
 *
 * It reads its job from the command line
 * (`cpu=UNITS|forever mem=MiB io=read:MiB|write:MiB[:forever]|hostile chan=echo|flood:BYTES
 *  hold=SECONDS exit=CODE`),
 * prints a marker on COM1, burns CPU in fixed work units, touches memory, idles in `hlt`, and
 * ends the VM through the debug-exit port 0xf4 (QEMU's isa-debug-exit, colo-vmm's exit port).
 *
 * Why it is built this way (see docs/vmm.md): on KVM-PVM hosts guest ring 0 runs through KVM's
 * instruction emulator (~2,700x slower than native) while guest ring 3 runs natively. So ring 0
 * only loads the descriptor tables and drops to ring 3; every table is laid out statically at a
 * fixed address (no loops in ring 0); all work, parsing and port I/O happen in ring 3 (port I/O
 * through the TSS I/O permission bitmap). Ring 3 calls into ring 0 (for `hlt`) with `ud2` at the
 * one address `sys_trap`, since `syscall` and `int` do not reach ring 0 on those hosts.
 * The disk driver polls its used ring for a moment, then waits for the disk's interrupt in `hlt`
 * (SYS_WAIT_IO), so a guest whose IO is held back by the VMM's token bucket idles, as a real
 * guest would, instead of burning its vCPU.
 *
 * Entry points:
 *  - `pvh_start32` (PVH note): 32-bit protected mode, paging off, EBX = hvm_start_info. Used by
 *    QEMU microvm and other PVH loaders; runs one vCPU.
 *  - `entry64` (ELF entry, named in the "COLO" note): 64-bit mode with CR3 = the guest's own
 *    page tables (from the note), RDI = vCPU index, RSI = vCPU count, RBX = hvm_start_info.
 *    colo-vmm starts every vCPU here at once, so no INIT/SIPI is needed.
 */

#define IMAGE_BASE      0x100000
#define ISR_OFF         0x0000
#define IDT_OFF         0x0400
#define GDT_OFF         0x0800
#define TSS_OFF         0x1000
#define PML4_OFF        0x2000
#define PDPT_OFF        0x3000
#define PD_OFF          0x4000
#define CODE_OFF        0x8000
#define IOBITMAP        0x110000

#define MAX_CPUS        32
#define IDT_VECTORS     64
#define TIMER_VECTOR    0x30
#define DISK_VECTOR     0x31
#define SPURIOUS_VECTOR 0x3f

#define KCODE           0x08
#define KDATA           0x10
#define UDATA           0x1b
#define UCODE           0x23
#define TSS_SEL0        0x30

#define COM1            0x3f8
#define DEBUG_EXIT      0xf4
#define I8042_CMD       0x64
#define LAPIC           0xfee00000
#define IOAPIC          0xfec00000

#define SYS_HOLD        1
#define SYS_PARK        2
#define SYS_WAIT_IO     3

/* Exit codes of the guest itself (colo-vmm passes 0..=63 through). */
#define EXIT_BAD_ARG    63
#define EXIT_FAULT      62

/* One work unit: this many iterations of a 4-instruction ALU loop (~1 ms at ~2.3 GHz, native). */
#define UNIT_ITERATIONS 1500000

/* virtio-mmio block device (colo-vmm puts the first disk here) */
#define VIRTIO_BASE     0xd0000000
#define VQ_SIZE         32
#define IO_SLOTS        8
#define IO_CHUNK        0x20000
#define IO_CHUNK_SHIFT  17
#define EXIT_IO_ERROR   61
/* colo-vmm's first virtio-mmio device raises IOAPIC pin 5 (layout::VIRTIO_IRQ_BASE). */
#define DISK_IRQ        5
/* Polls of the used ring (each a `pause`, ~30-140 cycles) before the driver sleeps. */
#define IO_SPIN         2000
/* virtio-console device (colo-vmm's --channel; layout::CHANNEL_MMIO_BASE): queue size, buffer */
#define CHAN_BASE       0xd0008000
#define CQ_SIZE         8
#define CHAN_BUF        4096
/* io=hostile: the data segment of its unaligned write request (63 MiB, from mem_start + 0x100). */
#define HOSTILE_BYTES   0x3f00000
#define PATTERN_MUL     0x9e3779b97f4a7c15

/* hvm_start_info offsets */
#define SI_CMDLINE      24
#define SI_MEMMAP       40
#define SI_MEMMAP_N     48

    .section .image, "awx", @progbits
    .code64
image_start:

/* ---- interrupt stubs: one 16-byte slot per vector, at IMAGE_BASE + vector * 16 ---------------- */
    .set vec, 0
    .rept IDT_VECTORS
    .org ISR_OFF + vec * 16
    .if vec == 8 || vec == 10 || vec == 11 || vec == 12 || vec == 13 || vec == 14 || vec == 17 || vec == 21 || vec == 29 || vec == 30
    .else
    pushq $0
    .endif
    pushq $vec
    jmp isr_common
    .set vec, vec + 1
    .endr

/* ---- IDT: interrupt gates to the stubs above ------------------------------------------------ */
    .org IDT_OFF
idt:
    .set vec, 0
    .rept IDT_VECTORS
    .word (IMAGE_BASE + ISR_OFF + vec * 16) & 0xffff
    .word KCODE
    .byte 0
    .byte 0x8e
    .word ((IMAGE_BASE + ISR_OFF + vec * 16) >> 16) & 0xffff
    .long 0
    .long 0
    .set vec, vec + 1
    .endr

/* ---- GDT: flat kernel and user segments, then one TSS descriptor per vCPU --------------------- */
    .org GDT_OFF
gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08 kernel code, 64-bit */
    .quad 0x00cf92000000ffff        /* 0x10 kernel data */
    .quad 0x00cff2000000ffff        /* 0x18 user data (selector 0x1b) */
    .quad 0x00affa000000ffff        /* 0x20 user code, 64-bit (selector 0x23) */
    .quad 0                         /* 0x28 unused */
    .set cpu, 0
    .rept MAX_CPUS
    .set tss_addr, IMAGE_BASE + TSS_OFF + cpu * 128
    .set tss_limit, (IOBITMAP - tss_addr) + 8192
    .word tss_limit & 0xffff
    .word tss_addr & 0xffff
    .byte (tss_addr >> 16) & 0xff
    .byte 0x89
    .byte (tss_limit >> 16) & 0x0f
    .byte (tss_addr >> 24) & 0xff
    .long 0
    .long 0
    .set cpu, cpu + 1
    .endr
gdt_end:
    .balign 8
gdt_ptr:
    .word gdt_end - gdt - 1
    .quad gdt
    .balign 8
idt_ptr:
    .word IDT_VECTORS * 16 - 1
    .quad idt

/* ---- one 104-byte TSS per vCPU, 128 bytes apart; all share the I/O bitmap at IOBITMAP --------- */
/* The bitmap is zero (every port allowed from ring 3); RSP0 is filled in at entry. */
    .set cpu, 0
    .rept MAX_CPUS
    .org TSS_OFF + cpu * 128
    .fill 102, 1, 0
    .word IOBITMAP - (IMAGE_BASE + TSS_OFF + cpu * 128)
    .set cpu, cpu + 1
    .endr

/* ---- page tables: identity map of the low 4 GiB in 2 MiB pages, U/S set at every level -------- */
    .org PML4_OFF
pml4:
    .quad IMAGE_BASE + PDPT_OFF + 0x7
    .fill 511, 8, 0
    .org PDPT_OFF
    .quad IMAGE_BASE + PD_OFF + 0x0000 + 0x7
    .quad IMAGE_BASE + PD_OFF + 0x1000 + 0x7
    .quad IMAGE_BASE + PD_OFF + 0x2000 + 0x7
    .quad IMAGE_BASE + PD_OFF + 0x3000 + 0x7
    .fill 508, 8, 0
    .org PD_OFF
    .set i, 0
    .rept 2048
    .quad (i << 21) | 0x87
    .set i, i + 1
    .endr

/* ================================ ring 0 ====================================================== */
    .org CODE_OFF
    .code32
pvh_start32:
    cli
    movl $(IMAGE_BASE + PML4_OFF), %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax                 /* PAE */
    movl %eax, %cr4
    movl $0xc0000080, %ecx          /* EFER.LME */
    rdmsr
    orl $0x100, %eax
    wrmsr
    lgdt gdt_ptr
    movl %cr0, %eax
    orl $0x80000001, %eax           /* PG | PE */
    movl %eax, %cr0
    ljmp $KCODE, $entry64_from_pvh
    .code64
entry64_from_pvh:
    movl %ebx, %ebx
    xorl %edi, %edi
    movl $1, %esi

/* RDI = vCPU index, RSI = vCPU count, RBX = hvm_start_info; interrupts off. */
    .globl entry64
entry64:
    cli
    cmpq $MAX_CPUS, %rdi
    jae park_forever
    leaq 1(%rdi), %rax
    shlq $12, %rax
    addq $kstacks, %rax
    movq %rax, %rsp
    lgdt gdt_ptr(%rip)
    movw $KDATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movq %rdi, %rax
    shlq $7, %rax
    movq %rsp, IMAGE_BASE + TSS_OFF + 4(%rax)   /* RSP0 */
    movq %rdi, %rax
    shlq $4, %rax
    addl $TSS_SEL0, %eax
    ltr %ax
    lidt idt_ptr(%rip)
    /* Mask LINT0: KVM wires the boot CPU's LINT0 to the 8259 PIC (ExtINT), whose vectors would
     * land on exception gates. The disk's interrupt comes through the IOAPIC (io_run). */
    movabsq $LAPIC, %rax
    movl $0x10000, 0x350(%rax)
    testq %rdi, %rdi
    jnz 1f
    movq %rbx, start_info(%rip)
    movq %rsi, ncpus(%rip)
1:
    leaq 1(%rdi), %rax
    shlq $12, %rax
    addq $ustacks, %rax
    pushq $UDATA
    pushq %rax
    pushq $0x202
    pushq $UCODE
    pushq $user_main
    iretq

/* Stack on entry: vector, error code, RIP, CS, RFLAGS, RSP, SS. */
isr_common:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    /* 0 rdi, 8 rsi, 16 rdx, 24 rcx, 32 rax, 40 vector, 48 error, 56 rip, 64 cs */
    movq 40(%rsp), %rax
    cmpq $TIMER_VECTOR, %rax
    je isr_timer
    cmpq $DISK_VECTOR, %rax
    je isr_timer
    cmpq $SPURIOUS_VECTOR, %rax
    je isr_return
    cmpq $6, %rax
    jne isr_fault
    movq 56(%rsp), %rcx
    cmpq $sys_trap, %rcx
    jne isr_fault
    addq $2, 56(%rsp)               /* resume after the ud2 */
    movq 32(%rsp), %rax             /* system call number */
    movq 0(%rsp), %rdi              /* argument */
    cmpq $SYS_HOLD, %rax
    je sys_hold
    cmpq $SYS_PARK, %rax
    je park_forever
    cmpq $SYS_WAIT_IO, %rax
    je sys_wait_io
    jmp isr_return
isr_timer:
    movabsq $LAPIC, %rcx
    movl $0, 0xb0(%rcx)             /* EOI */
isr_return:
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    addq $16, %rsp
    iretq

/* Sleep RDI milliseconds with the LAPIC timer in one-shot mode (1 GHz APIC bus / 128). */
sys_hold:
    movabsq $LAPIC, %rcx
    movl $(0x100 | SPURIOUS_VECTOR), 0xf0(%rcx)
    movl $0xa, 0x3e0(%rcx)
2:
    testq %rdi, %rdi
    jz 5f
    movq %rdi, %rax
    cmpq $500000, %rax
    jbe 3f
    movl $500000, %eax
3:
    subq %rax, %rdi
    imulq $15625, %rax, %rax
    shrq $1, %rax
    movl $TIMER_VECTOR, 0x320(%rcx)
    movl %eax, 0x380(%rcx)
4:
    sti
    hlt
    cli
    movl 0x390(%rcx), %eax
    testl %eax, %eax
    jnz 4b
    jmp 2b
5:
    movl $0x10000, 0x320(%rcx)      /* mask the timer again */
    jmp isr_return

/* Halts until the used ring's index differs from DI (the entries the driver consumed). The
 * index is checked with interrupts off and `sti; hlt` sleeps atomically, so a completion that
 * lands between the check and the halt still wakes it (its interrupt stays pending). */
sys_wait_io:
    movabsq $LAPIC, %rcx
    movl $(0x100 | SPURIOUS_VECTOR), 0xf0(%rcx)
1:
    movzwl vq_used + 2(%rip), %eax
    cmpw %ax, %di
    jne isr_return
    sti
    hlt
    cli
    jmp 1b

park_forever:
    cli
1:
    hlt
    jmp 1b

/* An exception nobody asked for: say which, and end the VM with EXIT_FAULT. */
isr_fault:
    leaq msg_fault(%rip), %rsi
    movl $(msg_fault_end - msg_fault), %ecx
    movw $COM1, %dx
    rep outsb
    movq 40(%rsp), %rax
    call r0_hex
    leaq msg_rip(%rip), %rsi
    movl $(msg_rip_end - msg_rip), %ecx
    movw $COM1, %dx
    rep outsb
    movq 56(%rsp), %rax
    call r0_hex
    movb $'\n', %al
    movw $COM1, %dx
    outb %al, %dx
    movb $EXIT_FAULT, %al
    outb %al, $DEBUG_EXIT
    jmp park_forever

/* Prints RAX as 16 hex digits on COM1. */
r0_hex:
    movl $16, %ecx
    movq %rax, %rsi
    movw $COM1, %dx
1:
    rolq $4, %rsi
    movq %rsi, %rax
    andl $0xf, %eax
    movb hex_digits(%rax), %al
    outb %al, %dx
    decl %ecx
    jnz 1b
    ret

/* ================================ ring 3 ====================================================== */

/* RAX = call number, RDI = argument. */
sys_call:
sys_trap:
    ud2
    ret

/* RSI = bytes, RCX = length. */
puts:
    movw $COM1, %dx
    rep outsb
    ret

/* AL = exit code. */
guest_exit:
    movw $DEBUG_EXIT, %dx
    outb %al, %dx
    /* Not under a VMM with a debug-exit port: reset through the i8042. */
    movb $0xfe, %al
    outb %al, $I8042_CMD
1:
    pause
    jmp 1b

/* RDI = vCPU index. */
user_main:
    testq %rdi, %rdi
    jnz ap_main
    leaq msg_up(%rip), %rsi
    movl $(msg_up_end - msg_up), %ecx
    call puts
    call parse_cmdline
    movq $1, job_ready(%rip)
    movq job_mem_mib(%rip), %rcx
    testq %rcx, %rcx
    jz 1f
    call touch_mem
1:
    xorl %edi, %edi
    call burn
    movq ncpus(%rip), %rcx
    decq %rcx
2:
    cmpq %rcx, aps_done(%rip)
    jae 3f
    pause
    jmp 2b
3:
    cmpq $0, job_io_mode(%rip)
    je 31f
    call io_run
31:
    cmpq $0, job_chan_bytes(%rip)
    je 32f
    call chan_run
32:
    movq job_hold_ms(%rip), %rdi
    testq %rdi, %rdi
    jz 4f
    movl $SYS_HOLD, %eax
    call sys_call
4:
    movq job_exit(%rip), %rax
    jmp guest_exit

ap_main:
    movq %rdi, %rbx
1:
    cmpq $0, job_ready(%rip)
    jne 2f
    pause
    jmp 1b
2:
    movq %rbx, %rdi
    call burn
    lock incq aps_done(%rip)
    movl $SYS_PARK, %eax
    call sys_call

/* Burns job_units work units (all of them if ~0) on vCPU RDI, counting each in its progress slot. */
burn:
    movq job_units(%rip), %r9
    movq %rdi, %r10
    shlq $6, %r10
    leaq progress + 64(%rip), %r11
    addq %r10, %r11
1:
    testq %r9, %r9
    jz 3f
    movl $UNIT_ITERATIONS, %ecx
2:
    addq %rax, %rdx
    xorq %rdx, %rax
    incq %r8
    decl %ecx
    jnz 2b
    incq (%r11)
    decq %r9
    jmp 1b
3:
    ret

/* Writes every byte of job_mem_mib MiB from mem_start (checked by parse_cmdline). */
touch_mem:
    shlq $17, %rcx                  /* MiB -> qwords */
    leaq mem_start_sym(%rip), %rdi
    movq (%rdi), %rdi
    movabsq $0x636f6c6f636f6c6f, %rax
    rep stosq
    ret

/* ---- command line ---------------------------------------------------------------------------- */

/* Parses start_info->cmdline into job_*; prints the error and exits with EXIT_BAD_ARG if bad. */
parse_cmdline:
    movq start_info(%rip), %rsi
    testq %rsi, %rsi
    jz 9f
    movq SI_CMDLINE(%rsi), %rsi
    testq %rsi, %rsi
    jz 9f
1:
    movzbl (%rsi), %eax
    testb %al, %al
    jz 8f
    cmpb $' ', %al
    jne 2f
    incq %rsi
    jmp 1b
2:
    movq %rsi, %r12                 /* token start, for messages */
    leaq kw_cpu(%rip), %rdi
    call match_key
    jnz 3f
    leaq kw_forever(%rip), %rdi
    call match_word
    jnz 21f
    movq $-1, job_units(%rip)
    jmp 1b
21:
    call parse_u64
    movq %rax, job_units(%rip)
    jmp 1b
3:
    leaq kw_mem(%rip), %rdi
    call match_key
    jnz 4f
    call parse_u64
    movq %rax, job_mem_mib(%rip)
    jmp 1b
4:
    leaq kw_hold(%rip), %rdi
    call match_key
    jnz 5f
    call parse_ms
    movq %rax, job_hold_ms(%rip)
    jmp 1b
5:
    leaq kw_io_read(%rip), %rdi
    call match_key
    jnz 51f
    call parse_io
    movq $1, job_io_mode(%rip)
    jmp 1b
51:
    leaq kw_io_write(%rip), %rdi
    call match_key
    jnz 515f
    call parse_io
    movq $2, job_io_mode(%rip)
    jmp 1b
515:
    leaq kw_io_hostile(%rip), %rdi
    call match_word
    jnz 516f
    movq $3, job_io_mode(%rip)
    jmp 1b
516:
    leaq kw_chan_echo(%rip), %rdi
    call match_key
    jnz 517f
    call parse_u64
    testq %rax, %rax
    jz bad_arg
    movq %rax, job_chan_bytes(%rip)
    movq $1, job_chan_mode(%rip)
    jmp 1b
517:
    leaq kw_chan_flood(%rip), %rdi
    call match_key
    jnz 52f
    call parse_u64
    testq %rax, %rax
    jz bad_arg
    movq %rax, job_chan_bytes(%rip)
    movq $2, job_chan_mode(%rip)
    jmp 1b
52:
    leaq kw_exit(%rip), %rdi
    call match_key
    jnz 6f
    call parse_u64
    cmpq $63, %rax
    ja bad_arg
    movq %rax, job_exit(%rip)
    jmp 1b
6:
    /* Unknown word: name it and go on (loaders may add words of their own). */
    leaq msg_ignored(%rip), %rsi
    movl $(msg_ignored_end - msg_ignored), %ecx
    call puts
    movq %r12, %rsi
    call token_len
    call puts
    leaq msg_nl(%rip), %rsi
    movl $1, %ecx
    call puts
    movq %r12, %rsi
    call token_len
    addq %rcx, %rsi
    jmp 1b
8:
    call check_mem
9:
    ret

/* RCX = length of the space/NUL-terminated word at RSI. */
token_len:
    xorl %ecx, %ecx
1:
    movzbl (%rsi, %rcx), %eax
    testb %al, %al
    jz 2f
    cmpb $' ', %al
    je 2f
    incq %rcx
    jmp 1b
2:
    ret

/* ZF=1 and RSI advanced past the key if the word at RSI starts with the NUL-terminated RDI. */
match_key:
    movq %rsi, %r8
1:
    movzbl (%rdi), %eax
    testb %al, %al
    jz 2f
    cmpb (%r8), %al
    jne 3f
    incq %rdi
    incq %r8
    jmp 1b
2:
    movq %r8, %rsi
    xorl %eax, %eax                 /* ZF = 1 */
    ret
3:
    orl $1, %eax                    /* ZF = 0 */
    ret

/* ZF=1 and RSI advanced if the word at RSI is exactly RDI. */
match_word:
    movq %rsi, %r9
    call match_key
    jnz 1f
    movzbl (%rsi), %eax
    testb %al, %al
    jz 2f
    cmpb $' ', %al
    je 2f
    movq %r9, %rsi
    orl $1, %eax
1:
    ret
2:
    xorl %eax, %eax
    ret

/* RAX = decimal number at RSI (which ends at a space or NUL); bad_arg otherwise. */
parse_u64:
    xorl %eax, %eax
    xorl %ecx, %ecx                 /* digits seen */
1:
    movzbl (%rsi), %edx
    testb %dl, %dl
    jz 2f
    cmpb $' ', %dl
    je 2f
    subl $'0', %edx
    cmpl $9, %edx
    ja bad_arg
    imulq $10, %rax, %rax
    jo bad_arg
    addq %rdx, %rax
    jc bad_arg
    incq %rsi
    incl %ecx
    jmp 1b
2:
    testl %ecx, %ecx
    jz bad_arg
    ret

/* `MiB` or `MiB:forever` at RSI (io=read:/io=write:): job_io_mib, and job_io_loop = 1 for
 * `:forever` (the same MiB are streamed over and over until the VM is shut down). */
parse_io:
    xorl %eax, %eax
    xorl %ecx, %ecx                 /* digits seen */
1:
    movzbl (%rsi), %edx
    testb %dl, %dl
    jz 2f
    cmpb $' ', %dl
    je 2f
    cmpb $':', %dl
    je 2f
    subl $'0', %edx
    cmpl $9, %edx
    ja bad_arg
    imulq $10, %rax, %rax
    jo bad_arg
    addq %rdx, %rax
    jc bad_arg
    incq %rsi
    incl %ecx
    jmp 1b
2:
    testl %ecx, %ecx
    jz bad_arg
    movq %rax, job_io_mib(%rip)
    cmpb $':', (%rsi)
    jne 3f
    incq %rsi
    leaq kw_forever(%rip), %rdi
    call match_word
    jnz bad_arg
    movq $1, job_io_loop(%rip)
3:
    ret

/* RAX = milliseconds of a decimal number of seconds with up to 3 fraction digits ("2", "0.25"). */
parse_ms:
    xorl %eax, %eax
    xorl %ecx, %ecx                 /* digits seen */
    movl $-1, %r10d                 /* fraction digits seen, -1 before the point */
1:
    movzbl (%rsi), %edx
    testb %dl, %dl
    jz 3f
    cmpb $' ', %dl
    je 3f
    cmpb $'.', %dl
    jne 2f
    cmpl $-1, %r10d
    jne bad_arg
    xorl %r10d, %r10d
    incq %rsi
    jmp 1b
2:
    subl $'0', %edx
    cmpl $9, %edx
    ja bad_arg
    cmpl $3, %r10d
    je bad_arg
    imulq $10, %rax, %rax
    jo bad_arg
    addq %rdx, %rax
    incq %rsi
    incl %ecx
    cmpl $-1, %r10d
    je 1b
    incl %r10d
    jmp 1b
3:
    testl %ecx, %ecx
    jz bad_arg
    cmpl $-1, %r10d
    jne 4f
    xorl %r10d, %r10d
4:
    cmpl $3, %r10d
    je 5f
    imulq $10, %rax, %rax
    jo bad_arg
    incl %r10d
    jmp 4b
5:
    ret

/* The word at R12 is not valid: say so and end the VM. */
bad_arg:
    leaq msg_bad(%rip), %rsi
    movl $(msg_bad_end - msg_bad), %ecx
    call puts
    movq %r12, %rsi
    call token_len
    call puts
    leaq msg_nl(%rip), %rsi
    movl $1, %ecx
    call puts
    movl $EXIT_BAD_ARG, %eax
    jmp guest_exit

/* mem= must fit in the RAM range of the memory map that holds mem_start. */
check_mem:
    movq job_mem_mib(%rip), %rax
    testq %rax, %rax
    jz 9f
    shlq $20, %rax
    movq mem_start_sym(%rip), %rdx
    addq %rdx, %rax                 /* end of the region */
    movq start_info(%rip), %rsi
    movl SI_MEMMAP_N(%rsi), %ecx
    movq SI_MEMMAP(%rsi), %rsi
    testq %rsi, %rsi
    jz 8f
1:
    testl %ecx, %ecx
    jz 8f
    cmpl $1, 16(%rsi)               /* RAM */
    jne 2f
    movq 0(%rsi), %rdi
    cmpq %rdi, %rdx
    jb 2f
    addq 8(%rsi), %rdi
    cmpq %rdi, %rdx
    jae 2f
    cmpq %rdi, %rax
    ja 8f
9:
    ret
2:
    addq $24, %rsi
    decl %ecx
    jmp 1b
8:
    leaq msg_mem(%rip), %rsi
    movl $(msg_mem_end - msg_mem), %ecx
    call puts
    movl $EXIT_BAD_ARG, %eax
    jmp guest_exit

/* ---- virtio-blk driver (ring 3; polls, then sleeps until the disk's interrupt) ---------------- */

/* Streams job_io_mib MiB to or from the first disk in 128 KiB requests, IO_SLOTS in flight,
 * counting bytes in the progress block; reads are checksummed, writes carry a pattern:
 * qword i of the disk holds i * PATTERN_MUL; the checksum is the sum of (qword ^ i). */
io_run:
    movabsq $VIRTIO_BASE, %rbx
    cmpl $0x74726976, 0x000(%rbx)
    jne io_no_disk
    cmpl $2, 0x004(%rbx)
    jne io_no_disk
    cmpl $2, 0x008(%rbx)
    jne io_no_disk
    movl $0, 0x070(%rbx)            /* reset */
    movl $3, 0x070(%rbx)            /* ACKNOWLEDGE | DRIVER */
    movl $1, 0x024(%rbx)
    movl $1, 0x020(%rbx)            /* VIRTIO_F_VERSION_1 (bit 32) */
    movl $0, 0x024(%rbx)
    movl $0, 0x020(%rbx)
    movl $0xb, 0x070(%rbx)          /* FEATURES_OK */
    testl $8, 0x070(%rbx)
    jz io_fail
    movl $0, 0x030(%rbx)
    movl $VQ_SIZE, 0x038(%rbx)
    leaq vq_desc(%rip), %rax
    movl %eax, 0x080(%rbx)
    shrq $32, %rax
    movl %eax, 0x084(%rbx)
    leaq vq_avail(%rip), %rax
    movl %eax, 0x090(%rbx)
    shrq $32, %rax
    movl %eax, 0x094(%rbx)
    leaq vq_used(%rip), %rax
    movl %eax, 0x0a0(%rbx)
    shrq $32, %rax
    movl %eax, 0x0a4(%rbx)
    movw $1, vq_avail(%rip)         /* VRING_AVAIL_F_NO_INTERRUPT while it polls */
    /* IOAPIC pin DISK_IRQ -> DISK_VECTOR on LAPIC 0 (vCPU 0 runs the driver), edge, fixed. */
    movabsq $IOAPIC, %rax
    movl $(0x10 + 2 * DISK_IRQ + 1), (%rax)
    movl $0, 0x10(%rax)
    movl $(0x10 + 2 * DISK_IRQ), (%rax)
    movl $DISK_VECTOR, 0x10(%rax)
    movl $1, 0x044(%rbx)            /* QueueReady */
    movl $0xf, 0x070(%rbx)          /* DRIVER_OK */
    testl $0x40, 0x070(%rbx)        /* DEVICE_NEEDS_RESET */
    jnz io_fail
    cmpq $3, job_io_mode(%rip)
    je io_hostile
    /* capacity (sectors) >= MiB * 2048 */
    movl 0x104(%rbx), %eax
    shlq $32, %rax
    movl 0x100(%rbx), %ecx
    orq %rcx, %rax
    movq job_io_mib(%rip), %rcx
    shlq $11, %rcx
    cmpq %rcx, %rax
    jb io_small
    /* descriptors: slot s uses 3s (header), 3s+1 (data), 3s+2 (status) */
    xorl %ecx, %ecx
1:
    leaq (%rcx, %rcx, 2), %rdx      /* 3s */
    shlq $4, %rdx
    leaq vq_desc(%rip), %rdi
    addq %rdx, %rdi                 /* &desc[3s] */
    leaq io_hdrs(%rip), %rax
    movq %rcx, %rdx
    shlq $4, %rdx
    addq %rdx, %rax
    movq %rax, 0(%rdi)
    movl $16, 8(%rdi)
    movw $1, 12(%rdi)               /* NEXT */
    leaq (%rcx, %rcx, 2), %rax
    incl %eax
    movw %ax, 14(%rdi)
    leaq io_bufs(%rip), %rax
    movq %rcx, %rdx
    shlq $IO_CHUNK_SHIFT, %rdx
    addq %rdx, %rax
    movq %rax, 16(%rdi)
    movl $IO_CHUNK, 24(%rdi)
    movw $1, 28(%rdi)               /* NEXT, device reads the data (write request) */
    cmpq $1, job_io_mode(%rip)
    jne 2f
    movw $3, 28(%rdi)               /* NEXT | WRITE: the device writes the data (read request) */
2:
    leaq (%rcx, %rcx, 2), %rax
    addl $2, %eax
    movw %ax, 30(%rdi)
    leaq io_hdrs + 2048(%rip), %rax
    addq %rcx, %rax
    movq %rax, 32(%rdi)
    movl $1, 40(%rdi)
    movw $2, 44(%rdi)               /* WRITE */
    movw $0, 46(%rdi)
    incq %rcx
    cmpq $IO_SLOTS, %rcx
    jb 1b
    /* chunks */
    movq job_io_mib(%rip), %rax
    shlq $3, %rax
    movq %rax, io_total(%rip)
    movq %rax, io_pass_chunks(%rip)
    cmpq $0, job_io_loop(%rip)
    je 12f
    movabsq $0x4000000000000000, %rax   /* :forever: never done */
    movq %rax, io_total(%rip)
12:
    xorl %r14d, %r14d               /* slot */
3:
    cmpq $IO_SLOTS, %r14
    jae 4f
    movq io_next(%rip), %rax
    cmpq io_total(%rip), %rax
    jae 4f
    movq %r14, %rdi
    call io_submit
    incq %r14
    jmp 3b
4:
    movl $0, 0x050(%rbx)            /* QueueNotify */
5:
    movq io_done(%rip), %rax
    cmpq io_total(%rip), %rax
    jae 9f
6:
    movl $IO_SPIN, %r15d
61:
    movzwl vq_used + 2(%rip), %eax
    cmpw %ax, io_used(%rip)
    jne 7f
    pause
    decl %r15d
    jnz 61b
    call io_wait
    jmp 6b
7:
    movzwl io_used(%rip), %eax
    andl $(VQ_SIZE - 1), %eax
    leaq vq_used + 4(%rip), %rdx
    movl (%rdx, %rax, 8), %eax      /* id = 3 * slot */
    incq io_used(%rip)
    xorl %edx, %edx
    movl $3, %ecx
    divl %ecx
    movl %eax, %r14d                /* slot */
    leaq io_hdrs + 2048(%rip), %rdx
    cmpb $0, (%rdx, %r14)
    jne io_fail
    cmpq $1, job_io_mode(%rip)
    jne 8f
    movq %r14, %rdi
    call io_checksum
8:
    addq $IO_CHUNK, progress + 8(%rip)
    incq io_done(%rip)
    movq io_next(%rip), %rax
    cmpq io_total(%rip), %rax
    jae 5b
    movq %r14, %rdi
    call io_submit
    movl $0, 0x050(%rbx)            /* QueueNotify */
    jmp 5b
9:
    cmpq $1, job_io_mode(%rip)
    jne 10f
    leaq msg_io_read(%rip), %rsi
    movl $(msg_io_read_end - msg_io_read), %ecx
    call puts
    movq io_sum(%rip), %rax
    call u_hex
    leaq msg_nl(%rip), %rsi
    movl $1, %ecx
    call puts
    ret
10:
    leaq msg_io_write(%rip), %rsi
    movl $(msg_io_write_end - msg_io_write), %ecx
    call puts
    ret

/* io=hostile, what a broken or malicious driver does (vmm-core/tests/io_kvm.rs): a write request
 * whose 63 MiB data segment starts 0x100 bytes into a page (the device must move it through a
 * small bounce buffer, not one of 63 MiB), then a chain whose head sets VIRTQ_DESC_F_INDIRECT,
 * a feature the device does not offer (it must ask for a reset, not follow the table). RBX is
 * the device. Prints the first request's status and the device's answer to the second. */
io_hostile:
    leaq vq_desc(%rip), %rdi
    leaq io_hdrs(%rip), %rax
    movq %rax, 0(%rdi)              /* desc 0: the header */
    movl $16, 8(%rdi)
    movw $1, 12(%rdi)               /* NEXT */
    movw $1, 14(%rdi)
    movq mem_start_sym(%rip), %rax
    addq $0x100, %rax
    movq %rax, 16(%rdi)             /* desc 1: the unaligned data, read by the device */
    movl $HOSTILE_BYTES, 24(%rdi)
    movw $1, 28(%rdi)               /* NEXT */
    movw $2, 30(%rdi)
    leaq io_hdrs + 2048(%rip), %rax
    movq %rax, 32(%rdi)             /* desc 2: the status byte */
    movl $1, 40(%rdi)
    movw $2, 44(%rdi)               /* WRITE */
    movw $0, 46(%rdi)
    movl $1, io_hdrs(%rip)          /* VIRTIO_BLK_T_OUT at sector 0 */
    movb $0xff, io_hdrs + 2048(%rip)
    movw $0, vq_avail + 4(%rip)     /* ring[0] = head 0 */
    movw $1, vq_avail + 2(%rip)
    movl $0, 0x050(%rbx)            /* QueueNotify */
1:
    cmpw $1, vq_used + 2(%rip)
    je 2f
    pause
    jmp 1b
2:
    leaq msg_hostile_unaligned(%rip), %rsi
    movl $(msg_hostile_unaligned_end - msg_hostile_unaligned), %ecx
    call puts
    movzbl io_hdrs + 2048(%rip), %eax
    call u_hex
    leaq msg_nl(%rip), %rsi
    movl $1, %ecx
    call puts
    /* desc 3: an indirect table holding the same three descriptors */
    leaq vq_desc(%rip), %rax
    movq %rax, vq_desc + 48(%rip)
    movl $48, vq_desc + 56(%rip)
    movw $4, vq_desc + 60(%rip)     /* VIRTQ_DESC_F_INDIRECT */
    movw $0, vq_desc + 62(%rip)
    movw $3, vq_avail + 6(%rip)     /* ring[1] = head 3 */
    movw $2, vq_avail + 2(%rip)
    movl $0, 0x050(%rbx)
3:
    testl $0x40, 0x070(%rbx)        /* DEVICE_NEEDS_RESET: the answer wanted */
    jnz 4f
    cmpw $2, vq_used + 2(%rip)      /* completed: the device followed the table */
    je io_fail
    pause
    jmp 3b
4:
    leaq msg_hostile_reset(%rip), %rsi
    movl $(msg_hostile_reset_end - msg_hostile_reset), %ecx
    jmp puts

/* Sleeps until the used ring moves: interrupts on (avail flags 0), the index checked again (a
 * completion before the flag change sent none), then SYS_WAIT_IO; the disk's interrupt status
 * acknowledged and interrupts off again for the next poll. RBX is the device. */
io_wait:
    movw $0, vq_avail(%rip)
    mfence
    movzwl vq_used + 2(%rip), %eax
    cmpw %ax, io_used(%rip)
    jne 1f
    movzwl io_used(%rip), %edi
    movl $SYS_WAIT_IO, %eax
    call sys_call
1:
    movw $1, vq_avail(%rip)
    movl 0x060(%rbx), %eax          /* InterruptStatus */
    movl %eax, 0x064(%rbx)          /* InterruptACK */
    ret

/* Fills in and makes available the request of slot RDI for chunk io_next (then io_next++). */
io_submit:
    movq io_next(%rip), %r8
    incq io_next(%rip)
    cmpq $0, job_io_loop(%rip)
    je 0f
    movq %r8, %rax                  /* :forever: chunk modulo one pass */
    xorl %edx, %edx
    divq io_pass_chunks(%rip)
    movq %rdx, %r8
0:
    leaq io_slot_chunk(%rip), %rax
    movq %r8, (%rax, %rdi, 8)
    movq %rdi, %rax
    shlq $4, %rax
    leaq io_hdrs(%rip), %rdx
    addq %rax, %rdx
    movl $0, 0(%rdx)                /* VIRTIO_BLK_T_IN */
    cmpq $1, job_io_mode(%rip)
    je 1f
    movl $1, 0(%rdx)                /* VIRTIO_BLK_T_OUT */
1:
    movl $0, 4(%rdx)
    movq %r8, %rax
    shlq $8, %rax                   /* 256 sectors per chunk */
    movq %rax, 8(%rdx)
    leaq io_hdrs + 2048(%rip), %rdx
    movb $0xff, (%rdx, %rdi)
    cmpq $1, job_io_mode(%rip)
    je 3f
    /* write: qword i of the disk = i * PATTERN_MUL */
    movq %rdi, %rax
    shlq $IO_CHUNK_SHIFT, %rax
    leaq io_bufs(%rip), %rsi
    addq %rax, %rsi
    movq %r8, %rcx
    shlq $(IO_CHUNK_SHIFT - 3), %rcx    /* first qword index */
    movabsq $PATTERN_MUL, %r9
    movl $(IO_CHUNK / 8), %r10d
2:
    movq %rcx, %rax
    imulq %r9, %rax
    movq %rax, (%rsi)
    addq $8, %rsi
    incq %rcx
    decl %r10d
    jnz 2b
3:
    movzwl io_avail(%rip), %eax
    andl $(VQ_SIZE - 1), %eax
    leaq (%rdi, %rdi, 2), %rcx      /* head = 3 * slot */
    leaq vq_avail + 4(%rip), %rdx
    movw %cx, (%rdx, %rax, 2)
    incq io_avail(%rip)
    movq io_avail(%rip), %rax
    movw %ax, vq_avail + 2(%rip)    /* publish (x86 keeps the ring store first) */
    ret

/* Adds the checksum of the buffer of slot RDI (chunk io_slot_chunk[slot]) to io_sum. */
io_checksum:
    leaq io_slot_chunk(%rip), %rax
    movq (%rax, %rdi, 8), %rcx
    shlq $(IO_CHUNK_SHIFT - 3), %rcx
    movq %rdi, %rax
    shlq $IO_CHUNK_SHIFT, %rax
    leaq io_bufs(%rip), %rsi
    addq %rax, %rsi
    movq io_sum(%rip), %r8
    movl $(IO_CHUNK / 8), %r10d
1:
    movq (%rsi), %rax
    xorq %rcx, %rax
    addq %rax, %r8
    addq $8, %rsi
    incq %rcx
    decl %r10d
    jnz 1b
    movq %r8, io_sum(%rip)
    ret

/* Prints RAX as 16 hex digits (ring 3). */
u_hex:
    leaq hex_buf(%rip), %rdi
    movl $16, %ecx
    movq %rax, %rsi
1:
    rolq $4, %rsi
    movq %rsi, %rax
    andl $0xf, %eax
    leaq hex_digits(%rip), %rdx
    movb (%rdx, %rax), %al
    movb %al, (%rdi)
    incq %rdi
    decl %ecx
    jnz 1b
    leaq hex_buf(%rip), %rsi
    movl $16, %ecx
    jmp puts

io_no_disk:
    leaq msg_no_disk(%rip), %rsi
    movl $(msg_no_disk_end - msg_no_disk), %ecx
    call puts
    movl $EXIT_BAD_ARG, %eax
    jmp guest_exit
io_small:
    leaq msg_disk_small(%rip), %rsi
    movl $(msg_disk_small_end - msg_disk_small), %ecx
    call puts
    movl $EXIT_BAD_ARG, %eax
    jmp guest_exit
io_fail:
    leaq msg_io_fail(%rip), %rsi
    movl $(msg_io_fail_end - msg_io_fail), %ecx
    call puts
    movl $EXIT_IO_ERROR, %eax
    jmp guest_exit

/* ---- virtio-console driver (ring 3, polling): chan=echo:BYTES --------------------------------- */

/* Finds the console at CHAN_BASE (queue 0 receives, queue 1 transmits) and sends msg_chan_hello
 * on the transmit queue. chan=echo: then sends back every byte the host sends, one 4 KiB receive
 * buffer at a time, until BYTES bytes went back. chan=flood: sends BYTES bytes (byte i = i mod
 * 256) in 4 KiB buffers as fast as the device takes them. Prints the count either way
 * (vmm-core/tests/channel_kvm.rs). */
chan_run:
    movabsq $CHAN_BASE, %rbx
    cmpl $0x74726976, 0x000(%rbx)
    jne chan_missing
    cmpl $2, 0x004(%rbx)
    jne chan_missing
    cmpl $3, 0x008(%rbx)            /* VIRTIO_ID_CONSOLE */
    jne chan_missing
    movl $0, 0x070(%rbx)            /* reset */
    movl $3, 0x070(%rbx)            /* ACKNOWLEDGE | DRIVER */
    movl $1, 0x024(%rbx)
    movl $1, 0x020(%rbx)            /* VIRTIO_F_VERSION_1 (bit 32) */
    movl $0, 0x024(%rbx)
    movl $0, 0x020(%rbx)
    movl $0xb, 0x070(%rbx)          /* FEATURES_OK */
    testl $8, 0x070(%rbx)
    jz chan_fail
    xorl %ecx, %ecx
1:
    /* queue c: one page at cq_rings + c * 4096, descriptors at 0, avail at 0x400, used at 0x800 */
    movl %ecx, 0x030(%rbx)          /* QueueSel */
    movl $CQ_SIZE, 0x038(%rbx)
    movq %rcx, %rax
    shlq $12, %rax
    leaq cq_rings(%rip), %rdx
    addq %rdx, %rax
    movl %eax, 0x080(%rbx)
    movq %rax, %rdx
    shrq $32, %rdx
    movl %edx, 0x084(%rbx)
    leaq 0x400(%rax), %rdx
    movl %edx, 0x090(%rbx)
    shrq $32, %rdx
    movl %edx, 0x094(%rbx)
    leaq 0x800(%rax), %rdx
    movl %edx, 0x0a0(%rbx)
    shrq $32, %rdx
    movl %edx, 0x0a4(%rbx)
    movw $1, 0x400(%rax)            /* VRING_AVAIL_F_NO_INTERRUPT: the driver polls */
    movl $1, 0x044(%rbx)            /* QueueReady */
    incl %ecx
    cmpl $2, %ecx
    jb 1b
    movl $0xf, 0x070(%rbx)          /* DRIVER_OK */
    testl $0x40, 0x070(%rbx)        /* DEVICE_NEEDS_RESET */
    jnz chan_fail
    leaq msg_chan_hello(%rip), %rsi
    movl $(msg_chan_hello_end - msg_chan_hello), %ecx
    call chan_send
    cmpq $2, job_chan_mode(%rip)
    je chan_flood
2:
    movq chan_echoed(%rip), %rax
    cmpq job_chan_bytes(%rip), %rax
    jae 3f
    call chan_receive
    addq %rcx, chan_echoed(%rip)
    call chan_send
    jmp 2b
3:
    leaq msg_chan_done(%rip), %rsi
    movl $(msg_chan_done_end - msg_chan_done), %ecx
    call puts
    movq chan_echoed(%rip), %rax
    call u_hex
    leaq msg_nl(%rip), %rsi
    movl $1, %ecx
    jmp puts

chan_flood:
    leaq chan_buf(%rip), %rdi
    xorl %ecx, %ecx
1:
    movb %cl, (%rdi, %rcx)          /* byte i = i mod 256 (CHAN_BUF is a multiple of 256) */
    incl %ecx
    cmpl $CHAN_BUF, %ecx
    jb 1b
2:
    movq job_chan_bytes(%rip), %rcx
    subq chan_echoed(%rip), %rcx
    jz 3f
    cmpq $CHAN_BUF, %rcx
    jbe 4f
    movl $CHAN_BUF, %ecx
4:
    addq %rcx, chan_echoed(%rip)
    leaq chan_buf(%rip), %rsi
    call chan_send
    jmp 2b
3:
    leaq msg_chan_sent(%rip), %rsi
    movl $(msg_chan_sent_end - msg_chan_sent), %ecx
    call puts
    movq chan_echoed(%rip), %rax
    call u_hex
    leaq msg_nl(%rip), %rsi
    movl $1, %ecx
    jmp puts

/* Sends ECX bytes at RSI on the transmit queue (descriptor 0) and waits until the device has
 * taken them. RBX is the device. */
chan_send:
    leaq cq_rings + 4096(%rip), %rdi
    movq %rsi, 0(%rdi)
    movl %ecx, 8(%rdi)
    movl $0, 12(%rdi)               /* flags 0 (the device reads it), next 0 */
    movzwl chan_tx_avail(%rip), %eax
    movl %eax, %edx
    andl $(CQ_SIZE - 1), %edx
    movw $0, 0x404(%rdi, %rdx, 2)   /* ring[idx % size] = head 0 */
    incl %eax
    movw %ax, chan_tx_avail(%rip)
    movw %ax, 0x402(%rdi)           /* publish */
    movl $1, 0x050(%rbx)            /* QueueNotify: queue 1 */
1:
    cmpw 0x802(%rdi), %ax           /* used idx caught up */
    je 2f
    pause
    jmp 1b
2:
    ret

/* Posts chan_buf (CHAN_BUF bytes, device-writable) on the receive queue and waits until the
 * device returns it; RSI = chan_buf, ECX = the bytes it holds. RBX is the device. */
chan_receive:
    leaq cq_rings(%rip), %rdi
    leaq chan_buf(%rip), %rax
    movq %rax, 0(%rdi)
    movl $CHAN_BUF, 8(%rdi)
    movl $2, 12(%rdi)               /* VIRTQ_DESC_F_WRITE, next 0 */
    movzwl chan_rx_avail(%rip), %eax
    movl %eax, %edx
    andl $(CQ_SIZE - 1), %edx
    movw $0, 0x404(%rdi, %rdx, 2)
    incl %eax
    movw %ax, chan_rx_avail(%rip)
    movw %ax, 0x402(%rdi)
    movl $0, 0x050(%rbx)            /* QueueNotify: queue 0 */
1:
    cmpw 0x802(%rdi), %ax
    je 2f
    pause
    jmp 1b
2:
    leal -1(%rax), %edx
    andl $(CQ_SIZE - 1), %edx
    movl 0x808(%rdi, %rdx, 8), %ecx /* used ring entry: id at 0x804 + 8i, len at 0x808 + 8i */
    leaq chan_buf(%rip), %rsi
    ret

chan_missing:
    leaq msg_no_chan(%rip), %rsi
    movl $(msg_no_chan_end - msg_no_chan), %ecx
    call puts
    movl $EXIT_BAD_ARG, %eax
    jmp guest_exit
chan_fail:
    leaq msg_chan_fail(%rip), %rsi
    movl $(msg_chan_fail_end - msg_chan_fail), %ecx
    call puts
    movl $EXIT_IO_ERROR, %eax
    jmp guest_exit

/* ---- data ------------------------------------------------------------------------------------ */
    .balign 8
start_info:     .quad 0
ncpus:          .quad 1
job_ready:      .quad 0
aps_done:       .quad 0
job_units:      .quad 0
job_mem_mib:    .quad 0
job_hold_ms:    .quad 0
job_exit:       .quad 0
job_io_mode:    .quad 0         /* 1 = read, 2 = write */
job_io_mib:     .quad 0
job_io_loop:    .quad 0         /* 1 = io=...:forever */
io_pass_chunks: .quad 0         /* chunks in one pass over job_io_mib */
io_total:       .quad 0         /* chunks to do */
io_next:        .quad 0         /* next chunk to submit */
io_done:        .quad 0         /* chunks completed */
io_avail:       .quad 0         /* avail ring index */
io_used:        .quad 0         /* used ring entries consumed */
io_sum:         .quad 0         /* read checksum */
io_slot_chunk:  .fill IO_SLOTS, 8, 0
job_chan_mode:  .quad 0         /* 1 = chan=echo, 2 = chan=flood */
job_chan_bytes: .quad 0         /* their BYTES */
chan_echoed:    .quad 0         /* bytes sent back (echo) or sent (flood) */
chan_rx_avail:  .quad 0         /* avail ring index, receive queue */
chan_tx_avail:  .quad 0         /* avail ring index, transmit queue */
mem_start_sym:  .quad mem_start      /* from workload.ld: _end rounded up to 2 MiB */

msg_up:         .ascii "colo-guest: up\n"
msg_up_end:
msg_bad:        .ascii "colo-guest: bad argument: "
msg_bad_end:
msg_ignored:    .ascii "colo-guest: ignoring unknown argument: "
msg_ignored_end:
msg_mem:        .ascii "colo-guest: mem= does not fit in guest memory\n"
msg_mem_end:
msg_fault:      .ascii "colo-guest: unexpected exception vector=0x"
msg_fault_end:
msg_rip:        .ascii " rip=0x"
msg_rip_end:
msg_nl:         .ascii "\n"
hex_digits:     .ascii "0123456789abcdef"
kw_cpu:         .asciz "cpu="
kw_forever:     .asciz "forever"
kw_mem:         .asciz "mem="
kw_hold:        .asciz "hold="
kw_exit:        .asciz "exit="
kw_io_read:     .asciz "io=read:"
kw_io_write:    .asciz "io=write:"
kw_io_hostile:  .asciz "io=hostile"
kw_chan_echo:   .asciz "chan=echo:"
kw_chan_flood:  .asciz "chan=flood:"
msg_no_disk:    .ascii "colo-guest: io= needs a virtio-blk disk at 0xd0000000\n"
msg_no_disk_end:
msg_disk_small: .ascii "colo-guest: io= is larger than the disk\n"
msg_disk_small_end:
msg_io_fail:    .ascii "colo-guest: virtio-blk setup or IO failed\n"
msg_io_fail_end:
msg_io_read:    .ascii "colo-guest: io read done checksum=0x"
msg_io_read_end:
msg_io_write:   .ascii "colo-guest: io write done\n"
msg_io_write_end:
msg_hostile_unaligned: .ascii "colo-guest: hostile unaligned write status=0x"
msg_hostile_unaligned_end:
msg_hostile_reset: .ascii "colo-guest: hostile indirect chain: device needs reset\n"
msg_hostile_reset_end:
msg_chan_hello: .ascii "colo-guest: channel up\n"
msg_chan_hello_end:
msg_chan_done:  .ascii "colo-guest: chan echoed 0x"
msg_chan_done_end:
msg_chan_sent:  .ascii "colo-guest: chan sent 0x"
msg_chan_sent_end:
msg_no_chan:    .ascii "colo-guest: chan= needs a virtio-console at 0xd0008000 (--channel)\n"
msg_no_chan_end:
msg_chan_fail:  .ascii "colo-guest: virtio-console setup failed\n"
msg_chan_fail_end:

/* ---- zero-filled memory (not in the file) ---------------------------------------------------- */
    .section .iobitmap, "aw", @nobits
    .skip 8192 + 16

    .section .bss, "aw", @nobits
    .balign 4096
vq_desc:        .skip 4096
vq_avail:       .skip 4096
vq_used:        .skip 4096
io_hdrs:        .skip 4096      /* 16-byte headers at slot * 16, status bytes at 2048 + slot */
io_bufs:        .skip IO_SLOTS * IO_CHUNK
    .balign 4096
cq_rings:       .skip 2 * 4096  /* virtio-console queues 0 and 1, one page each */
chan_buf:       .skip CHAN_BUF
hex_buf:        .skip 32
    .balign 4096
kstacks:        .skip 4096 * MAX_CPUS
ustacks:        .skip 4096 * MAX_CPUS
    .balign 64
/* Read by the VMM without an exit: magic, io bytes, then one 64-byte slot per vCPU (units). */
progress:       .skip 64 + 64 * MAX_CPUS

/* ---- ELF notes: the PVH entry, and what colo-vmm needs to know -------------------------------- */
    .section .note.colo, "a", @note
    .balign 4
    .long 4                         /* namesz */
    .long 8                         /* descsz */
    .long 18                        /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .quad pvh_start32
    .balign 4
    .long 5
    .long 40
    .long 0x434f4c4f                /* "COLO" */
    .asciz "COLO"
    .balign 4
    .long 1                         /* version */
    .long MAX_CPUS
    .quad entry64
    .quad IMAGE_BASE + PML4_OFF
    .quad progress
    .quad 0
