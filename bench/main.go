// Command bench measures mailgate end to end and writes BENCHMARKS.md.
//
// It starts private Dovecot and Postfix instances with the e2e suite's
// scripts (e2e/setup.sh, e2e/start.sh, e2e/stop.sh), a fake Userlike
// Inbound URL and SMTP sinks on loopback, builds and runs the real
// mailgate binary against them, and measures arrival latency, backlog
// drain (against fetchmail), webhook acceptance, SMTP delivery, memory and
// start-up time. It then runs the Go micro-benchmarks and writes the
// figures, the machine and the command to BENCHMARKS.md.
//
// Run it from the repository root, as root (Dovecot and Postfix need it):
//
//	go run ./bench                 # what `make bench` runs
//	go run ./bench -quick          # fewer mails and runs, for trying
//	go run ./bench -only arrival,webhook -out /tmp/b.md
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"mailgate/internal/pgtest"
)

// options are the command line flags.
type options struct {
	out       string
	only      map[string]bool
	quick     bool
	keep      bool
	arrivals  int
	backlog   int
	reps      int
	webhookD  time.Duration
	goBench   string
	startRuns int
	perf      bool
	fetchmail bool
	mailgate  string
	postgres  bool
}

// bench is one benchmark run.
type bench struct {
	opts  options
	repo  string
	work  string
	bin   string
	mail  *mailServers
	rows  map[string][]row // section -> rows
	order []string         // sections in order
	notes map[string][]string
	start time.Time

	goBench   []goBenchResult
	loadStart string

	pg *pgtest.Server // started by postgresDB on first use
}

// scenarios in the order they run.
var scenarios = []string{"startup", "memory", "arrival", "backlog", "webhook", "smtp", "gobench"}

func main() {
	var o options
	var only string
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "write the report here (\"\" = do not write)")
	flag.StringVar(&only, "only", "", "comma-separated scenarios to run: "+strings.Join(scenarios, ","))
	flag.BoolVar(&o.quick, "quick", false, "fewer mails and runs (a try-out, not for BENCHMARKS.md)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, stores)")
	flag.IntVar(&o.arrivals, "arrivals", 200, "mails of the arrival latency runs")
	flag.IntVar(&o.backlog, "backlog", 10000, "mails of the backlog")
	flag.IntVar(&o.reps, "reps", 3, "repetitions of the backlog, webhook and SMTP runs")
	flag.DurationVar(&o.webhookD, "webhook-duration", 20*time.Second, "length of one webhook load run")
	flag.StringVar(&o.goBench, "gobench", "1s", "-benchtime of the Go micro-benchmarks")
	flag.IntVar(&o.startRuns, "startups", 10, "start-up runs")
	flag.StringVar(&o.mailgate, "mailgate", "", "run this mailgate binary instead of building ./cmd/mailgate (before/after comparisons)")
	flag.BoolVar(&o.postgres, "postgres", true, "also run the backlog and webhook scenarios with the store in PostgreSQL (a private server from internal/pgtest)")
	flag.BoolVar(&o.fetchmail, "fetchmail", true, "also time fetchmail on the backlog (false: mailgate and the IMAP floor only, for quicker A/B runs)")
	flag.BoolVar(&o.perf, "perf", false, "attach `perf record -g` to every mailgate run (profiles in the kept work directory)")
	flag.Parse()
	o.only = map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			if !slices.Contains(scenarios, s) {
				fmt.Fprintf(os.Stderr, "bench: unknown scenario %q (want %s)\n", s, strings.Join(scenarios, ","))
				os.Exit(2)
			}
			o.only[s] = true
		}
	}
	if o.quick {
		o.arrivals, o.backlog, o.reps, o.webhookD, o.goBench, o.startRuns = 40, 1000, 1, 5*time.Second, "100ms", 3
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("must run as root: Dovecot and Postfix masters need it")
	}
	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(repo, "e2e", "start.sh")); err != nil {
		return fmt.Errorf("run from the repository root (no e2e/start.sh here): %w", err)
	}
	work, err := os.MkdirTemp("", "mailgate-bench-")
	if err != nil {
		return err
	}
	b := &bench{opts: o, repo: repo, work: work, rows: map[string][]row{}, notes: map[string][]string{}, start: time.Now(), loadStart: loadavg()}
	fmt.Fprintf(os.Stderr, "bench: work directory %s\n", work)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	b.bin = filepath.Join(work, "mailgate")
	if o.mailgate != "" {
		if b.bin, err = filepath.Abs(o.mailgate); err != nil {
			return err
		}
	} else {
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", b.bin, "./cmd/mailgate")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/mailgate: %w", err)
		}
	}
	needServers := false
	for _, s := range scenarios {
		if b.want(s) && s != "gobench" {
			needServers = true
		}
	}
	if needServers {
		if b.mail, err = startMailServers(ctx, repo, filepath.Join(work, "mail")); err != nil {
			return err
		}
		defer b.mail.stop()
		fmt.Fprintf(os.Stderr, "bench: Dovecot on %s, Postfix on %s\n", b.mail.imapAddr(), b.mail.smtpAddr())
	}
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"startup", b.runStartup},
		{"memory", b.runMemory},
		{"arrival", b.runArrival},
		{"backlog", b.runBacklog},
		{"webhook", b.runWebhook},
		{"smtp", b.runSMTP},
		{"gobench", b.runGoBench},
	}
	var failed []string
	for _, s := range steps {
		if !b.want(s.name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		t0 := time.Now()
		fmt.Fprintf(os.Stderr, "bench: %s ...\n", s.name)
		if err := s.fn(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s failed: %v\n", s.name, err)
			b.note(s.name, fmt.Sprintf("FAILED: %v", firstLine(err.Error())))
			failed = append(failed, s.name)
		}
		fmt.Fprintf(os.Stderr, "bench: %s took %v\n", s.name, time.Since(t0).Round(time.Second))
	}
	if b.pg != nil {
		b.pg.Stop()
	}
	table := b.table()
	fmt.Println(table)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(b.markdown(table)), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s\n", o.out)
	}
	if !o.keep && len(failed) == 0 {
		if b.mail != nil {
			b.mail.stop()
		}
		os.RemoveAll(work)
	} else {
		fmt.Fprintf(os.Stderr, "bench: work directory kept: %s\n", work)
	}
	if len(failed) > 0 {
		return fmt.Errorf("scenarios failed: %s", strings.Join(failed, ", "))
	}
	return ctx.Err()
}

// postgresDB returns the DSN of a new, empty database on the bench's
// PostgreSQL server, starting the server on first use. The server keeps
// fsync on, as SQLite does, so the two stores are compared durable.
func (b *bench) postgresDB(ctx context.Context) (string, error) {
	if b.pg == nil {
		s, err := pgtest.Start(ctx, pgtest.Options{Durable: true})
		if err != nil {
			return "", err
		}
		b.pg = s
	}
	return b.pg.CreateDatabase(ctx)
}

// want reports whether scenario s is to run.
func (b *bench) want(s string) bool { return len(b.opts.only) == 0 || b.opts.only[s] }

// add appends rows to a section of the table.
func (b *bench) add(section string, rows ...row) {
	if _, ok := b.rows[section]; !ok {
		b.order = append(b.order, section)
	}
	b.rows[section] = append(b.rows[section], rows...)
	for _, r := range rows {
		fmt.Fprintf(os.Stderr, "bench:   %-55s %-14s p99 %-14s %s\n", r.Figure, r.Median, r.P99, r.Runs)
	}
}

// note adds a remark under a section.
func (b *bench) note(section, text string) {
	b.notes[section] = append(b.notes[section], text)
	fmt.Fprintf(os.Stderr, "bench:   note: %s\n", text)
}

// firstLine is the first line of s.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
