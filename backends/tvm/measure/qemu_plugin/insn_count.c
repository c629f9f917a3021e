/* Exact executed-instruction counts of a program run under qemu-user, by instruction text.
 *
 * A TCG plugin (qemu's plugin API, version 1 as in qemu 7.2): when qemu translates a block, every instruction's
 * disassembly is looked up in a table of counters and the block gets one inline "add" per distinct text in it,
 * so counting costs a few host instructions per block execution and no callbacks. At exit the table is written
 * as "count<TAB>text" lines to the file named by the argument out=PATH. Which texts are SIMD is decided by the
 * caller (tcc.backends.insn_count), with the same rules as the static instruction mix.
 * With the argument addresses=on every instruction is counted by "address<TAB>text" instead (the guest virtual
 * address in hex), so that the caller can attribute the counts to the functions of the program's symbol tables.
 * With blocks=on every translated block is counted instead, one inline add per execution, and written as
 * "count<TAB>address<TAB>bytes<TAB>text|text|..." (its instructions' encodings in hex, space-separated, and their
 * disassembly): what a cycle model (tcc.backends.tvm.measure.cycles) needs to price each block once.
 * With marks=on as well, the guest marks points of its run with a write(2) to file descriptor -1 (which fails,
 * EBADF, and does nothing else): at each, every block's count so far is kept, and the count field becomes
 * "final,at mark 1,at mark 2,...", so the caller can take exactly what ran between two marks (one inference of a
 * runtime whose start-up is not the same from run to run).
 *
 * qemu ships no header for the plugin API in Debian's qemu-user, so the few declarations used are written out
 * below (qemu's include/qemu/qemu-plugin.h, API version 1: opaque handles, QEMU_PLUGIN_INLINE_ADD_U64 = 0).
 * Counters are plain 64-bit adds: run the program with one thread.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num,
                                              uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                                              uint64_t a6, uint64_t a7, uint64_t a8);

extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
extern void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_syscall_cb_t cb);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
extern char *qemu_plugin_insn_disas(const struct qemu_plugin_insn *insn);
extern uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
extern const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
extern size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
extern void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                                     void *ptr, uint64_t imm);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* Open-addressing table, text -> counter. Counters live in fixed chunks so their addresses (baked into the
 * translated code) never move when the table grows. */
typedef struct { char *text; uint64_t *count; } Slot;
static Slot *slots;
static size_t n_slots, n_used;
enum { CHUNK = 4096 };
static uint64_t *chunk;
static size_t chunk_used = CHUNK;
static char out_path[4096];
static int by_address, by_block, marks;

/* blocks=on: one record per translation (a block translated again gets a second record; the caller sums them);
 * marks=on: its counts at each mark, `at[k]` for mark k (blocks translated after a mark hold 0 for it) */
enum { MAX_MARKS = 16 };
typedef struct Block { char *line; uint64_t *count; uint64_t at[MAX_MARKS]; struct Block *next; } Block;
static Block *blocks;
static int n_marks;
static int64_t write_syscall;  /* write(2)'s number on the guest: 64 (AArch64), 4 (ARM) */

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8) {
    (void)id; (void)vcpu_index; (void)a2; (void)a3; (void)a4; (void)a5; (void)a6; (void)a7; (void)a8;
    if (num != write_syscall || (uint32_t)a1 != 0xffffffffu || n_marks == MAX_MARKS) return;
    for (Block *b = blocks; b; b = b->next) b->at[n_marks] = *b->count;
    ++n_marks;
}

static uint64_t hash(const char *s) {
    uint64_t h = 1469598103934665603ull;  /* FNV-1a */
    for (; *s; ++s) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static Slot *find(Slot *table, size_t n, const char *text) {
    size_t i = hash(text) & (n - 1);
    while (table[i].text && strcmp(table[i].text, text) != 0) i = (i + 1) & (n - 1);
    return &table[i];
}

static void grow(void) {
    size_t n = n_slots ? 2 * n_slots : 1 << 14;
    Slot *table = calloc(n, sizeof(Slot));
    if (!table) { fprintf(stderr, "insn_count: out of memory\n"); exit(1); }
    for (size_t i = 0; i < n_slots; ++i)
        if (slots[i].text) *find(table, n, slots[i].text) = slots[i];
    free(slots);
    slots = table;
    n_slots = n;
}

static uint64_t *new_counter(void) {
    if (chunk_used == CHUNK) {
        chunk = calloc(CHUNK, sizeof(uint64_t));
        if (!chunk) { fprintf(stderr, "insn_count: out of memory\n"); exit(1); }
        chunk_used = 0;
    }
    return &chunk[chunk_used++];
}

static uint64_t *counter(const char *text) {
    if (2 * (n_used + 1) > n_slots) grow();
    Slot *s = find(slots, n_slots, text);
    if (!s->text) {
        s->text = strdup(text);
        s->count = new_counter();
        ++n_used;
    }
    return s->count;
}

static void on_translate_block(struct qemu_plugin_tb *tb) {
    size_t n = qemu_plugin_tb_n_insns(tb), cap = 256, len = 0;
    char *line = malloc(cap);
    Block *b = calloc(1, sizeof(Block));
    if (!line || !b) { fprintf(stderr, "insn_count: out of memory\n"); exit(1); }
    for (int part = 0; part < 2; ++part)  /* the encodings, then the disassembly */
        for (size_t i = 0; i < n; ++i) {
            struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
            char piece[600];
            int k = 0;
            if (i == 0 && part == 0)
                k = snprintf(piece, sizeof piece, "%llx\t", (unsigned long long)qemu_plugin_insn_vaddr(insn));
            if (part == 0) {
                const unsigned char *data = qemu_plugin_insn_data(insn);
                size_t size = qemu_plugin_insn_size(insn);
                for (size_t j = 0; j < size && k < 500; ++j) k += snprintf(piece + k, sizeof piece - k, "%02x", data[j]);
                k += snprintf(piece + k, sizeof piece - k, "%s", i + 1 < n ? " " : "\t");
            } else {
                char *text = qemu_plugin_insn_disas(insn);
                k += snprintf(piece + k, sizeof piece - k, "%s%s", text ? text : "?", i + 1 < n ? "|" : "");
                free(text);
            }
            if (len + k + 1 > cap) {
                while (len + k + 1 > cap) cap *= 2;
                line = realloc(line, cap);
                if (!line) { fprintf(stderr, "insn_count: out of memory\n"); exit(1); }
            }
            memcpy(line + len, piece, k);
            len += k;
            line[len] = 0;
        }
    b->line = line;
    b->count = new_counter();
    b->next = blocks;
    blocks = b;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, b->count, 1);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    if (by_block) { on_translate_block(tb); return; }
    size_t n = qemu_plugin_tb_n_insns(tb);
    uint64_t *ptrs[n ? n : 1];
    uint64_t times[n ? n : 1];
    size_t distinct = 0;
    for (size_t i = 0; i < n; ++i) {  /* one add per distinct text in the block, by how often it occurs there */
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        char *text = qemu_plugin_insn_disas(insn);
        uint64_t *c;
        if (by_address) {
            char key[512];
            snprintf(key, sizeof key, "%llx\t%s", (unsigned long long)qemu_plugin_insn_vaddr(insn),
                     text ? text : "?");
            c = counter(key);
        } else {
            c = counter(text ? text : "?");
        }
        free(text);
        size_t k = 0;
        while (k < distinct && ptrs[k] != c) ++k;
        if (k == distinct) { ptrs[distinct] = c; times[distinct++] = 0; }
        ++times[k];
    }
    for (size_t k = 0; k < distinct; ++k)
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, ptrs[k], times[k]);
}

static void write_counts(qemu_plugin_id_t id, void *userdata) {
    (void)id; (void)userdata;
    FILE *f = fopen(out_path, "w");
    if (!f) { fprintf(stderr, "insn_count: cannot write %s\n", out_path); return; }
    for (Block *b = blocks; b; b = b->next) {
        if (!*b->count) continue;
        fprintf(f, "%llu", (unsigned long long)*b->count);
        for (int k = 0; k < (marks ? n_marks : 0); ++k) fprintf(f, ",%llu", (unsigned long long)b->at[k]);
        fprintf(f, "\t%s\n", b->line);
    }
    for (size_t i = 0; i < n_slots; ++i)
        if (slots[i].text && *slots[i].count) fprintf(f, "%llu\t%s\n", (unsigned long long)*slots[i].count,
                                                      slots[i].text);
    fclose(f);
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; ++i)
        if (strncmp(argv[i], "out=", 4) == 0) snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
        else if (strcmp(argv[i], "addresses=on") == 0) by_address = 1;
        else if (strcmp(argv[i], "blocks=on") == 0) by_block = 1;
        else if (strcmp(argv[i], "marks=on") == 0) marks = 1;
        else if (strncmp(argv[i], "write=", 6) == 0) write_syscall = strtoll(argv[i] + 6, NULL, 10);
    if (!out_path[0]) { fprintf(stderr, "insn_count: give the plugin out=PATH\n"); return -1; }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, write_counts, NULL);
    if (marks) qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    return 0;
}
