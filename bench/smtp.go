package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"mailgate/outbound"
	"mailgate/smtpout"
	"mailgate/store"
)

// smtpSink is an SMTP server on loopback that accepts and discards every
// message and counts them.
type smtpSink struct {
	srv *smtp.Server
	ln  net.Listener

	mu      sync.Mutex
	count   int
	last    time.Time
	changed chan struct{}
}

// startSMTPSink starts a sink on 127.0.0.1.
func startSMTPSink() (*smtpSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	k := &smtpSink{ln: ln, changed: make(chan struct{})}
	k.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return sinkSession{k}, nil }))
	k.srv.Domain = "sink.localhost"
	k.srv.MaxMessageBytes = 64 << 20
	k.srv.ReadTimeout, k.srv.WriteTimeout = time.Minute, time.Minute
	k.srv.ErrorLog = log.New(io.Discard, "", 0)
	go k.srv.Serve(ln)
	return k, nil
}

func (k *smtpSink) addr() string { return k.ln.Addr().String() }
func (k *smtpSink) close()       { k.srv.Close() }

// waitCount waits until n messages arrived or timeout; it returns the
// count and the time of the last one.
func (k *smtpSink) waitCount(n int, timeout time.Duration) (int, time.Time) {
	deadline := time.After(timeout)
	for {
		k.mu.Lock()
		got, last, ch := k.count, k.last, k.changed
		k.mu.Unlock()
		if got >= n {
			return got, last
		}
		select {
		case <-ch:
		case <-deadline:
			return got, last
		}
	}
}

type sinkSession struct{ k *smtpSink }

func (s sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s sinkSession) Reset()                               {}
func (s sinkSession) Logout() error                        { return nil }
func (s sinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	k := s.k
	k.mu.Lock()
	k.count++
	k.last = time.Now()
	close(k.changed)
	k.changed = make(chan struct{})
	k.mu.Unlock()
	return nil
}

// replyEnvelope is reply i: about 3 KB of text and HTML, as a rendered
// operator reply is, to the address daemonOutbox gives its reply i (a
// plus address of one of the 50 Dovecot users), so that the raw bursts
// and the outbox runs they are compared with hand Postfix the same
// recipients. Until round 10 the raw bursts cycled through the 50 plain
// addresses, which Postfix accepts faster than 500 distinct ones.
func replyEnvelope(i int, rcptDomain string) *smtpout.Envelope {
	to := replyContact(i, rcptDomain)
	var b strings.Builder
	fmt.Fprintf(&b, "From: Support <support@example.test>\r\nTo: <%s>\r\nSubject: Re: Question %d\r\n", to, i)
	fmt.Fprintf(&b, "Message-ID: <bench-%d-%d@example.test>\r\nDate: %s\r\nMIME-Version: 1.0\r\n", i, time.Now().UnixNano(), time.Now().Format(time.RFC1123Z))
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
	for b.Len() < 3000 {
		b.WriteString("Thanks for waiting, we have looked at your order and it is on its way.\r\n")
	}
	return &smtpout.Envelope{From: "support@example.test", To: []string{to}, Data: []byte(b.String())}
}

// replyContact is the recipient of reply i of a run: a contact per reply,
// so that the outbox coalesces none, as plus addresses of the 50 Dovecot
// users.
func replyContact(i int, rcptDomain string) string {
	return fmt.Sprintf("cust%d+r%d@%s", i%50+1, i, rcptDomain)
}

// sendRate sends n replies to addr with smtpout.Sender, either in bursts
// of burst per connection, and returns replies per second.
func sendRate(ctx context.Context, addr string, n, burst int, rcptDomain string) (float64, error) {
	s, err := smtpout.NewSender(smtpout.SenderOptions{Address: addr, Security: smtpout.SecurityNone, HELO: "bench.localhost"})
	if err != nil {
		return 0, err
	}
	envs := make([]*smtpout.Envelope, n)
	for i := range envs {
		envs[i] = replyEnvelope(i, rcptDomain)
	}
	start := time.Now()
	for i := 0; i < n; i += burst {
		for _, err := range s.Send(ctx, envs[i:min(i+burst, n)]) {
			if err != nil {
				return 0, fmt.Errorf("send to %s: %w", addr, err)
			}
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// sendRateConns sends n replies to addr with smtpout.Sender as one burst
// split over conns connections at once, the way the outbox splits a large
// burst (outbound.BurstConnections): every recipient's replies over one
// connection, each new recipient to the connection with the fewest so far.
// It returns replies per second from the first dial until the last
// connection is done.
func sendRateConns(ctx context.Context, addr string, n, conns int, rcptDomain string) (float64, error) {
	s, err := smtpout.NewSender(smtpout.SenderOptions{Address: addr, Security: smtpout.SecurityNone, HELO: "bench.localhost"})
	if err != nil {
		return 0, err
	}
	lanes := make([][]*smtpout.Envelope, conns)
	laneOf := map[string]int{}
	for i := range n {
		e := replyEnvelope(i, rcptDomain)
		l, seen := laneOf[e.To[0]]
		if !seen {
			for k := range lanes {
				if len(lanes[k]) < len(lanes[l]) {
					l = k
				}
			}
			laneOf[e.To[0]] = l
		}
		lanes[l] = append(lanes[l], e)
	}
	errs := make([]error, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for l, envs := range lanes {
		wg.Go(func() {
			for _, err := range s.Send(ctx, envs) {
				if err != nil {
					errs[l] = fmt.Errorf("send to %s: %w", addr, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// daemonOutbox fills a new store's outbox with n due replies to n
// contacts, starts mailgate with relay as its SMTP relay and returns the
// replies sent per second from the moment the outbox worker starts (its
// "outbound: worker started" log line) until the store has them all
// recorded sent, and the same count over the time from exec. When idle is
// not nil it is called just before exec, to wait until the relay has
// delivered what earlier runs left in its queue.
func (b *bench) daemonOutbox(ctx context.Context, name, relay, rcptDomain string, n int, idle func(context.Context) error) (fromWork, fromExec float64, err error) {
	m := b.mail
	dir := filepath.Join(b.work, name)
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, 0, err
	}
	db, err := store.Open(ctx, filepath.Join(dir, "mailgate.db"), store.Options{})
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	for i := range n {
		_, _, err := db.Enqueue(ctx, &store.OutboxItem{
			Channel: "support", Contact: replyContact(i, rcptDomain),
			UserlikeID: fmt.Sprintf("id:%s-%d", name, i), Operator: "Olga",
			Text: strings.Repeat("Thanks for waiting, we have looked at your order. ", 20),
		})
		if err != nil {
			return 0, 0, err
		}
	}
	ul, err := startFakeUserlike()
	if err != nil {
		return 0, 0, err
	}
	defer ul.close()
	if idle != nil {
		if err := idle(ctx); err != nil {
			return 0, 0, err
		}
	}
	g, err := b.startMailgate(filepath.Base(dir), daemonConfig{
		IMAPAddr: m.imapAddr(), User: "jane@example.test", Password: m.password(),
		SMTPAddr: relay, InboundURL: ul.url(), Coalesce: "0s",
	})
	if err != nil {
		return 0, 0, err
	}
	defer g.stop()
	if _, err := g.waitReady(30 * time.Second); err != nil {
		return 0, 0, err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		c, err := db.OutboxCounts(ctx, "support")
		if err != nil {
			return 0, 0, err
		}
		if c[store.OutboxSent] >= n {
			done := time.Now()
			began, err := workerStarted(g.logPath)
			if err != nil {
				return 0, 0, fmt.Errorf("%s: %w", name, err)
			}
			if cpu, err := g.cpuTime(); err == nil {
				fmt.Fprintf(os.Stderr, "bench:   %s: mailgate's CPU from exec %v, %.2f ms per reply\n", name, cpu, float64(cpu.Microseconds())/1000/float64(n))
			}
			return float64(n) / done.Sub(began).Seconds(), float64(n) / done.Sub(g.started).Seconds(), nil
		}
		if c[store.OutboxFailed] > 0 {
			return 0, 0, fmt.Errorf("%s: %d replies failed; log:\n%s", name, c[store.OutboxFailed], g.logTail(10))
		}
		time.Sleep(outboxPoll)
	}
	return 0, 0, fmt.Errorf("%s: replies not all sent within 5 minutes; log:\n%s", name, g.logTail(10))
}

// outboxPairs is the least number of outbox runs against Postfix, each
// paired with its raw bursts (-reps may ask for more): the ratio of one
// pair ranged from 0.70 to 1.16 in round 11's runs, so the median of 3
// moved by a tenth from one `make bench` to the next.
const outboxPairs = 5

// outboxPoll is how often daemonOutbox reads the store's counts: the
// completion time is late by about half of it on average.
const outboxPoll = 2 * time.Millisecond

// workerStarted returns the time of the outbox worker's start in a
// mailgate log: its "outbound: worker started" line or, from a binary
// older than that line, the last "channel started" line, which the daemon
// logs just before it starts the worker.
func workerStarted(logPath string) (time.Time, error) {
	raw, err := os.ReadFile(logPath)
	if err != nil {
		return time.Time{}, err
	}
	var channel time.Time
	for line := range strings.Lines(string(raw)) {
		worker := strings.Contains(line, `msg="outbound: worker started"`)
		if !worker && !strings.Contains(line, `msg="channel started"`) {
			continue
		}
		ts, ok := strings.CutPrefix(strings.Fields(line)[0], "time=")
		if !ok {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s: time of %q: %w", logPath, strings.TrimSpace(line), err)
		}
		if worker {
			return t, nil
		}
		channel = t
	}
	if channel.IsZero() {
		return time.Time{}, fmt.Errorf("%s: no line says when the outbox worker started", logPath)
	}
	return channel, nil
}

// postfixQueued counts the messages in the bench Postfix's queue that it
// has not delivered to Dovecot yet.
func (m *mailServers) postfixQueued() (int, error) {
	q := filepath.Join(m.dir, "postfix-queue")
	n := 0
	for _, sub := range []string{"maildrop", "incoming", "active", "deferred", "hold"} {
		err := filepath.WalkDir(filepath.Join(q, sub), func(_ string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				n++
			}
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			return 0, fmt.Errorf("count Postfix's queue: %w", err)
		}
	}
	return n, nil
}

// postfixIdle waits until Postfix has delivered every queued message to
// Dovecot, and then for the disk to settle (settleDisk), so that every
// timed run against it starts with an empty queue instead of sharing the
// cores and the disk with the LMTP deliveries of the runs before (Postfix
// accepts about twice as fast as it delivers).
func (m *mailServers) postfixIdle(ctx context.Context) error {
	start := time.Now()
	deadline := start.Add(3 * time.Minute)
	first := -1
	for {
		q, err := m.postfixQueued()
		if err != nil {
			return err
		}
		if first < 0 {
			first = q
		}
		if q == 0 {
			settleDisk()
			if first > 0 {
				fmt.Fprintf(os.Stderr, "bench:   waited %v for Postfix to deliver %d queued messages\n", time.Since(start).Round(time.Millisecond), first)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postfix still has %d messages queued after 3 minutes", q)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// runSMTP measures SMTP delivery: smtpout.Sender in bursts over one
// connection and one reply per connection, to an in-process go-smtp sink
// and to Postfix; and the daemon's outbox worker end to end.
func (b *bench) runSMTP(ctx context.Context) error {
	sink, err := startSMTPSink()
	if err != nil {
		return err
	}
	defer sink.close()
	const n = 500
	type target struct {
		name, addr, domain string
		idle               func(context.Context) error // nil: nothing to wait for
	}
	targets := []target{
		{"go-smtp sink", sink.addr(), "client.example.org", nil},
		{"Postfix", b.mail.smtpAddr(), "example.test", b.mail.postfixIdle},
	}
	reps := b.opts.reps
	// The outbox sends a burst of n over this many connections at once:
	// the raw peer of the same connections is measured too.
	conns := 1
	if n >= outbound.ParallelFrom {
		conns = outbound.BurstConnections
	}
	for _, t := range targets {
		var burst, burstN, single, gain []float64
		// Each timed send starts from an idle relay.
		fromIdle := func(send func() (float64, error)) (float64, error) {
			if t.idle != nil {
				if err := t.idle(ctx); err != nil {
					return 0, err
				}
			}
			return send()
		}
		for range reps {
			rb, err := fromIdle(func() (float64, error) { return sendRate(ctx, t.addr, n, n, t.domain) })
			if err != nil {
				return err
			}
			rn, err := fromIdle(func() (float64, error) { return sendRateConns(ctx, t.addr, n, conns, t.domain) })
			if err != nil {
				return err
			}
			rs, err := fromIdle(func() (float64, error) { return sendRate(ctx, t.addr, n, 1, t.domain) })
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "bench:   %s: burst %.0f mails/s, over %d connections %.0f mails/s, one per connection %.0f mails/s\n", t.name, rb, conns, rn, rs)
			burst, burstN, single, gain = append(burst, rb), append(burstN, rn), append(single, rs), append(gain, rb/rs)
		}
		runs := fmt.Sprintf("%d runs of %d", reps, n)
		b.add("smtp",
			row{Figure: t.name + ": smtpout.Sender, one burst over one connection", Median: unit(quantile(burst, 0.5), "mails/s"), P99: unit(quantile(burst, 0.01), "mails/s") + " (slowest)", Runs: runs},
			row{Figure: fmt.Sprintf("%s: smtpout.Sender, one burst over %d connections at once", t.name, conns), Median: unit(quantile(burstN, 0.5), "mails/s"), P99: unit(quantile(burstN, 0.01), "mails/s") + " (slowest)", Runs: runs},
			row{Figure: t.name + ": smtpout.Sender, one mail per connection", Median: unit(quantile(single, 0.5), "mails/s"), P99: unit(quantile(single, 0.01), "mails/s") + " (slowest)", Runs: runs},
			row{Figure: t.name + ": gain of connection reuse", Median: fmt.Sprintf("%.1fx", quantile(gain, 0.5)), Runs: runs},
		)
	}
	// Each outbox run against Postfix is paired with a raw burst over one
	// connection and one over as many connections as the outbox uses, in
	// an order that turns with the run (outbox first, last, in the middle),
	// each from an empty queue, and each ratio is the median of its runs'
	// ratios: the other load on the machine drifts over the minute the
	// runs take.
	// Their ratios spread over about 0.3 from pair to pair, so there are
	// at least outboxPairs of them.
	pairs := max(reps, outboxPairs)
	var ds, dp, dsExec, dpExec, ratios, ratiosN []float64
	for r := range pairs {
		// The sink run too waits until Postfix has delivered what the runs
		// before left queued: its LMTP deliveries to Dovecot would share
		// the cores and the disk (mailgate's WAL fsyncs) with it.
		rs, rsExec, err := b.daemonOutbox(ctx, fmt.Sprintf("outbox-sink-%d", r), sink.addr(), "client.example.org", n, b.mail.postfixIdle)
		if err != nil {
			return err
		}
		var rp, rpExec, raw, rawN float64
		order := [][3]int{{0, 1, 2}, {2, 1, 0}, {1, 2, 0}}[r%3] // 0: outbox, 1: raw, 2: raw over conns
		for _, step := range order {
			if step == 0 {
				if rp, rpExec, err = b.daemonOutbox(ctx, fmt.Sprintf("outbox-postfix-%d", r), b.mail.smtpAddr(), "example.test", n, b.mail.postfixIdle); err != nil {
					return err
				}
				continue
			}
			if err := b.mail.postfixIdle(ctx); err != nil {
				return err
			}
			if step == 1 {
				raw, err = sendRate(ctx, b.mail.smtpAddr(), n, n, "example.test")
			} else {
				rawN, err = sendRateConns(ctx, b.mail.smtpAddr(), n, conns, "example.test")
			}
			if err != nil {
				return err
			}
		}
		fmt.Fprintf(os.Stderr, "bench:   outbox run %d: go-smtp sink %.0f replies/s (%.0f from exec), Postfix %.0f replies/s (%.0f from exec), paired raw burst %.0f mails/s: %.2fx, over %d connections %.0f mails/s: %.2fx\n", r, rs, rsExec, rp, rpExec, raw, rp/raw, conns, rawN, rp/rawN)
		ds, dp = append(ds, rs), append(dp, rp)
		dsExec, dpExec = append(dsExec, rsExec), append(dpExec, rpExec)
		ratios, ratiosN = append(ratios, rp/raw), append(ratiosN, rp/rawN)
	}
	runs := fmt.Sprintf("%d runs of %d", pairs, n)
	b.add("smtp",
		row{Figure: "mailgate outbox -> go-smtp sink (worker start -> all recorded sent)", Median: unit(quantile(ds, 0.5), "replies/s"), P99: unit(quantile(ds, 0.01), "replies/s") + " (slowest)", Runs: runs},
		row{Figure: "mailgate outbox -> Postfix (worker start -> all recorded sent)", Median: unit(quantile(dp, 0.5), "replies/s"), P99: unit(quantile(dp, 0.01), "replies/s") + " (slowest)", Runs: runs},
		row{Figure: "mailgate outbox -> go-smtp sink (exec -> all recorded sent)", Median: unit(quantile(dsExec, 0.5), "replies/s"), P99: unit(quantile(dsExec, 0.01), "replies/s") + " (slowest)", Runs: runs},
		row{Figure: "mailgate outbox -> Postfix (exec -> all recorded sent)", Median: unit(quantile(dpExec, 0.5), "replies/s"), P99: unit(quantile(dpExec, 0.01), "replies/s") + " (slowest)", Runs: runs},
		ratioRow("mailgate outbox / smtpout.Sender burst, Postfix (throughput ratio)", quantile(ratios, 0.5), 1, 0.9, runs),
		row{Figure: fmt.Sprintf("mailgate outbox / smtpout.Sender burst over %d connections, Postfix (throughput ratio, same connections)", conns), Median: fmt.Sprintf("%.2fx", quantile(ratiosN, 0.5)), Runs: runs},
	)
	b.note("smtp", fmt.Sprintf("smtpout.Sender rows: %d prepared 3 KB replies (since round 11 to the outbox runs' recipients, as many plus addresses of the 50 Dovecot users) sent from the harness process, either all over one connection (Send with %d envelopes) or with one Send, hence one connection, per reply; the time runs from the call of Send (dial included) until it returns. Postfix accepts into its queue and delivers to Dovecot over LMTP in the background; 'sent' means accepted by the relay.", n, n))
	b.note("smtp", fmt.Sprintf("Outbox rows: %d replies to as many contacts (plus addresses of 50 mailboxes) are queued in a new store before mailgate starts (sent_folder off, coalesce 0). The ratio row and the 'worker start' rows time from the outbox worker's start (its 'outbound: worker started' log line, ms resolution) until the store has all replies recorded sent (polled every %v), so they include reading the outbox, claiming, threading, rendering and the commits, but not the daemon's start-up, as the raw burst's time includes the dial but not preparing its envelopes. The 'exec' rows add the start-up (round 6 timed only from exec; until round 5 from READY=1, which came after the outbox had sent all replies to the go-smtp sink).", n, outboxPoll))
	b.note("smtp", fmt.Sprintf("The ratio rows are medians over the runs of (outbox replies/s from worker start) / (a raw burst's mails/s), each outbox run against Postfix paired with a raw burst over one connection and one over %d connections of its own, right before or after it (the order turns with the run), so that both sides of a ratio see the same load from the rest of the machine.", conns))
	b.note("smtp", fmt.Sprintf("Since round 9 the outbox sends a burst of %d or more emails over outbound.BurstConnections = %d connections at once, each contact's emails over one of them in order (Postfix's per-message queue fsync, not mailgate, is most of each email's time). The goal row compares it with the raw burst over one connection, as the goal was set; the 'same connections' row compares it with smtpout.Sender over %d connections split the same way (each recipient on one connection), which gains as much from the relay's parallelism: both ratios are stated.", outbound.ParallelFrom, outbound.BurstConnections, conns))
	b.note("smtp", "Every timed run against Postfix (raw burst, one mail per connection, outbox), and since round 9 every outbox run against the go-smtp sink, starts when Postfix's queue is empty: Postfix accepts about twice as fast as it delivers over LMTP, and until round 6 the outbox runs, which come last, shared the cores and the disk with the delivery of the 3,000 raw mails before them while the first raw burst had an idle relay. Since round 11 each of those runs also starts after sync(2), so that the kernel's writeback of the Maildir files delivered before does not share the disk with it.")
	return nil
}

// ratioRow is a row comparing a rate with a peer's rate measured in the
// same run, against a goal ratio.
func ratioRow(figure string, rate, peer, goal float64, runs string) row {
	r := row{Figure: figure, Runs: runs, Target: fmt.Sprintf(">= %.2gx", goal)}
	if peer <= 0 {
		r.Median = "n/a"
		return r
	}
	ratio := rate / peer
	r.Median = fmt.Sprintf("%.2fx", ratio)
	r.Met = yesNo(ratio >= goal)
	return r
}
