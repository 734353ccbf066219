package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The outbox states: queued (until SendAfter) -> sending -> sent | failed,
// or cancelled while still queued.
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
	SendAfter  time.Time
	Attempts   int
	LastError  string
	MessageID  string // the Message-ID of the mail sent
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Enqueue adds it to the outbox as queued. When the channel already has an
// item with the same UserlikeID, nothing is written and the existing id is
// returned with duplicate set. On a fresh insert it.ID, it.State,
// it.CreatedAt and it.UpdatedAt are filled in.
func (db *DB) Enqueue(ctx context.Context, it *OutboxItem) (id int64, duplicate bool, err error) {
	if it.Channel == "" || normContact(it.Contact) == "" {
		return 0, false, fmt.Errorf("store: enqueue %q: channel and contact are required", it.UserlikeID)
	}
	if it.State != "" && it.State != OutboxQueued {
		return 0, false, fmt.Errorf("store: enqueue %q: cannot enqueue in state %q", it.UserlikeID, it.State)
	}
	contact := normContact(it.Contact)
	now := db.nowMS()
	err = db.tx(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `INSERT INTO outbox (channel, contact, userlike_id, operator, text,
				media_url, state, send_after, attempts, last_error, message_id, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, 0, '', '', ?, ?)
			ON CONFLICT (channel, userlike_id) WHERE userlike_id != '' DO NOTHING`,
			it.Channel, contact, it.UserlikeID, it.Operator, it.Text, it.MediaURL, ms(it.SendAfter), now, now)
		if err != nil {
			return err
		}
		n, err := r.RowsAffected()
		if err != nil {
			return err
		}
		if n == 1 {
			id, err = r.LastInsertId()
			return err
		}
		duplicate = true
		return tx.QueryRowContext(ctx, `SELECT id FROM outbox WHERE channel = ? AND userlike_id = ?`,
			it.Channel, it.UserlikeID).Scan(&id)
	})
	if err != nil {
		return 0, false, fmt.Errorf("store: enqueue %s %q: %w", it.Channel, it.UserlikeID, err)
	}
	if !duplicate {
		it.ID, it.Contact, it.State = id, contact, OutboxQueued
		it.CreatedAt, it.UpdatedAt = fromMS(now), fromMS(now)
	}
	return id, duplicate, nil
}

// Outbox returns outbox item id.
func (db *DB) Outbox(ctx context.Context, id int64) (*OutboxItem, error) {
	var it OutboxItem
	var sendAfter, created, updated int64
	err := db.read.QueryRowContext(ctx, `SELECT id, channel, contact, userlike_id, operator, text, media_url,
			state, send_after, attempts, last_error, message_id, created_at, updated_at
		FROM outbox WHERE id = ?`, id).Scan(&it.ID, &it.Channel, &it.Contact, &it.UserlikeID, &it.Operator,
		&it.Text, &it.MediaURL, &it.State, &sendAfter, &it.Attempts, &it.LastError, &it.MessageID, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: outbox #%d: %w", id, notFound{})
	}
	if err != nil {
		return nil, fmt.Errorf("store: outbox #%d: %w", id, err)
	}
	it.SendAfter, it.CreatedAt, it.UpdatedAt = fromMS(sendAfter), fromMS(created), fromMS(updated)
	return &it, nil
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
		err := tx.QueryRowContext(ctx, `SELECT id, state FROM outbox WHERE channel = ? AND userlike_id = ?`,
			channel, userlikeID).Scan(&id, &state)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound{}
		}
		if err != nil {
			return err
		}
		if state != OutboxQueued {
			return nil
		}
		state = OutboxCancelled
		_, err = tx.ExecContext(ctx, `UPDATE outbox SET state = 'cancelled', updated_at = ? WHERE id = ?`, db.nowMS(), id)
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
	rows, err := db.read.QueryContext(ctx, `SELECT state, count(*) FROM outbox
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
