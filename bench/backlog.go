package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// backlogSenders is how many distinct senders the backlog comes from.
const backlogSenders = 2000

// backlogMail is mail i of the backlog: 90% plain text of 2-20 KB, every
// tenth with a 500 KB PDF attachment.
func backlogMail(i int) benchMail {
	return benchMail{
		Marker:    marker("bl", i),
		From:      fmt.Sprintf("c%d@client.example.org", i%backlogSenders),
		To:        backlogUser,
		Size:      2000 + (i*7919)%18000,
		AttachLen: map[bool]int{true: 500 << 10}[i%10 == 9],
		Rand:      uint64(i) + 1,
	}
}

// makeBacklog writes n mails straight into the backlog user's Maildir
// (cur/, owned by vmail) and has Dovecot index them with force-resync.
// A mailbox that already holds n messages is kept.
func (b *bench) makeBacklog(ctx context.Context, n int) (bytes int64, err error) {
	m := b.mail
	have, err := m.count(ctx, backlogUser, "INBOX")
	if err != nil {
		return 0, err
	}
	dir := m.maildir(backlogUser)
	if have == n {
		return dirSize(filepath.Join(dir, "cur"))
	}
	if err := m.expungeAll(ctx, backlogUser); err != nil {
		return 0, err
	}
	vm, err := user.Lookup("vmail")
	if err != nil {
		return 0, err
	}
	uid, _ := strconv.Atoi(vm.Uid)
	gid, _ := strconv.Atoi(vm.Gid)
	cur := filepath.Join(dir, "cur")
	if _, err := os.Stat(cur); err != nil {
		return 0, fmt.Errorf("maildir of %s: %w", backlogUser, err)
	}
	now := time.Now().Unix()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	var total int64
	const workers = 2
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				raw := backlogMail(i).raw()
				name := filepath.Join(cur, fmt.Sprintf("%d.M%06dP%d.bench,S=%d:2,", now, i, os.Getpid(), len(raw)))
				err := os.WriteFile(name, raw, 0o600)
				if err == nil {
					err = os.Chown(name, uid, gid)
				}
				mu.Lock()
				total += int64(len(raw))
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	if _, err := m.doveadm(ctx, nil, "force-resync", "-u", backlogUser, "INBOX"); err != nil {
		return 0, err
	}
	if have, err = m.count(ctx, backlogUser, "INBOX"); err != nil {
		return 0, err
	}
	if have != n {
		return 0, fmt.Errorf("backlog: Dovecot sees %d of %d messages", have, n)
	}
	return total, nil
}

// dirSize adds up the sizes of the files in dir.
func dirSize(dir string) (int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n, nil
}

// fetchmailRun downloads the whole backlog mailbox with fetchmail (--all
// --keep, every message written to /dev/null as BSMTP) and returns how long it
// took and how many messages it reported.
func (b *bench) fetchmailRun(ctx context.Context) (time.Duration, error) {
	settleDisk()
	m := b.mail
	home := filepath.Join(b.work, "fetchmail")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return 0, err
	}
	host, port, _ := strings.Cut(m.imapAddr(), ":")
	rc := filepath.Join(home, "fetchmailrc")
	conf := fmt.Sprintf("set no bouncemail\nset no syslog\npoll %s service %s protocol IMAP auth password\n"+
		"  user %q with password %q\n", host, port, backlogUser, m.password())
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, "fetchmail", "-f", rc, "--all", "--keep", "--bsmtp", "/dev/null", "--nodetach", "--sslproto", "")
	cmd.Env = append(os.Environ(), "FETCHMAILHOME="+home, "HOME="+home)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("fetchmail: %v\n%s", err, tail(string(out), 10))
	}
	return d, nil
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// mailgateDrain starts mailgate on the backlog mailbox with a new store and
// waits for the last POST. It returns the time from exec to the last POST
// and the peak RSS.
// With pgDSN set the store is in that PostgreSQL database.
func (b *bench) mailgateDrain(ctx context.Context, rep, n int, pgDSN string) (drain, fromReady, cpu time.Duration, peak int64, err error) {
	m := b.mail
	ul, err := startFakeUserlike()
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer ul.close()
	name := fmt.Sprintf("backlog-%d", rep)
	if pgDSN != "" {
		name = fmt.Sprintf("backlog-pg-%d", rep)
	}
	dir := filepath.Join(b.work, name)
	os.RemoveAll(dir)
	g, err := b.startMailgate(name, daemonConfig{
		IMAPAddr: m.imapAddr(), User: backlogUser, Password: m.password(),
		SMTPAddr: m.smtpAddr(), InboundURL: ul.url(), PostgresDSN: pgDSN,
	})
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer g.stop()
	ready, err := g.waitReady(30 * time.Second)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	want := n + n/10 // a text POST per mail, a media POST per attachment
	got, last := ul.waitPosts(want, 10*time.Minute)
	if got < want {
		return 0, 0, 0, 0, fmt.Errorf("backlog: %d of %d POSTs within 10 minutes; log:\n%s", got, want, g.logTail(10))
	}
	peak = g.peak()
	cpu, _ = g.cpuTime()
	drain = last.Sub(g.started)
	return drain, drain - ready, cpu, peak, nil
}

// runBacklog measures the backlog drain against fetchmail.
func (b *bench) runBacklog(ctx context.Context) error {
	n := b.opts.backlog
	t0 := time.Now()
	size, err := b.makeBacklog(ctx, n)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench:   backlog of %d mails (%s) ready in %v\n", n, mib(float64(size)), time.Since(t0).Round(time.Second))
	var mg, mgReady, fm, ratio, peaks, cpus, floor, floorRatio []float64
	for r := range b.opts.reps {
		fl, got, err := b.imapFloorRun(ctx)
		if err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("floor: read %d of %d messages", got, n)
		}
		var fd time.Duration
		if b.opts.fetchmail {
			if fd, err = b.fetchmailRun(ctx); err != nil {
				return err
			}
		}
		d, dr, cpu, peak, err := b.mailgateDrain(ctx, r, n, "")
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench:   run %d: IMAP floor %v, fetchmail %v, mailgate %v (%v after READY, %v CPU), peak RSS %s\n", r+1, fl.Round(time.Millisecond), fd.Round(time.Millisecond), d.Round(time.Millisecond), dr.Round(time.Millisecond), cpu, mib(float64(peak)))
		floor = append(floor, float64(n)/fl.Seconds())
		floorRatio = append(floorRatio, fl.Seconds()/d.Seconds())
		cpus = append(cpus, float64(cpu)/float64(time.Millisecond)/float64(n))
		mg = append(mg, float64(n)/d.Seconds())
		mgReady = append(mgReady, float64(n)/dr.Seconds())
		fm = append(fm, float64(n)/fd.Seconds())
		ratio = append(ratio, fd.Seconds()/d.Seconds())
		peaks = append(peaks, float64(peak))
	}
	runs := fmt.Sprintf("%d runs", b.opts.reps)
	b.add("backlog",
		row{Figure: fmt.Sprintf("mailgate: %d mails, exec -> last POST", n), Median: unit(quantile(mg, 0.5), "mails/s"), P99: unit(quantile(mg, 0.01), "mails/s") + " (slowest)", Runs: runs, Target: ">= 500 mails/s", Met: yesNo(quantile(mg, 0.5) >= 500)},
		row{Figure: "mailgate: READY=1 -> last POST", Median: unit(quantile(mgReady, 0.5), "mails/s"), Runs: runs},
		row{Figure: "mailgate: CPU time (user+system) per mail", Median: unit(quantile(cpus, 0.5), "ms"), P99: unit(quantile(cpus, 0.99), "ms"), Runs: runs, Target: "<= 1.0 ms", Met: yesNo(quantile(cpus, 0.5) <= 1.0)},
		row{Figure: "IMAP floor: bare go-imap UID FETCH BODY.PEEK[] of the same mailbox", Median: unit(quantile(floor, 0.5), "mails/s"), P99: unit(quantile(floor, 0.01), "mails/s") + " (slowest)", Runs: runs},
		row{Figure: "mailgate / IMAP floor (throughput ratio)", Median: fmt.Sprintf("%.2fx", quantile(floorRatio, 0.5)), Runs: runs, Target: ">= 0.15x", Met: yesNo(quantile(floorRatio, 0.5) >= 0.15)},
	)
	if b.opts.fetchmail {
		b.add("backlog",
			row{Figure: "fetchmail --all --keep --bsmtp /dev/null, same mailbox", Median: unit(quantile(fm, 0.5), "mails/s"), P99: unit(quantile(fm, 0.01), "mails/s") + " (slowest)", Runs: runs},
			row{Figure: "mailgate / fetchmail (throughput ratio)", Median: fmt.Sprintf("%.2fx", quantile(ratio, 0.5)), Runs: runs, Target: ">= 0.8x", Met: yesNo(quantile(ratio, 0.5) >= 0.8)},
		)
	}
	if b.opts.postgres {
		var pg, pgCPU, pgRatio []float64
		for r := range b.opts.reps {
			dsn, err := b.postgresDB(ctx)
			if err != nil {
				return err
			}
			d, _, cpu, _, err := b.mailgateDrain(ctx, r, n, dsn)
			if err != nil {
				return fmt.Errorf("postgres: %w", err)
			}
			fmt.Fprintf(os.Stderr, "bench:   run %d on PostgreSQL: mailgate %v (%v CPU)\n", r+1, d.Round(time.Millisecond), cpu)
			pg = append(pg, float64(n)/d.Seconds())
			pgCPU = append(pgCPU, float64(cpu)/float64(time.Millisecond)/float64(n))
			pgRatio = append(pgRatio, float64(n)/d.Seconds()/quantile(mg, 0.5))
		}
		b.add("backlog",
			row{Figure: fmt.Sprintf("mailgate, store in PostgreSQL: %d mails, exec -> last POST", n), Median: unit(quantile(pg, 0.5), "mails/s"), P99: unit(quantile(pg, 0.01), "mails/s") + " (slowest)", Runs: runs},
			row{Figure: "mailgate, store in PostgreSQL: CPU time per mail (mailgate only)", Median: unit(quantile(pgCPU, 0.5), "ms"), Runs: runs},
			row{Figure: "PostgreSQL / SQLite store (backlog throughput ratio)", Median: fmt.Sprintf("%.2fx", quantile(pgRatio, 0.5)), Runs: runs},
		)
		b.note("backlog", "The PostgreSQL rows run the same backlog with `[store] driver = \"postgres\"` against a private PostgreSQL server (internal/pgtest, Unix socket, fsync on) on the same machine, a new database per run; the CPU figure is mailgate's alone, not the PostgreSQL server's.")
	}
	b.add("memory", row{Figure: fmt.Sprintf("peak RSS (VmHWM) during the %d-mail backlog", n), Median: mib(quantile(peaks, 0.5)), P99: mib(quantile(peaks, 0.99)), Runs: runs})
	b.note("backlog", fmt.Sprintf("The mailbox (%d mails, %s, from %d senders; 90%% plain text of 2-20 KB, every tenth with a 500 KB PDF) is written once as Maildir files plus `doveadm force-resync`. Each run: a bare go-imap client fetches every message (the IMAP floor), fetchmail downloads the whole mailbox, then mailgate starts with a new store and posts it all (%d POSTs: a text per mail, a media URL per attachment); mailgate's time runs from exec to the last POST, so it includes start-up. The fake Userlike runs in the harness on the same 2 cores: it answers each POST at once and, since round 10, decodes only its email and url (the JSON is still checked whole), so that it takes about a tenth of the machine's CPU during the drain rather than a fifth of it. Since round 11 each timed run (floor, fetchmail, mailgate) starts after sync(2), without the writeback of what the runs before wrote.", n, mib(float64(size)), backlogSenders, n+n/10))
	if n != 10000 {
		b.note("backlog", fmt.Sprintf("**%d mails instead of 10,000** (-backlog).", n))
	}
	return nil
}
