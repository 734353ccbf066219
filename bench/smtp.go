package main

import (
	"context"
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
// operator reply is.
func replyEnvelope(i int, rcptDomain string) *smtpout.Envelope {
	to := fmt.Sprintf("cust%d@%s", i%50+1, rcptDomain)
	var b strings.Builder
	fmt.Fprintf(&b, "From: Support <support@example.test>\r\nTo: <%s>\r\nSubject: Re: Question %d\r\n", to, i)
	fmt.Fprintf(&b, "Message-ID: <bench-%d-%d@example.test>\r\nDate: %s\r\nMIME-Version: 1.0\r\n", i, time.Now().UnixNano(), time.Now().Format(time.RFC1123Z))
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
	for b.Len() < 3000 {
		b.WriteString("Thanks for waiting, we have looked at your order and it is on its way.\r\n")
	}
	return &smtpout.Envelope{From: "support@example.test", To: []string{to}, Data: []byte(b.String())}
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

// daemonOutbox fills a new store's outbox with n due replies to n
// contacts, starts mailgate with relay as its SMTP relay and returns the
// replies sent per second from exec until the store has them all sent.
// (Not from READY=1: the outbox can have sent everything to a fast relay
// before the daemon reports ready.)
func (b *bench) daemonOutbox(ctx context.Context, name, relay, rcptDomain string, n int) (float64, error) {
	m := b.mail
	dir := filepath.Join(b.work, name)
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	db, err := store.Open(ctx, filepath.Join(dir, "mailgate.db"), store.Options{})
	if err != nil {
		return 0, err
	}
	for i := range n {
		_, _, err := db.Enqueue(ctx, &store.OutboxItem{
			// A contact per reply, so that none are coalesced: plus
			// addresses of the 50 Dovecot users.
			Channel: "support", Contact: fmt.Sprintf("cust%d+r%d@%s", i%50+1, i, rcptDomain),
			UserlikeID: fmt.Sprintf("id:%s-%d", name, i), Operator: "Olga",
			Text: strings.Repeat("Thanks for waiting, we have looked at your order. ", 20),
		})
		if err != nil {
			db.Close()
			return 0, err
		}
	}
	ul, err := startFakeUserlike()
	if err != nil {
		db.Close()
		return 0, err
	}
	defer ul.close()
	g, err := b.startMailgate(filepath.Base(dir), daemonConfig{
		IMAPAddr: m.imapAddr(), User: "jane@example.test", Password: m.password(),
		SMTPAddr: relay, InboundURL: ul.url(), Coalesce: "0s",
	})
	if err != nil {
		db.Close()
		return 0, err
	}
	defer g.stop()
	defer db.Close()
	if _, err := g.waitReady(30 * time.Second); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		c, err := db.OutboxCounts(ctx, "support")
		if err != nil {
			return 0, err
		}
		if c[store.OutboxSent] >= n {
			return float64(n) / time.Since(g.started).Seconds(), nil
		}
		if c[store.OutboxFailed] > 0 {
			return 0, fmt.Errorf("%s: %d replies failed; log:\n%s", name, c[store.OutboxFailed], g.logTail(10))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s: replies not all sent within 5 minutes; log:\n%s", name, g.logTail(10))
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
	}
	targets := []target{{"go-smtp sink", sink.addr(), "client.example.org"}, {"Postfix", b.mail.smtpAddr(), "example.test"}}
	reps := b.opts.reps
	rawBurst := map[string]float64{} // median burst rate per target, for the outbox ratio
	for _, t := range targets {
		var burst, single, gain []float64
		for range reps {
			rb, err := sendRate(ctx, t.addr, n, n, t.domain)
			if err != nil {
				return err
			}
			rs, err := sendRate(ctx, t.addr, n, 1, t.domain)
			if err != nil {
				return err
			}
			burst, single, gain = append(burst, rb), append(single, rs), append(gain, rb/rs)
		}
		runs := fmt.Sprintf("%d runs of %d", reps, n)
		rawBurst[t.name] = quantile(burst, 0.5)
		b.add("smtp",
			row{Figure: t.name + ": smtpout.Sender, one burst over one connection", Median: unit(quantile(burst, 0.5), "mails/s"), P99: unit(quantile(burst, 0.01), "mails/s") + " (slowest)", Runs: runs},
			row{Figure: t.name + ": smtpout.Sender, one mail per connection", Median: unit(quantile(single, 0.5), "mails/s"), P99: unit(quantile(single, 0.01), "mails/s") + " (slowest)", Runs: runs},
			row{Figure: t.name + ": gain of connection reuse", Median: fmt.Sprintf("%.1fx", quantile(gain, 0.5)), Runs: runs},
		)
	}
	var ds, dp []float64
	for r := range reps {
		rs, err := b.daemonOutbox(ctx, fmt.Sprintf("outbox-sink-%d", r), sink.addr(), "client.example.org", n)
		if err != nil {
			return err
		}
		rp, err := b.daemonOutbox(ctx, fmt.Sprintf("outbox-postfix-%d", r), b.mail.smtpAddr(), "example.test", n)
		if err != nil {
			return err
		}
		ds, dp = append(ds, rs), append(dp, rp)
	}
	runs := fmt.Sprintf("%d runs of %d", reps, n)
	b.add("smtp",
		row{Figure: "mailgate outbox -> go-smtp sink (exec -> all sent)", Median: unit(quantile(ds, 0.5), "replies/s"), P99: unit(quantile(ds, 0.01), "replies/s") + " (slowest)", Runs: runs},
		row{Figure: "mailgate outbox -> Postfix (exec -> all sent)", Median: unit(quantile(dp, 0.5), "replies/s"), P99: unit(quantile(dp, 0.01), "replies/s") + " (slowest)", Runs: runs},
		ratioRow("mailgate outbox / smtpout.Sender burst, Postfix (throughput ratio)", quantile(dp, 0.5), rawBurst["Postfix"], 0.9, runs),
	)
	b.note("smtp", fmt.Sprintf("smtpout.Sender rows: %d prepared 3 KB replies sent from the harness process, either all over one connection (Send with %d envelopes) or with one Send, hence one connection, per reply. Postfix accepts into its queue and delivers to Dovecot over LMTP in the background; 'sent' means accepted by the relay.", n, n))
	b.note("smtp", fmt.Sprintf("Outbox rows: %d replies to as many contacts (plus addresses of 50 mailboxes) are queued in a new store before mailgate starts (sent_folder off, coalesce 0); the time runs from exec until the store has them all sent (polled every 20 ms), so it includes start-up, rendering, threading and the per-reply commits. (It ran from READY=1 until round 6, when the outbox had sent all 500 replies to the go-smtp sink before READY=1 and the rate came out absurd.)", n))
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
