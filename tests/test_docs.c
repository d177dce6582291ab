/* tests/test_docs.c: what the project tells users matches what it does.
 * The command tree in README and in the man page equals the parser's (read
 * from `--help` at every level), the completion script offers the same
 * tree, every README code block is compiled or run (shell blocks against
 * VMs on chsim, the C example with -Werror), and `make install` places the
 * man page that `make uninstall` removes; `make demo` prints only commands
 * that run as printed. */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/support/support.h"

#define MAX_ENTS 128

static char *g_cocoon, *g_chsim, *g_build;

typedef struct strlist {
    char *v[MAX_ENTS];
    size_t n;
} strlist;

static void sl_add(strlist *l, char *s)
{
    assert_true(l->n < MAX_ENTS);
    l->v[l->n++] = s;
}

static void sl_fini(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    l->n = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted, one per line; owned. */
static char *sl_join(strlist *l)
{
    size_t len = 1;
    char *out;

    qsort(l->v, l->n, sizeof(l->v[0]), cmp_str);
    for (size_t i = 0; i < l->n; i++)
        len += strlen(l->v[i]) + 1;
    out = calloc(1, len);
    assert_non_null(out);
    for (size_t i = 0; i < l->n; i++) {
        strcat(out, l->v[i]);
        strcat(out, "\n");
    }
    return out;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    rewind(f);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* ---- the parser's tree, from --help ---- */

/* "--name" of a help line "  -f, --force   ..." or "      --wait[=S] ..."; the
 * flag name is copied into name. */
static bool help_flag(const char *line, char *name, size_t n)
{
    const char *p = line;
    size_t l;

    while (*p == ' ')
        p++;
    if (p[0] == '-' && p[1] != '-')
        p += 4;                     /* "-f, " */
    if (strncmp(p, "--", 2) != 0)
        return false;
    l = strcspn(p, " =[");
    assert_true(l < n);
    memcpy(name, p, l);
    name[l] = '\0';
    return true;
}

/* The lines of section title ("Flags:") in a help text, up to the blank line. */
static const char *section(const char *help, const char *title)
{
    char *t = sup_asprintf("\n%s\n", title);
    const char *p = strstr(help, t);

    free(t);
    return p ? p + strlen(title) + 2 : NULL;
}

/* Appends the " --x" of every flag line in section title to buf. */
static void section_flags(const char *help, const char *title, char *buf, size_t n)
{
    const char *p = section(help, title);

    while (p && *p && *p != '\n') {
        char name[64];
        const char *nl = strchr(p, '\n');

        if (help_flag(p, name, sizeof(name)) && strcmp(name, "--help") != 0) {
            strncat(buf, " ", n - strlen(buf) - 1);
            strncat(buf, name, n - strlen(buf) - 1);
        }
        p = nl ? nl + 1 : p + strlen(p);
    }
}

/* Flags in a "path: --a --b" entry are sorted so the two sides compare. */
static char *entry(const char *path, const char *flags)
{
    char *copy = strdup(flags), *tok, *save = NULL, *out;
    strlist fl = { .n = 0 };

    assert_non_null(copy);
    for (tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        bool dup = false;

        for (size_t i = 0; i < fl.n; i++)
            dup = dup || strcmp(fl.v[i], tok) == 0;
        if (!dup)
            sl_add(&fl, strdup(tok));
    }
    qsort(fl.v, fl.n, sizeof(fl.v[0]), cmp_str);
    out = sup_asprintf("%s:", path[0] ? path : "cocoon");
    for (size_t i = 0; i < fl.n; i++) {
        char *o = sup_asprintf("%s %s", out, fl.v[i]);

        free(out);
        out = o;
    }
    sl_fini(&fl);
    free(copy);
    return out;
}

static char *run_help(const char *path)
{
    char *argv[16], *copy = strdup(path), *tok, *save = NULL, *out = NULL, *err = NULL;
    int n = 0;

    argv[n++] = g_cocoon;
    for (tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
        argv[n++] = tok;
    argv[n++] = (char *)"--help";
    argv[n] = NULL;
    assert_int_equal(sup_run(argv, NULL, &out, &err, 30000), 0);
    free(err);
    free(copy);
    return out;
}

/* Leaves (and the root) as entries; groups (commands with subcommands)
 * into groups, as "vm fs". */
static void help_walk(const char *path, strlist *ents, strlist *groups)
{
    char *help = run_help(path), flags[1024] = "";
    const char *kids = section(help, "Available Commands:");
    const char *al = section(help, "Aliases:");

    section_flags(help, "Flags:", flags, sizeof(flags));
    if (!path[0])
        section_flags(help, "Global Flags:", flags, sizeof(flags));
    if (kids)
        sl_add(groups, strdup(path));
    if (!kids || !path[0])
        sl_add(ents, entry(path, flags));
    if (al) {                       /* "  list, ls": the same command */
        const char *comma = strchr(al, ',');
        char alias[64], *apath;
        const char *sp = strrchr(path, ' ');

        assert_non_null(comma);
        assert_int_equal(sscanf(comma + 1, " %63s", alias), 1);
        apath = sup_asprintf("%.*s%s%s", sp ? (int)(sp - path) : 0, path, sp ? " " : "", alias);
        sl_add(ents, entry(apath, flags));
        free(apath);
    }
    while (kids && *kids == ' ') {
        char name[64], *sub;

        assert_int_equal(sscanf(kids, " %63s", name), 1);
        sub = path[0] ? sup_asprintf("%s %s", path, name) : strdup(name);
        help_walk(sub, ents, groups);
        free(sub);
        kids = strchr(kids, '\n');
        kids = kids ? kids + 1 : "";
    }
    free(help);
}

/* ---- a documented tree: README's block, the man page's SYNOPSIS ---- */

static bool is_group(const strlist *groups, const char *path)
{
    for (size_t i = 0; i < groups->n; i++)
        if (strcmp(groups->v[i], path) == 0)
            return true;
    return false;
}

/* One "--x" of a token like "[--wait[=S]]", "[-o", "--socket"; NULL if none. */
static bool doc_flag(const char *tok, char *name, size_t n)
{
    size_t l;

    while (*tok == '[')
        tok++;
    if (strcmp(tok, "-o") == 0) {
        snprintf(name, n, "--output");
        return true;
    }
    if (strncmp(tok, "--", 2) != 0)
        return false;
    l = strcspn(tok, "=[]");
    assert_true(l < n);
    memcpy(name, tok, l);
    name[l] = '\0';
    return true;
}

typedef struct doc_cmds {
    char paths[MAX_ENTS][64];
    char flags[MAX_ENTS][1024];
    size_t np;
    size_t cur[16], ncur;           /* the commands the current line is about */
} doc_cmds;

/* Makes the command paths cand[0..nc) the current ones, adding those not
 * seen yet. */
static void doc_select(doc_cmds *d, char cand[][64], size_t nc)
{
    d->ncur = 0;
    for (size_t c = 0; c < nc; c++) {
        size_t k;

        for (k = 0; k < d->np && strcmp(d->paths[k], cand[c]) != 0; k++)
            ;
        if (k == d->np) {
            assert_true(d->np < MAX_ENTS);
            snprintf(d->paths[k], sizeof(d->paths[k]), "%.63s", cand[c]);
            d->flags[d->np++][0] = '\0';
        }
        d->cur[d->ncur++] = k;
    }
}

/* The tree as "cocoon [...] COMMAND" then "  vm create|run [flags]" lines
 * (alternatives expand, a command on several lines gets the union of their
 * flags) and deeper-indented continuation lines.  A word extends the
 * command while the command so far is a group of the parser's tree. */
static void doc_tree(const char *text, const strlist *groups, strlist *ents)
{
    static doc_cmds d;
    char *copy = strdup(text), *line, *save = NULL;

    memset(&d, 0, sizeof(d));
    for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *tok, *ts = NULL;
        bool cmd_line = strncmp(line, "  ", 2) == 0 && line[2] != ' ';
        bool root_line = strncmp(line, "cocoon ", 7) == 0;
        bool naming = root_line || cmd_line;   /* still reading command words */
        char cand[16][64];
        size_t nc = 1;

        cand[0][0] = '\0';
        for (tok = strtok_r(line, " ", &ts); tok; tok = strtok_r(NULL, " ", &ts)) {
            char name[64];

            if (root_line && strcmp(tok, "cocoon") == 0)
                continue;
            if (cmd_line && naming && is_group(groups, cand[0])) {
                char next[16][64];
                size_t nn = 0;

                for (size_t c = 0; c < nc; c++) {
                    char words[256], *w, *ws = NULL;

                    snprintf(words, sizeof(words), "%s", tok);
                    for (w = strtok_r(words, "|", &ws); w; w = strtok_r(NULL, "|", &ws)) {
                        assert_true(nn < 16);
                        snprintf(next[nn++], sizeof(next[0]), "%.30s%s%.30s", cand[c],
                                 cand[c][0] ? " " : "", w);
                    }
                }
                memcpy(cand, next, sizeof(next));
                nc = nn;
                continue;
            }
            if (naming) {
                doc_select(&d, cand, nc);
                naming = false;
            }
            if (doc_flag(tok, name, sizeof(name)))
                for (size_t c = 0; c < d.ncur; c++) {
                    char *f = d.flags[d.cur[c]];

                    strncat(f, " ", sizeof(d.flags[0]) - strlen(f) - 1);
                    strncat(f, name, sizeof(d.flags[0]) - strlen(f) - 1);
                }
        }
        if (naming)                 /* nothing after the command words */
            doc_select(&d, cand, nc);
    }
    for (size_t k = 0; k < d.np; k++)
        sl_add(ents, entry(d.paths[k], d.flags[k]));
    free(copy);
}

typedef struct block {
    int line;                       /* of the opening fence */
    char lang[16];
    char *text;                     /* owned */
    char note[256];                 /* "<!-- X -->" on the line before the fence: X */
} block;

/* Fenced blocks of a Markdown file. */
static size_t md_blocks(const char *md, block *out, size_t max)
{
    size_t n = 0;
    int lineno = 1;
    const char *p = md;

    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);

        if (len >= 3 && strncmp(p, "```", 3) == 0) {
            const char *body = nl ? nl + 1 : p + len, *end = strstr(body, "\n```");
            const char *prev = p - 1;

            assert_true(n < max);
            out[n].line = lineno;
            out[n].note[0] = '\0';
            while (prev > md && prev[-1] != '\n')
                prev--;
            if (prev > md && strncmp(prev, "<!-- ", 5) == 0) {
                const char *e = strstr(prev, " -->\n");

                if (e && e < p)
                    snprintf(out[n].note, sizeof(out[n].note), "%.*s", (int)(e - prev - 5),
                             prev + 5);
            }
            snprintf(out[n].lang, sizeof(out[n].lang), "%.*s", (int)(len - 3), p + 3);
            assert_non_null(end);
            out[n].text = strndup(body, (size_t)(end - body) + 1);
            for (const char *q = p; q < end + 4; q++)
                lineno += *q == '\n';
            p = end + 4;
            p += strcspn(p, "\n");
            if (*p)
                p++, lineno++;
            n++;
            continue;
        }
        lineno++;
        p += len + (nl != NULL);
    }
    return n;
}

static void blocks_free(block *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(b[i].text);
}

static void parser_tree(strlist *ents, strlist *groups)
{
    help_walk("", ents, groups);
}

static void compare_tree(const char *doc_text, const char *what)
{
    strlist pe = { .n = 0 }, groups = { .n = 0 }, de = { .n = 0 };
    char *ps, *ds;

    parser_tree(&pe, &groups);
    doc_tree(doc_text, &groups, &de);
    ps = sl_join(&pe);
    ds = sl_join(&de);
    if (strcmp(ps, ds) != 0)
        fail_msg("%s command tree differs from the parser's\n--- parser:\n%s--- %s:\n%s", what, ps,
                 what, ds);
    free(ps);
    free(ds);
    sl_fini(&pe);
    sl_fini(&de);
    sl_fini(&groups);
}

static void test_readme_tree(void **state)
{
    block b[64];
    char *md = read_file("README.md");
    size_t n = md_blocks(md, b, 64), found = 0;

    (void)state;
    for (size_t i = 0; i < n; i++)
        if (strncmp(b[i].text, "cocoon [", 8) == 0) {
            compare_tree(b[i].text, "README");
            found++;
        }
    assert_int_equal(found, 1);
    blocks_free(b, n);
    free(md);
}

/* The man page's SYNOPSIS is the same tree; groff finds no problem in it. */
static void test_man_page(void **state)
{
    char *man = read_file("cli/cocoon.1"), *syn, *end, *text, *o;
    char *argv[] = { (char *)"/usr/bin/groff", (char *)"-man", (char *)"-Tutf8", (char *)"-ww",
                     (char *)"-z", (char *)"cli/cocoon.1", NULL };
    char *out = NULL, *err = NULL;

    (void)state;
    syn = strstr(man, ".SH SYNOPSIS\n.nf\n");
    assert_non_null(syn);
    syn += strlen(".SH SYNOPSIS\n.nf\n");
    end = strstr(syn, ".fi\n");
    assert_non_null(end);
    text = strndup(syn, (size_t)(end - syn));
    for (o = text; (o = strstr(o, "\\-"));)
        memmove(o, o + 1, strlen(o));
    compare_tree(text, "man page");
    free(text);
    if (access(argv[0], X_OK) == 0) {
        assert_int_equal(sup_run(argv, NULL, &out, &err, 30000), 0);
        assert_string_equal(err, "");
        free(out);
        free(err);
    }
    free(man);
}

/* The bash completion offers, at every group, exactly its subcommands, and
 * at every command its flags. */
static void test_completion_tree(void **state)
{
    strlist pe = { .n = 0 }, groups = { .n = 0 };
    char *script = NULL, *out = NULL, *err = NULL;
    char *argv[] = { (char *)"/bin/bash", (char *)"-c", NULL, NULL };
    FILE *f;
    size_t len = 0;

    (void)state;
    parser_tree(&pe, &groups);
    f = open_memstream(&script, &len);
    assert_non_null(f);
    fprintf(f, "source <(%s completion bash)\n"
               "t() { COMP_WORDS=(\"$@\"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _cocoon;"
               " printf '%%s\\n' \"${COMPREPLY[*]}\"; }\n", g_cocoon);
    for (size_t i = 0; i < groups.n; i++)
        fprintf(f, "printf '%%s: ' '%s'; t cocoon %s ''\n", groups.v[i], groups.v[i]);
    fclose(f);
    argv[2] = script;
    assert_int_equal(sup_run(argv, NULL, &out, &err, 30000), 0);
    /* expected: each group's children as --help lists them */
    for (size_t i = 0; i < groups.n; i++) {
        char *help = run_help(groups.v[i]), want[512] = "", *line;
        const char *kids = section(help, "Available Commands:");

        while (kids && *kids == ' ') {
            char name[64];

            assert_int_equal(sscanf(kids, " %63s", name), 1);
            strncat(want, want[0] ? " " : "", sizeof(want) - strlen(want) - 1);
            strncat(want, name, sizeof(want) - strlen(want) - 1);
            kids = strchr(kids, '\n');
            kids = kids ? kids + 1 : "";
        }
        line = sup_asprintf("%s: %s\n", groups.v[i], want);
        if (!strstr(out, line))
            fail_msg("completion at \"%s\": want %s in\n%s", groups.v[i], line, out);
        free(line);
        free(help);
    }
    free(out);
    free(err);
    free(script);
    /* flags: every command's, after "--" */
    for (size_t i = 0; i < pe.n; i++) {
        char *colon = strchr(pe.v[i], ':'), *path = strndup(pe.v[i], (size_t)(colon - pe.v[i]));
        char *cmdline = strcmp(path, "cocoon") == 0 ? strdup("") : strdup(path), *s2;

        s2 = sup_asprintf("source <(%s completion bash); COMP_WORDS=(cocoon %s --);"
                          " COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _cocoon; echo \" ${COMPREPLY[*]} \"",
                          g_cocoon, cmdline);
        argv[2] = s2;
        assert_int_equal(sup_run(argv, NULL, &out, &err, 30000), 0);
        for (char *fl = strtok(colon + 1, " "); fl; fl = strtok(NULL, " ")) {
            char *want = sup_asprintf(" %s ", fl);

            if (!strstr(out, want))
                fail_msg("completion of \"%s --\" lacks %s: %s", path, fl, out);
            free(want);
        }
        free(out);
        free(err);
        free(s2);
        free(cmdline);
        free(path);
    }
    sl_fini(&pe);
    sl_fini(&groups);
}

/* ---- every README block compiled or run ---- */

static char *g_root;

static void kill_vmms(void)
{
    char *dir = sup_asprintf("%s/run/cloudhypervisor", g_root);
    DIR *d = opendir(dir);
    struct dirent *de;

    while (d && (de = readdir(d))) {
        char *pf;
        FILE *f;
        int pid;

        if (de->d_name[0] == '.')
            continue;
        pf = sup_asprintf("%s/%s/ch.pid", dir, de->d_name);
        f = fopen(pf, "r");
        if (f && fscanf(f, "%d", &pid) == 1 && pid > 1)
            kill(pid, SIGKILL);
        if (f)
            fclose(f);
        free(pf);
    }
    if (d)
        closedir(d);
    free(dir);
}

/* A fresh root with running VMs web-1..3 and gpu-1 (shared memory, on
 * chsim), and a listener at <root>/vfs/web-N.sock unless the block starts
 * its own virtiofsd. */
static void fixture(bool listeners, int lfds[3])
{
    static const char *const names[] = { "web-1", "web-2", "web-3", "gpu-1" };

    g_root = sup_tmpdir();
    for (size_t i = 0; i < 4; i++) {
        char *argv[] = { g_cocoon, (char *)"--root-dir", g_root, (char *)"vm", (char *)"run",
                         (char *)"--name", (char *)names[i], (char *)"--shared-memory",
                         (char *)"--ch-binary", g_chsim, (char *)"--kernel", (char *)"/dev/null",
                         NULL };
        char *out = NULL, *err = NULL;

        if (sup_run(argv, NULL, &out, &err, 30000) != 0)
            fail_msg("vm run %s: %s", names[i], err);
        free(out);
        free(err);
    }
    {
        char *vfs = sup_asprintf("%s/vfs", g_root), *data = sup_asprintf("%s/data", g_root);

        assert_int_equal(mkdir(vfs, 0700), 0);
        assert_int_equal(mkdir(data, 0700), 0);
        free(vfs);
        free(data);
    }
    for (int i = 0; i < 3; i++) {
        char *s = sup_asprintf("%s/vfs/web-%d.sock", g_root, i + 1);

        lfds[i] = listeners ? sup_unix_bind(s, true) : -1;
        free(s);
    }
}

static void fixture_end(int lfds[3])
{
    for (int i = 0; i < 3; i++)
        if (lfds[i] >= 0)
            close(lfds[i]);
    kill_vmms();
    sup_rmrf(g_root);
    free(g_root);
    g_root = NULL;
}

/* s with every from replaced by to; owned. */
static char *replace_all(const char *s, const char *from, const char *to)
{
    char *out = strdup(s), *p;
    size_t off = 0;

    assert_non_null(out);
    while ((p = strstr(out + off, from))) {
        size_t pre = (size_t)(p - out);
        char *n = sup_asprintf("%.*s%s%s", (int)pre, out, to, p + strlen(from));

        off = pre + strlen(to);
        free(out);
        out = n;
    }
    return out;
}

/* The README's host paths point into the fixture's root; its PCI address
 * at a device this host has. */
static char *localize(const char *text)
{
    char pci[300], *vfs = sup_asprintf("%s/vfs/", g_root), *data = sup_asprintf("%s/data", g_root);
    char *a = replace_all(text, "/run/vfs/", vfs), *b = replace_all(a, "/srv/data", data), *c;
    const char *dev = sup_first_pci(pci, sizeof(pci));

    c = dev ? replace_all(b, "01:00.0", strrchr(dev, '/') + 1) : strdup(b);
    free(a);
    free(b);
    free(vfs);
    free(data);
    return c;
}

/* A shell block, run by bash -e with `cocoon` being build/cocoon on the
 * fixture's root; after a line that backgrounds a virtiofsd, its socket is
 * awaited before the next line. */
static void run_sh(const block *b)
{
    int lfds[3];
    char *script = NULL, *out = NULL, *err = NULL, *text;
    char *argv[] = { (char *)"/bin/bash", (char *)"-e", (char *)"-c", NULL, NULL };
    FILE *f;
    size_t len = 0;
    int rc;

    fixture(!strstr(b->text, "virtiofsd"), lfds);
    text = localize(b->text);
    f = open_memstream(&script, &len);
    assert_non_null(f);
    fprintf(f, "cocoon() { '%s' --root-dir '%s' \"$@\"; }\n", g_cocoon, g_root);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        const char *sp = strstr(line, "--socket-path=");

        fprintf(f, "%s\n", line);
        if (sp && line[strlen(line) - 1] == '&')
            fprintf(f, "for i in $(seq 1000); do [ -S '%.*s' ] && break; sleep 0.01; done\n",
                    (int)strcspn(sp + 14, " "), sp + 14);
    }
    fputs("kill $(jobs -p) 2>/dev/null || true\nwait\n", f);
    fclose(f);
    argv[3] = script;
    rc = sup_run(argv, NULL, &out, &err, 60000);
    if (rc != 0)
        fail_msg("README block at line %d failed (%d):\n%s\nstdout:\n%s\nstderr:\n%s", b->line,
                 rc, script, out, err);
    free(out);
    free(err);
    free(script);
    free(text);
    fixture_end(lfds);
}

/* A `make TARGET` line names a target the Makefile has. */
static void check_make_lines(const block *b)
{
    char *mk = read_file("Makefile"), *copy = strdup(b->text);

    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        char target[64], *want;

        assert_int_equal(sscanf(line, "make %63s", target), 1);
        want = sup_asprintf("\n%s:", target);
        if (!strstr(mk, want))
            fail_msg("README block at line %d: no target %s in Makefile", b->line, target);
        free(want);
    }
    free(copy);
    free(mk);
}

/* A JSON Lines plan, through `cocoon batch -`. */
static void run_batch(const block *b)
{
    int lfds[3];
    char *text, *out = NULL, *err = NULL;
    char *argv[] = { g_cocoon, (char *)"--root-dir", NULL, (char *)"batch", (char *)"-", NULL };

    fixture(true, lfds);
    argv[2] = g_root;
    text = localize(b->text);
    if (sup_run(argv, text, &out, &err, 60000) != 0)
        fail_msg("README batch block at line %d failed:\n%s\n%s", b->line, out, err);
    free(out);
    free(err);
    free(text);
    fixture_end(lfds);
}

/* The C example, compiled as a host would with the installed header. */
static void compile_c(const block *b)
{
    char *dir = sup_tmpdir(), *src = sup_asprintf("%s/example.c", dir);
    char *hdr = sup_asprintf("%s/cocoon.h", dir), *obj = sup_asprintf("%s/example.o", dir);
    char *inc = sup_asprintf("-I%s", dir), *hdr_src = realpath("engine/cocoon.h", NULL);
    char *argv[] = { (char *)"/usr/bin/cc", (char *)"-std=c11", (char *)"-Wall", (char *)"-Wextra",
                     (char *)"-Werror", inc, (char *)"-c", src, (char *)"-o", obj, NULL };
    char *out = NULL, *err = NULL;
    FILE *f = fopen(src, "w");

    assert_non_null(f);
    assert_non_null(hdr_src);
    fputs(b->text, f);
    fclose(f);
    assert_int_equal(symlink(hdr_src, hdr), 0);
    if (sup_run(argv, NULL, &out, &err, 60000) != 0)
        fail_msg("README C block at line %d does not compile:\n%s", b->line, err);
    free(out);
    free(err);
    sup_rmrf(dir);
    free(dir);
    free(src);
    free(hdr);
    free(obj);
    free(inc);
    free(hdr_src);
}

/* A block another test exercises says so on the line before its fence:
 * "<!-- same as FILE -->" (its text is in FILE, verbatim) or
 * "<!-- run by TEST -->" (every line of it is in that test script). */
static bool check_note(const block *b)
{
    char path[256], *file, *copy;

    if (sscanf(b->note, "same as %255s", path) == 1) {
        file = read_file(path);
        if (!strstr(file, b->text))
            fail_msg("README block at line %d is not the text of %s", b->line, path);
        free(file);
        return true;
    }
    if (sscanf(b->note, "run by %255s", path) != 1)
        return false;
    file = read_file(path);
    copy = strdup(b->text);
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n"))
        if (!strstr(file, line))
            fail_msg("README block at line %d: \"%s\" is not in %s", b->line, line, path);
    free(copy);
    free(file);
    return true;
}

static void test_readme_blocks(void **state)
{
    block b[64];
    char *md = read_file("README.md");
    size_t n = md_blocks(md, b, 64);

    (void)state;
    for (size_t i = 0; i < n; i++) {
        if (b[i].note[0] && check_note(&b[i]))
            ;
        else if (strcmp(b[i].lang, "c") == 0)
            compile_c(&b[i]);
        else if (strcmp(b[i].lang, "sh") == 0 && strncmp(b[i].text, "make ", 5) == 0)
            check_make_lines(&b[i]);
        else if (strcmp(b[i].lang, "sh") == 0)
            run_sh(&b[i]);
        else if (!b[i].lang[0] && strncmp(b[i].text, "cocoon [", 8) == 0)
            ;                           /* the command tree: test_readme_tree */
        else if (!b[i].lang[0] && b[i].text[0] == '{')
            run_batch(&b[i]);
        else
            fail_msg("README block at line %d (```%s) is not compiled or run by any test: "
                     "run it in tests/test_docs.c, or put <!-- same as FILE --> or "
                     "<!-- run by TEST --> on the line before it", b[i].line, b[i].lang);
    }
    blocks_free(b, n);
    free(md);
}

/* make install puts cocoon.1 under share/man/man1; make uninstall removes it. */
static void test_install_man(void **state)
{
    char *dir = sup_tmpdir(), *dest = sup_asprintf("DESTDIR=%s", dir);
    char *bld = sup_asprintf("BUILD=%s", g_build), *man = sup_asprintf("%s/usr/share/man/man1/cocoon.1", dir);
    char *argv[] = { (char *)"/usr/bin/make", (char *)"-s", NULL, dest, bld, (char *)"PREFIX=/usr", NULL };
    char *out = NULL, *err = NULL, *a, *b;
    struct stat st;

    (void)state;
    argv[2] = (char *)"install";
    if (sup_run(argv, NULL, &out, &err, 120000) != 0)
        fail_msg("make install: %s", err);
    free(out);
    free(err);
    assert_int_equal(stat(man, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    a = read_file(man);
    b = read_file("cli/cocoon.1");
    assert_string_equal(a, b);
    free(a);
    free(b);
    argv[2] = (char *)"uninstall";
    assert_int_equal(sup_run(argv, NULL, &out, &err, 120000), 0);
    free(out);
    free(err);
    assert_int_equal(stat(man, &st), -1);
    sup_rmrf(dir);
    free(dir);
    free(dest);
    free(bld);
    free(man);
}

/* make demo: every command it prints is a whole command line (it runs each
 * exactly as printed), with no "web-1 .. web-N" shorthand. */
static void test_demo_commands(void **state)
{
    char *argv[] = { (char *)"/bin/bash", (char *)"tests/demo.sh", g_build, NULL };
    char *out = NULL, *err = NULL, *line, *save = NULL;
    size_t cmds = 0;

    (void)state;
    setenv("DEMO_VMS", "2", 1);
    if (sup_run(argv, NULL, &out, &err, 120000) != 0)
        fail_msg("demo failed:\n%s\n%s", out, err);
    unsetenv("DEMO_VMS");
    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "$ ", 2) != 0)
            continue;
        cmds++;
        if (strstr(line, "..") || strstr(line, "-N ") || strstr(line, "web-N"))
            fail_msg("demo prints a command that cannot be pasted: %s", line);
        if (strncmp(line + 2, "cocoon ", 7) != 0 && strncmp(line + 2, "export ", 7) != 0 &&
            strncmp(line + 2, "for ", 4) != 0)
            fail_msg("demo prints an unexpected command: %s", line);
    }
    assert_true(cmds >= 8);
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readme_tree),
        cmocka_unit_test(test_man_page),
        cmocka_unit_test(test_completion_tree),
        cmocka_unit_test(test_readme_blocks),
        cmocka_unit_test(test_install_man),
        cmocka_unit_test(test_demo_commands),
    };
    const char *b = getenv("COCOON_BUILD_DIR");
    int rc;

    signal(SIGPIPE, SIG_IGN);
    g_build = strdup(b && *b ? b : "build");
    g_cocoon = sup_build_path("cocoon");
    g_chsim = sup_build_path("chsim");
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(g_cocoon);
    free(g_chsim);
    free(g_build);
    return rc;
}
