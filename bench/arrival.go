package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailgate/devmail"
)

// supportUser is the mailbox of the arrival, memory and start-up runs;
// backlogUser holds the 10,000-mail backlog, generated once.
const (
	supportUser = "support@example.test"
	backlogUser = "bob@example.test"
)

// arrivalResult is one arrival run: per mail, the time from delivery
// start to the POST, and (Dovecot only) to the EXISTS an IDLE client saw.
type arrivalResult struct {
	post   []time.Duration
	exists []time.Duration
	save   []time.Duration // how long doveadm save itself took
	lost   int             // mails without a POST within the timeout
}

// existsProbe is an IMAP client in IDLE that records when each message
// count was announced.
type existsProbe struct {
	c    *imapclient.Client
	idle *imapclient.IdleCommand
	base uint32

	mu   sync.Mutex
	seen []existsAt
}

type existsAt struct {
	n  uint32
	at time.Time
}

// startExistsProbe logs in, selects INBOX and enters IDLE.
func startExistsProbe(addr, user, pass string) (*existsProbe, error) {
	p := &existsProbe{}
	c, err := imapclient.DialInsecure(addr, &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					p.mu.Lock()
					p.seen = append(p.seen, existsAt{*d.NumMessages, time.Now()})
					p.mu.Unlock()
				}
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("probe: dial %s: %w", addr, err)
	}
	if err := c.Login(user, pass).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("probe: login: %w", err)
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("probe: select: %w", err)
	}
	p.c, p.base = c, sel.NumMessages
	if p.idle, err = c.Idle(); err != nil {
		c.Close()
		return nil, fmt.Errorf("probe: idle: %w", err)
	}
	return p, nil
}

// at returns when the count first reached base+k (k from 1).
func (p *existsProbe) at(k int) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.seen {
		if s.n >= p.base+uint32(k) {
			return s.at, true
		}
	}
	return time.Time{}, false
}

// close leaves IDLE and logs out.
func (p *existsProbe) close() {
	p.idle.Close()
	p.idle.Wait()
	p.c.Logout().Wait()
	p.c.Close()
}

// arrivalDovecot delivers n mails spaced interval apart into the support
// mailbox with doveadm save while mailgate and an IDLE probe watch it.
func (b *bench) arrivalDovecot(ctx context.Context, n int, interval time.Duration) (*arrivalResult, error) {
	m := b.mail
	if err := m.expungeAll(ctx, supportUser); err != nil {
		return nil, err
	}
	ul, err := startFakeUserlike()
	if err != nil {
		return nil, err
	}
	defer ul.close()
	g, err := b.startMailgate("arrival-dovecot", daemonConfig{
		IMAPAddr: m.imapAddr(), User: supportUser, Password: m.password(),
		SMTPAddr: m.smtpAddr(), InboundURL: ul.url(),
	})
	if err != nil {
		return nil, err
	}
	defer g.stop()
	if _, err := g.waitReady(30 * time.Second); err != nil {
		return nil, err
	}
	probe, err := startExistsProbe(m.imapAddr(), supportUser, m.password())
	if err != nil {
		return nil, err
	}
	defer probe.close()
	time.Sleep(time.Second) // both in IDLE

	run := fmt.Sprintf("a%x", rand.Uint32())
	res := &arrivalResult{}
	starts := make([]time.Time, n)
	saves := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	begin := time.Now()
	for i := range n {
		time.Sleep(time.Until(begin.Add(time.Duration(i) * interval)))
		raw := benchMail{Marker: marker(run, i), From: fmt.Sprintf("c%d-%s@client.example.org", i, run), To: supportUser, Size: 2000, Rand: uint64(i)}.raw()
		wg.Add(1)
		go func() {
			defer wg.Done()
			starts[i] = time.Now()
			errs[i] = m.save(ctx, supportUser, raw)
			saves[i] = time.Since(starts[i])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	ul.waitPosts(n, 60*time.Second)
	time.Sleep(200 * time.Millisecond)
	for i := range n {
		res.save = append(res.save, saves[i])
		if t, ok := ul.arrival(marker(run, i)); ok {
			res.post = append(res.post, t.Sub(starts[i]))
		} else {
			res.lost++
		}
		// doveadm save runs are concurrent only when one takes longer
		// than the interval; the k-th finished save is the k-th message.
		if t, ok := probe.at(i + 1); ok {
			res.exists = append(res.exists, t.Sub(starts[i]))
		}
	}
	return res, nil
}

// arrivalDevmail does the same against the in-process devmail IMAP server
// (go-imap's imapmemserver, which re-checks for new mail every 20 ms in
// IDLE), delivering with an in-process APPEND.
func (b *bench) arrivalDevmail(ctx context.Context, n int, interval time.Duration) (*arrivalResult, error) {
	const pass = "bench-secret"
	dm, err := devmail.Start(devmail.Options{Users: map[string]string{supportUser: pass}})
	if err != nil {
		return nil, err
	}
	defer dm.Close()
	ul, err := startFakeUserlike()
	if err != nil {
		return nil, err
	}
	defer ul.close()
	g, err := b.startMailgate("arrival-devmail", daemonConfig{
		IMAPAddr: dm.IMAPAddr(), User: supportUser, Password: pass,
		SMTPAddr: dm.SMTPAddr(), InboundURL: ul.url(),
	})
	if err != nil {
		return nil, err
	}
	defer g.stop()
	if _, err := g.waitReady(30 * time.Second); err != nil {
		return nil, err
	}
	time.Sleep(time.Second)

	run := fmt.Sprintf("d%x", rand.Uint32())
	starts := make([]time.Time, n)
	begin := time.Now()
	for i := range n {
		time.Sleep(time.Until(begin.Add(time.Duration(i) * interval)))
		raw := benchMail{Marker: marker(run, i), From: fmt.Sprintf("c%d-%s@client.example.org", i, run), To: supportUser, Size: 2000, Rand: uint64(i)}.raw()
		starts[i] = time.Now()
		if _, err := dm.Deliver(supportUser, "INBOX", raw); err != nil {
			return nil, err
		}
	}
	ul.waitPosts(n, 60*time.Second)
	res := &arrivalResult{}
	for i := range n {
		if t, ok := ul.arrival(marker(run, i)); ok {
			res.post = append(res.post, t.Sub(starts[i]))
		} else {
			res.lost++
		}
	}
	return res, nil
}

// runArrival measures arrival latency against Dovecot (with Dovecot's own
// IDLE notify delay beside it) and against devmail.
func (b *bench) runArrival(ctx context.Context) error {
	n, interval := b.opts.arrivals, 100*time.Millisecond
	d, err := b.arrivalDovecot(ctx, n, interval)
	if err != nil {
		return err
	}
	dm, err := b.arrivalDevmail(ctx, n, interval)
	if err != nil {
		return err
	}
	post, exists, save, dev := msOf(d.post), msOf(d.exists), msOf(d.save), msOf(dm.post)
	samples := fmt.Sprintf("%d mails, 1 run", n)
	dovecotP50, addedP50 := quantile(exists, 0.5), quantile(post, 0.5)-quantile(exists, 0.5)
	b.add("arrival",
		row{Figure: "Dovecot: doveadm save -> POST received, p50", Median: unit(quantile(post, 0.5), "ms"), P99: unit(quantile(post, 0.99), "ms"), Runs: samples},
		row{Figure: "Dovecot: doveadm save -> POST received, p90", Median: unit(quantile(post, 0.9), "ms"), Runs: samples},
		row{Figure: "Dovecot's own delay: doveadm save -> EXISTS in IDLE", Median: unit(dovecotP50, "ms"), P99: unit(quantile(exists, 0.99), "ms"), Runs: samples},
		row{Figure: "mailgate's share: POST p50 - EXISTS p50", Median: unit(addedP50, "ms"), Runs: samples, Target: "<= 50 ms", Met: yesNo(addedP50 <= 50)},
		row{Figure: "devmail (in-process IMAP): APPEND -> POST received, p50", Median: unit(quantile(dev, 0.5), "ms"), P99: unit(quantile(dev, 0.99), "ms"), Runs: samples},
		row{Figure: "devmail: APPEND -> POST received, p90", Median: unit(quantile(dev, 0.9), "ms"), Runs: samples},
		row{Figure: "doveadm save itself (process start to exit)", Median: unit(quantile(save, 0.5), "ms"), P99: unit(quantile(save, 0.99), "ms"), Runs: samples},
	)
	if d.lost > 0 || dm.lost > 0 {
		b.note("arrival", fmt.Sprintf("mails without a POST within 60 s: Dovecot %d, devmail %d", d.lost, dm.lost))
	}
	if len(exists) < n {
		b.note("arrival", fmt.Sprintf("the IDLE probe saw %d of %d mails", len(exists), n))
	}
	b.note("arrival", fmt.Sprintf("%d mails %v apart, each from a new sender, 2 KB of text; latency runs from the start of `doveadm save` (or the in-process APPEND for devmail) to the fake Userlike receiving the text POST. The IDLE probe is a second IMAP client in IDLE on the same mailbox during the same run, so both clocks start at the same `doveadm save`. Dovecot delays IDLE notifications per connection (each IMAP process has its own timer), so the probe and mailgate hear of a mail at slightly different moments: mailgate's share is the difference of the medians, not a per-mail difference.", n, interval))
	return nil
}
