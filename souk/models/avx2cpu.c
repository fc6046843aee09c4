/* An AVX2-only CPU, as every library in this process sees it (souk/models/isa.py builds and preloads it).

   Loaded with LD_PRELOAD, its constructor turns on CPUID faulting (Linux arch_prctl(ARCH_SET_CPUID, 0), where the
   CPU or hypervisor offers it: flag cpuid_fault) and answers each CPUID from a SIGSEGV handler: the real answer
   with AVX-512, AVX-VNNI, AVX512-BF16/FP16 and AMX masked out. oneDNN, MKL, torch (cpuinfo), numpy, OpenVINO
   and ONNX Runtime (MLAS) then pick the AVX2 kernels they pick on such a CPU. Not masked: what the dynamic
   loader chose before this constructor ran (glibc's string functions). The setting is inherited by threads and
   children forked, and reset by execve (a child that keeps LD_PRELOAD installs it again).
   souk_avx2_cpuid() says whether the mask is on. A SIGSEGV that is not a CPUID goes to the previous handler. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <asm/prctl.h>

static struct sigaction previous;
static volatile int active;

int souk_avx2_cpuid(void) { return active; }

static long set_cpuid(int on) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, on); }

static void mask(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    if (leaf == 7 && sub == 0) {
        r[1] &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
        r[2] &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
        r[3] &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
    } else if (leaf == 7 && sub == 1) {
        r[0] &= ~((1u << 4) | (1u << 5) | (1u << 21) | (1u << 23));
        r[3] &= ~((1u << 4) | (1u << 5) | (1u << 10) | (1u << 19));
    } else if (leaf == 0xd && sub == 0) {
        r[0] &= ~((1u << 5) | (1u << 6) | (1u << 7) | (1u << 17) | (1u << 18));
    } else if (leaf == 0x1d || leaf == 0x1e || leaf == 0x24) {
        r[0] = r[1] = r[2] = r[3] = 0;
    }
}

static void on_segv(int sig, siginfo_t *info, void *raw) {
    ucontext_t *uc = raw;
    unsigned char *ip = (unsigned char *)uc->uc_mcontext.gregs[REG_RIP];
    if (active && ip[0] == 0x0f && ip[1] == 0xa2) {
        uint32_t leaf = (uint32_t)uc->uc_mcontext.gregs[REG_RAX], sub = (uint32_t)uc->uc_mcontext.gregs[REG_RCX];
        uint32_t r[4];
        set_cpuid(1);
        __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
        set_cpuid(0);
        mask(leaf, sub, r);
        uc->uc_mcontext.gregs[REG_RAX] = r[0];
        uc->uc_mcontext.gregs[REG_RBX] = r[1];
        uc->uc_mcontext.gregs[REG_RCX] = r[2];
        uc->uc_mcontext.gregs[REG_RDX] = r[3];
        uc->uc_mcontext.gregs[REG_RIP] += 2;
        return;
    }
    if (previous.sa_flags & SA_SIGINFO && previous.sa_sigaction) { previous.sa_sigaction(sig, info, raw); return; }
    if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) { previous.sa_handler(sig); return; }
    signal(sig, SIG_DFL);
    raise(sig);
}

__attribute__((constructor)) static void start(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &previous) != 0) return;
    if (set_cpuid(0) != 0) { sigaction(SIGSEGV, &previous, 0); return; }
    active = 1;
}
