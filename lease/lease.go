// Package lease keeps one lease per channel in PostgreSQL, so that of
// several mailgate instances sharing one database exactly one at a time
// does a channel's mailbox work.
//
// # Design
//
// A lease is a row of the table mailgate_leases, which Open creates when it
// is missing (the package owns that table; the rest of the schema belongs
// to package store):
//
//	channel    TEXT PRIMARY KEY
//	holder     TEXT         -- the instance name of the holder
//	token      BIGINT       -- the fencing token, +1 on every new holder
//	expires_at TIMESTAMPTZ  -- in the server's clock
//
// An instance acquires a lease with one INSERT ... ON CONFLICT DO UPDATE
// that succeeds only when the row is new or its expires_at has passed; it
// gets the row's token plus one. It renews with an UPDATE that matches its
// own holder name and token. Both set expires_at = now() + ttl, in the
// server's clock: the instances' clocks never decide who holds.
//
// The holder renews every ttl/3. It considers itself fenced out, cancels
// the work and stops, when no renewal has been confirmed within ttl minus
// Margin, measured on its own monotonic clock from the moment it sent the
// last confirmed renewal. The server set expires_at no earlier than that
// moment plus ttl, so the holder stops at least Margin before any other
// instance can acquire: the margin covers the work's cancellation and the
// drift between the two clocks' rates. A renewal that matches no row (the
// lease was taken after all, e.g. by an operator's DELETE) fences at once.
//
// An instance that does not hold a lease tries to acquire it every ttl/3,
// so it takes over at most ttl + ttl/3 after the holder's last renewal.
// A holder that stops cleanly releases its lease (expires_at = now()), and
// the others take over at their next attempt.
//
// Acquisition does not favour a holder of the same name: two processes
// misconfigured with one instance name still never hold a lease at once.
// A restarted instance therefore waits out its own crashed lease like any
// other instance.
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultTTL is the lease time when Options.TTL is zero.
const DefaultTTL = 15 * time.Second

// schema creates the lease table. It is idempotent.
const schema = `CREATE TABLE IF NOT EXISTS mailgate_leases (
	channel    TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	token      BIGINT NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL
)`

// acquireSQL takes the lease of $1 for holder $2 for $3 milliseconds when
// nobody holds it or its holder let it expire.
const acquireSQL = `INSERT INTO mailgate_leases AS l (channel, holder, token, expires_at)
VALUES ($1, $2, 1, now() + make_interval(secs => $3::double precision / 1000))
ON CONFLICT (channel) DO UPDATE
	SET holder = EXCLUDED.holder, token = l.token + 1, expires_at = EXCLUDED.expires_at
	WHERE l.expires_at < now()
RETURNING token`

// renewSQL extends the lease of $1 held by $2 with token $3.
const renewSQL = `UPDATE mailgate_leases
SET expires_at = now() + make_interval(secs => $4::double precision / 1000)
WHERE channel = $1 AND holder = $2 AND token = $3`

// releaseSQL gives the lease up at once.
const releaseSQL = `UPDATE mailgate_leases SET expires_at = now()
WHERE channel = $1 AND holder = $2 AND token = $3`

// Options configure Open.
type Options struct {
	// DSN is the PostgreSQL connection string (pgx syntax: URL or
	// key=value).
	DSN string
	// Instance names this instance as the holder. It must be unique
	// among the instances sharing the database.
	Instance string
	// TTL is how long a lease lasts without renewal (default DefaultTTL).
	TTL time.Duration
	// Margin is how long before the server-side expiry a holder that
	// cannot renew stops; default TTL/5. It must be less than TTL*2/3.
	Margin time.Duration
	// Events, when set, is called on every acquisition and loss of a
	// lease, from the goroutine of Hold. It must not block.
	Events func(Event)
	// Logger receives acquisitions, losses and failed renewals; nil
	// discards them.
	Logger *slog.Logger
}

// EventKind says what happened to a lease.
type EventKind int

const (
	// Acquired: this instance holds the lease with Event.Token and is
	// about to start the work.
	Acquired EventKind = iota + 1
	// Fenced: this instance could not renew in time or found the lease
	// taken; the work's context is cancelled. Stopped follows.
	Fenced
	// Stopped: the work of Event.Token has returned.
	Stopped
	// Released: the lease was given up on a clean stop.
	Released
)

func (k EventKind) String() string {
	switch k {
	case Acquired:
		return "acquired"
	case Fenced:
		return "fenced"
	case Stopped:
		return "stopped"
	case Released:
		return "released"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one change of a lease held by this instance.
type Event struct {
	Kind     EventKind
	Channel  string
	Instance string
	Token    int64
	// Takeover is set on Acquired when the lease had a holder before
	// (token > 1).
	Takeover bool
	// Err says why the lease was fenced (Fenced only).
	Err error
}

// Table is the lease table of one database, used by one instance.
type Table struct {
	opts Options
	pool *pgxpool.Pool
	log  *slog.Logger

	mu   sync.Mutex
	held map[string]int64 // channel -> token, while this instance holds it
}

// Open connects to the database and creates the lease table when it is
// missing.
func Open(ctx context.Context, opts Options) (*Table, error) {
	if opts.Instance == "" {
		return nil, errors.New("lease: instance name is empty")
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.TTL < 10*time.Millisecond {
		return nil, fmt.Errorf("lease: ttl %s is too short", opts.TTL)
	}
	if opts.Margin == 0 {
		opts.Margin = opts.TTL / 5
	}
	if opts.Margin <= 0 || opts.Margin >= opts.TTL*2/3 {
		return nil, fmt.Errorf("lease: margin %s must be between 0 and 2/3 of the ttl %s", opts.Margin, opts.TTL)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		// pgx's parse errors quote the connection string, password
		// included: say only that it is malformed.
		return nil, errors.New("lease: the PostgreSQL connection string (dsn) is malformed")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("lease: connect: %w", err)
	}
	if _, err := pool.Exec(ctx, schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("lease: create table mailgate_leases: %w", err)
	}
	return &Table{opts: opts, pool: pool, log: log, held: map[string]int64{}}, nil
}

// Close closes the database connections. Hold calls must have returned.
func (t *Table) Close() { t.pool.Close() }

// TTL is the lease time in effect.
func (t *Table) TTL() time.Duration { return t.opts.TTL }

// Instance is this instance's holder name.
func (t *Table) Instance() string { return t.opts.Instance }

// Held reports whether this instance holds channel's lease now, and with
// which token.
func (t *Table) Held(channel string) (token int64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	token, ok = t.held[channel]
	return token, ok
}

// Hold runs work whenever this instance holds channel's lease, until ctx is
// done. It tries to acquire the lease every TTL/3; once it holds it, it
// calls work with a context that is cancelled when the lease is lost, and
// waits for work to return before it tries again. When ctx is done, Hold
// cancels work, waits for it, releases the lease and returns ctx's error.
// When work returns by itself, Hold releases the lease and starts over.
//
// work must return soon after its context is cancelled: a holder that
// cannot renew cancels it Margin before the lease expires for the others.
func (t *Table) Hold(ctx context.Context, channel string, work func(ctx context.Context, token int64)) error {
	retry := t.opts.TTL / 3
	for {
		token, err := t.acquire(ctx, channel)
		switch {
		case err != nil && ctx.Err() == nil:
			t.log.Warn("lease: acquiring failed", "channel", channel, "err", err)
		case err == nil && token > 0:
			t.holdAndWork(ctx, channel, token, work)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Also after a lease ended: a work that returns at once must
		// not make this loop spin on the database.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry):
		}
	}
}

// acquire tries once; token 0 means somebody else holds the lease.
func (t *Table) acquire(ctx context.Context, channel string) (int64, error) {
	qctx, cancel := context.WithTimeout(ctx, t.opts.TTL/3)
	defer cancel()
	var token int64
	err := t.pool.QueryRow(qctx, acquireSQL, channel, t.opts.Instance, t.opts.TTL.Milliseconds()).Scan(&token)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("lease: acquire %q: %w", channel, err)
	}
	return token, nil
}

// holdAndWork runs work while it renews the lease it acquired.
func (t *Table) holdAndWork(ctx context.Context, channel string, token int64, work func(context.Context, int64)) {
	// The deadline counts from the sending of a confirmed renewal. The
	// acquisition's own sending time is not kept (acquire may have
	// waited on a lock), so a first renewal, sent at once, starts it.
	sent := time.Now()
	if err := t.renew(ctx, channel, token, sent.Add(t.opts.TTL-t.opts.Margin)); err != nil {
		// Not even the first renewal went through: do not start.
		t.log.Warn("lease: acquired but could not confirm", "channel", channel, "token", token, "err", err)
		return
	}
	t.mu.Lock()
	t.held[channel] = token
	t.mu.Unlock()
	t.emit(Event{Kind: Acquired, Channel: channel, Token: token, Takeover: token > 1})
	t.log.Info("lease: acquired, starting the channel's mailbox work", "channel", channel, "token", token, "instance", t.opts.Instance)

	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		work(workCtx, token)
	}()

	deadline := sent.Add(t.opts.TTL - t.opts.Margin)
	interval := t.opts.TTL / 3
	nextRenew := time.Now().Add(interval)
	var fenceErr error
	for fenceErr == nil {
		wait := time.Until(nextRenew)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			cancelWork()
			<-done
			t.drop(channel)
			t.emit(Event{Kind: Stopped, Channel: channel, Token: token})
			t.release(channel, token)
			return
		case <-done:
			// The work ended by itself: give the lease up; Hold
			// acquires it again and restarts the work.
			timer.Stop()
			cancelWork()
			t.drop(channel)
			t.emit(Event{Kind: Stopped, Channel: channel, Token: token})
			t.release(channel, token)
			return
		case <-timer.C:
		}
		sentAt := time.Now()
		err := t.renew(ctx, channel, token, deadline)
		switch {
		case err == nil:
			deadline = sentAt.Add(t.opts.TTL - t.opts.Margin)
			nextRenew = sentAt.Add(interval)
		case errors.Is(err, errLost):
			fenceErr = err
		case ctx.Err() != nil:
			// Stopping: the loop's next round releases.
			nextRenew = time.Now()
		case !time.Now().Before(deadline):
			fenceErr = fmt.Errorf("no renewal confirmed within %s: %w", t.opts.TTL-t.opts.Margin, err)
		default:
			t.log.Warn("lease: renewal failed, retrying", "channel", channel, "token", token, "err", err, "fenced_in", time.Until(deadline).Round(time.Millisecond))
			nextRenew = time.Now().Add(interval / 4)
			if nextRenew.After(deadline) {
				nextRenew = deadline
			}
		}
	}
	t.drop(channel)
	cancelWork()
	t.emit(Event{Kind: Fenced, Channel: channel, Token: token, Err: fenceErr})
	t.log.Error("lease: lost, stopping the channel's mailbox work", "channel", channel, "token", token, "err", fenceErr)
	<-done
	t.emit(Event{Kind: Stopped, Channel: channel, Token: token})
}

// errLost is a renewal that matched no row: another instance holds the
// lease, or it was deleted.
var errLost = errors.New("the lease is held by another instance")

// renew extends the lease; it gives up at deadline.
func (t *Table) renew(ctx context.Context, channel string, token int64, deadline time.Time) error {
	qctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	tag, err := t.pool.Exec(qctx, renewSQL, channel, t.opts.Instance, token, t.opts.TTL.Milliseconds())
	if err != nil {
		return fmt.Errorf("lease: renew %q: %w", channel, err)
	}
	if tag.RowsAffected() == 0 {
		return errLost
	}
	return nil
}

// release gives the lease up, so that another instance takes over at its
// next attempt instead of after the ttl.
func (t *Table) release(channel string, token int64) {
	ctx, cancel := context.WithTimeout(context.Background(), t.opts.TTL/3)
	defer cancel()
	if _, err := t.pool.Exec(ctx, releaseSQL, channel, t.opts.Instance, token); err != nil {
		t.log.Warn("lease: release failed; the others take over when it expires", "channel", channel, "err", err)
		return
	}
	t.emit(Event{Kind: Released, Channel: channel, Token: token})
	t.log.Info("lease: released", "channel", channel, "token", token)
}

func (t *Table) drop(channel string) {
	t.mu.Lock()
	delete(t.held, channel)
	t.mu.Unlock()
}

func (t *Table) emit(e Event) {
	e.Instance = t.opts.Instance
	if t.opts.Events != nil {
		t.opts.Events(e)
	}
}

// Holder is a row of the lease table, as the server sees it.
type Holder struct {
	Channel  string    `json:"channel"`
	Instance string    `json:"instance"`
	Token    int64     `json:"token"`
	Expires  time.Time `json:"expires_at"`
	// Live is whether the lease has not expired yet, by the server's
	// clock.
	Live bool `json:"live"`
}

// Holders reads every lease in the table.
func (t *Table) Holders(ctx context.Context) ([]Holder, error) {
	return Holders(ctx, t.pool)
}

// Querier is what Holders needs: a *pgx.Conn or a *pgxpool.Pool.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Holders reads every lease in the table through q, for `mailgate status`
// which does not hold leases. A missing table is no lease at all.
func Holders(ctx context.Context, q Querier) ([]Holder, error) {
	rows, err := q.Query(ctx, `SELECT channel, holder, token, expires_at, expires_at > now()
FROM mailgate_leases ORDER BY channel`)
	var hs []Holder
	if err == nil {
		hs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Holder, error) {
			var h Holder
			err := r.Scan(&h.Channel, &h.Instance, &h.Token, &h.Expires, &h.Live)
			return h, err
		})
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lease: read holders: %w", err)
	}
	return hs, nil
}
