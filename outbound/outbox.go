// Package outbound turns operator replies into emails: the Webhook takes
// Userlike's outbound calls into the store's outbox, and the Outbox sends
// the due replies by SMTP, threaded into the customer's conversation
// (threading.go), with the operator's media fetched safely (safefetch).
package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mailgate/classify"
	"mailgate/mailtext"
	"net/mail"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"mailgate/mailaddr"
	"mailgate/mailparse"
	"mailgate/msgid"
	"mailgate/outbound/safefetch"
	"mailgate/smtpout"
	"mailgate/store"
	"mailgate/userlike"
)

// DefaultFromTemplate is the display name of a reply's From when the
// channel sets none: the operator's name and the channel's.
const DefaultFromTemplate = "{operator} ({channel})"

// drainTimeout bounds how long sends in flight may run after shutdown
// begins.
const drainTimeout = 30 * time.Second

// DefaultMaxAge is how long a reply is retried before it fails.
const DefaultMaxAge = 72 * time.Hour

// retrySchedule is the wait after the n-th failed attempt (n from 1); the
// last entry repeats until the item is older than the channel's MaxAge.
var retrySchedule = [...]time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 2 * time.Hour}

// RetryDelay returns how long a reply waits after its attempts-th failed
// delivery attempt: 1m, 5m, 15m, 1h, then 2h each time.
func RetryDelay(attempts int) time.Duration {
	return retrySchedule[min(max(attempts, 1), len(retrySchedule))-1]
}

// loginWait is how soon a reply is tried again while its channel's OAuth2
// grant waits for `mailgate oauth login`: an attempt then costs nothing
// (the token source answers from the store, without a connection), and the
// reply should leave soon after the login, not at the next long step of
// the schedule.
const loginWait = 30 * time.Second

// needsLogin reports whether err says that the channel's OAuth2 grant
// needs a person to log in again (oauthgrant.LoginNeededError).
func needsLogin(err error) bool {
	var nl interface{ NeedsLogin() bool }
	return errors.As(err, &nl) && nl.NeedsLogin()
}

// MailSender delivers a burst of messages over one SMTP connection, each
// as next hands it over, and returns one error per message;
// *smtpout.Sender implements it (see its SendEach). The worker calls
// SendEach from up to BurstConnections goroutines at once, one per
// connection of a burst, so it must be safe for concurrent use.
type MailSender interface {
	SendEach(ctx context.Context, next func() (*smtpout.Envelope, bool)) []error
}

// SentAppender keeps a copy of a sent reply, for example by IMAP APPEND to
// the mailbox's Sent folder.
type SentAppender interface {
	AppendSent(ctx context.Context, raw []byte) error
}

// Channel is what the outbox worker needs to know about one channel.
type Channel struct {
	// Name is the channel name (the X-Mailgate-Channel header).
	Name string
	// From is the sender of replies. Its display name is the {channel} of
	// FromTemplate (the channel name when it has none).
	From mail.Address
	// ReplyTo is the mailbox address customers answer to; "" leaves the
	// header out (answers go to From).
	ReplyTo string
	// EnvelopeFrom is the SMTP MAIL FROM; "" means From.Address.
	EnvelopeFrom string
	// FromTemplate makes the From display name from {operator} and
	// {channel}; "" means DefaultFromTemplate. Without an operator name
	// the display name is {channel}.
	FromTemplate string
	// NewSubject is the subject of a reply to a contact without a thread;
	// "" means DefaultNewSubject of the {channel} name.
	NewSubject string
	// Sender delivers the channel's mail.
	Sender MailSender
	// Notify posts failure notices into the contact's conversation when
	// NotifyFailures is set.
	Notify         *userlike.Client
	NotifyFailures bool
	// MaxAge is how long temporary failures are retried, counted from the
	// oldest item of the email; 0 means DefaultMaxAge.
	MaxAge time.Duration
	// SentFolder, if not nil, gets a copy of every sent reply.
	SentFolder SentAppender
	// FooterText and FooterHTML are appended to every reply.
	FooterText, FooterHTML string
	// Quote quotes the customer's last email below the reply.
	Quote bool
	// ReplyCc copies replies to the CC list of the contact's thread (the
	// Cc of the contact's latest email; smtp.reply_cc = "thread").
	ReplyCc bool
	// OwnAddresses are mailgate's own addresses, never copied on a reply
	// even if a thread lists one (the configuration may have changed since
	// the email came in).
	OwnAddresses []string
}

// Outcome is reported to Options.Observe, for metrics.
type Outcome struct {
	Channel string
	// Kind is "sent", "retried", "failed" or "bounced".
	Kind string
	// Items is how many operator messages the email carried.
	Items int
	// Latency is, for "sent", the time from the oldest item's arrival on
	// the webhook to the relay's acceptance.
	Latency time.Duration
}

// Options configures the outbox worker.
type Options struct {
	DB *store.DB
	// Channels looks a channel up by name.
	Channels func(name string) (Channel, bool)
	// Fetcher downloads operator media; nil turns every media URL into a
	// link.
	Fetcher *safefetch.Fetcher
	// MsgID makes the replies' Message-IDs and recognises them in bounces.
	MsgID *msgid.Generator
	// MaxMediaSize caps the attachments of one email together; media over
	// it become links. 0 means safefetch.DefaultMaxSize.
	MaxMediaSize int64
	// TempDir holds fetched media while an email is rendered; "" means
	// os.TempDir().
	TempDir string
	// IdlePoll is the longest the worker sleeps without a Wake; 0 means 1m.
	IdlePoll time.Duration
	// Observe, when set, is told the outcome of every email.
	Observe func(Outcome)
	Logger  *slog.Logger
	// Now returns the current time; tests step it to skip backoffs.
	Now func() time.Time
}

// Outbox is the outbox worker: it mails the operators' queued replies,
// each contact's burst as one threaded email, with retries, failure notices
// and bounce matching.
//
// Delivery is at-least-once: an email whose acceptance by the relay was not
// yet recorded when the process died is sent again after the restart (call
// store.RequeueSending before Run), under the same Message-ID.
type Outbox struct {
	opts Options
	log  *slog.Logger
	wake chan struct{}
	beat atomic.Int64
	// nextAt is when the worker's timer fires (unix ns, by opts.Now); 0
	// while it reads the outbox, when every Wake must wake it.
	nextAt atomic.Int64
}

// New returns the outbox worker.
func New(opts Options) (*Outbox, error) {
	if opts.DB == nil || opts.Channels == nil || opts.MsgID == nil {
		return nil, errors.New("outbound: outbound needs a store, a channel lookup and a Message-ID generator")
	}
	if opts.MaxMediaSize <= 0 {
		opts.MaxMediaSize = safefetch.DefaultMaxSize
	}
	if opts.IdlePoll <= 0 {
		opts.IdlePoll = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Observe == nil {
		opts.Observe = func(Outcome) {}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := &Outbox{opts: opts, log: log, wake: make(chan struct{}, 1)}
	o.beat.Store(time.Now().UnixNano())
	return o, nil
}

// Wake tells the worker that channel has new or cancelled items, due at
// due (the zero time: now). It never blocks. Items due no earlier than the
// worker's timer fires wait for it: during a burst of webhook calls with
// coalescing, a wake per call would read the outbox twice per call for
// nothing.
func (o *Outbox) Wake(channel string, due time.Time) {
	if n := o.nextAt.Load(); n != 0 && !due.IsZero() && due.UnixNano() >= n {
		return
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Heartbeat is when the worker loop last went round.
func (o *Outbox) Heartbeat() time.Time { return time.Unix(0, o.beat.Load()) }

// Run mails due replies until ctx is done, then returns nil. It sleeps
// until the next item is due, a Wake, or IdlePoll.
func (o *Outbox) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	// Sends in flight when ctx ends may finish, for at most drainTimeout:
	// cutting an SMTP transaction short would only send the email twice
	// after the restart.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopDrain := context.AfterFunc(ctx, func() { time.AfterFunc(drainTimeout, cancelWork) })
	defer stopDrain()
	o.log.Info("outbound: worker started")
	for {
		o.beat.Store(time.Now().UnixNano())
		if ctx.Err() != nil {
			return nil
		}
		o.nextAt.Store(0)
		if err := o.Flush(work); err != nil && ctx.Err() == nil {
			o.log.Error("outbound: sending due replies failed", "err", err)
		}
		wait := o.opts.IdlePoll
		if next, ok, err := o.opts.DB.NextOutboxDue(ctx); err != nil && ctx.Err() == nil {
			o.log.Error("outbound: reading the outbox failed", "err", err)
			wait = 5 * time.Second
		} else if ok {
			wait = min(wait, max(next.Sub(o.opts.Now()), 10*time.Millisecond))
		}
		o.nextAt.Store(o.opts.Now().Add(wait).UnixNano())
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-o.wake:
		case <-timer.C:
		}
	}
}

// job is one email in the making: a due batch and what became of it.
type job struct {
	ch    Channel
	batch store.OutboxBatch
	ids   []int64 // the items marked sending
	msgID string
	th    *store.Thread // the contact's thread, started if need be
	opens bool          // th was started for this email
	raw   []byte
	env   *smtpout.Envelope
	// recorded is set once the relay's acceptance is committed.
	recorded bool
}

// channelRetry is how long replies wait when their channel is not running.
const channelRetry = 15 * time.Second

// Flush mails every batch that is due now, each channel's over one SMTP
// connection, and records the outcomes. It returns an error only when the
// outbox cannot be read.
func (o *Outbox) Flush(ctx context.Context) error {
	batches, err := o.opts.DB.DueOutbox(ctx, o.opts.Now())
	if err != nil {
		return err
	}
	var order []string
	byChannel := map[string][]*job{}
	for _, b := range batches {
		ch, ok := o.opts.Channels(b.Channel)
		if !ok || ch.Sender == nil {
			// The channel is restarting after a reload, or was removed from
			// the configuration: keep the replies queued and look again
			// later; they are not failed for it.
			o.log.Warn("outbound: the channel is not running; its replies stay queued", "channel", b.Channel, "contact", b.Contact, "items", len(b.Items))
			if err := o.opts.DB.DeferOutbox(ctx, b.IDs(), o.opts.Now().Add(channelRetry)); err != nil {
				return err
			}
			continue
		}
		if _, seen := byChannel[b.Channel]; !seen {
			order = append(order, b.Channel)
		}
		byChannel[b.Channel] = append(byChannel[b.Channel], &job{ch: ch, batch: b})
	}
	for _, name := range order {
		if ctx.Err() != nil {
			return nil
		}
		o.sendChannel(ctx, byChannel[name])
	}
	return nil
}

// maxMarking bounds the concurrent MarkOutboxSending calls of a burst.
const maxMarking = 8

// The marks of a burst go in chunks, each made durable by one barrier
// before its emails are rendered: firstChunk jobs so that the first email
// leaves soon, then chunks chunkGrowth times larger, up to maxChunk, each
// claimed while the relay takes the emails of the chunk before (a claim
// takes about 0.1 ms per job, a relay a few ms per email). Each barrier is
// a WAL fsync, which costs a few ms of CPU and shares the disk with the
// relay's own queue fsyncs when the relay is on the same machine: a burst
// of 500 takes 8 (2, 8, 32, 128, 128, 128, 74, and one after the burst)
// where doubling up to 32 took 20. maxChunk bounds how long one claim
// holds the store's write lock (about 10-15 ms), which the webhook's
// commits wait for.
const (
	firstChunk  = 2
	chunkGrowth = 4
	maxChunk    = 128
)

// builtAhead is how many rendered emails at most wait for the relay, per
// connection.
const builtAhead = 2

// BurstConnections is how many SMTP connections a channel's burst of at
// least ParallelFrom emails is sent over at once; a smaller burst goes over
// one. A relay on the same machine spends most of each email in its own
// queue file's fsync (Postfix's cleanup), not in mailgate or on the wire,
// so a second connection lets it take two emails at a time. Two stay well
// under the concurrent connections a relay allows one client (Postfix's
// smtpd_client_connection_count_limit is 50 by default).
const BurstConnections = 2

// ParallelFrom is the smallest burst sent over BurstConnections
// connections: a connection costs a dial, EHLO and, on most relays,
// STARTTLS and AUTH, which a few emails do not earn back.
const ParallelFrom = 16

// lanes splits jobs over the connections of their burst (see
// BurstConnections): every email to one contact goes over the same
// connection, in the order of jobs, so that a contact's emails arrive in
// the order they were threaded; each new contact goes to the connection
// with the fewest emails so far. lane[i] is jobs[i]'s connection, n how
// many there are.
func lanes(jobs []*job) (lane []int, n int) {
	lane = make([]int, len(jobs))
	if len(jobs) < ParallelFrom {
		return lane, 1
	}
	n = BurstConnections
	load := make([]int, n)
	byContact := make(map[string]int, len(jobs))
	for i, j := range jobs {
		key := mailaddr.Key(j.batch.Contact)
		l, seen := byContact[key]
		if !seen {
			l = 0
			for k := range load {
				if load[k] < load[l] {
					l = k
				}
			}
			byContact[key] = l
		}
		lane[i] = l
		load[l]++
	}
	return lane, n
}

// sendChannel sends the jobs of one channel in one burst and settles each:
// over one connection, or over BurstConnections at once when the burst is
// large (see lanes). Three stages overlap: a goroutine marks the jobs'
// items sending (under the emails' Message-IDs) and starts their threads,
// in chunks, each chunk on disk (a barrier) before its emails go on; a
// goroutine per connection renders that connection's marked emails in
// order; the relay takes the ones before. The acceptances are recorded
// while the next emails go out.
func (o *Outbox) sendChannel(ctx context.Context, jobs []*job) {
	if len(jobs) == 0 {
		return
	}
	// The outcome is recorded even when ctx ended during the burst.
	settleCtx := context.WithoutCancel(ctx)
	lane, nLanes := lanes(jobs)
	laneOf := make(map[*job]int, len(jobs))
	for i, j := range jobs {
		laneOf[j] = lane[i]
	}
	// Each connection's marked jobs wait in a queue that holds them all,
	// so that a connection whose relay is slow never holds up the other.
	marked := make([]chan *job, nLanes)
	for l := range marked {
		marked[l] = make(chan *job, len(jobs))
	}
	var nMarked int // jobs marked and on disk; read once marked is closed
	go func() {
		defer func() {
			for _, c := range marked {
				close(c)
			}
		}()
		nMarked = o.markChunks(ctx, jobs, func(j *job) { marked[laneOf[j]] <- j })
	}()
	// Acceptances are recorded while the next emails of the burst go out,
	// not before them (the commit would hold up the burst), recordBatch
	// at a time in one transaction, and none later than recordDelay after
	// the relay accepted it. A crash (the process killed) mid-burst
	// re-sends the emails in flight (one per connection) and at most
	// recordBatch accepted ones whose record was not committed yet; a
	// power cut re-sends every email since the last barrier, as before
	// (the records are durable at the barrier after the burst).
	accepted := make(chan *job, len(jobs))
	var recorder sync.WaitGroup
	recorder.Go(func() { o.recordAccepted(settleCtx, accepted) })
	sent := make([][]*job, nLanes)
	errs := make([][]error, nLanes)
	var senders sync.WaitGroup
	for l := range nLanes {
		built := make(chan *job, builtAhead)
		go func() {
			defer close(built)
			for j := range marked[l] {
				if o.build(ctx, j) {
					built <- j
				}
			}
		}()
		senders.Go(func() {
			errs[l] = jobs[0].ch.Sender.SendEach(ctx, func() (*smtpout.Envelope, bool) {
				j, ok := <-built
				if !ok {
					return nil, false
				}
				j.env.Accepted = func() { accepted <- j }
				sent[l] = append(sent[l], j)
				return j.env, true
			})
		})
	}
	senders.Wait()
	close(accepted)
	recorder.Wait()
	// Every SendEach has read its built to the end, so the stages are done.
	if nMarked > 0 {
		// One barrier makes the burst's outcomes durable: a power cut
		// before it sends the burst again, with the same Message-IDs.
		defer func() {
			if err := o.opts.DB.Barrier(settleCtx); err != nil {
				o.log.Error("outbound: cannot make the sent replies durable", "channel", jobs[0].ch.Name, "err", err)
			}
		}()
	}
	for l := range nLanes {
		for i, j := range sent[l] {
			var err error
			if i < len(errs[l]) {
				err = errs[l][i]
			} else {
				err = errors.New("the sender returned no result for this message")
			}
			o.settle(settleCtx, j, err)
		}
	}
}

// markChunks claims jobs in chunks (see firstChunk), each chunk in one
// store transaction, and hands each chunk's claimed jobs to out, in order,
// once a barrier has made their marks and threads durable: an email sent
// again after a power cut keeps its Message-ID. It returns how many jobs
// it handed on. When ctx ends, the jobs not yet claimed stay queued.
func (o *Outbox) markChunks(ctx context.Context, jobs []*job, out func(*job)) int {
	handed := 0
	for start, size := 0, firstChunk; start < len(jobs) && ctx.Err() == nil; size = min(chunkGrowth*size, maxChunk) {
		chunk := jobs[start:min(start+size, len(jobs))]
		start += len(chunk)
		var ready []*job
		for i, ok := range o.prepareAll(ctx, chunk) {
			if ok {
				ready = append(ready, chunk[i])
			}
		}
		if len(ready) == 0 {
			continue
		}
		if err := o.opts.DB.Barrier(ctx); err != nil {
			for _, j := range ready {
				o.retry(context.WithoutCancel(ctx), j, err)
			}
			continue
		}
		for _, j := range ready {
			out(j)
		}
		handed += len(ready)
	}
	return handed
}

// prepareAll prepares the jobs (see prepare) in one store transaction;
// when that fails, each on its own, concurrently, so that the store still
// commits them in groups and one job's failure is its own. ok[i] is
// prepare's answer for jobs[i].
func (o *Outbox) prepareAll(ctx context.Context, jobs []*job) (ok []bool) {
	ok = make([]bool, len(jobs))
	claims := make([]*store.OutboxClaim, len(jobs))
	for i, j := range jobs {
		claims[i] = o.claim(j)
	}
	err := o.opts.DB.MarkOutboxSendingAll(ctx, claims)
	if err == nil {
		for i, j := range jobs {
			ok[i] = o.claimed(j, claims[i])
		}
		return ok
	}
	if ctx.Err() != nil {
		return ok // nothing was claimed: the replies stay queued
	}
	o.log.Warn("outbound: cannot claim a burst's replies together; claiming them one by one", "channel", jobs[0].ch.Name, "emails", len(jobs), "err", err)
	var marking sync.WaitGroup
	next := make(chan int)
	for range min(len(jobs), maxMarking) {
		marking.Go(func() {
			for i := range next {
				ok[i] = o.prepare(ctx, jobs[i], claims[i])
			}
		})
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	marking.Wait()
	return ok
}

// An accepted email's record waits for at most recordBatch-1 more
// acceptances and at most recordDelay: one commit then records several
// emails. Each commit writes its pages to the WAL with one system call
// each, and a commit after every email, on the same cores as the SMTP
// exchange, slowed the burst by about a tenth (BenchmarkOutboxBurst).
const (
	recordBatch = 4
	recordDelay = 20 * time.Millisecond
)

// recordAccepted records the jobs that come on accepted (see recordBatch)
// until it is closed.
func (o *Outbox) recordAccepted(ctx context.Context, accepted <-chan *job) {
	var pending []*job
	wait := time.NewTimer(recordDelay)
	wait.Stop()
	defer wait.Stop()
	for {
		select {
		case j, ok := <-accepted:
			if !ok {
				if len(pending) > 0 {
					o.record(ctx, pending)
				}
				return
			}
			pending = append(pending, j)
			if len(pending) == 1 {
				wait.Reset(recordDelay)
			}
			if len(pending) < recordBatch {
				continue
			}
		case <-wait.C:
		}
		wait.Stop()
		o.record(ctx, pending)
		pending = nil
	}
}

// record commits the relay's acceptance of the jobs' emails, in one
// transaction when it can; a job whose record fails is settled again
// later (settle tries once more).
func (o *Outbox) record(ctx context.Context, jobs []*job) {
	if len(jobs) > 1 {
		emails := make([]store.SentEmail, len(jobs))
		for i, j := range jobs {
			emails[i] = store.SentEmail{IDs: j.ids, MessageID: j.msgID}
		}
		if err := o.opts.DB.MarkOutboxSentAll(ctx, emails); err == nil {
			for _, j := range jobs {
				j.recorded = true
			}
			return
		}
		// One of them could not be recorded: each alone, so that the
		// others are.
	}
	for _, j := range jobs {
		if err := o.opts.DB.MarkOutboxSent(ctx, j.ids, j.msgID); err == nil {
			j.recorded = true
		}
	}
}

// claim gives j its Message-ID (that of an earlier attempt when every
// item was part of it) and returns its store claim: the items to mark
// sending and, when the contact has no thread or one without subject, the
// subject to start it with.
func (o *Outbox) claim(j *job) *store.OutboxClaim {
	b := &j.batch
	j.msgID = reuseMessageID(b.Items)
	if j.msgID == "" {
		j.msgID = o.opts.MsgID.New()
	}
	c := &store.OutboxClaim{IDs: b.IDs(), MessageID: j.msgID, Channel: j.ch.Name, Contact: b.Contact}
	if th := b.Thread; th == nil || th.Subject == "" {
		subject := j.ch.NewSubject
		if subject == "" {
			subject = DefaultNewSubject(channelDisplayName(j.ch))
		}
		c.Subject = mailtext.NormalizeSubject(subject)
	}
	return c
}

// claimed takes the outcome of j's claim c into j: the items that moved
// to sending (the others were cancelled meanwhile) and the thread. It
// returns false when nothing is left to send.
func (o *Outbox) claimed(j *job, c *store.OutboxClaim) bool {
	b := &j.batch
	moved := c.Moved
	if len(moved) == 0 {
		return false
	}
	if len(moved) < len(b.Items) {
		keep := b.Items[:0]
		for _, it := range b.Items {
			if slices.Contains(moved, it.ID) {
				keep = append(keep, it)
			}
		}
		b.Items = keep
	}
	j.ids = moved
	j.th, j.opens = b.Thread, false
	if c.Subject != "" {
		j.th, j.opens = c.Thread, b.Thread == nil || len(b.Thread.Messages) == 0
	}
	return true
}

// prepare makes j's claim c alone: it marks the job's items sending under
// the email's Message-ID and starts the contact's thread when there is
// none. It returns false when there is nothing to send (all cancelled, or
// the mark failed) or the thread cannot be started (then the items are
// retried).
func (o *Outbox) prepare(ctx context.Context, j *job, c *store.OutboxClaim) bool {
	moved, err := o.opts.DB.MarkOutboxSending(ctx, c.IDs, c.MessageID)
	if err != nil {
		o.log.Error("outbound: cannot mark replies as sending", "channel", j.ch.Name, "contact", j.batch.Contact, "err", err)
		return false
	}
	c.Moved = moved
	if len(moved) > 0 && c.Subject != "" {
		if c.Thread, err = o.opts.DB.EnsureThread(ctx, c.Channel, c.Contact, c.Subject); err != nil {
			o.claimed(j, c) // the items that moved are retried
			o.retry(context.WithoutCancel(ctx), j, fmt.Errorf("cannot start the thread: %w", err))
			return false
		}
	}
	return o.claimed(j, c)
}

// build renders the job's email. It returns false when the email cannot
// be built (then the items are retried or have failed).
func (o *Outbox) build(ctx context.Context, j *job) bool {
	b := &j.batch
	cc := replyRecipients(j.ch, b.Contact, j.th)
	raw, err := o.render(ctx, j, j.th, j.opens, cc)
	if err != nil {
		if ctx.Err() != nil {
			o.retry(context.WithoutCancel(ctx), j, err)
			return false
		}
		o.fail(ctx, j.ch, b.Contact, j.ids, len(b.Items), "the email could not be built: "+err.Error(), true)
		return false
	}
	j.raw = raw
	from := j.ch.EnvelopeFrom
	if from == "" {
		from = j.ch.From.Address
	}
	j.env = &smtpout.Envelope{From: from, To: []string{b.Contact}, Copies: cc, Data: raw}
	return true
}

// replyRecipients are the addresses a reply to contact in th copies: the
// thread's CC list when the channel keeps it, without the contact and the
// channel's own addresses.
func replyRecipients(ch Channel, contact string, th *store.Thread) []string {
	if !ch.ReplyCc || th == nil || len(th.Cc) == 0 {
		return nil
	}
	var cc []*mail.Address
	for _, a := range th.Cc {
		cc = append(cc, &mail.Address{Address: a})
	}
	out, _ := mailaddr.Copies(cc, append([]string{contact, ch.From.Address, ch.EnvelopeFrom}, ch.OwnAddresses...), len(cc))
	return out
}

// bounceRecipient is the addr-spec of a report's Final-Recipient (RFC 3464
// section 2.3.2, the type prefix already removed) as mailaddr.Key; "" when
// the report names none or not as an address.
func bounceRecipient(final string) string {
	final = strings.Trim(strings.TrimSpace(final), "<>")
	if !mailaddr.Plain(final) {
		return ""
	}
	return mailaddr.Key(final)
}

// reuseMessageID returns the Message-ID of an earlier attempt when every
// item was part of it, so that a retried email keeps its id.
func reuseMessageID(items []*store.OutboxItem) string {
	if len(items) == 0 {
		return ""
	}
	id := items[0].MessageID
	for _, it := range items[1:] {
		if it.MessageID != id {
			return ""
		}
	}
	return id
}

// render builds the email of j's items as a reply in th; opens says that
// th was started for this email.
func (o *Outbox) render(ctx context.Context, j *job, th *store.Thread, opens bool, cc []string) ([]byte, error) {
	b := &j.batch
	newest := b.Items[len(b.Items)-1]
	h := ReplyHeaders(th, ReplyThreadOptions{MessageID: j.msgID, Written: newest.CreatedAt, Opens: opens})
	r := &smtpout.Reply{
		From:        mail.Address{Name: FromDisplayName(j.ch, operatorOf(b.Items)), Address: j.ch.From.Address},
		To:          mail.Address{Address: b.Contact},
		ReplyTo:     j.ch.ReplyTo,
		Subject:     h.Subject,
		MessageID:   h.MessageID,
		InReplyTo:   h.InReplyTo,
		References:  h.References,
		ThreadTopic: h.ThreadTopic,
		ThreadIndex: h.ThreadIndex,
		Date:        o.opts.Now(),
		Headers:     map[string]string{classify.OwnHeader: j.ch.Name},
	}
	for _, a := range cc {
		r.Cc = append(r.Cc, mail.Address{Address: a})
	}
	var texts []string
	for _, it := range b.Items {
		if t := strings.TrimSpace(it.Text); t != "" {
			texts = append(texts, t)
		}
	}
	r.Text = strings.Join(texts, "\n\n")
	r.FooterText, r.FooterHTML = j.ch.FooterText, j.ch.FooterHTML
	if j.ch.Quote {
		if last, err := o.opts.DB.LatestFromContact(ctx, j.ch.Name, b.Contact); err == nil && last.FullText != "" {
			r.Quote = &smtpout.Quote{Date: last.ArrivedAt, Name: last.ContactName, Text: last.FullText}
		}
	}

	// The media directory is made for the first attachment only: most
	// replies are text, and two file system calls per reply are a good
	// part of rendering one.
	var dir string
	defer func() {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}()
	budget := o.opts.MaxMediaSize
	for i, it := range b.Items {
		if it.MediaURL == "" {
			continue
		}
		if dir == "" && o.opts.Fetcher != nil {
			var err error
			if dir, err = os.MkdirTemp(o.opts.TempDir, "mailgate-media-"); err != nil {
				return nil, fmt.Errorf("media directory: %w", err)
			}
		}
		att, link := o.fetchMedia(ctx, j, it.MediaURL, dir, i, budget)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if link != nil {
			r.Links = append(r.Links, *link)
			continue
		}
		budget -= att.size
		r.Attachments = append(r.Attachments, att.Attachment)
	}
	return smtpout.Render(r)
}

// fetchedMedia is an attachment with its size.
type fetchedMedia struct {
	smtpout.Attachment
	size int64
}

// fetchMedia downloads rawURL into dir. When that is not possible (no
// fetcher, refused address, error, over budget) it returns a link instead.
func (o *Outbox) fetchMedia(ctx context.Context, j *job, rawURL, dir string, n int, budget int64) (fetchedMedia, *smtpout.Link) {
	link := &smtpout.Link{URL: rawURL, Label: urlFilename(rawURL)}
	if u, err := url.Parse(rawURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		link.URL, link.Reason = "", "not an http(s) link"
		link.Label = rawURL
		return fetchedMedia{}, link
	}
	if o.opts.Fetcher == nil {
		link.Reason = "media are not downloaded"
		return fetchedMedia{}, link
	}
	if budget <= 0 {
		link.Reason = "the email would be too large"
		return fetchedMedia{}, link
	}
	p := filepath.Join(dir, fmt.Sprintf("media-%d", n))
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		link.Reason = "could not be downloaded"
		o.log.Error("outbound: cannot create a media file", "channel", j.ch.Name, "err", err)
		return fetchedMedia{}, link
	}
	res, err := o.opts.Fetcher.Fetch(ctx, rawURL, &limitWriter{w: f, left: budget})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		var refused *safefetch.RefusedError
		switch {
		case errors.As(err, &refused):
			link.Reason = "not downloaded from this address"
		case errors.Is(err, safefetch.ErrTooLarge) || errors.Is(err, errMediaBudget):
			link.Reason = "too large to attach"
		default:
			link.Reason = "could not be downloaded"
		}
		o.log.Warn("outbound: media sent as a link", "channel", j.ch.Name, "contact", j.batch.Contact,
			"reason", link.Reason, "err", err)
		return fetchedMedia{}, link
	}
	name := res.Filename
	if name == "" {
		name = link.Label
	}
	return fetchedMedia{Attachment: smtpout.Attachment{Filename: name, ContentType: res.ContentType, Path: p}, size: res.Size}, nil
}

// errMediaBudget is returned by limitWriter when the email's attachments
// would exceed MaxMediaSize.
var errMediaBudget = errors.New("outbound: attachments over the size limit")

// limitWriter fails once more than left bytes are written.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, errMediaBudget
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	return n, err
}

// urlFilename is the last segment of rawURL's path, for a link's label.
func urlFilename(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	name := path.Base(u.Path)
	if name == "." || name == "/" {
		return ""
	}
	return name
}

// operatorOf is the name of the operator who wrote the newest message that
// has one.
func operatorOf(items []*store.OutboxItem) string {
	for i := len(items) - 1; i >= 0; i-- {
		if n := oneLine(items[i].Operator); n != "" {
			return n
		}
	}
	return ""
}

// channelDisplayName is the channel's From display name, else its name.
func channelDisplayName(ch Channel) string {
	if n := oneLine(ch.From.Name); n != "" {
		return n
	}
	return ch.Name
}

// FromDisplayName fills the channel's FromTemplate with the operator's
// name and the channel's display name. Control characters (CR, LF, ...) in
// either become spaces, so that a name can never start a header line.
// Without an operator name it is the channel's display name.
func FromDisplayName(ch Channel, operator string) string {
	operator = oneLine(operator)
	display := channelDisplayName(ch)
	if operator == "" {
		return display
	}
	tmpl := ch.FromTemplate
	if tmpl == "" {
		tmpl = DefaultFromTemplate
	}
	return oneLine(strings.NewReplacer("{operator}", operator, "{channel}", display).Replace(tmpl))
}

// oneLine replaces control characters with spaces and collapses white
// space.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	return strings.Join(strings.Fields(s), " ")
}

// settle records what the relay said about j's email.
func (o *Outbox) settle(ctx context.Context, j *job, err error) {
	b := &j.batch
	log := o.log.With("channel", j.ch.Name, "contact", b.Contact, "message_id", j.msgID, "items", len(j.ids))
	switch {
	case err == nil:
		if j.recorded {
			log.Info("outbound: reply sent")
		} else if err := o.opts.DB.MarkOutboxSent(ctx, j.ids, j.msgID); err != nil {
			// The email went out; the items stay "sending" and are sent
			// again after a restart (at-least-once).
			log.Error("outbound: reply sent but not recorded as sent", "err", err)
		} else {
			log.Info("outbound: reply sent")
		}
		var latency time.Duration
		for _, it := range b.Items {
			latency = max(latency, o.opts.Now().Sub(it.CreatedAt))
		}
		o.opts.Observe(Outcome{Channel: j.ch.Name, Kind: "sent", Items: len(j.ids), Latency: latency})
		for _, r := range j.env.Refused {
			// The contact got the reply; the operator is told which
			// colleague did not, since the conversation said who would.
			copyTo := strings.TrimSuffix(strings.TrimPrefix(r.Command, "RCPT TO:<"), ">")
			log.Warn("outbound: the relay refused a CC recipient; the reply went out without that copy", "cc", copyTo, "reason", smtpReason(r))
			o.notify(ctx, j.ch, b.Contact, copyTo+" (CC)", smtpReason(r))
		}
		if j.ch.SentFolder != nil {
			if err := j.ch.SentFolder.AppendSent(ctx, j.raw); err != nil {
				log.Error("outbound: reply sent, but copying it to the Sent folder failed; not retried", "err", err)
			}
		}
	case smtpout.IsPermanent(err):
		o.fail(ctx, j.ch, b.Contact, j.ids, len(j.ids), smtpReason(err), true)
	default:
		o.retry(ctx, j, err)
	}
}

// retry schedules j's items again, or fails them when they are older than
// the channel's MaxAge.
func (o *Outbox) retry(ctx context.Context, j *job, err error) {
	b := &j.batch
	now := o.opts.Now()
	// The schedule follows the group's freshest message: a reply that
	// joined the group during an outage is not made to wait the long steps
	// its older siblings reached.
	attempts, oldest := 0, now
	for i, it := range b.Items {
		n := it.Attempts + 1 // MarkOutboxSending counted one more
		if i == 0 || n < attempts {
			attempts = n
		}
		if it.CreatedAt.Before(oldest) {
			oldest = it.CreatedAt
		}
	}
	maxAge := j.ch.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	reason := smtpReason(err)
	next := now.Add(RetryDelay(attempts))
	login := needsLogin(err)
	if login {
		next = now.Add(loginWait)
	}
	if next.Sub(oldest) > maxAge {
		o.fail(ctx, j.ch, b.Contact, j.ids, len(j.ids),
			fmt.Sprintf("%s (gave up after %d attempts)", reason, attempts), true)
		return
	}
	if err := o.opts.DB.MarkOutboxRetry(ctx, j.ids, next, reason); err != nil {
		o.log.Error("outbound: cannot schedule a retry", "channel", j.ch.Name, "contact", b.Contact, "err", err)
		return
	}
	level := slog.LevelWarn
	if login {
		level = slog.LevelDebug // the token source logged the one ERROR line
	}
	o.log.Log(ctx, level, "outbound: delivery failed, will retry", "channel", j.ch.Name, "contact", b.Contact,
		"attempt", attempts, "retry_at", next, "err", reason)
	o.opts.Observe(Outcome{Channel: j.ch.Name, Kind: "retried", Items: len(j.ids)})
}

// fail marks ids failed with reason, logs it at ERROR and, when the
// channel wants it, posts a notice into the contact's conversation.
func (o *Outbox) fail(ctx context.Context, ch Channel, contact string, ids []int64, items int, reason string, notify bool) {
	ctx = context.WithoutCancel(ctx)
	if err := o.opts.DB.MarkOutboxFailed(ctx, ids, reason); err != nil {
		o.log.Error("outbound: cannot mark replies as failed", "channel", ch.Name, "contact", contact, "err", err)
	}
	o.log.Error("outbound: reply could not be delivered", "channel", ch.Name, "contact", contact,
		"items", items, "reason", reason)
	o.opts.Observe(Outcome{Channel: ch.Name, Kind: "failed", Items: items})
	if notify {
		o.notify(ctx, ch, contact, contact, reason)
	}
}

// notify posts a failure notice into contact's conversation, about a
// failure at recipient (the contact, unless a forward of it bounced), when
// the channel wants notices. A notice that cannot be posted is logged.
func (o *Outbox) notify(ctx context.Context, ch Channel, contact, recipient, reason string) {
	if !ch.NotifyFailures || ch.Notify == nil {
		return
	}
	body, err := userlike.InboundMessage{
		Email: mailaddr.Key(contact),
		Text:  fmt.Sprintf("[mailgate] Your reply could not be delivered to %s: %s", recipient, reason),
	}.Marshal()
	if err == nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err = ch.Notify.PostOnce(ctx, body)
	}
	if err != nil {
		o.log.Error("outbound: cannot post the failure notice to Userlike", "channel", ch.Name, "contact", contact, "err", err)
	}
}

// smtpReason is the short form of a delivery error for notices: the
// relay's "550 5.1.1 text" when it answered, else the error.
func smtpReason(err error) string {
	var se *smtpout.SMTPError
	if errors.As(err, &se) {
		parts := []string{fmt.Sprint(se.Code)}
		if se.Enhanced != "" {
			parts = append(parts, se.Enhanced)
		}
		if m := oneLine(se.Message); m != "" {
			parts = append(parts, m)
		}
		return strings.Join(parts, " ")
	}
	return oneLine(strings.TrimPrefix(err.Error(), "smtpout: "))
}

// HandleBounce matches a delivery status report about one of our replies
// (report.OriginalMessageID is the Message-ID we sent) to its outbox items.
// A failure report marks them failed and posts a notice; delayed and
// success reports and read receipts are only logged. matched is false when
// the report is not about a reply of channel that mailgate sent. raw is the
// report as received; it is not kept.
func (o *Outbox) HandleBounce(ctx context.Context, channel string, report *mailparse.Report, raw []byte) (matched bool, err error) {
	if report == nil || report.OriginalMessageID == "" || !o.opts.MsgID.IsOwn(report.OriginalMessageID) {
		return false, nil
	}
	items, err := o.opts.DB.OutboxByMessageID(ctx, report.OriginalMessageID)
	if err != nil {
		return false, err
	}
	var ids []int64
	var contact string
	settled := true
	for _, it := range items {
		if it.Channel != channel {
			continue
		}
		ids = append(ids, it.ID)
		contact = it.Contact
		if it.State != store.OutboxFailed {
			settled = false
		}
	}
	if len(ids) == 0 {
		return false, nil
	}
	log := o.log.With("channel", channel, "contact", contact, "message_id", report.OriginalMessageID)
	if !bounceIsFailure(report) {
		log.Info("outbound: delivery report about a reply", "action", report.Action, "status", report.Status,
			"report_type", report.ReportType, "bytes", len(raw))
		return true, nil
	}
	if rcpt := bounceRecipient(report.FinalRecipient); rcpt != "" && rcpt != mailaddr.Key(contact) {
		// The copy to a CC recipient bounced (smtp.reply_cc): the contact's
		// copy may well have arrived, so the reply is not failed for it.
		log.Warn("outbound: the copy of a reply to a CC recipient bounced; the reply is not failed for it",
			"final_recipient", oneLine(report.FinalRecipient), "status", report.Status)
		return true, nil
	}
	if settled {
		log.Info("outbound: another bounce of a reply already failed")
		return true, nil
	}
	// The report's own text (Diagnostic-Code, Final-Recipient) is written
	// by whoever sent the report: it goes to the store and the log, never
	// into the customer's conversation.
	reason := oneLine(report.DiagnosticCode)
	if reason == "" {
		reason = strings.TrimSpace(report.Status + " " + report.Action)
	}
	if reason == "" {
		reason = "the message bounced"
	}
	notice := "the recipient's mail server returned it"
	if dsnStatus.MatchString(report.Status) {
		notice += " (status " + report.Status + ")"
	}
	log.Warn("outbound: a reply bounced", "final_recipient", oneLine(report.FinalRecipient), "reason", reason)
	ch, ok := o.opts.Channels(channel)
	if !ok {
		ch = Channel{Name: channel}
	}
	o.fail(ctx, ch, contact, ids, len(ids), "bounced: "+reason, false)
	o.opts.Observe(Outcome{Channel: channel, Kind: "bounced", Items: len(ids)})
	o.notify(ctx, ch, contact, contact, notice)
	return true, nil
}

// dsnStatus matches an RFC 3463 status code: class.subject.detail.
var dsnStatus = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)

// bounceIsFailure reports whether a delivery report says the message was
// not delivered: Action "failed", or a 5.x.x status without an action.
func bounceIsFailure(r *mailparse.Report) bool {
	switch r.Action {
	case "failed":
		return true
	case "":
		return strings.HasPrefix(r.Status, "5.")
	}
	return false
}
