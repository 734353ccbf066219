package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// The outbox states: queued (until SendAfter) -> sending -> sent | failed,
// or cancelled while still queued. A temporary failure puts a sending item
// back to queued (MarkOutboxRetry); a bounce turns a sent item failed.
const (
	OutboxQueued    = "queued"    // waiting for SendAfter
	OutboxSending   = "sending"   // being delivered
	OutboxSent      = "sent"      // accepted by the SMTP relay
	OutboxFailed    = "failed"    // given up after retries
	OutboxCancelled = "cancelled" // withdrawn before sending
)

// OutboxItem is one operator reply to mail to a contact.
type OutboxItem struct {
	ID         int64
	Channel    string
	Contact    string
	UserlikeID string // Userlike's message id: the dedupe key, unique per channel ("" = no dedupe)
	Operator   string
	Text       string
	MediaURL   string
	State      string
	SendAfter  time.Time // not sent before; see Enqueue for coalescing
	Attempts   int       // delivery attempts started (MarkOutboxSending)
	LastError  string
	MessageID  string // the Message-ID (no angle brackets) of the mail it goes or went out in
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// OutboxCoalesceLimit caps coalescing: the queued items of one contact
// are due at the latest this long after the first of them was queued, however
// often new items extend the wait.
const OutboxCoalesceLimit = 60 * time.Second

// Enqueue adds it to the outbox as queued. When the channel already has an
// item with the same UserlikeID, nothing is written and the existing id is
// returned with duplicate set. On a fresh insert it.ID, it.State,
// it.SendAfter, it.CreatedAt and it.UpdatedAt are filled in.
//
// it.SendAfter is when the caller wants the contact's queued items sent at
// the earliest (now plus the coalescing wait; the zero time means now). In
// the same transaction every queued item of (channel, contact) gets the
// send_after
//
//	min(it.SendAfter, first + OutboxCoalesceLimit)
//
// where first is when the oldest queued item not yet tried was queued, so
// that a burst of operator messages leaves as one email: each new message
// extends the wait, up to the limit. An item waiting for a retry joins the
// new schedule (a new message is a good moment to try again, and the
// contact's items stay in order).
func (db *DB) Enqueue(ctx context.Context, it *OutboxItem) (id int64, duplicate bool, err error) {
	if it.Channel == "" || normContact(it.Contact) == "" {
		return 0, false, fmt.Errorf("store: enqueue %q: channel and contact are required", it.UserlikeID)
	}
	if it.State != "" && it.State != OutboxQueued {
		return 0, false, fmt.Errorf("store: enqueue %q: cannot enqueue in state %q", it.UserlikeID, it.State)
	}
	// Concurrent webhook calls share a transaction and the fsync (see
	// groupCommit).
	req := &enqueueReq{it: it}
	if err := db.tx(ctx, func(tx *sql.Tx) error { return db.enqueueTx(ctx, tx, req) }); err != nil {
		return 0, false, fmt.Errorf("store: enqueue %s %q: %w", it.Channel, it.UserlikeID, err)
	}
	if !req.duplicate {
		now := req.now
		it.ID, it.Contact, it.State = req.id, normContact(it.Contact), OutboxQueued
		it.SendAfter = fromMS(req.sendAfter)
		it.CreatedAt, it.UpdatedAt = fromMS(now), fromMS(now)
	}
	return req.id, req.duplicate, nil
}

// enqueueReq is one Enqueue call and its results.
type enqueueReq struct {
	it *OutboxItem

	// Results.
	id        int64
	duplicate bool
	sendAfter int64
	now       int64
}

// enqueueTx inserts one request's item and reschedules its contact's
// queued items (see Enqueue).
func (db *DB) enqueueTx(ctx context.Context, tx *sql.Tx, req *enqueueReq) error {
	it := req.it
	contact := normContact(it.Contact)
	now := db.nowMS()
	want := ms(it.SendAfter)
	if want == 0 {
		want = now
	}
	req.now = now
	var id int64
	var duplicate bool
	var sendAfter int64
	err := func() error {
		duplicate = false
		err := db.txQueryRow(ctx, tx, `INSERT INTO outbox (channel, contact, userlike_id, operator, text,
				media_url, state, send_after, attempts, last_error, message_id, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, 0, '', '', ?, ?)
			ON CONFLICT (channel, userlike_id) WHERE userlike_id != '' DO NOTHING
			RETURNING id`,
			it.Channel, contact, it.UserlikeID, it.Operator, it.Text, it.MediaURL, want, now, now).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			// The conflict left the existing row alone and returned none.
			duplicate = true
			return db.txQueryRow(ctx, tx, `SELECT id FROM outbox WHERE channel = ? AND userlike_id = ?`,
				it.Channel, it.UserlikeID).Scan(&id)
		}
		if err != nil {
			return err
		}
		var first int64
		if err := db.txQueryRow(ctx, tx, `SELECT min(created_at) FROM outbox
			WHERE channel = ? AND contact = ? AND state = 'queued' AND attempts = 0`,
			it.Channel, contact).Scan(&first); err != nil {
			return err
		}
		sendAfter = min(want, first+OutboxCoalesceLimit.Milliseconds())
		_, err = db.txExec(ctx, tx, `UPDATE outbox SET send_after = ?
			WHERE channel = ? AND contact = ? AND state = 'queued'`, sendAfter, it.Channel, contact)
		return err
	}()
	req.id, req.duplicate, req.sendAfter = id, duplicate, sendAfter
	return err
}

// Outbox returns outbox item id.
func (db *DB) Outbox(ctx context.Context, id int64) (*OutboxItem, error) {
	it, err := scanOutbox(db.readQueryRowOnce(ctx, `SELECT `+outboxColumns+` FROM outbox WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: outbox #%d: %w", id, notFound{})
	}
	if err != nil {
		return nil, fmt.Errorf("store: outbox #%d: %w", id, err)
	}
	return it, nil
}

// CancelOutbox cancels the channel's item with userlikeID if it is still
// queued. cancelled reports whether the item is cancelled now (also when it
// already was); state is its state after the call. An unknown item yields
// ErrNotFound.
func (db *DB) CancelOutbox(ctx context.Context, channel, userlikeID string) (cancelled bool, state string, err error) {
	if userlikeID == "" {
		return false, "", errors.New("store: cancel outbox: empty userlike id")
	}
	err = db.tx(ctx, func(tx *sql.Tx) error {
		var id int64
		err := db.txQueryRowOnce(ctx, tx, `SELECT id, state FROM outbox WHERE channel = ? AND userlike_id = ?`,
			channel, userlikeID).Scan(&id, &state)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound{}
		}
		if err != nil {
			return err
		}
		if state == OutboxSending {
			// The email is on its way; if this attempt fails it is not
			// retried (MarkOutboxRetry, RequeueSending).
			_, err = db.txExecOnce(ctx, tx, `UPDATE outbox SET cancel_requested = 1, updated_at = ? WHERE id = ?`, db.nowMS(), id)
			return err
		}
		if state != OutboxQueued {
			return nil
		}
		state = OutboxCancelled
		_, err = db.txExecOnce(ctx, tx, `UPDATE outbox SET state = 'cancelled', updated_at = ? WHERE id = ?`, db.nowMS(), id)
		return err
	})
	if err != nil {
		return false, "", fmt.Errorf("store: cancel outbox %s %q: %w", channel, userlikeID, err)
	}
	return state == OutboxCancelled, state, nil
}

// OutboxCounts returns the number of outbox items per state of the channel
// ("" = all channels). States without items are absent.
func (db *DB) OutboxCounts(ctx context.Context, channel string) (map[string]int, error) {
	rows, err := db.readQueryOnce(ctx, `SELECT state, count(*) FROM outbox
		WHERE ? = '' OR channel = ? GROUP BY state`, channel, channel)
	if err != nil {
		return nil, fmt.Errorf("store: outbox counts %s: %w", channel, err)
	}
	defer rows.Close()
	m := make(map[string]int)
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, fmt.Errorf("store: outbox counts %s: %w", channel, err)
		}
		m[s] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: outbox counts %s: %w", channel, err)
	}
	return m, nil
}

// outboxColumns are the columns scanOutbox reads, in order.
const outboxColumns = `id, channel, contact, userlike_id, operator, text, media_url,
	state, send_after, attempts, last_error, message_id, created_at, updated_at`

// scanOutbox reads one row of outboxColumns.
func scanOutbox(row interface{ Scan(...any) error }) (*OutboxItem, error) {
	var it OutboxItem
	var sendAfter, created, updated int64
	if err := row.Scan(&it.ID, &it.Channel, &it.Contact, &it.UserlikeID, &it.Operator, &it.Text, &it.MediaURL,
		&it.State, &sendAfter, &it.Attempts, &it.LastError, &it.MessageID, &created, &updated); err != nil {
		return nil, err
	}
	it.SendAfter, it.CreatedAt, it.UpdatedAt = fromMS(sendAfter), fromMS(created), fromMS(updated)
	return &it, nil
}

// OutboxBatch is the due queued items of one contact, to be sent as one
// email.
type OutboxBatch struct {
	Channel string
	Contact string
	// Items are the contact's queued items, oldest (lowest id) first.
	Items []*OutboxItem
	// Thread is the contact's current thread; nil when there is none.
	Thread *Thread
}

// IDs returns the ids of the batch's items.
func (b *OutboxBatch) IDs() []int64 {
	ids := make([]int64, len(b.Items))
	for i, it := range b.Items {
		ids[i] = it.ID
	}
	return ids
}

// qQueuedBySendAfter lists queued items by the time they become due, for
// finding the due groups (with a bound) and the next due time.
const qQueuedBySendAfter = `SELECT channel, contact, send_after FROM outbox INDEXED BY outbox_queued
	WHERE state = 'queued' AND send_after <= ?
	ORDER BY send_after, id`

// qGroup sums up the unfinished items of one (channel, contact) group: when
// its last queued item is due, whether one is being sent, its oldest id.
const qGroup = `SELECT max(send_after), max(CASE WHEN state = 'sending' THEN 1 ELSE 0 END), min(id) FROM outbox INDEXED BY outbox_pending
	WHERE channel = ? AND contact = ? AND state IN ('queued', 'sending')`

// qPendingItems lists the unfinished (queued and sending) items of one
// (channel, contact) group.
const qPendingItems = `SELECT ` + outboxColumns + ` FROM outbox INDEXED BY outbox_pending
	WHERE channel = ? AND contact = ? AND state IN ('queued', 'sending') ORDER BY id`

// outboxGroup is the summary of one group (qGroup).
type outboxGroup struct {
	channel, contact string
	due              int64 // the latest send_after of its items
	sending          bool  // an item is being delivered
	firstID          int64
}

// group reads the summary of (channel, contact) in tx.
func (db *DB) group(ctx context.Context, tx *sql.Tx, channel, contact string) (outboxGroup, error) {
	g := outboxGroup{channel: channel, contact: contact}
	var due, sending, first sql.NullInt64
	if err := db.rtxQueryRow(ctx, tx, qGroup, channel, contact).Scan(&due, &sending, &first); err != nil {
		return g, err
	}
	g.due, g.sending, g.firstID = due.Int64, sending.Int64 == 1, first.Int64
	return g, nil
}

// DueOutbox returns, per (channel, contact), the queued items that are due
// at now, with the contact's current thread. A group is due when every
// queued item of it is due (Enqueue gives them one send_after; a retry
// holds back the items queued after it, so the contact's replies stay in
// order); a group with an item in state sending is left alone until that
// delivery settles. Batches come oldest first.
func (db *DB) DueOutbox(ctx context.Context, now time.Time) ([]OutboxBatch, error) {
	// Its queries run once or twice per due contact: prepared now, a first
	// call does not run them all unprepared (a statement first met inside
	// a read transaction is only prepared for the next one).
	for _, q := range [...]string{qQueuedBySendAfter, qPendingItems, qThread, qThreadMessages} {
		db.rstmts.get(ctx, db.d.q(q))
	}
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: due outbox: %w", err)
	}
	defer tx.Rollback()
	batches, err := db.dueOutbox(ctx, tx, ms(now))
	if err != nil {
		return nil, fmt.Errorf("store: due outbox: %w", err)
	}
	return batches, nil
}

func (db *DB) dueOutbox(ctx context.Context, tx *sql.Tx, now int64) ([]OutboxBatch, error) {
	// A due group has all its queued items due, so at least one queued
	// item with send_after <= now: the candidates are the groups of
	// those items, found on the index without touching the rest.
	rows, err := db.rtxQuery(ctx, tx, qQueuedBySendAfter, now)
	if err != nil {
		return nil, err
	}
	type key struct{ channel, contact string }
	seen := map[key]bool{}
	var cands []key
	for rows.Next() {
		var k key
		var sendAfter int64
		if err := rows.Scan(&k.channel, &k.contact, &sendAfter); err != nil {
			rows.Close()
			return nil, err
		}
		if !seen[k] {
			seen[k] = true
			cands = append(cands, k)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// One query per candidate gives both its summary (as qGroup) and its
	// queued items.
	type dueGroup struct {
		outboxGroup
		items []*OutboxItem
	}
	var groups []dueGroup
	for _, k := range cands {
		g := dueGroup{outboxGroup: outboxGroup{channel: k.channel, contact: k.contact}}
		rows, err := db.rtxQuery(ctx, tx, qPendingItems, k.channel, k.contact)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			it, err := scanOutbox(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			if g.firstID == 0 {
				g.firstID = it.ID
			}
			g.due = max(g.due, ms(it.SendAfter))
			switch it.State {
			case OutboxSending:
				g.sending = true
			case OutboxQueued:
				g.items = append(g.items, it)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if !g.sending && g.due <= now && len(g.items) > 0 {
			groups = append(groups, g)
		}
	}
	slices.SortFunc(groups, func(a, b dueGroup) int { return cmp.Compare(a.firstID, b.firstID) })
	batches := make([]OutboxBatch, len(groups))
	for i, g := range groups {
		batches[i] = OutboxBatch{Channel: g.channel, Contact: g.contact, Items: g.items}
	}
	for i := range batches {
		b := &batches[i]
		var err error
		if b.Thread, err = db.currentThread(ctx, tx, false, b.Channel, b.Contact); err != nil {
			return nil, err
		}
	}
	return batches, nil
}

// MarkOutboxSending moves the items of ids that are still queued to
// sending, counts an attempt and records messageID, the Message-ID the
// email is about to carry. It returns the ids it moved, in id order; the
// others were cancelled (or changed) since they were read and must not be
// sent. The commit is durable at the next Barrier, which the caller passes
// before the email leaves.
//
// It is the claim of a batch: on a PostgreSQL store shared by several
// instances, all of which may find the same batch due, each item is moved
// by exactly one of them. There the batch's first item serves as the
// group's lock, taken with FOR UPDATE SKIP LOCKED: an instance that finds
// it locked by another one claims nothing (and does not wait), so a batch
// is never split between two instances and leaves as one email.
func (db *DB) MarkOutboxSending(ctx context.Context, ids []int64, messageID string) (moved []int64, err error) {
	if len(ids) == 0 {
		return nil, nil
	}
	j, err := jsonArray(ids)
	if err != nil {
		return nil, fmt.Errorf("store: mark outbox sending: %w", err)
	}
	err = db.lazyTx(ctx, func(tx *sql.Tx) error {
		moved, err = db.markOutboxSending(ctx, tx, ids, j, messageID, db.nowMS(), moved[:0])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: mark outbox sending %v: %w", ids, err)
	}
	slices.Sort(moved)
	return moved, nil
}

// markOutboxSending is MarkOutboxSending in tx, ids also as the JSON
// array j; it appends the moved ids to moved.
func (db *DB) markOutboxSending(ctx context.Context, tx *sql.Tx, ids []int64, j, messageID string, now int64, moved []int64) ([]int64, error) {
	if db.d.postgres {
		var locked int64
		err := db.txQueryRowOnce(ctx, tx, `SELECT id FROM outbox WHERE id = ? FOR UPDATE SKIP LOCKED`,
			slices.Min(ids)).Scan(&locked)
		if errors.Is(err, sql.ErrNoRows) {
			return moved, nil // another instance is claiming this batch
		}
		if err != nil {
			return moved, err
		}
	}
	rows, err := db.cachedQuery(ctx, tx, true, `UPDATE outbox SET state = 'sending', attempts = attempts + 1,
			message_id = ?, updated_at = ?, claimed_by = ?
		WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?)) AND state = 'queued' RETURNING id`,
		messageID, now, db.owner, j)
	if err != nil {
		return moved, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return moved, err
		}
		moved = append(moved, id)
	}
	return moved, rows.Err()
}

// OutboxClaim is one email of MarkOutboxSendingAll: what MarkOutboxSending
// and EnsureThread take, and what they return.
type OutboxClaim struct {
	// IDs are the email's items and MessageID its Message-ID, as
	// MarkOutboxSending takes them.
	IDs       []int64
	MessageID string
	// Channel and Contact are the email's; with Subject set, the
	// contact's thread is ensured as EnsureThread does when an item
	// moved.
	Channel, Contact, Subject string

	// Moved are the ids moved to sending, in id order (set by the call).
	Moved []int64
	// Thread is the contact's thread after EnsureThread (set by the call
	// when Subject is set and an item moved).
	Thread *Thread
}

// MarkOutboxSendingAll is MarkOutboxSending, followed by EnsureThread for
// the claims with a Subject, for several emails in one transaction, so
// that a burst's claims share commits and the worker's calls. It claims
// all or none: on an error nothing is committed and the caller can make
// the calls one by one.
func (db *DB) MarkOutboxSendingAll(ctx context.Context, claims []*OutboxClaim) error {
	arrays := make([]string, len(claims))
	for i, c := range claims {
		if c.Subject != "" && (c.Channel == "" || normContact(c.Contact) == "") {
			return fmt.Errorf("store: mark outbox sending %v: a thread needs a channel and a contact", c.IDs)
		}
		j, err := jsonArray(c.IDs)
		if err != nil {
			return fmt.Errorf("store: mark outbox sending: %w", err)
		}
		arrays[i] = j
	}
	err := db.lazyTx(ctx, func(tx *sql.Tx) error {
		now := db.nowMS()
		for i, c := range claims {
			c.Moved, c.Thread = c.Moved[:0], nil
			if len(c.IDs) == 0 {
				continue
			}
			var err error
			if c.Moved, err = db.markOutboxSending(ctx, tx, c.IDs, arrays[i], c.MessageID, now, c.Moved); err != nil {
				return fmt.Errorf("%v: %w", c.IDs, err)
			}
			if len(c.Moved) == 0 || c.Subject == "" {
				continue
			}
			if c.Thread, err = db.ensureThread(ctx, tx, c.Channel, normContact(c.Contact), c.Subject, now); err != nil {
				return fmt.Errorf("thread of %s: %w", c.Contact, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: mark outbox sending: %w", err)
	}
	for _, c := range claims {
		slices.Sort(c.Moved)
	}
	return nil
}

// MarkOutboxSent records that the relay accepted the email with messageID
// for the items of ids (all in state sending, of one contact): they become
// sent, and messageID joins the contact's current thread as ours (a thread
// is created when the contact has none), in one transaction. The commit is
// durable at the next Barrier: until then a power cut only makes the email
// go out again, with the same Message-ID.
func (db *DB) MarkOutboxSent(ctx context.Context, ids []int64, messageID string) error {
	if len(ids) == 0 {
		return nil
	}
	if messageID == "" {
		return fmt.Errorf("store: mark outbox sent %v: empty message id", ids)
	}
	err := db.lazyTx(ctx, func(tx *sql.Tx) error {
		return db.markOutboxSent(ctx, tx, ids, messageID, db.nowMS())
	})
	if err != nil {
		var se *StateError
		if errors.As(err, &se) {
			return err
		}
		return fmt.Errorf("store: mark outbox sent %v: %w", ids, err)
	}
	return nil
}

// SentEmail is one email the relay accepted: the ids of its items and
// its Message-ID, as MarkOutboxSent takes them.
type SentEmail struct {
	IDs       []int64
	MessageID string
}

// MarkOutboxSentAll is MarkOutboxSent for several emails (of different
// contacts) in one transaction, so that they share one commit. It records
// all of them or none: when one cannot be recorded (an item not in state
// sending, say) the error names it and nothing is committed; the caller
// can then record each with MarkOutboxSent to learn which.
func (db *DB) MarkOutboxSentAll(ctx context.Context, emails []SentEmail) error {
	for _, e := range emails {
		if e.MessageID == "" && len(e.IDs) > 0 {
			return fmt.Errorf("store: mark outbox sent %v: empty message id", e.IDs)
		}
	}
	err := db.lazyTx(ctx, func(tx *sql.Tx) error {
		return db.markOutboxSentBatch(ctx, tx, emails, db.nowMS())
	})
	if errors.Is(err, errSentOneByOne) {
		err = db.lazyTx(ctx, func(tx *sql.Tx) error {
			now := db.nowMS()
			for _, e := range emails {
				if len(e.IDs) == 0 {
					continue
				}
				if err := db.markOutboxSent(ctx, tx, e.IDs, e.MessageID, now); err != nil {
					var se *StateError
					if errors.As(err, &se) {
						return err
					}
					return fmt.Errorf("%v: %w", e.IDs, err)
				}
			}
			return nil
		})
	}
	if err != nil {
		var se *StateError
		if errors.As(err, &se) {
			return err
		}
		return fmt.Errorf("store: mark outbox sent: %w", err)
	}
	return nil
}

// errSentOneByOne makes MarkOutboxSentAll record its emails one by one
// (markOutboxSent): markOutboxSentBatch found an item that is not as its
// case expects.
var errSentOneByOne = errors.New("store: record the sent emails one by one")

// qMarkSentBatch moves the sending items of a JSON array of ids to sent,
// whatever their Message-ID, and returns each with its Message-ID.
const qMarkSentBatch = `UPDATE outbox SET state = 'sent', last_error = '', updated_at = ?
	WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?)) AND state = 'sending'
	RETURNING id, channel, contact, message_id`

// markOutboxSentBatch is MarkOutboxSentAll's usual case in tx, in a few
// statements for the whole batch rather than four per email (the
// acceptances of a burst are recorded a few emails at a time, beside the
// SMTP exchanges): one UPDATE moves every email's items, which
// MarkOutboxSending left under the email's Message-ID, to sent; then, for
// the emails' contacts, one SELECT per channel finds their current threads
// (a contact without one gets a new thread, as addThreadMessage does), one
// INSERT adds the Message-IDs to them as ours and one UPDATE notes each
// thread's last one. The effect is that of markOutboxSent for each email
// in order. When an item is not as this case expects (not sending, under
// another Message-ID, of another contact than its email's first item, or
// named twice), it returns errSentOneByOne, and the caller undoes its
// changes and records the emails one by one, which handles the item or
// names the fault.
func (db *DB) markOutboxSentBatch(ctx context.Context, tx *sql.Tx, emails []SentEmail, now int64) error {
	var all []int64
	for _, e := range emails {
		all = append(all, e.IDs...)
	}
	if len(all) == 0 {
		return nil
	}
	j, err := jsonArray(all)
	if err != nil {
		return err
	}
	type row struct{ channel, contact, messageID string }
	moved := make(map[int64]row, len(all))
	rows, err := db.cachedQuery(ctx, tx, true, qMarkSentBatch, now, j)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id int64
		var r row
		if err := rows.Scan(&id, &r.channel, &r.contact, &r.messageID); err != nil {
			rows.Close()
			return err
		}
		moved[id] = r
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	if len(moved) != len(all) {
		return errSentOneByOne // an item not sending, unknown or named twice
	}
	// The emails' contacts in the order they first appear, and each
	// contact's last Message-ID, which becomes its thread's last_our_id as
	// recording the emails in turn would make it.
	type key struct{ channel, contact string }
	type message struct {
		contact   key
		messageID string
	}
	messages := make([]message, 0, len(emails))
	var contacts []key
	last := make(map[key]string)
	for _, e := range emails {
		if len(e.IDs) == 0 {
			continue
		}
		first := moved[e.IDs[0]]
		for _, id := range e.IDs {
			if r := moved[id]; r.messageID != e.MessageID || r.channel != first.channel || r.contact != first.contact {
				return errSentOneByOne
			}
		}
		k := key{first.channel, first.contact}
		if _, ok := last[k]; !ok {
			contacts = append(contacts, k)
		}
		last[k] = e.MessageID
		messages = append(messages, message{k, e.MessageID})
	}
	thread := make(map[key]int64, len(contacts))
	byChannel := make(map[string][]string)
	var channels []string
	for _, k := range contacts {
		if _, ok := byChannel[k.channel]; !ok {
			channels = append(channels, k.channel)
		}
		byChannel[k.channel] = append(byChannel[k.channel], k.contact)
	}
	for _, ch := range channels {
		cj, err := jsonArray(byChannel[ch])
		if err != nil {
			return err
		}
		rows, err := db.cachedQuery(ctx, tx, true, `SELECT contact, max(id) FROM threads
			WHERE channel = ? AND contact IN (SELECT value FROM json_each(?)) GROUP BY contact`, ch, cj)
		if err != nil {
			return err
		}
		for rows.Next() {
			var contact string
			var id int64
			if err := rows.Scan(&contact, &id); err != nil {
				rows.Close()
				return err
			}
			thread[key{ch, contact}] = id
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
	}
	var update strings.Builder
	var updateArgs, inArgs []any
	update.WriteString(`UPDATE threads SET last_our_id = CASE id`)
	for _, k := range contacts {
		id, ok := thread[k]
		if !ok {
			if err := db.txQueryRow(ctx, tx, `INSERT INTO threads (channel, contact, subject, created_at, updated_at)
				VALUES (?, ?, '', ?, ?) RETURNING id`, k.channel, k.contact, now, now).Scan(&id); err != nil {
				return err
			}
			thread[k] = id
		}
		update.WriteString(" WHEN ? THEN ?")
		updateArgs = append(updateArgs, id, last[k])
		inArgs = append(inArgs, id)
	}
	var insert strings.Builder
	insertArgs := make([]any, 0, 3*len(messages))
	insert.WriteString(`INSERT INTO thread_messages (thread_id, message_id, ours, created_at) VALUES (?, ?, 1, ?)`)
	insert.WriteString(strings.Repeat(", (?, ?, 1, ?)", len(messages)-1))
	for _, m := range messages {
		insertArgs = append(insertArgs, thread[m.contact], m.messageID, now)
	}
	insert.WriteString(" ON CONFLICT (thread_id, message_id) DO NOTHING")
	update.WriteString(" END, updated_at = ? WHERE id IN (?" + strings.Repeat(", ?", len(inArgs)-1) + ")")
	if _, err := db.txExec(ctx, tx, insert.String(), insertArgs...); err != nil {
		return err
	}
	_, err = db.txExec(ctx, tx, update.String(), append(append(updateArgs, now), inArgs...)...)
	return err
}

// qMarkSent moves the sending items of a JSON array of ids to sent under
// a Message-ID; qMarkSentSameID those that carry it already (as
// MarkOutboxSending left them), without rewriting it: a Message-ID is set
// again even when it is the same, which rewrites its index entry, a page
// of its own for every email of a commit.
const (
	qMarkSent = `UPDATE outbox SET state = 'sent', message_id = ?, last_error = '', updated_at = ?
	WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?)) AND state = 'sending' RETURNING id, channel, contact`
	qMarkSentSameID = `UPDATE outbox SET state = 'sent', last_error = '', updated_at = ?
	WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?)) AND state = 'sending' AND message_id = ? RETURNING id, channel, contact`
)

// markOutboxSent is MarkOutboxSent in tx.
func (db *DB) markOutboxSent(ctx context.Context, tx *sql.Tx, ids []int64, messageID string, now int64) error {
	j, err := jsonArray(ids)
	if err != nil {
		return err
	}
	var channel, contact string
	var moved []int64
	mark := func(query string, args ...any) error {
		rows, err := db.cachedQuery(ctx, tx, true, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			var ch, c string
			if err := rows.Scan(&id, &ch, &c); err != nil {
				return err
			}
			if len(moved) == 0 {
				channel, contact = ch, c
			} else if ch != channel || c != contact {
				return fmt.Errorf("#%d belongs to another contact than #%d", id, moved[0])
			}
			moved = append(moved, id)
		}
		return rows.Err()
	}
	if err := mark(qMarkSentSameID, now, j, messageID); err != nil {
		return err
	}
	if len(moved) < len(ids) {
		// Items marked sending under another Message-ID, or not sending.
		if err := mark(qMarkSent, messageID, now, j); err != nil {
			return err
		}
	}
	if len(moved) < len(ids) {
		// Say which one was not sending (or is unknown); the caller's
		// transaction rolls the others back.
		for _, id := range ids {
			if slices.Contains(moved, id) {
				continue
			}
			var state string
			err := db.txQueryRowOnce(ctx, tx, `SELECT state FROM outbox WHERE id = ?`, id).Scan(&state)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("#%d: %w", id, notFound{})
			}
			if err != nil {
				return err
			}
			return &StateError{Table: "outbox", ID: id, State: state, Op: "mark sent"}
		}
		return fmt.Errorf("ids %v name an item twice", ids)
	}
	return db.addThreadMessage(ctx, tx, channel, contact, messageID, true, false, "", now)
}

// MarkOutboxRetry puts the items of ids that are being sent back in the
// queue until sendAfter, noting lastErr. Items in another state are left
// alone.
func (db *DB) MarkOutboxRetry(ctx context.Context, ids []int64, sendAfter time.Time, lastErr string) error {
	return db.updateOutbox(ctx, "mark outbox retry", ids, `UPDATE outbox
			SET state = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END, send_after = ?,
			last_error = ?, updated_at = ?
		WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?)) AND state = 'sending'`, ms(sendAfter), lastErr, db.nowMS())
}

// MarkOutboxFailed gives up on the items of ids with reason: queued and
// sending items, and sent items that bounced, become failed. Cancelled
// items are left alone.
func (db *DB) MarkOutboxFailed(ctx context.Context, ids []int64, reason string) error {
	return db.updateOutbox(ctx, "mark outbox failed", ids, `UPDATE outbox SET state = 'failed', last_error = ?,
			updated_at = ?
		WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?)) AND state IN ('queued', 'sending', 'sent', 'failed')`,
		reason, db.nowMS())
}

// DeferOutbox moves the send time of the queued items of ids to until,
// without counting an attempt: the outbox worker uses it when the items'
// channel is not running (during a reload, or after it was removed).
func (db *DB) DeferOutbox(ctx context.Context, ids []int64, until time.Time) error {
	return db.updateOutbox(ctx, "defer outbox", ids, `UPDATE outbox SET send_after = ?, updated_at = ?
		WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?)) AND state = 'queued'`, ms(until), db.nowMS())
}

// updateOutbox runs query with args and the ids as a JSON array last.
func (db *DB) updateOutbox(ctx context.Context, op string, ids []int64, query string, args ...any) error {
	if len(ids) == 0 {
		return nil
	}
	j, err := jsonArray(ids)
	if err != nil {
		return fmt.Errorf("store: %s %v: %w", op, ids, err)
	}
	if _, err := db.exec(ctx, query, append(args, j)...); err != nil {
		return fmt.Errorf("store: %s %v: %w", op, ids, err)
	}
	return nil
}

// OutboxByMessageID returns the items that went out (or are going out) in
// the email with messageID (angle brackets optional), in id order; none when
// the id is not ours or unknown. Bounces are matched this way.
func (db *DB) OutboxByMessageID(ctx context.Context, messageID string) ([]*OutboxItem, error) {
	messageID = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(messageID), "<"), ">")
	if messageID == "" {
		return nil, nil
	}
	rows, err := db.readQueryOnce(ctx, `SELECT `+outboxColumns+` FROM outbox
		WHERE message_id = ? AND message_id != '' ORDER BY id`, messageID)
	if err != nil {
		return nil, fmt.Errorf("store: outbox by message id %q: %w", messageID, err)
	}
	defer rows.Close()
	var items []*OutboxItem
	for rows.Next() {
		it, err := scanOutbox(rows)
		if err != nil {
			return nil, fmt.Errorf("store: outbox by message id %q: %w", messageID, err)
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: outbox by message id %q: %w", messageID, err)
	}
	return items, nil
}

// RequeueSending puts every item left in state sending by a process that
// died while delivering back in the queue, due at once, and returns how
// many there were.
//
// On SQLite one process owns the store: call it once at startup, before
// the outbox worker runs, and it requeues every sending item. On
// PostgreSQL several instances share the outbox, and an item is requeued
// only when the process that claimed it (claimed_by) no longer holds its
// session advisory lock, that is, when its database session has ended;
// items other instances are sending stay as they are. Call it at startup
// and now and then (the daemon does every 30 s), so that the items of an
// instance that died are sent by the others.
//
// Delivery is therefore at-least-once: when the relay accepted an email but
// the process died before MarkOutboxSent, the email is sent again. It
// keeps its Message-ID (see MarkOutboxSending), so the recipient's mail
// system can recognise the duplicate.
func (db *DB) RequeueSending(ctx context.Context) (int, error) {
	const requeue = `UPDATE outbox
		SET state = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END, send_after = ?, updated_at = ?
		WHERE state = 'sending'`
	fail := func(err error) (int, error) { return 0, fmt.Errorf("store: requeue sending outbox items: %w", err) }
	now := db.nowMS()
	if !db.d.postgres {
		r, err := db.exec(ctx, requeue, now, now)
		if err != nil {
			return fail(err)
		}
		n, err := r.RowsAffected()
		if err != nil {
			return fail(err)
		}
		return int(n), nil
	}
	rows, err := db.readQuery(ctx, `SELECT DISTINCT claimed_by FROM outbox WHERE state = 'sending'`)
	if err != nil {
		return fail(err)
	}
	var keys []int64
	for rows.Next() {
		var k int64
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return fail(err)
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	dead, err := db.deadClaimers(ctx, keys)
	if err != nil {
		return fail(err)
	}
	total := 0
	for _, k := range dead {
		r, err := db.exec(ctx, requeue+` AND claimed_by = ?`, now, now, k)
		if err != nil {
			return fail(err)
		}
		n, err := r.RowsAffected()
		if err != nil {
			return fail(err)
		}
		total += int(n)
	}
	return total, nil
}

// NextOutboxDue returns when the next (channel, contact) group becomes due
// (see DueOutbox); ok is false when nothing is queued outside a delivery
// in progress. The time may be in the past.
//
// It walks the queued items by send_after and looks at the group of each:
// a group is due when its last item is, and once the items reach the
// earliest such time found, no group not yet seen can be due sooner. The
// items of a group usually share one send_after, so this stops after the
// first group.
func (db *DB) NextOutboxDue(ctx context.Context) (next time.Time, ok bool, err error) {
	tx, err := db.beginRead(ctx)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("store: next outbox due: %w", err)
	}
	defer tx.Rollback()
	rows, err := db.rtxQuery(ctx, tx, qQueuedBySendAfter, int64(math.MaxInt64))
	if err != nil {
		return time.Time{}, false, fmt.Errorf("store: next outbox due: %w", err)
	}
	defer rows.Close()
	type key struct{ channel, contact string }
	more := rows.Next
	var buffered []queuedRow
	if db.d.postgres {
		// A PostgreSQL connection runs one query at a time: read the
		// queued items before asking about their groups.
		if buffered, err = readQueued(rows); err != nil {
			return time.Time{}, false, fmt.Errorf("store: next outbox due: %w", err)
		}
		more = func() bool { return len(buffered) > 0 }
	}
	seen := map[key]bool{}
	var best int64
	for more() {
		var k key
		var sendAfter int64
		if buffered != nil {
			k, sendAfter = key{buffered[0].channel, buffered[0].contact}, buffered[0].sendAfter
			buffered = buffered[1:]
		} else if err := rows.Scan(&k.channel, &k.contact, &sendAfter); err != nil {
			return time.Time{}, false, fmt.Errorf("store: next outbox due: %w", err)
		}
		if ok && sendAfter >= best {
			break // every group not seen yet is due at sendAfter or later
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		g, err := db.group(ctx, tx, k.channel, k.contact)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("store: next outbox due: %w", err)
		}
		if !g.sending && (!ok || g.due < best) {
			best, ok = g.due, true
		}
	}
	if err := rows.Err(); err != nil {
		return time.Time{}, false, fmt.Errorf("store: next outbox due: %w", err)
	}
	if !ok {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(best), true, nil
}

// queuedRow is one row of qQueuedBySendAfter.
type queuedRow struct {
	channel, contact string
	sendAfter        int64
}

// readQueued reads the rest of rows of qQueuedBySendAfter and closes them.
func readQueued(rows *sql.Rows) ([]queuedRow, error) {
	defer rows.Close()
	list := []queuedRow{}
	for rows.Next() {
		var r queuedRow
		if err := rows.Scan(&r.channel, &r.contact, &r.sendAfter); err != nil {
			return nil, err
		}
		list = append(list, r)
	}
	return list, rows.Err()
}
