/*
 * tollgate-demo: why a per-process rate limit is not a rate limit.
 *
 * The story. Organization "org-123" is on the FREE plan: 100 requests per
 * hour. Three app servers sit behind a load balancer, and each one checks
 * the plan with tollgate before serving a request. The load balancer sends
 * 300 requests round-robin, so each server sees 100 of them.
 *
 * With the default memory store every server process keeps its own counter,
 * so each admits its 100 and 300 requests get through: three times the plan.
 * That is the bug tollgate exists to fix: give all the servers one shared
 * store (--store redis://...) and the same program admits 100 in total,
 * with no code change.
 *
 * How it runs. This process plays the load balancer. It starts N server
 * processes (fork, then exec of its own binary with --serve, so each server
 * is a fresh process exactly like a real one; if exec is impossible the
 * forked child serves directly). Each server creates its own limiter after
 * it starts. The balancer talks to each server over a pair of pipes, one
 * request line in, one reply line out:
 *
 *   balancer -> server   CHECK <key>
 *                        RESET <key>      (answered OK or ERROR)
 *   server -> balancer   READY <pid>                       (once, at start)
 *                        ALLOW|DENY <remaining> <reset_after_ms>
 * <retry_after_ms> ERROR <code> <message>
 *
 * At the end the balancer closes every server's input; the servers destroy
 * their limiters and exit, and the balancer reaps each one by pid. A server
 * that dies or stops answering is counted as failed, killed if needed and
 * reaped: it never hangs the balancer.
 *
 * Servers in other languages speak the same line protocol: --server-cmd
 * "python3 examples/demo/server.py" (repeatable; server k runs command
 * k mod the number of commands) execs that command instead of this binary,
 * with "--store URL" appended ("c" means this binary). examples/demo/server.py
 * and server.js are the
 * Python and Node servers, so one run can put a C, a Python and a Node
 * server behind the same balancer, on the same Redis key.
 *
 * The closing lines suggest the next command to run: after the memory
 * store, this program with --store; after a shared store, the tollgate
 * command-line tool (docs/cli.md) listing the org's state in that store.
 * Each is printed so that it runs as printed (tests/check_demo_hint.sh).
 *
 * Usage: tollgate-demo [--store URL] [--servers N] [--requests N]
 *                      [--server-cmd CMD]... [--cli PATH]
 *
 * C99 + POSIX.1-2008 (with XSI, for realpath).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tollgate.h"

/* The FREE plan, as the app servers configure it. */
#define PLAN_NAME "FREE"
#define PLAN_LIMIT 100
#define PLAN_PERIOD_MS (60LL * 60 * 1000) /* one hour */
/* The same plan in the policy text of the bindings and the CLI (GCRA, burst
 * = limit), so the CLI reads the state the servers write. */
#define PLAN_TEXT "100/h"
#define ORG_KEY "org-123"

/* How this program was started (argv[0]): the closing hint names it, so
 * that the command it suggests runs as printed. */
static const char *g_program = "tollgate-demo";

/* --cli: the tollgate command-line tool the shared-store hint names. */
static const char *g_cli = NULL;

#define DEFAULT_SERVERS 3
#define DEFAULT_REQUESTS 300
#define MAX_SERVERS 64
#define MAX_REQUESTS 10000000L
/* How long the balancer waits for one reply (or for a server to start or
 * exit) before it gives up on that server. */
#define REPLY_TIMEOUT_MS 10000
#define LINE_CAP 1024
#define MAX_CMD_WORDS 15

/* ------------------------------------------------------------------------ */
/* Small I/O helpers                                                        */
/* ------------------------------------------------------------------------ */

static long long monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Write all of buf; -1 if the peer is gone (EPIPE) or on another error. */
static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Replace control characters (a newline would break the line protocol). */
static void one_line(char *s) {
  for (; *s; ++s)
    if ((unsigned char)*s < 0x20) *s = ' ';
}

/* ------------------------------------------------------------------------ */
/* Server mode: one app server                                              */
/* ------------------------------------------------------------------------ */

/* Reads requests on in_fd, answers on out_fd. Returns the exit status. */
static int serve(int in_fd, int out_fd, const char *store_url) {
  FILE *in = fdopen(in_fd, "r");
  FILE *out = fdopen(out_fd, "w");
  rl_options options = RL_OPTIONS_INIT;
  rl_policy_spec spec = RL_POLICY_SPEC_INIT;
  rl_policy *plan = NULL;
  rl_limiter *limiter = NULL;
  char line[LINE_CAP];
  char msg[LINE_CAP];
  int rc;

  if (in == NULL || out == NULL) {
    perror("tollgate-demo server: fdopen");
    return 1;
  }

  /* Each server creates its own limiter, after it has started: nothing is
   * inherited from the balancer. */
  options.url = store_url; /* NULL: the in-process memory store */
  rc = rl_create(&limiter, &options);
  if (rc != RL_OK) {
    snprintf(msg, sizeof msg, "%s", rl_last_error());
    one_line(msg);
    fprintf(out, "ERROR %d %s\n", rc, msg);
    fclose(out);
    fclose(in);
    return 1;
  }
  fprintf(out, "READY %ld\n", (long)getpid());
  fflush(out);

  spec.algorithm = RL_ALG_GCRA;
  spec.limit = PLAN_LIMIT;
  spec.period_ms = PLAN_PERIOD_MS;
  spec.burst = 0; /* same as limit: the 100 may come at once */
  rc = rl_policy_create(&plan, &spec);
  if (rc != RL_OK) {
    snprintf(msg, sizeof msg, "%s", rl_last_error());
    one_line(msg);
    fprintf(out, "ERROR %d %s\n", rc, msg);
    fclose(out);
    fclose(in);
    rl_destroy(limiter);
    return 1;
  }

  while (fgets(line, sizeof line, in) != NULL) {
    rl_decision d = RL_DECISION_INIT;
    size_t len = strcspn(line, "\r\n");
    const char *key;

    line[len] = '\0';
    if (strncmp(line, "RESET ", 6) == 0) {
      key = line + 6;
      rc = rl_reset(limiter, key, strlen(key));
      if (rc != RL_OK) {
        snprintf(msg, sizeof msg, "%s", rl_last_error());
        one_line(msg);
        fprintf(out, "ERROR %d %s\n", rc, msg);
      } else {
        fprintf(out, "OK\n");
      }
      if (fflush(out) != 0) break;
      continue;
    }
    if (strncmp(line, "CHECK ", 6) != 0) {
      fprintf(out, "ERROR %d bad request line\n", RL_E_INVALID_ARG);
      fflush(out);
      continue;
    }
    key = line + 6;
    rc = rl_check(limiter, &d, key, strlen(key), &plan, 1, 1);
    if (rc != RL_OK) {
      snprintf(msg, sizeof msg, "%s", rl_last_error());
      one_line(msg);
      fprintf(out, "ERROR %d %s\n", rc, msg);
    } else {
      fprintf(out, "%s %lld %lld %lld\n", d.allowed ? "ALLOW" : "DENY",
              (long long)d.remaining, (long long)d.reset_after_ms,
              (long long)d.retry_after_ms);
    }
    if (fflush(out) != 0) break; /* the balancer is gone */
  }

  rl_destroy(limiter);
  rl_policy_release(plan);
  fclose(out);
  fclose(in);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Balancer mode                                                            */
/* ------------------------------------------------------------------------ */

struct server {
  pid_t pid;
  int to_fd;   /* requests to the server (its stdin), -1 once closed */
  int from_fd; /* replies from the server (its stdout), -1 once closed */
  int alive;   /* 1 while it answers */
  char buf[LINE_CAP];
  size_t buf_len;
  long received, admitted, denied, failed;
  long long last_remaining;
  int exit_status; /* from waitpid */
  int reaped;
};

static struct server servers[MAX_SERVERS];
static int n_servers;

/* --server-cmd: commands run as servers instead of this binary. */
static const char *server_cmds[MAX_SERVERS];
static int n_server_cmds;

/* The command server idx runs, or NULL for this binary (no --server-cmd,
 * or the command "c"). */
static const char *server_cmd(int idx) {
  const char *cmd = n_server_cmds > 0 ? server_cmds[idx % n_server_cmds] : NULL;
  return cmd != NULL && strcmp(cmd, "c") != 0 ? cmd : NULL;
}

/* The name shown for server idx: "c" for this binary, else the basename of
 * the command's program (e.g. "python3", "node"). */
static void server_label(int idx, char *out, size_t cap) {
  const char *cmd = server_cmd(idx), *end, *base;
  size_t len;
  if (cmd == NULL) {
    snprintf(out, cap, "c");
    return;
  }
  while (*cmd == ' ') ++cmd;
  end = cmd + strcspn(cmd, " ");
  base = cmd;
  for (const char *p = cmd; p < end; ++p)
    if (*p == '/') base = p + 1;
  len = (size_t)(end - base);
  if (len > 8) len = 8; /* the table's column */
  snprintf(out, cap, "%.*s", (int)(len < cap ? len : cap - 1), base);
}

static void close_fd(int *fd) {
  if (*fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

/* Read one line (without its newline) from a server into out.
 * Returns 1 for a line, 0 at end of file, -1 on timeout or error. */
static int read_line(struct server *s, char *out, size_t cap, int timeout_ms) {
  long long deadline = monotonic_ms() + timeout_ms;
  for (;;) {
    char *nl = memchr(s->buf, '\n', s->buf_len);
    struct pollfd pfd;
    long long left;
    ssize_t n;
    int pr;

    if (nl != NULL) {
      size_t len = (size_t)(nl - s->buf);
      size_t copy = len < cap - 1 ? len : cap - 1;
      memcpy(out, s->buf, copy);
      out[copy] = '\0';
      s->buf_len -= len + 1;
      memmove(s->buf, nl + 1, s->buf_len);
      return 1;
    }
    if (s->buf_len == sizeof s->buf) return -1; /* line too long */
    if (s->from_fd < 0) return 0;

    left = deadline - monotonic_ms();
    if (left <= 0) return -1;
    pfd.fd = s->from_fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    pr = poll(&pfd, 1, (int)left);
    if (pr < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (pr == 0) return -1; /* timeout */
    n = read(s->from_fd, s->buf + s->buf_len, sizeof s->buf - s->buf_len);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return -1;
    }
    if (n == 0) return 0; /* the server closed its output: it exited */
    s->buf_len += (size_t)n;
  }
}

/* Give up on a server: stop sending it anything, kill it if it hangs. */
static void drop_server(struct server *s, int kill_it) {
  s->alive = 0;
  close_fd(&s->to_fd);
  if (kill_it && s->pid > 0 && !s->reaped) kill(s->pid, SIGKILL);
}

/* Start server number idx. Returns 0, or -1 if it could not be started. */
static int spawn_server(int idx, const char *store_url) {
  struct server *s = &servers[idx];
  int req[2], rep[2];
  pid_t pid;

  if (pipe(req) != 0) {
    perror("tollgate-demo: pipe");
    return -1;
  }
  if (pipe(rep) != 0) {
    perror("tollgate-demo: pipe");
    close(req[0]);
    close(req[1]);
    return -1;
  }
  /* The balancer's ends must not leak into any server. */
  fcntl(req[1], F_SETFD, FD_CLOEXEC);
  fcntl(rep[0], F_SETFD, FD_CLOEXEC);

  fflush(stdout);
  fflush(stderr);
  pid = fork();
  if (pid < 0) {
    perror("tollgate-demo: fork");
    close(req[0]);
    close(req[1]);
    close(rep[0]);
    close(rep[1]);
    return -1;
  }
  if (pid == 0) {
    /* The server. */
    const char *args[5];
    int n_args = 0;
    int in, out, i;

    /* Close the balancer's ends of the other servers' pipes (they are
     * close-on-exec too, but the no-exec fallback needs this), so that
     * each server sees end-of-file when the balancer closes its input. */
    for (i = 0; i < idx; ++i) {
      close_fd(&servers[i].to_fd);
      close_fd(&servers[i].from_fd);
    }
    close(req[1]);
    close(rep[0]);
    /* Move the pipe ends to stdin and stdout, whatever their numbers. */
    in = fcntl(req[0], F_DUPFD, 3);
    out = fcntl(rep[1], F_DUPFD, 3);
    if (in < 0 || out < 0) _exit(127);
    close(req[0]);
    close(rep[1]);
    if (dup2(in, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0) _exit(127);
    close(in);
    close(out);
    signal(SIGPIPE, SIG_DFL);

    if (server_cmd(idx) != NULL) {
      /* Another language's server: split the command on spaces. */
      static char words[LINE_CAP];
      const char *argvx[MAX_CMD_WORDS + 3];
      int nw = 0;
      char *save = NULL, *w;
      snprintf(words, sizeof words, "%s", server_cmd(idx));
      for (w = strtok_r(words, " ", &save); w && nw < MAX_CMD_WORDS;
           w = strtok_r(NULL, " ", &save))
        argvx[nw++] = w;
      if (store_url != NULL) {
        argvx[nw++] = "--store";
        argvx[nw++] = store_url;
      }
      argvx[nw] = NULL;
      if (nw > 0) execvp(argvx[0], (char *const *)argvx);
      fprintf(stderr, "tollgate-demo: cannot run '%s': %s\n", server_cmd(idx),
              strerror(errno));
      _exit(127);
    }
    args[n_args++] = "tollgate-demo";
    args[n_args++] = "--serve";
    if (store_url != NULL) {
      args[n_args++] = "--store";
      args[n_args++] = store_url;
    }
    args[n_args] = NULL;
    execv("/proc/self/exe", (char *const *)args);
    /* No /proc: serve from this forked copy instead. It holds no limiter:
     * the server creates its own below. */
    _exit(serve(STDIN_FILENO, STDOUT_FILENO, store_url));
  }

  close(req[0]);
  close(rep[1]);
  s->pid = pid;
  s->to_fd = req[1];
  s->from_fd = rep[0];
  s->alive = 0; /* until it says READY */
  s->buf_len = 0;
  return 0;
}

/* Close every server's input, wait for each to exit, reap each by pid.
 * Returns non-zero if one crashed or failed (reported unless quiet). */
static int stop_servers(int quiet) {
  int i, bad = 0;
  char line[LINE_CAP];

  for (i = 0; i < n_servers; ++i) close_fd(&servers[i].to_fd);
  for (i = 0; i < n_servers; ++i) {
    struct server *s = &servers[i];
    int r;
    if (s->pid <= 0) continue;
    /* Wait for end-of-file on its output (it exited), discarding any
     * stray line; kill it if it takes too long. */
    while ((r = read_line(s, line, sizeof line, REPLY_TIMEOUT_MS)) == 1) {
    }
    if (r < 0) {
      if (!quiet)
        fprintf(stderr,
                "tollgate-demo: server %d (pid %ld) does not exit; "
                "killing it\n",
                i + 1, (long)s->pid);
      kill(s->pid, SIGKILL);
    }
    close_fd(&s->from_fd);
    while (waitpid(s->pid, &s->exit_status, 0) < 0) {
      if (errno != EINTR) {
        perror("tollgate-demo: waitpid");
        break;
      }
    }
    s->reaped = 1;
    if (quiet) {
      bad |= !WIFEXITED(s->exit_status) || WEXITSTATUS(s->exit_status) != 0;
    } else if (WIFSIGNALED(s->exit_status)) {
      fprintf(stderr,
              "tollgate-demo: server %d (pid %ld) was killed by "
              "signal %d\n",
              i + 1, (long)s->pid, WTERMSIG(s->exit_status));
      bad = 1;
    } else if (WIFEXITED(s->exit_status) && WEXITSTATUS(s->exit_status) != 0) {
      fprintf(stderr,
              "tollgate-demo: server %d (pid %ld) exited with "
              "status %d\n",
              i + 1, (long)s->pid, WEXITSTATUS(s->exit_status));
      bad = 1;
    }
  }
  return bad;
}

/* Send one request to a server and account for its answer. */
static void route(struct server *s, int idx) {
  static const char request[] = "CHECK " ORG_KEY "\n";
  char line[LINE_CAP];
  int r;

  s->received++;
  if (!s->alive) { /* the balancer would answer 502 */
    s->failed++;
    return;
  }
  if (write_all(s->to_fd, request, sizeof request - 1) != 0) {
    fprintf(stderr, "tollgate-demo: server %d (pid %ld) is gone\n", idx + 1,
            (long)s->pid);
    s->failed++;
    drop_server(s, 0);
    return;
  }
  r = read_line(s, line, sizeof line, REPLY_TIMEOUT_MS);
  if (r != 1) {
    fprintf(stderr, "tollgate-demo: server %d (pid %ld) %s\n", idx + 1,
            (long)s->pid, r == 0 ? "died" : "does not answer; killing it");
    s->failed++;
    drop_server(s, r != 0);
    return;
  }
  if (strncmp(line, "ALLOW ", 6) == 0 || strncmp(line, "DENY ", 5) == 0) {
    long long remaining = 0;
    sscanf(strchr(line, ' ') + 1, "%lld", &remaining);
    s->last_remaining = remaining;
    if (line[0] == 'A')
      s->admitted++;
    else
      s->denied++;
  } else {
    fprintf(stderr, "tollgate-demo: server %d (pid %ld): %s\n", idx + 1,
            (long)s->pid, line);
    s->failed++;
  }
}

/* Print `s` as one shell word: as it is if no shell treats any of its
 * characters specially, else in single quotes. */
static void print_shell_word(const char *s) {
  const char *p;
  int plain = *s != '\0';
  for (p = s; *p; ++p)
    if (!isalnum((unsigned char)*p) && strchr("_-./:@%+=,", *p) == NULL)
      plain = 0;
  if (plain) {
    fputs(s, stdout);
    return;
  }
  putchar('\'');
  for (p = s; *p; ++p) {
    if (*p == '\'')
      fputs("'\\''", stdout);
    else
      putchar(*p);
  }
  putchar('\'');
}

/* The tollgate CLI to name: --cli PATH; else the one a CMake build made
 * beside this demo (this binary is <build>/examples/tollgate-demo, the CLI
 * <build>/cli/tollgate), by its absolute path so the hint runs from any
 * directory; else "tollgate" on PATH (an installed tollgate). */
static const char *cli_command(void) {
  static char found[PATH_MAX];
  char self[PATH_MAX], candidate[PATH_MAX + 32];
  char *slash;
  if (g_cli != NULL) return g_cli;
  if (strchr(g_program, '/') == NULL || realpath(g_program, self) == NULL)
    return "tollgate";
  slash = strrchr(self, '/');
  *slash = '\0';
  snprintf(candidate, sizeof candidate, "%s/../cli/tollgate", self);
  if (access(candidate, X_OK) != 0 || realpath(candidate, found) == NULL)
    return "tollgate";
  return found;
}

/* The closing hint of a shared-store run: the CLI listing the org's state
 * in that store. A URL with user info (a password) is not printed: the
 * command then takes it from REDIS_URL. */
static void print_cli_hint(const char *store_url) {
  const char *scheme_end = strstr(store_url, "://");
  const char *at = strchr(store_url, '@');
  const int secret = scheme_end != NULL && at != NULL && at > scheme_end;
  printf("\nSee that counter in the store with the tollgate CLI%s:\n  ",
         secret ? " (REDIS_URL set to the store's URL)" : "");
  print_shell_word(cli_command());
  printf(" keys " ORG_KEY " " PLAN_TEXT);
  if (!secret) {
    printf(" --url ");
    print_shell_word(store_url);
  }
  printf("\n");
}

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: tollgate-demo [--store URL] [--servers N] [--requests N]\n"
      "                     [--server-cmd CMD]... [--cli PATH]\n"
      "\n"
      "Starts N app servers (processes, default %d), each limiting\n"
      "organization " ORG_KEY " to the " PLAN_NAME
      " plan (%d requests per hour,\n"
      "GCRA), and sends them requests round-robin (default %d).\n"
      "\n"
      "  --store URL     store for every server's limiter (default: the\n"
      "                  in-process memory store, one per server)\n"
      "  --servers N     number of server processes, 1..%d\n"
      "  --requests N    requests sent by the load balancer\n"
      "  --server-cmd C  run server k as command C (space-separated,\n"
      "                  \"--store URL\" appended) instead of this\n"
      "                  binary (\"c\": this binary); repeatable: server k\n"
      "                  runs command k mod the number given (e.g. a\n"
      "                  Python or Node server)\n"
      "  --cli PATH      the tollgate CLI that the closing hint of a\n"
      "                  shared-store run names (default: the one built\n"
      "                  beside this demo, else tollgate on PATH)\n",
      DEFAULT_SERVERS, PLAN_LIMIT, DEFAULT_REQUESTS, MAX_SERVERS);
}

static int parse_count(const char *opt, const char *text, long lo, long hi,
                       long *out) {
  char *end = NULL;
  long v;
  errno = 0;
  v = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
    fprintf(stderr, "tollgate-demo: %s wants a number in %ld..%ld, not '%s'\n",
            opt, lo, hi, text);
    return -1;
  }
  *out = v;
  return 0;
}

static void rule(void) {
  printf("  -------  --------  --------  --------  --------  ------  ------\n");
}

int main(int argc, char **argv) {
  if (argc > 0 && argv[0] && argv[0][0]) g_program = argv[0];
  const char *store_url = NULL;
  long requests = DEFAULT_REQUESTS, n = DEFAULT_SERVERS;
  long total_received = 0, total_admitted = 0, total_denied = 0;
  long total_failed = 0;
  int serve_mode = 0, failed_start = 0, exit_code = 0;
  long i;
  struct sigaction sa;

  for (i = 1; i < argc; ++i) {
    const char *a = argv[i];
    if (strcmp(a, "--serve") == 0) {
      serve_mode = 1;
    } else if (strcmp(a, "--store") == 0 && i + 1 < argc) {
      store_url = argv[++i];
    } else if (strcmp(a, "--servers") == 0 && i + 1 < argc) {
      if (parse_count(a, argv[++i], 1, MAX_SERVERS, &n) != 0) return 2;
    } else if (strcmp(a, "--requests") == 0 && i + 1 < argc) {
      if (parse_count(a, argv[++i], 0, MAX_REQUESTS, &requests) != 0) return 2;
    } else if (strcmp(a, "--server-cmd") == 0 && i + 1 < argc) {
      if (n_server_cmds == MAX_SERVERS) {
        fprintf(stderr, "tollgate-demo: at most %d --server-cmd\n",
                MAX_SERVERS);
        return 2;
      }
      server_cmds[n_server_cmds++] = argv[++i];
    } else if (strcmp(a, "--cli") == 0 && i + 1 < argc) {
      g_cli = argv[++i];
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "tollgate-demo: unknown or incomplete option '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }

  if (serve_mode) return serve(STDIN_FILENO, STDOUT_FILENO, store_url);

  /* A server that dies must show up as an error on write, not kill us. */
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGPIPE, &sa, NULL);

  n_servers = (int)n;
  for (i = 0; i < n_servers; ++i) {
    servers[i].pid = -1;
    servers[i].to_fd = servers[i].from_fd = -1;
  }

  printf("tollgate demo: one organization, %d app servers, one rate limit\n",
         n_servers);
  printf("  plan " PLAN_NAME
         ": %d requests per hour (GCRA) for organization " ORG_KEY "\n",
         PLAN_LIMIT);
  if (store_url) {
    /* Never print a password: show the URL without its user info. */
    const char *scheme_end = strstr(store_url, "://");
    const char *at = strchr(store_url, '@');
    if (scheme_end && at && at > scheme_end)
      printf("  store: %.*s***@%s\n", (int)(scheme_end + 3 - store_url),
             store_url, at + 1);
    else
      printf("  store: %s\n", store_url);
  } else {
    printf("  store: memory (default; each server process has its own)\n");
  }
  printf("  load balancer: %ld requests, round-robin over %d servers\n\n",
         requests, n_servers);

  /* Start the servers, then wait for each to report READY (its limiter is
   * created) or ERROR (it could not create one). */
  for (i = 0; i < n_servers; ++i) {
    if (spawn_server((int)i, store_url) != 0) {
      failed_start = 1;
      break;
    }
  }
  for (i = 0; i < n_servers && !failed_start; ++i) {
    struct server *s = &servers[i];
    char line[LINE_CAP];
    int r = read_line(s, line, sizeof line, REPLY_TIMEOUT_MS);
    if (r == 1 && strncmp(line, "READY ", 6) == 0) {
      s->alive = 1;
    } else if (r == 1 && strncmp(line, "ERROR ", 6) == 0) {
      /* "ERROR <code> <message>": the code is a number (RL_E_*) from the C
       * server, the code's name from the Python and Node ones. */
      int code = 0, off = 0;
      if (sscanf(line + 6, "%d %n", &code, &off) < 1) off = 0;
      fprintf(stderr,
              "tollgate-demo: server %ld could not create its limiter for "
              "store '%s': %s%s%s%s\n",
              i + 1, store_url ? store_url : "memory", line + 6 + off,
              code ? " (" : "", code ? rl_strerror(code) : "", code ? ")" : "");
      failed_start = 1;
    } else {
      fprintf(stderr, "tollgate-demo: server %ld (pid %ld) did not start\n",
              i + 1, (long)s->pid);
      drop_server(s, r < 0);
      failed_start = 1;
    }
  }
  /* Start from a clean slate: forget org-123's usage so far. With the
   * memory store this changes nothing (every server is new); with a shared
   * store it makes every run of the demo tell the same story. */
  if (!failed_start) {
    static const char reset[] = "RESET " ORG_KEY "\n";
    char line[LINE_CAP];
    int r = -1;
    if (write_all(servers[0].to_fd, reset, sizeof reset - 1) == 0)
      r = read_line(&servers[0], line, sizeof line, REPLY_TIMEOUT_MS);
    if (r != 1 || strcmp(line, "OK") != 0) {
      fprintf(stderr, "tollgate-demo: could not reset " ORG_KEY ": %s\n",
              r == 1 ? line : "server 1 did not answer");
      failed_start = 1;
    }
  }
  if (failed_start) {
    stop_servers(1);
    return 2;
  }

  /* The load balancer: request k goes to server k mod N. */
  for (i = 0; i < requests; ++i) {
    int k = (int)(i % n_servers);
    route(&servers[k], k);
  }

  if (stop_servers(0) != 0) exit_code = 1;

  printf("  server   language  pid       received  admitted  denied  failed\n");
  rule();
  for (i = 0; i < n_servers; ++i) {
    const struct server *s = &servers[i];
    char label[16];
    server_label((int)i, label, sizeof label);
    printf("  app-%-3ld  %-8s  %-8ld  %8ld  %8ld  %6ld  %6ld\n", i + 1, label,
           (long)s->pid, s->received, s->admitted, s->denied, s->failed);
    total_received += s->received;
    total_admitted += s->admitted;
    total_denied += s->denied;
    total_failed += s->failed;
  }
  rule();
  printf("  total                        %8ld  %8ld  %6ld  %6ld\n\n",
         total_received, total_admitted, total_denied, total_failed);

  printf("admitted in total: %ld\n", total_admitted);
  printf("limit was %d per hour", PLAN_LIMIT);
  if (total_admitted > PLAN_LIMIT) {
    int each_at_limit = 1;
    for (i = 0; i < n_servers; ++i)
      if (servers[i].admitted != PLAN_LIMIT) each_at_limit = 0;
    if (each_at_limit)
      printf("; %d servers x %d = %ld", n_servers, PLAN_LIMIT, total_admitted);
    else
      printf("; the %d servers admitted %ld between them, each up to %d",
             n_servers, total_admitted, PLAN_LIMIT);
    printf(": the limit is per process, not shared.\n");
    printf(
        "Each server counted only the requests it saw itself, in its own "
        "memory,\nso organization " ORG_KEY
        " got %.1fx its plan. Use a "
        "shared Redis store:\n  ",
        (double)total_admitted / PLAN_LIMIT);
    print_shell_word(g_program);
    printf(" --store redis://localhost:6379\n");
  } else if (requests > PLAN_LIMIT) {
    printf(
        "; %ld admitted across %d servers: the limit held,\n"
        "because every server checks the same counter in the shared "
        "store.\n",
        total_admitted, n_servers);
  } else {
    printf(
        "; only %ld requests were sent, so none had to be denied.\n"
        "Send more than %d (--requests N) to see the limit act.\n",
        requests, PLAN_LIMIT);
  }
  if (store_url != NULL && *store_url != '\0' &&
      strcmp(store_url, "memory://") != 0 && total_failed == 0)
    print_cli_hint(store_url);
  if (total_failed > 0) {
    printf(
        "\n%ld requests failed: a server died or stopped answering (see "
        "above).\n",
        total_failed);
    exit_code = 1;
  }
  return exit_code;
}
