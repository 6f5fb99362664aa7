/* unwind.c: the profiler's call stacks, from the program's own DWARF call-frame information.
 *
 * WHY NOT libunwind ALONE
 *   libunwind's unw_backtrace costs about 4-7 ns a frame; at up to 32 frames per allocation it
 *   was 40% of the CPython workload in `all` mode. Two things make this about twice as cheap:
 *
 *   1. A rule per return address. On x86-64 the code compilers emit needs three numbers to step
 *      one frame: the CFA (the caller's stack pointer) is RSP or RBP plus an offset, the return
 *      address sits at CFA-8, and RBP is either untouched or saved at CFA plus an offset. Those
 *      are computed once per return address from .eh_frame (through .eh_frame_hdr's sorted table)
 *      and kept in a global hash table read without locks (and a direct-mapped copy per heap).
 *      A frame then costs a probe and two loads. Code with frame pointers is the rule "CFA = RBP + 16, RBP at CFA - 16": that is the
 *      frame-pointer walk, used exactly where the CFI says it is correct.
 *
 *   2. The previous stack's outer frames, checked in memory. Stepping from a state (rip, rsp,
 *      rbp) reads the return address at CFA-8 and perhaps a saved RBP; what follows is a function
 *      of those words alone. Each heap keeps its last stack: the state of every frame and the
 *      address of every word read. When a new walk reaches a state equal to one of the old stack's
 *      (same rip and rsp, and the same rbp where a later step depends on it), it compares the
 *      words the old walk read beyond it that the walk depends on (the return addresses, and a
 *      saved rbp where a later step uses it) with memory; where they are equal, the old frames
 *      are the new ones, and where one is not, the walk goes on and looks for the old stack
 *      again further out (the same frame calling through another function). Nothing on the
 *      stack is written (a shadow stack patches return addresses; this does not, so
 *      exceptions, longjmp and debuggers see the program as it is). A stack that differs from
 *      the previous one in its innermost k frames costs k steps and a compare per frame. The
 *      allocator's own frames above the program's are stepped over in one go where their return
 *      addresses sit as the last walk through them found them (own_skip). The walker also keeps
 *      the polynomial sums of every suffix of its stack (internal.h), so the profiler hashes the
 *      window it keeps in O(1).
 *
 * SAFETY
 *   Every word read lies in [rsp, hi) of the calling thread's own stack (hi from the mapping
 *   that holds it, once per thread: stack_bounds_init), and each step must move the CFA up. A stack this does
 *   not know (a signal alternate stack, a coroutine's) returns -1, as do rules it does not model
 *   (signal frames, CFA expressions, registers saved elsewhere): the caller then uses libunwind.
 *   A return address in no loaded module (JIT code) ends the stack there: nothing describes how
 *   to step through it, and guessing is what reads wild memory.
 *
 * Rules are computed inside a dl_iterate_phdr callback, so no dlclose can unmap the CFI being
 * read; our dlclose wrapper marks the unloaded range's rules stale and bumps a generation that
 * retires every heap's saved stack. After the first dlclose, a rule computed for a new module
 * also tells the profiler which module it met (prof_module_seen: module generations).
 *
 * TALLY_UNWIND=check has the profiler compare every stack with libunwind's (prof.c).
 *
 * Exports (internal.h): unwind_stack, unwind_forget, unwind_counts,
 * unwind_fork_prepare/parent/child. */
#include "internal.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define UNW_MAXF (PROF_MAX_DEPTH + 1 + UNW_OWN_FRAMES) /* one more: is there a frame beyond? */
#define UNW_CAP (3 * UNW_MAXF + 1)
#define UNW_MID UNW_MAXF /* where a stack starts when it is laid out anew */
#define UNW_L0 512        /* a heap's own cache of rules */

/* ---- rules --------------------------------------------------------------------------------
 * A rule is one 64-bit word:
 *   bits 0-2   kind
 *   bit 3      the CFA is RBP + offset (else RSP + offset)
 *   bit 4      RBP is saved in this frame, at CFA + rbp_off
 *   bits 8-31  CFA offset (1 .. 2^24-1)
 *   bits 32-47 rbp_off, signed */
enum {
    RULE_NONE = 0,    /* not in the table */
    RULE_STEP = 1,    /* step with the numbers below */
    RULE_END = 2,     /* the outermost frame: the CFI marks its return address undefined */
    RULE_FOREIGN = 3, /* CFI we do not model (signal frame, expression): use libunwind */
    RULE_NOCODE = 4,  /* in no loaded module: the stack ends here */
    RULE_STALE = 5,   /* its module was unloaded: compute again */
};
#define RULE_KIND(r) ((unsigned)(r)&7u)
#define RULE_FP(r) (((r) >> 3) & 1u)
#define RULE_SAVES_BP(r) (((r) >> 4) & 1u)
#define RULE_CFA_OFF(r) ((uintptr_t)(((r) >> 8) & 0xffffffu))
#define RULE_BP_OFF(r) ((intptr_t)(int16_t)(uint16_t)((r) >> 32))

typedef struct rent_s {
    _Atomic uintptr_t pc; /* 0: empty; written last, with release */
    _Atomic uint64_t rule;
} rent_t;

typedef struct rtab_s {
    size_t mask, used;
    rent_t e[];
} rtab_t;

static rtab_t *_Atomic rtab;
static pthread_mutex_t rtab_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t unw_gen = 1;

static inline size_t rhash(uintptr_t pc) {
    return (size_t)((pc * 0x9E3779B97F4A7C15ULL) >> 32);
}

/* ---- reading .eh_frame ------------------------------------------------------------------------ */
enum {
    DW_EH_PE_absptr = 0x00, DW_EH_PE_uleb128 = 0x01, DW_EH_PE_udata2 = 0x02,
    DW_EH_PE_udata4 = 0x03, DW_EH_PE_udata8 = 0x04, DW_EH_PE_sleb128 = 0x09,
    DW_EH_PE_sdata2 = 0x0a, DW_EH_PE_sdata4 = 0x0b, DW_EH_PE_sdata8 = 0x0c,
    DW_EH_PE_pcrel = 0x10, DW_EH_PE_datarel = 0x30, DW_EH_PE_indirect = 0x80,
    DW_EH_PE_omit = 0xff,
};

typedef struct rd_s {
    const uint8_t *p, *end;
    bool bad;
} rd_t;

static uint64_t rd_fixed(rd_t *r, unsigned n) {
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return 0;
    }
    uint64_t v = 0;
    memcpy(&v, r->p, n); /* little-endian */
    r->p += n;
    return v;
}

static uint64_t rd_uleb(rd_t *r) {
    uint64_t v = 0;
    for (unsigned shift = 0; !r->bad; shift += 7) {
        if (r->p >= r->end || shift > 63) {
            r->bad = true;
            break;
        }
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    return v;
}

static int64_t rd_sleb(rd_t *r) {
    uint64_t v = 0;
    unsigned shift = 0;
    uint8_t b = 0;
    do {
        if (r->bad || r->p >= r->end || shift > 63) {
            r->bad = true;
            return 0;
        }
        b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
    } while (b & 0x80);
    if (shift < 64 && (b & 0x40))
        v |= ~(uint64_t)0 << shift;
    return (int64_t)v;
}

/* A pointer in encoding enc; datarel is relative to data (the .eh_frame_hdr). */
static uintptr_t rd_ptr(rd_t *r, uint8_t enc, uintptr_t data) {
    if (enc == DW_EH_PE_omit)
        return 0;
    uintptr_t at = (uintptr_t)r->p, v;
    switch (enc & 0x0f) {
    case DW_EH_PE_absptr: v = (uintptr_t)rd_fixed(r, 8); break;
    case DW_EH_PE_uleb128: v = (uintptr_t)rd_uleb(r); break;
    case DW_EH_PE_udata2: v = (uintptr_t)rd_fixed(r, 2); break;
    case DW_EH_PE_udata4: v = (uintptr_t)rd_fixed(r, 4); break;
    case DW_EH_PE_udata8: v = (uintptr_t)rd_fixed(r, 8); break;
    case DW_EH_PE_sleb128: v = (uintptr_t)rd_sleb(r); break;
    case DW_EH_PE_sdata2: v = (uintptr_t)(intptr_t)(int16_t)rd_fixed(r, 2); break;
    case DW_EH_PE_sdata4: v = (uintptr_t)(intptr_t)(int32_t)rd_fixed(r, 4); break;
    case DW_EH_PE_sdata8: v = (uintptr_t)rd_fixed(r, 8); break;
    default: r->bad = true; return 0;
    }
    switch (enc & 0x70) {
    case 0: break;
    case DW_EH_PE_pcrel: v += at; break;
    case DW_EH_PE_datarel: v += data; break;
    default: r->bad = true; return 0; /* textrel, funcrel, aligned: not used on x86-64 */
    }
    if (enc & DW_EH_PE_indirect)
        r->bad = true; /* only personality pointers use it, and we skip those by length */
    return v;
}

/* The rules of the registers we follow, as the CFA program leaves them. */
enum { REG_SAME = 0, REG_UNDEF, REG_OFFSET, REG_OTHER };
/* The other callee-saved registers (rbx, r12..r15) are followed only for the leak check's full
 * step (unwind_caller): the profiler's walk needs rsp, rbp and the return address alone. */
#define CS_N 5
static const uint8_t cs_dwarf[CS_N] = {3, 12, 13, 14, 15};
typedef struct cfa_state_s {
    int cfa_reg;  /* 6 (rbp) or 7 (rsp); -1: an expression or another register */
    int64_t cfa_off;
    int bp_how, ra_how;
    int64_t bp_off, ra_off;
    int8_t cs_how[CS_N];
    int32_t cs_off[CS_N];
} cfa_state_t;

static int cs_index(uint64_t reg) {
    for (int i = 0; i < CS_N; i++)
        if (cs_dwarf[i] == reg)
            return i;
    return -1;
}

typedef struct cie_s {
    uint64_t code_align;
    int64_t data_align;
    uint64_t ra_reg;
    uint8_t fde_enc;
    bool has_z, signal;
    const uint8_t *insn, *insn_end;
} cie_t;

/* One entry (CIE or FDE) of .eh_frame at p: its contents [*body, *end). */
static bool entry_bounds(const uint8_t *p, const uint8_t **body, const uint8_t **end) {
    uint32_t len32;
    memcpy(&len32, p, 4);
    if (len32 == 0 || len32 == 0xffffffffu) /* terminator, or 64-bit DWARF (not in .eh_frame) */
        return false;
    *body = p + 4;
    *end = p + 4 + len32;
    return true;
}

static bool parse_cie(const uint8_t *p, cie_t *c) {
    const uint8_t *body, *end;
    if (!entry_bounds(p, &body, &end))
        return false;
    rd_t r = {body, end, false};
    if (rd_fixed(&r, 4) != 0) /* a CIE's id is 0 in .eh_frame */
        return false;
    unsigned version = (unsigned)rd_fixed(&r, 1);
    if (version != 1 && version != 3 && version != 4)
        return false;
    const char *aug = (const char *)r.p;
    size_t alen = strnlen(aug, (size_t)(r.end - r.p));
    if (r.p + alen >= r.end)
        return false;
    r.p += alen + 1;
    if (version == 4)
        rd_fixed(&r, 2); /* address and segment selector sizes */
    c->code_align = rd_uleb(&r);
    c->data_align = rd_sleb(&r);
    c->ra_reg = version == 1 ? rd_fixed(&r, 1) : rd_uleb(&r);
    c->fde_enc = DW_EH_PE_absptr;
    c->has_z = aug[0] == 'z';
    c->signal = false;
    if (c->has_z) {
        uint64_t zlen = rd_uleb(&r);
        if (r.bad || zlen > (uint64_t)(r.end - r.p))
            return false;
        const uint8_t *zend = r.p + zlen;
        for (const char *a = aug + 1; *a && !r.bad; a++) {
            if (*a == 'R') {
                c->fde_enc = (uint8_t)rd_fixed(&r, 1);
            } else if (*a == 'L') {
                rd_fixed(&r, 1);
            } else if (*a == 'S') {
                c->signal = true;
            } else if (*a == 'P') {
                uint8_t penc = (uint8_t)rd_fixed(&r, 1);
                rd_ptr(&r, penc & 0x0f, 0); /* the personality routine: skipped */
            } else if (*a != 'B' && *a != 'G') {
                break; /* unknown: the length still gets us past it */
            }
        }
        r.p = zend;
    } else if (aug[0] != '\0') {
        return false; /* "eh" and other pre-'z' augmentations */
    }
    if (r.bad)
        return false;
    c->insn = r.p;
    c->insn_end = r.end;
    return true;
}

#define CFA_STACK 16

/* A rule that is not an offset, for rbp (register 6) or the return address register. */
static void set_how(cfa_state_t *s, const cie_t *c, uint64_t reg, int bp_how, int ra_how) {
    int k;
    if (reg == 6)
        s->bp_how = bp_how;
    else if (reg == c->ra_reg)
        s->ra_how = ra_how;
    else if ((k = cs_index(reg)) >= 0)
        s->cs_how[k] = (int8_t)bp_how;
}

/* Runs a CFA program until the location passes target. */
static bool run_cfa(const cie_t *c, const uint8_t *p, const uint8_t *end, uintptr_t loc,
                    uintptr_t target, cfa_state_t *s, const cfa_state_t *init) {
    cfa_state_t stack[CFA_STACK];
    unsigned depth = 0;
    rd_t r = {p, end, false};
    while (r.p < r.end && !r.bad) {
        uint8_t op = *r.p++;
        uint64_t reg, delta = 0;
        int64_t off;
        bool advance = false;
        switch (op >> 6) {
        case 1: delta = (op & 0x3f) * c->code_align; advance = true; break;
        case 2:
            reg = op & 0x3f;
            off = (int64_t)rd_uleb(&r) * c->data_align;
            goto set_offset;
        case 3:
            reg = op & 0x3f;
            goto restore;
        default: break;
        }
        if (!advance && (op >> 6) == 0) {
            switch (op) {
            case 0x00: break;                                    /* nop */
            case 0x01:                                           /* set_loc */
                return false;                                    /* never emitted by gcc/clang */
            case 0x02: delta = rd_fixed(&r, 1) * c->code_align; advance = true; break;
            case 0x03: delta = rd_fixed(&r, 2) * c->code_align; advance = true; break;
            case 0x04: delta = rd_fixed(&r, 4) * c->code_align; advance = true; break;
            case 0x05: /* offset_extended */
                reg = rd_uleb(&r);
                off = (int64_t)rd_uleb(&r) * c->data_align;
                goto set_offset;
            case 0x06: reg = rd_uleb(&r); goto restore;
            case 0x07: /* undefined */
                set_how(s, c, rd_uleb(&r), REG_UNDEF, REG_UNDEF);
                break;
            case 0x08: /* same_value: the return address the same as the callee's is no rule */
                set_how(s, c, rd_uleb(&r), REG_SAME, REG_OTHER);
                break;
            case 0x09: /* register */
                reg = rd_uleb(&r);
                rd_uleb(&r);
                set_how(s, c, reg, REG_OTHER, REG_OTHER);
                break;
            case 0x0a: /* remember_state */
                if (depth == CFA_STACK)
                    return false;
                stack[depth++] = *s;
                break;
            case 0x0b: /* restore_state */
                if (depth == 0)
                    return false;
                *s = stack[--depth];
                break;
            case 0x0c: /* def_cfa */
                s->cfa_reg = (int)rd_uleb(&r);
                s->cfa_off = (int64_t)rd_uleb(&r);
                break;
            case 0x0d: s->cfa_reg = (int)rd_uleb(&r); break;         /* def_cfa_register */
            case 0x0e: s->cfa_off = (int64_t)rd_uleb(&r); break;     /* def_cfa_offset */
            case 0x0f: {                                             /* def_cfa_expression */
                uint64_t n = rd_uleb(&r);
                if (n > (uint64_t)(r.end - r.p))
                    return false;
                r.p += n;
                s->cfa_reg = -1;
                break;
            }
            case 0x10:   /* expression */
            case 0x16: { /* val_expression */
                reg = rd_uleb(&r);
                uint64_t n = rd_uleb(&r);
                if (n > (uint64_t)(r.end - r.p))
                    return false;
                r.p += n;
                set_how(s, c, reg, REG_OTHER, REG_OTHER);
                break;
            }
            case 0x11: /* offset_extended_sf */
                reg = rd_uleb(&r);
                off = rd_sleb(&r) * c->data_align;
                goto set_offset;
            case 0x12: /* def_cfa_sf */
                s->cfa_reg = (int)rd_uleb(&r);
                s->cfa_off = rd_sleb(&r) * c->data_align;
                break;
            case 0x13: s->cfa_off = rd_sleb(&r) * c->data_align; break; /* def_cfa_offset_sf */
            case 0x14:                                                 /* val_offset */
            case 0x15:                                                 /* val_offset_sf */
                reg = rd_uleb(&r);
                if (op == 0x14)
                    rd_uleb(&r);
                else
                    rd_sleb(&r);
                set_how(s, c, reg, REG_OTHER, REG_OTHER);
                break;
            case 0x2e: rd_uleb(&r); break; /* GNU_args_size */
            case 0x2f:                     /* GNU_negative_offset_extended */
                reg = rd_uleb(&r);
                off = -(int64_t)rd_uleb(&r) * c->data_align;
                goto set_offset;
            default: return false; /* vendor opcodes we do not know */
            }
        }
        if (advance) {
            if (loc + delta > target)
                break;
            loc += delta;
        }
        continue;
    set_offset:
        if (reg == 6) {
            s->bp_how = REG_OFFSET;
            s->bp_off = off;
        } else if (reg == c->ra_reg) {
            s->ra_how = REG_OFFSET;
            s->ra_off = off;
        } else {
            int k = cs_index(reg);
            if (k >= 0 && off >= INT32_MIN && off <= INT32_MAX) {
                s->cs_how[k] = REG_OFFSET;
                s->cs_off[k] = (int32_t)off;
            } else if (k >= 0) {
                s->cs_how[k] = REG_OTHER;
            }
        }
        continue;
    restore:
        if (!init)
            return false; /* restore inside the CIE's own program */
        if (reg == 6) {
            s->bp_how = init->bp_how;
            s->bp_off = init->bp_off;
        } else if (reg == c->ra_reg) {
            s->ra_how = init->ra_how;
            s->ra_off = init->ra_off;
        } else {
            int k = cs_index(reg);
            if (k >= 0) {
                s->cs_how[k] = init->cs_how[k];
                s->cs_off[k] = init->cs_off[k];
            }
        }
    }
    return !r.bad;
}

static uint64_t rule_of_state(const cfa_state_t *s) {
    if (s->ra_how == REG_UNDEF)
        return RULE_END;
    if (s->ra_how != REG_OFFSET || s->ra_off != -8 || (s->cfa_reg != 6 && s->cfa_reg != 7) ||
        s->cfa_off <= 0 || s->cfa_off >= (1 << 24) || s->bp_how == REG_OTHER)
        return RULE_FOREIGN;
    uint64_t r = RULE_STEP | (uint64_t)(s->cfa_reg == 6) << 3 | (uint64_t)s->cfa_off << 8;
    if (s->bp_how == REG_OFFSET) {
        if (s->bp_off < INT16_MIN || s->bp_off > INT16_MAX)
            return RULE_FOREIGN;
        r |= (uint64_t)1 << 4 | (uint64_t)(uint16_t)(int16_t)s->bp_off << 32;
    }
    return r;
}

/* The CFI state at code address target of the module whose .eh_frame_hdr is hdr; false where
 * there is none we can read (no search table, a gap without CFI, a signal frame). */
static bool fde_state(const uint8_t *hdr, uintptr_t target, cfa_state_t *out) {
    if (hdr[0] != 1)
        return false;
    uint8_t ptr_enc = hdr[1], count_enc = hdr[2], table_enc = hdr[3];
    rd_t r = {hdr + 4, hdr + 4 + 16, false};
    rd_ptr(&r, ptr_enc, (uintptr_t)hdr);
    uintptr_t count = rd_ptr(&r, count_enc, (uintptr_t)hdr);
    if (r.bad || table_enc != (DW_EH_PE_datarel | DW_EH_PE_sdata4) || count == 0)
        return false; /* no binary search table: libunwind would scan .eh_frame */
    const int32_t *tab = (const int32_t *)(const void *)r.p;
    /* The last entry whose start is <= target. */
    size_t lo = 0, hi = count;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)hdr + (intptr_t)tab[2 * mid] <= target)
            lo = mid;
        else
            hi = mid;
    }
    if ((uintptr_t)hdr + (intptr_t)tab[2 * lo] > target)
        return false; /* before the first function with CFI */
    const uint8_t *fde = hdr + tab[2 * lo + 1];
    const uint8_t *body, *end;
    if (!entry_bounds(fde, &body, &end))
        return false;
    uint32_t cie_off;
    memcpy(&cie_off, body, 4);
    if (cie_off == 0)
        return false;
    cie_t c;
    if (!parse_cie(body - cie_off, &c))
        return false;
    rd_t f = {body + 4, end, false};
    uintptr_t start = rd_ptr(&f, c.fde_enc, (uintptr_t)hdr);
    uintptr_t range = rd_ptr(&f, c.fde_enc & 0x0f, (uintptr_t)hdr);
    if (c.has_z) {
        uint64_t n = rd_uleb(&f);
        if (n > (uint64_t)(f.end - f.p))
            return false;
        f.p += n;
    }
    if (f.bad || target < start || target - start >= range)
        return false; /* in a gap between functions: code without CFI */
    if (c.signal)
        return false; /* a signal frame (__restore_rt): libunwind knows its layout */
    cfa_state_t init = {.cfa_reg = -1, .bp_how = REG_SAME, .ra_how = REG_SAME};
    if (!run_cfa(&c, c.insn, c.insn_end, start, UINTPTR_MAX, &init, NULL))
        return false;
    *out = init;
    return run_cfa(&c, f.p, f.end, start, target, out, &init);
}

/* The rule at code address target (a return address minus one) of the module whose
 * .eh_frame_hdr is hdr. */
static uint64_t rule_from_hdr(const uint8_t *hdr, uintptr_t target) {
    cfa_state_t s;
    return fde_state(hdr, target, &s) ? rule_of_state(&s) : RULE_FOREIGN;
}

typedef struct rule_walk_s {
    uintptr_t pc;
    uint64_t rule;
    bool watch;                 /* some module was unloaded: note which one this is */
    uintptr_t base, lo, hi;
    char build_id[65];
} rule_walk_t;

static _Atomic bool unw_watch; /* set at the first dlclose */

/* Does the module hold pc? Then *hdr is its .eh_frame_hdr (NULL: it has none). */
static bool module_holds(const struct dl_phdr_info *info, uintptr_t pc, const uint8_t **hdr) {
    const ElfW(Phdr) *eh = NULL;
    bool inside = false;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t a = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && pc >= a && pc - a < ph->p_memsz)
            inside = true;
        else if (ph->p_type == PT_GNU_EH_FRAME)
            eh = ph;
    }
    *hdr = eh ? (const uint8_t *)(info->dlpi_addr + eh->p_vaddr) : NULL;
    return inside;
}

/* dl_iterate_phdr holds the loader's lock while this runs: the module cannot go away. */
static int rule_module(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    rule_walk_t *w = arg;
    const uint8_t *hdr;
    if (!module_holds(info, w->pc, &hdr))
        return 0;
    w->rule = hdr ? rule_from_hdr(hdr, w->pc) : RULE_FOREIGN;
    if (w->watch) {
        w->base = info->dlpi_addr;
        prof_load_range(info, &w->lo, &w->hi);
        prof_build_id(info, w->build_id);
    }
    return 1;
}

/* The same without the loader's lock: glibc's _dl_find_object (2.35), lock-free, made for
 * unwinders (libgcc's uses it). A fork taken while another thread was in dlopen or dlclose
 * leaves the child with the loader's write lock held, and dl_iterate_phdr in the child would wait
 * for it forever; _dl_find_object never waits. The code at pc is in a frame live on this thread's
 * stack, so its module cannot go away meanwhile. After a dlclose the walker also wants the
 * module's base, range and build-id: from its ELF header, mapped at the start of its range (the
 * first segment maps the file's start in every object ld.so loads). False: ask dl_iterate_phdr
 * (an address in no object, such as JIT code, or an object laid out otherwise). */
#ifdef DLFO_EH_SEGMENT_TYPE
static int (*_Atomic find_object)(void *pc, struct dl_find_object *out);
static _Atomic bool find_object_looked;

static int (*find_object_fn(void))(void *, struct dl_find_object *) {
    if (!atomic_load_explicit(&find_object_looked, memory_order_acquire)) {
        atomic_store(&find_object,
                     (int (*)(void *, struct dl_find_object *))dlsym(RTLD_DEFAULT, "_dl_find_object"));
        atomic_store_explicit(&find_object_looked, true, memory_order_release);
    }
    return atomic_load(&find_object);
}

static bool rule_fast_lookup(rule_walk_t *w) {
    int (*fo_fn)(void *, struct dl_find_object *) = find_object_fn();
    struct dl_find_object fo;
    if (!fo_fn || fo_fn((void *)w->pc, &fo) != 0)
        return false;
    if (w->watch) {
        const ElfW(Ehdr) *eh = fo.dlfo_map_start;
        uintptr_t phend = (uintptr_t)fo.dlfo_map_start + eh->e_phoff +
                          (uintptr_t)eh->e_phnum * sizeof(ElfW(Phdr));
        if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_phentsize != sizeof(ElfW(Phdr)) ||
            phend > (uintptr_t)fo.dlfo_map_end || !fo.dlfo_link_map)
            return false;
        struct dl_phdr_info info = {
            .dlpi_addr = fo.dlfo_link_map->l_addr,
            .dlpi_name = fo.dlfo_link_map->l_name,
            .dlpi_phdr = (const ElfW(Phdr) *)((const char *)eh + eh->e_phoff),
            .dlpi_phnum = eh->e_phnum,
        };
        w->base = info.dlpi_addr;
        prof_load_range(&info, &w->lo, &w->hi);
        prof_build_id(&info, w->build_id);
    }
    w->rule = fo.dlfo_eh_frame ? rule_from_hdr(fo.dlfo_eh_frame, w->pc) : RULE_FOREIGN;
    return true;
}
#else
static bool rule_fast_lookup(rule_walk_t *w) {
    (void)w;
    return false;
}
#endif

/* ---- a full step, for the leak check -----------------------------------------------------------
 * The leak check wants the state of the frame that called exit (or the library's API): where its
 * live stack starts and what its callee-saved registers hold. That takes every callee-saved
 * register through every frame in between, which the profiler's rules leave out. */
__asm__(".text\n"
        ".globl unwind_getcontext\n"
        ".hidden unwind_getcontext\n"
        ".type unwind_getcontext, @function\n"
        "unwind_getcontext:\n"
        ".cfi_startproc\n"
        "    mov (%rsp), %rax\n"
        "    mov %rax, 0(%rdi)\n"   /* rip: where the caller goes on */
        "    lea 8(%rsp), %rax\n"
        "    mov %rax, 8(%rdi)\n"   /* rsp: the caller's, once this returns */
        "    mov %rbp, 16(%rdi)\n"
        "    mov %rbx, 24(%rdi)\n"
        "    mov %r12, 32(%rdi)\n"
        "    mov %r13, 40(%rdi)\n"
        "    mov %r14, 48(%rdi)\n"
        "    mov %r15, 56(%rdi)\n"
        "    movl $0x3f, 64(%rdi)\n" /* all six known */
        "    ret\n"
        ".cfi_endproc\n"
        ".size unwind_getcontext, .-unwind_getcontext\n");
_Static_assert(offsetof(unwind_regs_t, rbp) == 16 && offsetof(unwind_regs_t, cs) == 24 &&
                   offsetof(unwind_regs_t, known) == 64,
               "unwind_getcontext's layout");

typedef struct hdr_walk_s {
    uintptr_t pc;
    const uint8_t *hdr;
} hdr_walk_t;

static int hdr_module(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    hdr_walk_t *w = arg;
    return module_holds(info, w->pc, &w->hdr);
}

static const uint8_t *eh_hdr_of(uintptr_t pc);

/* Reads the word at a if [a, a + 8) lies in [lo, hi). */
static bool read_in(uintptr_t a, uintptr_t lo, uintptr_t hi, uintptr_t *v) {
    if (a < lo || a > hi - 8)
        return false;
    *v = *(const uintptr_t *)a;
    return true;
}

bool unwind_caller(unwind_regs_t *r, uintptr_t hi) {
    const uint8_t *hdr = eh_hdr_of(r->rip - 1);
    cfa_state_t s;
    if (!hdr || !fde_state(hdr, r->rip - 1, &s) || s.ra_how != REG_OFFSET)
        return false;
    uintptr_t base;
    int k;
    if (s.cfa_reg == 7)
        base = r->rsp;
    else if (s.cfa_reg == 6 && (r->known & 1))
        base = r->rbp;
    else if (s.cfa_reg >= 0 && (k = cs_index((uint64_t)s.cfa_reg)) >= 0 &&
             (r->known >> (k + 1) & 1))
        base = r->cs[k];
    else
        return false; /* an expression (DRAP), or a register we do not know */
    uintptr_t cfa = base + (uintptr_t)s.cfa_off, lo = r->rsp, ra, v;
    if (cfa <= r->rsp || cfa > hi || !read_in(cfa + (uintptr_t)s.ra_off, lo, hi, &ra) || ra == 0)
        return false;
    unwind_regs_t n = *r;
    if (s.bp_how == REG_OFFSET && read_in(cfa + (uintptr_t)s.bp_off, lo, hi, &v))
        n.rbp = v;
    else if (s.bp_how != REG_SAME)
        n.known &= ~1u;
    for (k = 0; k < CS_N; k++) {
        if (s.cs_how[k] == REG_OFFSET &&
            read_in(cfa + (uintptr_t)(intptr_t)s.cs_off[k], lo, hi, &v))
            n.cs[k] = v;
        else if (s.cs_how[k] != REG_SAME)
            n.known &= ~(1u << (k + 1));
    }
    n.rip = ra;
    n.rsp = cfa;
    *r = n;
    return true;
}

/* ---- the rule table ------------------------------------------------------------------------- */
static bool rtab_grow_locked(void) {
    rtab_t *old = atomic_load_explicit(&rtab, memory_order_relaxed);
    size_t cap = old ? (old->mask + 1) * 2 : 512; /* grows with the code the stacks pass */
    rtab_t *t = os_map(sizeof(rtab_t) + cap * sizeof(rent_t));
    if (!t)
        return false;
    t->mask = cap - 1;
    for (size_t i = 0; old && i <= old->mask; i++) {
        uintptr_t pc = atomic_load_explicit(&old->e[i].pc, memory_order_relaxed);
        uint64_t rule = atomic_load_explicit(&old->e[i].rule, memory_order_relaxed);
        if (!pc || RULE_KIND(rule) == RULE_STALE)
            continue;
        size_t j = rhash(pc) & t->mask;
        while (atomic_load_explicit(&t->e[j].pc, memory_order_relaxed))
            j = (j + 1) & t->mask;
        atomic_store_explicit(&t->e[j].rule, rule, memory_order_relaxed);
        atomic_store_explicit(&t->e[j].pc, pc, memory_order_relaxed);
        t->used++;
    }
    /* The old table stays mapped: a walk may be probing it. Tables double, so what is kept
     * is at most the size of the current one. */
    atomic_store_explicit(&rtab, t, memory_order_release);
    return true;
}

static void rule_put(uintptr_t pc, uint64_t rule) {
    lib_lock(&rtab_lock);
    rtab_t *t = atomic_load_explicit(&rtab, memory_order_relaxed);
    if (!t || (t->used + 1) * 2 > t->mask + 1) {
        if (!rtab_grow_locked()) {
            lib_unlock(&rtab_lock);
            return;
        }
        t = atomic_load_explicit(&rtab, memory_order_relaxed);
    }
    size_t j = rhash(pc) & t->mask;
    for (;; j = (j + 1) & t->mask) {
        uintptr_t k = atomic_load_explicit(&t->e[j].pc, memory_order_relaxed);
        if (k == pc) {
            atomic_store_explicit(&t->e[j].rule, rule, memory_order_relaxed);
            break;
        }
        if (k == 0) {
            atomic_store_explicit(&t->e[j].rule, rule, memory_order_relaxed);
            atomic_store_explicit(&t->e[j].pc, pc, memory_order_release);
            t->used++;
            break;
        }
    }
    lib_unlock(&rtab_lock);
}

/* pc is a return address: the rule is the one in force at the call, pc - 1. */
static noinline uint64_t rule_slow(uintptr_t pc) {
    rule_walk_t w = {.pc = pc - 1, .rule = RULE_NOCODE,
                     .watch = atomic_load_explicit(&unw_watch, memory_order_relaxed)};
    if (!rule_fast_lookup(&w))
        unwind_iterate_phdr(rule_module, &w);
    if (w.watch && w.hi)
        prof_module_seen(w.base, w.lo, w.hi, w.build_id);
    rule_put(pc, w.rule);
    return w.rule;
}

static inline uint64_t rule_get(const rtab_t *t, uintptr_t pc) {
    if (likely(t != NULL)) {
        for (size_t j = rhash(pc) & t->mask;; j = (j + 1) & t->mask) {
            uintptr_t k = atomic_load_explicit(&t->e[j].pc, memory_order_acquire);
            if (k == pc) {
                uint64_t r = atomic_load_explicit(&t->e[j].rule, memory_order_relaxed);
                if (likely(RULE_KIND(r) != RULE_STALE))
                    return r;
                break;
            }
            if (k == 0)
                break;
        }
    }
    return rule_slow(pc);
}

void unwind_forget(uintptr_t lo, uintptr_t hi) {
    lib_lock(&rtab_lock);
    rtab_t *t = atomic_load_explicit(&rtab, memory_order_relaxed);
    for (size_t i = 0; t && i <= t->mask; i++) {
        uintptr_t pc = atomic_load_explicit(&t->e[i].pc, memory_order_relaxed);
        if (pc > lo && pc <= hi) /* return addresses: the rule is for pc - 1 */
            atomic_store_explicit(&t->e[i].rule, RULE_STALE, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&unw_gen, 1, memory_order_release);
    atomic_store_explicit(&unw_watch, true, memory_order_relaxed);
    lib_unlock(&rtab_lock);
}

/* glibc's fork does not take the lock dl_iterate_phdr holds: a child forked while another
 * thread was inside it inherits that lock held, and its first dl_iterate_phdr waits forever
 * (our walker calls it at every return address it has not seen, in the parent's allocating
 * threads). So every call of ours goes under phdr_lock, which fork's prepare handler holds. */
static pthread_mutex_t phdr_lock = PTHREAD_MUTEX_INITIALIZER;

int unwind_iterate_phdr(int (*cb)(struct dl_phdr_info *, size_t, void *), void *arg) {
    lib_lock(&phdr_lock);
    int r = dl_iterate_phdr(cb, arg);
    lib_unlock(&phdr_lock);
    return r;
}

void unwind_fork_prepare(void) {
    lib_lock(&rtab_lock);
    lib_lock(&phdr_lock);
}

void unwind_fork_parent(void) {
    lib_unlock(&phdr_lock);
    lib_unlock(&rtab_lock);
}

void unwind_fork_child(void) {
    pthread_mutex_init(&phdr_lock, NULL);
    pthread_mutex_init(&rtab_lock, NULL);
}

/* ---- the thread's stack ------------------------------------------------------------------------- */
static __thread uintptr_t tls_stack_lo TLS_IE, tls_stack_hi TLS_IE;

/* ld.so's __libc_stack_end, looked up at the start (unwind_init): the walker runs inside
 * allocations, where neither dlsym nor anything that takes glibc's locks may be called. */
static void **libc_stack_end;

/* The mapping that holds sp, from /proc/self/maps with plain system calls: nothing here takes a
 * lock or allocates. pthread_getattr_np, which the walker once asked, holds the thread's lock
 * while it allocates, and an allocation recorded inside it (Rust's runtime and Ruby ask it on
 * every thread) waited for that lock forever. The file is in address order: the read stops at
 * the line that holds sp. */
static bool mapping_holding(uintptr_t sp, uintptr_t *lo, uintptr_t *hi) {
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char buf[4096];
    size_t have = 0;
    bool found = false, past = false;
    while (!found && !past) {
        ssize_t r = read(fd, buf + have, sizeof buf - have);
        if (r <= 0)
            break;
        have += (size_t)r;
        size_t start = 0;
        for (size_t i = 0; i < have && !found && !past; i++) {
            if (buf[i] != '\n')
                continue;
            uintptr_t a = 0, b = 0;
            size_t k = start;
            for (; k < i && buf[k] != '-'; k++)
                a = a * 16 + (uintptr_t)(buf[k] <= '9' ? buf[k] - '0' : (buf[k] | 32) - 'a' + 10);
            for (k++; k < i && buf[k] != ' '; k++)
                b = b * 16 + (uintptr_t)(buf[k] <= '9' ? buf[k] - '0' : (buf[k] | 32) - 'a' + 10);
            if (sp >= a && sp < b) {
                *lo = a;
                *hi = b;
                found = true;
            }
            past = a > sp;
            start = i + 1;
        }
        memmove(buf, buf + start, have - start);
        have -= start;
        if (have == sizeof buf)
            have = 0; /* a line longer than the buffer: not a mapping we want */
    }
    close(fd);
    return found;
}

static noinline void stack_bounds_init(void) {
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0), lo, hi;
    tls_stack_lo = tls_stack_hi = 1; /* unknown: every walk goes to libunwind */
    bool main_thread = getpid() == (pid_t)syscall(SYS_gettid);
    struct rlimit rl;
    uintptr_t span = (uintptr_t)1 << 30;
    if (main_thread && getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < span)
        span = (uintptr_t)rl.rlim_cur;
    if (mapping_holding(sp, &lo, &hi)) {
        /* the main thread's stack grows down as far as RLIMIT_STACK allows */
        tls_stack_lo = main_thread && hi - span < lo ? hi - span : lo;
        tls_stack_hi = hi;
        return;
    }
    /* No /proc (a sandbox may hide it). The page holding __libc_stack_end is the main stack's,
     * and so is everything from the stack pointer up to it; below, the stack goes down at most
     * RLIMIT_STACK. Another thread's descriptor (its thread pointer) sits at the top of the
     * block glibc gave it, above its stack and its TLS (a stack the program supplied too); below,
     * the stack goes down at most the default size, RLIMIT_STACK's. */
    uintptr_t top;
    if (main_thread)
        top = libc_stack_end ? ((uintptr_t)*libc_stack_end | 4095) + 1 : 0;
    else
        top = (uintptr_t)pthread_self();
    if (!main_thread && getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < span)
        span = (uintptr_t)rl.rlim_cur;
    if (!top || sp >= top || top - sp > span)
        return;
    tls_stack_lo = top - span;
    tls_stack_hi = top;
}

void unwind_init(void) {
    libc_stack_end = dlsym(RTLD_DEFAULT, "__libc_stack_end");
#ifdef DLFO_EH_SEGMENT_TYPE
    find_object_fn();
#endif
}

void unwind_stack_bounds(void) {
    if (tls_stack_hi == 0)
        stack_bounds_init();
}

size_t unwind_stack_below(uintptr_t sp) {
    uintptr_t lo = tls_stack_lo, hi = tls_stack_hi;
    if (hi <= 1 || sp < lo + 4096 || sp >= hi)
        return 0; /* unknown, or not this thread's stack (a signal's alternate one) */
    return sp - lo - 4096;
}

/* ---- the walk ------------------------------------------------------------------------------------ */
/* A heap's last stack, frames [top, bot) innermost first, each with the state (rip, rsp, rbp) a
 * walk reaches it in. slot[k] is where the step into frame k read rbp[k] (0: it kept the inner
 * frame's). fl[k] has FL_FP when the step out of frame k computes its CFA from rbp[k], and
 * FL_NB when the stored walk from frame k on depends on rbp[k] at all: most code keeps no frame
 * pointer, rbp is just a saved register there, and its value must not stop a match.
 *
 * A walk returns at most max frames, but the stored stack may go further out: frames beyond
 * the ones returned were not checked this time, and are checked before they are used again.
 * sums[k] covers frames [k, bot); sums[bot] is zero. */
#define FL_FP 1u
#define FL_NB 2u
typedef struct unw_cache_s {
    uint64_t gen;
    uintptr_t hi;
    unsigned top, bot;
    bool complete; /* the outermost stored frame's rule is RULE_END */
    unwind_counts_t counts; /* this heap's, summed by unwind_counts */
    uintptr_t rip[UNW_CAP], rsp[UNW_CAP], rbp[UNW_CAP], slot[UNW_CAP];
    stack_sums_t sums[UNW_CAP];
    uint8_t fl[UNW_CAP];
    /* The frames of the walk in progress, before they are placed: one record per frame, copied
     * out field by field (GCC made five calls of memcpy of five parallel arrays' copy, for the
     * two frames a walk takes). */
    struct {
        uintptr_t rip, rsp, rbp, slot;
        uint8_t fl;
    } nf[UNW_MAXF];
    /* The library's own frames above the program's, as the last walk through them found them
     * (own_learn): from the walk's first state, at rsp0 with rip0, the program's frame is at
     * rsp0 + delta. The return addresses inside our code are at rsp0 + off[j] (checked each
     * time: they fix every step's rule); the program's rbp was saved at rsp0 + bpoff, or, with
     * bpoff 0, is the first state's. n 0: none known. */
    struct {
        uintptr_t rip0, delta, bpoff;
        unsigned n;
        uintptr_t off[UNW_OWN_FRAMES], ra[UNW_OWN_FRAMES];
    } own;
    /* The rules this heap used last, direct-mapped: the global table is too large for L1. */
    struct {
        uintptr_t pc;
        uint64_t rule;
    } l0[UNW_L0];
    /* The stack memo (unw_memo_t, mapped at its first entry), and what this walk's look-up
     * found for unwind_memo_store: the program's innermost frame (frame 0) and the Python key;
     * last_*: the program's frames the walk returned, [last_at, last_at + last_n), and whether
     * they are the stack's answer whatever lies beyond them (last_ok). */
    struct unw_memo_s *memo;
    struct {
        bool armed;
        uint64_t hash; /* memo_hash of the key */
        uintptr_t rip, rsp, rbp;
        py_memo_key_t pk;
    } probe;
    unsigned last_top, last_at, last_n;
    bool last_ok;
} unw_cache_t;

/* ---- the stack memo --------------------------------------------------------------------------
 * A thread's stacks, each remembered with the site it was interned as, in sets of ways by a
 * hash of the key: the program's innermost frame (return address, stack pointer), and the
 * innermost Python frame (address, instruction pointer) with its caller's instruction pointer.
 * An entry holds frames 1..n-1 as (where the return address lies, CFA - 8; the return
 * address): frame i's return address read at its CFA proves frame i is the stored one when
 * frame i - 1 is, as confirm() reasons; the rbp values a stored step used (FL_NB) are read
 * again where they were saved, or, for frame 0, compared with the walk's. The frames end where
 * the walk's answer did (depth frames, or a frame whose rule ends the stack), so nothing beyond
 * them counts. Every read lies between rsp0 and the stack's top (the same thread's: the memo
 * is cleared when the top moves), memory the thread's stack maps, so they are made without a
 * branch between them. A Python thread's entry also holds the merge's trace
 * (python_memo_same). The key only finds candidates: a hit is the words, all read again.
 * 128 entries of 1 KiB a thread: 98% of the CPython workload's 4.5M stacks. Direct-mapped,
 * 256 entries answered 85% and 8,192 entries 88% (stacks that share a key differ in callers
 * further out), and the larger tables cost more in cache and TLB misses than they saved. */
#define UNW_MEMO 128 /* entries, in sets of UNW_MEMO_WAYS whose keys share a hash */
#define UNW_MEMO_WAYS 4
_Static_assert((UNW_MEMO_WAYS & (UNW_MEMO_WAYS - 1)) == 0, "ways are taken in turn by a mask");
#define UNW_MEMO_WORDS 120 /* an entry's 1 KiB: a stack that needs more is not remembered */
#define UNW_MEMO_CHK 6
typedef struct memo_e_s {
    uintptr_t rip0, rsp0, pf, pip, pip2; /* the key */
    uint64_t payload;
    uintptr_t rbp0;         /* frame 0's rbp, compared when use_rbp0 */
    uint8_t n, nchk, use_rbp0, py, ncf; /* n 0: empty; py: the words hold a Python trace */
    /* Frames 1..n-1, then the saved rbp values to compare: the first n - 1 + nchk words are
     * where each lies, the next as many what it holds; then the Python trace (ncf
     * _PyCFrame pointers, as python_memo_save packs it). */
    uintptr_t w[UNW_MEMO_WORDS];
} memo_e_t;
_Static_assert(sizeof(memo_e_t) == 1024, "an entry is 1 KiB");
typedef struct unw_memo_s {
    uint64_t gen; /* the walker's generation and stack top the entries belong to */
    uintptr_t hi;
    uint8_t next[UNW_MEMO / UNW_MEMO_WAYS]; /* the way a store takes next, per set */
    /* each entry's key hash (0: empty), by set: the ways are told apart in one cache line */
    uint64_t tag[UNW_MEMO / UNW_MEMO_WAYS][UNW_MEMO_WAYS];
    _Alignas(64) memo_e_t e[UNW_MEMO];
} unw_memo_t;

/* The key's hash: its top bits the set, and never 0 (an empty entry's tag). */
static inline uint64_t memo_hash(uintptr_t rip, uintptr_t rsp, const py_memo_key_t *pk) {
    uint64_t x = (rip ^ (rsp << 17) ^ (rsp >> 4)) * 0x9E3779B97F4A7C15ULL;
    x ^= (pk->f ^ (pk->ip << 13) ^ (pk->ip2 << 29)) * 0xC2B2AE3D27D4EB4FULL;
    return x | 1;
}
#define MEMO_SET(x) ((unsigned)((x) >> 59) & (UNW_MEMO / UNW_MEMO_WAYS - 1))
_Static_assert(UNW_MEMO / UNW_MEMO_WAYS == 32, "MEMO_SET takes 5 bits");

/* e's stack holds at rsp0 (e->rsp0, whose stack top is this thread's): its words read again,
 * four at a time. */
static inline __attribute__((always_inline)) bool memo_confirm(const memo_e_t *e, uintptr_t rbp0) {
    uintptr_t d = e->use_rbp0 ? rbp0 ^ e->rbp0 : 0;
    size_t k = (size_t)e->n - 1 + e->nchk;
    const uintptr_t *at = e->w, *v = e->w + k, *end = e->w + k;
    for (; at + 4 <= end; at += 4, v += 4)
        d |= (*(const uintptr_t *)at[0] ^ v[0]) | (*(const uintptr_t *)at[1] ^ v[1]) |
             (*(const uintptr_t *)at[2] ^ v[2]) | (*(const uintptr_t *)at[3] ^ v[3]);
    for (; at < end; at++, v++)
        d |= *(const uintptr_t *)*at ^ *v;
    return d == 0;
}

void unwind_memo_store(heap_t *h, uint64_t payload, bool py) {
    unw_cache_t *c = h->unw;
    if (!c || !c->probe.armed)
        return;
    c->probe.armed = false;
    /* from the look-up's frame 0: the walker may have found frames of ours beyond it (a path
     * through the allocator its layout of them does not cover) */
    unsigned at = c->last_top, n = c->last_at - at + c->last_n;
    if (!c->last_ok || c->last_n == 0 || 2 * (size_t)n > UNW_MEMO_WORDS ||
        c->rip[at] != c->probe.rip || c->rsp[at] != c->probe.rsp)
        return;
    /* the saved rbp values a step used (FL_NB), frame 0's aside */
    uintptr_t chk[UNW_MEMO_CHK];
    unsigned nchk = 0;
    bool use_rbp0 = c->fl[at] & FL_NB;
    for (unsigned i = 1; i < n; i++) {
        uintptr_t a = c->slot[at + i];
        if (!(c->fl[at + i] & FL_NB) || !a)
            continue; /* a frame that kept the inner frame's rbp: checked there */
        if (nchk == UNW_MEMO_CHK || a < c->rsp[at])
            return;
        chk[nchk++] = a;
    }
    size_t k = n - 1 + nchk;
    if (2 * k > UNW_MEMO_WORDS)
        return;
    unw_memo_t *m = c->memo;
    if (!m) {
        if (!(m = os_map(sizeof *m)))
            return;
        m->gen = c->gen;
        m->hi = c->hi;
        c->memo = m;
    }
    if (m->gen != c->gen || m->hi != c->hi) {
        memset(m->tag, 0, sizeof m->tag);
        for (unsigned j = 0; j < UNW_MEMO; j++)
            m->e[j].n = 0;
        m->gen = c->gen;
        m->hi = c->hi;
    }
    /* the set's ways taken in turn */
    unsigned set = MEMO_SET(c->probe.hash), way = m->next[set]++ & (UNW_MEMO_WAYS - 1);
    memo_e_t *e = &m->e[set * UNW_MEMO_WAYS + way];
    m->tag[set][way] = 0; /* empty until whole */
    e->n = 0;
    for (unsigned i = 1; i < n; i++) {
        e->w[i - 1] = c->rsp[at + i] - 8;
        e->w[k + i - 1] = c->rip[at + i];
    }
    for (unsigned j = 0; j < nchk; j++) {
        e->w[n - 1 + j] = chk[j];
        e->w[k + n - 1 + j] = *(const uintptr_t *)chk[j];
    }
    unsigned ncf = 0;
    if (py && !python_memo_save(h, e->w + 2 * k, UNW_MEMO_WORDS - 2 * k, &ncf))
        return;
    e->nchk = (uint8_t)nchk;
    e->use_rbp0 = use_rbp0;
    e->rbp0 = c->probe.rbp;
    e->py = py;
    e->ncf = (uint8_t)ncf;
    e->rip0 = c->probe.rip;
    e->rsp0 = c->rsp[at];
    e->pf = c->probe.pk.f;
    e->pip = c->probe.pk.ip;
    e->pip2 = c->probe.pk.ip2;
    e->payload = payload;
    e->n = (uint8_t)n;
    m->tag[set][way] = c->probe.hash;
}

/* The CFA of the frame that returns to ra, if its rule is rsp + offset: that offset. */
bool unwind_rsp_offset(uintptr_t ra, uintptr_t *off) {
    uint64_t r = rule_get(atomic_load_explicit(&rtab, memory_order_acquire), ra);
    if (RULE_KIND(r) != RULE_STEP || RULE_FP(r))
        return false;
    *off = RULE_CFA_OFF(r);
    return true;
}

typedef struct ustate_s {
    uintptr_t rip, rsp, rbp, slot;
} ustate_t;

enum { WALK_OK, WALK_END, WALK_STOP, WALK_FOREIGN, WALK_MATCHED, WALK_MAX };

/* One step out of frame s; the caller's frame replaces it. */
static inline __attribute__((always_inline)) int step(unw_cache_t *c, const rtab_t *t,
                                                       uintptr_t hi, ustate_t *s, uint8_t *fl) {
    unsigned i = (unsigned)(s->rip ^ (s->rip >> 9)) & (UNW_L0 - 1);
    uint64_t r;
    if (likely(c->l0[i].pc == s->rip)) {
        r = c->l0[i].rule;
    } else {
        r = rule_get(t, s->rip);
        c->l0[i].pc = s->rip;
        c->l0[i].rule = r;
    }
    if (unlikely(RULE_KIND(r) != RULE_STEP)) {
        switch (RULE_KIND(r)) {
        case RULE_END: return WALK_END;
        case RULE_FOREIGN: return WALK_FOREIGN;
        default: return WALK_STOP;
        }
    }
    *fl = (uint8_t)RULE_FP(r);
    uintptr_t cfa = (RULE_FP(r) ? s->rbp : s->rsp) + RULE_CFA_OFF(r);
    if (unlikely(cfa < s->rsp + 8 || cfa > hi))
        return WALK_STOP;
    uintptr_t a = 0, bp = s->rbp;
    if (RULE_SAVES_BP(r)) {
        a = cfa + (uintptr_t)RULE_BP_OFF(r);
        if (unlikely(a < s->rsp || a > hi - 8))
            return WALK_STOP;
        bp = *(const uintptr_t *)a;
    }
    uintptr_t ra = *(const uintptr_t *)(cfa - 8);
    if (unlikely(ra == 0))
        return WALK_STOP;
    s->rip = ra;
    s->rsp = cfa;
    s->rbp = bp;
    s->slot = a;
    return WALK_OK;
}

/* Walks from state s into the scratch frames until s equals a stored frame in [q, qend)
 * (WALK_MATCHED, *qm its index; s is not stored), limit frames are stored (WALK_MAX), or the stack
 * ends. *n gets the number stored. */
static inline __attribute__((always_inline)) int walk(unw_cache_t *c, const rtab_t *t,
                                                       uintptr_t hi, ustate_t *s, unsigned q0,
                                                       unsigned qend0, unsigned limit,
                                                       unsigned *n, unsigned *qm) {
    size_t k = 0, q = q0, qend = qend0;
    for (;;) {
        while (q < qend && c->rsp[q] < s->rsp)
            q++;
        if (q < qend && c->rsp[q] == s->rsp && c->rip[q] == s->rip &&
            (c->rbp[q] == s->rbp || !(c->fl[q] & FL_NB))) {
            *n = (unsigned)k;
            *qm = (unsigned)q;
            return WALK_MATCHED;
        }
        c->nf[k].rip = s->rip;
        c->nf[k].rsp = s->rsp;
        c->nf[k].rbp = s->rbp;
        c->nf[k].slot = s->slot;
        c->nf[k].fl = 0;
        if (++k == limit) {
            *n = (unsigned)k;
            return WALK_MAX;
        }
        int st = step(c, t, hi, s, &c->nf[k - 1].fl);
        if (st != WALK_OK) {
            *n = (unsigned)k;
            return st;
        }
    }
}

/* The stored frames from k on that memory still confirms, up to lim: returns the last one.
 * Every word the stored walk read that matters is read again: the return addresses, and a
 * saved rbp where a later step uses it (FL_NB; such a frame's rbp[] is current, it was
 * compared). Other frames' rbp[] are left as they were: replay_rbp brings them up to date
 * where a walk goes on from one. */
static unsigned confirm(const unw_cache_t *c, unsigned k, unsigned lim) {
    size_t i = (size_t)k + 1, end = lim; /* full-width indexes: no extension in the loop */
    for (;;) {
        /* Four frames none of which is FL_NB at once, their return addresses compared without a
         * branch each. Reading past a frame that no longer holds is safe: the stored frames'
         * CFAs lie between frame k's stack pointer, this walk's, and the stack's top, memory
         * the thread's stack maps. */
        if (i + 4 <= end) {
            uint32_t fl4;
            memcpy(&fl4, &c->fl[i], sizeof fl4);
            uintptr_t d = (*(const uintptr_t *)(c->rsp[i] - 8) ^ c->rip[i]) |
                          (*(const uintptr_t *)(c->rsp[i + 1] - 8) ^ c->rip[i + 1]) |
                          (*(const uintptr_t *)(c->rsp[i + 2] - 8) ^ c->rip[i + 2]) |
                          (*(const uintptr_t *)(c->rsp[i + 3] - 8) ^ c->rip[i + 3]);
            if (likely(d == 0 && !(fl4 & (FL_NB * 0x01010101u)))) {
                i += 4;
                continue;
            }
        }
        /* else one by one, up to four frames */
        for (size_t stop = i + 4 < end ? i + 4 : end; i < stop; i++) {
            if (*(const uintptr_t *)(c->rsp[i] - 8) != c->rip[i])
                return (unsigned)(i - 1);
            if (unlikely(c->fl[i] & FL_NB) && c->slot[i] &&
                *(const uintptr_t *)c->slot[i] != c->rbp[i])
                return (unsigned)(i - 1);
        }
        if (i >= end)
            return (unsigned)(i - 1);
    }
}

/* The true rbp of stored frames [q, j], confirmed, frame q's being rbp: each saved one is read
 * again where the stored walk read it, the others are the inner frame's. */
static void replay_rbp(unw_cache_t *c, unsigned q, uintptr_t rbp, unsigned j) {
    c->rbp[q] = rbp;
    for (unsigned k = q + 1; k <= j; k++) {
        if (c->slot[k])
            rbp = *(const uintptr_t *)c->slot[k];
        c->rbp[k] = rbp;
    }
}

/* FL_NB and the sums of frames [c->top, end), from end - 1 in; frames from end on are done. */
static void mark_frames(unw_cache_t *c, unsigned end) {
    size_t bot = c->bot, top = c->top;
    bool nb = end < bot && (c->fl[end] & FL_NB);
    stack_sums_t h = c->sums[end];
    for (size_t k = end; k-- > top;) {
        nb = k + 1 < bot && ((c->fl[k] & FL_FP) || (c->slot[k + 1] == 0 && nb));
        c->fl[k] = (uint8_t)((c->fl[k] & FL_FP) | (nb ? FL_NB : 0));
        c->sums[k] = h = stack_sums_push(h, c->rip[k]);
    }
}

static unw_cache_t *cache_of(heap_t *h) {
    if (likely(h->unw != NULL))
        return h->unw;
    h->unw = os_map(sizeof(unw_cache_t));
    return h->unw;
}

/* Stored frames [from, end) move to start at to. */
static void move_frames(unw_cache_t *c, unsigned to, unsigned from, unsigned end) {
    size_t len = end - from;
    memmove(&c->rip[to], &c->rip[from], len * sizeof c->rip[0]);
    memmove(&c->rsp[to], &c->rsp[from], len * sizeof c->rsp[0]);
    memmove(&c->rbp[to], &c->rbp[from], len * sizeof c->rbp[0]);
    memmove(&c->slot[to], &c->slot[from], len * sizeof c->slot[0]);
    memmove(&c->fl[to], &c->fl[from], len * sizeof c->fl[0]);
    memmove(&c->sums[to], &c->sums[from], (len + 1) * sizeof c->sums[0]); /* and the zero */
}

/* The n scratch frames go to [at, at + n). */
static inline __attribute__((always_inline)) void place_scratch(unw_cache_t *c, unsigned at,
                                                                 unsigned n) {
    for (size_t k = 0, a = at; k < n; k++, a++) {
        c->rip[a] = c->nf[k].rip;
        c->rsp[a] = c->nf[k].rsp;
        c->rbp[a] = c->nf[k].rbp;
        c->slot[a] = c->nf[k].slot;
        c->fl[a] = c->nf[k].fl;
    }
}

/* How many of the innermost stored frames are the caller's own (in [lo, hi)). */
static unsigned own_frames(const unw_cache_t *c, unsigned top, unsigned bot, uintptr_t lo,
                           uintptr_t hi) {
    size_t k = top, end = bot < top + UNW_OWN_FRAMES ? bot : top + UNW_OWN_FRAMES;
    while (k < end && c->rip[k] - lo < hi - lo)
        k++;
    return (unsigned)(k - top);
}

/* Steps over the library's own frames in one go when they are laid out as own_learn saw them:
 * the same first return address, and the same return addresses at the same offsets from it
 * (so every step's rule is the same, and none of them uses rbp). Every word read lies in
 * [rsp0, rsp0 + delta), below hi. False: walk them. */
static inline bool own_skip(const unw_cache_t *c, uintptr_t hi, ustate_t *s) {
    size_t n = c->own.n;
    uintptr_t r0 = s->rsp, d = c->own.delta;
    if (!n || s->rip != c->own.rip0 || d > hi - r0)
        return false;
    for (size_t j = 0; j + 1 < n; j++)
        if (*(const uintptr_t *)(r0 + c->own.off[j]) != c->own.ra[j])
            return false;
    uintptr_t ra = *(const uintptr_t *)(r0 + d - 8);
    if (ra == 0)
        return false;
    s->rip = ra;
    s->rsp = r0 + d;
    if (c->own.bpoff) {
        s->slot = r0 + c->own.bpoff;
        s->rbp = *(const uintptr_t *)s->slot;
    } else {
        s->slot = 0;
    }
    return true;
}

/* Learns the own frames [top, top + own) of a walk that went through them, if no step among
 * them computed its CFA from rbp (then the layout is a function of the return addresses). */
static void own_learn(unw_cache_t *c, unsigned top, unsigned own) {
    c->own.n = 0;
    if (own == 0 || own > UNW_OWN_FRAMES || top + own >= c->bot)
        return;
    uintptr_t r0 = c->rsp[top], bp = 0;
    for (unsigned j = 0; j < own; j++) {
        if (c->fl[top + j] & FL_FP)
            return;
        c->own.off[j] = c->rsp[top + j + 1] - 8 - r0;
        c->own.ra[j] = c->rip[top + j + 1];
        if (c->slot[top + j + 1])
            bp = c->slot[top + j + 1] - r0;
    }
    c->own.rip0 = c->rip[top];
    c->own.delta = c->rsp[top + own] - r0;
    c->own.bpoff = bp;
    c->own.n = own;
}

noinline int unwind_stack(heap_t *h, unsigned depth, uintptr_t self_lo, uintptr_t self_hi,
                          const uintptr_t **out, const stack_sums_t **sums, unw_sps_t *sps,
                          unw_memo_q_t *mq) {
    /* Frame 0 is our caller: GCC gives this function a frame pointer for the builtin. */
    const uintptr_t *fr = __builtin_frame_address(0);
    ustate_t s = {fr[1], (uintptr_t)(fr + 2), fr[0], 0};
    if (unlikely(tls_stack_hi == 0))
        stack_bounds_init();
    uintptr_t hi = tls_stack_hi;
    unw_cache_t *c = cache_of(h);
    if (unlikely(c == NULL))
        return -1;
    c->probe.armed = false;
    if (unlikely(s.rsp < tls_stack_lo || s.rsp >= hi)) {
        c->counts.foreign++;
        return -1;
    }
    unsigned max = depth + UNW_OWN_FRAMES; /* until we know how many frames are ours */
    uint64_t gen = atomic_load_explicit(&unw_gen, memory_order_acquire);
    if (c->gen != gen || c->hi != hi) {
        if (c->gen != gen)
            memset(c->l0, 0, sizeof c->l0);
        c->gen = gen;
        c->hi = hi;
        c->top = c->bot = UNW_MID;
        c->complete = false;
        c->own.n = 0;
    }
    /* the allocator's own frames, stepped over as the last walk through them laid them out */
    bool skipped = own_skip(c, hi, &s);
    if (skipped) {
        max = depth;
        if (mq) {
            /* the stack memo: the key, then the entry's words read again */
            py_memo_key_t *pk = &c->probe.pk;
            bool py = __atomic_load_n(&python_active, __ATOMIC_RELAXED);
            if (py)
                python_memo_key(h, pk);
            else
                pk->ts = pk->f = pk->ip = pk->ip2 = 0;
            uint64_t hash = memo_hash(s.rip, s.rsp, pk);
            unsigned set = MEMO_SET(hash);
            c->probe.armed = true;
            c->probe.hash = hash;
            c->probe.rip = s.rip;
            c->probe.rsp = s.rsp;
            c->probe.rbp = s.rbp;
            unw_memo_t *m = c->memo;
            if (m && m->gen == gen && m->hi == hi) {
                for (unsigned way = 0; way < UNW_MEMO_WAYS; way++) {
                    if (m->tag[set][way] != hash)
                        continue;
                    const memo_e_t *e = &m->e[set * UNW_MEMO_WAYS + way];
                    if (e->rip0 != s.rip || e->rsp0 != s.rsp || e->pf != pk->f ||
                        e->pip != pk->ip || e->pip2 != pk->ip2 || e->py != py)
                        continue;
                    /* the Python part first: where two stacks share the key, they differ there */
                    if ((uint32_t)(e->payload >> 32) != mq->gen ||
                        (py && !python_memo_same(e->w + 2 * ((size_t)e->n - 1 + e->nchk), e->ncf,
                                                 pk->ts)) ||
                        !memo_confirm(e, s.rbp))
                        continue;
                    mq->hit = true;
                    mq->payload = e->payload;
                    c->counts.memo++;
                    if (!mq->check) {
                        c->probe.armed = false;
                        return UNWIND_MEMO_HIT;
                    }
                    break;
                }
            }
        }
    }
    const rtab_t *t = atomic_load_explicit(&rtab, memory_order_acquire);

    /* Step out frame by frame until a frame equals one of the stored stack's. */
    unsigned n, q = 0, top, bot = c->bot, marked, own = UINT_MAX; /* UINT_MAX: to be counted */
    bool complete = c->complete;
    int st = walk(c, t, hi, &s, c->top, c->bot, max, &n, &q);
    c->counts.walked += n;
    if (st == WALK_FOREIGN)
        goto foreign;
    if (st != WALK_MATCHED) {
        top = UNW_MID;
        place_scratch(c, top, n);
        bot = top + n;
        complete = st == WALK_END;
        marked = bot;
        goto done;
    }
    /* The stored frames from q on follow the n new ones; a stored stack is at most UNW_MAXF
     * frames. tail_intact: [q, bot) is still the stored tail, so its marks hold. */
    bool tail_intact = true;
    unsigned end = bot - q > UNW_MAXF - n ? q + UNW_MAXF - n : bot;
    if (end != bot) {
        tail_intact = false;
        complete = false;
    }
    if (q < n || q - n + UNW_MAXF >= UNW_CAP) {
        move_frames(c, UNW_MID + n, q, end);
        end = UNW_MID + n + (end - q);
        q = UNW_MID + n;
    }
    bot = end;
    top = q - n;
    place_scratch(c, top, n);
    c->slot[q] = s.slot;
    own = own_frames(c, top, bot, self_lo, self_hi);
    max = own + depth;

    /* Confirm stored frames; where one no longer holds, walk on and look for the stored stack
     * again further out (a call made from the same frame through another function). */
    uintptr_t rbp_q = s.rbp;
    for (;;) {
        unsigned lim = bot < top + max ? bot : top + max;
        unsigned j = confirm(c, q, lim);
        c->counts.reused += j + 1 - q;
        if (j + 1 == lim && (lim < bot || complete || lim - top == max)) {
            marked = tail_intact ? q : bot;
            goto settle;
        }
        replay_rbp(c, q, rbp_q, j);
        /* Frame j + 1 changed, or the stored stack stopped short of max frames without reaching
         * the end: step out of j, then walk until what is left of the stored stack matches. */
        if (j + 1 <= top + own)
            own = UINT_MAX; /* the frames it counted may change: count them again */
        s = (ustate_t){c->rip[j], c->rsp[j], c->rbp[j], 0};
        st = step(c, t, hi, &s, &c->fl[j]);
        n = 0;
        if (st == WALK_OK)
            st = walk(c, t, hi, &s, j + 1, bot, max - (j + 1 - top), &n, &q);
        c->counts.walked += n;
        if (st == WALK_FOREIGN)
            goto foreign;
        if (st != WALK_MATCHED) {
            place_scratch(c, j + 1, n);
            bot = j + 1 + n;
            complete = st == WALK_END;
            tail_intact = false;
            marked = bot;
            goto settle;
        }
        /* n new frames replace stored frames [j + 1, q); the rest moves next to them. */
        unsigned to = j + 1 + n;
        end = bot - q > top + UNW_MAXF - to ? q + (top + UNW_MAXF - to) : bot;
        if (end != bot) {
            tail_intact = false;
            complete = false;
        }
        if (to != q)
            move_frames(c, to, q, end);
        bot = to + (end - q);
        place_scratch(c, j + 1, n);
        c->slot[to] = s.slot;
        q = to;
        rbp_q = s.rbp;
        continue;
    settle:
        /* A change near the top may have put more of our own frames there than max allowed
         * for (another path through the allocator): then go on to depth frames of the
         * program's from the last good one. */
        {
            if (own == UINT_MAX)
                own = own_frames(c, top, bot, self_lo, self_hi);
            unsigned want = own + depth;
            unsigned last = (bot < top + max ? bot : top + max) - 1;
            if (want <= max || (complete && last + 1 == bot))
                break;
            replay_rbp(c, q, rbp_q, last);
            max = want;
            q = last;
            rbp_q = c->rbp[q];
        }
    }
done:
    c->top = top;
    c->bot = bot;
    c->complete = complete;
    if (marked == bot)
        c->sums[bot] = (stack_sums_t){0, 0};
    mark_frames(c, marked);
    c->counts.stacks++;
    if (own == UINT_MAX)
        own = own_frames(c, top, bot, self_lo, self_hi);
    if (!skipped)
        own_learn(c, top, own);
    unsigned got = (bot - top < max ? bot - top : max) - own;
    c->last_top = top;
    c->last_at = top + own;
    c->last_n = got < depth ? got : depth;
    c->last_ok = c->last_n == depth || (complete && top + own + c->last_n == bot);
    *out = &c->rip[top + own];
    *sums = &c->sums[top + own];
    if (sps) {
        sps->sp = &c->rsp[top + own];
        sps->avail = bot - (top + own);
        sps->end = complete ? tls_stack_hi : 0;
    }
    return (int)(got < depth ? got : depth);
foreign:
    c->top = c->bot = UNW_MID;
    c->complete = false;
    c->probe.armed = false;
    c->counts.foreign++;
    return -1;
}

bool unwind_thread_stack(uintptr_t *lo, uintptr_t *hi) {
    *lo = tls_stack_lo;
    *hi = tls_stack_hi;
    return tls_stack_hi > tls_stack_lo + 1;
}

static void add_counts(heap_t *h, void *arg) {
    unwind_counts_t *sum = arg;
    const unw_cache_t *c = h->unw;
    if (!c)
        return;
    sum->stacks += c->counts.stacks;
    sum->foreign += c->counts.foreign;
    sum->walked += c->counts.walked;
    sum->reused += c->counts.reused;
    sum->memo += c->counts.memo;
}

void unwind_counts(unwind_counts_t *sum) {
    memset(sum, 0, sizeof *sum);
    heap_foreach_unlocked(add_counts, sum);
}

bool unwind_object_range(uintptr_t pc, uintptr_t *lo, uintptr_t *hi) {
#ifdef DLFO_EH_SEGMENT_TYPE
    int (*fo_fn)(void *, struct dl_find_object *) = find_object_fn();
    struct dl_find_object fo;
    if (fo_fn && fo_fn((void *)pc, &fo) == 0) {
        *lo = (uintptr_t)fo.dlfo_map_start;
        *hi = (uintptr_t)fo.dlfo_map_end;
        return true;
    }
#endif
    (void)pc;
    *lo = *hi = 0;
    return false;
}

/* The .eh_frame_hdr of the module holding pc, or NULL. */
static const uint8_t *eh_hdr_of(uintptr_t pc) {
#ifdef DLFO_EH_SEGMENT_TYPE
    int (*fo_fn)(void *, struct dl_find_object *) = find_object_fn();
    struct dl_find_object fo;
    if (fo_fn && fo_fn((void *)pc, &fo) == 0)
        return fo.dlfo_eh_frame;
#endif
    hdr_walk_t h = {pc, NULL};
    unwind_iterate_phdr(hdr_module, &h);
    return h.hdr;
}
