package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The hot queries, named so that TestQueryPlans can check their indexes.
const (
	// qRecordLookup finds, for RecordInbound, the row already recorded for
	// (channel, folder, uidvalidity, uid), if any, and the original row of
	// the dedupe key, in one statement: most rows have neither. The literal
	// "dedupe_key != ''" lets SQLite use the partial index.
	qRecordLookup = `SELECT e.id, e.dedupe_key, e.refetch = 1 AND e.state = 'dead',
			(SELECT min(id) FROM inbound WHERE channel = ? AND dedupe_key = ? AND dedupe_key != '')
		FROM (SELECT 1 AS one) AS o
		LEFT JOIN inbound AS e ON e.channel = ? AND e.folder = ? AND e.uidvalidity = ? AND e.uid = ?`

	// qUnfinished walks the unfinished rows of a channel oldest first, for
	// DuePosts.
	qUnfinished = `SELECT id, contact, contact_name, posts_done, posts_total, arrived_at, created_at
		FROM inbound INDEXED BY inbound_unfinished
		WHERE channel = ? AND state IN ('fetched', 'posting') AND id > ?
		ORDER BY id LIMIT ?`

	// qRefetches lists the dead letters of a folder marked for refetching.
	qRefetches = `SELECT uid FROM inbound INDEXED BY inbound_refetch
		WHERE channel = ? AND folder = ? AND uidvalidity = ? AND refetch = 1 AND state = 'dead'
		ORDER BY uid`

	// qPostBody is one queued post of a row.
	qPostBody = `SELECT body FROM inbound_posts WHERE ledger_id = ? AND seq = ?`

	// qPendingActions lists settled rows whose IMAP action is not done.
	// Dead letters get none: they stay in the mailbox as they are, and a
	// requeued one gets its action once it is posted.
	qPendingActions = `SELECT id, uidvalidity, uid, after_kind, after_dest FROM inbound
		WHERE channel = ? AND folder = ? AND after_kind != '' AND after_done = 0
			AND state IN ('skipped', 'quarantined', 'posted')
		ORDER BY id LIMIT ?`

	// qCountFromContact counts a contact's recent rows.
	qCountFromContact = `SELECT count(*) FROM inbound
		WHERE channel = ? AND contact = ? AND arrived_at >= ?`
)

// InboundState is the state of a ledger row:
//
//	fetched -> (skipped | quarantined | posting -> posted | dead)
type InboundState string

// The ledger states.
const (
	// StateFetched: recorded, posts not started.
	StateFetched InboundState = "fetched"
	// StateSkipped: deliberately not posted (duplicate, auto-reply, ...).
	StateSkipped InboundState = "skipped"
	// StateQuarantined: held for a human (for example an unverified sender).
	StateQuarantined InboundState = "quarantined"
	// StatePosting: the first POST may have been sent; posted again after a
	// crash.
	StatePosting InboundState = "posting"
	// StatePosted: every post was accepted by Userlike.
	StatePosted InboundState = "posted"
	// StateDead: given up after retries; Raw is kept for a requeue.
	StateDead InboundState = "dead"
)

// valid reports whether s is one of the ledger states.
func (s InboundState) valid() bool {
	switch s {
	case StateFetched, StateSkipped, StateQuarantined, StatePosting, StatePosted, StateDead:
		return true
	}
	return false
}

// Action is an IMAP action to apply to a message once its ledger row is
// settled. The zero Action means none.
type Action struct {
	Kind string // "", "seen", "move", "delete" or "flag"
	Dest string // the destination folder of "move"
}

// Inbound is one row of the inbound ledger: one fetched IMAP message.
type Inbound struct {
	ID             int64
	Channel        string
	Folder         string
	UIDValidity    uint32
	UID            uint32
	DedupeKey      string // Message-ID based or a content hash, chosen by the caller; "" disables dedupe
	MessageID      string
	Contact        string // lower-cased email; may be ""
	ContactName    string
	Subject        string
	State          InboundState
	Reason         string
	Classification string
	Verdict        []byte // JSON
	FullText       string
	Raw            []byte   // the message as fetched; nil once pruned and in lists
	Posts          [][]byte // JSON bodies to POST, in order; nil in lists
	PostsTotal     int      // len(Posts), also filled in lists
	PostsDone      int      // posts accepted so far; the next one is Posts[PostsDone]
	After          Action   // IMAP action to apply once settled
	AfterDone      bool     // After has been applied
	MediaIDs       []string // media rows to link to this row (RecordInbound only)
	ArrivedAt      time.Time
	CreatedAt      time.Time // when recorded
	UpdatedAt      time.Time
	ThreadSubject  string // subject for a new thread of the contact
	NewThread      bool   // start a new thread even if the contact has one
	Attempts       int    // POST rounds started (MarkPosting)
	LastError      string
	// DuplicateOf is the row this one was skipped as a copy of; 0 for none
	// (set by RecordInbound).
	DuplicateOf int64
	// Cc are the addr-specs replies to the contact copy from now on: they
	// replace the CC list of the contact's thread when the row is to be
	// posted (RecordInbound only; not stored in the ledger row).
	Cc []string
	// KeepCc leaves the thread's CC list as it is (an unverified sender).
	KeepCc bool
}

// RecordResult is what RecordInbound did.
type RecordResult struct {
	// ID is the ledger row: the new one, or the existing one when Existing.
	ID int64
	// Existing: (channel, folder, uidvalidity, uid) was already recorded;
	// nothing was written except the cursor.
	Existing bool
	// Replaced: the message was a dead letter marked for refetching
	// (Requeue); row #Replaced was deleted and this one written instead.
	Replaced int64
	// DuplicateOf: the dedupe key matched row #DuplicateOf of the channel;
	// this row was written as skipped with reason "duplicate of #N" and no
	// posts (its After action is kept).
	DuplicateOf int64

	posts [][]byte // the queued posts of a new fetched row, for recentPosts
}

// RecordInbound records a fetched message in one transaction:
//
//  1. if (channel, folder, uidvalidity, uid) is already recorded, it
//     writes nothing but the cursor and reports Existing, unless that row
//     is a dead letter marked for refetching (Requeue): then it deletes
//     the row, reports it as Replaced and goes on;
//  2. else if in.DedupeKey is set and another row of the channel has it,
//     it records in as skipped ("duplicate of #N"), without posts;
//  3. else it records in as given (State "" means fetched), with its posts.
//
// In the same transaction the cursor of (channel, folder) advances to
// in.UID (see SetCursor for a UIDVALIDITY change), the media in in.MediaIDs
// are linked to the row, and when the row is to be posted (fetched) and has
// a contact, the customer's Message-ID joins the contact's thread (a new
// thread with in.ThreadSubject when in.NewThread or when none exists) and
// in.Cc becomes the thread's CC list (unless in.KeepCc).
//
// On success in.ID, in.State, in.Reason, in.CreatedAt and in.UpdatedAt
// describe what was written.
func (db *DB) RecordInbound(ctx context.Context, in *Inbound) (RecordResult, error) {
	res, err := db.recordInbound(ctx, in, true, func(fn func(tx *sql.Tx) error) error { return db.lazyTx(ctx, fn) })
	if err == nil {
		db.keepRecent([]RecordResult{res})
	}
	return res, err
}

// RecordInbounds records the fetched messages ins, in order, as
// RecordInbound would one after another, but in one transaction and one
// commit (lazy, like RecordInbound's): a backlog costs one commit per
// batch instead of one per message. When a message fails, it is rolled
// back alone, the messages before it are committed and the rest are not
// tried. The cursor of each folder ends at the last recorded UID.
//
// It returns the results of the recorded messages, ins[:len(results)];
// when len(results) < len(ins), err says why ins[len(results)] was not
// recorded. An error of the commit itself records none.
func (db *DB) RecordInbounds(ctx context.Context, ins []*Inbound) ([]RecordResult, error) {
	// The messages are first recorded without a savepoint each (a
	// savepoint makes SQLite journal every page it changes); only when one
	// fails is the batch recorded again, each message in its own savepoint.
	var results []RecordResult
	err := db.lazyTx(ctx, func(tx *sql.Tx) error {
		results = results[:0]
		for _, in := range ins {
			res, err := db.recordInbound(ctx, in, false, func(fn func(tx *sql.Tx) error) error { return fn(tx) })
			if err != nil {
				return errors.Join(errRecordAgain, err)
			}
			results = append(results, res)
		}
		return db.advanceCursors(ctx, tx, ins)
	})
	if !errors.Is(err, errRecordAgain) {
		if err != nil {
			return nil, err
		}
		db.keepRecent(results)
		return results, nil
	}
	var rowErr error
	err = db.lazyTx(ctx, func(tx *sql.Tx) error {
		results, rowErr = results[:0], nil
		for _, in := range ins {
			if _, err := tx.ExecContext(ctx, "SAVEPOINT rec"); err != nil {
				return err
			}
			res, err := db.recordInbound(ctx, in, false, func(fn func(tx *sql.Tx) error) error { return fn(tx) })
			if err != nil {
				if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO rec"); rerr != nil {
					return errors.Join(err, rerr)
				}
				rowErr = err
			}
			if _, err := tx.ExecContext(ctx, "RELEASE rec"); err != nil {
				return err
			}
			if rowErr != nil {
				break
			}
			results = append(results, res)
		}
		if len(results) == 0 && rowErr != nil {
			return rowErr // nothing to commit
		}
		return db.advanceCursors(ctx, tx, ins[:len(results)])
	})
	if err != nil {
		return nil, err
	}
	db.keepRecent(results)
	return results, rowErr
}

// advanceCursors moves the cursor of each folder of ins, recorded in
// order, where advancing it message by message would: to the highest UID
// of the last UIDVALIDITY seen. One statement per folder instead of one
// per message.
func (db *DB) advanceCursors(ctx context.Context, tx *sql.Tx, ins []*Inbound) error {
	type key struct{ channel, folder string }
	type pos struct{ uidvalidity, uid uint32 }
	var order []key
	last := make(map[key]pos)
	for _, in := range ins {
		k := key{in.Channel, in.Folder}
		p, ok := last[k]
		switch {
		case !ok:
			order = append(order, k)
			fallthrough
		case p.uidvalidity != in.UIDValidity:
			p = pos{in.UIDValidity, in.UID}
		default:
			p.uid = max(p.uid, in.UID)
		}
		last[k] = p
	}
	now := db.nowMS()
	for _, k := range order {
		p := last[k]
		if err := db.advanceCursor(ctx, tx, k.channel, k.folder, p.uidvalidity, p.uid, now); err != nil {
			return err
		}
	}
	return nil
}

// keepRecent keeps the posts of the committed results in db.recent, with
// a barrier ticket taken after their commit, and has the WAL syncer start
// a barrier that covers them.
func (db *DB) keepRecent(results []RecordResult) {
	var ticket uint64
	if db.wal != nil {
		ticket = db.wal.ticket()
	}
	for _, r := range results {
		db.recent.add(r.ID, r.posts, ticket)
	}
	if db.walWake != nil {
		select {
		case db.walWake <- struct{}{}:
		default:
		}
	}
}

// errRecordAgain makes RecordInbounds record its batch again with a
// savepoint per message.
var errRecordAgain = errors.New("store: record the batch again message by message")

// recordInbound is RecordInbound with its transaction run by run.
// With cursor false it leaves the folder's cursor to the caller.
func (db *DB) recordInbound(ctx context.Context, in *Inbound, cursor bool, run func(fn func(tx *sql.Tx) error) error) (RecordResult, error) {
	var res RecordResult
	if err := checkInbound(in); err != nil {
		return res, err
	}
	contact := normContact(in.Contact)
	now := db.nowMS()
	var (
		state  InboundState
		reason string
		posts  [][]byte
	)

	err := run(func(tx *sql.Tx) error {
		res = RecordResult{}
		state, reason, posts = in.State, in.Reason, in.Posts
		if state == "" {
			state = StateFetched
		}
		if cursor {
			if err := db.advanceCursor(ctx, tx, in.Channel, in.Folder, in.UIDValidity, in.UID, now); err != nil {
				return err
			}
		}
		var (
			old     sql.NullInt64
			oldKey  sql.NullString
			refetch sql.NullBool
			orig    sql.NullInt64
		)
		err := db.txQueryRow(ctx, tx, qRecordLookup, in.Channel, in.DedupeKey,
			in.Channel, in.Folder, in.UIDValidity, in.UID).Scan(&old, &oldKey, &refetch, &orig)
		switch {
		case err != nil:
			return err
		case old.Valid && !refetch.Bool:
			res.ID, res.Existing = old.Int64, true
			return nil
		case old.Valid:
			// A dead letter fetched again for `mailgate dead retry`: the
			// new decision replaces it. Its posts and raw copy go with it;
			// its media keep their files but lose the link (the new
			// decision's media are linked to the new row below).
			if _, err := db.txExec(ctx, tx, `DELETE FROM inbound WHERE id = ?`, old.Int64); err != nil {
				return err
			}
			res.Replaced = old.Int64
		}
		if in.DedupeKey != "" {
			if res.Replaced != 0 {
				// Copies skipped as duplicates of the replaced row are
				// not originals: they become duplicates of the new one.
				err := db.txQueryRow(ctx, tx, `SELECT min(id) FROM inbound
					WHERE channel = ? AND dedupe_key = ? AND dedupe_key != '' AND duplicate_of != ?`,
					in.Channel, in.DedupeKey, res.Replaced).Scan(&orig)
				if err != nil {
					return err
				}
			}
			if orig.Valid {
				res.DuplicateOf = orig.Int64
				state = StateSkipped
				reason = fmt.Sprintf("duplicate of #%d", orig.Int64)
				posts = nil
			}
		}
		err = db.txQueryRow(ctx, tx, `INSERT INTO inbound (
				channel, folder, uidvalidity, uid, dedupe_key, message_id, contact, contact_name,
				subject, state, reason, classification, verdict, posts_total, posts_done,
				after_kind, after_dest, after_done, thread_subject, new_thread, attempts, last_error,
				arrived_at, created_at, updated_at, duplicate_of)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			RETURNING id`,
			in.Channel, in.Folder, in.UIDValidity, in.UID, in.DedupeKey, in.MessageID, contact, in.ContactName,
			in.Subject, string(state), reason, in.Classification, in.Verdict, len(posts),
			in.After.Kind, in.After.Dest, boolInt(in.AfterDone), in.ThreadSubject, boolInt(in.NewThread), in.Attempts, in.LastError,
			ms(in.ArrivedAt), now, now, res.DuplicateOf).Scan(&res.ID)
		if err != nil {
			return err
		}
		// The text lives apart from the row (016_inbound_text.sql), which
		// is updated as its posts are accepted.
		if in.FullText != "" {
			if _, err := db.txExec(ctx, tx, `INSERT INTO inbound_text (ledger_id, full_text) VALUES (?, ?)`, res.ID, in.FullText); err != nil {
				return err
			}
		}
		if in.Raw != nil {
			if err := db.insertRaw(ctx, tx, res.ID, in.Raw); err != nil {
				return err
			}
		}
		for i, p := range posts {
			if p == nil {
				p = []byte{}
			}
			if _, err := db.txExec(ctx, tx, `INSERT INTO inbound_posts (ledger_id, seq, body) VALUES (?, ?, ?)`, res.ID, i, p); err != nil {
				return err
			}
		}
		if res.Replaced != 0 {
			// The copies skipped as duplicates of the replaced row now
			// refer to this one.
			if _, err := db.txExec(ctx, tx, `UPDATE inbound SET duplicate_of = ?, reason = ?
				WHERE channel = ? AND dedupe_key = ? AND dedupe_key != '' AND duplicate_of = ?`,
				res.ID, fmt.Sprintf("duplicate of #%d", res.ID), in.Channel, oldKey.String, res.Replaced); err != nil {
				return err
			}
		}
		if len(in.MediaIDs) > 0 {
			ids, err := jsonArray(in.MediaIDs)
			if err != nil {
				return err
			}
			if _, err := db.txExec(ctx, tx, `UPDATE media SET ledger_id = ?
				WHERE id IN (SELECT value FROM json_each(?))`, res.ID, ids); err != nil {
				return err
			}
		}
		if state == StateFetched {
			res.posts = posts
		}
		if state == StateFetched && contact != "" {
			if err := db.recordThread(ctx, tx, in, contact, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return RecordResult{}, fmt.Errorf("store: record inbound %s/%s uid %d/%d: %w", in.Channel, in.Folder, in.UIDValidity, in.UID, err)
	}
	if !res.Existing {
		in.ID = res.ID
		in.Contact = contact
		in.State = state
		in.Reason = reason
		in.DuplicateOf = res.DuplicateOf
		in.CreatedAt = fromMS(now)
		in.UpdatedAt = fromMS(now)
	}
	return res, nil
}

// recordThread does for a row to be posted what addThreadMessage (the
// customer's Message-ID, in.NewThread, in.ThreadSubject) and then
// setThreadCc (in.Cc, unless in.KeepCc: the contact's latest email decides
// the CC list, also when it has none) would, in fewer statements: a new
// thread is inserted with its last Message-ID and CC list, an existing one
// is updated once.
func (db *DB) recordThread(ctx context.Context, tx *sql.Tx, in *Inbound, contact string, now int64) error {
	var cc string
	if len(in.Cc) > 0 && !in.KeepCc {
		var err error
		if cc, err = jsonArray(in.Cc); err != nil {
			return err
		}
	}
	if !in.NewThread && in.MessageID == "" && len(in.Cc) == 0 {
		if in.KeepCc {
			return nil
		}
		return db.setThreadCc(ctx, tx, in.Channel, contact, nil)
	}
	var id int64
	newThread := in.NewThread
	if !newThread {
		var err error
		if id, newThread, err = db.latestThread(ctx, tx, in.Channel, contact); err != nil {
			return err
		}
	}
	if newThread {
		if err := db.txQueryRow(ctx, tx, `INSERT INTO threads (channel, contact, subject, last_customer_id, cc, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`, in.Channel, contact, in.ThreadSubject, in.MessageID, cc, now, now).Scan(&id); err != nil {
			return err
		}
	} else {
		// One of a few fixed statements, each cached.
		var set []string
		var args []any
		if in.ThreadSubject != "" {
			set, args = append(set, "subject = CASE WHEN subject = '' THEN ? ELSE subject END"), append(args, in.ThreadSubject)
		}
		if in.MessageID != "" {
			set, args = append(set, "last_customer_id = ?", "updated_at = ?"), append(args, in.MessageID, now)
		}
		if !in.KeepCc {
			set, args = append(set, "cc = ?"), append(args, cc)
		}
		if len(set) > 0 {
			if _, err := db.txExec(ctx, tx, `UPDATE threads SET `+strings.Join(set, ", ")+` WHERE id = ?`, append(args, id)...); err != nil {
				return err
			}
		}
	}
	if in.MessageID == "" {
		return nil
	}
	_, err := db.txExec(ctx, tx, `INSERT INTO thread_messages (thread_id, message_id, ours, created_at)
		VALUES (?, ?, 0, ?) ON CONFLICT (thread_id, message_id) DO NOTHING`, id, in.MessageID, now)
	return err
}

// checkInbound rejects rows RecordInbound must not write.
func checkInbound(in *Inbound) error {
	bad := func(msg string) error {
		return fmt.Errorf("store: record inbound %s/%s uid %d/%d: %s", in.Channel, in.Folder, in.UIDValidity, in.UID, msg)
	}
	switch {
	case in.Channel == "" || in.Folder == "":
		return bad("channel and folder are required")
	case in.UIDValidity == 0 || in.UID == 0:
		return bad("UIDVALIDITY and UID must be non-zero")
	}
	switch in.State {
	case "", StateFetched:
		if len(in.Posts) == 0 {
			return bad("a fetched row needs at least one post")
		}
	case StateSkipped, StateQuarantined, StateDead:
	default:
		return bad(fmt.Sprintf("cannot record in state %q", in.State))
	}
	if in.PostsDone != 0 {
		return bad("PostsDone must be 0")
	}
	switch in.After.Kind {
	case "", "seen", "delete", "flag":
	case "move":
		if in.After.Dest == "" {
			return bad("move action without destination")
		}
	default:
		return bad(fmt.Sprintf("unknown action %q", in.After.Kind))
	}
	return nil
}

// inboundCols are the columns scanInbound reads, in order.
const inboundCols = `id, channel, folder, uidvalidity, uid, dedupe_key, message_id, contact, contact_name,
	subject, state, reason, classification, verdict, posts_total, posts_done,
	after_kind, after_dest, after_done, thread_subject, new_thread, attempts, last_error,
	arrived_at, created_at, updated_at,
	COALESCE((SELECT full_text FROM inbound_text WHERE inbound_text.ledger_id = inbound.id), ''), duplicate_of`

// scanInbound reads one row of inboundCols.
func scanInbound(row interface{ Scan(...any) error }) (*Inbound, error) {
	var in Inbound
	var state string
	var arrived, created, updated int64
	err := row.Scan(&in.ID, &in.Channel, &in.Folder, &in.UIDValidity, &in.UID, &in.DedupeKey, &in.MessageID,
		&in.Contact, &in.ContactName, &in.Subject, &state, &in.Reason, &in.Classification, &in.Verdict,
		&in.PostsTotal, &in.PostsDone, &in.After.Kind, &in.After.Dest, &in.AfterDone, &in.ThreadSubject,
		&in.NewThread, &in.Attempts, &in.LastError, &arrived, &created, &updated, &in.FullText, &in.DuplicateOf)
	if err != nil {
		return nil, err
	}
	in.State = InboundState(state)
	in.ArrivedAt, in.CreatedAt, in.UpdatedAt = fromMS(arrived), fromMS(created), fromMS(updated)
	return &in, nil
}

// Inbound returns ledger row id with its Raw (nil when pruned) and Posts.
func (db *DB) Inbound(ctx context.Context, id int64) (*Inbound, error) {
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: inbound #%d: %w", id, err)
	}
	defer tx.Rollback()
	in, err := scanInbound(db.txQueryRowOnce(ctx, tx, `SELECT `+inboundCols+` FROM inbound WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: inbound #%d: %w", id, notFound{})
	}
	if err != nil {
		return nil, fmt.Errorf("store: inbound #%d: %w", id, err)
	}
	if in.Raw, err = db.readRaw(ctx, tx, id); err != nil {
		return nil, fmt.Errorf("store: inbound #%d raw: %w", id, err)
	}
	rows, err := db.txQueryOnce(ctx, tx, `SELECT body FROM inbound_posts WHERE ledger_id = ? ORDER BY seq`, id)
	if err != nil {
		return nil, fmt.Errorf("store: inbound #%d posts: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("store: inbound #%d posts: %w", id, err)
		}
		in.Posts = append(in.Posts, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: inbound #%d posts: %w", id, err)
	}
	return in, nil
}

// InboundFilter selects ledger rows for ListInbound.
type InboundFilter struct {
	Channel  string         // "" = all channels
	States   []InboundState // empty = all states
	Limit    int            // <= 0 means 100
	BeforeID int64          // > 0: only rows with a smaller id (paging)
}

// ListInbound returns ledger rows, newest first, without Raw and Posts
// (PostsTotal is set).
func (db *DB) ListInbound(ctx context.Context, f InboundFilter) ([]*Inbound, error) {
	var where []string
	var args []any
	if f.Channel != "" {
		where = append(where, "channel = ?")
		args = append(args, f.Channel)
	}
	if len(f.States) > 0 {
		ph := make([]string, len(f.States))
		for i, s := range f.States {
			ph[i] = "?"
			args = append(args, string(s))
		}
		where = append(where, "state IN ("+strings.Join(ph, ", ")+")")
	}
	if f.BeforeID > 0 {
		where = append(where, "id < ?")
		args = append(args, f.BeforeID)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q := `SELECT ` + inboundCols + ` FROM inbound`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := db.readQueryOnce(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list inbound: %w", err)
	}
	defer rows.Close()
	var list []*Inbound
	for rows.Next() {
		in, err := scanInbound(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list inbound: %w", err)
		}
		list = append(list, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list inbound: %w", err)
	}
	return list, nil
}

// DuePost is the next POST owed to Userlike for one contact.
type DuePost struct {
	LedgerID    int64
	Channel     string
	Contact     string
	ContactName string
	Seq         int    // index into the row's Posts
	Body        []byte // the JSON body
	Total       int    // len(Posts)
	ArrivedAt   time.Time
	CreatedAt   time.Time // when the row was recorded

	// seen is a barrier ticket taken after the row was committed (a row
	// this process recorded) or read: once a barrier passes it, the row
	// is on disk (PostBarrier).
	seen uint64
	// after is the accept-log record of the contact's last acceptance
	// (the row's previous post, or the contact's previous row) when it
	// was not on disk yet: PostBarrier has it on disk first. 0 for none.
	after uint64
}

// DuePosts returns, for each contact of the channel, the next post of the
// contact's oldest ledger row in state fetched or posting, so that a
// contact's second email waits for its first. Contacts in skipContacts (in
// backoff) are left out. The result is ordered by ledger id and has at most
// limit entries (<= 0 means 100). Rows without a contact share one queue.
//
// It walks the unfinished rows oldest first and stops at limit contacts, so
// a call costs about limit rows plus the rows of skipped contacts ahead of
// them, not the whole backlog.
func (db *DB) DuePosts(ctx context.Context, channel string, skipContacts []string, limit int) ([]DuePost, error) {
	if limit <= 0 {
		limit = 100
	}
	// A contact is taken at its oldest unfinished row; later rows of a
	// contact already seen (or skipped) are passed over.
	seen := make(map[string]bool, len(skipContacts)+limit)
	for _, c := range skipContacts {
		seen[normContact(c)] = true
	}
	// Acceptances not yet folded into the ledger, taken before the read
	// snapshot: one that is folded after this (and so missing from the
	// snapshot) is in the copy.
	var accepted map[int64]int
	if db.accepts != nil {
		accepted = db.accepts.overlay()
	}
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: due posts %s: %w", channel, err)
	}
	defer tx.Rollback()
	// Pages of rows, so that PostgreSQL (which sends a whole result
	// before the first row is read) sends about what is needed, not the
	// whole backlog; SQLite reads only what is stepped through anyway.
	page := 4 * limit
	var due []DuePost
	after := int64(0)
	for len(due) < limit {
		rows, err := db.rtxQuery(ctx, tx, qUnfinished, channel, after, page)
		if err != nil {
			return nil, fmt.Errorf("store: due posts %s: %w", channel, err)
		}
		n := 0
		for len(due) < limit && rows.Next() {
			n++
			d := DuePost{Channel: channel}
			var arrived, created int64
			if err := rows.Scan(&d.LedgerID, &d.Contact, &d.ContactName, &d.Seq, &d.Total, &arrived, &created); err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: due posts %s: %w", channel, err)
			}
			after = d.LedgerID
			if n, ok := accepted[d.LedgerID]; ok && n > d.Seq {
				if n >= d.Total {
					continue // all accepted: the contact's next row is due
				}
				d.Seq = n
			}
			if seen[d.Contact] {
				continue
			}
			seen[d.Contact] = true
			d.ArrivedAt, d.CreatedAt = fromMS(arrived), fromMS(created)
			due = append(due, d)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("store: due posts %s: %w", channel, err)
		}
		if n < page {
			break // the last page
		}
	}
	// The rows were committed before this ticket: once a barrier passes
	// it, they are on disk (PostBarrier).
	var ticket uint64
	if db.wal != nil {
		ticket = db.wal.ticket()
	}
	// The bodies, read in the same snapshot. A row without its next post
	// (it cannot happen short of a corrupt ledger) holds its contact back.
	out := due[:0]
	for _, d := range due {
		d.seen = ticket
		if db.accepts != nil {
			d.after = db.accepts.follows(d.Contact)
		}
		if body, committed := db.recent.get(d.LedgerID, d.Seq); body != nil {
			// The row was recorded by this process: it is on disk once
			// a barrier began after its commit, usually long before its
			// post is due (the WAL syncer starts one after each).
			d.Body, d.seen = body, committed
			out = append(out, d)
			continue
		}
		err := db.rtxQueryRow(ctx, tx, qPostBody, d.LedgerID, d.Seq).Scan(&d.Body)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store: due posts %s: %w", channel, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// inboundState reads the state of row id inside tx.
func (db *DB) inboundState(ctx context.Context, tx *sql.Tx, id int64) (InboundState, error) {
	var s string
	err := db.txQueryRow(ctx, tx, `SELECT state FROM inbound WHERE id = ?`, id).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return InboundState(s), err
}

// MarkPosting moves row id from fetched to posting (posting stays posting)
// and counts an attempt. Call it before each POST round.
func (db *DB) MarkPosting(ctx context.Context, id int64) error {
	err := db.lazyTx(ctx, func(tx *sql.Tx) error {
		st, err := db.inboundState(ctx, tx, id)
		if err != nil {
			return err
		}
		if st != StateFetched && st != StatePosting {
			return &StateError{Table: "inbound", ID: id, State: string(st), Op: "mark posting"}
		}
		_, err = db.txExec(ctx, tx, `UPDATE inbound SET state = 'posting', attempts = attempts + 1, updated_at = ?
			WHERE id = ?`, db.nowMS(), id)
		return err
	})
	return wrapErr("mark posting", id, err)
}

// PostDone records that post seq of row id was accepted. It only moves
// forward from seq (a repeated call for an earlier seq is a no-op); after
// the last post the row becomes posted and finished is true.
func (db *DB) PostDone(ctx context.Context, id int64, seq int) (finished bool, err error) {
	return db.postDone(ctx, id, seq, false)
}

// PostAccepted records that Userlike accepted post p, as DuePosts handed
// it out. It is PostDone for a poster that does not call MarkPosting
// before the POST: accepting post 0 also counts the attempt, in the same
// commit, so that a POST costs one ledger commit instead of two. (A crash
// before it leaves the row fetched instead of posting; both are posted
// again after a restart, so nothing else differs.)
//
// With Options.AcceptLog the acceptance is appended to the accept log
// instead and folded into the row with later commits (see acceptlog.go);
// finished then comes from p.Total. It returns once the record is written
// (which a kill -9 cannot undo); the log's syncer has it on disk soon
// after, and PostAccepted waits for that only when more than maxUnsynced
// records are not yet on disk.
func (db *DB) PostAccepted(ctx context.Context, p DuePost) (finished bool, err error) {
	l := db.accepts
	if l == nil {
		return db.postDone(ctx, p.LedgerID, p.Seq, p.Seq == 0)
	}
	if n, err := l.add(p.LedgerID, p.Seq+1, p.Contact); err == nil && p.Total > 0 {
		finished = p.Seq+1 >= p.Total
		if finished {
			db.recent.drop(p.LedgerID)
		}
		// The syncer fsyncs the record; only when maxUnsynced others
		// already wait for it does this caller wait too.
		if l.unsynced() > maxUnsynced {
			if err := l.syncTo(n); err != nil {
				return false, fmt.Errorf("store: post accepted #%d: %w", p.LedgerID, err)
			}
		}
		return finished, nil
	}
	// The log failed: a durable commit records it instead.
	if finished, err = db.postDone(ctx, p.LedgerID, p.Seq, p.Seq == 0); err != nil {
		return false, err
	}
	return finished, db.Barrier(ctx)
}

// PostBarrier returns once everything post p rests on would survive a
// power cut: its ledger row, and the contact's last acceptance (the row's
// previous post, or the contact's previous row), so that a power cut never
// posts an email again after the contact's next one. It is Barrier, except
// with the accept log: then the acceptance is its record in the log
// (synced here if the log's syncer has not yet), and the row needs no
// barrier of its own when one began after it was committed (a row this
// process recorded: the WAL syncer starts one after each commit) or after
// DuePosts read it.
func (db *DB) PostBarrier(ctx context.Context, p DuePost) error {
	if l := db.accepts; l != nil {
		if err := l.syncTo(p.after); err != nil {
			return fmt.Errorf("store: post barrier #%d: %w", p.LedgerID, err)
		}
		if db.wal.hasPassed(p.seen) {
			return nil
		}
	}
	return db.Barrier(ctx)
}

// PostFailed records a temporary failure of post seq of row id: the row
// becomes posting (from fetched) and keeps msg as its last error; a
// failure of post 0 counts an attempt, as MarkPosting would have.
func (db *DB) PostFailed(ctx context.Context, id int64, seq int, msg string) error {
	err := db.lazyTx(ctx, func(tx *sql.Tx) error {
		st, err := db.inboundState(ctx, tx, id)
		if err != nil {
			return err
		}
		if st != StateFetched && st != StatePosting {
			return &StateError{Table: "inbound", ID: id, State: string(st), Op: "post failed"}
		}
		_, err = db.txExec(ctx, tx, `UPDATE inbound SET state = 'posting', attempts = attempts + ?, last_error = ?,
			updated_at = ? WHERE id = ?`, boolInt(seq == 0), msg, db.nowMS(), id)
		return err
	})
	return wrapErr("post failed", id, err)
}

func (db *DB) postDone(ctx context.Context, id int64, seq int, countAttempt bool) (finished bool, err error) {
	err = db.lazyTx(ctx, func(tx *sql.Tx) error {
		var st string
		var done, total int
		err := db.txQueryRow(ctx, tx, `SELECT state, posts_done, posts_total FROM inbound WHERE id = ?`, id).
			Scan(&st, &done, &total)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		switch {
		case seq < done:
			// Already recorded.
			finished = InboundState(st) == StatePosted
			return nil
		case seq > done || seq >= total:
			return fmt.Errorf("post %d done out of order (%d of %d done)", seq, done, total)
		case InboundState(st) != StateFetched && InboundState(st) != StatePosting:
			return &StateError{Table: "inbound", ID: id, State: st, Op: "post done"}
		}
		newState := InboundState(st)
		if countAttempt {
			newState = StatePosting // what MarkPosting would have written
		}
		if seq+1 == total {
			newState = StatePosted
			finished = true
		}
		_, err = db.txExec(ctx, tx, `UPDATE inbound SET posts_done = ?, state = ?, attempts = attempts + ?, updated_at = ?
			WHERE id = ?`, seq+1, string(newState), boolInt(countAttempt), db.nowMS(), id)
		return err
	})
	if err != nil {
		return false, wrapErr("post done seq "+strconv.Itoa(seq)+" of", id, err)
	}
	if finished {
		db.recent.drop(id)
	}
	return finished, nil
}

// MarkDead gives row id up with reason: fetched, posting and quarantined
// rows become dead; a dead row stays dead (keeping its first reason). Raw
// and the posts are kept for Requeue.
func (db *DB) MarkDead(ctx context.Context, id int64, reason string) error {
	err := db.lazyTx(ctx, func(tx *sql.Tx) error {
		st, err := db.inboundState(ctx, tx, id)
		if err != nil {
			return err
		}
		switch st {
		case StateDead:
			return nil
		case StateFetched, StatePosting, StateQuarantined:
		default:
			return &StateError{Table: "inbound", ID: id, State: string(st), Op: "mark dead"}
		}
		_, err = db.txExec(ctx, tx, `UPDATE inbound SET state = 'dead', reason = ?, updated_at = ? WHERE id = ?`,
			reason, db.nowMS(), id)
		return err
	})
	db.recent.drop(id)
	return wrapErr("mark dead", id, err)
}

// SetLastError records the last error met while processing row id.
func (db *DB) SetLastError(ctx context.Context, id int64, msg string) error {
	r, err := db.writeExec(ctx, `UPDATE inbound SET last_error = ?, updated_at = ? WHERE id = ?`,
		msg, db.nowMS(), id)
	if err == nil {
		err = mustAffect(r)
	}
	return wrapErr("set last error", id, err)
}

// Requeue puts dead row id back in the queue.
//
//   - A row with posts left goes back to fetched, so that its remaining
//     posts are sent again (posts already done stay done). Attempts and
//     the last error are reset.
//   - A row that died with nothing to post (too large, unreadable) is
//     marked for refetching, and refetch is true: the folder's Watcher
//     fetches the message again (Refetches) and the new decision replaces
//     the row under a new id (RecordInbound), or the Watcher gives up
//     (RefetchFailed) and the row stays dead with a last error. Callers
//     check first that the folder is still watched under the row's
//     UIDVALIDITY; a refetch under another one is never served.
//
// It fails for a row that is not dead, or whose posts were all sent.
func (db *DB) Requeue(ctx context.Context, id int64) (refetch bool, err error) {
	err = db.tx(ctx, func(tx *sql.Tx) error {
		var st string
		var done, total int
		err := db.txQueryRowOnce(ctx, tx, `SELECT state, posts_done, posts_total FROM inbound WHERE id = ?`, id).
			Scan(&st, &done, &total)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if InboundState(st) != StateDead {
			return &StateError{Table: "inbound", ID: id, State: st, Op: "requeue"}
		}
		now := db.nowMS()
		switch {
		case total == 0:
			refetch = true
			_, err = db.txExecOnce(ctx, tx, `UPDATE inbound SET refetch = 1, last_error = '', updated_at = ? WHERE id = ?`, now, id)
		case done >= total:
			return fmt.Errorf("no posts left to send (%d of %d done)", done, total)
		default:
			_, err = db.txExecOnce(ctx, tx, `UPDATE inbound SET state = 'fetched', reason = '', attempts = 0,
				last_error = '', updated_at = ? WHERE id = ?`, now, id)
		}
		return err
	})
	return refetch, wrapErr("requeue", id, err)
}

// Refetches returns the UIDs of the channel's folder, under uidValidity,
// of dead letters that Requeue marked for refetching, ascending.
func (db *DB) Refetches(ctx context.Context, channel, folder string, uidValidity uint32) ([]uint32, error) {
	rows, err := db.readQuery(ctx, qRefetches, channel, folder, uidValidity)
	if err != nil {
		return nil, fmt.Errorf("store: refetches of %s/%s: %w", channel, folder, err)
	}
	defer rows.Close()
	var uids []uint32
	for rows.Next() {
		var uid uint32
		if err := rows.Scan(&uid); err != nil {
			return nil, fmt.Errorf("store: refetches of %s/%s: %w", channel, folder, err)
		}
		uids = append(uids, uid)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: refetches of %s/%s: %w", channel, folder, err)
	}
	return uids, nil
}

// CountRefetches counts the dead letters of the channel that wait to be
// fetched again.
func (db *DB) CountRefetches(ctx context.Context, channel string) (int, error) {
	var n int
	err := db.readQueryRowOnce(ctx, `SELECT count(*) FROM inbound INDEXED BY inbound_refetch
		WHERE channel = ? AND refetch = 1 AND state = 'dead'`, channel).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: refetches of %s: %w", channel, err)
	}
	return n, nil
}

// RefetchFailed ends the refetching of the dead letters of the channel's
// folder at uids, which cannot be fetched again (they are no longer in the
// folder, say); each stays dead, with why as its last error.
func (db *DB) RefetchFailed(ctx context.Context, channel, folder string, uidValidity uint32, uids []uint32, why string) error {
	if len(uids) == 0 {
		return nil
	}
	list, err := jsonArray(uids)
	if err != nil {
		return err
	}
	_, err = db.writeExec(ctx, `UPDATE inbound SET refetch = 0, updated_at = ?, last_error = ?
		WHERE channel = ? AND folder = ? AND uidvalidity = ? AND refetch = 1
			AND uid IN (SELECT CAST(value AS BIGINT) FROM json_each(?))`,
		db.nowMS(), "dead retry: "+why, channel, folder, uidValidity, list)
	if err != nil {
		return fmt.Errorf("store: end refetching in %s/%s: %w", channel, folder, err)
	}
	return nil
}

// CountFromContact counts the ledger rows of the channel from contact that
// arrived (ArrivedAt) at or after since, in any state. It serves a
// per-sender rate limit.
func (db *DB) CountFromContact(ctx context.Context, channel, contact string, since time.Time) (int, error) {
	var n int
	err := db.readQueryRow(ctx, qCountFromContact,
		channel, normContact(contact), ms(since)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: count from contact %s: %w", channel, err)
	}
	return n, nil
}

// PendingAction is an IMAP action still to apply to a settled message.
type PendingAction struct {
	ID          int64 // the ledger row
	UIDValidity uint32
	UID         uint32
	Action      Action
}

// PendingActions returns, oldest first, at most limit (<= 0 means 100)
// rows of (channel, folder) that are settled (skipped, quarantined, posted
// or dead) and whose IMAP action is not done yet. Rows recorded under an
// older UIDVALIDITY are included; the caller decides what to do with them.
func (db *DB) PendingActions(ctx context.Context, channel, folder string, limit int) ([]PendingAction, error) {
	if limit <= 0 {
		limit = 100
	}
	// An email's action is due once its last post is folded in.
	if err := db.foldNow(ctx); err != nil {
		return nil, fmt.Errorf("store: pending actions %s/%s: %w", channel, folder, err)
	}
	rows, err := db.readQuery(ctx, qPendingActions, channel, folder, limit)
	if err != nil {
		return nil, fmt.Errorf("store: pending actions %s/%s: %w", channel, folder, err)
	}
	defer rows.Close()
	var list []PendingAction
	for rows.Next() {
		var p PendingAction
		if err := rows.Scan(&p.ID, &p.UIDValidity, &p.UID, &p.Action.Kind, &p.Action.Dest); err != nil {
			return nil, fmt.Errorf("store: pending actions %s/%s: %w", channel, folder, err)
		}
		list = append(list, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: pending actions %s/%s: %w", channel, folder, err)
	}
	if len(list) > 0 {
		// The caller applies these on the IMAP server next: the rows
		// must survive a power cut first (see the package doc).
		if err := db.Barrier(ctx); err != nil {
			return nil, fmt.Errorf("store: pending actions %s/%s: %w", channel, folder, err)
		}
	}
	return list, nil
}

// ActionsDone marks the IMAP actions of the given rows as applied.
func (db *DB) ActionsDone(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	j, err := jsonArray(ids)
	if err != nil {
		return fmt.Errorf("store: actions done: %w", err)
	}
	_, err = db.writeExec(ctx, `UPDATE inbound SET after_done = 1, updated_at = ?
		WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))`, db.nowMS(), j)
	if err != nil {
		return fmt.Errorf("store: actions done: %w", err)
	}
	return nil
}

// ActionsRefused marks the IMAP actions of the given rows as refused by the
// server with reason: they are done (retrying cannot help) and counted by
// Status.
func (db *DB) ActionsRefused(ctx context.Context, ids []int64, reason string) error {
	if len(ids) == 0 {
		return nil
	}
	j, err := jsonArray(ids)
	if err != nil {
		return fmt.Errorf("store: actions refused: %w", err)
	}
	if reason == "" {
		reason = "refused"
	}
	_, err = db.writeExec(ctx, `UPDATE inbound SET after_done = 1, after_error = ?, updated_at = ?
		WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))`, reason, db.nowMS(), j)
	if err != nil {
		return fmt.Errorf("store: actions refused: %w", err)
	}
	return nil
}

// Counts returns the number of ledger rows per state of the channel ("" =
// all channels). States without rows are absent.
func (db *DB) Counts(ctx context.Context, channel string) (map[InboundState]int, error) {
	rows, err := db.readQueryOnce(ctx, `SELECT state, count(*) FROM inbound
		WHERE ? = '' OR channel = ? GROUP BY state`, channel, channel)
	if err != nil {
		return nil, fmt.Errorf("store: counts %s: %w", channel, err)
	}
	defer rows.Close()
	m := make(map[InboundState]int)
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, fmt.Errorf("store: counts %s: %w", channel, err)
		}
		m[InboundState(s)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: counts %s: %w", channel, err)
	}
	return m, nil
}

// PruneRaw drops the raw message of posted and skipped rows created before
// olderThan and returns how many were dropped. Dead and quarantined rows
// keep theirs.
func (db *DB) PruneRaw(ctx context.Context, olderThan time.Time) (int, error) {
	var n int
	err := db.lazyTx(ctx, func(tx *sql.Tx) error {
		const rows = `SELECT DISTINCT ledger_id FROM inbound_raw_chunks WHERE ledger_id IN (
			SELECT id FROM inbound WHERE state IN ('posted', 'skipped') AND created_at < ?)`
		if err := db.txQueryRowOnce(ctx, tx, `SELECT count(*) FROM (`+rows+`) AS pruned`, ms(olderThan)).Scan(&n); err != nil {
			return err
		}
		_, err := db.txExecOnce(ctx, tx, `DELETE FROM inbound_raw_chunks WHERE ledger_id IN (`+rows+`)`, ms(olderThan))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: prune raw: %w", err)
	}
	return n, nil
}

// rawChunk is the largest piece of a raw message stored in one row: SQLite
// assembles a whole row in memory to write it, so a large email is
// written, and held in C memory, a chunk at a time.
const rawChunk = 1 << 20

// insertRaw stores raw for ledger row id in chunks; an empty raw is one
// empty chunk, so that it reads back as empty rather than absent.
func (db *DB) insertRaw(ctx context.Context, tx *sql.Tx, id int64, raw []byte) error {
	for seq, off := 0, 0; seq == 0 || off < len(raw); seq++ {
		end := min(off+rawChunk, len(raw))
		if _, err := db.txExec(ctx, tx, `INSERT INTO inbound_raw_chunks (ledger_id, seq, data) VALUES (?, ?, ?)`,
			id, seq, raw[off:end]); err != nil {
			return err
		}
		off = end
	}
	return nil
}

// readRaw reassembles the raw message of ledger row id; nil when it has
// none (pruned).
func (db *DB) readRaw(ctx context.Context, tx *sql.Tx, id int64) ([]byte, error) {
	rows, err := db.rtxQuery(ctx, tx, `SELECT data FROM inbound_raw_chunks WHERE ledger_id = ? ORDER BY seq`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var raw []byte
	for rows.Next() {
		var chunk []byte
		if err := rows.Scan(&chunk); err != nil {
			return nil, err
		}
		if raw == nil {
			raw = make([]byte, 0, len(chunk))
		}
		raw = append(raw, chunk...)
	}
	return raw, rows.Err()
}

// mustAffect turns "no row changed" into ErrNotFound.
func mustAffect(r sql.Result) error {
	n, err := r.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// wrapErr prefixes err (if any) with the operation and row.
func wrapErr(op string, id int64, err error) error {
	if err == nil {
		return nil
	}
	var se *StateError
	if errors.As(err, &se) {
		return err
	}
	return fmt.Errorf("store: %s #%d: %w", op, id, unwrapStore(err))
}

// unwrapStore keeps ErrNotFound from reading "store: ... store: not found".
func unwrapStore(err error) error {
	if err == ErrNotFound {
		return notFound{}
	}
	return err
}

// notFound prints as "not found" and matches ErrNotFound with errors.Is.
type notFound struct{}

func (notFound) Error() string        { return "not found" }
func (notFound) Is(target error) bool { return target == ErrNotFound }
