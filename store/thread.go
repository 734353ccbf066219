package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Thread is the current conversation with one contact of a channel: the
// subject replies go out under and the Message-IDs to reference.
type Thread struct {
	Channel        string
	Contact        string
	Subject        string
	MessageIDs     []string // the customer's and ours, in order
	LastCustomerID string
	LastOurID      string
	// Messages are MessageIDs with who wrote them and when they joined
	// the thread, in the same order.
	Messages  []ThreadMessage
	CreatedAt time.Time
	UpdatedAt time.Time
	// Cc are the addr-specs the contact's latest posted email had in Cc
	// (mailgate's own addresses already left out); replies copy them.
	Cc []string
}

// ThreadMessage is one Message-ID of a thread.
type ThreadMessage struct {
	MessageID string
	Ours      bool // sent by mailgate, else the customer's
	AddedAt   time.Time
}

// Thread returns the current (newest) thread of the contact; ok is false
// when the contact has none.
func (db *DB) Thread(ctx context.Context, channel, contact string) (t *Thread, ok bool, err error) {
	contact = normContact(contact)
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("store: thread %s: %w", channel, err)
	}
	defer tx.Rollback()
	t, err = db.currentThread(ctx, tx, false, channel, contact)
	if err != nil {
		return nil, false, fmt.Errorf("store: thread %s: %w", channel, err)
	}
	return t, t != nil, nil
}

// qThread reads the newest thread of a (channel, contact), and
// qThreadMessages the Message-IDs of a thread.
const (
	qThread = `SELECT id, subject, last_customer_id, last_our_id, cc, created_at, updated_at FROM threads
		WHERE channel = ? AND contact = ? ORDER BY id DESC LIMIT 1`
	qThreadMessages = `SELECT message_id, ours, created_at FROM thread_messages
		WHERE thread_id = ? ORDER BY id`
)

// currentThread reads the contact's newest thread; nil when none. write
// says that tx is the writer's (db.tx, db.lazyTx), else it is a read
// transaction (db.beginRead).
func (db *DB) currentThread(ctx context.Context, tx *sql.Tx, write bool, channel, contact string) (*Thread, error) {
	t := &Thread{Channel: channel, Contact: contact}
	var id, created, updated int64
	var cc string
	err := db.cachedQueryRow(ctx, tx, write, qThread, channel, contact).
		Scan(&id, &t.Subject, &t.LastCustomerID, &t.LastOurID, &cc, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	t.CreatedAt, t.UpdatedAt = fromMS(created), fromMS(updated)
	if cc != "" {
		if err := json.Unmarshal([]byte(cc), &t.Cc); err != nil {
			return nil, fmt.Errorf("thread %d: corrupt cc %q: %w", id, cc, err)
		}
	}
	rows, err := db.cachedQuery(ctx, tx, write, qThreadMessages, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var m ThreadMessage
		var ours int
		var added int64
		if err := rows.Scan(&m.MessageID, &ours, &added); err != nil {
			return nil, err
		}
		m.Ours, m.AddedAt = ours == 1, fromMS(added)
		t.Messages = append(t.Messages, m)
		t.MessageIDs = append(t.MessageIDs, m.MessageID)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return t, nil
}

// EnsureThread returns the contact's current thread, creating one with
// subject when the contact has none, and giving subject to a current thread
// that has none. The outbox worker calls it before the first reply to a
// contact, so that later replies keep the subject of the first.
func (db *DB) EnsureThread(ctx context.Context, channel, contact, subject string) (*Thread, error) {
	contact = normContact(contact)
	if channel == "" || contact == "" {
		return nil, errors.New("store: ensure thread: channel and contact are required")
	}
	var t *Thread
	err := db.lazyTx(ctx, func(tx *sql.Tx) error {
		var err error
		t, err = db.ensureThread(ctx, tx, channel, contact, subject, db.nowMS())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: ensure thread %s: %w", channel, err)
	}
	return t, nil
}

// ensureThread is EnsureThread in tx, contact normalized. A thread it
// starts is returned as written, without reading it back.
func (db *DB) ensureThread(ctx context.Context, tx *sql.Tx, channel, contact, subject string, now int64) (*Thread, error) {
	var id int64
	err := db.txQueryRow(ctx, tx, `SELECT id FROM threads WHERE channel = ? AND contact = ?
		ORDER BY id DESC LIMIT 1`, channel, contact).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		if err := db.txQueryRow(ctx, tx, `INSERT INTO threads (channel, contact, subject, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?) RETURNING id`, channel, contact, subject, now, now).Scan(&id); err != nil {
			return nil, err
		}
		return &Thread{Channel: channel, Contact: contact, Subject: subject, CreatedAt: fromMS(now), UpdatedAt: fromMS(now)}, nil
	}
	if err != nil {
		return nil, err
	}
	if subject != "" {
		if _, err := db.txExec(ctx, tx, `UPDATE threads SET subject = ? WHERE id = ? AND subject = ''`, subject, id); err != nil {
			return nil, err
		}
	}
	return db.currentThread(ctx, tx, true, channel, contact)
}

// AddThreadMessage appends messageID (ours: sent by mailgate, else the
// customer's) to the contact's current thread, creating a thread without
// subject when there is none. A Message-ID already in the thread is not
// added twice.
func (db *DB) AddThreadMessage(ctx context.Context, channel, contact, messageID string, ours bool) error {
	contact = normContact(contact)
	if channel == "" || contact == "" || messageID == "" {
		return errors.New("store: add thread message: channel, contact and message id are required")
	}
	err := db.tx(ctx, func(tx *sql.Tx) error {
		return db.addThreadMessage(ctx, tx, channel, contact, messageID, ours, false, "", db.nowMS())
	})
	if err != nil {
		return fmt.Errorf("store: add thread message %s: %w", channel, err)
	}
	return nil
}

// addThreadMessage adds messageID (when not "") to the contact's current
// thread. A new thread with subject is started when newThread is set or the
// contact has none; an existing thread without subject takes subject.
func (db *DB) addThreadMessage(ctx context.Context, tx *sql.Tx, channel, contact, messageID string, ours, newThread bool, subject string, now int64) error {
	var id int64
	if !newThread {
		var err error
		if id, newThread, err = db.latestThread(ctx, tx, channel, contact); err != nil {
			return err
		}
	}
	if newThread {
		if err := db.txQueryRow(ctx, tx, `INSERT INTO threads (channel, contact, subject, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?) RETURNING id`, channel, contact, subject, now, now).Scan(&id); err != nil {
			return err
		}
	} else if subject != "" {
		if _, err := db.txExec(ctx, tx, `UPDATE threads SET subject = ? WHERE id = ? AND subject = ''`, subject, id); err != nil {
			return err
		}
	}
	if messageID == "" {
		return nil
	}
	if _, err := db.txExec(ctx, tx, `INSERT INTO thread_messages (thread_id, message_id, ours, created_at)
		VALUES (?, ?, ?, ?) ON CONFLICT (thread_id, message_id) DO NOTHING`,
		id, messageID, boolInt(ours), now); err != nil {
		return err
	}
	col := "last_customer_id"
	if ours {
		col = "last_our_id"
	}
	_, err := db.txExec(ctx, tx, `UPDATE threads SET `+col+` = ?, updated_at = ? WHERE id = ?`, messageID, now, id)
	return err
}

// setThreadCc replaces the CC list of the contact's current thread.
func (db *DB) setThreadCc(ctx context.Context, tx *sql.Tx, channel, contact string, cc []string) error {
	j := ""
	if len(cc) > 0 {
		var err error
		if j, err = jsonArray(cc); err != nil {
			return err
		}
	}
	_, err := db.txExec(ctx, tx, `UPDATE threads SET cc = ? WHERE id = (SELECT id FROM threads
		WHERE channel = ? AND contact = ? ORDER BY id DESC LIMIT 1)`, j, channel, contact)
	return err
}

// qKnowsMessageID tells (1 or 0) whether one of the Message-IDs of a JSON
// array belongs to a thread of the channel's contact.
const qKnowsMessageID = `SELECT CASE WHEN EXISTS (SELECT 1 FROM thread_messages AS m
		JOIN threads AS t ON t.id = m.thread_id
		WHERE m.message_id IN (SELECT value FROM json_each(?)) AND t.channel = ? AND t.contact = ?) THEN 1 ELSE 0 END`

// KnowsMessageID reports whether any of ids belongs to one of the contact's
// threads (the current one or an earlier one).
func (db *DB) KnowsMessageID(ctx context.Context, channel, contact string, ids []string) (bool, error) {
	if len(ids) == 0 {
		return false, nil
	}
	j, err := jsonArray(ids)
	if err != nil {
		return false, fmt.Errorf("store: knows message id %s: %w", channel, err)
	}
	var n int
	err = db.readQueryRow(ctx, qKnowsMessageID, j, channel, normContact(contact)).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("store: knows message id %s: %w", channel, err)
	}
	return n == 1, nil
}

// latestThread returns the id of the contact's latest thread inside tx;
// none is true when the contact has none.
func (db *DB) latestThread(ctx context.Context, tx *sql.Tx, channel, contact string) (id int64, none bool, err error) {
	err = db.txQueryRow(ctx, tx, `SELECT id FROM threads WHERE channel = ? AND contact = ?
		ORDER BY id DESC LIMIT 1`, channel, contact).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, true, nil
	}
	return id, false, err
}
