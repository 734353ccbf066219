package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"
)

// runStartup measures the time from exec to READY=1: the store opened,
// the HTTP listener bound and the channel's first IMAP login to Dovecot
// tried. The first start creates the store; the others reopen it.
func (b *bench) runStartup(ctx context.Context) error {
	m := b.mail
	ul, err := startFakeUserlike()
	if err != nil {
		return err
	}
	defer ul.close()
	dir := filepath.Join(b.work, "startup")
	var first float64
	var again []float64
	for i := range b.opts.startRuns + 1 {
		g, err := b.startMailgate(filepath.Base(dir), daemonConfig{
			IMAPAddr: m.imapAddr(), User: "jane@example.test", Password: m.password(),
			SMTPAddr: m.smtpAddr(), InboundURL: ul.url(),
		})
		if err != nil {
			return err
		}
		d, err := g.waitReady(30 * time.Second)
		if serr := g.stop(); err == nil && serr != nil {
			err = fmt.Errorf("stop: %w", serr)
		}
		if err != nil {
			return err
		}
		ms := float64(d) / float64(time.Millisecond)
		if i == 0 {
			first = ms
		} else {
			again = append(again, ms)
		}
	}
	b.add("startup",
		row{Figure: "exec -> READY=1, existing store", Median: unit(quantile(again, 0.5), "ms"), P99: unit(quantile(again, 0.99), "ms"), Runs: fmt.Sprintf("%d runs", len(again))},
		row{Figure: "exec -> READY=1, new store (schema created)", Median: unit(first, "ms"), Runs: "1 run"},
	)
	b.note("startup", "READY=1 arrives on a unixgram $NOTIFY_SOCKET owned by the harness; one channel against Dovecot (READY waits for its first IMAP login).")
	return nil
}

// attach25 is the noise in the 25 MiB PDF: the file stays just under
// media.max_size (25 MiB), which it would otherwise exceed by its PDF
// framing and be left out.
const attach25 = 25<<20 - 1024

// runMemory measures RSS: idle after start with one channel, the peak
// while one 25 MiB attachment goes through. (The backlog's peak is taken
// in runBacklog.)
func (b *bench) runMemory(ctx context.Context) error {
	m := b.mail
	if err := m.expungeAll(ctx, supportUser); err != nil {
		return err
	}
	ul, err := startFakeUserlike()
	if err != nil {
		return err
	}
	defer ul.close()
	var idle, peak []float64
	reps := max(1, min(b.opts.reps, 3))
	for r := range reps {
		g, err := b.startMailgate(fmt.Sprintf("memory-%d", r), daemonConfig{
			IMAPAddr: m.imapAddr(), User: supportUser, Password: m.password(),
			SMTPAddr: m.smtpAddr(), InboundURL: ul.url(),
		})
		if err != nil {
			return err
		}
		err = func() error {
			if _, err := g.waitReady(30 * time.Second); err != nil {
				return err
			}
			time.Sleep(5 * time.Second)
			rss, _, err := g.memory()
			if err != nil {
				return err
			}
			idle = append(idle, float64(rss))

			ul.reset()
			run := fmt.Sprintf("m%x", rand.Uint32())
			raw := benchMail{Marker: marker(run, 0), From: "big-" + run + "@client.example.org", To: supportUser,
				Size: 1000, AttachLen: attach25, Rand: uint64(r)}.raw()
			if err := m.save(ctx, supportUser, raw); err != nil {
				return err
			}
			if got, _ := ul.waitPosts(2, 2*time.Minute); got < 2 {
				return fmt.Errorf("25 MiB attachment: %d of 2 POSTs (text and media) within 2 minutes; log:\n%s", got, g.logTail(10))
			}
			time.Sleep(time.Second) // the IMAP \Seen and its commit
			peak = append(peak, float64(g.peak()))
			return nil
		}()
		if serr := g.stop(); err == nil && serr != nil {
			err = fmt.Errorf("stop: %w", serr)
		}
		if err != nil {
			return err
		}
		if err := m.expungeAll(ctx, supportUser); err != nil {
			return err
		}
	}
	runs := fmt.Sprintf("%d runs", reps)
	b.add("memory",
		row{Figure: "RSS 5 s after READY, one idle channel", Median: mib(quantile(idle, 0.5)), P99: mib(quantile(idle, 0.99)), Runs: runs, Target: "< 40 MiB", Met: yesNo(quantile(idle, 0.5) < 40<<20)},
		row{Figure: "peak RSS (VmHWM) while a 25 MiB attachment goes through", Median: mib(quantile(peak, 0.5)), P99: mib(quantile(peak, 0.99)), Runs: runs, Target: "< 120 MiB", Met: yesNo(quantile(peak, 0.5) < 120<<20)},
	)
	b.note("memory", "The 25 MiB attachment is a PDF of random bytes, base64 in a 34 MiB email, delivered with doveadm save; the peak is VmHWM from /proc/PID/status (also sampled every 10 ms) once its text and media POSTs arrived.")
	return nil
}
